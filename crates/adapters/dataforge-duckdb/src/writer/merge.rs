//! `on_conflict=merge`: a staged write's records are merged into the stored ones before they
//! replace them as an upsert would. A field a record leaves null (omitted, decoded with the
//! dataset's partial schema) keeps its stored value; a record whose key is not stored takes the
//! declared defaults and must then be complete.

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use dataforge_domain::ports::{IncompleteRecord, StoreError};
use dataforge_domain::schema::DatasetSchema;
use dataforge_domain::value::Value;
use duckdb::types::Value as DuckValue;

use super::{MAX_LISTED_KEYS, ROW_COLUMN, WriterState};
use crate::batches::for_each_batch;
use crate::sql::{bind, column_list, key_matches, quote};

impl WriterState {
    /// Inside an open transaction: rewrites the staged records (one per key) as merged with the
    /// stored ones, fills defaults into those with a new key, and refuses the write if one of
    /// those lacks a required field.
    pub(super) fn merge_stored(
        &self,
        schema: &DatasetSchema,
        staged: &str,
    ) -> Result<(), StoreError> {
        let table = quote(&schema.name);
        let matches = key_matches(schema);
        let others: Vec<_> = schema
            .fields
            .iter()
            .enumerate()
            .filter(|(i, _)| !schema.primary_key.contains(i))
            .map(|(_, f)| f)
            .collect();
        if others.is_empty() {
            return Ok(());
        }
        let kept: Vec<String> = others
            .iter()
            .map(|f| format!("{0} = coalesce(s.{0}, t.{0})", quote(&f.name)))
            .collect();
        self.execute(&format!(
            "UPDATE {staged} AS s SET {} FROM {table} AS t WHERE {matches}",
            kept.join(", ")
        ))?;
        let new_key = format!("NOT EXISTS (SELECT 1 FROM {table} t WHERE {matches})");
        let defaulted: Vec<_> = others.iter().filter(|f| f.default.is_some()).collect();
        if !defaulted.is_empty() {
            let assignments: Vec<String> = defaulted
                .iter()
                .map(|f| format!("{0} = coalesce(s.{0}, ?)", quote(&f.name)))
                .collect();
            let params: Vec<DuckValue> = defaulted
                .iter()
                .map(|f| bind(f.default.as_ref().unwrap_or(&Value::Null)))
                .collect();
            self.execute_bound(
                &format!(
                    "UPDATE {staged} AS s SET {} WHERE {new_key}",
                    assignments.join(", ")
                ),
                &params,
            )?;
        }
        self.check_complete(schema, staged, &new_key)
    }

    /// Refuses the write when a staged record with a new key has no value for a required field,
    /// listing the first such (record, field) pairs.
    fn check_complete(
        &self,
        schema: &DatasetSchema,
        staged: &str,
        new_key: &str,
    ) -> Result<(), StoreError> {
        let keys = column_list(schema.key_fields().map(|f| f.name.as_str()));
        let mut records = Vec::new();
        let mut total = 0u64;
        for (i, field) in schema.fields.iter().enumerate() {
            if !field.required || schema.primary_key.contains(&i) {
                continue;
            }
            let missing = format!(
                "FROM {staged} s WHERE s.{} IS NULL AND {new_key}",
                quote(&field.name)
            );
            let count = self.count(&format!("(SELECT 1 {missing})"))?;
            total += count;
            let room = MAX_LISTED_KEYS.saturating_sub(records.len());
            if count == 0 || room == 0 {
                continue;
            }
            let sql = format!(
                "SELECT s.{}, {keys} {missing} ORDER BY s.{0} LIMIT {room}",
                quote(ROW_COLUMN)
            );
            for_each_batch(&self.conn, &sql, [], |batch| {
                let rows = batch.column(0).as_primitive::<Int64Type>();
                for r in 0..batch.num_rows() {
                    let key = schema
                        .key_fields()
                        .enumerate()
                        .map(|(k, f)| Value::from_array(f.field_type, batch.column(k + 1), r))
                        .collect();
                    records.push(IncompleteRecord {
                        row: rows.value(r) as u64 + 1,
                        key,
                        field: field.name.clone(),
                    });
                }
                Ok(())
            })?;
        }
        if total == 0 {
            return Ok(());
        }
        records.sort_by_key(|r| r.row);
        Err(StoreError::Incomplete { records, total })
    }
}
