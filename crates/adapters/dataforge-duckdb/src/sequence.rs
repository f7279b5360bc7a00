//! The sequence number of the last write DuckDB's tables hold, in a table of one row written in the
//! same transaction as the write: the key index and the journal are held against it at start.

use dataforge_domain::ports::StoreError;
use duckdb::Connection;

use crate::sql::quote;
use crate::store_error;

/// The DuckDB table holding the sequence number of the last committed write.
const SEQUENCE_TABLE: &str = "_dataforge_sequence";

/// The statement that records a transaction's sequence number in DuckDB (one parameter).
pub(crate) fn update_statement() -> String {
    format!("UPDATE {} SET seq = ?", quote(SEQUENCE_TABLE))
}

/// The sequence number of the last write the tables hold.
pub(crate) fn stored(conn: &Connection) -> Result<u64, StoreError> {
    conn.query_row(
        &format!("SELECT max(seq) FROM {}", quote(SEQUENCE_TABLE)),
        [],
        |row| row.get(0),
    )
    .map_err(store_error)
}

/// Creates the table at first use, holding 0.
pub(crate) fn create_table(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {0} (seq BIGINT NOT NULL); INSERT INTO {0} SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM {0})",
        quote(SEQUENCE_TABLE)
    ))
    .map_err(store_error)
}
