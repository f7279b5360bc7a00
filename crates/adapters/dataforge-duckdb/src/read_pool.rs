//! A fixed set of read connections. A read waits (asynchronously) for a free connection, then runs
//! on tokio's blocking thread pool, so queries never occupy the async executor's threads. A read
//! that has not answered within the query timeout is interrupted and answered as a timeout; its
//! connection is replaced rather than reused.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use arrow_array::RecordBatch;
use dataforge_domain::ports::{BatchStream, StoreError};
use duckdb::Connection;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use crate::select::Statement;
use crate::store_error;

/// Batches a streamed read may have ready ahead of its consumer: 128Ki rows, so DuckDB keeps
/// scanning while a Parquet encoder closes a row group, in a few MiB.
const READ_AHEAD: usize = 8;

/// Rows per batch handed on: DuckDB's 2,048-row chunks are gathered to this many, so each batch
/// costs one channel hand-over and one message in the answer's format; small enough that the
/// batches in flight (this, the encoder's and those read ahead) stay a few MiB each.
const BATCH_ROWS: usize = 16 * 1024;

/// The least a read waits for a free connection, however short the query timeout: a connection
/// whose query was just interrupted takes a moment to come back.
const MIN_LEASE_WAIT: Duration = Duration::from_secs(1);

pub(crate) struct ReadPool {
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
    /// Places for reads that sort a whole result ([`DuckDbConfig::sorting_reads`]).
    ///
    /// [`DuckDbConfig::sorting_reads`]: crate::DuckDbConfig::sorting_reads
    sorting: Arc<Semaphore>,
    sorting_size: usize,
    /// Source of replacement connections, for reads that were interrupted or panicked.
    template: Mutex<Connection>,
    timeout: Duration,
}

/// A connection lent to one read, with its place in the pool.
struct Lease {
    conn: Option<Connection>,
    pool: Arc<ReadPool>,
    _permit: OwnedSemaphorePermit,
    /// The read's place among those that sort, if it sorts.
    _sorting: Option<OwnedSemaphorePermit>,
    /// Set when the read was given up on (timeout): the connection is then not reused.
    abandoned: Arc<AtomicBool>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take()
            && !self.abandoned.load(Ordering::Acquire)
            && let Ok(mut idle) = self.pool.idle.lock()
        {
            idle.push(conn);
        }
    }
}

impl ReadPool {
    pub(crate) fn new(
        template: &Connection,
        size: usize,
        sorting: usize,
        timeout: Duration,
    ) -> Result<Self, StoreError> {
        let size = size.max(1);
        let idle = (0..size)
            .map(|_| template.try_clone())
            .collect::<Result<Vec<_>, _>>()
            .map_err(store_error)?;
        Ok(ReadPool {
            idle: Mutex::new(idle),
            permits: Arc::new(Semaphore::new(size)),
            sorting: Arc::new(Semaphore::new(sorting.max(1))),
            sorting_size: sorting.max(1),
            template: Mutex::new(template.try_clone().map_err(store_error)?),
            timeout,
        })
    }

    fn take(&self) -> Result<Connection, StoreError> {
        let poisoned = || StoreError::Internal("read pool lock poisoned".into());
        let popped = self.idle.lock().map_err(|_| poisoned())?.pop();
        match popped {
            Some(conn) => Ok(conn),
            None => self
                .template
                .lock()
                .map_err(|_| poisoned())?
                .try_clone()
                .map_err(store_error),
        }
    }

    /// A free connection, waited for within the query timeout (at least [`MIN_LEASE_WAIT`]; a read
    /// that sorts first waits as long for a sorting place):
    /// every connection busy for that long (say, with long exports) is answered as unavailable,
    /// not by a request that hangs.
    async fn lease(self: &Arc<Self>, sorts: bool) -> Result<Lease, StoreError> {
        let started = std::time::Instant::now();
        let leased = self.lease_within(sorts).await;
        match &leased {
            Ok(_) => metrics::histogram!("dataforge_read_wait_seconds")
                .record(started.elapsed().as_secs_f64()),
            Err(_) => metrics::counter!("dataforge_read_refusals_total").increment(1),
        }
        leased
    }

    async fn lease_within(self: &Arc<Self>, sorts: bool) -> Result<Lease, StoreError> {
        let wait = self.timeout.max(MIN_LEASE_WAIT);
        let sorting = if sorts {
            let waited =
                tokio::time::timeout(wait, Arc::clone(&self.sorting).acquire_owned()).await;
            match waited {
                Ok(permit) => Some(
                    permit.map_err(|_| StoreError::Unavailable("the database is closed".into()))?,
                ),
                Err(_) => {
                    return Err(StoreError::Unavailable(format!(
                        "{} sorted exports were running for {} ms, as many as database.memory_limit allows at once (16 MiB per thread each); retry shortly",
                        self.sorting_size,
                        wait.as_millis()
                    )));
                }
            }
        } else {
            None
        };
        let waited = tokio::time::timeout(wait, Arc::clone(&self.permits).acquire_owned()).await;
        let permit = match waited {
            Ok(permit) => {
                permit.map_err(|_| StoreError::Unavailable("the database is closed".into()))?
            }
            Err(_) => {
                return Err(StoreError::Unavailable(format!(
                    "every read connection stayed busy for {} ms (database.read_connections); retry shortly",
                    wait.as_millis()
                )));
            }
        };
        Ok(Lease {
            conn: Some(self.take()?),
            pool: Arc::clone(self),
            _permit: permit,
            _sorting: sorting,
            abandoned: Arc::new(AtomicBool::new(false)),
        })
    }

