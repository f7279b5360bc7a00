//! Deferred appends: a group of small writes (single-record POSTs) is acknowledged once its records
//! are in the journal, synced to disk, and in the key index, and reaches its DuckDB table later,
//! in one append with many other groups. DuckDB's fixed cost per transaction (an appender flush
//! that plans an insert, the sequence update, commit and WAL) then is paid per flush instead of
//! per group, which is what bounded single-record throughput.
//!
//! The journal holds each deferred group under its sequence number until DuckDB holds it, and a
//! start that finds DuckDB's sequence behind the journal's appends them from there (see
//! [`crate::catch_up`]); the key index is derived data only. Reads by key see the records at once
//! (they live in the index); reads through DuckDB first have the writer append what is deferred
//! ([`DuckDbStore`](crate::DuckDbStore)'s read barrier), so every read after a `201` sees the write.
//! Any other write, a clustering rewrite and the shutdown append what is deferred first, so DuckDB
//! holds every earlier write whenever it commits one of its own.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_select::concat::concat_batches;
use dataforge_domain::ports::StoreError;
use dataforge_domain::schema::DatasetSchema;
use dataforge_domain::write::ConflictMode;
use tokio::sync::mpsc;

use crate::deferred_append::{DeferredWrites, write_deferred};
use crate::journal::{EntryBuf, SectionKind};
use crate::key_index::IndexWrite;

use super::pacing::AppendPacing;
use super::{Applied, Commit, Records, WriteResult, WriterJob, WriterState, by_dataset};

/// Records of one group, at most, for it to be deferred; larger groups commit to DuckDB at once
/// (for them the per-transaction cost does not dominate).
const DEFERRED_GROUP_ROWS: usize = 8192;

/// Deferred records past which they are appended without waiting for the next tick.
const DEFERRED_ROWS: usize = 64 * 1024;

/// Latest records of keys changed by key (`None` once deleted), per encoded key.
type Latest = HashMap<Vec<u8>, Option<RecordBatch>>;

/// Writes acknowledged (in the journal and the key index) and not yet appended to their tables.
pub(crate) struct Deferred {
    /// Zero when writes are never deferred.
    pub(super) every: Duration,
    batches: Vec<(Arc<DatasetSchema>, RecordBatch)>,
    /// Keys updated or deleted by key, per dataset, with their latest records: their rows are
    /// rewritten from these, so an append never reads the key index back.
    changed: Vec<(Arc<DatasetSchema>, Latest)>,
    /// Records and changed keys deferred.
    pub(super) rows: usize,
    /// When the ticker's appends may run.
    pub(super) pacing: AppendPacing,
    /// Set while anything is deferred: reads through DuckDB wait for an append first.
    pending: Arc<AtomicBool>,
}

