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

#[test]
fn sigkill_mid_ingest_loses_no_acknowledged_request_and_leaves_no_partial_one() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.duckdb");
    let server = Server::start(&db);
    let base = server.base.clone();
    let stop = Arc::new(AtomicBool::new(false));
    // 4 writers send requests of 500 rows, each request marked in data_source, until the crash
    let writers: Vec<_> = (0..4i64)
        .map(|writer| {
            let (base, stop) = (base.clone(), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut acknowledged = Vec::new();
                for request in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let id = writer * 1_000_000 + request;
                    let rows: Vec<Value> = (0..ROWS_PER_REQUEST)
                        .map(|k| {
                            let mut row = production(id * ROWS_PER_REQUEST + k);
                            row["data_source"] = json!(format!("req-{id}"));
                            row
                        })
                        .collect();
                    let sent = ureq::post(&format!("{base}{WP}/records"))
                        .set("Content-Type", "application/json")
                        .send_string(&Value::Array(rows).to_string());
                    match sent {
                        Ok(response) if response.status() == 201 => acknowledged.push(id),
                        Ok(response) => panic!("unexpected status {}", response.status()),
                        Err(_) => break, // the server is gone
                    }
                }
                acknowledged
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(1500));
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
            Some(&ROWS_PER_REQUEST),
            "acknowledged request {id} is whole"
        );
    }
    for (request, rows) in &per_request {
        assert_eq!(
            *rows, ROWS_PER_REQUEST,
            "{request} is stored whole or not at all"
        );
    }
    // the restarted server takes new writes, and its key index knows every stored key: an
    // acknowledged request sent again conflicts
    let again = server.post_json(&format!("{WP}/records"), &production(4_000_000_000));
    assert_eq!(again.status, 201, "{again:?}");
    let repeat = |server: &Server| {
        let id = acknowledged[acknowledged.len() / 2];
        let rows: Vec<Value> = (0..ROWS_PER_REQUEST)
            .map(|k| {
                let mut row = production(id * ROWS_PER_REQUEST + k);
                row["data_source"] = json!(format!("req-{id}"));
                row
            })
            .collect();
        server.post_json(&format!("{WP}/records"), &Value::Array(rows))
    };
    let conflict = repeat(&server);
    assert_eq!(conflict.status, 409, "{conflict:?}");
    assert_eq!(conflict.body["total_conflicts"], json!(ROWS_PER_REQUEST));

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
