//! The check a migration makes of stored records before it changes their table: every record, as
//! the declared schema would hold it, against the declared rules. Engines read their records in
//! batches (shaped as the declared schema) and hand them here; the refusal names, per field and
//! rule, how many records break it and the keys of the first ones.

use std::collections::BTreeMap;

use arrow_array::RecordBatch;

use super::DatasetSchema;
use crate::validate::{RejectedCells, check_batch};
use crate::value::Value;

/// Records with a problem listed per rule, at most.
const LISTED_KEYS: usize = 10;

/// What the batches seen so far break.
pub struct StoredRecordsCheck<'a> {
    declared: &'a DatasetSchema,
    /// (field, rule) to the number of records and the first keys.
    broken: BTreeMap<(String, &'static str), (u64, Vec<String>)>,
    next_row: u64,
}

impl<'a> StoredRecordsCheck<'a> {
    pub fn new(declared: &'a DatasetSchema) -> Self {
        StoredRecordsCheck {
            declared,
            broken: BTreeMap::new(),
            next_row: 1,
        }
    }

    /// Checks the next batch of stored records.
    pub fn check(&mut self, batch: &RecordBatch) {
        let (declared, first_row) = (self.declared, self.next_row);
        let broken = &mut self.broken;
        check_batch(
            declared,
            batch,
            first_row,
            &RejectedCells::default(),
            &mut |v| {
                let entry = broken
                    .entry((v.field.unwrap_or_default(), v.code))
                    .or_default();
                entry.0 += 1;
                if entry.1.len() < LISTED_KEYS {
                    entry
                        .1
                        .push(key_text(declared, batch, (v.row - first_row) as usize));
                }
            },
        );
        self.next_row += batch.num_rows() as u64;
    }

    /// Why the migration may not go on, if a record broke a rule.
    pub fn refusal(&self) -> Option<String> {
        if self.broken.is_empty() {
            return None;
        }
        let lines: Vec<String> = self
            .broken
            .iter()
            .map(|((field, rule), (count, keys))| {
                format!(
                    "  field `{field}`, rule `{rule}`: {count} record(s), keys {}",
                    keys.join(", ")
                )
            })
            .collect();
        Some(format!(
            "stored records of {} break the new schema, so it was not applied:\n{}\n\
             correct or delete those records (PATCH or DELETE), or relax the schema, then start again",
            self.declared.name,
            lines.join("\n")
        ))
    }
}

/// A record's key as text, e.g. `(1042, 100000, 2020-01-01T00:00:00Z)`, from a batch shaped as
/// the schema.
pub fn key_text(schema: &DatasetSchema, batch: &RecordBatch, row: usize) -> String {
    let values: Vec<String> = schema
        .key_fields()
        .zip(&schema.primary_key)
        .map(|(f, &i)| Value::from_array(f.field_type, batch.column(i), row).to_string())
        .collect();
    format!("({})", values.join(", "))
}

/// The refusal of a new primary key that stored records repeat, listing some of its keys.
pub fn repeated_keys_refusal(dataset: &str, listed: &[String]) -> Option<String> {
    (!listed.is_empty()).then(|| {
        format!(
            "stored records of {dataset} repeat keys of the new primary key, so it was not applied: {}",
            listed.join(", ")
        )
    })
}

/// Repeated keys listed when a new primary key is refused, at most.
pub const LISTED_REPEATED_KEYS: usize = LISTED_KEYS;

/// A key as text from a batch whose columns are the key fields, in key order.
pub fn grouped_key_text(schema: &DatasetSchema, batch: &RecordBatch, row: usize) -> String {
    let values: Vec<String> = schema
        .key_fields()
        .enumerate()
        .map(|(i, f)| Value::from_array(f.field_type, batch.column(i), row).to_string())
        .collect();
    format!("({})", values.join(", "))
}
