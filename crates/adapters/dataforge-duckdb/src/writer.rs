//! The single writer: one thread owns the write connection and applies requests one at a time,
//! in arrival order, from a bounded queue. A request's batches are first staged in a temporary
//! table of its own (DuckDB spills it to disk past its memory limit, so a large upload does not
//! grow memory); its commit then settles keys and stores the staged rows. Commits that queue up
//! together are applied in one transaction (group commit), so many small concurrent writes cost
//! far fewer WAL syncs than requests.
//! Being alone, the writer can check keys and insert without races and without unique indexes.
//! Groups of small writes are acknowledged from the key index and appended to DuckDB later, many
//! groups at a time ([`deferred`]).

mod appending;
mod apply;
mod by_key;
mod cluster;
mod conflicts;
mod deferred;
mod group;
mod in_memory;
mod journals;
mod merge;
mod mutate;
mod pacing;
mod policy;
mod staging;

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
use dataforge_key_index::{KeyEncoder, KeyIndex};
use duckdb::Connection;
use duckdb::types::Value as DuckValue;
use tokio::sync::{mpsc, oneshot};

use crate::batches::{append_batches, for_each_batch};
use crate::sequence;
use crate::sql::{column_list, create_table_named, key_matches, quote};
use crate::store_error;
use policy::{Next, Pending, Settle};

pub(crate) use journals::Journals;

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
        journal: Journals,
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

impl WriterJob {
    /// The job as the batching policy sees it; `defers`: whether changes by key are deferred now.
    fn kind(&self, defers: bool) -> Next {
        match self {
            WriterJob::Stage { .. } | WriterJob::Commit { .. } => Next::Write,
            WriterJob::Mutate { mutation, .. } if mutation.key.is_some() => {
                Next::KeyChange { deferred: defers }
            }
            WriterJob::Mutate { .. } => Next::Change,
            _ => Next::Other,
        }
    }
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
    let mut deferred = deferred::Deferred::new(deferred_append);
    let deferred_flag = deferred.flag();
    deferred.start_ticker(queue.downgrade());
    if !deferred_append.is_zero() {
        let started = conn
            .try_clone()
            .map_err(store_error)
            .and_then(appending::AppendThread::start);
        match started {
            Ok(thread) => deferred.thread = Some(thread),
            Err(e) => {
                tracing::warn!(error = %e, "deferred writes are appended on the writer's thread")
            }
        }
    }
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
                state.reap_append(false);
                // take whatever else is already queued: stages run in arrival order, then all the
                // commits together in one transaction
                let mut commits = Vec::new();
                let mut key_changes = Vec::new();
                let mut next = Some(first);
                while let Some(job) = next {
                    let pending = Pending {
                        commits: commits.len(),
                        key_changes: key_changes.len(),
                    };
                    for settle in policy::settle_before(pending, job.kind(state.defers())) {
                        match settle {
                            Settle::KeyChanges => {
                                state.change_by_key(std::mem::take(&mut key_changes))
                            }
                            Settle::Commits => state.commit_group(std::mem::take(&mut commits)),
                        }
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
                            // what was queued before it is settled already (`policy`)
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
                                    // settling may have stopped deferring (a failed index)
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
                        // beside the job loop (see `appending`)
                        WriterJob::Flush { reply: None } => state.start_append(),
                        WriterJob::Flush { reply: Some(reply) } => {
                            let flushed = state.flush_deferred();
                            if let Err(e) = &flushed {
                                tracing::error!(error = %e, "could not append deferred writes");
                            }
                            let _ = reply.send(flushed);
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
                    let pending = Pending {
                        commits: commits.len(),
                        key_changes: key_changes.len(),
                    };
                    next = if policy::takes_more(pending) {
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
            if let Some(thread) = state.deferred.thread.as_mut() {
                thread.stop();
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
    journal: Option<Journals>,
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
