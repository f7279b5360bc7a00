//! Crash safety: a server killed with SIGKILL in the middle of concurrent ingest keeps every
//! acknowledged request whole, and no request partly.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Value, json};
use support::{Server, production};

const WP: &str = "/v1/datasets/well_production";
const ROWS_PER_REQUEST: i64 = 500;

/// Writers 2 and 3 send large requests, whose records the writer indexes on a second thread while
/// DuckDB commits.
const LARGE_REQUEST: i64 = 20_000;

/// Rows of each request of a writer.
fn rows_of(writer: i64) -> i64 {
    if writer < 2 {
        ROWS_PER_REQUEST
    } else {
        LARGE_REQUEST
    }
}

#[test]
fn sigkill_mid_ingest_loses_no_acknowledged_request_and_leaves_no_partial_one() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.duckdb");
    let server = Server::start(&db);
    let base = server.base.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let large_acknowledged = Arc::new(AtomicBool::new(false));
    // 4 writers send requests of 500 or 20,000 rows, each request marked in data_source, until the
    // crash
    let writers: Vec<_> = (0..4i64)
        .map(|writer| {
            let (base, stop) = (base.clone(), Arc::clone(&stop));
            let large_acknowledged = Arc::clone(&large_acknowledged);
            std::thread::spawn(move || {
                let mut acknowledged = Vec::new();
                for request in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let id = writer * 1_000_000 + request;
                    let rows: Vec<Value> = (0..rows_of(writer))
                        .map(|k| {
                            let mut row = production(id * rows_of(writer) + k);
                            row["data_source"] = json!(format!("req-{id}"));
                            row
                        })
                        .collect();
                    let sent = ureq::post(&format!("{base}{WP}/records"))
                        .set("Content-Type", "application/json")
                        .send_string(&Value::Array(rows).to_string());
                    match sent {
                        Ok(response) if response.status() == 201 => {
                            acknowledged.push(id);
                            if rows_of(writer) == LARGE_REQUEST {
                                large_acknowledged.store(true, Ordering::Relaxed);
                            }
                        }
                        Ok(response) => panic!("unexpected status {}", response.status()),
                        Err(_) => break, // the server is gone
                    }
                }
                acknowledged
            })
        })
        .collect();
    // the crash comes once a large request was acknowledged (however slow the machine), while the
    // writers keep sending
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !large_acknowledged.load(Ordering::Relaxed) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(700));
    server.kill();
    stop.store(true, Ordering::Relaxed);
    let acknowledged: Vec<i64> = writers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    assert!(
        acknowledged.len() >= 4,
        "some requests were acknowledged before the crash: {}",
        acknowledged.len()
    );

    let server = Server::start(&db);
    let mut per_request: HashMap<String, i64> = HashMap::new();
    let mut cursor = String::new();
    loop {
        let page = server.get(&format!(
            "{WP}/records?select=data_source&limit=10000{cursor}"
        ));
        assert_eq!(page.status, 200, "{page:?}");
        for item in page.body["items"].as_array().unwrap() {
            *per_request
                .entry(item["data_source"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    for id in &acknowledged {
        assert_eq!(
            per_request.get(&format!("req-{id}")),
            Some(&rows_of(id / 1_000_000)),
            "acknowledged request {id} is whole"
        );
    }
    for (request, rows) in &per_request {
        let id: i64 = request.trim_start_matches("req-").parse().unwrap();
        assert_eq!(
            *rows,
            rows_of(id / 1_000_000),
            "{request} is stored whole or not at all"
        );
    }
    assert!(
        acknowledged.iter().any(|id| id / 1_000_000 >= 2),
        "a large request was acknowledged before the crash"
    );
    // the restarted server takes new writes, and its key index knows every stored key: an
    // acknowledged request sent again conflicts
    let again = server.post_json(&format!("{WP}/records"), &production(4_000_000_000));
    assert_eq!(again.status, 201, "{again:?}");
    let repeat = |server: &Server| {
        // a large request: its keys were indexed alongside DuckDB's commit
        let id = *acknowledged
            .iter()
            .rev()
            .find(|id| *id / 1_000_000 >= 2)
            .unwrap();
        let rows: Vec<Value> = (0..LARGE_REQUEST)
            .map(|k| {
                let mut row = production(id * LARGE_REQUEST + k);
                row["data_source"] = json!(format!("req-{id}"));
                row
            })
            .collect();
        server.post_json(&format!("{WP}/records"), &Value::Array(rows))
    };
    let conflict = repeat(&server);
    assert_eq!(conflict.status, 409, "{conflict:?}");
    assert_eq!(conflict.body["total_conflicts"], json!(LARGE_REQUEST));

    // a lost key index is rebuilt from the tables at start
    server.stop();
    std::fs::remove_dir_all(dir.path().join("crash.duckdb.keys")).unwrap();
    let server = Server::start(&db);
    assert_eq!(repeat(&server).status, 409);
    assert_eq!(
        server
            .post_json(&format!("{WP}/records"), &production(4_000_000_000))
            .status,
        409
    );
}

/// Single-record writes are acknowledged once their records are durable in the key index, and
/// reach DuckDB later: killed before that append (the tick is set to ten minutes and nothing reads
/// through DuckDB), the server appends them from the index's log at the next start.
#[test]
fn sigkill_before_deferred_writes_reach_duckdb_loses_none_of_them() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("deferred.duckdb");
    let never = [("DATAFORGE_DATABASE__DEFERRED_APPEND_MS", "600000")];
    let server = Server::start_with(&db, &support::shipped_schemas(), &never);
    let base = server.base.clone();
    // 8 clients, 40 single records each, concurrently: groups of several writes
    let clients: Vec<_> = (0..8i64)
        .map(|client| {
            let base = base.clone();
            std::thread::spawn(move || {
                for k in 0..40 {
                    let record = production(client * 1000 + k);
                    let sent = ureq::post(&format!("{base}{WP}/records"))
                        .set("Content-Type", "application/json")
                        .send_string(&record.to_string())
                        .expect("write accepted");
                    assert_eq!(sent.status(), 201);
                }
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    // a key read comes from the index and does not append the deferred writes
    let one = server.get(&format!("{WP}/records/6/100000/2020-01-01T00:00:00Z"));
    assert_eq!(one.status, 200, "{one:?}");
    server.kill();

    let server = Server::start(&db);
    let replayed = server
        .log_lines()
        .iter()
        .any(|line| line.contains("appended deferred writes to the tables"));
    assert!(
        replayed,
        "the start appended the deferred writes from the log"
    );
    let count = server.get(&format!("{WP}/count"));
    assert_eq!(count.body["count"], json!(320), "{count:?}");
    let page = server.get(&format!(
        "{WP}/records?select=well_code,production_period&limit=1000"
    ));
    let mut stored: Vec<(i64, String)> = page.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            (
                item["well_code"].as_i64().unwrap(),
                item["production_period"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    stored.sort();
    let mut expected: Vec<(i64, String)> = (0..8i64)
        .flat_map(|client| (0..40).map(move |k| production(client * 1000 + k)))
        .map(|r| {
            (
                r["well_code"].as_i64().unwrap(),
                r["production_period"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    expected.sort();
    assert_eq!(
        stored, expected,
        "every acknowledged record is in the table, once"
    );
    // the index and the table agree: a replayed record conflicts, a new one is taken
    assert_eq!(
        server
            .post_json(&format!("{WP}/records"), &production(7039))
            .status,
        409
    );
    assert_eq!(
        server
            .post_json(&format!("{WP}/records"), &production(9000))
            .status,
        201
    );
    // a clean stop appends what is deferred: nothing is left to replay at the next start
    server.stop();
    let server = Server::start_with(&db, &support::shipped_schemas(), &never);
    assert!(
        !server
            .log_lines()
            .iter()
            .any(|line| line.contains("appended deferred writes")),
        "nothing was left deferred after a clean stop"
    );
    assert_eq!(server.get(&format!("{WP}/count")).body["count"], json!(321));
}
