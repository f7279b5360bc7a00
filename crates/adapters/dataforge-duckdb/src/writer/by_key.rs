//! Updates and deletes of one record by key (`PATCH`/`DELETE .../records/{key}`), deferred like
//! small inserts: a group of them is worked out on the key index (each change in turn, a later
//! one seeing an earlier one's result), its keys' latest records (or deletions) appended to the
//! journal and synced, then applied to the index alone, and acknowledged. The next append rewrites those keys' rows from the latest records the
//! writer keeps (a `DELETE` joined with the keys, then an append of those records), many groups
//! at a time; reads
//! through DuckDB wait for it, as for deferred inserts. Without the key index, or with deferral
//! off, each goes through SQL ([`super::mutate`]).

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::RecordBatch;
use dataforge_domain::change::{Change, Mutated, Mutation, key_filter};
use dataforge_domain::ports::StoreError;
use dataforge_domain::schema::DatasetSchema;
use dataforge_domain::value::Value;
use dataforge_key_index::journal::{EntryBuf, SectionKind};
use dataforge_key_index::one_value_array;
use tokio::sync::oneshot;

use super::WriterState;

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

    /// The changes journaled and applied to the key index with the next sequence number. An
    /// error means none of them is stored.
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
        let mut entry = EntryBuf::new(seq);
        let mut encoded = Vec::with_capacity(latest.len());
        for (schema, key, record) in &latest {
            let record = match record {
                Some(record) => Some(index.encode(schema, record)?),
                None => None,
            };
            encoded.push((schema, key, record));
        }
        for (schema, _) in by_dataset(&latest) {
            let items: Vec<(&[u8], Option<&[u8]>)> = encoded
                .iter()
                .filter(|(s, _, _)| s.name == schema.name)
                .map(|(_, key, record)| {
                    let record = record.as_ref().and_then(|r| r.records.first());
                    (key.as_slice(), record.map(Vec::as_slice))
                })
                .collect();
            entry.section(&schema.name, SectionKind::Changed, items.into_iter());
        }
        self.journaled(seq, &entry, |write| {
            for ((schema, key, record), (_, _, encoded)) in latest.iter().zip(&encoded) {
                match (record, encoded) {
                    (Some(record), Some(encoded)) => {
                        write.put_encoded(schema, record, encoded, true)?
                    }
                    _ => write.remove(schema, key)?,
                }
            }
            Ok(())
        })?;
        for (schema, key, record) in latest {
            self.deferred.changed(&schema, [(key, record)]);
        }
        self.append_when_many();
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
