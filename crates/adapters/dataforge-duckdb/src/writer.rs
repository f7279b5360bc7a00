//! The single writer: one thread owns the write connection and applies requests one at a time,
//! in arrival order, from a bounded queue. A request's batches are first staged in a temporary
//! table of its own (DuckDB spills it to disk past its memory limit, so a large upload does not
//! grow memory); its commit then settles keys and stores the staged rows. Commits that queue up
//! together are applied in one transaction (group commit), so many small concurrent writes cost
//! far fewer WAL syncs than requests.
//! Being alone, the writer can check keys and insert without races and without unique indexes.
//! Groups of small writes are acknowledged from the key index and appended to DuckDB later, many
//! groups at a time ([`deferred`]).

mod by_key;
mod deferred;
mod merge;
mod mutate;
mod pacing;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use arrow_select::concat::concat_batches;
use by_key::KeyChange;
use dataforge_domain::change::{Mutated, Mutation};
use dataforge_domain::ports::{ConflictReason, ConflictingKey, StoreError};
use dataforge_domain::schema::DatasetSchema;
use dataforge_domain::write::{ConflictMode, WriteOutcome};
use duckdb::Connection;
use duckdb::types::Value as DuckValue;
use tokio::sync::{mpsc, oneshot};

use crate::batches::{append_batches, for_each_batch};
use crate::journal::Journal;
use crate::key_index::{KeyEncoder, KeyIndex, sequence_update};
use crate::sql::{column_list, create_table_named, key_matches, quote};
use crate::store_error;

/// Conflicting keys listed in one answer, at most.
const MAX_LISTED_KEYS: usize = 100;

/// What one write's commit answers.
type WriteResult = Result<WriteOutcome, StoreError>;

/// A staged write's conflict, if any, and the keys of a small one (for the transaction to claim).
type StagedCheck = (Option<StoreError>, Option<Vec<Vec<u8>>>);

/// The conflict answer for `found` keys (the first [`MAX_LISTED_KEYS`] are listed) of `total`.
fn conflict(
    schema: &DatasetSchema,
    encoder: &KeyEncoder,
    mut found: Vec<(impl AsRef<[u8]>, ConflictReason)>,
    total: u64,
) -> Result<Option<StoreError>, StoreError> {
    if total == 0 {
        return Ok(None);
    }
    found.truncate(MAX_LISTED_KEYS);
    let listed: Vec<&[u8]> = found.iter().map(|(k, _)| k.as_ref()).collect();
    let values = encoder.decode(schema, &listed)?;
    let keys = values
        .into_iter()
        .zip(&found)
        .map(|(key, (_, reason))| ConflictingKey {
            key,
            reason: *reason,
        })
        .collect();
    Ok(Some(StoreError::Conflict { keys, total }))
}

/// Staged writes of more records than this are checked for conflicts without holding their keys.
const LARGE_STAGED_ROWS: usize = 128 * 1024;

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
    /// Hands the writer the key index (in step with the tables), the journal (empty) and the
    /// last write's sequence.
    Attach {
        index: Arc<KeyIndex>,
        journal: Journal,
        seq: u64,
        reply: oneshot::Sender<()>,
    },
    /// Appends a batch to a write's staging table, creating it on first use.
    Stage {
        write: u64,
        /// Alive while the write's handle is; a write whose handle is gone uncommitted is discarded.
        alive: Weak<()>,
        dataset: Arc<DatasetSchema>,
        batch: RecordBatch,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Appends deferred writes to their tables (see [`deferred`]); answered when asked by a read.
    Flush {
        reply: Option<oneshot::Sender<Result<(), StoreError>>>,
    },
    /// Updates or deletes the records a filter selects (see [`mutate`]).
    Mutate {
        dataset: Arc<DatasetSchema>,
        mutation: Mutation,
        reply: oneshot::Sender<Result<Mutated, StoreError>>,
    },
    /// Rewrites a dataset's table in the order of its `cluster_by` fields.
    Cluster {
        dataset: Arc<DatasetSchema>,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
    /// Stores a write's staged rows and drops its staging table. `last` is a batch the write
    /// kept back to send with its commit (a write of one batch then costs one trip to the writer).
    Commit {
        write: u64,
        alive: Weak<()>,
        dataset: Arc<DatasetSchema>,
        last: Option<RecordBatch>,
        mode: ConflictMode,
        reply: oneshot::Sender<Result<WriteOutcome, StoreError>>,
    },
}

/// The handle the store keeps: the queue's sending end and the thread to join at shutdown.
pub(crate) struct Writer {
    pub queue: mpsc::Sender<WriterJob>,
    pub thread: JoinHandle<()>,
    /// Set while writes are deferred: reads through DuckDB ask for a [`WriterJob::Flush`] first.
    pub deferred: Arc<AtomicBool>,
}

pub(crate) fn start(
    conn: Connection,
    queue_size: usize,
    preserve_insertion_order: bool,
    memory_budget: usize,
    deferred_append: Duration,
) -> Result<Writer, StoreError> {
    let (queue, mut jobs) = mpsc::channel::<WriterJob>(queue_size.max(1));
    let deferred = deferred::Deferred::new(deferred_append);
    let deferred_flag = deferred.flag();
    deferred.start_ticker(queue.downgrade());
    let thread = std::thread::Builder::new()
        .name("dataforge-writer".into())
        .spawn(move || {
            let mut state = WriterState {
                conn,
                staged: HashMap::new(),
                index: None,
                journal: None,
                seq: None,
                preserve_insertion_order,
                memory_bytes: 0,
                budget: MemoryBudget::new(memory_budget),
                deferred,
            };
            while let Some(first) = jobs.blocking_recv() {
                state.discard_abandoned();
                // take whatever else is already queued: stages run in arrival order, then all the
                // commits together in one transaction
                let mut commits = Vec::new();
                let mut key_changes = Vec::new();
                let mut next = Some(first);
                while let Some(job) = next {
                    // changes by key queued before any other job are applied first
                    if !key_changes.is_empty() && !matches!(&job, WriterJob::Mutate { mutation, .. } if mutation.key.is_some()) {
                        state.change_by_key(std::mem::take(&mut key_changes));
                    }
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
                            alive,
                            dataset,
                            last,
                            mode,
                            reply,
                        } => {
                            let staged = match last {
                                Some(batch) => state.stage(write, alive, &dataset, batch),
                                None => Ok(()),
                            };
                            match staged {
                                Ok(()) => commits.push(Commit {
                                    write,
                                    dataset,
                                    mode,
                                    reply,
                                }),
                                Err(e) => {
                                    state.drop_staging(write);
                                    let _ = reply.send(Err(e));
                                }
                            }
                        }
                        WriterJob::Mutate {
                            dataset,
                            mutation,
                            reply,
                        } => {
                            // the commits queued before it are stored first: changes apply in
                            // arrival order
                            if !commits.is_empty() {
                                state.commit_group(std::mem::take(&mut commits));
                            }
                            match mutation.key {
                                Some(key) if state.defers() => {
                                    key_changes.push(KeyChange {
                                        dataset,
                                        key,
                                        change: mutation.change,
                                        reply,
                                    });
                                }
                                _ => {
                                    if !key_changes.is_empty() {
                                        state.change_by_key(std::mem::take(&mut key_changes));
                                    }
                                    let _ = reply.send(state.mutate(&dataset, &mutation).map(Mutated::count));
                                }
                            }
                        }
                        WriterJob::Cluster { dataset, reply } => {
                            let clustered = state.flush_deferred().and_then(|()| state.cluster(&dataset));
                            let _ = reply.send(clustered);
                        }
                        // a tick waits while appends have been costly (see `pacing`)
                        WriterJob::Flush { reply: None }
                            if !state.deferred.pacing.tick_appends(Instant::now()) => {}
                        WriterJob::Flush { reply } => {
                            let flushed = state.flush_deferred();
                            if let Err(e) = &flushed {
                                tracing::error!(error = %e, "could not append deferred writes");
                            }
                            if let Some(reply) = reply {
                                let _ = reply.send(flushed);
                            }
                        }
                        WriterJob::Attach {
                            index,
                            journal,
                            seq,
                            reply,
                        } => {
                            state.index = Some(index);
                            state.journal = Some(journal);
                            state.seq = Some(seq);
                            let _ = reply.send(());
                        }
                    }
                    next = if commits.len() + key_changes.len() < MAX_GROUP {
                        jobs.try_recv().ok()
                    } else {
                        None
                    };
                }
                if !commits.is_empty() {
                    state.commit_group(commits);
                }
                if !key_changes.is_empty() {
                    state.change_by_key(key_changes);
                }
            }
            state.discard_abandoned();
            if let Err(e) = state.flush_deferred() {
                tracing::error!(error = %e, "could not append deferred writes at shutdown; the next start appends them");
            }
            if let Err(e) = state.conn.execute_batch("CHECKPOINT") {
                tracing::warn!(error = %e, "checkpoint at shutdown failed");
            }
            if let Some(index) = &state.index {
                index.close_cleanly();
            }
        })
        .map_err(|e| StoreError::Internal(format!("cannot start the writer thread: {e}")))?;
    Ok(Writer {
        queue,
        thread,
        deferred: deferred_flag,
    })
}

