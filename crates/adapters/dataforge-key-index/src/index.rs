//! Key checks and reads by key are lookups here instead of scans of the store's tables. The index
//! is derived data: it skips fsync, and a write it may have missed shows at start as a sequence
//! number other than the store's, and it is rebuilt from the store (see [`start`]).

mod damage;
mod legacy;
mod map;
mod read;
mod start;
mod stored;
mod write;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use arrow_array::RecordBatch;
use dataforge_domain::ports::StoreError;
use dataforge_domain::schema::{Catalog, DatasetSchema};
use heed::byteorder::BE;
use heed::types::{Bytes, Str, U64};

use crate::error::index_error;
use crate::keys::KeyEncoder;
use crate::mapped_pages::MappedPages;
use crate::ordered_index::OrderedIndex;
use crate::row_codec::decode_values;
use crate::unsynced;
use map::first_map_bytes;
use stored::StoredRecords;

pub(crate) use start::{REPLAY_CHUNK, refuse_replay};
pub use write::{Encoded, IndexWrite};

/// Bump when the key or record encoding changes, so existing indexes are rebuilt.
const FORMAT: u64 = 7;

/// What the index keeps for one dataset.
struct DatasetIndex {
    /// Encoded key to the record's other fields
    /// ([`encode_values`](crate::row_codec::encode_values)), in blocks and recent entries.
    records: StoredRecords,
    /// Where the last fold of recent entries into blocks stopped (only the writer folds).
    fold_cursor: parking_lot::Mutex<Vec<u8>>,
    keys: KeyEncoder,
    /// The declared indexes, in schema order.
    ordered: Vec<OrderedIndex>,
}

impl DatasetIndex {
    /// The records stored as `values` under `keys` (encoded), as one batch shaped as `schema`.
    fn decode(
        &self,
        schema: &DatasetSchema,
        keys: &[impl AsRef<[u8]>],
        values: &[&[u8]],
    ) -> Result<RecordBatch, StoreError> {
        decode_values(schema, &self.keys.columns(keys)?, values)
    }
}

/// The key index of one store: every dataset's records under their keys, and its declared
/// indexes' entries.
pub struct KeyIndex {
    /// The directory of the LMDB environment.
    path: PathBuf,
    env: heed::Env,
    mapped: MappedPages,
    datasets: HashMap<String, DatasetIndex>,
    meta: heed::Database<Str, U64<BE>>,
    /// The declared indexes the stored ones were built for (see `start::built_for`).
    layout: heed::Database<Str, Str>,
    /// The log of deferred writes of an earlier version (sequence number and dataset to the keys
    /// of the records written): only read, at the first start after an upgrade.
    deferred: heed::Database<Bytes, Bytes>,
    /// Cleared when a write to the index fails: it no longer matches the tables until a restart
    /// rebuilds it, so neither key checks nor reads may use it.
    usable: AtomicBool,
    /// The map grows as the index fills, up to this (`database.key_index_max_mib`), instead of
    /// reserving it all at once (which showed as hundreds of GiB of VSZ).
    max_bytes: usize,
    /// LMDB lets the map be resized only while no transaction of this process is open: every
    /// transaction holds this shared (recursively, so a read inside a write never waits), and
    /// [`Self::grow_if_needed`] takes it exclusively, giving up after a moment rather than wait
    /// on a long read (there is room left: it grows at half full).
    map_lock: parking_lot::RwLock<()>,
}

impl DatasetIndex {
    /// Opens (or creates) the databases of `schema`'s dataset.
    fn open(
        env: &heed::Env,
        tx: &mut heed::RwTxn<'_>,
        schema: &DatasetSchema,
    ) -> Result<Self, StoreError> {
        let records = StoredRecords::open(env, tx, &schema.name)?;
        let mut ordered = Vec::new();
        for declared in &schema.indexes {
            let name = OrderedIndex::db_name(schema, declared);
            let db = env.create_database(tx, Some(&name)).map_err(index_error)?;
            ordered.push(OrderedIndex::new(schema, declared, db)?);
        }
        Ok(DatasetIndex {
            records,
            fold_cursor: parking_lot::Mutex::new(Vec::new()),
            keys: KeyEncoder::new(schema)?,
            ordered,
        })
    }
}

