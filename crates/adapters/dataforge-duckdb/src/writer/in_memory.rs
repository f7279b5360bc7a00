//! Small writes applied in memory: their batches are settled against the key index and appended as one group table.

use super::*;

impl WriterState {
    /// Inside an open transaction: stores in-memory writes of one dataset (mode `error`)
    /// with a handful of statements for all of them. Keys repeated within a write, already stored,
    /// or taken by an earlier write of the transaction refuse that write alone. With the key index
    /// the checks are lookups and the accepted batches are appended straight to the table; without
    /// it, the rows go through a temporary table tagged by write for an SQL check.
    pub(super) fn apply_in_memory(
        &self,
        commits: &[Commit],
        indices: &[usize],
        applied: &mut Applied,
    ) -> Result<Vec<(usize, WriteResult)>, StoreError> {
        let settled = self.settle_in_memory(commits, indices, applied)?;
        let schema = &commits[indices[0]].dataset;
        let rows: usize = settled.stored.iter().map(RecordBatch::num_rows).sum();
        match settled.group {
            None if rows == 0 => {}
            None => append_batches(&self.conn, &schema.name, &settled.stored)?,
            Some(group) => {
                if !settled.refused.is_empty() {
                    self.execute(&format!(
                        "DELETE FROM {group} WHERE \"__write\" IN ({})",
                        settled.refused.join(", ")
                    ))?;
                }
                let columns = column_list(schema.fields.iter().map(|f| f.name.as_str()));
                self.execute(&format!(
                    "INSERT INTO {} SELECT {columns} FROM {group}",
                    quote(&schema.name)
                ))?;
            }
        }
        applied
            .records
            .push((Arc::clone(schema), Records::Batches(settled.stored)));
        Ok(settled.results)
    }

    /// The key-checking half of [`Self::apply_in_memory`]: decides each write, claims the keys of
    /// the accepted ones in `applied`, and gathers their batches, without storing anything.
    pub(super) fn settle_in_memory(
        &self,
        commits: &[Commit],
        indices: &[usize],
        applied: &mut Applied,
    ) -> Result<SettledInMemory, StoreError> {
        let schema = &commits[indices[0]].dataset;
        let encoder = KeyEncoder::new(schema)?;
        let batches_of = |i: usize| -> &[RecordBatch] {
            self.staged
                .get(&commits[i].write)
                .and_then(|s| s.memory.as_deref())
                .unwrap_or_default()
        };
        // the encoded keys of every write
        let mut keys: Vec<Vec<Vec<u8>>> = Vec::with_capacity(indices.len());
        for &i in indices {
            let mut write_keys = Vec::new();
            for batch in batches_of(i) {
                let key_columns: Vec<ArrayRef> = schema
                    .primary_key
                    .iter()
                    .map(|&c| Arc::clone(batch.column(c)))
                    .collect();
                write_keys.extend(encoder.encode(&key_columns)?);
            }
            keys.push(write_keys);
        }
        let group = match &self.index {
            Some(_) => None,
            None => Some(self.group_table(schema, indices.iter().map(|&i| batches_of(i)))?),
        };
        let source = group.as_deref().unwrap_or_default();
        let stored = keys
            .iter()
            .map(|write_keys| self.stored(schema, &encoder, source, write_keys))
            .collect::<Result<Vec<_>, _>>()?;
        // decide write by write, in commit order
        let mut refused = Vec::new();
        let mut accepted = Vec::new();
        let mut results = Vec::with_capacity(indices.len());
        for (position, ((&i, write_keys), stored)) in
            indices.iter().zip(&keys).zip(&stored).enumerate()
        {
            let found = Self::key_conflicts(write_keys, stored, applied.claimed(&schema.name));
            let total = found.len() as u64;
            match conflict(schema, &encoder, found, total)? {
                None => {
                    applied.add(schema, write_keys.iter().cloned());
                    accepted.push(i);
                    let outcome = WriteOutcome {
                        inserted: write_keys.len() as u64,
                        ..WriteOutcome::default()
                    };
                    results.push((i, Ok(outcome)));
                }
                Some(conflict) => {
                    refused.push(position.to_string());
                    results.push((i, Err(conflict)));
                }
            }
        }
        // many small accepted batches (single-record writes) become one: one append and one index
        // pass for the whole group cost far less than one per write; large ones go as they are
        let accepted: Vec<RecordBatch> = accepted
            .iter()
            .flat_map(|&i| batches_of(i))
            .cloned()
            .collect();
        let rows: usize = accepted.iter().map(RecordBatch::num_rows).sum();
        let stored = if accepted.len() > 1 && rows <= COALESCED_ROWS {
            vec![
                concat_batches(schema.arrow_schema(), &accepted)
                    .map_err(|e| StoreError::Internal(e.to_string()))?,
            ]
        } else {
            accepted
        };
        Ok(SettledInMemory {
            results,
            stored,
            refused,
            group,
        })
    }

    /// Fills a temporary table with the rows of several writes, each row tagged with its write's
    /// position (`__write`), for the SQL key check; answers its qualified name.
    pub(super) fn group_table<'b>(
        &self,
        schema: &DatasetSchema,
        writes: impl Iterator<Item = &'b [RecordBatch]>,
    ) -> Result<String, StoreError> {
        let group = format!("group__{}", schema.name);
        self.conn
            .execute_batch(&format!(
                "CREATE OR REPLACE TEMP TABLE {} AS SELECT *, CAST(0 AS BIGINT) AS \"__write\" FROM {} LIMIT 0",
                quote(&group),
                quote(&schema.name)
            ))
            .map_err(store_error)?;
        let mut tagged_schema: Vec<Field> = schema
            .arrow_schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        tagged_schema.push(Field::new("__write", DataType::Int64, false));
        let tagged_schema = Arc::new(Schema::new(tagged_schema));
        let mut appender = self
            .conn
            .appender_to_catalog_and_db(&group, "temp", "main")
            .map_err(store_error)?;
        for (position, batches) in writes.enumerate() {
            for batch in batches {
                let mut columns = batch.columns().to_vec();
                columns.push(Arc::new(Int64Array::from(vec![
                    position as i64;
                    batch.num_rows()
                ])));
                let tagged = RecordBatch::try_new(Arc::clone(&tagged_schema), columns)
                    .map_err(|e| StoreError::Internal(e.to_string()))?;
                appender.append_record_batch(tagged).map_err(store_error)?;
            }
        }
        appender.flush().map_err(store_error)?;
        Ok(format!("temp.{}", quote(&group)))
    }

    /// Which of `keys` (rows of the table `source`) are stored in the dataset: from the key index
    /// when it is attached, else with one SQL semi-join of `source` against the dataset's table
    /// (which also sees rows stored earlier in the open transaction).
    pub(super) fn stored(
        &self,
        schema: &DatasetSchema,
        encoder: &KeyEncoder,
        source: &str,
        keys: &[Vec<u8>],
    ) -> Result<Vec<bool>, StoreError> {
        if let Some(index) = &self.index {
            return index.contains(&schema.name, keys);
        }
        // without the index, the tables are asked
        let (columns, joined) = keys_held_by(schema, source, &quote(&schema.name));
        let found: HashSet<Vec<u8>> = self
            .query_keys(encoder, &format!("SELECT {columns} {joined}"))?
            .into_iter()
            .collect();
        Ok(keys.iter().map(|k| found.contains(k)).collect())
    }
}
