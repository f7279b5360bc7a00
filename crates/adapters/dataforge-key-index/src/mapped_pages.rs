//! Keeps the key index's memory map from filling the process's resident set.
//!
//! LMDB reads its file through a shared memory map, and a write copies each page it changes from
//! the map. Records arrive in no particular key order, so a large load touches pages all over the
//! file, and every page touched stays mapped: resident memory grew with the index. Those pages are
//! file cache, clean and reclaimable, but they count in RSS and the kernel is slower to reclaim
//! mapped pages than unmapped ones. So after every [`RELEASE_EVERY_PUTS`] records written to the
//! index (each put touches at most a few pages, so at most a few hundred MiB are mapped between
//! releases), the writer unmaps the index file's pages (`MADV_DONTNEED`): the data stays in the
//! kernel's page cache and the next access maps a page again, without disk I/O while the cache
//! holds it. Counting writes rather than reading the process's RSS counters keeps the check free
//! (and those counters are approximate on some kernels).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Index puts between two releases of the mapped pages.
const RELEASE_EVERY_PUTS: u64 = 64 * 1024;

/// The index file's mapping in this process, and the writes since its pages were last released.
pub(crate) struct MappedPages {
    file: PathBuf,
    every: u64,
    puts: AtomicU64,
}

impl MappedPages {
    /// For the LMDB environment in `dir` (its data file is `data.mdb`).
    pub(crate) fn new(dir: &Path) -> Self {
        Self::releasing_every(dir, RELEASE_EVERY_PUTS)
    }

    fn releasing_every(dir: &Path, every: u64) -> Self {
        MappedPages {
            file: std::fs::canonicalize(dir)
                .unwrap_or_else(|_| dir.to_path_buf())
                .join("data.mdb"),
            every,
            puts: AtomicU64::new(0),
        }
    }

    /// Counts `n` records written to the index; releases the mapped pages once enough were, and
    /// then answers true (a write in parts commits a part at the same moment).
    pub(crate) fn wrote(&self, n: u64) -> bool {
        let before = self.puts.fetch_add(n, Ordering::Relaxed);
        if before + n < self.every {
            return false;
        }
        self.puts.store(0, Ordering::Relaxed);
        self.release();
        true
    }

    /// Unmaps every page of the index file. Best effort: when the process's maps cannot be read,
    /// nothing is released.
    fn release(&self) {
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    /// Resident kilobytes of the mapping of `file`, from the kernel's page-table walk.
    fn resident_kib(file: &Path) -> u64 {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let name = file.to_string_lossy();
        smaps
            .lines()
            .skip_while(|l| !l.ends_with(name.as_ref()))
            .find_map(|l| l.strip_prefix("Rss:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    #[test]
    fn releases_the_mapped_pages_of_the_index_file_after_enough_writes() {
        const SIZE: usize = 16 << 20;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.mdb");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut &file, &vec![1u8; SIZE]).unwrap();
        let pages = MappedPages::releasing_every(dir.path(), 1_000);
        // SAFETY: a fresh shared read-only mapping of a file this test owns, unmapped at the end
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                SIZE,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        assert_ne!(map, libc::MAP_FAILED);
        let touch = || {
            (0..SIZE)
                .step_by(4096)
                // SAFETY: inside the mapping
                .map(|offset| {
                    usize::from(unsafe { std::ptr::read_volatile(map.cast::<u8>().add(offset)) })
                })
                .sum::<usize>()
        };
        let file = std::fs::canonicalize(&path).unwrap();
        assert_eq!(touch(), SIZE / 4096);
        assert_eq!(resident_kib(&file), (SIZE / 1024) as u64);
        // fewer writes than the threshold leave the pages mapped
        assert!(!pages.wrote(999));
        assert_eq!(resident_kib(&file), (SIZE / 1024) as u64);
        // the thousandth releases them; the data reads the same afterwards
        assert!(pages.wrote(1));
        assert_eq!(resident_kib(&file), 0);
        assert_eq!(touch(), SIZE / 4096);
        // and the count starts again
        assert!(!pages.wrote(999));
        assert_eq!(resident_kib(&file), (SIZE / 1024) as u64);
        // SAFETY: the mapping made above, no longer used
        unsafe { libc::munmap(map, SIZE) };
    }
}
