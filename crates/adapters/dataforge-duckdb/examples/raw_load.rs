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

mod common;
use common::{COLUMNS, append_files};

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
    let rows = append_files(&conn, "well_production", &[path])?;
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
