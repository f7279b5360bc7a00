//! Keeps the key index's memory map from filling the process's resident set.
//!
//! LMDB reads its file through a shared memory map, and a write copies each page it changes from
//! the map. Records arrive in no particular key order, so a large load touches pages all over the
//! file, and every page touched stays mapped: resident memory grew with the index (15 GiB during a
//! 30-million-row upload). Those pages are file cache, clean and reclaimable, but they count in RSS
//! and the kernel is slower to reclaim mapped pages than unmapped ones. After a write to the index,
//! once resident file pages have grown by [`MAPPED_BUDGET`] since the last release, the writer
//! unmaps the index file's pages (`MADV_DONTNEED`): the data stays in the kernel's page cache and
//! the next access maps a page again, without disk I/O while the cache holds it. Measuring growth
//! rather than the total keeps the release rare when writes touch few new pages (single records),
//! instead of unmapping the B-tree's hot pages after every commit.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Growth of resident file-backed memory after which the index's mapped pages are released.
const MAPPED_BUDGET: u64 = 256 << 20;

/// The index file's mapping in this process.
pub(crate) struct MappedPages {
    file: PathBuf,
    page_size: u64,
    /// Resident file-backed bytes just after the last release (or at start).
    floor: AtomicU64,
}

impl MappedPages {
    /// For the LMDB environment in `dir` (its data file is `data.mdb`).
    pub(crate) fn new(dir: &Path) -> Self {
        // SAFETY: sysconf has no preconditions
        let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        let mut pages = MappedPages {
            file: std::fs::canonicalize(dir)
                .unwrap_or_else(|_| dir.to_path_buf())
                .join("data.mdb"),
            page_size: u64::try_from(page_size).unwrap_or(4096),
            floor: AtomicU64::new(0),
        };
        pages.floor = AtomicU64::new(pages.resident_file_bytes().unwrap_or(0));
        pages
    }

    /// Releases the mapped pages of the index file if resident file pages exceed the budget.
    /// Best effort: on any failure to read the process's maps, nothing is released.
    pub(crate) fn trim(&self) {
        if self
            .resident_file_bytes()
            .is_none_or(|b| b <= MAPPED_BUDGET)
        {
            return;
        }
        let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
            return;
        };
        let file = self.file.to_string_lossy();
        for line in maps.lines().filter(|l| l.ends_with(file.as_ref())) {
            let Some((start, end)) = line
                .split_whitespace()
                .next()
                .and_then(|range| range.split_once('-'))
                .and_then(|(s, e)| {
                    Some((
                        usize::from_str_radix(s, 16).ok()?,
                        usize::from_str_radix(e, 16).ok()?,
                    ))
                })
            else {
                continue;
            };
            // SAFETY: the range is a shared, file-backed mapping of the index (read from the
            // kernel's own list); MADV_DONTNEED on it only drops page-table entries, the file's
            // data is untouched and later reads map it again.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
            }
        }
        if let Some(after) = self.resident_file_bytes() {
            self.floor.store(after, Ordering::Relaxed);
        }
    }

    /// Resident file-backed and shared memory of this process (`/proc/self/statm`).
    fn resident_file_bytes(&self) -> Option<u64> {
        let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
        let shared: u64 = statm.split_whitespace().nth(2)?.parse().ok()?;
        Some(shared * self.page_size)
    }
}
