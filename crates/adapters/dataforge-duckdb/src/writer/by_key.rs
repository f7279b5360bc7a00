//! Updates and deletes of one record by key (`PATCH`/`DELETE .../records/{key}`), deferred like
//! small inserts: a group of them is applied to the key index alone (each change in turn, a later
//! one seeing an earlier one's result), listed in the log of deferred writes as changed keys and
//! synced, then acknowledged. The next append rewrites those keys' rows from the index (a `DELETE`
//! joined with the keys, then an append of their current records), many groups at a time; reads
//! through DuckDB wait for it, as for deferred inserts. Without the key index, or with deferral
//! off, each goes through SQL ([`super::mutate`]).

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::RecordBatch;
use dataforge_domain::change::{Change, Mutated, Mutation, key_filter};
use dataforge_domain::ports::StoreError;
use dataforge_domain::schema::DatasetSchema;
use dataforge_domain::value::Value;
use tokio::sync::oneshot;

use super::WriterState;
use crate::row_codec::one_value_array;

/// A change to the record with `key`.
pub(super) struct KeyChange {
    pub dataset: Arc<DatasetSchema>,
    pub key: Vec<Value>,
    pub change: Change,
    pub reply: oneshot::Sender<Result<Mutated, StoreError>>,
}

/// Per dataset and encoded key, the latest version of each record a group changed (`None` once
/// deleted), in the order first touched.
type Latest = Vec<(Arc<DatasetSchema>, Vec<u8>, Option<RecordBatch>)>;

impl WriterState {
    /// Whether changes by key are deferred.
    pub(super) fn defers_key_changes(&self) -> bool {
        !self.deferred.every.is_zero() && self.index.is_some() && self.seq.is_some()
    }

    /// Applies a group of changes by key, in order, and answers each (1 changed, with the record
    /// an update stored; 0 absent).
    pub(super) fn change_by_key(&mut self, changes: Vec<KeyChange>) {
        let results = match self.defer_key_changes(&changes) {
            Ok(results) => results,
            Err(e) => {
                tracing::warn!(error = %e, "could not defer changes by key; applying them with SQL");
                changes
                    .iter()
                    .map(|c| {
                        let mutation = Mutation {
                            filter: key_filter(&c.dataset, c.key.clone()),
                            change: c.change.clone(),
                            max_affected: None,
                            key: None,
                        };
                        self.mutate(&c.dataset, &mutation).map(Mutated::count)
                    })
                    .collect()
            }
        };
        for (change, result) in changes.into_iter().zip(results) {
            let _ = change.reply.send(result);
        }
    }

    /// The changes applied to the key index with the next sequence number, logged and synced. An
    /// error means the index holds none of them.
    fn defer_key_changes(
        &mut self,
        changes: &[KeyChange],
    ) -> Result<Vec<Result<Mutated, StoreError>>, StoreError> {
        let (Some(index), Some(seq)) = (self.index.clone(), self.seq.map(|s| s + 1)) else {
            return Err(StoreError::Internal(
                "no key index to defer changes to".into(),
            ));
        };
        let mut latest: Latest = Vec::new();
        let mut slots: HashMap<(String, Vec<u8>), usize> = HashMap::new();
        let mut results = Vec::with_capacity(changes.len());
        for change in changes {
            let schema = &change.dataset;
            let key = index.encode_key(schema, &change.key)?;
            let slot = slots.get(&(schema.name.clone(), key.clone())).copied();
            let current = match slot {
                Some(i) => latest[i].2.clone(),
                None => index.record(schema, &key)?,
            };
            let Some(current) = current else {
                results.push(Ok(Mutated::count(0)));
                continue;
            };
            let next = match &change.change {
                Change::Delete => None,
                Change::Update(values) => Some(with_values(schema, &current, values)?),
            };
            results.push(Ok(Mutated {
                changed: 1,
                record: next.clone(),
            }));
            match slot {
                Some(i) => latest[i].2 = next,
                None => {
                    slots.insert((schema.name.clone(), key.clone()), latest.len());
                    latest.push((Arc::clone(schema), key, next));
                }
            }
        }
        if latest.is_empty() {
            return Ok(results);
        }
        let mut write = index.write()?;
        for (schema, key, record) in &latest {
            match record {
                Some(record) => write.put(schema, record, true)?,
                None => write.remove(schema, key)?,
            }
        }
        for (schema, keys) in by_dataset(&latest) {
            write.defer(seq, &schema.name, true, &keys)?;
        }
        write.commit(seq)?;
        // committed: the changes are in the index, so they are deferred whatever the sync says
        self.seq = Some(seq);
        for (schema, keys) in by_dataset(&latest) {
            self.deferred.changed(&index, &schema, keys);
        }
        self.make_durable(&index);
        Ok(results)
    }
}

/// The changed keys of each dataset.
fn by_dataset(latest: &Latest) -> Vec<(Arc<DatasetSchema>, Vec<Vec<u8>>)> {
    let mut datasets: Vec<(Arc<DatasetSchema>, Vec<Vec<u8>>)> = Vec::new();
    for (schema, key, _) in latest {
        match datasets.iter_mut().find(|(s, _)| s.name == schema.name) {
            Some((_, keys)) => keys.push(key.clone()),
            None => datasets.push((Arc::clone(schema), vec![key.clone()])),
        }
    }
    datasets
}

/// A one-record batch with some fields set to new values.
fn with_values(
    schema: &DatasetSchema,
    record: &RecordBatch,
    values: &[(usize, Value)],
) -> Result<RecordBatch, StoreError> {
    let mut columns = record.columns().to_vec();
    for (field, value) in values {
        columns[*field] = one_value_array(schema.fields[*field].field_type, value);
    }
    RecordBatch::try_new(Arc::clone(schema.arrow_schema()), columns)
        .map_err(|e| StoreError::Internal(e.to_string()))
}