/// The positions of the `commits` that `keep` takes, by dataset (in order of first appearance).
fn by_dataset(commits: &[Commit], keep: impl Fn(usize, &Commit) -> bool) -> Vec<Vec<usize>> {
    let mut datasets: Vec<(&str, Vec<usize>)> = Vec::new();
    for (i, commit) in commits.iter().enumerate().filter(|(i, c)| keep(*i, c)) {
        let name = commit.dataset.name.as_str();
        match datasets.iter_mut().find(|(d, _)| *d == name) {
            Some((_, indices)) => indices.push(i),
            None => datasets.push((name, vec![i])),
        }
    }
    datasets.into_iter().map(|(_, indices)| indices).collect()
}

/// The key columns of `source` (aliased `s`) and the `FROM … WHERE` clause selecting its rows whose
/// key `table` holds.
fn keys_held_by(schema: &DatasetSchema, source: &str, table: &str) -> (String, String) {
    let columns = schema
        .key_fields()
        .map(|f| format!("s.{}", quote(&f.name)))
        .collect::<Vec<_>>()
        .join(", ");
    let joined = format!(
        "FROM {source} s WHERE EXISTS (SELECT 1 FROM {table} t WHERE {})",
        key_matches(schema)
    );
    (columns, joined)
}

struct WriterState {
    conn: Connection,
    /// Writes with staged rows.
    staged: HashMap<u64, Staged>,
    /// The key index, once attached and while in step with the tables; without it, keys are
    /// checked against the tables with SQL.
    index: Option<Arc<KeyIndex>>,
    /// The durable copy of deferred writes until their tables hold them; without it, nothing is
    /// deferred.
    journal: Option<Journal>,
    /// Sequence number of the last committed write, once the sequence table exists.
    seq: Option<u64>,
    /// The configured `preserve_insertion_order`, restored after a clustering rewrite.
    preserve_insertion_order: bool,
    /// Bytes of batches staged in memory, over all writes.
    memory_bytes: usize,
    budget: MemoryBudget,
    /// Writes acknowledged from the key index, waiting to be appended to their tables.
    deferred: deferred::Deferred,
}

/// What a transaction learns while it applies writes: per dataset, the keys it stores (so that a
/// later write of the same transaction sees them as taken), and where the stored records are (for
/// the key index).
#[derive(Default)]
struct Applied {
    keys: HashMap<String, (Arc<DatasetSchema>, HashSet<Vec<u8>>)>,
    /// Large staged writes (dataset, write) whose keys are not in `keys`: later writes are checked
    /// against their staging tables with SQL.
    unclaimed: Vec<(String, u64)>,
    records: Vec<(Arc<DatasetSchema>, Records)>,
}

/// Where the records a write stored can be read back once it is committed.
enum Records {
    /// An in-memory write's batches (always mode `error`: its keys were new).
    Batches(Vec<RecordBatch>),
    /// A write's staging table, left holding exactly the rows it stored.
    Staging(u64),
}

