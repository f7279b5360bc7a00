//! The primary-key index and read model: every stored record of every dataset under its key, in an
//! embedded LMDB environment beside the database file, kept by the single writer. Key checks
//! become lookups instead of scans of the table, and a read by key is one lookup. DuckDB stays the
//! record of the data: the writer commits there first, then writes the records here with the same
//! write sequence number; at start a sequence that differs from DuckDB's means the index missed a
//! write (a crash in between), and it is rebuilt from the tables. A schema's declared `indexes` live
//! here too (see [`OrderedIndex`]), written in the same transactions as the records.
//! Small writes may reach the index before DuckDB (see the writer's deferred appends): the journal
//! (`crate::journal`) holds them durably, the index is not synced, and a start that finds DuckDB
//! behind appends them from the journal (`crate::catch_up`). Indexes of an earlier version listed
//! such writes in a log of their own (`_deferred`), which a start still replays once.
//! Records are kept mostly in compressed blocks of records consecutive in key order, recent writes
//! one LMDB entry each until they are folded into the blocks (see [`stored`]).

mod stored;

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arrow_array::{ArrayRef, RecordBatch};
use arrow_row::{RowConverter, SortField};
use dataforge_domain::ports::StoreError;
use dataforge_domain::query::RecordQuery;
use dataforge_domain::schema::{Catalog, DatasetSchema};
use dataforge_domain::value::Value;
use heed::PutFlags;
use heed::byteorder::BE;
use heed::types::{Bytes, DecodeIgnore, Str, U64};

use crate::journal::Entry;
use crate::mapped_pages::MappedPages;
use crate::mirrored::{DeferredWrites, MirroredStore};
use crate::ordered_index::{IndexRange, OrderedIndex};
use crate::row_codec::{decode_rows, decode_values, encode_rows, encode_values, one_value_array};
use crate::{unsynced, verify};
use stored::{Change, LastBlock, StoredRecords};

/// Bump when the key or record encoding changes, so existing indexes are rebuilt.
const FORMAT: u64 = 7;

/// Records in one put or delete from which they are written to the blocks directly rather than as
/// recent entries (see [`stored`]): a write this large would rewrite most blocks it touches anyway.
const BULK_RECORDS: usize = 4096;

/// The last format storing whole records ([`encode_rows`]) rather than what their keys do not
/// hold ([`encode_values`]); its log of deferred writes is still replayed at the first start after
/// an upgrade.
const FORMAT_WHOLE_RECORDS: u64 = 5;

/// The format before each dataset's layout was recorded apart (see [`built_for`]); its log of
/// deferred writes is still replayed at the first start after an upgrade.
const FORMAT_WHOLE_LAYOUT: u64 = 4;

/// Left in the index's directory when a read found it damaged: the next start rebuilds it.
const FOUND_DAMAGED: &str = "found-damaged";

/// Whether LMDB refused to open the index because its file is damaged (truncated, overwritten).
fn damaged(e: &heed::Error) -> bool {
    use heed::MdbError::{Corrupted, Invalid, PageNotFound, VersionMismatch};
    matches!(
        e,
        heed::Error::Mdb(Invalid | Corrupted | PageNotFound | VersionMismatch)
    )
}

/// Moves a damaged index aside (kept for inspection: it may hold writes acknowledged in the last
/// moments before the damage that the tables do not have yet) so that a new one is built from the
/// tables, instead of refusing to start.
fn set_aside(path: &Path, e: &dyn std::fmt::Display) -> Result<(), StoreError> {
    // nanoseconds: two damaged indexes set aside within a second keep apart
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".damaged-{now}"));
    let aside = path.with_file_name(name);
    std::fs::rename(path, &aside)
        .and_then(|()| std::fs::create_dir_all(path))
        .map_err(|io| {
            StoreError::Internal(format!(
                "the key index at {} is damaged ({e}) and could not be set aside: {io}",
                path.display()
            ))
        })?;
    tracing::error!(
        index = %path.display(),
        set_aside = %aside.display(),
        error = %e,
        "the key index is damaged; it was set aside and is rebuilt from the tables"
    );
    Ok(())
}

/// How an error from a damaged index begins (see [`is_damage`]).
const DAMAGED: &str = "key index damaged";

/// Whether a failed read of the index says it is damaged (rather than, say, busy), so that it
/// is not used again until a start rebuilds it.
pub fn is_damage(e: &StoreError) -> bool {
    matches!(e, StoreError::Internal(message) if message.starts_with(DAMAGED))
}

