//! Deferred appends: a group of small writes (single-record POSTs) is acknowledged once its records
//! are in the journal, synced to disk, and in the key index, and reaches its DuckDB table later,
//! in one append with many other groups. DuckDB's fixed cost per transaction (an appender flush
//! that plans an insert, the sequence update, commit and WAL) then is paid per flush instead of
//! per group, which is what bounded single-record throughput.
//!
//! The journal holds each deferred group under its sequence number until DuckDB holds it, and a
//! start that finds DuckDB's sequence behind the journal's appends them from there (see
//! [`dataforge_key_index::catch_up`]); the key index is derived data only. Reads by key see the records at once
//! (they live in the index); reads through DuckDB first have the writer append what is deferred
//! ([`DuckDbStore`](crate::DuckDbStore)'s read barrier), so every read after a `201` sees the write.
//! Any other write, a clustering rewrite and the shutdown append what is deferred first, so DuckDB
//! holds every earlier write whenever it commits one of its own. The ticker's appends run beside
//! the job loop, on a thread with a connection of its own ([`super::appending`]); the barriers
//! above wait for such an append before they append the rest themselves.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_select::concat::concat_batches;
use dataforge_domain::ports::StoreError;
use dataforge_domain::schema::DatasetSchema;
use dataforge_domain::write::ConflictMode;
use dataforge_key_index::IndexWrite;
use dataforge_key_index::journal::{EntryBuf, SectionKind};
use tokio::sync::mpsc;

use dataforge_key_index::DeferredWrites;

use crate::deferred_append::write_deferred;
use crate::sequence;

use super::appending::{AppendBatch, AppendThread, Appended, Outcome};
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
    /// Set while anything is deferred or being appended: reads through DuckDB wait for an append
    /// first.
    pending: Arc<AtomicBool>,
    /// The thread the ticker's appends run on (none when it could not start: they run on the
    /// writer's thread then).
    pub(super) thread: Option<AppendThread>,
    /// The append started on that thread, until DuckDB holds it.
    in_flight: InFlight,
}

/// An append handed to the append thread, kept until DuckDB holds it.
enum InFlight {
    Idle,
    Running(AppendBatch),
    /// It failed (or its thread is gone): it is appended again before anything newer.
    Failed(AppendBatch),
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
            thread: None,
            in_flight: InFlight::Idle,
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

