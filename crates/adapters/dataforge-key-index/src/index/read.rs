//! Reads answered by the index alone, off the store: by key, and the bounded pages a declared
//! index answers.

use std::borrow::Cow;

use arrow_array::{ArrayRef, RecordBatch};
use dataforge_domain::ports::StoreError;
use dataforge_domain::query::RecordQuery;
use dataforge_domain::schema::DatasetSchema;
use dataforge_domain::value::Value;

use super::KeyIndex;
use super::stored::LastBlock;
use crate::ordered_index::IndexRange;
use crate::row_codec::{decode_values, one_value_array};

impl KeyIndex {
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
    /// `OrderedIndex::plan`).
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
}
