//! The single writer: one thread owns the write connection and applies insert requests one at a
//! time, in arrival order, from a bounded queue. Being alone, it can check keys and insert without
//! races and without unique indexes in DuckDB.

use std::sync::Arc;
use std::thread::JoinHandle;

use arrow_array::RecordBatch;
use dataforge_domain::ports::{ConflictReason, ConflictingKey, StoreError};
use dataforge_domain::schema::DatasetSchema;
use dataforge_domain::value::Value;
use dataforge_domain::write::{ConflictMode, WriteOutcome};
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
    pub mode: ConflictMode,
    pub reply: oneshot::Sender<Result<WriteOutcome, StoreError>>,
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
            let mut state = WriterState { conn };
            while let Some(job) = jobs.blocking_recv() {
                let result = state.write(&job.dataset, job.batch, job.mode);
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

/// `t.k1 = s.k1 AND ...` over the primary key, joining the table `t` to staged rows `s`.
fn key_matches(schema: &DatasetSchema) -> String {
    schema
        .key_fields()
        .map(|f| format!("t.{0} = s.{0}", quote(&f.name)))
        .collect::<Vec<_>>()
        .join(" AND ")
}

struct WriterState {
    conn: Connection,
}

impl WriterState {
    fn execute(&self, sql: &str) -> Result<u64, StoreError> {
        self.conn
            .execute(sql, [])
            .map(|n| n as u64)
            .map_err(store_error)
    }

    /// Loads the batch into a fresh temporary table for this dataset, rows in batch order (so
    /// `rowid` is the position in the request).
    fn stage(&self, schema: &DatasetSchema, batch: RecordBatch) -> Result<String, StoreError> {
        let staging = format!("staging__{}", schema.name);
        self.conn
            .execute_batch(&format!(
                "CREATE OR REPLACE TEMP TABLE {} AS SELECT * FROM {} LIMIT 0",
                quote(&staging),
                quote(&schema.name)
            ))
            .map_err(store_error)?;
        let mut appender = self
            .conn
            .appender_to_catalog_and_db(&staging, "temp", "main")
            .map_err(store_error)?;
        appender.append_record_batch(batch).map_err(store_error)?;
        appender.flush().map_err(store_error)?;
        Ok(format!("temp.{}", quote(&staging)))
    }

    /// Stages the batch, settles key conflicts as `mode` says, and stores the result in one
    /// transaction, or nothing.
    fn write(
        &mut self,
        schema: &DatasetSchema,
        batch: RecordBatch,
        mode: ConflictMode,
    ) -> Result<WriteOutcome, StoreError> {
        let rows = batch.num_rows() as u64;
        if rows == 0 {
            return Ok(WriteOutcome::default());
        }
        let staged = self.stage(schema, batch)?;
        let keys = column_list(schema.key_fields().map(|f| f.name.as_str()));
        let table = quote(&schema.name);
        let matches = key_matches(schema);
        let mut outcome = WriteOutcome::default();
        match mode {
            ConflictMode::Error => {
                if let Some(error) = self.conflicts(schema, &staged)? {
                    return Err(error);
                }
            }
            // keep the first record of each key (ignore) or the last (upsert)
            ConflictMode::Ignore | ConflictMode::Upsert => {
                let keep = if mode == ConflictMode::Ignore {
                    "min"
                } else {
                    "max"
                };
                outcome.skipped = self.execute(&format!(
                    "DELETE FROM {staged} WHERE rowid NOT IN (SELECT {keep}(rowid) FROM {staged} GROUP BY {keys})"
                ))?;
            }
        }
        self.conn
            .execute_batch("BEGIN TRANSACTION")
            .map_err(store_error)?;
        let applied = (|| -> Result<(), StoreError> {
            match mode {
                ConflictMode::Error => {
                    outcome.inserted =
                        self.execute(&format!("INSERT INTO {table} SELECT * FROM {staged}"))?
                }
                ConflictMode::Ignore => {
                    outcome.inserted = self.execute(&format!(
                        "INSERT INTO {table} SELECT * FROM {staged} s WHERE NOT EXISTS (SELECT 1 FROM {table} t WHERE {matches})"
                    ))?;
                    outcome.skipped = rows - outcome.inserted;
                }
                ConflictMode::Upsert => {
                    outcome.updated = self.execute(&format!(
                        "DELETE FROM {table} t WHERE EXISTS (SELECT 1 FROM {staged} s WHERE {matches})"
                    ))?;
                    let stored =
                        self.execute(&format!("INSERT INTO {table} SELECT * FROM {staged}"))?;
                    outcome.inserted = stored - outcome.updated;
                }
            }
            self.conn.execute_batch("COMMIT").map_err(store_error)
        })();
        if let Err(e) = applied {
            let _ = self.conn.execute_batch("ROLLBACK");
            return Err(e);
        }
        Ok(outcome)
    }

    /// Keys repeated within the staged rows, then keys already stored.
    fn conflicts(
        &self,
        schema: &DatasetSchema,
        staged: &str,
    ) -> Result<Option<StoreError>, StoreError> {
        let key_names: Vec<&str> = schema.key_fields().map(|f| f.name.as_str()).collect();
        let keys = column_list(key_names.iter().copied());
        let repeated = format!("SELECT {keys} FROM {staged} GROUP BY {keys} HAVING count(*) > 1");
        let matches = key_matches(schema);
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
