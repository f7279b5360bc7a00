//! Writes to the index: after the store's commit, or before it for deferred writes. Records are put
//! in key order, so that LMDB appends to pages rather than splitting them.

use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch};
use dataforge_domain::ports::StoreError;
use dataforge_domain::schema::DatasetSchema;
use heed::PutFlags;
use heed::types::{Bytes, DecodeIgnore};

use super::stored::{Change, LastBlock};
use super::{DatasetIndex, KeyIndex};
use crate::error::index_error;
use crate::ordered_index::OrderedIndex;
use crate::row_codec::{encode_rows, encode_values};

/// Records in one put or delete from which they are written to the blocks directly rather than as
/// recent entries (see [`stored`](super::stored)): a write this large would rewrite most blocks it
/// touches anyway.
const BULK_RECORDS: usize = 4096;

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
    pub(super) fn tx(&mut self) -> Result<&mut heed::RwTxn<'a>, StoreError> {
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
            self.put_entries(ordered, batch)?;
        }
        let entries_per_record = 1 + dataset.ordered.len() as u64;
        self.wrote(batch.num_rows() as u64 * entries_per_record)
    }

    /// Puts the entries of `batch`'s records in the declared index `ordered`, in its order.
    fn put_entries(
        &mut self,
        ordered: &OrderedIndex,
        batch: &RecordBatch,
    ) -> Result<(), StoreError> {
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
        Ok(())
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

    /// Commits the records with the sequence number of the store's transaction that stored them.
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

impl KeyIndex {
    /// The keys of `batch` (shaped as the dataset's schema) in the index's encoding, with its whole
    /// records as the journal holds them.
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
    /// the mapped pages are released (every 64Ki entries): LMDB keeps a transaction's dirty pages
    /// in memory until it commits (up to 512 MiB), so one transaction for a multi-gigabyte upload
    /// held that much. Only the last part records the sequence number, so a crash between parts
    /// leaves the index behind the store and the next start rebuilds it, as after a crash between
    /// the store's commit and the index's.
    pub fn write_in_parts(&self) -> Result<IndexWrite<'_>, StoreError> {
        let mut write = self.write()?;
        write.in_parts = true;
        Ok(write)
    }
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
