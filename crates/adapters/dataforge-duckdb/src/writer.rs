//! The single writer: one thread owns the write connection and applies requests one at a time,
//! in arrival order, from a bounded queue. A request's batches are first staged in a temporary
//! table of its own (DuckDB spills it to disk past its memory limit, so a large upload does not
//! grow memory); its commit then settles keys and stores the staged rows in one transaction.
//! Being alone, the writer can check keys and insert without races and without unique indexes.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
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

/// Work for the writer thread.
pub(crate) enum WriterJob {
    /// Appends a batch to a write's staging table, creating it on first use.
    Stage {
        write: u64,
        /// Alive while the write's handle is; a write whose handle is gone uncommitted is discarded.
        alive: Weak<()>,
        dataset: Arc<DatasetSchema>,
        batch: RecordBatch,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Stores a write's staged rows and drops its staging table.
    Commit {
        write: u64,
        dataset: Arc<DatasetSchema>,
        mode: ConflictMode,
        reply: oneshot::Sender<Result<WriteOutcome, StoreError>>,
    },
}

/// The handle the store keeps: the queue's sending end and the thread to join at shutdown.
pub(crate) struct Writer {
    pub queue: mpsc::Sender<WriterJob>,
    pub thread: JoinHandle<()>,
}

pub(crate) fn start(conn: Connection, queue_size: usize) -> Result<Writer, StoreError> {
    let (queue, mut jobs) = mpsc::channel::<WriterJob>(queue_size.max(1));
    let thread = std::thread::Builder::new()
        .name("dataforge-writer".into())
        .spawn(move || {
            let mut state = WriterState {
                conn,
                staged: HashMap::new(),
            };
            while let Some(job) = jobs.blocking_recv() {
                state.discard_abandoned();
                match job {
                    WriterJob::Stage {
                        write,
                        alive,
                        dataset,
                        batch,
                        reply,
                    } => {
                        let _ = reply.send(state.stage(write, alive, &dataset, batch));
                    }
                    WriterJob::Commit {
                        write,
                        dataset,
                        mode,
                        reply,
                    } => {
                        let result = state.commit(write, &dataset, mode);
                        if let Err(e) = &result
                            && !matches!(e, StoreError::Conflict { .. })
                        {
                            tracing::error!(dataset = %dataset.name, error = %e, "write failed");
                        }
                        let _ = reply.send(result);
                    }
                }
            }
            state.discard_abandoned();
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
    /// Writes with a staging table, and whether their handle is still alive.
    staged: HashMap<u64, Weak<()>>,
}

fn staging_table(write: u64) -> String {
    format!("temp.{}", quote(&format!("staging__{write}")))
}

impl WriterState {
    fn execute(&self, sql: &str) -> Result<u64, StoreError> {
        self.conn
            .execute(sql, [])
            .map(|n| n as u64)
            .map_err(store_error)
    }

    /// Drops the staging tables of writes abandoned before their commit (a failed request).
    fn discard_abandoned(&mut self) {
        let abandoned: Vec<u64> = self
            .staged
            .iter()
            .filter(|(_, alive)| alive.strong_count() == 0)
            .map(|(id, _)| *id)
            .collect();
        for write in abandoned {
            self.drop_staging(write);
        }
    }

    fn drop_staging(&mut self, write: u64) {
        self.staged.remove(&write);
        if let Err(e) = self
            .conn
            .execute_batch(&format!("DROP TABLE IF EXISTS {}", staging_table(write)))
        {
            tracing::warn!(write, error = %e, "could not drop a staging table");
        }
    }

    /// Appends a batch to the write's staging table; rows keep their request order in `rowid`.
    fn stage(
        &mut self,
        write: u64,
        alive: Weak<()>,
        schema: &DatasetSchema,
        batch: RecordBatch,
    ) -> Result<(), StoreError> {
        if !self.staged.contains_key(&write) {
            self.conn
                .execute_batch(&format!(
                    "CREATE TEMP TABLE {} AS SELECT * FROM {} LIMIT 0",
                    quote(&format!("staging__{write}")),
                    quote(&schema.name)
                ))
                .map_err(store_error)?;
            self.staged.insert(write, alive);
        }
        let name = format!("staging__{write}");
        let mut appender = self
            .conn
            .appender_to_catalog_and_db(&name, "temp", "main")
            .map_err(store_error)?;
        appender.append_record_batch(batch).map_err(store_error)?;
        appender.flush().map_err(store_error)
    }

    /// Settles key conflicts as `mode` says and stores the staged rows in one transaction, or
    /// nothing; the staging table is dropped either way.
    fn commit(
        &mut self,
        write: u64,
        schema: &DatasetSchema,
        mode: ConflictMode,
    ) -> Result<WriteOutcome, StoreError> {
        if !self.staged.contains_key(&write) {
            return Ok(WriteOutcome::default());
        }
        let result = self.store(&staging_table(write), schema, mode);
        self.drop_staging(write);
        result
    }

    fn store(
        &self,
        staged: &str,
        schema: &DatasetSchema,
        mode: ConflictMode,
    ) -> Result<WriteOutcome, StoreError> {
        let rows: u64 = self
            .conn
            .query_row(&format!("SELECT count(*) FROM {staged}"), [], |row| {
                row.get(0)
            })
            .map_err(store_error)?;
        let keys = column_list(schema.key_fields().map(|f| f.name.as_str()));
        let table = quote(&schema.name);
        let matches = key_matches(schema);
        let mut outcome = WriteOutcome::default();
        match mode {
            ConflictMode::Error => {
                if let Some(error) = self.conflicts(schema, staged)? {
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
        let mut apply = || -> Result<(), StoreError> {
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
        };
        if let Err(e) = apply() {
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
