//! Applying a staged write to its table in its conflict mode (insert, ignore, upsert, merge).

use super::*;

impl WriterState {
    /// Inside an open transaction: settles the write's keys as its mode says and applies it. A
    /// conflict (mode `error`) is found before anything is changed.
    pub(super) fn apply(
        &self,
        commit: &Commit,
        applied: &mut Applied,
    ) -> Result<WriteOutcome, StoreError> {
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

    pub(super) fn count(&self, table: &str) -> Result<u64, StoreError> {
        self.conn
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
                row.get(0)
            })
            .map_err(store_error)
    }
}
