//! Before the index answers anything it must mirror the store exactly: at start it takes the
//! journal's writes it missed, or is rebuilt from the store when its sequence number, layout or
//! record counts differ from the store's.

use dataforge_domain::ports::StoreError;
use dataforge_domain::schema::{Catalog, DatasetSchema};

use super::{FORMAT, KeyIndex};
use crate::error::index_error;
use crate::journal::Entry;
use crate::mirrored::MirroredStore;
use crate::ordered_index::OrderedIndex;
use crate::row_codec::decode_rows;

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

impl KeyIndex {
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

    /// Rebuilds the index from the store unless it is in step with the store's sequence number
    /// `seq` and was built for `catalog` (its declared indexes and its fields).
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

    /// The sequence number of the last write the index holds, if it is in step with one.
    pub(super) fn sequence(&self) -> Result<Option<u64>, StoreError> {
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
    pub(super) fn built_for(
        &self,
        tx: &heed::RoTxn<'_>,
        schema: &DatasetSchema,
    ) -> Result<bool, StoreError> {
        self.built_in(tx, schema, FORMAT)
    }

    /// Whether the records of `schema`'s dataset were written for that schema in `format`.
    pub(super) fn built_in(
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
}
