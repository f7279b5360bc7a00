//! The reference for ingest benchmarks: raw in-process DuckDB loading an Arrow IPC file of
//! generated `well_production` rows by its fastest means (the Arrow appender), into the table as
//! dataforge lays it out (no key constraint) and into one with the composite PRIMARY KEY.
//!
//! Rows are committed about every 100,000 (whole input batches), the size of one benchmark request, so the limit is measured
//! on the same transactions as dataforge's ingest (and a large load stays within memory_limit).
//!
//! Usage: cargo run --release --example raw_load -- ROWS.arrow WORK_DIR

use std::time::Instant;

use duckdb::Connection;

const COLUMNS: &str = "field_code BIGINT NOT NULL, field_name VARCHAR, well_code BIGINT NOT NULL, \
    well_reference VARCHAR, well_name VARCHAR, production_period TIMESTAMP NOT NULL, \
    days_on_production BIGINT, oil_production_kbd DOUBLE, gas_production_mmcfd DOUBLE, \
    liquids_production_kbd DOUBLE, water_production_kbd DOUBLE, data_source VARCHAR, \
    source_data VARCHAR, partition_0 VARCHAR";

/// Rows per transaction.
const COMMIT_ROWS: usize = 100_000;

fn load(
    path: &str,
    dir: &std::path::Path,
    name: &str,
    keyed: bool,
) -> Result<(u64, f64), Box<dyn std::error::Error>> {
    let db = dir.join(format!("{name}.duckdb"));
    let _ = std::fs::remove_file(&db);
    let _ = std::fs::remove_file(db.with_extension("duckdb.wal"));
    let config = duckdb::Config::default()
        .max_memory("1GiB")?
        .with("preserve_insertion_order", "false")?;
    let conn = Connection::open_with_flags(&db, config)?;
    let key = if keyed {
        ", PRIMARY KEY (field_code, well_code, production_period)"
    } else {
        ""
    };
    conn.execute_batch(&format!("CREATE TABLE well_production ({COLUMNS}{key})"))?;
    let started = Instant::now();
    let file = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(path)?);
    let reader = arrow_ipc::reader::StreamReader::try_new(file, None)?;
    let mut rows = 0u64;
    let mut in_transaction = 0usize;
    let mut appender = conn.appender("well_production")?;
    conn.execute_batch("BEGIN TRANSACTION")?;
    for batch in reader {
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
    appender.flush()?;
    drop(appender);
    conn.execute_batch("COMMIT")?;
    Ok((rows, started.elapsed().as_secs_f64()))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(path), Some(dir)) = (args.get(1), args.get(2)) else {
        return Err("usage: raw_load ROWS.arrow WORK_DIR".into());
    };
    let dir = std::path::Path::new(dir);
    for (name, keyed) in [("raw_unkeyed", false), ("raw_keyed", true)] {
        let (rows, seconds) = load(path, dir, name, keyed)?;
        println!("{name} {rows} {seconds:.3} {:.0}", rows as f64 / seconds);
    }
    Ok(())
}
