//! The embedded DuckDB adapter: implements dataforge's storage ports on one database file, with a
//! single writer thread and a pool of read connections.

mod batches;
mod config;
mod deferred_append;
mod health;
mod migrate;
mod mirrored;
mod read_pool;
mod select;
mod sequence;
mod sql;
mod tables;
mod truncated;
mod writer;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use arrow_array::RecordBatch;
use dataforge_domain::change::{Mutated, Mutation};
use dataforge_domain::ports::{
    BatchStream, BoxFuture, DatasetStorage, MigrationPolicy, MigrationReport, ReadOrigin,
    ReadYourWrites, RecordReader, RecordWriter, RowCount, SchemaVersion, StagedWrite, Store,
    StoreError,
};
use dataforge_domain::query::{Predicate, ReadPlan};
use dataforge_domain::schema::{Catalog, DatasetSchema};
use dataforge_domain::value::Value;
use dataforge_domain::write::{ConflictMode, WriteOutcome};
use duckdb::Connection;
use tokio::sync::mpsc::error::{SendTimeoutError, TrySendError};
use tokio::sync::{mpsc, oneshot};

pub use config::DuckDbConfig;
pub use dataforge_key_index::walk_key_index;

use dataforge_key_index::KeyIndex;
use mirrored::MirroredTables;
use read_pool::ReadPool;
use writer::{Journals, Writer, WriterJob};