pub(crate) fn index_error(e: heed::Error) -> StoreError {
    match e {
        heed::Error::Io(io) if crate::disk_full(&io) => {
            StoreError::StorageFull("the key index".into())
        }
        // LMDB hands on the errno of a failed write
        heed::Error::Mdb(heed::MdbError::Other(code))
            if crate::disk_full(&std::io::Error::from_raw_os_error(code)) =>
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

/// Encodes key columns as order-preserving bytes.
pub struct KeyEncoder(RowConverter);

impl KeyEncoder {
    pub fn new(schema: &DatasetSchema) -> Result<Self, StoreError> {
        let fields = schema
            .key_fields()
            .map(|f| SortField::new(f.field_type.arrow_type()))
            .collect();
        RowConverter::new(fields)
            .map(KeyEncoder)
            .map_err(|e| StoreError::Internal(e.to_string()))
    }

    /// The encoded key of every row of `columns` (the key columns, in key order).
    pub fn encode(&self, columns: &[ArrayRef]) -> Result<Vec<Vec<u8>>, StoreError> {
        let rows = self
            .0
            .convert_columns(columns)
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        Ok(rows.iter().map(|row| row.as_ref().to_vec()).collect())
    }

    /// Encoded keys as key columns (in key order).
    pub fn columns(&self, keys: &[impl AsRef<[u8]>]) -> Result<Vec<ArrayRef>, StoreError> {
        let parser = self.0.parser();
        let rows: Vec<_> = keys.iter().map(|k| parser.parse(k.as_ref())).collect();
        self.0
            .convert_rows(rows)
            .map_err(|e| StoreError::Internal(e.to_string()))
    }

    /// The values of encoded keys, for answers that name them.
    pub fn decode(
        &self,
        schema: &DatasetSchema,
        keys: &[&[u8]],
    ) -> Result<Vec<Vec<Value>>, StoreError> {
        let parser = self.0.parser();
        let rows: Vec<_> = keys.iter().map(|k| parser.parse(k)).collect();
        let columns = self
            .0
            .convert_rows(rows)
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        Ok((0..keys.len())
            .map(|row| {
                schema
                    .key_fields()
                    .zip(&columns)
                    .map(|(f, c)| Value::from_array(f.field_type, c, row))
                    .collect()
            })
            .collect())
    }
}

/// Records read back and appended per batch when deferred writes are replayed.
pub(crate) const REPLAY_CHUNK: usize = 8192;

/// Why deferred writes cannot be replayed: the start is refused rather than lose the
/// acknowledged writes the journal holds.
pub(crate) fn refuse_replay(dataset: &str, why: &str) -> StoreError {
    StoreError::MigrationRefused(format!(
        "the journal holds acknowledged writes to {dataset} that the table does not have yet, and \
         they cannot be appended: {why}. Start again with the schema files the writes were made \
         under (they are appended at start), then change the schemas"
    ))
}

/// A dataset's keys in the log of deferred writes: of new records, and changed ones.
type LoggedKeys<'t> = (Vec<&'t [u8]>, HashSet<&'t [u8]>);

/// Marks a log entry of changed keys (dataset names never hold it).
const CHANGED: u8 = b'!';

/// The sequence number and dataset of a log entry of deferred writes, and whether it lists
/// changed keys (see [`IndexWrite::defer`]).
fn deferred_entry(entry: &[u8]) -> Result<(u64, &str, bool), StoreError> {
    let broken = || StoreError::Internal("a broken entry in the log of deferred writes".into());
    let (seq, dataset) = entry.split_first_chunk::<8>().ok_or_else(broken)?;
    let (changed, dataset) = match dataset.split_first() {
        Some((&CHANGED, rest)) => (true, rest),
        _ => (false, dataset),
    };
    let dataset = std::str::from_utf8(dataset).map_err(|_| broken())?;
    Ok((u64::from_be_bytes(*seq), dataset, changed))
}

/// The keys a log entry of deferred writes lists (each one after its length, u32 little-endian).
fn listed_keys(mut listed: &[u8]) -> Result<Vec<&[u8]>, StoreError> {
    let mut keys = Vec::new();
    while let Some((len, rest)) = listed.split_first_chunk::<4>() {
        let len = u32::from_le_bytes(*len) as usize;
        if rest.len() < len {
            break;
        }
        keys.push(&rest[..len]);
        listed = &rest[len..];
    }
    if listed.is_empty() {
        Ok(keys)
    } else {
        Err(StoreError::Internal(
            "a truncated entry in the log of deferred writes".into(),
        ))
    }
}

/// What the index keeps for one dataset.
struct DatasetIndex {
    /// Encoded key to the record's other fields ([`encode_values`]), in blocks and recent entries.
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

/// The greatest key `db` holds, so that puts past it append (see [`put_flags`]).
fn last_key<V: 'static>(
    db: heed::Database<Bytes, V>,
    tx: &heed::RoTxn<'_>,
) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(db
        .remap_data_type::<DecodeIgnore>()
        .last(tx)
        .map_err(index_error)?
        .map(|(key, ())| key.to_vec()))
}

/// How to put `key`, one of keys put in ascending order, with `last` the greatest key stored or
/// put so far: past it LMDB appends, which fills pages instead of splitting them in halves (a load
/// in key order leaves full pages rather than half-empty ones behind).
fn put_flags<'k>(key: &'k [u8], last: &mut Option<&'k [u8]>) -> PutFlags {
    match last {
        Some(greatest) if key <= *greatest => PutFlags::empty(),
        _ => {
            *last = Some(key);
            PutFlags::APPEND
        }
    }
}

/// What an index of one dataset was built for, as text: its fields (records are encoded by
/// position and type), its primary key (records are stored under it) and its declared indexes. An
/// index built for something else is rebuilt, and its log of deferred writes is not replayed.
fn built_for(schema: &DatasetSchema) -> String {
    let fields: Vec<String> = schema
        .fields
        .iter()
        .map(|f| format!("{} {}", f.name, f.field_type))
        .collect();
    let key: Vec<&str> = schema.key_fields().map(|f| f.name.as_str()).collect();
    let indexes: Vec<String> = schema
        .indexes
        .iter()
        .map(|declared| OrderedIndex::db_name(schema, declared))
        .collect();
    format!(
        "fields({}) key({}) indexes({})",
        fields.join(","),
        key.join(","),
        indexes.join(";")
    )
}

