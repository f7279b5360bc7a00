//! Whether the key index may have lost writes in a machine crash. Its commits skip fsync (it is
//! derived data), so after the machine, not just the process, stopped, its file may miss pages or
//! hold torn ones, which LMDB does not detect. A marker beside its data holding the boot id is
//! written and synced before the index is written to, and removed after a final sync at a clean
//! close: a marker from another boot means the machine stopped while the index held writes not on
//! disk, and the index is rebuilt.

use std::io::Write;
use std::path::{Path, PathBuf};

use dataforge_domain::ports::StoreError;

const MARKER: &str = "unsynced-boot";

fn marker(index_dir: &Path) -> PathBuf {
    index_dir.join(MARKER)
}

/// This boot's id (empty where the system does not tell: a machine crash then goes unnoticed).
fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|id| id.trim().to_owned())
        .unwrap_or_default()
}

/// Whether the index was last written in an earlier boot and not closed cleanly.
pub(crate) fn from_earlier_boot(index_dir: &Path) -> bool {
    match std::fs::read_to_string(marker(index_dir)) {
        Ok(id) => id.trim() != boot_id(),
        Err(_) => false,
    }
}

/// Notes, durably, that the index is being written in this boot.
pub(crate) fn mark(index_dir: &Path) -> Result<(), StoreError> {
    let path = marker(index_dir);
    let written = std::fs::File::create(&path)
        .and_then(|mut file| {
            file.write_all(boot_id().as_bytes())?;
            file.sync_all()
        })
        .and_then(|()| std::fs::File::open(index_dir)?.sync_all());
    written.map_err(|e| StoreError::Internal(format!("cannot write {}: {e}", path.display())))
}

/// Notes that everything written to the index is on disk.
pub(crate) fn clear(index_dir: &Path) {
    if let Err(e) = std::fs::remove_file(marker(index_dir)) {
        tracing::warn!(error = %e, "could not mark the key index closed cleanly; a machine crash before the next start would have it rebuilt");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_of_this_boot_or_none_is_not_from_an_earlier_one() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!from_earlier_boot(dir.path()));
        mark(dir.path()).unwrap();
        assert!(!from_earlier_boot(dir.path()));
        std::fs::write(marker(dir.path()), "another-boot").unwrap();
        assert_eq!(from_earlier_boot(dir.path()), !boot_id().is_empty());
        clear(dir.path());
        assert!(!from_earlier_boot(dir.path()));
    }
}