impl Applied {
    fn claimed(&self, dataset: &str) -> Option<&HashSet<Vec<u8>>> {
        self.keys.get(dataset).map(|(_, keys)| keys)
    }

    fn unclaimed(&self, dataset: &str) -> Vec<u64> {
        self.unclaimed
            .iter()
            .filter(|(d, _)| d == dataset)
            .map(|(_, write)| *write)
            .collect()
    }

    fn add(&mut self, schema: &Arc<DatasetSchema>, keys: impl IntoIterator<Item = Vec<u8>>) {
        self.keys
            .entry(schema.name.clone())
            .or_insert_with(|| (Arc::clone(schema), HashSet::new()))
            .1
            .extend(keys);
    }
}

/// Bytes of batches one write may keep in memory, at most, before they move to a staging table of
/// its own.
const WRITE_MEMORY_BYTES: usize = 64 * 1024 * 1024;

/// How much of the writer's memory budget (`write_buffer_mib`, over all writes: past it, a growing
/// write moves to its staging table) one write may hold.
#[derive(Clone, Copy)]
struct MemoryBudget {
    total: usize,
    per_write: usize,
}

impl MemoryBudget {
    fn new(total: usize) -> Self {
        MemoryBudget {
            total,
            per_write: (total / 4).min(WRITE_MEMORY_BYTES),
        }
    }
}

/// A write's staged rows: writes within their memory share (every single-record or 100,000-row
/// request, by default) stay in memory and are appended straight to the table at commit, with no
/// staging table to create, fill, read back and drop; larger ones go to a temporary staging table,
/// which DuckDB spills to disk past its memory limit.
struct Staged {
    /// Alive while the write's handle is; a write whose handle is gone uncommitted is discarded.
    alive: Weak<()>,
    /// The batches while the write is in memory; `None` once they are in the staging table.
    memory: Option<Vec<RecordBatch>>,
    /// Bytes of the batches in memory.
    bytes: usize,
    rows: usize,
}

/// What the key check of a group's in-memory writes of one dataset decided.
struct SettledInMemory {
    /// Each write's answer, by its position in the group.
    results: Vec<(usize, WriteResult)>,
    /// The accepted writes' batches (many small ones gathered into one).
    stored: Vec<RecordBatch>,
    /// Without the key index: positions of the refused writes in `group`.
    refused: Vec<String>,
    /// Without the key index: the temporary table holding every write's rows for the SQL check.
    group: Option<String>,
}

/// Rows of a group's accepted in-memory writes that are gathered into one batch before they are
/// stored.
const COALESCED_ROWS: usize = 8192;

/// The bytes a batch's rows take. Batches decoded from Arrow IPC are slices of one message buffer,
/// so what each column refers to is counted, not the capacity of the buffers it shares.
fn batch_bytes(batch: &RecordBatch) -> usize {
    batch
        .columns()
        .iter()
        .map(|column| {
            column
                .to_data()
                .get_slice_memory_size()
                .unwrap_or_else(|_| column.get_array_memory_size())
        })
        .sum()
}

/// Records of one transaction from which indexing them alongside DuckDB's commit pays for the
/// second thread.
const ALONGSIDE_ROWS: usize = 16 * 1024;

/// Whether a transaction's records are indexed on a second thread while DuckDB commits: when they
/// are all in memory (records in a staging table are read back through the writer's connection)
/// and many.
fn indexed_alongside(records: &[(Arc<DatasetSchema>, Records)]) -> bool {
    let mut rows = 0;
    for (_, records) in records {
        match records {
            Records::Batches(batches) => {
                rows += batches.iter().map(RecordBatch::num_rows).sum::<usize>()
            }
            Records::Staging(_) => return false,
        }
    }
    rows >= ALONGSIDE_ROWS
}

/// The staging table's column numbering rows in request order.
const ROW_COLUMN: &str = "__row";

/// The name of a write's staging table (a temporary table).
fn staging_name(write: u64) -> String {
    format!("staging__{write}")
}

/// The staging table, qualified for SQL.
fn staging_table(write: u64) -> String {
    format!("temp.{}", quote(&staging_name(write)))
}

impl WriterState {
    fn execute(&self, sql: &str) -> Result<u64, StoreError> {
        self.execute_bound(sql, &[])
    }

    /// Runs a statement with bound parameters; answers the rows it changed.
    fn execute_bound(&self, sql: &str, params: &[DuckValue]) -> Result<u64, StoreError> {
        self.conn
            .execute(sql, duckdb::params_from_iter(params.iter()))
            .map(|n| n as u64)
            .map_err(store_error)
    }

