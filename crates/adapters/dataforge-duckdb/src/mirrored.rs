//! DuckDB as the store the key index mirrors: its tables are the record of the data, and a table
//! of one row holds the sequence number of the last write they took.

use arrow_array::RecordBatch;
use dataforge_domain::ports::StoreError;
use dataforge_domain::schema::DatasetSchema;
use dataforge_key_index::{DeferredWrites, MirroredStore};
use duckdb::Connection;

use crate::batches::for_each_batch;
use crate::deferred_append::write_deferred;
use crate::sql::{column_list, quote};
use crate::store_error;

/// The DuckDB table holding the sequence number of the last committed write.
const SEQUENCE_TABLE: &str = "_dataforge_sequence";

/// The statement that records a transaction's sequence number in DuckDB (one parameter).
pub(crate) fn sequence_update() -> String {
    format!("UPDATE {} SET seq = ?", quote(SEQUENCE_TABLE))
}

/// The sequence number of the last write the tables hold.
pub(crate) fn stored_sequence(conn: &Connection) -> Result<u64, StoreError> {
    conn.query_row(
        &format!("SELECT max(seq) FROM {}", quote(SEQUENCE_TABLE)),
        [],
        |row| row.get(0),
    )
    .map_err(store_error)
}

/// The tables of one connection, as the key index mirrors them.
pub(crate) struct MirroredTables<'c>(&'c Connection);

impl<'c> MirroredTables<'c> {
    /// The tables of `conn`; the table of the sequence number is created at first use.
    pub(crate) fn new(conn: &'c Connection) -> Result<Self, StoreError> {
        conn.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {0} (seq BIGINT NOT NULL); INSERT INTO {0} SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM {0})",
            quote(SEQUENCE_TABLE)
        ))
        .map_err(store_error)?;
        Ok(MirroredTables(conn))
    }
}

impl MirroredStore for MirroredTables<'_> {
    fn sequence(&self) -> Result<u64, StoreError> {
        stored_sequence(self.0)
    }

    fn scan_in_key_order(
        &self,
        schema: &DatasetSchema,
        each: &mut dyn FnMut(RecordBatch) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let columns = column_list(schema.fields.iter().map(|f| f.name.as_str()));
        let key = column_list(schema.key_fields().map(|f| f.name.as_str()));
        let sql = format!(
            "SELECT {columns} FROM {} ORDER BY {key}",
            quote(&schema.name)
        );
        for_each_batch(self.0, &sql, [], each)
    }

    fn count(&self, schema: &DatasetSchema) -> Result<u64, StoreError> {
        let sql = format!("SELECT count(*) FROM {}", quote(&schema.name));
        let stored: i64 = self
            .0
            .query_row(&sql, [], |row| row.get(0))
            .map_err(store_error)?;
        Ok(stored as u64)
    }

    fn append(&self, writes: &[DeferredWrites], seq: u64) -> Result<(), StoreError> {
        write_deferred(self.0, writes, seq)
    }
}
