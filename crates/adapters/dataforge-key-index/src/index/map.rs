//! The LMDB map grows with the index instead of reserving its whole bound at once (which showed as
//! hundreds of GiB of VSZ). LMDB resizes a map only while no transaction of the process is open,
//! hence the lock every transaction holds shared.

use std::path::Path;
use std::time::Duration;

use dataforge_domain::ports::StoreError;

use super::KeyIndex;
use crate::error::index_error;

/// The map a new or small index starts with.
const FIRST_MAP_BYTES: usize = 64 << 20;

/// Room kept free in the map for one write transaction (a part of a large write holds 64Ki
/// entries, tens of MiB even for records of a kilobyte): the map grows before less is left.
const HEADROOM_BYTES: usize = 512 << 20;

/// The map size to open an index with: twice what its file holds, within the bounds.
pub(super) fn first_map_bytes(path: &Path, max_bytes: usize) -> usize {
    let file = std::fs::metadata(path.join("data.mdb")).map_or(0, |m| m.len() as usize);
    file.saturating_mul(2)
        .max(FIRST_MAP_BYTES)
        .next_multiple_of(1 << 20)
        .min(max_bytes)
}

/// A transaction with the shared hold on the map that keeps it from being resized under it
/// (the transaction is dropped first).
pub(crate) struct Held<'a, T> {
    tx: T,
    _map: parking_lot::RwLockReadGuard<'a, ()>,
}

impl<T> std::ops::Deref for Held<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.tx
    }
}

impl KeyIndex {
    /// Bytes the index's pages take, and bytes its map may grow to.
    pub fn space(&self) -> (u64, u64) {
        let used = self.env.non_free_pages_size().unwrap_or(0);
        (used, self.max_bytes as u64)
    }

    /// A read transaction, holding the map at its size while it is open.
    pub(crate) fn read_txn(&self) -> Result<Held<'_, heed::RoTxn<'_>>, StoreError> {
        // not recursive: a steady stream of overlapping reads must not keep a waiting resize out
        // (no thread opens a read inside another transaction; a resize gives up after 200 ms)
        let map = self.map_lock.read();
        Ok(Held {
            tx: self.env.read_txn().map_err(index_error)?,
            _map: map,
        })
    }

    /// Grows the map (within `max_bytes`) so that at least [`HEADROOM_BYTES`], and half the map,
    /// stay free for the next transaction, which cannot grow it while open. Called before a
    /// write transaction begins, by the one thread that writes.
    pub(super) fn grow_if_needed(&self) {
        let map = self.env.info().map_size;
        let used = self.env.real_disk_size().unwrap_or(0) as usize;
        let free = map.saturating_sub(used);
        if free >= (map / 2).max(HEADROOM_BYTES) || map >= self.max_bytes {
            return;
        }
        let grown = map
            .saturating_mul(2)
            .max(used.saturating_add(2 * HEADROOM_BYTES))
            .next_multiple_of(1 << 20)
            .min(self.max_bytes);
        let Some(_alone) = self.map_lock.try_write_for(Duration::from_millis(200)) else {
            return; // a long read is open: the next write tries again
        };
        // SAFETY: the exclusive hold means no transaction of this process is open, as LMDB
        // requires; no other process opens the index (the database file's lock is held)
        match unsafe { self.env.resize(grown) } {
            Ok(()) => tracing::info!(
                from_mib = map >> 20,
                to_mib = grown >> 20,
                "key index map grown"
            ),
            Err(e) => tracing::warn!(error = %e, "the key index map could not grow"),
        }
    }
}