    /// Runs a statement without parameters, prepared once per connection: a group's transaction
    /// control costs no parsing or planning.
    fn run(&self, sql: &str) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(sql)
            .and_then(|mut statement| statement.execute([]))
            .map(|_| ())
            .map_err(store_error)
    }

    /// Drops the staging tables of writes abandoned before their commit (a failed request).
    fn discard_abandoned(&mut self) {
        let abandoned: Vec<u64> = self
            .staged
            .iter()
            .filter(|(_, staged)| staged.alive.strong_count() == 0)
            .map(|(id, _)| *id)
            .collect();
        for write in abandoned {
            self.drop_staging(write);
        }
    }

    fn drop_staging(&mut self, write: u64) {
        let Some(staged) = self.staged.remove(&write) else {
            return;
        };
        self.memory_bytes -= staged.bytes;
        if staged.memory.is_none()
            && let Err(e) = self
                .conn
                .execute_batch(&format!("DROP TABLE IF EXISTS {}", staging_table(write)))
        {
            tracing::warn!(write, error = %e, "could not drop a staging table");
        }
    }

    /// Adds a batch to the write's staged rows, in request order (a staging table numbers its rows
    /// in a column of its own, [`ROW_COLUMN`]: DuckDB's `rowid` need not follow append order).
    fn stage(
        &mut self,
        write: u64,
        alive: Weak<()>,
        schema: &DatasetSchema,
        batch: RecordBatch,
    ) -> Result<(), StoreError> {
        let staged = self.staged.entry(write).or_insert(Staged {
            alive,
            memory: Some(Vec::new()),
            bytes: 0,
            rows: 0,
        });
        let first_row = staged.rows;
        staged.rows += batch.num_rows();
        if let Some(batches) = staged.memory.as_mut() {
            let bytes = batch_bytes(&batch);
            batches.push(batch);
            staged.bytes += bytes;
            self.memory_bytes += bytes;
            if staged.bytes <= self.budget.per_write && self.memory_bytes <= self.budget.total {
                return Ok(());
            }
            return self.spill(write, schema);
        }
        self.append_to_staging(write, batch, first_row)
    }

    /// Moves a write's in-memory batches to a staging table of its own.
    fn spill(&mut self, write: u64, schema: &DatasetSchema) -> Result<(), StoreError> {
        let Some(staged) = self.staged.get_mut(&write) else {
            return Ok(());
        };
        let Some(batches) = staged.memory.take() else {
            return Ok(());
        };
        self.memory_bytes -= std::mem::take(&mut staged.bytes);
        self.conn
            .execute_batch(&format!(
                "CREATE TEMP TABLE {} AS SELECT *, CAST(0 AS BIGINT) AS {} FROM {} LIMIT 0",
                quote(&staging_name(write)),
                quote(ROW_COLUMN),
                quote(&schema.name)
            ))
            .map_err(store_error)?;
        let mut first_row = 0;
        for batch in batches {
            let rows = batch.num_rows();
            self.append_to_staging(write, batch, first_row)?;
            first_row += rows;
        }
        Ok(())
    }

    /// Appends a batch to the staging table, numbering its rows from `first_row`.
    fn append_to_staging(
        &self,
        write: u64,
        batch: RecordBatch,
        first_row: usize,
    ) -> Result<(), StoreError> {
        let numbers: Int64Array =
            (first_row as i64..(first_row + batch.num_rows()) as i64).collect();
        let mut fields: Vec<Field> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new(ROW_COLUMN, DataType::Int64, false));
        let mut columns = batch.columns().to_vec();
        columns.push(Arc::new(numbers));
        let numbered = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        let mut appender = self
            .conn
            .appender_to_catalog_and_db(&staging_name(write), "temp", "main")
            .map_err(store_error)?;
        appender
            .append_record_batch(numbered)
            .map_err(store_error)?;
        appender.flush().map_err(store_error)
    }

    /// Rewrites the dataset's table ordered by its `cluster_by` fields, in one transaction: a new
    /// table is filled in that order (insertion order kept for this statement), replaces the old
    /// one. Row groups then hold narrow ranges of those fields, so DuckDB's zone maps skip most of
    /// the table for filters on them. The records, and so the key index, do not change.
    fn cluster(&mut self, schema: &DatasetSchema) -> Result<u64, StoreError> {
        if schema.cluster_by.is_empty() {
            return Err(StoreError::Internal(format!(
                "{} declares no cluster_by",
                schema.name
            )));
        }
        let table = quote(&schema.name);
        // no dataset name starts with `_`: the working table cannot be one
        let rewritten = format!("_dataforge_clustering_{}", schema.name);
        let columns = column_list(schema.fields.iter().map(|f| f.name.as_str()));
        let order = column_list(
            schema
                .cluster_by
                .iter()
                .map(|&i| schema.fields[i].name.as_str()),
        );
        self.conn
            .execute_batch("SET preserve_insertion_order = true")
            .map_err(store_error)?;
        let result = (|| {
            self.run("BEGIN TRANSACTION")?;
            self.conn
                .execute_batch(&create_table_named(schema, &rewritten))
                .map_err(store_error)?;
            let rows = self.execute(&format!(
                "INSERT INTO {} SELECT {columns} FROM {table} ORDER BY {order}",
                quote(&rewritten)
            ))?;
            self.conn
                .execute_batch(&format!(
                    "DROP TABLE {table}; ALTER TABLE {} RENAME TO {table}",
                    quote(&rewritten)
                ))
                .map_err(store_error)?;
            self.run("COMMIT")?;
            Ok(rows)
        })();
        if result.is_err() {
            let _ = self.run("ROLLBACK");
        }
        if let Err(e) = self.conn.execute_batch(&format!(
            "SET preserve_insertion_order = {}",
            self.preserve_insertion_order
        )) {
            tracing::warn!(error = %e, "could not restore preserve_insertion_order");
        }
        result
    }

    /// Commits a group of writes in one transaction (one WAL sync for all). A write whose keys
    /// conflict is refused alone; its neighbours are stored. Should anything else fail, the group is
    /// rolled back and each write is committed on its own, so one request cannot fail another.
    fn commit_group(&mut self, commits: Vec<Commit>) {
        let (started, writes) = (Instant::now(), commits.len());
        self.settle_group(commits);
        metrics::histogram!("dataforge_writer_group_writes").record(writes as f64);
        metrics::histogram!("dataforge_writer_commit_seconds")
            .record(started.elapsed().as_secs_f64());
    }

    /// [`WriterState::commit_group`], untimed.
    fn settle_group(&mut self, commits: Vec<Commit>) {
        tracing::debug!(writes = commits.len(), "group commit");
        // in-memory writes in mode `error` are checked and stored together from memory; the others
        // need their rows in a staging table
        let mut spilled: Vec<Result<(), StoreError>> = Vec::with_capacity(commits.len());
        for commit in &commits {
            let result = if commit.mode == ConflictMode::Error {
                Ok(())
            } else {
                self.spill(commit.write, &commit.dataset)
            };
            spilled.push(result);
        }
        if self.deferrable(&commits) {
            match self.defer_group(&commits) {
                Ok(results) => return self.answer(commits, results),
                Err(e) => {
                    tracing::warn!(error = %e, "could not defer a group of writes; committing it to DuckDB")
                }
            }
        }
        // DuckDB holds every deferred write before it commits one of its own
        if let Err(e) = self.flush_deferred() {
            let results = commits.iter().map(|_| Err(e.clone())).collect();
            return self.answer(commits, results);
        }
        let results = match self.try_group(&commits, &spilled) {
            Ok(results) => results,
            Err(e) => {
                tracing::warn!(error = %e, writes = commits.len(), "group commit failed; committing one by one");
                commits
                    .iter()
                    .zip(spilled)
                    .map(|(commit, spilled)| {
                        spilled?;
                        self.spill(commit.write, &commit.dataset)?;
                        self.commit_alone(commit)
                    })
                    .collect()
            }
        };
        self.answer(commits, results);
    }

    /// Sends each write its result and drops what it staged.
    fn answer(&mut self, commits: Vec<Commit>, results: Vec<WriteResult>) {
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
        &mut self,
        commits: &[Commit],
        spilled: &[Result<(), StoreError>],
    ) -> Result<Vec<Result<WriteOutcome, StoreError>>, StoreError> {
        self.run("BEGIN TRANSACTION")?;
        let mut applied = Applied::default();
        let outcome = (|| {
            let mut results: Vec<Option<Result<WriteOutcome, StoreError>>> =
                spilled.iter().map(|s| s.clone().err().map(Err)).collect();
            // in-memory writes, by dataset, together
            let in_memory = by_dataset(commits, |i, commit| {
                results[i].is_none()
                    && self
                        .staged
                        .get(&commit.write)
                        .is_some_and(|s| s.memory.is_some())
            });
            for indices in &in_memory {
                for (i, result) in self.apply_in_memory(commits, indices, &mut applied)? {
                    results[i] = Some(result);
                }
            }
            for (i, commit) in commits.iter().enumerate() {
                if results[i].is_none() {
                    match self.apply(commit, &mut applied) {
                        Err(e) if !matches!(e, StoreError::Conflict { .. }) => return Err(e),
                        result => results[i] = Some(result),
                    }
                }
            }
            Ok(results
                .into_iter()
                .map(|r| r.unwrap_or_else(|| Ok(WriteOutcome::default())))
                .collect())
        })();
        match outcome {
            Ok(results) => {
                self.finish(applied)?;
                Ok(results)
            }
            Err(e) => {
                let _ = self.run("ROLLBACK");
                Err(e)
            }
        }
    }

    /// Commits the open transaction with the next sequence number, then records its keys in the
    /// key index. Should the index fail, it is dropped (keys are then checked with SQL) and rebuilt
    /// at the next start, when its sequence number no longer matches DuckDB's.
    fn finish(&mut self, applied: Applied) -> Result<(), StoreError> {
        let next = self.seq.map(|seq| seq + 1);
        if let (Some(index), Some(seq)) = (self.index.clone(), next)
            && indexed_alongside(&applied.records)
        {
            return self.finish_alongside(&index, &applied.records, seq);
        }
        self.commit_duckdb(next)?;
        if let (Some(index), Some(seq)) = (&self.index, next)
            && let Err(e) = self.index_records(index, &applied.records, seq)
        {
            self.index_failed(e);
        }
        Ok(())
    }

    /// [`Self::finish`] for a large transaction whose records are all in memory: a second thread
    /// writes them to the key index while DuckDB commits, and commits the index once DuckDB has
    /// (or abandons it if DuckDB failed), so the two stores' costs overlap instead of adding up.
    fn finish_alongside(
        &mut self,
        index: &Arc<KeyIndex>,
        records: &[(Arc<DatasetSchema>, Records)],
        seq: u64,
    ) -> Result<(), StoreError> {
        let (verdict, committed_in_duckdb) = std::sync::mpsc::channel::<bool>();
        let (committed, indexed) = std::thread::scope(|scope| {
            let indexing = scope.spawn(move || -> Result<(), StoreError> {
                // LMDB ties a write transaction to the thread that began it
                let mut write = index.write()?;
                for (schema, records) in records {
                    if let Records::Batches(batches) = records {
                        write.put_batches(schema, batches, false)?;
                    }
                }
                match committed_in_duckdb.recv() {
                    Ok(true) => write.commit(seq),
                    _ => Ok(()), // dropped uncommitted
                }
            });
            let committed = self.commit_duckdb(Some(seq));
            let _ = verdict.send(committed.is_ok());
            let indexed = indexing.join().unwrap_or_else(|_| {
                Err(StoreError::Internal("the indexing thread panicked".into()))
            });
            (committed, indexed)
        });
        committed?;
        if let Err(e) = indexed {
            self.index_failed(e);
        }
        Ok(())
    }

    /// Drops the key index after a failed write to it: keys are checked and read with SQL until the
    /// next start rebuilds it (its sequence number no longer matches DuckDB's).
    fn index_failed(&mut self, e: StoreError) {
        tracing::error!(error = %e, "the key index failed; checking keys and reading by key with SQL until the next start rebuilds it");
        if let Some(index) = self.index.take() {
            index.disable();
        }
    }

    /// Commits the open DuckDB transaction, with the sequence number `next` when there is one.
    fn commit_duckdb(&mut self, next: Option<u64>) -> Result<(), StoreError> {
        let committed = match next {
            Some(seq) => self
                .conn
                .prepare_cached(&sequence_update())
                .and_then(|mut update| update.execute([seq as i64]))
                .map_err(store_error)
                .and_then(|_| self.run("COMMIT")),
            None => self.run("COMMIT"),
        };
        if let Err(e) = committed {
            let _ = self.run("ROLLBACK");
            return Err(e);
        }
        self.seq = next;
        Ok(())
    }

    /// Writes the records a committed transaction stored to the key index, with its sequence.
    fn index_records(
        &self,
        index: &KeyIndex,
        records: &[(Arc<DatasetSchema>, Records)],
        seq: u64,
    ) -> Result<(), StoreError> {
        // a staged write may hold millions of records: written in parts, in bounded memory
        let staged = records
            .iter()
            .any(|(_, r)| matches!(r, Records::Staging(_)));
        let mut write = if staged {
            index.write_in_parts()?
        } else {
            index.write()?
        };
        for (schema, records) in records {
            match records {
                Records::Batches(batches) => write.put_batches(schema, batches, false)?,
                Records::Staging(id) => {
                    // in key order: where they follow the stored keys, LMDB appends them and
                    // leaves its pages full rather than half empty
                    let columns = column_list(schema.fields.iter().map(|f| f.name.as_str()));
                    let key = column_list(schema.key_fields().map(|f| f.name.as_str()));
                    let sql = format!(
                        "SELECT {columns} FROM {} ORDER BY {key}",
                        staging_table(*id)
                    );
                    for_each_batch(&self.conn, &sql, [], |batch| {
                        write.put(schema, &batch, true)
                    })?;
                }
            }
        }
        write.commit(seq)
    }

    fn commit_alone(&mut self, commit: &Commit) -> Result<WriteOutcome, StoreError> {
        self.run("BEGIN TRANSACTION")?;
        let mut applied = Applied::default();
        match self.apply(commit, &mut applied) {
            Ok(outcome) => {
                self.finish(applied)?;
                Ok(outcome)
            }
            Err(e) => {
                let _ = self.run("ROLLBACK");
                Err(e)
            }
        }
    }

    /// The keys of a write that conflict, in order: repeated within the write, already stored
    /// (`stored` flags, in the same order), or taken by an earlier write of the same transaction.
    fn key_conflicts<'k>(
        keys: &'k [Vec<u8>],
        stored: &[bool],
        claimed: Option<&HashSet<Vec<u8>>>,
    ) -> Vec<(&'k [u8], ConflictReason)> {
        let mut seen: HashSet<&[u8]> = HashSet::new();
        let mut found = Vec::new();
        for (encoded, &is_stored) in keys.iter().zip(stored) {
            if !seen.insert(encoded.as_slice()) {
                found.push((encoded.as_slice(), ConflictReason::Repeated));
            } else if is_stored || claimed.is_some_and(|c| c.contains(encoded)) {
                found.push((encoded.as_slice(), ConflictReason::Exists));
            }
        }
        found
    }

    /// Inside an open transaction: the conflicts of a staged write (mode `error`) of `rows`
    /// records. A write of at most [`LARGE_STAGED_ROWS`] is checked with its keys in memory, like
    /// an in-memory write, and answers them so the transaction can claim them. A larger one is
    /// checked without holding its keys, whatever its size: DuckDB groups the staging table for
    /// keys repeated within the write (spilling to disk past its memory limit), and the key index
    /// is asked batch by batch as the staging table streams by. Either way, large staged writes
    /// earlier in the transaction (whose keys were not claimed) are joined with SQL; without the
    /// key index, the table is.
    fn staged_conflicts(
        &self,
        schema: &DatasetSchema,
        staged: &str,
        rows: usize,
        applied: &Applied,
    ) -> Result<StagedCheck, StoreError> {
        let encoder = KeyEncoder::new(schema)?;
        let keys = column_list(schema.key_fields().map(|f| f.name.as_str()));
        let select_keys = format!("SELECT {keys} FROM {staged}");
        let claimed = applied.claimed(&schema.name);
        let mut found: Vec<(Vec<u8>, ConflictReason)> = Vec::new();
        let mut total = 0;
        let mut small_keys = None;
        if rows <= LARGE_STAGED_ROWS {
            let write_keys = self.query_keys(&encoder, &select_keys)?;
            let stored = self.stored(schema, &encoder, staged, &write_keys)?;
            for (key, reason) in Self::key_conflicts(&write_keys, &stored, claimed) {
                total += 1;
                if found.len() < MAX_LISTED_KEYS {
                    found.push((key.to_vec(), reason));
                }
            }
            small_keys = Some(write_keys);
        } else {
            // each record after the first of its key is a repeat
            total = self
                .conn
                .query_row(
                    &format!("SELECT coalesce(sum(n - 1), 0)::BIGINT FROM (SELECT count(*) AS n FROM {staged} GROUP BY {keys} HAVING count(*) > 1)"),
                    [],
                    |r| r.get::<_, i64>(0),
                )
                .map_err(store_error)? as u64;
            if total > 0 {
                let repeated = self.query_keys(
                    &encoder,
                    &format!("SELECT {keys} FROM {staged} GROUP BY {keys} HAVING count(*) > 1 LIMIT {MAX_LISTED_KEYS}"),
                )?;
                found.extend(repeated.into_iter().map(|k| (k, ConflictReason::Repeated)));
            }
            match &self.index {
                Some(index) => {
                    for_each_batch(&self.conn, &select_keys, [], |batch| {
                        let slice = encoder.encode(batch.columns())?;
                        let stored = index.contains(&schema.name, &slice)?;
                        for (key, is_stored) in slice.into_iter().zip(stored) {
                            if is_stored || claimed.is_some_and(|c| c.contains(&key)) {
                                total += 1;
                                if found.len() < MAX_LISTED_KEYS {
                                    found.push((key, ConflictReason::Exists));
                                }
                            }
                        }
                        Ok(())
                    })?;
                }
                None => {
                    let table = quote(&schema.name);
                    total += self.joined_keys(&encoder, schema, staged, &table, &mut found)?;
                }
            }
        }
        if self.index.is_some() {
            for earlier in applied.unclaimed(&schema.name) {
                let table = staging_table(earlier);
                total += self.joined_keys(&encoder, schema, staged, &table, &mut found)?;
            }
        }
        Ok((conflict(schema, &encoder, found, total)?, small_keys))
    }

    /// How many records of `staged` have a key that `table` holds; the first are added to `found`.
    fn joined_keys(
        &self,
        encoder: &KeyEncoder,
        schema: &DatasetSchema,
        staged: &str,
        table: &str,
        found: &mut Vec<(Vec<u8>, ConflictReason)>,
    ) -> Result<u64, StoreError> {
        let (columns, joined) = keys_held_by(schema, staged, table);
        let total: i64 = self
            .conn
            .query_row(&format!("SELECT count(*) {joined}"), [], |r| r.get(0))
            .map_err(store_error)?;
        let room = MAX_LISTED_KEYS.saturating_sub(found.len());
        if total > 0 && room > 0 {
            let listed =
                self.query_keys(encoder, &format!("SELECT {columns} {joined} LIMIT {room}"))?;
            found.extend(listed.into_iter().map(|k| (k, ConflictReason::Exists)));
        }
        Ok(total as u64)
    }

    /// The encoded keys a query over key columns answers.
    fn query_keys(&self, encoder: &KeyEncoder, sql: &str) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut out = Vec::new();
        for_each_batch(&self.conn, sql, [], |batch| {
            out.extend(encoder.encode(batch.columns())?);
            Ok(())
        })?;
        Ok(out)
    }

    /// Inside an open transaction: stores in-memory writes of one dataset (mode `error`)
    /// with a handful of statements for all of them. Keys repeated within a write, already stored,
    /// or taken by an earlier write of the transaction refuse that write alone. With the key index
    /// the checks are lookups and the accepted batches are appended straight to the table; without
    /// it, the rows go through a temporary table tagged by write for an SQL check.
    fn apply_in_memory(
        &self,
        commits: &[Commit],
        indices: &[usize],
        applied: &mut Applied,
    ) -> Result<Vec<(usize, WriteResult)>, StoreError> {
        let settled = self.settle_in_memory(commits, indices, applied)?;
        let schema = &commits[indices[0]].dataset;
        let rows: usize = settled.stored.iter().map(RecordBatch::num_rows).sum();
        match settled.group {
            None if rows == 0 => {}
            None => append_batches(&self.conn, &schema.name, &settled.stored)?,
            Some(group) => {
                if !settled.refused.is_empty() {
                    self.execute(&format!(
                        "DELETE FROM {group} WHERE \"__write\" IN ({})",
                        settled.refused.join(", ")
                    ))?;
                }
                let columns = column_list(schema.fields.iter().map(|f| f.name.as_str()));
                self.execute(&format!(
                    "INSERT INTO {} SELECT {columns} FROM {group}",
                    quote(&schema.name)
                ))?;
            }
        }
        applied
            .records
            .push((Arc::clone(schema), Records::Batches(settled.stored)));
        Ok(settled.results)
    }

    /// The key-checking half of [`Self::apply_in_memory`]: decides each write, claims the keys of
    /// the accepted ones in `applied`, and gathers their batches, without storing anything.
    fn settle_in_memory(
        &self,
        commits: &[Commit],
        indices: &[usize],
        applied: &mut Applied,
    ) -> Result<SettledInMemory, StoreError> {
        let schema = &commits[indices[0]].dataset;
        let encoder = KeyEncoder::new(schema)?;
        let batches_of = |i: usize| -> &[RecordBatch] {
            self.staged
                .get(&commits[i].write)
                .and_then(|s| s.memory.as_deref())
                .unwrap_or_default()
        };
        // the encoded keys of every write
        let mut keys: Vec<Vec<Vec<u8>>> = Vec::with_capacity(indices.len());
        for &i in indices {
            let mut write_keys = Vec::new();
            for batch in batches_of(i) {
                let key_columns: Vec<ArrayRef> = schema
                    .primary_key
                    .iter()
                    .map(|&c| Arc::clone(batch.column(c)))
                    .collect();
                write_keys.extend(encoder.encode(&key_columns)?);
            }
            keys.push(write_keys);
        }
        let group = match &self.index {
            Some(_) => None,
            None => Some(self.group_table(schema, indices.iter().map(|&i| batches_of(i)))?),
        };
        let source = group.as_deref().unwrap_or_default();
        let stored = keys
            .iter()
            .map(|write_keys| self.stored(schema, &encoder, source, write_keys))
            .collect::<Result<Vec<_>, _>>()?;
        // decide write by write, in commit order
        let mut refused = Vec::new();
        let mut accepted = Vec::new();
        let mut results = Vec::with_capacity(indices.len());
        for (position, ((&i, write_keys), stored)) in
            indices.iter().zip(&keys).zip(&stored).enumerate()
        {
            let found = Self::key_conflicts(write_keys, stored, applied.claimed(&schema.name));
            let total = found.len() as u64;
            match conflict(schema, &encoder, found, total)? {
                None => {
                    applied.add(schema, write_keys.iter().cloned());
                    accepted.push(i);
                    let outcome = WriteOutcome {
                        inserted: write_keys.len() as u64,
                        ..WriteOutcome::default()
                    };
                    results.push((i, Ok(outcome)));
                }
                Some(conflict) => {
                    refused.push(position.to_string());
                    results.push((i, Err(conflict)));
                }
            }
        }
        // many small accepted batches (single-record writes) become one: one append and one index
        // pass for the whole group cost far less than one per write; large ones go as they are
        let accepted: Vec<RecordBatch> = accepted
            .iter()
            .flat_map(|&i| batches_of(i))
            .cloned()
            .collect();
        let rows: usize = accepted.iter().map(RecordBatch::num_rows).sum();
        let stored = if accepted.len() > 1 && rows <= COALESCED_ROWS {
            vec![
                concat_batches(schema.arrow_schema(), &accepted)
                    .map_err(|e| StoreError::Internal(e.to_string()))?,
            ]
        } else {
            accepted
        };
        Ok(SettledInMemory {
            results,
            stored,
            refused,
            group,
        })
    }

    /// Fills a temporary table with the rows of several writes, each row tagged with its write's
    /// position (`__write`), for the SQL key check; answers its qualified name.
    fn group_table<'b>(
        &self,
        schema: &DatasetSchema,
        writes: impl Iterator<Item = &'b [RecordBatch]>,
    ) -> Result<String, StoreError> {
        let group = format!("group__{}", schema.name);
        self.conn
            .execute_batch(&format!(
                "CREATE OR REPLACE TEMP TABLE {} AS SELECT *, CAST(0 AS BIGINT) AS \"__write\" FROM {} LIMIT 0",
                quote(&group),
                quote(&schema.name)
            ))
            .map_err(store_error)?;
        let mut tagged_schema: Vec<Field> = schema
            .arrow_schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        tagged_schema.push(Field::new("__write", DataType::Int64, false));
        let tagged_schema = Arc::new(Schema::new(tagged_schema));
        let mut appender = self
            .conn
            .appender_to_catalog_and_db(&group, "temp", "main")
            .map_err(store_error)?;
        for (position, batches) in writes.enumerate() {
            for batch in batches {
                let mut columns = batch.columns().to_vec();
                columns.push(Arc::new(Int64Array::from(vec![
                    position as i64;
                    batch.num_rows()
                ])));
                let tagged = RecordBatch::try_new(Arc::clone(&tagged_schema), columns)
                    .map_err(|e| StoreError::Internal(e.to_string()))?;
                appender.append_record_batch(tagged).map_err(store_error)?;
            }
        }
        appender.flush().map_err(store_error)?;
        Ok(format!("temp.{}", quote(&group)))
    }

    /// Which of `keys` (rows of the table `source`) are stored in the dataset: from the key index
    /// when it is attached, else with one SQL semi-join of `source` against the dataset's table
    /// (which also sees rows stored earlier in the open transaction).
    fn stored(
        &self,
        schema: &DatasetSchema,
        encoder: &KeyEncoder,
        source: &str,
        keys: &[Vec<u8>],
    ) -> Result<Vec<bool>, StoreError> {
        if let Some(index) = &self.index {
            return index.contains(&schema.name, keys);
        }
        // without the index, the tables are asked
        let (columns, joined) = keys_held_by(schema, source, &quote(&schema.name));
        let found: HashSet<Vec<u8>> = self
            .query_keys(encoder, &format!("SELECT {columns} {joined}"))?
            .into_iter()
            .collect();
        Ok(keys.iter().map(|k| found.contains(k)).collect())
    }

    /// Inside an open transaction: settles the write's keys as its mode says and applies it. A
    /// conflict (mode `error`) is found before anything is changed.
    fn apply(&self, commit: &Commit, applied: &mut Applied) -> Result<WriteOutcome, StoreError> {
        let mut outcome = WriteOutcome::default();
        if !self.staged.contains_key(&commit.write) {
            return Ok(outcome);
        }
        let staged = staging_table(commit.write);
        let schema = &commit.dataset;
        let keys = column_list(schema.key_fields().map(|f| f.name.as_str()));
        let table = quote(&schema.name);
        let matches = key_matches(schema);
        let columns = column_list(schema.fields.iter().map(|f| f.name.as_str()));
        let row = quote(ROW_COLUMN);
        let rows = self.staged.get(&commit.write).map_or(0, |s| s.rows);
        let mut small_keys = None;
        match commit.mode {
            ConflictMode::Error => {
                let (conflict, keys) = self.staged_conflicts(schema, &staged, rows, applied)?;
                if let Some(conflict) = conflict {
                    return Err(conflict);
                }
                outcome.inserted = self.execute(&format!(
                    "INSERT INTO {table} SELECT {columns} FROM {staged}"
                ))?;
                small_keys = keys;
            }
            ConflictMode::Ignore => {
                let rows = self.count(&staged)?;
                // the first record of each key, if its key is not stored; the staging table is
                // left with exactly the records stored
                self.execute(&format!("DELETE FROM {staged} WHERE {row} NOT IN (SELECT min({row}) FROM {staged} GROUP BY {keys})"))?;
                self.execute(&format!(
                    "DELETE FROM {staged} s WHERE EXISTS (SELECT 1 FROM {table} t WHERE {matches})"
                ))?;
                outcome.inserted = self.execute(&format!(
                    "INSERT INTO {table} SELECT {columns} FROM {staged}"
                ))?;
                outcome.skipped = rows - outcome.inserted;
            }
            ConflictMode::Upsert | ConflictMode::Merge => {
                // the last record of each key replaces the stored one (merged into it first)
                outcome.skipped = self.execute(&format!(
                    "DELETE FROM {staged} WHERE {row} NOT IN (SELECT max({row}) FROM {staged} GROUP BY {keys})"
                ))?;
                if commit.mode == ConflictMode::Merge {
                    self.merge_stored(schema, &staged, commit.write)?;
                }
                outcome.updated = self.execute(&format!(
                    "DELETE FROM {table} t WHERE EXISTS (SELECT 1 FROM {staged} s WHERE {matches})"
                ))?;
                let stored = self.execute(&format!(
                    "INSERT INTO {table} SELECT {columns} FROM {staged}"
                ))?;
                outcome.inserted = stored - outcome.updated;
            }
        }
        // the keys the write stored are taken for later writes of the transaction (checked against
        // the key index, which has not seen them yet): a small write's in memory, a large one's
        // by its staging table, left holding exactly the records stored
        if self.index.is_some() {
            if rows > LARGE_STAGED_ROWS {
                applied.unclaimed.push((schema.name.clone(), commit.write));
            } else {
                let keys = match small_keys {
                    Some(keys) => keys,
                    None => self.query_keys(
                        &KeyEncoder::new(schema)?,
                        &format!("SELECT {keys} FROM {staged}"),
                    )?,
                };
                applied.add(schema, keys);
            }
        }
        applied
            .records
            .push((Arc::clone(schema), Records::Staging(commit.write)));
        Ok(outcome)
    }

    fn count(&self, table: &str) -> Result<u64, StoreError> {
        self.conn
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
                row.get(0)
            })
            .map_err(store_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Small writes are appended straight to the table inside the group's transaction: a rolled
    /// back group must leave nothing behind.
    #[test]
    fn appends_belong_to_the_open_transaction() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (a BIGINT)").unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, true)]));
        let batch =
            RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1, 2, 3]))]).unwrap();
        let count = || -> i64 {
            conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
                .unwrap()
        };
        for (end, expected) in [("ROLLBACK", 0), ("COMMIT", 3)] {
            conn.execute_batch("BEGIN TRANSACTION").unwrap();
            let mut appender = conn.appender("t").unwrap();
            appender.append_record_batch(batch.clone()).unwrap();
            appender.flush().unwrap();
            drop(appender);
            conn.execute_batch(end).unwrap();
            assert_eq!(count(), expected, "after {end}");
        }
    }
}
