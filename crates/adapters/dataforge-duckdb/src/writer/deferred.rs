//! Deferred appends: a group of small writes (single-record POSTs) is acknowledged once its records
//! are in the key index and synced to disk, and reaches its DuckDB table later, in one append with
//! many other groups. DuckDB's fixed cost per transaction (an appender flush that plans an insert,
//! the sequence update, commit and WAL) then is paid per flush instead of per group, which is what
//! bounded single-record throughput.
//!
//! The index lists each deferred write's keys under its sequence number (`_deferred`), and a start
//! that finds DuckDB's sequence behind the index's appends them from there (see
//! [`KeyIndex::open`](crate::key_index::KeyIndex::open)). Reads by key see the records at once
//! (they live in the index); reads through DuckDB first have the writer append what is deferred
//! ([`DuckDbStore`](crate::DuckDbStore)'s read barrier), so every read after a `201` sees the write.
//! Any other write, a clustering rewrite and the shutdown append what is deferred first, so DuckDB
//! holds every earlier write whenever it commits one of its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_select::concat::concat_batches;
use dataforge_domain::ports::StoreError;
use dataforge_domain::schema::DatasetSchema;
use dataforge_domain::write::ConflictMode;
use tokio::sync::mpsc;

use crate::key_index::append_at_sequence;

use super::{Applied, Commit, Records, WriteResult, WriterJob, WriterState, by_dataset};

/// Records of one group, at most, for it to be deferred; larger groups commit to DuckDB at once
/// (for them the per-transaction cost does not dominate, and the index is not synced).
const DEFERRED_GROUP_ROWS: usize = 8192;

/// Deferred records past which they are appended without waiting for the next tick.
const DEFERRED_ROWS: usize = 64 * 1024;

/// Writes acknowledged from the key index and not yet appended to their tables.
pub(crate) struct Deferred {
    /// Zero when writes are never deferred.
    every: Duration,
    batches: Vec<(Arc<DatasetSchema>, RecordBatch)>,
    rows: usize,
    /// Set while anything is deferred: reads through DuckDB wait for an append first.
    pending: Arc<AtomicBool>,
}

impl Deferred {
    pub(crate) fn new(every: Duration) -> Self {
        Deferred {
            every,
            batches: Vec::new(),
            rows: 0,
            pending: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The flag reads check (see [`Self::pending`]).
    pub(crate) fn flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.pending)
    }

    /// Asks the writer every `every` to append what is deferred, for as long as the writer's
    /// queue is open (the ticker holds it weakly, so it does not keep the writer alive).
    pub(crate) fn start_ticker(&self, queue: mpsc::WeakSender<WriterJob>) {
        if self.every.is_zero() {
            return;
        }
        let (every, pending) = (self.every, self.flag());
        let started = std::thread::Builder::new()
            .name("dataforge-append-tick".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(every);
                    let Some(queue) = queue.upgrade() else {
                        return;
                    };
                    if pending.load(Ordering::Acquire) {
                        // a full queue skips this tick; the size rule and reads still append
                        let _ = queue.try_send(WriterJob::Flush { reply: None });
                    }
                }
            });
        if let Err(e) = started {
            tracing::warn!(error = %e, "no ticker for deferred appends; they wait for reads, other writes or the size rule");
        }
    }

    /// The deferred batches of each dataset, gathered into one, leaving nothing deferred.
    fn take(&mut self) -> Result<Vec<(Arc<DatasetSchema>, RecordBatch)>, StoreError> {
        let mut by_dataset: Vec<(Arc<DatasetSchema>, Vec<RecordBatch>)> = Vec::new();
        for (schema, batch) in self.batches.drain(..) {
            match by_dataset.iter_mut().find(|(s, _)| s.name == schema.name) {
                Some((_, batches)) => batches.push(batch),
                None => by_dataset.push((schema, vec![batch])),
            }
        }
        self.rows = 0;
        by_dataset
            .into_iter()
            .map(|(schema, batches)| {
                let batch = concat_batches(schema.arrow_schema(), &batches)
                    .map_err(|e| StoreError::Internal(e.to_string()))?;
                Ok((schema, batch))
            })
            .collect()
    }
}