/// Why the database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot create directory {path}: {source}")]
    Directory {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid database setting `{setting}` = `{value}`: {message}")]
    Setting {
        setting: &'static str,
        value: String,
        message: String,
    },
    #[error("cannot open database {path}: {message}")]
    Open { path: String, message: String },
    /// Another process holds the file: one process at a time opens an embedded database.
    #[error(
        "the database {path} is in use by another process ({holder}), likely a running `dataforge serve`: \
         stop it first, or send files through it with `dataforge import --url http://HOST:PORT`"
    )]
    Locked { path: String, holder: String },
    #[error(
        "the database file {path} is cut short ({actual} bytes, its blocks need {expected}): it was \
         damaged, or copied incompletely. Restore it from a backup (or a complete copy) and start \
         again; the server does not start on it, so as not to serve wrong data"
    )]
    Truncated {
        path: String,
        actual: u64,
        expected: u64,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub(crate) fn store_error(e: duckdb::Error) -> StoreError {
    let message = e.to_string();
    if message.contains("No space left on device") {
        // DuckDB names the file it could not write in quotes
        let path = message
            .split('"')
            .nth(1)
            .unwrap_or("the database's directory")
            .to_owned();
        return StoreError::StorageFull(path);
    }
    StoreError::Internal(message)
}

/// The database: one file, one writer, a pool of readers.
pub struct DuckDbStore {
    setup: Mutex<Connection>,
    readers: Arc<ReadPool>,
    writer: Mutex<Option<Writer>>,
    /// Set while the writer holds acknowledged writes its tables do not yet hold (see
    /// [`DuckDbStore::settled`]).
    deferred: Arc<AtomicBool>,
    /// How long a write may wait for room in the queue before it is refused as unavailable.
    write_wait: Duration,
    /// Source of write ids, which name staging tables.
    next_write: AtomicU64,
    /// The database file.
    path: PathBuf,
    /// Where the primary-key index lives.
    index_path: PathBuf,
    /// The most bytes the primary-key index may take.
    index_max_bytes: usize,
    /// The program that verifies the key index before it is opened (see
    /// [`dataforge_key_index::walk_key_index`]).
    index_verifier: Option<PathBuf>,
    /// The primary-key index, once `prepare` has opened it; reads by key use it while it is
    /// usable.
    index: OnceLock<Arc<KeyIndex>>,
}

impl DuckDbStore {
    /// Opens (or creates) the database file with every setting of `config` applied.
    pub fn open(config: &DuckDbConfig) -> Result<Self, OpenError> {
        let temp_directory = config.effective_temp_directory();
        for dir in [config.path.parent(), Some(temp_directory.as_path())]
            .into_iter()
            .flatten()
        {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|source| OpenError::Directory {
                    path: dir.display().to_string(),
                    source,
                })?;
            }
        }
        let setting = |setting: &'static str, value: String| {
            move |e: duckdb::Error| OpenError::Setting {
                setting,
                value,
                message: e.to_string(),
            }
        };
        let temp = temp_directory.display().to_string();
        let settings = duckdb::Config::default()
            .max_memory(&config.memory_limit)
            .map_err(setting("memory_limit", config.memory_limit.clone()))?
            .threads(i64::from(config.effective_threads()))
            .map_err(setting("threads", config.threads.to_string()))?
            .with("temp_directory", &temp)
            .map_err(setting("temp_directory", temp.clone()))?
            .with(
                "preserve_insertion_order",
                config.preserve_insertion_order.to_string(),
            )
            .map_err(setting(
                "preserve_insertion_order",
                config.preserve_insertion_order.to_string(),
            ))?
            .with("checkpoint_threshold", &config.checkpoint_threshold)
            .map_err(setting(
                "checkpoint_threshold",
                config.checkpoint_threshold.clone(),
            ))?;
        let conn = Connection::open_with_flags(&config.path, settings).map_err(|e| {
            let (path, message) = (config.path.display().to_string(), e.to_string());
            match message.split("Conflicting lock is held in ").nth(1) {
                Some(holder) => OpenError::Locked {
                    path,
                    holder: holder.split(". See").next().unwrap_or(holder).to_owned(),
                },
                None => OpenError::Open { path, message },
            }
        })?;
        truncated::check_length(&conn, &config.path)?;
        let readers = Arc::new(ReadPool::new(
            &conn,
            config.read_connections as usize,
            config.sorting_reads(),
            Duration::from_millis(config.query_timeout_ms),
        )?);
        let writer = writer::start(
            conn.try_clone().map_err(store_error)?,
            config.write_queue as usize,
            config.preserve_insertion_order,
            config.write_buffer_mib as usize * 1024 * 1024,
            Duration::from_millis(config.deferred_append_ms),
        )?;
        tracing::info!(
            path = %config.path.display(),
            memory_limit = %config.memory_limit,
            threads = config.effective_threads(),
            temp_directory = %temp,
            preserve_insertion_order = config.preserve_insertion_order,
            checkpoint_threshold = %config.checkpoint_threshold,
            read_connections = config.read_connections,
            sorting_reads = config.sorting_reads(),
            write_queue = config.write_queue,
            write_wait_ms = config.write_wait_ms,
            query_timeout_ms = config.query_timeout_ms,
            deferred_append_ms = config.deferred_append_ms,
            key_index_max_mib = config.key_index_max_mib,
            "opened DuckDB database"
        );
        Ok(DuckDbStore {
            setup: Mutex::new(conn),
            readers,
            deferred: Arc::clone(&writer.deferred),
            writer: Mutex::new(Some(writer)),
            write_wait: Duration::from_millis(config.write_wait_ms),
            next_write: AtomicU64::new(0),
            path: config.path.clone(),
            index_path: config::beside(&config.path, ".keys"),
            index_max_bytes: config.key_index_max_bytes(),
            index_verifier: config.key_index_verifier.clone(),
            index: OnceLock::new(),
        })
    }

    /// Finishes queued writes, checkpoints and stops the writer. Later writes fail as unavailable.
    pub fn close(&self) {
        let writer = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(Writer { queue, thread, .. }) = writer {
            drop(queue);
            if thread.join().is_err() {
                tracing::error!("the writer thread panicked");
            }
        }
    }
}

/// Every read sees every acknowledged write (reads wait for deferred appends): no tokens.
impl ReadYourWrites for DuckDbStore {
    fn position(&self) -> BoxFuture<'_, Result<Option<String>, StoreError>> {
        Box::pin(async { Ok(None) })
    }

    fn reading_after(
        &self,
        _token: Option<&str>,
        _origin: Arc<ReadOrigin>,
    ) -> Option<Arc<dyn RecordReader>> {
        None
    }
}

impl Store for DuckDbStore {
    fn close(&self) {
        DuckDbStore::close(self);
    }
}

impl Drop for DuckDbStore {
    fn drop(&mut self) {
        self.close();
    }
}

