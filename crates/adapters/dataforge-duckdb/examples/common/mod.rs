//! What the raw-DuckDB reference examples share: `well_production` as dataforge lays it out, and
//! loading Arrow IPC files into it the fastest way (the Arrow appender).

#![allow(dead_code)] // each example uses its part

use duckdb::Connection;

/// `well_production`'s columns, as dataforge creates its table.
pub const COLUMNS: &str = "field_code BIGINT NOT NULL, field_name VARCHAR, well_code BIGINT NOT NULL, \
    well_reference VARCHAR, well_name VARCHAR, production_period TIMESTAMP NOT NULL, \
    days_on_production BIGINT, oil_production_kbd DOUBLE, gas_production_mmcfd DOUBLE, \
    liquids_production_kbd DOUBLE, water_production_kbd DOUBLE, data_source VARCHAR, \
    source_data VARCHAR, partition_0 VARCHAR";

/// Rows per transaction: about one benchmark request, so the reference commits as often.
pub const COMMIT_ROWS: usize = 100_000;

/// Appends the Arrow IPC stream files at `paths` to `table`, committing about every
/// [`COMMIT_ROWS`] rows (whole input batches); answers the rows appended.
pub fn append_files(
    conn: &Connection,
    table: &str,
    paths: &[impl AsRef<std::path::Path>],
) -> Result<u64, Box<dyn std::error::Error>> {
    let mut rows = 0u64;
    let mut in_transaction = 0usize;
    let mut appender = conn.appender(table)?;
    conn.execute_batch("BEGIN TRANSACTION")?;
    for path in paths {
        let file = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(path)?);
        for batch in arrow_ipc::reader::StreamReader::try_new(file, None)? {
            let batch = batch?;
            rows += batch.num_rows() as u64;
            in_transaction += batch.num_rows();
            appender.append_record_batch(batch)?;
            if in_transaction >= COMMIT_ROWS {
                appender.flush()?;
                conn.execute_batch("COMMIT; BEGIN TRANSACTION")?;
                in_transaction = 0;
            }
        }
    }
    appender.flush()?;
    drop(appender);
    conn.execute_batch("COMMIT")?;
    Ok(rows)
}
