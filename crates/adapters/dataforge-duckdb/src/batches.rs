//! Reading a query's rows batch by batch as DuckDB produces them. DuckDB's Arrow query result
//! (`query_arrow`) is materialised whole before the first batch, which for a whole table or a large
//! staged write is gigabytes; its streaming result holds one chunk at a time. And appending batches
//! to a table.

use arrow_array::RecordBatch;
use dataforge_domain::ports::StoreError;
use duckdb::Connection;

use crate::store_error;

/// Appends `batches` to `table` with DuckDB's Arrow appender, in the connection's open transaction
/// if there is one.
pub(crate) fn append_batches(
    conn: &Connection,
    table: &str,
    batches: &[RecordBatch],
) -> Result<(), StoreError> {
    let mut appender = conn.appender(table).map_err(store_error)?;
    for batch in batches {
        appender
            .append_record_batch(batch.clone())
            .map_err(store_error)?;
    }
    appender.flush().map_err(store_error)
}

/// Runs `sql` and hands its rows to `each`, a batch at a time. `each` must not use `conn`: a
/// statement run meanwhile would end the pending result.
pub(crate) fn for_each_batch(
    conn: &Connection,
    sql: &str,
    params: impl duckdb::Params,
    mut each: impl FnMut(RecordBatch) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut statement = conn.prepare(sql).map_err(store_error)?;
    for batch in statement.stream_arrow(params).map_err(store_error)? {
        if batch.num_rows() > 0 {
            each(batch)?;
        }
    }
    Ok(())
}
