//! Group commit: the commits that queued up together are tried as one transaction, settled, answered, and recorded in the key index and the journal.

use super::*;

impl WriterState {
    /// Commits a group of writes in one transaction (one WAL sync for all). A write whose keys
    /// conflict is refused alone; its neighbours are stored. Should anything else fail, the group is
    /// rolled back and each write is committed on its own, so one request cannot fail another.
    pub(super) fn commit_group(&mut self, commits: Vec<Commit>) {
        let (started, writes) = (Instant::now(), commits.len());
        self.settle_group(commits);
        metrics::histogram!("dataforge_writer_group_writes").record(writes as f64);
        metrics::histogram!("dataforge_writer_commit_seconds")
            .record(started.elapsed().as_secs_f64());
    }

    /// [`WriterState::commit_group`], untimed.
    pub(super) fn settle_group(&mut self, commits: Vec<Commit>) {
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
    pub(super) fn answer(&mut self, commits: Vec<Commit>, results: Vec<WriteResult>) {
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

    pub(super) fn try_group(
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
    pub(super) fn finish(&mut self, applied: Applied) -> Result<(), StoreError> {
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
    pub(super) fn finish_alongside(
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
    pub(super) fn index_failed(&mut self, e: StoreError) {
        tracing::error!(error = %e, "the key index failed; checking keys and reading by key with SQL until the next start rebuilds it");
        if let Some(index) = self.index.take() {
            index.disable();
        }
    }

    /// Commits the open DuckDB transaction, with the sequence number `next` when there is one.
    pub(super) fn commit_duckdb(&mut self, next: Option<u64>) -> Result<(), StoreError> {
        let committed = match next {
            Some(seq) => self
                .conn
                .prepare_cached(&sequence::update_statement())
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
    pub(super) fn index_records(
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

    pub(super) fn commit_alone(&mut self, commit: &Commit) -> Result<WriteOutcome, StoreError> {
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
}