impl DatasetStorage for DuckDbStore {
    fn prepare(
        &self,
        catalog: &Catalog,
        policy: MigrationPolicy,
    ) -> Result<MigrationReport, StoreError> {
        let conn = self
            .setup
            .lock()
            .map_err(|_| StoreError::Internal("setup lock poisoned".into()))?;
        let planned = migrate::plan(&conn, catalog)?;
        if !policy.apply {
            return Ok(planned.report);
        }
        if let Some(refused) = planned.report.refusal(policy) {
            return Err(refused);
        }
        for name in &planned.report.undeclared {
            tracing::warn!(dataset = %name, "a dataset is stored but declared in no schema file; its data is kept (`dataforge migrate --apply --allow-destructive` drops it)");
        }
        // writes acknowledged before their tables held them reach the tables from the journal in
        // the shape they were written in, before the tables change; then the index follows
        let (mut journal, entries) = Journals::open(&self.path)?;
        let index = KeyIndex::open(
            &self.index_path,
            self.index_max_bytes,
            catalog,
            self.index_verifier.as_deref(),
        )?;
        let tables = MirroredTables::new(&conn)?;
        let seq = dataforge_key_index::catch_up(&index, &planned.stored, &tables, &entries)?;
        journal.clear();
        let versions = migrate::apply(&conn, catalog, &planned, policy)?;
        index.in_step(catalog, &tables, seq)?;
        let index = Arc::new(index);
        if self.index.set(Arc::clone(&index)).is_err() {
            return Err(StoreError::Internal(
                "the datasets were prepared twice".into(),
            ));
        }
        let (reply, attached) = oneshot::channel();
        self.queue()?
            .sender
            .blocking_send(WriterJob::Attach {
                index,
                journal,
                seq,
                reply,
            })
            .map_err(|_| StoreError::Unavailable("the writer has stopped".into()))?;
        attached
            .blocking_recv()
            .map_err(|_| StoreError::Internal("the writer did not take the key index".into()))?;
        Ok(MigrationReport {
            versions,
            applied: true,
            ..planned.report
        })
    }

    fn history(&self) -> Result<Vec<SchemaVersion>, StoreError> {
        let conn = self
            .setup
            .lock()
            .map_err(|_| StoreError::Internal("setup lock poisoned".into()))?;
        migrate::history(&conn)
    }
}

impl DuckDbStore {
    /// The read barrier: a read through DuckDB first has the writer append the writes it
    /// acknowledged from the key index alone, so that it sees every acknowledged write.
    async fn settled(&self) -> Result<(), StoreError> {
        if !self.deferred.load(Ordering::Acquire) {
            return Ok(());
        }
        let (reply, answered) = oneshot::channel();
        // a read waits its turn in the queue: the refusal of a full queue (`write_wait_ms`) is
        // for writes, and a ticker's job may hold the last place for a moment
        self.queue()?
            .sender
            .send(WriterJob::Flush { reply: Some(reply) })
            .await
            .map_err(|_| StoreError::Unavailable("the writer has stopped".into()))?;
        match answer(answered).await {
            // with the disk full, reads answer from what the tables hold; the deferred writes
            // stay in the journal and are appended once there is room
            Err(StoreError::StorageFull(path)) => {
                tracing::warn!(%path, "the disk is full: a read answers without the writes still waiting to be appended");
                Ok(())
            }
            settled => settled,
        }
    }

    fn queue(&self) -> Result<WriterQueue, StoreError> {
        let sender = self
            .writer
            .lock()
            .map_err(|_| StoreError::Internal("writer lock poisoned".into()))?
            .as_ref()
            .map(|w| w.queue.clone())
            .ok_or_else(|| StoreError::Unavailable("the database is closing".into()))?;
        Ok(WriterQueue {
            sender,
            wait: self.write_wait,
        })
    }
}

/// The writer's queue as a write sees it: a full queue is waited on for `wait`, then refused.
#[derive(Clone)]
struct WriterQueue {
    sender: mpsc::Sender<WriterJob>,
    wait: Duration,
}

impl WriterQueue {
    async fn submit(&self, job: WriterJob) -> Result<(), StoreError> {
        let queued = if self.wait.is_zero() {
            self.sender
                .try_send(job)
                .map_err(|e| matches!(e, TrySendError::Full(_)))
        } else {
            self.sender
                .send_timeout(job, self.wait)
                .await
                .map_err(|e| matches!(e, SendTimeoutError::Timeout(_)))
        };
        match queued {
            Ok(()) => Ok(()),
            Err(true) => Err(StoreError::Unavailable(format!(
                "the write queue is full (waited {} ms); retry shortly",
                self.wait.as_millis()
            ))),
            Err(false) => Err(StoreError::Unavailable("the writer has stopped".into())),
        }
    }
}