    /// Lowers the read barrier's flag once nothing is deferred and no append is in flight.
    fn settled(&self) {
        if self.is_empty() && matches!(self.in_flight, InFlight::Idle) {
            self.pending.store(false, Ordering::Release);
        }
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
        let started = Instant::now();
        journal.append(seq, entry)?;
        let synced = Instant::now();
        let indexed = index
            .write()
            .and_then(|mut w| write(&mut w).map(|()| w))
            .and_then(|w| w.commit(seq));
        if started.elapsed() > Duration::from_millis(5) {
            tracing::debug!(
                journal_ms = synced.duration_since(started).as_secs_f64() * 1e3,
                index_ms = synced.elapsed().as_secs_f64() * 1e3,
                "slow deferred group"
            );
        }
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

    /// Starts appending what is deferred at once when it is many records (the journal and the
    /// memory holding them stay small), after the append in flight, if any, is done.
    pub(super) fn append_when_many(&mut self) {
        if self.deferred.rows >= DEFERRED_ROWS {
            self.reap_append(true);
            self.start_append();
        }
    }

    /// Starts appending what is deferred on the append thread, unless an append is in flight (a
    /// failed one is started again first); the journal takes new entries in its other file
    /// meanwhile. Without the thread, the append runs here.
    pub(super) fn start_append(&mut self) {
        self.reap_append(false);
        let batch = match std::mem::replace(&mut self.deferred.in_flight, InFlight::Idle) {
            InFlight::Running(batch) => {
                self.deferred.in_flight = InFlight::Running(batch);
                return;
            }
            InFlight::Failed(batch) if !self.holds(batch.seq) => batch,
            InFlight::Failed(_) | InFlight::Idle => match self.take_deferred() {
                Ok(Some(batch)) => batch,
                Ok(None) => return self.deferred.settled(),
                Err(e) => {
                    return tracing::error!(error = %e, "could not gather deferred writes");
                }
            },
        };
        let sent = match &self.deferred.thread {
            Some(thread) => thread.send(batch.clone()).map(|()| batch),
            None => Err(batch),
        };
        self.deferred.in_flight = match sent {
            Ok(batch) => InFlight::Running(batch),
            Err(batch) => InFlight::Failed(batch),
        };
        if matches!(self.deferred.in_flight, InFlight::Failed(_))
            && let Err(e) = self.append_failed()
        {
            tracing::error!(error = %e, "could not append deferred writes");
        }
    }

    /// What is deferred, taken out for an append up to the writer's sequence number; the journal
    /// takes new entries in its other file from now on. `None` when nothing is deferred.
    fn take_deferred(&mut self) -> Result<Option<AppendBatch>, StoreError> {
        if self.deferred.is_empty() {
            return Ok(None);
        }
        let Some(seq) = self.seq else {
            return Err(StoreError::Internal(
                "writes were deferred without a sequence number".into(),
            ));
        };
        let writes = self.deferred.writes()?;
        self.deferred.clear();
        if let Some(journals) = self.journal.as_mut() {
            journals.turn();
        }
        Ok(Some(AppendBatch { writes, seq }))
    }

    /// Takes the outcome of the append in flight, if it is done; `wait`: waits for it.
    pub(super) fn reap_append(&mut self, wait: bool) {
        let outcome = match (&self.deferred.in_flight, &self.deferred.thread) {
            (InFlight::Running(_), Some(thread)) => thread.outcome(wait),
            (InFlight::Running(_), None) => Outcome::Lost,
            _ => return,
        };
        let batch = match std::mem::replace(&mut self.deferred.in_flight, InFlight::Idle) {
            InFlight::Running(batch) => batch,
            other => return self.deferred.in_flight = other,
        };
        self.deferred.in_flight = match outcome {
            Outcome::Running => InFlight::Running(batch),
            Outcome::Done(Appended {
                result: Ok(()),
                started,
                ended,
            }) => {
                self.held(batch.seq, started, ended);
                InFlight::Idle
            }
            Outcome::Done(Appended { result: Err(e), .. }) => {
                tracing::error!(error = %e, "could not append deferred writes; trying again");
                InFlight::Failed(batch)
            }
            Outcome::Lost => {
                tracing::error!(
                    "the append thread is gone; the writer appends deferred writes itself"
                );
                self.deferred.thread = None;
                InFlight::Failed(batch)
            }
        };
        self.deferred.settled();
    }

    /// Notes that DuckDB holds every write up to `seq`, appended from `started` to `ended`.
    fn held(&mut self, seq: u64, started: Instant, ended: Instant) {
        self.deferred.pacing.appended(started, ended);
        if let Some(journals) = self.journal.as_mut() {
            journals.held_through(seq);
        }
    }

    /// Appends a failed append again, on the writer's connection, unless DuckDB holds it.
    fn append_failed(&mut self) -> Result<(), StoreError> {
        let InFlight::Failed(batch) =
            std::mem::replace(&mut self.deferred.in_flight, InFlight::Idle)
        else {
            return Ok(());
        };
        if self.holds(batch.seq) {
            self.deferred.settled();
            return Ok(());
        }
        self.append_here(batch)
    }

    /// Whether DuckDB holds the writes up to `seq` (an append whose outcome was lost, or whose
    /// commit answered an error, may have committed); notes it if so.
    fn holds(&mut self, seq: u64) -> bool {
        let held = sequence::stored(&self.conn).is_ok_and(|stored| stored >= seq);
        if held {
            let now = Instant::now();
            self.held(seq, now, now);
        }
        held
    }

    /// Appends `batch` on the writer's connection; should that fail, it is appended again before
    /// anything newer.
    fn append_here(&mut self, batch: AppendBatch) -> Result<(), StoreError> {
        let started = Instant::now();
        if let Err(e) = write_deferred(&self.conn, &batch.writes, batch.seq) {
            self.deferred.in_flight = InFlight::Failed(batch);
            return Err(e);
        }
        self.held(batch.seq, started, Instant::now());
        self.deferred.settled();
        Ok(())
    }

    /// DuckDB takes every acknowledged write before this answers: the append in flight is waited
    /// for (or done again, should it have failed), then what is deferred is appended here, in one
    /// DuckDB transaction that records the writer's sequence number, and the journal is emptied.
    /// On failure the records stay deferred (and in the journal), to be appended at the next
    /// attempt or the next start.
    pub(super) fn flush_deferred(&mut self) -> Result<(), StoreError> {
        self.reap_append(true);
        self.append_failed()?;
        let Some(batch) = self.take_deferred()? else {
            self.deferred.settled();
            return Ok(());
        };
        self.append_here(batch)
    }
}