/// The declared indexes of every dataset, as [`FORMAT_WHOLE_LAYOUT`] recorded them.
fn whole_layout(catalog: &Catalog) -> String {
    catalog
        .iter()
        .flat_map(|schema| {
            schema
                .indexes
                .iter()
                .map(|declared| OrderedIndex::db_name(schema, declared))
        })
        .collect::<Vec<_>>()
        .join(";")
}

pub struct KeyIndex {
    /// The directory of the LMDB environment.
    path: PathBuf,
    env: heed::Env,
    mapped: MappedPages,
    datasets: HashMap<String, DatasetIndex>,
    meta: heed::Database<Str, U64<BE>>,
    /// The declared indexes the stored ones were built for (see [`layout`]).
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

/// The map a new or small index starts with.
const FIRST_MAP_BYTES: usize = 64 << 20;

/// Room kept free in the map for one write transaction (a part of a large write holds 64Ki
/// entries, tens of MiB even for records of a kilobyte): the map grows before less is left.
const HEADROOM_BYTES: usize = 512 << 20;

/// The map size to open an index with: twice what its file holds, within the bounds.
fn first_map_bytes(path: &Path, max_bytes: usize) -> usize {
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
    /// Opens (or creates) the index for every dataset of `catalog`. LMDB maps `max_bytes` of
    /// address space for it; disk grows only with use. Before use it must catch up with the
    /// tables (`crate::catch_up`), and be brought [`Self::in_step`] with the schemas they end up with.
    pub fn open(
        path: &Path,
        max_bytes: usize,
        catalog: &Catalog,
        verifier: Option<&Path>,
    ) -> Result<KeyIndex, StoreError> {
        std::fs::create_dir_all(path)
            .map_err(|e| StoreError::Internal(format!("cannot create {}: {e}", path.display())))?;
        // The index is derived data (DuckDB is the record, and a lagging index is rebuilt at start),
        // so it skips fsync on commit: a process crash loses nothing the OS has not written, and
        // anything lost in a machine crash shows as a sequence mismatch.
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
        // SAFETY: the environment is opened once per process, by this store only; NO_SYNC and
        // NO_META_SYNC trade durability of this derived index for speed, as explained above.
        unsafe {
            options.flags(heed::EnvFlags::NO_SYNC | heed::EnvFlags::NO_META_SYNC);
        }
        if unsynced::from_earlier_boot(path) {
            let why = "the machine stopped while it held writes not yet on disk";
            set_aside(path, &why)?;
        } else if path.join(FOUND_DAMAGED).exists() {
            set_aside(path, &"a read found it damaged")?;
        } else if let Some(verifier) = verifier
            && path.join("data.mdb").exists()
            && let Err(why) = verify::verified_in_child(verifier, path)
        {
            set_aside(path, &why)?;
        }
        // before anything is written to it in this boot
        unsynced::mark(path)?;
        // SAFETY: as above
        let env = match unsafe { options.open(path) } {
            Ok(env) => env,
            Err(e) if damaged(&e) => {
                set_aside(path, &e)?;
                // SAFETY: as above
                unsafe { options.open(path) }.map_err(index_error)?
            }
            Err(e) => return Err(index_error(e)),
        };
        let mut tx = env.write_txn().map_err(index_error)?;
        let meta: heed::Database<Str, U64<BE>> = env
            .create_database(&mut tx, Some("_meta"))
            .map_err(index_error)?;
        let stored_layout: heed::Database<Str, Str> = env
            .create_database(&mut tx, Some("_layout"))
            .map_err(index_error)?;
        let deferred: heed::Database<Bytes, Bytes> = env
            .create_database(&mut tx, Some("_deferred"))
            .map_err(index_error)?;
        let mut datasets = HashMap::new();
        for schema in catalog.iter() {
            let records = StoredRecords::open(&env, &mut tx, &schema.name)?;
            let mut ordered = Vec::new();
            for declared in &schema.indexes {
                let name = OrderedIndex::db_name(schema, declared);
                let db = env
                    .create_database(&mut tx, Some(&name))
                    .map_err(index_error)?;
                ordered.push(OrderedIndex::new(schema, declared, db)?);
            }
            let dataset = DatasetIndex {
                records,
                fold_cursor: parking_lot::Mutex::new(Vec::new()),
                keys: KeyEncoder::new(schema)?,
                ordered,
            };
            datasets.insert(schema.name.clone(), dataset);
        }
        tx.commit().map_err(index_error)?;
        Ok(KeyIndex {
            path: path.to_path_buf(),
            env,
            mapped: MappedPages::new(path),
            datasets,
            meta,
            layout: stored_layout,
            deferred,
            usable: AtomicBool::new(true),
            max_bytes,
            map_lock: parking_lot::RwLock::new(()),
        })
    }

    /// Appends to the tables the writes an index of an earlier version acknowledged from its own
    /// log of deferred writes (`_deferred`; now the journal holds them), reading their records with
    /// the schemas the tables still have (`stored`), and answers DuckDB's sequence number then
    /// (`seq` before). The log is emptied: it is only ever read.
    pub(crate) fn replay_legacy_log(
        &self,
        stored: &Catalog,
        store: &impl MirroredStore,
        mut seq: u64,
    ) -> Result<u64, StoreError> {
        let indexed = self.sequence()?;
        if let Some(indexed) = indexed
            && indexed > seq
        {
            if self.replay_deferred(stored, store, seq, indexed)? {
                tracing::info!(
                    from = seq + 1,
                    to = indexed,
                    "appended deferred writes to the tables"
                );
                seq = indexed;
            } else {
                tracing::error!(
                    stored = seq,
                    indexed,
                    "the key index is ahead of the tables but neither the journal nor its log of deferred writes covers the gap; rebuilding it from the tables"
                );
            }
        }
        let mut tx = self.env.write_txn().map_err(index_error)?;
        self.deferred.clear(&mut tx).map_err(index_error)?;
        tx.commit().map_err(index_error)?;
        Ok(seq)
    }

    /// Applies to the index the journal's `entries` it missed (the process stopped between an
    /// entry's sync and the index's commit), up to `last`, when it holds every earlier one and was
    /// built for `stored`; otherwise [`Self::in_step`] rebuilds it.
    pub(crate) fn follow(
        &self,
        stored: &Catalog,
        entries: &[&Entry],
        last: u64,
    ) -> Result<(), StoreError> {
        let (Some(indexed), true) = self.state(stored)? else {
            return Ok(());
        };
        let missed: Vec<&Entry> = entries
            .iter()
            .copied()
            .filter(|e| e.seq > indexed)
            .collect();
        if indexed >= last || missed.first().map(|e| e.seq) != Some(indexed + 1) {
            return Ok(());
        }
        tracing::info!(
            from = indexed + 1,
            to = last,
            "the key index takes the journal's writes it missed"
        );
        let mut write = self.write()?;
        for section in missed.iter().flat_map(|e| &e.sections) {
            let schema = stored
                .get(&section.dataset)
                .ok_or_else(|| refuse_replay(&section.dataset, "no schema file declares it"))?;
            for (key, record) in &section.items {
                match record {
                    Some(record) => write.put(schema, &decode_rows(schema, &[record])?, true)?,
                    None => write.remove(schema, key)?,
                }
            }
        }
        write.commit(last)
    }

    /// Rebuilds the index from the tables unless it is in step with DuckDB's sequence number `seq`
    /// and was built for `catalog` (its declared indexes and its fields).
    pub fn in_step(
        &self,
        catalog: &Catalog,
        store: &impl MirroredStore,
        seq: u64,
    ) -> Result<(), StoreError> {
        let (indexed, built_for_catalog) = self.state(catalog)?;
        if indexed != Some(seq) || !built_for_catalog {
            tracing::info!(indexed = ?indexed, stored = seq, "rebuilding the key index from the tables");
            self.rebuild(catalog, store, seq)?;
        } else if let Some(dataset) = self.count_differs(catalog, store)? {
            tracing::error!(%dataset, "the key index holds another number of records than the table; rebuilding it from the tables");
            self.rebuild(catalog, store, seq)?;
        }
        Ok(())
    }

    /// The first dataset whose record count in the index differs from its table's (a damaged
    /// index that still opens): a cheap check at every start.
    fn count_differs(
        &self,
        catalog: &Catalog,
        store: &impl MirroredStore,
    ) -> Result<Option<String>, StoreError> {
        let tx = self.read_txn()?;
        for schema in catalog.iter() {
            let indexed = self.dataset(&schema.name)?.records.count(&tx)?;
            if indexed != store.count(schema)? {
                return Ok(Some(schema.name.clone()));
            }
        }
        Ok(None)
    }

    /// Called when a read of the index failed, which only a damaged index does: it is no longer
    /// used (reads and key checks go through DuckDB) and the next start sets it aside and rebuilds
    /// it.
    pub fn found_damaged(&self, e: &StoreError) {
        tracing::error!(error = %e, index = %self.path.display(), "a read of the key index failed; it is no longer used (reads and key checks go through DuckDB) and the next start rebuilds it");
        self.disable();
        if let Err(io) = std::fs::write(self.path.join(FOUND_DAMAGED), e.to_string()) {
            tracing::error!(error = %io, "could not mark the key index for a rebuild; delete its directory before the next start");
        }
    }

    /// The sequence number of the last write the index holds, if it is in step with one.
    fn sequence(&self) -> Result<Option<u64>, StoreError> {
        let tx = self.read_txn()?;
        self.meta.get(&tx, "seq").map_err(index_error)
    }

    /// The index's sequence number, and whether its records and indexes were built for `catalog`.
    fn state(&self, catalog: &Catalog) -> Result<(Option<u64>, bool), StoreError> {
        let tx = self.read_txn()?;
        let indexed = self.meta.get(&tx, "seq").map_err(index_error)?;
        let built = catalog
            .iter()
            .map(|schema| self.built_for(&tx, schema))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((indexed, built.into_iter().all(|b| b)))
    }

    /// Whether the records of `schema`'s dataset were written for that schema: the log of
    /// deferred writes of a dataset is replayed only then (its records are decoded with it).
    /// (LMDB allows one read transaction per thread: the caller's is used.)
    fn built_for(&self, tx: &heed::RoTxn<'_>, schema: &DatasetSchema) -> Result<bool, StoreError> {
        self.built_in(tx, schema, FORMAT)
    }

    /// Whether the records of `schema`'s dataset were written for that schema in `format`.
    fn built_in(
        &self,
        tx: &heed::RoTxn<'_>,
        schema: &DatasetSchema,
        format: u64,
    ) -> Result<bool, StoreError> {
        if self.meta.get(tx, "format").map_err(index_error)? != Some(format) {
            return Ok(false);
        }
        let recorded = self.layout.get(tx, &schema.name).map_err(index_error)?;
        Ok(recorded == Some(built_for(schema).as_str()))
    }

    /// Whether an index of [`FORMAT_WHOLE_LAYOUT`] was built for the `stored` catalog (the first
    /// start after an upgrade replays its log of deferred writes).
    fn built_whole_for(&self, tx: &heed::RoTxn<'_>, stored: &Catalog) -> Result<bool, StoreError> {
        let format = self.meta.get(tx, "format").map_err(index_error)?;
        let layout = self.layout.get(tx, "layout").map_err(index_error)?;
        Ok(format == Some(FORMAT_WHOLE_LAYOUT) && layout == Some(whole_layout(stored).as_str()))
    }

    /// Appends to the tables, in one DuckDB transaction that also sets DuckDB's sequence number to
    /// `indexed`, the records of the writes `stored + 1 ..= indexed` the log lists (writes that
    /// were acknowledged once in the index and not yet appended when the process stopped; the
    /// writer appends past 64Ki deferred records, so they are few). Answers false, changing
    /// nothing, when the log does not list every one of those writes.
    fn replay_deferred(
        &self,
        catalog: &Catalog,
        store: &impl MirroredStore,
        stored: u64,
        indexed: u64,
    ) -> Result<bool, StoreError> {
        let tx = self.read_txn()?;
        let mut writes = HashSet::new();
        let mut keys: HashMap<&str, LoggedKeys<'_>> = HashMap::new();
        for entry in self.deferred.iter(&tx).map_err(index_error)? {
            let (entry, listed) = entry.map_err(index_error)?;
            let (seq, dataset, changed) = deferred_entry(entry)?;
            if seq > stored {
                writes.insert(seq);
                let (appended, changes) = keys.entry(dataset).or_default();
                if changed {
                    changes.extend(listed_keys(listed)?);
                } else {
                    appended.extend(listed_keys(listed)?);
                }
            }
        }
        if (stored + 1..=indexed).any(|seq| !writes.contains(&seq)) {
            return Ok(false);
        }
        let whole = self.built_whole_for(&tx, catalog)?;
        let mut deferred = Vec::new();
        for (name, (appended, changed)) in &keys {
            let schema = catalog
                .get(name)
                .ok_or_else(|| refuse_replay(name, "no schema file declares it"))?;
            let whole_records = whole || self.built_in(&tx, schema, FORMAT_WHOLE_RECORDS)?;
            if !whole_records && !self.built_for(&tx, schema)? {
                return Err(refuse_replay(
                    name,
                    "its stored schema is not the one the key index holds its records in",
                ));
            }
            let dataset = self.dataset(name)?;
            let decode = |keys: &[&[u8]], found: &[&[u8]]| {
                if whole_records {
                    decode_rows(schema, found)
                } else {
                    dataset.decode(schema, keys, found)
                }
            };
            let mut batches = Vec::new();
            // a new record whose key changed since is written as a changed key
            let new: Vec<&[u8]> = appended
                .iter()
                .copied()
                .filter(|k| !changed.contains(*k))
                .collect();
            let mut last = LastBlock::default();
            for chunk in new.chunks(REPLAY_CHUNK) {
                let mut found = Vec::with_capacity(chunk.len());
                for key in chunk {
                    found.push(dataset.records.get(&tx, key, &mut last)?.ok_or_else(|| {
                        StoreError::Internal("a deferred write's record is missing".into())
                    })?);
                }
                let found: Vec<&[u8]> = found.iter().map(|f| f.as_ref()).collect();
                batches.push(decode(chunk, &found)?);
            }
            let changed: Vec<Vec<u8>> = changed.iter().map(|k| k.to_vec()).collect();
            let (mut kept, mut found) = (Vec::new(), Vec::new());
            for key in &changed {
                if let Some(record) = dataset.records.get(&tx, key, &mut last)? {
                    kept.push(key.as_slice());
                    found.push(record);
                }
            }
            let found: Vec<&[u8]> = found.iter().map(|f| f.as_ref()).collect();
            deferred.push(DeferredWrites {
                schema: Arc::clone(schema),
                appended: batches,
                current: vec![decode(&kept, &found)?],
                changed,
            });
        }
        drop(tx);
        store.append(&deferred, indexed).map(|()| true)
    }

    /// Flushes every committed transaction to disk (commits skip fsync) when the writer stops, so
    /// that a machine crash before the next start does not have the index rebuilt.
    pub fn close_cleanly(&self) {
        match self.env.force_sync() {
            Ok(()) => unsynced::clear(&self.path),
            Err(e) => tracing::warn!(error = %e, "could not sync the key index at shutdown"),
        }
    }

    fn rebuild(
        &self,
        catalog: &Catalog,
        store: &impl MirroredStore,
        seq: u64,
    ) -> Result<(), StoreError> {
        let mut write = self.write_in_parts()?;
        // until the last part commits, the index is not in step with any sequence number
        self.meta.delete(write.tx()?, "seq").map_err(index_error)?;
        for schema in catalog.iter() {
            let dataset = self.dataset(&schema.name)?;
            dataset.records.clear(write.tx()?)?;
            for ordered in &dataset.ordered {
                ordered.db.clear(write.tx()?).map_err(index_error)?;
            }
            // in key order, so that records and pages are appended (see [`put_flags`])
            let mut count = 0u64;
            store.scan_in_key_order(schema, &mut |batch| {
                count += batch.num_rows() as u64;
                write.put(schema, &batch, false)
            })?;
            tracing::info!(dataset = %schema.name, records = count, "indexed records");
        }
        self.meta
            .put(write.tx()?, "format", &FORMAT)
            .map_err(index_error)?;
        self.layout.clear(write.tx()?).map_err(index_error)?;
        for schema in catalog.iter() {
            self.layout
                .put(write.tx()?, &schema.name, &built_for(schema))
                .map_err(index_error)?;
        }
        write.commit(seq)
    }

    fn dataset(&self, dataset: &str) -> Result<&DatasetIndex, StoreError> {
        self.datasets
            .get(dataset)
            .ok_or_else(|| StoreError::Internal(format!("no key index for {dataset}")))
    }

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
    fn grow_if_needed(&self) {
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

    pub fn is_usable(&self) -> bool {
        self.usable.load(Ordering::Acquire)
    }

    /// Marks the index out of step with the tables until the next start.
    pub fn disable(&self) {
        self.usable.store(false, Ordering::Release);
    }

    /// Which of `keys` are stored, as flags in the same order (looked up in key order).
    pub fn contains(&self, dataset: &str, keys: &[Vec<u8>]) -> Result<Vec<bool>, StoreError> {
        let records = self.dataset(dataset)?.records;
        let tx = self.read_txn()?;
        let mut order: Vec<usize> = (0..keys.len()).collect();
        order.sort_unstable_by(|a, b| keys[*a].cmp(&keys[*b]));
        let mut found = vec![false; keys.len()];
        // in key order, neighbouring keys find the block the last one decoded
        let mut last = LastBlock::default();
        for i in order {
            found[i] = records.get(&tx, &keys[i], &mut last)?.is_some();
        }
        Ok(found)
    }

    /// The stored record with this key (values in key order), as a one-row batch.
    pub fn get(
        &self,
        schema: &DatasetSchema,
        key: &[Value],
    ) -> Result<Option<RecordBatch>, StoreError> {
        let encoded = self.encode_key(schema, key)?;
        self.record(schema, &encoded)
    }

    /// A key (values in key order) as the index orders it.
    pub fn encode_key(&self, schema: &DatasetSchema, key: &[Value]) -> Result<Vec<u8>, StoreError> {
        let columns: Vec<ArrayRef> = schema
            .key_fields()
            .zip(key)
            .map(|(f, v)| one_value_array(f.field_type, v))
            .collect();
        self.dataset(&schema.name)?
            .keys
            .encode(&columns)?
            .pop()
            .ok_or_else(|| StoreError::Internal("a key encoded to nothing".into()))
    }

    /// The stored record under an encoded key, as a one-row batch.
    pub fn record(
        &self,
        schema: &DatasetSchema,
        key: &[u8],
    ) -> Result<Option<RecordBatch>, StoreError> {
        let dataset = self.dataset(&schema.name)?;
        let tx = self.read_txn()?;
        match dataset.records.get(&tx, key, &mut LastBlock::default())? {
            Some(record) => dataset.decode(schema, &[key], &[&record]).map(Some),
            None => Ok(None),
        }
    }

    /// A declared index that answers `query`, and the entries it reads (see
    /// [`OrderedIndex::plan`]).
    pub fn plan(&self, schema: &DatasetSchema, query: &RecordQuery) -> Option<(usize, IndexRange)> {
        let dataset = self.datasets.get(&schema.name)?;
        dataset
            .ordered
            .iter()
            .enumerate()
            .find_map(|(i, ordered)| ordered.plan(query).map(|range| (i, range)))
    }

    /// The page a [`Self::plan`] found, with the columns `fields` (positions in the schema).
    pub fn page(
        &self,
        schema: &DatasetSchema,
        (index, range): &(usize, IndexRange),
        fields: &[usize],
    ) -> Result<RecordBatch, StoreError> {
        let dataset = self.dataset(&schema.name)?;
        let ordered = dataset
            .ordered
            .get(*index)
            .ok_or_else(|| StoreError::Internal(format!("{} has no index {index}", schema.name)))?;
        let tx = self.read_txn()?;
        let mut entries = Vec::new();
        ordered.scan(schema, &tx, range, |entry| {
            entries.push(entry);
            Ok(())
        })?;
        let key_columns = ordered.primary_key_columns(schema, &entries)?;
        let keys = dataset.keys.encode(&key_columns)?;
        // looked up in key order (neighbours share a block), answered in the index's
        let mut order: Vec<usize> = (0..keys.len()).collect();
        order.sort_unstable_by(|a, b| keys[*a].cmp(&keys[*b]));
        let mut found: Vec<Option<Cow<'_, [u8]>>> = vec![None; keys.len()];
        let mut last = LastBlock::default();
        for i in order {
            found[i] = dataset.records.get(&tx, &keys[i], &mut last)?;
        }
        let records = found
            .iter()
            .map(|record| record.as_deref())
            .collect::<Option<Vec<&[u8]>>>()
            .ok_or_else(|| StoreError::Internal("an index entry points to no record".into()))?;
        decode_values(schema, &key_columns, &records)?
            .project(fields)
            .map_err(|e| StoreError::Internal(e.to_string()))
    }

    /// The keys of `batch` (shaped as the dataset's schema) in the index's encoding, with its whole
    /// records as the journal holds them ([`encode_rows`]).
    pub fn encode(
        &self,
        schema: &DatasetSchema,
        batch: &RecordBatch,
    ) -> Result<Encoded, StoreError> {
        Ok(Encoded {
            keys: self.encode_keys(schema, batch)?,
            records: encode_rows(schema, batch)?,
        })
    }

    /// The keys of `batch` (shaped as the dataset's schema), encoded.
    fn encode_keys(
        &self,
        schema: &DatasetSchema,
        batch: &RecordBatch,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let key_columns: Vec<ArrayRef> = schema
            .primary_key
            .iter()
            .map(|&c| Arc::clone(batch.column(c)))
            .collect();
        self.dataset(&schema.name)?.keys.encode(&key_columns)
    }

    /// Starts writing the records of a committed write group.
    pub fn write(&self) -> Result<IndexWrite<'_>, StoreError> {
        self.grow_if_needed();
        let map = self.map_lock.read_recursive();
        Ok(IndexWrite {
            index: self,
            tx: Some(self.env.write_txn().map_err(index_error)?),
            map: Some(map),
            in_parts: false,
        })
    }

    /// Starts writing many records (a staged write, a rebuild), committed in parts, one each time
    /// the mapped pages are released (every 64Ki entries, [`MappedPages::wrote`]): LMDB keeps a transaction's dirty pages in memory until it commits (up to 512 MiB),
    /// so one transaction for a multi-gigabyte upload held that much. Only the last part records
    /// the sequence number, so a crash between parts leaves the index behind DuckDB and the next
    /// start rebuilds it, as after a crash between DuckDB's commit and the index's.
    pub fn write_in_parts(&self) -> Result<IndexWrite<'_>, StoreError> {
        let mut write = self.write()?;
        write.in_parts = true;
        Ok(write)
    }
}