impl Deferred {
    pub(crate) fn new(every: Duration) -> Self {
        Deferred {
            every,
            batches: Vec::new(),
            changed: Vec::new(),
            rows: 0,
            pacing: AppendPacing::default(),
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

    /// The latest records of `schema`'s changed keys.
    fn latest(&mut self, schema: &Arc<DatasetSchema>) -> &mut Latest {
        let slot = match self.changed.iter().position(|(s, _)| s.name == schema.name) {
            Some(slot) => slot,
            None => {
                self.changed.push((Arc::clone(schema), HashMap::new()));
                self.changed.len() - 1
            }
        };
        &mut self.changed[slot].1
    }

    /// Notes keys changed by key with their latest records (their rows are rewritten at the next
    /// append).
    pub(super) fn changed(
        &mut self,
        schema: &Arc<DatasetSchema>,
        changes: impl IntoIterator<Item = (Vec<u8>, Option<RecordBatch>)>,
    ) {
        let latest = self.latest(schema);
        let before = latest.len();
        latest.extend(changes);
        let added = latest.len() - before;
        self.rows += added;
        metrics::gauge!("dataforge_deferred_rows").set(self.rows as f64);
        self.pending.store(true, Ordering::Release);
    }

    /// Notes new records (keys encoded in `keys`); a key changed by key before (deleted, then
    /// inserted again) takes the new record as its latest.
    fn inserted(&mut self, schema: &Arc<DatasetSchema>, batch: RecordBatch, keys: &[Vec<u8>]) {
        if let Some((_, latest)) = self.changed.iter_mut().find(|(s, _)| s.name == schema.name) {
            for (row, key) in keys.iter().enumerate() {
                if let Some(record) = latest.get_mut(key) {
                    *record = Some(batch.slice(row, 1));
                }
            }
        }
        self.rows += batch.num_rows();
        metrics::gauge!("dataforge_deferred_rows").set(self.rows as f64);
        self.batches.push((Arc::clone(schema), batch));
        self.pending.store(true, Ordering::Release);
    }

    fn is_empty(&self) -> bool {
        self.batches.is_empty() && self.changed.is_empty()
    }

    /// What is deferred, by dataset (each dataset's new records and latest records gathered into
    /// one batch each); it stays deferred until [`Self::clear`].
    fn writes(&self) -> Result<Vec<DeferredWrites>, StoreError> {
        let mut writes: Vec<DeferredWrites> = Vec::new();
        let slot = |writes: &mut Vec<DeferredWrites>, schema: &Arc<DatasetSchema>| match writes
            .iter()
            .position(|w| w.schema.name == schema.name)
        {
            Some(i) => i,
            None => {
                writes.push(DeferredWrites {
                    schema: Arc::clone(schema),
                    appended: Vec::new(),
                    changed: Vec::new(),
                    current: Vec::new(),
                });
                writes.len() - 1
            }
        };
        for (schema, batch) in &self.batches {
            let i = slot(&mut writes, schema);
            writes[i].appended.push(batch.clone());
        }
        for (schema, latest) in &self.changed {
            let i = slot(&mut writes, schema);
            for (key, record) in latest {
                writes[i].changed.push(key.clone());
                writes[i].current.extend(record.clone());
            }
        }
        let gathered = |schema: &DatasetSchema, batches: &mut Vec<RecordBatch>| {
            if batches.len() > 1 {
                let batch = concat_batches(schema.arrow_schema(), batches.iter())
                    .map_err(|e| StoreError::Internal(e.to_string()))?;
                *batches = vec![batch];
            }
            Ok::<(), StoreError>(())
        };
        for write in &mut writes {
            gathered(&write.schema, &mut write.appended)?;
            gathered(&write.schema, &mut write.current)?;
        }
        Ok(writes)
    }

    /// Forgets what is deferred, once DuckDB holds it.
    fn clear(&mut self) {
        self.batches.clear();
        self.changed.clear();
        self.rows = 0;
        metrics::gauge!("dataforge_deferred_rows").set(self.rows as f64);
    }
}

impl WriterState {
    /// Whether a group is deferred: every write in it is small, in memory and in mode `error`,
    /// and the key index and journal are attached.
    pub(super) fn deferrable(&self, commits: &[Commit]) -> bool {
        if !self.defers() {
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

    /// Whether writes are deferred at all.
    pub(super) fn defers(&self) -> bool {
        !self.deferred.every.is_zero()
            && self.index.is_some()
            && self.seq.is_some()
            && self.journal.is_some()
    }

    /// Checks a deferrable group's keys against the index, appends the accepted records to the
    /// journal under the next sequence number (synced), then writes them to the index: then the
    /// writes are acknowledged, and their records wait to be appended to DuckDB. An error means
    /// nothing of the group was stored.
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
        if applied.keys.values().all(|(_, keys)| keys.is_empty()) {
            // every write refused: nothing to store, and no sequence number spent (the log must
            // list every deferred sequence number for a start to replay it)
            return Ok(results
                .into_iter()
                .map(|r| r.unwrap_or_else(|| Ok(Default::default())))
                .collect());
        }
        let mut entry = EntryBuf::new(seq);
        let mut encoded = Vec::new();
        for (schema, records) in &applied.records {
            if let Records::Batches(batches) = records {
                for batch in batches {
                    let batch_encoded = index.encode(schema, batch)?;
                    entry.section(
                        &schema.name,
                        SectionKind::New,
                        batch_encoded
                            .keys
                            .iter()
                            .zip(&batch_encoded.records)
                            .map(|(k, r)| (k.as_slice(), Some(r.as_slice()))),
                    );
                    encoded.push((schema, batch, batch_encoded));
                }
            }
        }
        self.journaled(seq, &entry, |write| {
            for (schema, batch, encoded) in &encoded {
                write.put_encoded(schema, batch, encoded, false)?;
            }
            Ok(())
        })?;
        for (schema, batch, encoded) in encoded.into_iter().filter(|(_, b, _)| b.num_rows() > 0) {
            self.deferred.inserted(schema, batch.clone(), &encoded.keys);
        }
        self.append_when_many();
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Ok(Default::default())))
            .collect())
    }

    /// Makes a deferred group durable and visible: appends its journal `entry` (synced), then has
    /// `write` put its records in the key index and commits them under `seq`, the writer's next
    /// sequence number. Should the index fail, the entry is taken back out of the journal, and
    /// nothing of the group is stored.
    pub(super) fn journaled(
        &mut self,
        seq: u64,
        entry: &EntryBuf,
        write: impl FnOnce(&mut IndexWrite<'_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let (Some(index), Some(journal)) = (self.index.clone(), self.journal.as_mut()) else {
            return Err(StoreError::Internal(
                "no key index or journal to defer writes to".into(),
            ));
        };
        let before = journal.len();
        journal.append(entry)?;
        let indexed = index
            .write()
            .and_then(|mut w| write(&mut w).map(|()| w))
            .and_then(|w| w.commit(seq));
        if let Err(e) = indexed {
            if let Err(undo) = journal.undo_last(before) {
                // the entry stays: a start appends it although its answer was an error
                tracing::error!(error = %undo, "could not take a failed write back out of the journal");
                self.seq = Some(seq);
            }
            return Err(e);
        }
        self.seq = Some(seq);
        Ok(())
    }

    /// Appends what is deferred at once when it is many records (the journal and the memory
    /// holding them stay small); should that fail, they stay deferred for the next attempt.
    pub(super) fn append_when_many(&mut self) {
        if self.deferred.rows >= DEFERRED_ROWS
            && let Err(e) = self.flush_deferred()
        {
            tracing::error!(error = %e, "could not append deferred writes");
        }
    }

    /// Appends every deferred record to its table in one DuckDB transaction, which records the
    /// writer's sequence number, then empties the journal. On failure the records stay deferred
    /// (and in the journal), to be appended at the next attempt or the next start.
    pub(super) fn flush_deferred(&mut self) -> Result<(), StoreError> {
        if self.deferred.is_empty() {
            self.deferred.pending.store(false, Ordering::Release);
            return Ok(());
        }
        let Some(seq) = self.seq else {
            return Err(StoreError::Internal(
                "writes were deferred without a sequence number".into(),
            ));
        };
        let writes = self.deferred.writes()?;
        let started = Instant::now();
        write_deferred(&self.conn, &writes, seq)?;
        self.deferred.clear();
        self.deferred.pacing.appended(started, Instant::now());
        self.deferred.pending.store(false, Ordering::Release);
        if let Some(journal) = self.journal.as_mut() {
            // DuckDB holds every entry now (entries left by a failed emptying are skipped at start)
            journal.clear();
        }
        Ok(())
    }
}
