//! What secondary indexes and data order cost at write time and gain at read time, on generated
//! `well_production` rows (an Arrow IPC file from `dataforge generate`), in-process:
//! - load time into a table as dataforge lays it out, with no index, with an index on
//!   `field_code`, and with one on `production_period` (indexes exist before the load, as a schema's
//!   `indexes` do);
//! - the benchmark's filtered page (one field, periods from 2000, ordered by period, 100 rows) and a
//!   one-year time-range count, on each table and on a copy clustered by (field_code, period).
//!
//! Prints Markdown rows. Usage: cargo run --release --example read_layouts -- ROWS.arrow WORK_DIR

use std::time::Instant;

use duckdb::Connection;

mod common;
use common::COLUMNS;

fn load(
    conn: &Connection,
    table: &str,
    path: &str,
) -> Result<(u64, f64), Box<dyn std::error::Error>> {
    let file = std::fs::File::open(path)?;
    let reader = arrow_ipc::reader::StreamReader::try_new(std::io::BufReader::new(file), None)?;
    let began = Instant::now();
    let mut rows = 0u64;
    for batch in reader {
        let batch = batch?;
        rows += batch.num_rows() as u64;
        conn.execute_batch("BEGIN")?;
        let mut appender = conn.appender(table)?;
        appender.append_record_batch(batch)?;
        appender.flush()?;
        drop(appender);
        conn.execute_batch("COMMIT")?;
    }
    Ok((rows, began.elapsed().as_secs_f64()))
}

/// Median milliseconds of `runs` runs of `sql` with the parameter made by `param(i)`.
fn median_ms(
    conn: &Connection,
    sql: &str,
    runs: u64,
    param: impl Fn(u64) -> i64,
) -> Result<f64, duckdb::Error> {
    let mut statement = conn.prepare(sql)?;
    let mut times = Vec::new();
    for i in 0..runs {
        let began = Instant::now();
        let rows: usize = statement
            .query_arrow([param(i)])?
            .map(|b| b.num_rows())
            .sum();
        std::hint::black_box(rows);
        times.push(began.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(path), Some(dir)) = (args.next(), args.next()) else {
        return Err("usage: read_layouts ROWS.arrow WORK_DIR".into());
    };
    let db = std::path::Path::new(&dir).join("layouts.duckdb");
    let _ = std::fs::remove_file(&db);
    let _ = std::fs::remove_file(db.with_extension("duckdb.wal"));
    let config = duckdb::Config::default()
        .max_memory("1GiB")?
        .with("preserve_insertion_order", "false")?;
    let conn = Connection::open_with_flags(&db, config)?;

    println!("| layout | load rows/s | filtered page, median ms | one-year count, median ms |");
    println!("| --- | ---: | ---: | ---: |");
    let variants = [
        ("insertion order, no index (default)", None),
        ("index on field_code", Some("field_code")),
        ("index on production_period", Some("production_period")),
    ];
    let page = |table: &str| {
        format!(
            "SELECT * FROM {table} WHERE field_code = ? AND production_period >= TIMESTAMP '2000-01-01' \
             ORDER BY production_period, field_code, well_code LIMIT 101"
        )
    };
    let year = |table: &str| {
        format!(
            "SELECT count(*) FROM {table} WHERE production_period >= CAST(? AS TIMESTAMP) \
             AND production_period < CAST(? AS TIMESTAMP)"
        )
    };
    let field = |i: u64| (1 + (i * 7919) % 2000) as i64;
    let year_of = |i: u64| 1950 + (i % 70) as i64;
    for (n, (name, index)) in variants.iter().enumerate() {
        let table = format!("t{n}");
        conn.execute_batch(&format!("CREATE TABLE {table} ({COLUMNS})"))?;
        if let Some(column) = index {
            conn.execute_batch(&format!("CREATE INDEX {table}_i ON {table} ({column})"))?;
        }
        let (rows, seconds) = load(&conn, &table, &path)?;
        conn.execute_batch("CHECKPOINT")?;
        let page_ms = median_ms(&conn, &page(&table), 101, field)?;
        let mut statement = conn.prepare(&year(&table))?;
        let mut times = Vec::new();
        for i in 0..21 {
            let began = Instant::now();
            let y = year_of(i);
            let bounds = [format!("{y}-01-01"), format!("{}-01-01", y + 1)];
            let _: i64 = statement.query_row(bounds, |r| r.get(0))?;
            times.push(began.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "| {name} | {:.0} | {page_ms:.2} | {:.2} |",
            rows as f64 / seconds,
            times[times.len() / 2]
        );
        if n > 0 {
            conn.execute_batch(&format!("DROP TABLE {table}"))?;
        }
    }
    // the same rows, clustered by the filtered page's keys
    let began = Instant::now();
    conn.execute_batch(
        "CREATE TABLE clustered AS SELECT * FROM t0 ORDER BY field_code, production_period; CHECKPOINT",
    )?;
    let cluster_s = began.elapsed().as_secs_f64();
    let page_ms = median_ms(&conn, &page("clustered"), 101, field)?;
    println!(
        "| clustered by (field_code, production_period), rewritten in {cluster_s:.1} s | | {page_ms:.2} | |"
    );
    Ok(())
}
