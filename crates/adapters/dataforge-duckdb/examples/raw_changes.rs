//! The reference for change benchmarks: raw in-process DuckDB on the table as dataforge lays it
//! out (no key constraint, the same columns), loaded from the same Arrow IPC files of generated
//! `well_production` rows (as raw_load loads them: the Arrow appender, a commit about every
//! 100,000 rows). On one connection, in autocommit, it then measures and prints, one per line:
//! `raw_load ROWS SECONDS`: the load (not a benchmark figure, for orientation);
//! `raw_point_update N PER_S`: single-row `UPDATE ... SET oil_production_kbd = ? WHERE` the
//! composite key, at keys spread over the table;
//! `raw_point_delete N PER_S`: single-row `DELETE ... WHERE` the composite key, each at a distinct
//! key from 1990 on (the keys bench/delete_by_key.lua walks, so the retention delete below still
//! removes every row before 1990);
//! `raw_retention ROWS_DELETED SECONDS`: `DELETE FROM well_production WHERE production_period <
//! '1990-01-01'`.
//!
//! With `project OUT.arrow IN.arrow FIELD...` it instead writes the Arrow stream of IN.arrow with
//! only the named columns (for a partial `on_conflict=merge` body).
//!
//! Usage: cargo run --release --example raw_changes -- WORK_DIR MEMORY_LIMIT ROWS.arrow...
//! (MEMORY_LIMIT: the server's `memory_limit`, to compare like with like)

use std::time::Instant;

use duckdb::Connection;

mod common;
use common::{COLUMNS, append_files};

/// Single-row statements per measured loop.
const STATEMENTS: u64 = 10_000;

/// Months in the generated history (from 1947-01), and the first one from 1990 on.
const MONTHS: u64 = 924;
const FIRST_KEPT_MONTH: u64 = 516;

/// A prime that spreads consecutive numbers over the table (coprime with every key count here).
const SPREAD: u64 = 1_000_003;

/// The key of generated row `i` (`dataforge generate` numbering): field, well, period.
fn key(i: u64) -> (i64, i64, String) {
    let well = 100_000 + i / MONTHS;
    let field = 1 + (well * 7919) % 2000;
    let month = i % MONTHS;
    let period = format!("{}-{:02}-01", 1947 + month / 12, month % 12 + 1);
    (field as i64, well as i64, period)
}

/// The `j`th key bench/delete_by_key.lua deletes: distinct for distinct `j`, from 1990 on, spread
/// over the whole wells of `rows` rows.
fn kept_key(j: u64, rows: u64) -> (i64, i64, String) {
    let per_well = MONTHS - FIRST_KEPT_MONTH;
    let candidates = (rows / MONTHS) * per_well;
    let k = (j * SPREAD) % candidates;
    key((k / per_well) * MONTHS + FIRST_KEPT_MONTH + k % per_well)
}

fn load(conn: &Connection, paths: &[String]) -> Result<u64, Box<dyn std::error::Error>> {
    conn.execute_batch(&format!("CREATE TABLE well_production ({COLUMNS})"))?;
    append_files(conn, "well_production", paths)
}

/// Writes `input` with only the columns `fields` names.
fn project(out: &str, input: &str, fields: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let file = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(input)?);
    let reader = arrow_ipc::reader::StreamReader::try_new(file, None)?;
    let schema = reader.schema();
    let indices = fields
        .iter()
        .map(|f| schema.index_of(f))
        .collect::<Result<Vec<_>, _>>()?;
    let projected = schema.project(&indices)?;
    let out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(out)?);
    let mut writer = arrow_ipc::writer::StreamWriter::try_new(out, &projected)?;
    for batch in reader {
        writer.write(&batch?.project(&indices)?)?;
    }
    writer.finish()?;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("project") {
        let (Some(out), Some(input)) = (args.get(2), args.get(3)) else {
            return Err("usage: raw_changes project OUT.arrow IN.arrow FIELD...".into());
        };
        return project(out, input, &args[4..]);
    }
    let (Some(dir), Some(memory_limit)) = (args.get(1), args.get(2)) else {
        return Err("usage: raw_changes WORK_DIR MEMORY_LIMIT ROWS.arrow...".into());
    };
    let paths = &args[3..];
    if paths.is_empty() {
        return Err("usage: raw_changes WORK_DIR MEMORY_LIMIT ROWS.arrow...".into());
    }
    let db = std::path::Path::new(dir).join("raw_changes.duckdb");
    let _ = std::fs::remove_file(&db);
    let _ = std::fs::remove_file(db.with_extension("duckdb.wal"));
    let config = duckdb::Config::default()
        .max_memory(memory_limit)?
        .with("preserve_insertion_order", "false")?
        .with("checkpoint_threshold", "64MiB")?;
    let conn = Connection::open_with_flags(&db, config)?;

    let began = Instant::now();
    let rows = load(&conn, paths)?;
    println!("raw_load {rows} {:.3}", began.elapsed().as_secs_f64());
    conn.execute_batch("CHECKPOINT")?;

    // PATCH by key: keys spread over every row
    let mut update = conn.prepare(
        "UPDATE well_production SET oil_production_kbd = ? \
         WHERE field_code = ? AND well_code = ? AND production_period = CAST(? AS TIMESTAMP)",
    )?;
    let began = Instant::now();
    for n in 0..STATEMENTS {
        let (field, well, period) = key((n * SPREAD) % rows);
        let changed = update.execute(duckdb::params![n as f64 / 1000.0, field, well, period])?;
        assert_eq!(changed, 1, "key {field}/{well}/{period}");
    }
    let seconds = began.elapsed().as_secs_f64();
    println!(
        "raw_point_update {STATEMENTS} {:.0}",
        STATEMENTS as f64 / seconds
    );

    // DELETE by key: distinct keys from 1990 on
    let mut delete = conn.prepare(
        "DELETE FROM well_production \
         WHERE field_code = ? AND well_code = ? AND production_period = CAST(? AS TIMESTAMP)",
    )?;
    let began = Instant::now();
    for j in 0..STATEMENTS {
        let (field, well, period) = kept_key(j, rows);
        let changed = delete.execute(duckdb::params![field, well, period])?;
        assert_eq!(changed, 1, "key {field}/{well}/{period}");
    }
    let seconds = began.elapsed().as_secs_f64();
    println!(
        "raw_point_delete {STATEMENTS} {:.0}",
        STATEMENTS as f64 / seconds
    );
    conn.execute_batch("CHECKPOINT")?;

    // retention
    let began = Instant::now();
    let deleted = conn.execute(
        "DELETE FROM well_production WHERE production_period < TIMESTAMP '1990-01-01'",
        [],
    )?;
    println!(
        "raw_retention {deleted} {:.3}",
        began.elapsed().as_secs_f64()
    );
    drop(update);
    drop(delete);
    drop(conn);
    let _ = std::fs::remove_file(&db);
    let _ = std::fs::remove_file(db.with_extension("duckdb.wal"));
    Ok(())
}
