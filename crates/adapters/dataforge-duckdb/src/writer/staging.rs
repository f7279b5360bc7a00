//! Staging: each write's batches go to a temporary table of its own (spilled to disk by DuckDB past its memory limit), created, appended to and dropped here.

use super::*;

impl WriterState {
    /// Drops the staging tables of writes abandoned before their commit (a failed request).
    pub(super) fn discard_abandoned(&mut self) {
        let abandoned: Vec<u64> = self
            .staged
            .iter()
            .filter(|(_, staged)| staged.alive.strong_count() == 0)
            .map(|(id, _)| *id)
            .collect();
        for write in abandoned {
            self.drop_staging(write);
        }
    }

    pub(super) fn drop_staging(&mut self, write: u64) {
        let Some(staged) = self.staged.remove(&write) else {
            return;
        };
        self.memory_bytes -= staged.bytes;
        if staged.memory.is_none()
            && let Err(e) = self
                .conn
                .execute_batch(&format!("DROP TABLE IF EXISTS {}", staging_table(write)))
        {
            tracing::warn!(write, error = %e, "could not drop a staging table");
        }
    }

    /// Adds a batch to the write's staged rows, in request order (a staging table numbers its rows
    /// in a column of its own, [`ROW_COLUMN`]: DuckDB's `rowid` need not follow append order).
    pub(super) fn stage(
        &mut self,
        write: u64,
        alive: Weak<()>,
        schema: &DatasetSchema,
        batch: RecordBatch,
    ) -> Result<(), StoreError> {
        let staged = self.staged.entry(write).or_insert(Staged {
            alive,
            memory: Some(Vec::new()),
            bytes: 0,
            rows: 0,
        });
        let first_row = staged.rows;
        staged.rows += batch.num_rows();
        if let Some(batches) = staged.memory.as_mut() {
            let bytes = batch_bytes(&batch);
            batches.push(batch);
            staged.bytes += bytes;
            self.memory_bytes += bytes;
            if staged.bytes <= self.budget.per_write && self.memory_bytes <= self.budget.total {
                return Ok(());
            }
            return self.spill(write, schema);
        }
        self.append_to_staging(write, batch, first_row)
    }

    /// Moves a write's in-memory batches to a staging table of its own.
    pub(super) fn spill(&mut self, write: u64, schema: &DatasetSchema) -> Result<(), StoreError> {
        let Some(staged) = self.staged.get_mut(&write) else {
            return Ok(());
        };
        let Some(batches) = staged.memory.take() else {
            return Ok(());
        };
        self.memory_bytes -= std::mem::take(&mut staged.bytes);
        self.conn
            .execute_batch(&format!(
                "CREATE TEMP TABLE {} AS SELECT *, CAST(0 AS BIGINT) AS {} FROM {} LIMIT 0",
                quote(&staging_name(write)),
                quote(ROW_COLUMN),
                quote(&schema.name)
            ))
            .map_err(store_error)?;
        let mut first_row = 0;
        for batch in batches {
            let rows = batch.num_rows();
            self.append_to_staging(write, batch, first_row)?;
            first_row += rows;
        }
        Ok(())
    }

    /// Appends a batch to the staging table, numbering its rows from `first_row`.
    pub(super) fn append_to_staging(
        &self,
        write: u64,
        batch: RecordBatch,
        first_row: usize,
    ) -> Result<(), StoreError> {
        let numbers: Int64Array =
            (first_row as i64..(first_row + batch.num_rows()) as i64).collect();
        let mut fields: Vec<Field> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new(ROW_COLUMN, DataType::Int64, false));
        let mut columns = batch.columns().to_vec();
        columns.push(Arc::new(numbers));
        let numbered = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        let mut appender = self
            .conn
            .appender_to_catalog_and_db(&staging_name(write), "temp", "main")
            .map_err(store_error)?;
        appender
            .append_record_batch(numbered)
            .map_err(store_error)?;
        appender.flush().map_err(store_error)
    }
}