    fn timed_out(&self) -> StoreError {
        metrics::counter!("dataforge_query_timeouts_total").increment(1);
        StoreError::Timeout(self.timeout.as_millis() as u64)
    }

    /// Runs `read` on a pooled connection off the async executor, within the query timeout.
    pub(crate) async fn run<T, F>(self: &Arc<Self>, read: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let lease = self.lease(false).await?;
        let abandoned = Arc::clone(&lease.abandoned);
        let interrupt = lease.conn.as_ref().map(Connection::interrupt_handle);
        let task = tokio::task::spawn_blocking(move || match &lease.conn {
            Some(conn) => read(conn),
            None => Err(StoreError::Internal(
                "a read lease without a connection".into(),
            )),
        });
        match tokio::time::timeout(self.timeout, task).await {
            Ok(joined) => {
                joined.map_err(|e| StoreError::Internal(format!("read task failed: {e}")))?
            }
            Err(_) => {
                abandoned.store(true, Ordering::Release);
                if let Some(interrupt) = interrupt {
                    interrupt.interrupt();
                }
                Err(self.timed_out())
            }
        }
    }

    /// Starts `statement` and answers once its first batch is ready (or it failed, or the query
    /// timeout passed); the rest stream from a blocking thread through a small bounded channel.
    /// Dropping the stream stops the query and returns its connection. A read that `sorts` a
    /// whole result first waits for a place among those (see [`Self::sorting`]).
    pub(crate) async fn stream(
        self: &Arc<Self>,
        statement: Statement,
        sorts: bool,
    ) -> Result<BatchStream, StoreError> {
        let lease = self.lease(sorts).await?;
        let abandoned = Arc::clone(&lease.abandoned);
        let interrupt = lease.conn.as_ref().map(Connection::interrupt_handle);
        let (first_tx, first_rx) = oneshot::channel();
        let (rest_tx, rest_rx) = mpsc::sync_channel(READ_AHEAD);
        tokio::task::spawn_blocking(move || {
            if let Some(conn) = &lease.conn {
                pump(conn, &statement, first_tx, rest_tx);
            }
            drop(lease);
        });
        match tokio::time::timeout(self.timeout, first_rx).await {
            Err(_) => {
                abandoned.store(true, Ordering::Release);
                if let Some(interrupt) = interrupt {
                    interrupt.interrupt();
                }
                Err(self.timed_out())
            }
            Ok(Err(_)) => Err(StoreError::Internal(
                "the read stopped before answering".into(),
            )),
            Ok(Ok(None)) => Ok(BatchStream::new(std::iter::empty())),
            Ok(Ok(Some(Err(e)))) => Err(e),
            Ok(Ok(Some(Ok(first)))) => {
                Ok(BatchStream::new(std::iter::once(Ok(first)).chain(rest_rx)))
            }
        }
    }
}

/// Runs the statement and sends its batches (DuckDB's chunks gathered to [`BATCH_ROWS`]): the first
/// one (or the failure, or `None` for an empty answer) through `first`, the rest through `rest`,
/// until the consumer hangs up.
fn pump(
    conn: &Connection,
    statement: &Statement,
    first: oneshot::Sender<Option<Result<RecordBatch, StoreError>>>,
    rest: mpsc::SyncSender<Result<RecordBatch, StoreError>>,
) {
    let mut first = Some(first);
    // hands one item on; false once the consumer is gone
    let mut deliver = |item: Result<RecordBatch, StoreError>| match first.take() {
        Some(first) => first.send(Some(item)).is_ok(),
        None => rest.send(item).is_ok(),
    };
    // prepared afresh for every read, never taken from the connection's statement cache: DuckDB
    // plans with the tables' statistics at preparation (compressed materialization narrows an
    // integer to the range then stored, statistics propagation prunes filters), and a plan reused
    // after later writes answers values that were never written
    let mut prepared = match conn.prepare(&statement.sql) {
        Ok(prepared) => prepared,
        Err(e) => {
            deliver(Err(store_error(e)));
            return;
        }
    };
    // a read that ends early drops its statement mid-result, so no pending result holds a
    // snapshot open on the pooled connection
    if let Err(e) = prepared.stream_arrow(duckdb::params_from_iter(statement.params.iter())) {
        deliver(Err(store_error(e)));
        return;
    }
    let mut gathered: Vec<RecordBatch> = Vec::new();
    let mut rows = 0;
    loop {
        let (chunk, done) = match prepared.step() {
            Ok(Some(chunk)) => (Some(RecordBatch::from(&chunk)), false),
            Ok(None) => (None, true),
            Err(e) => {
                deliver(Err(store_error(e)));
                return;
            }
        };
        if let Some(chunk) = chunk.filter(|c| c.num_rows() > 0) {
            rows += chunk.num_rows();
            gathered.push(chunk);
        }
        if (rows >= BATCH_ROWS || done) && !gathered.is_empty() {
            let batch = match gathered.as_slice() {
                [one] => Ok(one.clone()),
                many => arrow_select::concat::concat_batches(&many[0].schema(), many)
                    .map_err(|e| StoreError::Internal(e.to_string())),
            };
            gathered.clear();
            rows = 0;
            let failed = batch.is_err();
            if !deliver(batch) || failed {
                // the consumer is gone (or told of the failure): stop the query
                return;
            }
        }
        if done {
            if let Some(first) = first.take() {
                let _ = first.send(None);
            }
            return;
        }
    }
}
