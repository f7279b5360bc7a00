//! Conflict settlement: which keys of a write are stored already or repeat, from the key index or from SQL against the tables.

use super::*;

impl WriterState {
    /// The keys of a write that conflict, in order: repeated within the write, already stored
    /// (`stored` flags, in the same order), or taken by an earlier write of the same transaction.
    pub(super) fn key_conflicts<'k>(
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
    pub(super) fn staged_conflicts(
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
    pub(super) fn joined_keys(
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
    pub(super) fn query_keys(
        &self,
        encoder: &KeyEncoder,
        sql: &str,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut out = Vec::new();
        for_each_batch(&self.conn, sql, [], |batch| {
            out.extend(encoder.encode(batch.columns())?);
            Ok(())
        })?;
        Ok(out)
    }
}