/// A batch's keys and whole records (the journal's form), encoded, in row order.
pub struct Encoded {
    pub keys: Vec<Vec<u8>>,
    pub records: Vec<Vec<u8>>,
}

/// Records being written to the index, visible to lookups once committed.
pub struct IndexWrite<'a> {
    index: &'a KeyIndex,
    /// The open transaction; `None` only between a part's commit and the next part's start.
    tx: Option<heed::RwTxn<'a>>,
    /// The shared hold on the map while `tx` is open (dropped after it).
    map: Option<parking_lot::RwLockReadGuard<'a, ()>>,
    /// Whether the write is committed in parts.
    in_parts: bool,
}

impl<'a> IndexWrite<'a> {
    fn tx(&mut self) -> Result<&mut heed::RwTxn<'a>, StoreError> {
        self.tx
            .as_mut()
            .ok_or_else(|| StoreError::Internal("no open key index transaction".into()))
    }

    /// Counts `entries` written; when that releases the mapped pages in a write in parts, commits
    /// what is written without a sequence number and starts the next part.
    fn wrote(&mut self, entries: u64) -> Result<(), StoreError> {
        if self.index.mapped.wrote(entries) && self.in_parts {
            if let Some(tx) = self.tx.take() {
                tx.commit().map_err(index_error)?;
            }
            self.map = None;
            self.index.grow_if_needed();
            self.map = Some(self.index.map_lock.read_recursive());
            self.tx = Some(self.index.env.write_txn().map_err(index_error)?);
        }
        Ok(())
    }

    /// Stores every record of `batch` (shaped as the dataset's schema) under its key. With
    /// `replacing`, a key may hold a record already, which is replaced and whose declared-index
    /// entries are removed; without, the keys are known to be new (a write checked in mode
    /// `error`, a rebuild) and no lookup is spent on them.
    pub fn put(
        &mut self,
        schema: &DatasetSchema,
        batch: &RecordBatch,
        replacing: bool,
    ) -> Result<(), StoreError> {
        let keys = self.index.encode_keys(schema, batch)?;
        self.put_keyed(schema, batch, &keys, replacing)
    }

    /// [`Self::put`] for a write's batches as one: sorted together, their records follow each other
    /// in key order (appended past the stored keys) instead of each batch splitting the pages the
    /// one before filled.
    pub fn put_batches(
        &mut self,
        schema: &DatasetSchema,
        batches: &[RecordBatch],
        replacing: bool,
    ) -> Result<(), StoreError> {
        match batches {
            [] => Ok(()),
            [one] => self.put(schema, one, replacing),
            [first, ..] => {
                let whole = arrow_select::concat::concat_batches(&first.schema(), batches)
                    .map_err(|e| StoreError::Internal(e.to_string()))?;
                self.put(schema, &whole, replacing)
            }
        }
    }

    /// [`Self::put`] with the batch's keys already encoded.
    pub fn put_encoded(
        &mut self,
        schema: &DatasetSchema,
        batch: &RecordBatch,
        encoded: &Encoded,
        replacing: bool,
    ) -> Result<(), StoreError> {
        self.put_keyed(schema, batch, &encoded.keys, replacing)
    }

    /// [`Self::put`] with `keys`, the batch's keys encoded in row order.
    fn put_keyed(
        &mut self,
        schema: &DatasetSchema,
        batch: &RecordBatch,
        keys: &[Vec<u8>],
        replacing: bool,
    ) -> Result<(), StoreError> {
        let index = self.index;
        let dataset = index.dataset(&schema.name)?;
        let records = encode_values(schema, batch)?;
        // in key order, B-tree pages are filled one after another instead of at random
        let mut order: Vec<usize> = (0..keys.len()).collect();
        order.sort_unstable_by(|a, b| keys[*a].cmp(&keys[*b]));
        if replacing && !dataset.ordered.is_empty() {
            let mut last_block = LastBlock::default();
            for &i in &order {
                self.unindex_stored(schema, dataset, &keys[i], &mut last_block)?;
            }
        }
        if self.in_parts || keys.len() >= BULK_RECORDS {
            let changes = sorted_changes(keys, &order, |i| Some(records[i].as_slice()));
            dataset.records.write_to_blocks(self.tx()?, &changes)?;
        } else {
            let stored_last = last_key(dataset.records.recent, self.tx()?)?;
            let mut last = stored_last.as_deref();
            for &i in &order {
                let flags = put_flags(&keys[i], &mut last);
                dataset
                    .records
                    .put(self.tx()?, &keys[i], &records[i], flags)?;
            }
        }
        for ordered in &dataset.ordered {
            let entries = ordered.entry_keys(batch)?;
            let mut order: Vec<usize> = (0..entries.num_rows()).collect();
            order.sort_unstable_by(|a, b| entries.row(*a).cmp(&entries.row(*b)));
            let stored_last = last_key(ordered.db, self.tx()?)?;
            let mut last = stored_last.as_deref();
            for i in order {
                let entry = entries.row(i).data();
                let flags = put_flags(entry, &mut last);
                ordered
                    .db
                    .put_with_flags(self.tx()?, flags, entry, &())
                    .map_err(index_error)?;
            }
        }
        let entries_per_record = 1 + dataset.ordered.len() as u64;
        self.wrote(batch.num_rows() as u64 * entries_per_record)
    }

    /// Removes the records whose keys are the rows of `key_columns` (in key order), with their
    /// declared-index entries.
    pub fn delete(
        &mut self,
        schema: &DatasetSchema,
        key_columns: &[ArrayRef],
    ) -> Result<(), StoreError> {
        let dataset = self.index.dataset(&schema.name)?;
        let mut keys = dataset.keys.encode(key_columns)?;
        keys.sort_unstable();
        keys.dedup();
        let mut last = LastBlock::default();
        if self.in_parts || keys.len() >= BULK_RECORDS {
            for key in &keys {
                self.unindex_stored(schema, dataset, key, &mut last)?;
            }
            let changes: Vec<Change<'_>> = keys.iter().map(|k| (k.as_slice(), None)).collect();
            dataset.records.write_to_blocks(self.tx()?, &changes)?;
        } else {
            for key in &keys {
                self.remove_in(schema, key, &mut last)?;
            }
        }
        let entries_per_record = 1 + self.index.dataset(&schema.name)?.ordered.len() as u64;
        self.wrote(keys.len() as u64 * entries_per_record)
    }

    /// Removes the record under an encoded key, if there is one, with its declared-index entries.
    pub fn remove(&mut self, schema: &DatasetSchema, key: &[u8]) -> Result<(), StoreError> {
        self.remove_in(schema, key, &mut LastBlock::default())
    }

    /// [`Self::remove`], with the block the last lookup of a run in key order decoded.
    fn remove_in(
        &mut self,
        schema: &DatasetSchema,
        key: &[u8],
        last: &mut LastBlock,
    ) -> Result<(), StoreError> {
        let index = self.index;
        let dataset = index.dataset(&schema.name)?;
        if !dataset.ordered.is_empty() {
            self.unindex_stored(schema, dataset, key, last)?;
        }
        dataset.records.remove(self.tx()?, key, last)
    }

    /// Removes the declared-index entries of the record stored under `key`, if there is one, before
    /// it is replaced.
    fn unindex_stored(
        &mut self,
        schema: &DatasetSchema,
        dataset: &DatasetIndex,
        key: &[u8],
        last: &mut LastBlock,
    ) -> Result<(), StoreError> {
        let Some(stored) = dataset.records.get(self.tx()?, key, last)? else {
            return Ok(());
        };
        let stored = dataset.decode(schema, &[key], &[&stored])?;
        for ordered in &dataset.ordered {
            let entries = ordered.entry_keys(&stored)?;
            ordered
                .db
                .delete(self.tx()?, entries.row(0).as_ref())
                .map_err(index_error)?;
        }
        Ok(())
    }

    /// Commits the records with the sequence number of the DuckDB transaction that stored them.
    pub fn commit(mut self, seq: u64) -> Result<(), StoreError> {
        for dataset in self.index.datasets.values() {
            let mut cursor = dataset.fold_cursor.lock();
            dataset.records.fold_step(self.tx()?, &mut cursor)?;
        }
        self.index
            .meta
            .put(self.tx()?, "seq", &seq)
            .map_err(index_error)?;
        match self.tx.take() {
            Some(tx) => tx.commit().map_err(index_error),
            None => Err(StoreError::Internal("no open key index transaction".into())),
        }
    }
}

