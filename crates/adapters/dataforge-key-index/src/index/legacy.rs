//! Indexes of earlier formats listed the writes they acknowledged before the store held them in a
//! log of their own (`_deferred`; the journal holds them now): the first start after an upgrade
//! still appends them to the store, then empties the log.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use dataforge_domain::ports::StoreError;
use dataforge_domain::schema::{Catalog, DatasetSchema};

use super::stored::LastBlock;
use super::{KeyIndex, REPLAY_CHUNK, refuse_replay};
use crate::error::index_error;
use crate::mirrored::{DeferredWrites, MirroredStore};
use crate::ordered_index::OrderedIndex;
use crate::row_codec::decode_rows;

/// The last format storing whole records ([`encode_rows`](crate::row_codec::encode_rows)) rather
/// than what their keys do not hold ([`encode_values`](crate::row_codec::encode_values)); its log
/// of deferred writes is still replayed at the first start after an upgrade.
const FORMAT_WHOLE_RECORDS: u64 = 5;

/// The format before each dataset's layout was recorded apart (see
/// `start::built_for`); its log of
/// deferred writes is still replayed at the first start after an upgrade.
const FORMAT_WHOLE_LAYOUT: u64 = 4;

/// A dataset's keys in the log of deferred writes: of new records, and changed ones.
type LoggedKeys<'t> = (Vec<&'t [u8]>, HashSet<&'t [u8]>);

/// Marks a log entry of changed keys (dataset names never hold it).
const CHANGED: u8 = b'!';

/// The sequence number and dataset of a log entry of deferred writes, and whether it lists
/// changed keys ([`CHANGED`] before the dataset's name).
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

impl KeyIndex {
    /// Appends to the store the writes an index of an earlier version acknowledged from its own
    /// log of deferred writes, reading their records with the schemas the store's tables still
    /// have (`stored`), and answers the store's sequence number then (`seq` before). The log is
    /// emptied: it is only ever read.
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

    /// Whether an index of [`FORMAT_WHOLE_LAYOUT`] was built for the `stored` catalog (the first
    /// start after an upgrade replays its log of deferred writes).
    fn built_whole_for(&self, tx: &heed::RoTxn<'_>, stored: &Catalog) -> Result<bool, StoreError> {
        let format = self.meta.get(tx, "format").map_err(index_error)?;
        let layout = self.layout.get(tx, "layout").map_err(index_error)?;
        Ok(format == Some(FORMAT_WHOLE_LAYOUT) && layout == Some(whole_layout(stored).as_str()))
    }

    /// Appends to the store, all at once and with `indexed` as its sequence number, the records
    /// of the writes `stored + 1 ..= indexed` the log lists (writes that were acknowledged once in
    /// the index and not yet appended when the process stopped; the writer appends past 64Ki
    /// deferred records, so they are few). Answers false, changing nothing, when the log does not
    /// list every one of those writes.
    fn replay_deferred(
        &self,
        catalog: &Catalog,
        store: &impl MirroredStore,
        stored: u64,
        indexed: u64,
    ) -> Result<bool, StoreError> {
        let tx = self.read_txn()?;
        let Some(keys) = self.logged_keys(&tx, stored, indexed)? else {
            return Ok(false);
        };
        let whole = self.built_whole_for(&tx, catalog)?;
        let mut deferred = Vec::new();
        for (name, logged) in &keys {
            let schema = catalog
                .get(name)
                .ok_or_else(|| refuse_replay(name, "no schema file declares it"))?;
            deferred.push(self.logged_writes(&tx, schema, logged, whole)?);
        }
        drop(tx);
        store.append(&deferred, indexed).map(|()| true)
    }

    /// The keys the log lists for the writes after `stored`, per dataset, or `None` when it does
    /// not list every write `stored + 1 ..= indexed`.
    fn logged_keys<'t>(
        &self,
        tx: &'t heed::RoTxn<'_>,
        stored: u64,
        indexed: u64,
    ) -> Result<Option<HashMap<&'t str, LoggedKeys<'t>>>, StoreError> {
        let mut writes = HashSet::new();
        let mut keys: HashMap<&str, LoggedKeys<'_>> = HashMap::new();
        for entry in self.deferred.iter(tx).map_err(index_error)? {
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
        let complete = (stored + 1..=indexed).all(|seq| writes.contains(&seq));
        Ok(complete.then_some(keys))
    }

    /// The writes to `schema`'s dataset the log lists, with their records read from the index
    /// (stored whole by indexes of [`FORMAT_WHOLE_RECORDS`] and earlier, or `whole`).
    fn logged_writes(
        &self,
        tx: &heed::RoTxn<'_>,
        schema: &Arc<DatasetSchema>,
        (appended, changed): &LoggedKeys<'_>,
        whole: bool,
    ) -> Result<DeferredWrites, StoreError> {
        let whole_records = whole || self.built_in(tx, schema, FORMAT_WHOLE_RECORDS)?;
        if !whole_records && !self.built_for(tx, schema)? {
            return Err(refuse_replay(
                &schema.name,
                "its stored schema is not the one the key index holds its records in",
            ));
        }
        let dataset = self.dataset(&schema.name)?;
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
                found.push(dataset.records.get(tx, key, &mut last)?.ok_or_else(|| {
                    StoreError::Internal("a deferred write's record is missing".into())
                })?);
            }
            let found: Vec<&[u8]> = found.iter().map(|f| f.as_ref()).collect();
            batches.push(decode(chunk, &found)?);
        }
        let changed: Vec<Vec<u8>> = changed.iter().map(|k| k.to_vec()).collect();
        let (mut kept, mut found) = (Vec::new(), Vec::new());
        for key in &changed {
            if let Some(record) = dataset.records.get(tx, key, &mut last)? {
                kept.push(key.as_slice());
                found.push(record);
            }
        }
        let found: Vec<&[u8]> = found.iter().map(|f| f.as_ref()).collect();
        Ok(DeferredWrites {
            schema: Arc::clone(schema),
            appended: batches,
            current: vec![decode(&kept, &found)?],
            changed,
        })
    }
}