async fn answer<T>(reply: oneshot::Receiver<Result<T, StoreError>>) -> Result<T, StoreError> {
    reply
        .await
        .map_err(|_| StoreError::Internal("the writer dropped a request".into()))?
}

/// A write in progress: its batches go to a staging table of its own on the writer.
struct DuckDbWrite {
    id: u64,
    dataset: Arc<DatasetSchema>,
    queue: WriterQueue,
    /// The writer discards the staging table once this handle is gone without a commit.
    alive: Arc<()>,
    /// The latest batch, held back until the next one arrives or the commit carries it, so a
    /// write of one batch (every small request) costs one trip to the writer, not two.
    held: Option<RecordBatch>,
}

impl StagedWrite for DuckDbWrite {
    fn stage(&mut self, batch: RecordBatch) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let Some(previous) = self.held.replace(batch) else {
                return Ok(());
            };
            let (reply, answered) = oneshot::channel();
            let alive = Arc::downgrade(&self.alive);
            let job = WriterJob::Stage {
                write: self.id,
                alive,
                dataset: Arc::clone(&self.dataset),
                batch: previous,
                reply,
            };
            self.queue.submit(job).await?;
            answer(answered).await
        })
    }

    fn commit(
        self: Box<Self>,
        mode: ConflictMode,
    ) -> BoxFuture<'static, Result<WriteOutcome, StoreError>> {
        let mut this = self;
        Box::pin(async move {
            let (reply, answered) = oneshot::channel();
            let job = WriterJob::Commit {
                write: this.id,
                alive: Arc::downgrade(&this.alive),
                dataset: Arc::clone(&this.dataset),
                last: this.held.take(),
                mode,
                reply,
            };
            this.queue.submit(job).await?;
            let outcome = answer(answered).await;
            drop(this);
            outcome
        })
    }
}

impl RecordWriter for DuckDbStore {
    fn begin(
        &self,
        dataset: Arc<DatasetSchema>,
    ) -> BoxFuture<'_, Result<Box<dyn StagedWrite>, StoreError>> {
        Box::pin(async move {
            let write = DuckDbWrite {
                id: self.next_write.fetch_add(1, Ordering::Relaxed),
                dataset,
                queue: self.queue()?,
                alive: Arc::new(()),
                held: None,
            };
            Ok(Box::new(write) as Box<dyn StagedWrite>)
        })
    }

    fn mutate(
        &self,
        dataset: Arc<DatasetSchema>,
        mutation: Mutation,
    ) -> BoxFuture<'_, Result<Mutated, StoreError>> {
        Box::pin(async move {
            let (reply, answered) = oneshot::channel();
            let job = WriterJob::Mutate {
                dataset,
                mutation,
                reply,
            };
            self.queue()?.submit(job).await?;
            answer(answered).await
        })
    }

    fn cluster(&self, dataset: Arc<DatasetSchema>) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            let (reply, answered) = oneshot::channel();
            self.queue()?
                .submit(WriterJob::Cluster { dataset, reply })
                .await?;
            answer(answered).await
        })
    }
}

/// A read's answer from the key index, or `None` to answer it through DuckDB: any failure is,
/// and damage also retires the index.
fn answered_by<T>(index: &KeyIndex, read: Result<T, StoreError>) -> Option<T> {
    match read {
        Ok(answer) => Some(answer),
        Err(e) if dataforge_key_index::is_damage(&e) => {
            index.found_damaged(&e);
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "a read of the key index failed; answered through DuckDB");
            None
        }
    }
}

/// Runs a blocking read of the key index on tokio's blocking pool, never on an executor thread.
async fn off_executor<T: Send + 'static>(
    read: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(read)
        .await
        .map_err(|e| StoreError::Internal(format!("read task failed: {e}")))?
}

/// Rows of an ordered read with a limit that DuckDB keeps in memory (a top-N) rather than sorting
/// the whole result: larger limits take a sorting place.
const SORTED_IN_MEMORY: usize = 10_000;

/// Tables at least this large are counted from a sample when an estimate is asked for.
const ESTIMATE_FROM_ROWS: u64 = 1_000_000;

