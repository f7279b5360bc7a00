//! The reference for read benchmarks: raw in-process DuckDB on a database dataforge has loaded
//! (opened read-only while the server is stopped). Prints, one per line:
//! `raw_scan ROWS SECONDS ROWS_PER_S`: a streamed Arrow scan of the whole table;
//! `raw_aggregate SECONDS`: the benchmark's aggregate (median of 5 runs);
//! `raw_select_1 MICROSECONDS`: the cost of `SELECT 1`;
//! `raw_point_select PER_S`: point SELECTs by the composite key (DuckDB scans for them).
//!
//! Usage: cargo run --release --example raw_read -- DB_FILE [MEMORY_LIMIT]   (default 1GiB; pass
//! the server's `memory_limit` to compare like with like)

use std::time::Instant;

use duckdb::{AccessMode, Connection};

const AGGREGATE: &str = "SELECT field_code, sum(oil_production_kbd) AS sum_oil_production_kbd \
    FROM well_production WHERE production_period BETWEEN TIMESTAMP '2000-01-01' AND TIMESTAMP '2010-12-31' \
    GROUP BY 1 ORDER BY 1";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: raw_read DB_FILE [MEMORY_LIMIT]")?;
    let memory_limit = std::env::args().nth(2).unwrap_or_else(|| "1GiB".into());
    let config = duckdb::Config::default()
        .access_mode(AccessMode::ReadOnly)?
        .max_memory(&memory_limit)?
        .with("preserve_insertion_order", "false")?;
    let conn = Connection::open_with_flags(&path, config)?;

    let began = Instant::now();
    let mut statement = conn.prepare("SELECT * FROM well_production")?;
    let mut rows = 0u64;
    for batch in statement.stream_arrow([])? {
        rows += batch.num_rows() as u64;
    }
    let seconds = began.elapsed().as_secs_f64();
    println!("raw_scan {rows} {seconds:.3} {:.0}", rows as f64 / seconds);

    let mut times: Vec<f64> = (0..5)
        .map(|_| {
            let began = Instant::now();
            let mut statement = conn.prepare(AGGREGATE)?;
            let groups: usize = statement.query_arrow([])?.map(|b| b.num_rows()).sum();
            assert!(groups > 0);
            Ok(began.elapsed().as_secs_f64())
        })
        .collect::<Result<_, duckdb::Error>>()?;
    times.sort_by(f64::total_cmp);
    println!("raw_aggregate {:.4}", times[2]);

    // the same, as dataforge runs it: bound parameters and a streaming result
    let bound = AGGREGATE
        .replace("TIMESTAMP '2000-01-01'", "?")
        .replace("TIMESTAMP '2010-12-31'", "?");
    let mut times: Vec<f64> = (0..5)
        .map(|_| {
            let began = Instant::now();
            let mut statement = conn.prepare(&bound)?;
            let params = [
                duckdb::types::Value::Timestamp(
                    duckdb::types::TimeUnit::Microsecond,
                    946_684_800_000_000,
                ),
                duckdb::types::Value::Timestamp(
                    duckdb::types::TimeUnit::Microsecond,
                    1_293_753_600_000_000,
                ),
            ];
            let groups: usize = statement
                .stream_arrow(duckdb::params_from_iter(params.iter()))?
                .map(|b| b.num_rows())
                .sum();
            assert!(groups > 0);
            Ok(began.elapsed().as_secs_f64())
        })
        .collect::<Result<_, duckdb::Error>>()?;
    times.sort_by(f64::total_cmp);
    println!("raw_aggregate_streamed {:.4}", times[2]);

    let began = Instant::now();
    for _ in 0..1000 {
        conn.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?;
    }
    println!("raw_select_1 {:.1}", began.elapsed().as_secs_f64() * 1000.0);

    let began = Instant::now();
    let mut n = 0u64;
    let mut point = conn.prepare(
        "SELECT * FROM well_production WHERE field_code = ? AND well_code = ? AND production_period = CAST(? AS TIMESTAMP)",
    )?;
    while began.elapsed().as_secs_f64() < 3.0 {
        let i = (n * 7_919_993) % rows.max(1);
        let well = 100_000 + i / 924;
        let field = 1 + (well * 7919) % 2000;
        let month = i % 924;
        let period = format!("{}-{:02}-01", 1947 + month / 12, month % 12 + 1);
        let found: usize = point
            .query_arrow(duckdb::params![field as i64, well as i64, period])?
            .map(|b| b.num_rows())
            .sum();
        assert_eq!(found, 1, "key {field}/{well}/{period}");
        n += 1;
    }
    println!(
        "raw_point_select {:.0}",
        n as f64 / began.elapsed().as_secs_f64()
    );
    Ok(())
}