impl WriterState {
    /// Whether a group is deferred: every write in it is small, in memory and in mode `error`,
    /// and the key index is attached.
    pub(super) fn deferrable(&self, commits: &[Commit]) -> bool {
        if self.deferred.every.is_zero() || self.index.is_none() || self.seq.is_none() {
            return false;
        }
        let mut rows = 0;
        for commit in commits {
            match self.staged.get(&commit.write) {
                Some(staged) if staged.memory.is_some() && commit.mode == ConflictMode::Error => {
                    rows += staged.rows
                }
                _ => return false,
            }
        }
        rows <= DEFERRED_GROUP_ROWS
    }

    /// Checks a deferrable group's keys against the index, writes the accepted records and the log
    /// entry of their keys to the index with the next sequence number, and syncs the index to
    /// disk: then the writes are acknowledged, and their records wait to be appended to DuckDB.
    /// An error means nothing of the group was stored (the index failed before its commit).
    pub(super) fn defer_group(
        &mut self,
        commits: &[Commit],
    ) -> Result<Vec<WriteResult>, StoreError> {
        let (Some(index), Some(seq)) = (self.index.clone(), self.seq.map(|s| s + 1)) else {
            return Err(StoreError::Internal(
                "no key index to defer writes to".into(),
            ));
        };
        let mut applied = Applied::default();
        let mut results: Vec<Option<WriteResult>> = commits.iter().map(|_| None).collect();
        for indices in by_dataset(commits, |_, _| true) {
            let settled = self.settle_in_memory(commits, &indices, &mut applied)?;
            for (i, result) in settled.results {
                results[i] = Some(result);
            }
            let schema = &commits[indices[0]].dataset;
            applied
                .records
                .push((Arc::clone(schema), Records::Batches(settled.stored)));
        }
        let mut write = index.write()?;
        for (schema, records) in &applied.records {
            if let Records::Batches(batches) = records {
                for batch in batches {
                    write.put(schema, batch, false)?;
                }
            }
        }
        for (name, (_, keys)) in &applied.keys {
            write.defer(seq, name, keys)?;
        }
        write.commit(seq)?;
        // committed: the records are in the index, so they are deferred whatever the sync says
        self.seq = Some(seq);
        for (schema, records) in applied.records {
            if let Records::Batches(batches) = records {
                for batch in batches.into_iter().filter(|b| b.num_rows() > 0) {
                    self.deferred.rows += batch.num_rows();
                    self.deferred.batches.push((Arc::clone(&schema), batch));
                }
            }
        }
        self.deferred.pending.store(true, Ordering::Release);
        let synced = index.sync();
        if synced.is_err() || self.deferred.rows >= DEFERRED_ROWS {
            // not durable in the index (or many deferred): made durable in DuckDB now; should that
            // fail too, the records are in the index and stay deferred for the next attempt
            if let Err(e) = synced {
                tracing::error!(error = %e, "could not sync the key index; appending deferred writes now");
            }
            if let Err(e) = self.flush_deferred() {
                tracing::error!(error = %e, "could not append deferred writes");
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Ok(Default::default())))
            .collect())
    }

    /// Appends every deferred record to its table in one DuckDB transaction, which records the
    /// index's sequence number, then empties the index's log. On failure the records stay
    /// deferred (and in the log), to be appended at the next attempt or the next start.
    pub(super) fn flush_deferred(&mut self) -> Result<(), StoreError> {
        if self.deferred.batches.is_empty() {
            self.deferred.pending.store(false, Ordering::Release);
            return Ok(());
        }
        let Some(seq) = self.seq else {
            return Err(StoreError::Internal(
                "writes were deferred without a sequence number".into(),
            ));
        };
        let batches = self.deferred.take()?;
        if let Err(e) = append_at_sequence(&self.conn, &batches, seq) {
            self.deferred.rows = batches.iter().map(|(_, b)| b.num_rows()).sum();
            self.deferred.batches = batches;
            return Err(e);
        }
        self.deferred.pending.store(false, Ordering::Release);
        if let Some(index) = &self.index
            && let Err(e) = index.clear_deferred()
        {
            // entries DuckDB holds are skipped at start, and cleared then
            tracing::warn!(error = %e, "could not clear the log of deferred writes");
        }
        Ok(())
    }
}
