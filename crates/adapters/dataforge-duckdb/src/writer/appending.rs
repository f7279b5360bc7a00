//! Deferred appends beside the job loop. On a loaded table an append of deferred writes takes tens
//! of milliseconds, and a single-record POST that reached the writer meanwhile waited for it (issue
//! 15: a p99 of 80–230 ms against a p50 of 1 ms). So the ticker's appends run on a thread of their
//! own, with a DuckDB connection of its own, while the writer goes on journaling groups and writing
//! them to the key index. One append runs at a time; whatever writes DuckDB on the writer's
//! connection (its own commits, changes by filter, clustering, shutdown) and every read through
//! DuckDB first waits for it ([`WriterState::flush_deferred`](super::WriterState::flush_deferred)),
//! so DuckDB still takes writes in sequence order.

use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::thread::JoinHandle;
use std::time::Instant;

use dataforge_domain::ports::StoreError;
use dataforge_key_index::DeferredWrites;
use duckdb::Connection;

use crate::deferred_append::write_deferred;

/// Deferred writes on their way to DuckDB, up to sequence number `seq`.
#[derive(Clone)]
pub(super) struct AppendBatch {
    pub writes: Vec<DeferredWrites>,
    pub seq: u64,
}

/// How an append on the thread went, and when it ran.
pub(super) struct Appended {
    pub result: Result<(), StoreError>,
    pub started: Instant,
    pub ended: Instant,
}

/// The thread appending deferred writes, and its two channels.
pub(super) struct AppendThread {
    batches: Option<Sender<AppendBatch>>,
    done: Receiver<Appended>,
    thread: Option<JoinHandle<()>>,
}

/// What became of the append the writer started.
pub(super) enum Outcome {
    Running,
    Done(Appended),
    /// The thread is gone (it panicked): the append's fate is unknown to it.
    Lost,
}

impl AppendThread {
    /// Starts the thread on `conn`, a connection to the writer's database.
    pub(super) fn start(conn: Connection) -> Result<Self, StoreError> {
        let (batches, incoming) = channel::<AppendBatch>();
        let (finished, done) = channel();
        let thread = std::thread::Builder::new()
            .name("dataforge-append".into())
            .spawn(move || {
                for batch in incoming {
                    let started = Instant::now();
                    let result = write_deferred(&conn, &batch.writes, batch.seq);
                    let appended = Appended {
                        result,
                        started,
                        ended: Instant::now(),
                    };
                    if finished.send(appended).is_err() {
                        return;
                    }
                }
            })
            .map_err(|e| StoreError::Internal(format!("cannot start the append thread: {e}")))?;
        Ok(AppendThread {
            batches: Some(batches),
            done,
            thread: Some(thread),
        })
    }

    /// Hands the thread a batch; gives it back if the thread is gone.
    pub(super) fn send(&self, batch: AppendBatch) -> Result<(), AppendBatch> {
        match &self.batches {
            Some(batches) => batches.send(batch).map_err(|e| e.0),
            None => Err(batch),
        }
    }

    /// The outcome of the append sent last; `wait`: blocks until it is done.
    pub(super) fn outcome(&self, wait: bool) -> Outcome {
        if wait {
            return self.done.recv().map_or(Outcome::Lost, Outcome::Done);
        }
        match self.done.try_recv() {
            Ok(appended) => Outcome::Done(appended),
            Err(TryRecvError::Empty) => Outcome::Running,
            Err(TryRecvError::Disconnected) => Outcome::Lost,
        }
    }

    /// Ends the thread (once its append is done) and closes its connection.
    pub(super) fn stop(&mut self) {
        self.batches = None;
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the append thread panicked");
        }
    }
}
