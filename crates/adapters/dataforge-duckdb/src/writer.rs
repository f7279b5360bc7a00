//! The single writer: one thread owns the write connection and applies requests one at a time,
//! in arrival order, from a bounded queue. A request's batches are first staged in a temporary
//! table of its own (DuckDB spills it to disk past its memory limit, so a large upload does not
//! grow memory); its commit then settles keys and stores the staged rows. Commits that queue up
//! together are applied in one transaction (group commit), so many small concurrent writes cost
//! far fewer WAL syncs than requests.
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

/// Writes committed together in one transaction, at most.
const MAX_GROUP: usize = 256;

/// A write waiting for its commit.
struct Commit {
    write: u64,
    dataset: Arc<DatasetSchema>,
    mode: ConflictMode,
    reply: oneshot::Sender<Result<WriteOutcome, StoreError>>,
}

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
            while let Some(first) = jobs.blocking_recv() {
                state.discard_abandoned();
                // take whatever else is already queued: stages run in arrival order, then all the
                // commits together in one transaction
                let mut commits = Vec::new();
                let mut next = Some(first);
                while let Some(job) = next {
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
                        } => commits.push(Commit {
                            write,
                            dataset,
                            mode,
                            reply,
                        }),
                    }
                    next = if commits.len() < MAX_GROUP {
                        jobs.try_recv().ok()
                    } else {
                        None
                    };
                }
                if !commits.is_empty() {
                    state.commit_group(commits);
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

    /// Commits a group of writes in one transaction (one WAL sync for all). A write whose keys
    /// conflict is refused alone; its neighbours are stored. Should anything else fail, the group is
    /// rolled back and each write is committed on its own, so one request cannot fail another.
    fn commit_group(&mut self, commits: Vec<Commit>) {
        tracing::debug!(writes = commits.len(), "group commit");
        let results = if commits.len() == 1 {
            vec![self.commit_alone(&commits[0])]
        } else {
            match self.try_group(&commits) {
                Ok(results) => results,
                Err(e) => {
                    tracing::warn!(error = %e, writes = commits.len(), "group commit failed; committing one by one");
                    commits.iter().map(|c| self.commit_alone(c)).collect()
                }
            }
        };
        for (commit, result) in commits.into_iter().zip(results) {
            if let Err(e) = &result
                && !matches!(e, StoreError::Conflict { .. })
            {
                tracing::error!(dataset = %commit.dataset.name, error = %e, "write failed");
            }
            self.drop_staging(commit.write);
            let _ = commit.reply.send(result);
        }
    }

    fn try_group(
        &self,
        commits: &[Commit],
    ) -> Result<Vec<Result<WriteOutcome, StoreError>>, StoreError> {
        self.conn
            .execute_batch("BEGIN TRANSACTION")
            .map_err(store_error)?;
        let mut results = Vec::with_capacity(commits.len());
        for commit in commits {
            match self.apply(commit) {
                Err(e) if !matches!(e, StoreError::Conflict { .. }) => {
                    let _ = self.conn.execute_batch("ROLLBACK");
                    return Err(e);
                }
                result => results.push(result),
            }
        }
        if let Err(e) = self.conn.execute_batch("COMMIT") {
            let _ = self.conn.execute_batch("ROLLBACK");
            return Err(store_error(e));
        }
        Ok(results)
    }

    fn commit_alone(&self, commit: &Commit) -> Result<WriteOutcome, StoreError> {
        self.conn
            .execute_batch("BEGIN TRANSACTION")
            .map_err(store_error)?;
        let result = self.apply(commit).and_then(|outcome| {
            self.conn.execute_batch("COMMIT").map_err(store_error)?;
            Ok(outcome)
        });
        if result.is_err() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        result
    }

    /// Inside an open transaction: settles the write's keys as its mode says and applies it. A
    /// conflict (mode `error`) is found before anything is changed.
    fn apply(&self, commit: &Commit) -> Result<WriteOutcome, StoreError> {
        let mut outcome = WriteOutcome::default();
        if !self.staged.contains_key(&commit.write) {
            return Ok(outcome);
        }
        let staged = staging_table(commit.write);
        let schema = &commit.dataset;
        let keys = column_list(schema.key_fields().map(|f| f.name.as_str()));
        let table = quote(&schema.name);
        let matches = key_matches(schema);
        match commit.mode {
            ConflictMode::Error => {
                if let Some(error) = self.conflicts(schema, &staged)? {
                    return Err(error);
                }
                outcome.inserted =
                    self.execute(&format!("INSERT INTO {table} SELECT * FROM {staged}"))?;
            }
            ConflictMode::Ignore => {
                let rows = self.count(&staged)?;
                // the first record of each key, if its key is not stored
                self.execute(&format!("DELETE FROM {staged} WHERE rowid NOT IN (SELECT min(rowid) FROM {staged} GROUP BY {keys})"))?;
                outcome.inserted = self.execute(&format!(
                    "INSERT INTO {table} SELECT * FROM {staged} s WHERE NOT EXISTS (SELECT 1 FROM {table} t WHERE {matches})"
                ))?;
                outcome.skipped = rows - outcome.inserted;
            }
            ConflictMode::Upsert => {
                // the last record of each key replaces the stored one
                outcome.skipped = self.execute(&format!(
                    "DELETE FROM {staged} WHERE rowid NOT IN (SELECT max(rowid) FROM {staged} GROUP BY {keys})"
                ))?;
                outcome.updated = self.execute(&format!(
                    "DELETE FROM {table} t WHERE EXISTS (SELECT 1 FROM {staged} s WHERE {matches})"
                ))?;
                let stored =
                    self.execute(&format!("INSERT INTO {table} SELECT * FROM {staged}"))?;
                outcome.inserted = stored - outcome.updated;
            }
        }
        Ok(outcome)
    }

    fn count(&self, table: &str) -> Result<u64, StoreError> {
        self.conn
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
                row.get(0)
            })
            .map_err(store_error)
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