/// How the environment of an index for `catalog` is opened. The index is derived data (the store
/// is the record, and a lagging index is rebuilt at start), so it skips fsync on commit: a process
/// crash loses nothing the OS has not written, and anything lost in a machine crash shows as a
/// sequence mismatch.
fn env_options(path: &Path, max_bytes: usize, catalog: &Catalog) -> heed::EnvOpenOptions {
    let mut options = heed::EnvOpenOptions::new();
    let databases: usize = catalog
        .iter()
        .map(|s| StoredRecords::DATABASES + s.indexes.len())
        .sum();
    // and `_meta`, `_layout` and `_deferred`
    options
        .map_size(first_map_bytes(path, max_bytes))
        .max_dbs(databases as u32 + 3);
    // a reader slot per thread that reads at once: LMDB's default of 126 is below tokio's
    // 512 blocking threads, and a read past it fails (MDB_READERS_FULL)
    options.max_readers(1024);
    // SAFETY: the environment is opened once per process, by this index only; NO_SYNC and
    // NO_META_SYNC trade durability of this derived index for speed, as explained above.
    unsafe {
        options.flags(heed::EnvFlags::NO_SYNC | heed::EnvFlags::NO_META_SYNC);
    }
    options
}

impl KeyIndex {
    /// Opens (or creates) the index for every dataset of `catalog`. LMDB maps `max_bytes` of
    /// address space for it; disk grows only with use. Before use it must catch up with the
    /// store ([`crate::catch_up()`]), and be brought [`Self::in_step`] with the schemas it ends up
    /// with.
    pub fn open(
        path: &Path,
        max_bytes: usize,
        catalog: &Catalog,
        verifier: Option<&Path>,
    ) -> Result<KeyIndex, StoreError> {
        std::fs::create_dir_all(path)
            .map_err(|e| StoreError::Internal(format!("cannot create {}: {e}", path.display())))?;
        let options = env_options(path, max_bytes, catalog);
        damage::set_aside_if_untrusted(path, verifier)?;
        // before anything is written to it in this boot
        unsynced::mark(path)?;
        let env = damage::open_env(path, &options)?;
        let mut tx = env.write_txn().map_err(index_error)?;
        let meta = env
            .create_database(&mut tx, Some("_meta"))
            .map_err(index_error)?;
        let layout = env
            .create_database(&mut tx, Some("_layout"))
            .map_err(index_error)?;
        let deferred = env
            .create_database(&mut tx, Some("_deferred"))
            .map_err(index_error)?;
        let mut datasets = HashMap::new();
        for schema in catalog.iter() {
            let dataset = DatasetIndex::open(&env, &mut tx, schema)?;
            datasets.insert(schema.name.clone(), dataset);
        }
        tx.commit().map_err(index_error)?;
        Ok(KeyIndex {
            path: path.to_path_buf(),
            env,
            mapped: MappedPages::new(path),
            datasets,
            meta,
            layout,
            deferred,
            usable: AtomicBool::new(true),
            max_bytes,
            map_lock: parking_lot::RwLock::new(()),
        })
    }

    /// Flushes every committed transaction to disk (commits skip fsync) when the writer stops, so
    /// that a machine crash before the next start does not have the index rebuilt.
    pub fn close_cleanly(&self) {
        match self.env.force_sync() {
            Ok(()) => unsynced::clear(&self.path),
            Err(e) => tracing::warn!(error = %e, "could not sync the key index at shutdown"),
        }
    }

    fn dataset(&self, dataset: &str) -> Result<&DatasetIndex, StoreError> {
        self.datasets
            .get(dataset)
            .ok_or_else(|| StoreError::Internal(format!("no key index for {dataset}")))
    }

    pub fn is_usable(&self) -> bool {
        self.usable.load(Ordering::Acquire)
    }

    /// Marks the index out of step with the tables until the next start.
    pub fn disable(&self) {
        self.usable.store(false, Ordering::Release);
    }
}
