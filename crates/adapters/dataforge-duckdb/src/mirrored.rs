//! DuckDB as the store the key index mirrors: its tables are the record of the data the index is
//! rebuilt from, and the writes the index acknowledged first are appended to them.

use arrow_array::RecordBatch;
use dataforge_domain::ports::StoreError;
use dataforge_domain::schema::DatasetSchema;
use dataforge_key_index::{DeferredWrites, MirroredStore};
use duckdb::Connection;

use crate::batches::for_each_batch;
use crate::deferred_append::write_deferred;
use crate::sequence;
use crate::sql::{column_list, quote};
use crate::store_error;

/// The tables of one connection, as the key index mirrors them.
pub(crate) struct MirroredTables<'c>(&'c Connection);

impl<'c> MirroredTables<'c> {
    /// The tables of `conn`; the table of the sequence number is created at first use.
    pub(crate) fn new(conn: &'c Connection) -> Result<Self, StoreError> {
        sequence::create_table(conn)?;
        Ok(MirroredTables(conn))
    }
}

impl MirroredStore for MirroredTables<'_> {
    fn sequence(&self) -> Result<u64, StoreError> {
        sequence::stored(self.0)
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
