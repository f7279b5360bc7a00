//! The single writer: one thread owns the write connection and applies insert requests one at a
//! time, in arrival order, from a bounded queue. Being alone, it can check keys and insert without
//! races and without unique indexes in DuckDB.

use std::collections::HashSet;
use std::sync::Arc;
use std::thread::JoinHandle;

use arrow_array::RecordBatch;
use dataforge_domain::ports::{ConflictReason, ConflictingKey, StoreError};
use dataforge_domain::schema::DatasetSchema;
use dataforge_domain::value::Value;
use duckdb::Connection;
use tokio::sync::{mpsc, oneshot};

use crate::sql::{column_list, quote};
use crate::store_error;

/// Conflicting keys listed in one answer, at most.
const MAX_LISTED_KEYS: usize = 100;

/// One insert request waiting for the writer.
pub(crate) struct InsertJob {
    pub dataset: Arc<DatasetSchema>,
    pub batch: RecordBatch,
    pub reply: oneshot::Sender<Result<u64, StoreError>>,
}

/// The handle the store keeps: the queue's sending end and the thread to join at shutdown.
pub(crate) struct Writer {
    pub queue: mpsc::Sender<InsertJob>,
    pub thread: JoinHandle<()>,
}

pub(crate) fn start(conn: Connection, queue_size: usize) -> Result<Writer, StoreError> {
    let (queue, mut jobs) = mpsc::channel::<InsertJob>(queue_size.max(1));
    let thread = std::thread::Builder::new()
        .name("dataforge-writer".into())
        .spawn(move || {
            let mut state = WriterState {
                conn,
                staged: HashSet::new(),
            };
            while let Some(job) = jobs.blocking_recv() {
                let result = state.insert(&job.dataset, job.batch);
                if let Err(e) = &result
                    && !matches!(e, StoreError::Conflict { .. })
                {
                    tracing::error!(dataset = %job.dataset.name, error = %e, "insert failed");
                }
                let _ = job.reply.send(result);
            }
            if let Err(e) = state.conn.execute_batch("CHECKPOINT") {
                tracing::warn!(error = %e, "checkpoint at shutdown failed");
            }
        })
        .map_err(|e| StoreError::Internal(format!("cannot start the writer thread: {e}")))?;
    Ok(Writer { queue, thread })
}

struct WriterState {
    conn: Connection,
    /// Datasets whose staging table exists on this connection.
    staged: HashSet<String>,
}

impl WriterState {
    fn staging_table(&mut self, schema: &DatasetSchema) -> Result<String, StoreError> {
        let name = format!("staging__{}", schema.name);
        if self.staged.insert(schema.name.clone()) {
            let sql = format!(
                "CREATE OR REPLACE TEMP TABLE {} AS SELECT * FROM {} LIMIT 0",
                quote(&name),
                quote(&schema.name)
            );
            if let Err(e) = self.conn.execute_batch(&sql) {
                self.staged.remove(&schema.name);
                return Err(store_error(e));
            }
        }
        Ok(name)
    }

    /// Stages the batch, checks its keys, then inserts it in one transaction, or not at all.
    fn insert(&mut self, schema: &DatasetSchema, batch: RecordBatch) -> Result<u64, StoreError> {
        let rows = batch.num_rows() as u64;
        if rows == 0 {
            return Ok(0);
        }
        let staging = self.staging_table(schema)?;
        self.conn
            .execute_batch(&format!("DELETE FROM temp.{}", quote(&staging)))
            .map_err(store_error)?;
        {
            let mut appender = self
                .conn
                .appender_to_catalog_and_db(&staging, "temp", "main")
                .map_err(store_error)?;
            appender.append_record_batch(batch).map_err(store_error)?;
            appender.flush().map_err(store_error)?;
        }
        let conflicts = self.conflicts(schema, &staging)?;
        if let Some(error) = conflicts {
            return Err(error);
        }
        let sql = format!(
            "BEGIN TRANSACTION; INSERT INTO {} SELECT * FROM temp.{}; COMMIT",
            quote(&schema.name),
            quote(&staging)
        );
        if let Err(e) = self.conn.execute_batch(&sql) {
            let _ = self.conn.execute_batch("ROLLBACK");
            return Err(store_error(e));
        }
        Ok(rows)
    }

    /// Keys repeated within the staged rows, then keys already stored.
    fn conflicts(
        &self,
        schema: &DatasetSchema,
        staging: &str,
    ) -> Result<Option<StoreError>, StoreError> {
        let key_names: Vec<&str> = schema.key_fields().map(|f| f.name.as_str()).collect();
        let keys = column_list(key_names.iter().copied());
        let staged = format!("temp.{}", quote(staging));
        let repeated = format!("SELECT {keys} FROM {staged} GROUP BY {keys} HAVING count(*) > 1");
        let matches = key_names
            .iter()
            .map(|k| format!("t.{0} = s.{0}", quote(k)))
            .collect::<Vec<_>>()
            .join(" AND ");
        let existing = format!(
            "SELECT {} FROM {staged} s WHERE EXISTS (SELECT 1 FROM {} t WHERE {matches})",
            key_names
                .iter()
                .map(|k| format!("s.{}", quote(k)))
                .collect::<Vec<_>>()
                .join(", "),
            quote(&schema.name)
        );
        let mut keys_found = Vec::new();
        let mut total = 0;
        for (sql, reason) in [
            (repeated, ConflictReason::Repeated),
            (existing, ConflictReason::Exists),
        ] {
            let count: u64 = self
                .conn
                .query_row(&format!("SELECT count(*) FROM ({sql})"), [], |row| {
                    row.get(0)
                })
                .map_err(store_error)?;
            if count == 0 {
                continue;
            }
            total += count;
            let room = MAX_LISTED_KEYS.saturating_sub(keys_found.len());
            let listed = format!(
                "{sql} ORDER BY {} LIMIT {room}",
                (1..=key_names.len())
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let mut statement = self.conn.prepare(&listed).map_err(store_error)?;
            for batch in statement.query_arrow([]).map_err(store_error)? {
                for row in 0..batch.num_rows() {
                    let key = schema
                        .key_fields()
                        .enumerate()
                        .map(|(col, field)| {
                            Value::from_array(field.field_type, batch.column(col), row)
                        })
                        .collect();
                    keys_found.push(ConflictingKey { key, reason });
                }
            }
        }
        Ok((total > 0).then_some(StoreError::Conflict {
            keys: keys_found,
            total,
        }))
    }
}
