//! A database file cut short (a copy interrupted, a full disk while copying, a careless `truncate`)
//! opens without complaint: DuckDB reads its catalogue and counts from the first blocks and fails
//! only when a scan reaches a missing one. The file's length is checked against the blocks DuckDB
//! says it holds, so such a file stops the start instead of serving wrong counts.

use std::path::Path;

use duckdb::Connection;

use crate::OpenError;

/// DuckDB's file headers before the first block: the main header and two database headers.
const HEADERS: u64 = 3 * 4096;

/// Refuses a database file shorter than its headers and the blocks in use.
pub(crate) fn check_length(conn: &Connection, path: &Path) -> Result<(), OpenError> {
    let Ok(actual) = std::fs::metadata(path).map(|m| m.len()) else {
        // in memory, or not created yet: nothing to check
        return Ok(());
    };
    // blocks in use each take a place in the file (free ones at its end are cut off by DuckDB)
    let blocks: Result<(i64, i64), _> = conn.query_row(
        "SELECT block_size, used_blocks FROM pragma_database_size() WHERE database_name = current_database()",
        [],
        |row| Ok((row.get(0)?, row.get(1)?)),
    );
    let (block_size, used_blocks) = blocks.map_err(|e| OpenError::Open {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    let expected = HEADERS + block_size.max(0) as u64 * used_blocks.max(0) as u64;
    if used_blocks > 0 && actual < expected {
        return Err(OpenError::Truncated {
            path: path.display().to_string(),
            actual,
            expected,
        });
    }
    Ok(())
}
