//! Updates and deletes by filter, on the single writer like every write. The writer first appends
//! deferred writes (so SQL sees every acknowledged record), then in one DuckDB transaction notes
//! the keys of the selected records in a temporary table, refuses past `max_affected`, and runs
//! the `UPDATE` or `DELETE` with the same filter. After DuckDB commits with the next sequence
//! number, the key index and declared indexes follow in their own transaction with that number:
//! deleted keys are removed, updated records read back and replaced. A crash between the two
//! commits leaves the index's sequence behind DuckDB's, and the next start rebuilds it, as for
//! inserts.

use std::sync::Arc;
use std::time::Instant;

use dataforge_domain::change::{Change, Mutation};
use dataforge_domain::ports::StoreError;
use dataforge_domain::schema::DatasetSchema;
use dataforge_key_index::KeyIndex;
use duckdb::types::Value as DuckValue;

use super::WriterState;
use crate::batches::for_each_batch;
use crate::select::where_clause;
use crate::sql::{bind, column_list, key_matches, quote};

/// The temporary table holding the keys of the records a mutation changes.
const MUTATED: &str = "temp.\"mutated\"";

/// Changes of at most this many records are written to the key index in one transaction; larger
/// ones (a retention delete of millions) in parts, in bounded memory.
const ONE_INDEX_TRANSACTION: u64 = 64 * 1024;

impl WriterState {
    /// Applies a mutation; answers the number of records changed.
    pub(super) fn mutate(
        &mut self,
        schema: &Arc<DatasetSchema>,
        mutation: &Mutation,
    ) -> Result<u64, StoreError> {
        self.flush_deferred()?;
        let started = Instant::now();
        self.run("BEGIN TRANSACTION")?;
        let changed = self.change_in_duckdb(schema, mutation);
        let result = match changed {
            Ok(0) => self.run("ROLLBACK").map(|()| 0),
            Ok(n) => self.commit_mutation(schema, &mutation.change, n, started),
            Err(e) => {
                let _ = self.run("ROLLBACK");
                Err(e)
            }
        };
        if let Err(e) = self
            .conn
            .execute_batch(&format!("DROP TABLE IF EXISTS {MUTATED}"))
        {
            tracing::warn!(error = %e, "could not drop the table of mutated keys");
        }
        result
    }

    /// Inside the open transaction: notes the selected keys and changes the records; answers how
    /// many there are (nothing is changed past `max_affected`).
    fn change_in_duckdb(
        &self,
        schema: &DatasetSchema,
        mutation: &Mutation,
    ) -> Result<u64, StoreError> {
        let table = quote(&schema.name);
        let filter = where_clause(schema, &mutation.filter);
        let keys = column_list(schema.key_fields().map(|f| f.name.as_str()));
        self.execute_bound(
            &format!(
                "CREATE OR REPLACE TEMP TABLE mutated AS SELECT {keys} FROM {table}{}",
                filter.sql
            ),
            &filter.params,
        )?;
        let selected = self.count(MUTATED)?;
        if let Some(max) = mutation.max_affected
            && selected > max
        {
            return Err(StoreError::TooMany {
                affected: selected,
                max,
            });
        }
        if selected == 0 {
            return Ok(0);
        }
        match &mutation.change {
            Change::Delete => self.execute_bound(
                &format!("DELETE FROM {table}{}", filter.sql),
                &filter.params,
            ),
            Change::Update(values) => {
                let assignments: Vec<String> = values
                    .iter()
                    .map(|(field, _)| format!("{} = ?", quote(&schema.fields[*field].name)))
                    .collect();
                let mut params: Vec<DuckValue> = values.iter().map(|(_, v)| bind(v)).collect();
                params.extend(filter.params.iter().cloned());
                self.execute_bound(
                    &format!(
                        "UPDATE {table} SET {}{}",
                        assignments.join(", "),
                        filter.sql
                    ),
                    &params,
                )
            }
        }
    }

    /// Commits the open transaction with the next sequence number, then brings the key index in
    /// step (or drops it until the next start rebuilds it, should that fail).
    fn commit_mutation(
        &mut self,
        schema: &DatasetSchema,
        change: &Change,
        changed: u64,
        started: Instant,
    ) -> Result<u64, StoreError> {
        let next = self.seq.map(|seq| seq + 1);
        self.commit_duckdb(next)?;
        let committed = Instant::now();
        if let (Some(index), Some(seq)) = (self.index.clone(), next)
            && let Err(e) = self.index_mutation(&index, schema, change, changed, seq)
        {
            self.index_failed(e);
        }
        // the two parts' costs, for operators and the benchmark
        tracing::info!(
            dataset = %schema.name,
            records = changed,
            duckdb_ms = (committed - started).as_millis() as u64,
            key_index_ms = committed.elapsed().as_millis() as u64,
            "{} records by filter",
            match change {
                Change::Delete => "deleted",
                Change::Update(_) => "updated",
            }
        );
        Ok(changed)
    }

    /// Writes a committed mutation to the key index: the deleted keys are removed, the updated
    /// records replaced by their stored versions.
    fn index_mutation(
        &self,
        index: &KeyIndex,
        schema: &DatasetSchema,
        change: &Change,
        changed: u64,
        seq: u64,
    ) -> Result<(), StoreError> {
        let mut write = if changed > ONE_INDEX_TRANSACTION {
            index.write_in_parts()?
        } else {
            index.write()?
        };
        match change {
            Change::Delete => {
                let keys = column_list(schema.key_fields().map(|f| f.name.as_str()));
                for_each_batch(
                    &self.conn,
                    &format!("SELECT {keys} FROM {MUTATED}"),
                    [],
                    |batch| write.delete(schema, batch.columns()),
                )?;
            }
            Change::Update(_) => {
                let columns = column_list(schema.fields.iter().map(|f| f.name.as_str()));
                let sql = format!(
                    "SELECT {columns} FROM {} t WHERE EXISTS (SELECT 1 FROM {MUTATED} s WHERE {})",
                    quote(&schema.name),
                    key_matches(schema)
                );
                for_each_batch(&self.conn, &sql, [], |batch| {
                    write.put(schema, &batch, true)
                })?;
            }
        }
        write.commit(seq)
    }
}