/// The changes of the rows in `order` (sorted by key) under `keys`, each key once: of rows with
/// one key, the last in row order, as puts one after another would leave it.
fn sorted_changes<'a>(
    keys: &'a [Vec<u8>],
    order: &[usize],
    value: impl Fn(usize) -> Option<&'a [u8]>,
) -> Vec<Change<'a>> {
    let mut order = order.to_vec();
    // stable, by key then row: the last of equal keys is the latest
    order.sort_by(|a, b| keys[*a].cmp(&keys[*b]).then(a.cmp(b)));
    let mut changes: Vec<Change<'a>> = Vec::with_capacity(order.len());
    for i in order {
        match changes.last_mut() {
            Some(last) if last.0 == keys[i].as_slice() => *last = (&keys[i], value(i)),
            _ => changes.push((&keys[i], value(i))),
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn puts_append_only_past_the_greatest_key() {
        let stored = b"m".to_vec();
        let mut last = Some(stored.as_slice());
        let keys: [&[u8]; 6] = [b"a", b"m", b"n", b"n", b"o", b"z"];
        let appended: Vec<bool> = keys
            .iter()
            .map(|key| put_flags(key, &mut last).contains(PutFlags::APPEND))
            .collect();
        // below or at the stored key, and a key put again, are put in place (replacing)
        assert_eq!(appended, [false, false, true, false, true, true]);
        let mut empty = None;
        assert!(put_flags(b"a", &mut empty).contains(PutFlags::APPEND));
    }
}