impl RecordReader for DuckDbStore {
    fn get(
        &self,
        dataset: Arc<DatasetSchema>,
        key: Vec<Value>,
    ) -> BoxFuture<'_, Result<Option<RecordBatch>, StoreError>> {
        Box::pin(async move {
            // the key index holds every record: one lookup, off the async executor
            if let Some(index) = self.index.get().filter(|i| i.is_usable()) {
                let found = off_executor({
                    let (index, dataset, key) =
                        (Arc::clone(index), Arc::clone(&dataset), key.clone());
                    move || index.get(&dataset, &key)
                })
                .await;
                if let Some(found) = answered_by(index, found) {
                    return Ok(found);
                }
            }
            self.settled().await?;
            self.readers
                .run(move |conn| {
                    let statement = select::by_key(&dataset, &key);
                    let mut prepared = conn.prepare(&statement.sql).map_err(store_error)?;
                    let batches = prepared
                        .query_arrow(duckdb::params_from_iter(statement.params.iter()))
                        .map_err(store_error)?;
                    Ok(batches.into_iter().find(|b| b.num_rows() > 0))
                })
                .await
        })
    }

    fn scan(
        &self,
        dataset: Arc<DatasetSchema>,
        plan: ReadPlan,
    ) -> BoxFuture<'_, Result<BatchStream, StoreError>> {
        // a bounded page a declared index answers is read from the key index, without SQL
        let from_index = match &plan {
            ReadPlan::Records(query) => self.index.get().filter(|i| i.is_usable()).and_then(|i| {
                let range = i.plan(&dataset, query)?;
                Some((Arc::clone(i), range, query.fetched_fields()))
            }),
            _ => None,
        };
        // a large result sorted (an export with `order`) needs sort memory: see `sorting_reads`
        let sorts = matches!(&plan, ReadPlan::Records(q)
            if !q.order.is_empty() && q.limit.is_none_or(|l| l > SORTED_IN_MEMORY));
        Box::pin(async move {
            if let Some((index, range, fields)) = from_index {
                let page = off_executor({
                    let (index, dataset) = (Arc::clone(&index), Arc::clone(&dataset));
                    move || index.page(&dataset, &range, &fields)
                })
                .await;
                if let Some(page) = answered_by(&index, page) {
                    return Ok(BatchStream::new(std::iter::once(Ok(page))));
                }
            }
            self.settled().await?;
            self.readers
                .stream(select::plan(&dataset, &plan), sorts)
                .await
        })
    }

    fn count(
        &self,
        dataset: Arc<DatasetSchema>,
        filter: Predicate,
        exact: bool,
    ) -> BoxFuture<'_, Result<RowCount, StoreError>> {
        Box::pin(async move {
            self.settled().await?;
            self.readers
                .run(move |conn| count_rows(conn, &dataset, &filter, exact))
                .await
        })
    }
}

/// The row count DuckDB keeps for a table (one parameter: its name).
const TABLE_SIZE: &str =
    "SELECT estimated_size FROM duckdb_tables() WHERE schema_name = 'main' AND table_name = ?";

/// Counts the dataset's rows that pass `filter`: exactly, or from DuckDB's table size or a sample
/// when an estimate will do.
fn count_rows(
    conn: &Connection,
    dataset: &DatasetSchema,
    filter: &Predicate,
    exact: bool,
) -> Result<RowCount, StoreError> {
    let one = |statement: select::Statement| {
        conn.query_row(
            &statement.sql,
            duckdb::params_from_iter(statement.params.iter()),
            |row| row.get::<_, u64>(0),
        )
        .map_err(store_error)
    };
    if exact {
        return Ok(RowCount {
            rows: one(select::count(dataset, filter, None))?,
            exact: true,
        });
    }
    // DuckDB keeps each table's row count: no filter, no scan
    let stored: u64 = conn
        .query_row(TABLE_SIZE, [&dataset.name], |row| row.get(0))
        .map_err(store_error)?;
    if filter.is_always() {
        return Ok(RowCount {
            rows: stored,
            exact: false,
        });
    }
    let sample = (stored >= ESTIMATE_FROM_ROWS).then_some(1);
    Ok(RowCount {
        rows: one(select::count(dataset, filter, sample))?,
        exact: sample.is_none(),
    })
}
