//! `dataforge cluster`: rewriting a dataset's stored rows in its `cluster_by` order, in one transaction.

use super::*;

impl WriterState {
    /// Rewrites the dataset's table ordered by its `cluster_by` fields, in one transaction: a new
    /// table is filled in that order (insertion order kept for this statement), replaces the old
    /// one. Row groups then hold narrow ranges of those fields, so DuckDB's zone maps skip most of
    /// the table for filters on them. The records, and so the key index, do not change.
    pub(super) fn cluster(&mut self, schema: &DatasetSchema) -> Result<u64, StoreError> {
        if schema.cluster_by.is_empty() {
            return Err(StoreError::Internal(format!(
                "{} declares no cluster_by",
                schema.name
            )));
        }
        let table = quote(&schema.name);
        // no dataset name starts with `_`: the working table cannot be one
        let rewritten = format!("_dataforge_clustering_{}", schema.name);
        let columns = column_list(schema.fields.iter().map(|f| f.name.as_str()));
        let order = column_list(
            schema
                .cluster_by
                .iter()
                .map(|&i| schema.fields[i].name.as_str()),
        );
        self.conn
            .execute_batch("SET preserve_insertion_order = true")
            .map_err(store_error)?;
        let result = (|| {
            self.run("BEGIN TRANSACTION")?;
            self.conn
                .execute_batch(&create_table_named(schema, &rewritten))
                .map_err(store_error)?;
            let rows = self.execute(&format!(
                "INSERT INTO {} SELECT {columns} FROM {table} ORDER BY {order}",
                quote(&rewritten)
            ))?;
            self.conn
                .execute_batch(&format!(
                    "DROP TABLE {table}; ALTER TABLE {} RENAME TO {table}",
                    quote(&rewritten)
                ))
                .map_err(store_error)?;
            self.run("COMMIT")?;
            Ok(rows)
        })();
        if result.is_err() {
            let _ = self.run("ROLLBACK");
        }
        if let Err(e) = self.conn.execute_batch(&format!(
            "SET preserve_insertion_order = {}",
            self.preserve_insertion_order
        )) {
            tracing::warn!(error = %e, "could not restore preserve_insertion_order");
        }
        result
    }
}
