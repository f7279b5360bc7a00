//! LMDB's errors as the store's: a full disk or map names its remedy, and damage is told apart
//! from other failures, since a damaged index is retired rather than retried.

use dataforge_domain::ports::StoreError;

/// How an error from a damaged index begins (see [`is_damage`]).
const DAMAGED: &str = "key index damaged";

/// Whether a failed read of the index says it is damaged (rather than, say, busy), so that it
/// is not used again until a start rebuilds it.
pub fn is_damage(e: &StoreError) -> bool {
    matches!(e, StoreError::Internal(message) if message.starts_with(DAMAGED))
}

/// Whether LMDB refused to open the index because its file is damaged (truncated, overwritten).
pub(crate) fn damaged(e: &heed::Error) -> bool {
    use heed::MdbError::{Corrupted, Invalid, PageNotFound, VersionMismatch};
    matches!(
        e,
        heed::Error::Mdb(Invalid | Corrupted | PageNotFound | VersionMismatch)
    )
}

/// Whether an I/O error says the disk is full.
pub(crate) fn disk_full(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull
}

/// An error of LMDB as the store's.
pub(crate) fn index_error(e: heed::Error) -> StoreError {
    match e {
        heed::Error::Io(io) if disk_full(&io) => StoreError::StorageFull("the key index".into()),
        // LMDB hands on the errno of a failed write
        heed::Error::Mdb(heed::MdbError::Other(code))
            if disk_full(&std::io::Error::from_raw_os_error(code)) =>
        {
            StoreError::StorageFull("the key index".into())
        }
        ref damage if damaged(damage) => StoreError::Internal(format!("{DAMAGED}: {e}")),
        heed::Error::Mdb(heed::MdbError::MapFull) => StoreError::Internal(
            "key index: full (its map reached database.key_index_max_mib, or could not grow in \
             time); raise database.key_index_max_mib (DATAFORGE_DATABASE__KEY_INDEX_MAX_MIB) if it \
             is the limit"
                .into(),
        ),
        other => StoreError::Internal(format!("key index: {other}")),
    }
}
