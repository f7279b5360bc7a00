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
    // the key index is derived data the README says may be deleted: the journal holds the writes
    std::fs::remove_dir_all(dir.path().join("deferred.duckdb.keys")).unwrap();

    let server = Server::start(&db);
    let replayed = server
        .log_lines()
        .iter()
        .any(|line| line.contains("appended the journal's acknowledged writes to the tables"));
    assert!(
        replayed,
        "the start appended the deferred writes from the journal"
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
            .any(|line| line.contains("appended the journal's")),
        "nothing was left deferred after a clean stop"
    );
    assert_eq!(server.get(&format!("{WP}/count")).body["count"], json!(321));
}

/// Single records POSTed without pause while the ticker appends them to DuckDB every few
/// milliseconds, beside the writer, the journal's two files taking turns: killed in the middle, the
/// restart holds every acknowledged record, once, and nothing that was not sent.
#[test]
fn sigkill_while_deferred_writes_are_appended_beside_the_writer_loses_none() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("beside.duckdb");
    let often = [("DATAFORGE_DATABASE__DEFERRED_APPEND_MS", "5")];
    let server = Server::start_with(&db, &support::shipped_schemas(), &often);
    let never = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..8i64)
        .map(|client| {
            let (base, never) = (server.base.clone(), Arc::clone(&never));
            std::thread::spawn(move || {
                let post = |k: i64| {
                    let mut record = production(client * 1_000_000 + k);
                    record["data_source"] = json!(format!("c{client}-{k}"));
                    status(
                        ureq::post(&format!("{base}{WP}/records"))
                            .set("Content-Type", "application/json")
                            .send_string(&record.to_string()),
                    )
                };
                until_killed(&never, 1_000_000, post, &[201])
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    server.kill();
    let sent: Vec<Sent> = clients.into_iter().map(|c| c.join().unwrap()).collect();

    let server = Server::start(&db);
    let csv = ureq::get(&format!(
        "{}{WP}/records?format=csv&select=data_source",
        server.base
    ))
    .call()
    .unwrap()
    .into_string()
    .unwrap();
    let mut stored: HashMap<String, usize> = HashMap::new();
    for marker in csv.lines().skip(1) {
        *stored.entry(marker.to_owned()).or_default() += 1;
    }
    let mut acknowledged = 0;
    for (client, sent) in sent.iter().enumerate() {
        for k in &sent.acknowledged {
            let marker = format!("c{client}-{k}");
            assert_eq!(stored.get(&marker), Some(&1), "acknowledged {marker}");
        }
        acknowledged += sent.acknowledged.len();
        if let Some(k) = sent.in_flight {
            stored.remove(&format!("c{client}-{k}"));
        }
    }
    assert!(
        acknowledged > 100,
        "only {acknowledged} writes before the kill"
    );
    assert_eq!(
        stored.len(),
        acknowledged,
        "nothing but what was sent is stored"
    );
    assert!(stored.values().all(|&n| n == 1), "no record stored twice");
}

const WR: &str = "/v1/datasets/well_registry";
/// Wells stored before the changes start: 0..1000 are updated by key, 1000..2000 deleted by key,
/// 2000..3000 (fields 100..) deleted by filter, 3000..4000 (fields 200..) updated by filter.
const PRELOADED: i64 = 4000;
/// Wells per field among those changed by filter.
const PER_FIELD: i64 = 50;

fn field_of(well: i64) -> i64 {
    match well {
        2000..3000 => 100 + (well - 2000) / PER_FIELD,
        3000..4000 => 200 + (well - 3000) / PER_FIELD,
        _ => well % 10,
    }
}

fn registry_well(well: i64) -> Value {
    json!({"well_code": well, "well_name": format!("W{well}"), "field_code": field_of(well),
           "depth_m": 1.0, "operator": "Orig"})
}

/// One client's changes until the server dies: what it sent last and what was acknowledged.
struct Sent {
    acknowledged: Vec<i64>,
    in_flight: Option<i64>,
}

/// The status of an answer, or `None` when the server is gone.
fn status(sent: Result<ureq::Response, ureq::Error>) -> Option<u16> {
    match sent {
        Ok(response) => Some(response.status()),
        Err(ureq::Error::Status(code, _)) => Some(code),
        Err(_) => None,
    }
}

/// Sends `request(i)` for i = 0.. until the server is gone or `stop` is set.
fn until_killed(
    stop: &AtomicBool,
    limit: i64,
    mut request: impl FnMut(i64) -> Option<u16>,
    ok: &[u16],
) -> Sent {
    let mut acknowledged = Vec::new();
    for i in 0..limit {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        match request(i) {
            Some(code) if ok.contains(&code) => acknowledged.push(i),
            Some(code) => panic!("unexpected status {code} for change {i}"),
            None => {
                return Sent {
                    acknowledged,
                    in_flight: Some(i),
                };
            }
        }
    }
    Sent {
        acknowledged,
        in_flight: None,
    }
}

/// Every stored well (code to field, depth and operator), read through DuckDB (a CSV export).
fn full_scan(server: &Server) -> HashMap<i64, (i64, String, String)> {
    let text = ureq::get(&format!(
        "{}{WR}/records?format=csv&select=well_code,field_code,depth_m,operator",
        server.base
    ))
    .call()
    .unwrap()
    .into_string()
    .unwrap();
    text.lines()
        .skip(1)
        .map(|line| {
            let cells: Vec<&str> = line.split(',').collect();
            let (code, field) = (cells[0].parse().unwrap(), cells[1].parse().unwrap());
            (code, (field, cells[2].to_owned(), cells[3].to_owned()))
        })
        .collect()
}

/// Updates and deletes, by key and by filter, while inserts go on; SIGKILL in the middle. After
/// the restart every acknowledged change is there, no change by filter is half applied, and the
/// count, reads by key and the declared index's pages agree with a full scan.
#[test]
fn sigkill_mid_changes_keeps_every_acknowledged_change_whole() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("changes.duckdb");
    let server = Server::start(&db);
    let wells: Vec<Value> = (0..PRELOADED).map(registry_well).collect();
    assert_eq!(
        server
            .post_json(&format!("{WR}/records"), &json!(wells))
            .status,
        201
    );
    let base = server.base.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let url = move |path: String| format!("{base}{WR}{path}");
    type Client = Box<dyn FnMut(i64) -> Option<u16> + Send>;
    let clients: Vec<(Client, i64, &[u16])> = vec![
        // inserts of new wells, single records (acknowledged from the key index, appended later)
        (
            Box::new({
                let url = url.clone();
                move |i| {
                    status(ureq::post(&url("/records".into())).send_json(registry_well(10_000 + i)))
                }
            }),
            100_000,
            &[201],
        ),
        // updates by key: well i % 1000 gets depth i
        (
            Box::new({
                let url = url.clone();
                move |i| {
                    status(
                        ureq::request("PATCH", &url(format!("/records/{}", i % 1000)))
                            .send_json(json!({"depth_m": i})),
                    )
                }
            }),
            100_000,
            &[200],
        ),
        // deletes by key
        (
            Box::new({
                let url = url.clone();
                move |i| status(ureq::delete(&url(format!("/records/{}", 1000 + i))).call())
            }),
            1000,
            &[204],
        ),
        // deletes by filter: one field of 50 wells each
        (
            Box::new({
                let url = url.clone();
                move |i| {
                    status(ureq::delete(&url(format!("/records?field_code=eq.{}", 100 + i))).call())
                }
            }),
            20,
            &[200],
        ),
        // updates by filter, with a JSON filter tree: one field of 50 wells each
        (
            Box::new({
                let url = url.clone();
                move |i| {
                    let filter = json!({"eq": {"field_code": 200 + i}});
                    let set = json!({"operator": format!("Upd{i}")});
                    status(
                        ureq::post(&url("/update".into()))
                            .send_json(json!({"filter": filter, "set": set})),
                    )
                }
            }),
            20,
            &[200],
        ),
    ];
    let threads: Vec<_> = clients
        .into_iter()
        .map(|(mut client, limit, ok)| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || until_killed(&stop, limit, &mut client, ok))
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    server.kill();
    stop.store(true, Ordering::Relaxed);
    let sent: Vec<Sent> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    for (client, s) in sent.iter().enumerate() {
        assert!(
            !s.acknowledged.is_empty(),
            "client {client} had a change acknowledged"
        );
    }

    let server = Server::start(&db);
    let stored = full_scan(&server);
    // inserts
    for i in &sent[0].acknowledged {
        assert!(
            stored.contains_key(&(10_000 + i)),
            "acknowledged insert {i} kept"
        );
    }
    // updates by key: the last acknowledged depth, or the one in flight at the crash
    let mut last: HashMap<i64, Vec<i64>> = HashMap::new();
    for i in sent[1].acknowledged.iter().chain(&sent[1].in_flight) {
        last.entry(i % 1000).or_default().push(*i);
    }
    for (well, depths) in &last {
        let depth: f64 = stored[well].1.parse().unwrap();
        // the preloaded depth (1) while no change to the well was acknowledged
        let acknowledged = depths.iter().rev().find(|d| Some(**d) != sent[1].in_flight);
        let before = acknowledged.map_or(1.0, |d| *d as f64);
        let in_flight = sent[1].in_flight.filter(|d| d % 1000 == *well);
        let allowed: Vec<f64> = std::iter::once(before)
            .chain(in_flight.map(|d| d as f64))
            .collect();
        assert!(
            allowed.contains(&depth),
            "well {well}: depth {depth} is one of {allowed:?}"
        );
    }
    // deletes by key
    for i in &sent[2].acknowledged {
        assert!(
            !stored.contains_key(&(1000 + i)),
            "acknowledged delete {i} kept"
        );
    }
    // changes by filter: acknowledged ones whole, the one in flight all or nothing
    for field in 100..120 {
        let left = stored.values().filter(|(f, ..)| *f == field).count() as i64;
        let i = field - 100;
        if sent[3].acknowledged.contains(&i) {
            assert_eq!(left, 0, "field {field} deleted");
        } else {
            assert!(
                left == 0 && sent[3].in_flight == Some(i) || left == PER_FIELD,
                "field {field}: {left} wells left"
            );
        }
    }
    for field in 200..220 {
        let i = field - 200;
        let updated = stored
            .values()
            .filter(|(f, _, o)| *f == field && *o == format!("Upd{i}"))
            .count() as i64;
        if sent[4].acknowledged.contains(&i) {
            assert_eq!(updated, PER_FIELD, "field {field} updated");
        } else {
            assert!(
                updated == 0 || updated == PER_FIELD && sent[4].in_flight == Some(i),
                "field {field}: {updated} updated"
            );
        }
    }
    // the count, reads by key and the declared index's pages agree with the full scan
    assert_eq!(
        server.get(&format!("{WR}/count")).body["count"],
        json!(stored.len())
    );
    let highest = 10_000 + sent[0].acknowledged.len() as i64 + 1;
    for well in (0..PRELOADED).chain(10_000..highest) {
        let answer = server.get(&format!("{WR}/records/{well}"));
        match stored.get(&well) {
            Some((field, ..)) => {
                assert_eq!(answer.status, 200, "well {well}");
                assert_eq!(answer.body["field_code"], json!(field));
            }
            None => assert_eq!(answer.status, 404, "well {well}"),
        }
    }
    let mut fields: Vec<i64> = stored.values().map(|(f, ..)| *f).collect();
    fields.sort();
    fields.dedup();
    for field in fields.into_iter().chain([100, 200]) {
        let page = server.get(&format!(
            "{WR}/records?field_code=eq.{field}&select=well_code&limit=10000"
        ));
        let mut paged: Vec<i64> = page.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["well_code"].as_i64().unwrap())
            .collect();
        paged.sort();
        let mut scanned: Vec<i64> = stored
            .iter()
            .filter(|(_, (f, ..))| *f == field)
            .map(|(c, _)| *c)
            .collect();
        scanned.sort();
        assert_eq!(paged, scanned, "the index's page of field {field}");
    }
}

/// Updates and deletes by key are acknowledged once the key index holds them and reach DuckDB
/// later, like single inserts: killed before that (the tick is ten minutes, nothing reads through
/// DuckDB), the next start rewrites the changed keys' rows from the index's log, including keys
/// inserted, changed and deleted again while deferred.
#[test]
fn sigkill_before_deferred_changes_reach_duckdb_loses_none_of_them() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("changes.duckdb");
    let never = [("DATAFORGE_DATABASE__DEFERRED_APPEND_MS", "600000")];
    let server = Server::start_with(&db, &support::shipped_schemas(), &never);
    let wells: Vec<Value> = (1..=6).map(registry_well).collect();
    assert_eq!(
        server
            .post_json(&format!("{WR}/records"), &json!(wells))
            .status,
        201
    );
    // a count reads through DuckDB: the six are appended
    assert_eq!(server.get(&format!("{WR}/count")).body["count"], json!(6));
    let patch = |well: i64, depth: i64| {
        let answer = server.send(
            "PATCH",
            &format!("{WR}/records/{well}"),
            Some(&json!({"depth_m": depth})),
        );
        assert_eq!(answer.status, 200, "{answer:?}");
    };
    let delete = |well: i64| {
        assert_eq!(
            server
                .send("DELETE", &format!("{WR}/records/{well}"), None)
                .status,
            204
        );
    };
    let insert = |well: i64, depth: i64| {
        let mut record = registry_well(well);
        record["depth_m"] = json!(depth);
        assert_eq!(
            server.post_json(&format!("{WR}/records"), &record).status,
            201
        );
    };
    patch(1, 11);
    delete(2);
    insert(7, 7);
    patch(7, 77);
    insert(8, 8);
    delete(8);
    delete(3);
    insert(3, 33);
    patch(4, 40);
    patch(4, 44);
    // a refused write spends no sequence number (the log must cover every one to be replayed)
    let again = server.post_json(&format!("{WR}/records"), &registry_well(7));
    assert_eq!(again.status, 409, "{again:?}");
    assert_eq!(
        server.get(&format!("{WR}/records/4")).body["depth_m"],
        json!(44.0)
    );
    server.kill();

    let server = Server::start(&db);
    let log = server.log_lines().join("\n");
    assert!(
        log.contains("appended the journal's acknowledged writes to the tables"),
        "{log}"
    );
    let stored = full_scan(&server);
    let mut depths: Vec<(i64, String)> = stored
        .iter()
        .map(|(code, (_, depth, _))| (*code, depth.clone()))
        .collect();
    depths.sort();
    let expected: Vec<(i64, String)> = [
        (1, "11.0"),
        (3, "33.0"),
        (4, "44.0"),
        (5, "1.0"),
        (6, "1.0"),
        (7, "77.0"),
    ]
    .iter()
    .map(|(c, d)| (*c, d.to_string()))
    .collect();
    assert_eq!(
        depths, expected,
        "the table holds every acknowledged change, once"
    );
    for well in 1..=8 {
        let status = server.get(&format!("{WR}/records/{well}")).status;
        assert_eq!(
            status,
            if stored.contains_key(&well) { 200 } else { 404 },
            "well {well}"
        );
    }
    let page = server.get(&format!("{WR}/records?field_code=eq.3&select=well_code"));
    assert_eq!(page.body["items"], json!([{"well_code": 3}]));
}

/// A key index whose file is truncated or overwritten is set aside and rebuilt from the tables at
/// start, instead of stopping it (issue 13): every record is read by key again, and keys conflict.
#[test]
fn a_damaged_key_index_is_set_aside_and_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("damaged.duckdb");
    let server = Server::start(&db);
    let wells: Vec<Value> = (1..=50).map(registry_well).collect();
    assert_eq!(
        server
            .post_json(&format!("{WR}/records"), &json!(wells))
            .status,
        201
    );
    server.stop();
    let data = dir.path().join("damaged.duckdb.keys").join("data.mdb");
    type Damage = fn(&std::path::Path);
    let damages: [(&str, Damage); 3] = [
        ("truncated", |data| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(data)
                .unwrap()
                .set_len(100)
                .unwrap()
        }),
        ("garbage-headed", |data| {
            let mut bytes = std::fs::read(data).unwrap();
            bytes[..4096].fill(0xab);
            std::fs::write(data, bytes).unwrap()
        }),
        // LMDB opens this one (its meta pages are whole) and crashed reading it: the walk in a
        // child process finds it
        ("garbage-paged", |data| {
            let mut bytes = std::fs::read(data).unwrap();
            bytes[2 * 4096..].fill(0xab);
            std::fs::write(data, bytes).unwrap()
        }),
    ];
    let never = [("DATAFORGE_DATABASE__DEFERRED_APPEND_MS", "600000")];
    for (late, (what, damage)) in (100..).zip(damages) {
        // a write acknowledged just before the crash lives in the journal, not only in the index
        let server = Server::start_with(&db, &support::shipped_schemas(), &never);
        let sent = server.post_json(&format!("{WR}/records"), &registry_well(late));
        assert_eq!(sent.status, 201, "{what}: {sent:?}");
        server.kill();
        damage(&data);
        let server = Server::start(&db);
        let log = server.log_lines().join("\n");
        assert!(
            log.contains("the key index is damaged; it was set aside"),
            "{what}: {log}"
        );
        for well in [42, late] {
            assert_eq!(
                server.get(&format!("{WR}/records/{well}")).body["well_code"],
                json!(well),
                "{what}"
            );
        }
        let again = server.post_json(&format!("{WR}/records"), &registry_well(7));
        assert_eq!(again.status, 409, "{what}: {again:?}");
        server.stop();
    }
    let aside = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".keys.damaged-")
        })
        .count();
    assert!(aside >= 1, "the damaged index is kept for inspection");
}

/// A database file cut short stops the start with a message naming it and what to do, instead of
/// serving the old counts and failing pages with 500 (issue 13, item 6).
#[test]
fn a_truncated_database_file_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cut.duckdb");
    let server = Server::start(&db);
    let records: Vec<Value> = (0..20_000).map(production).collect();
    assert_eq!(
        server
            .post_json(&format!("{WP}/records"), &json!(records))
            .status,
        201
    );
    server.stop();
    // a clean start of the whole file is not refused
    let server = Server::start(&db);
    assert_eq!(
        server.get(&format!("{WP}/count")).body["count"],
        json!(20_000)
    );
    server.stop();
    let length = std::fs::metadata(&db).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&db)
        .unwrap()
        .set_len(length / 2)
        .unwrap();
    let (code, _, stderr) = support::serve_until_exit(&db, &support::shipped_schemas(), dir.path());
    assert_ne!(code, 0, "{stderr}");
    assert!(
        stderr.contains("cut.duckdb is cut short") && stderr.contains("Restore it from a backup"),
        "{stderr}"
    );
}

/// The process stopped after a write's journal entry was synced but before the key index held it
/// (set up here by putting back a copy of the index taken before the write): the start appends
/// the journal to the table and the index takes the write it missed, without a rebuild.
#[test]
fn an_index_one_write_behind_the_journal_takes_the_write_it_missed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("behind.duckdb");
    let never = [("DATAFORGE_DATABASE__DEFERRED_APPEND_MS", "600000")];
    let server = Server::start_with(&db, &support::shipped_schemas(), &never);
    let keys = dir.path().join("behind.duckdb.keys");
    let copy = dir.path().join("keys-before");
    let first = server.post_json(&format!("{WR}/records"), &registry_well(1));
    assert_eq!(first.status, 201, "{first:?}");
    // the index as it is now, one write behind the next
    std::fs::create_dir(&copy).unwrap();
    for file in std::fs::read_dir(&keys).unwrap() {
        let file = file.unwrap();
        std::fs::copy(file.path(), copy.join(file.file_name())).unwrap();
    }
    let second = server.post_json(&format!("{WR}/records"), &registry_well(2));
    assert_eq!(second.status, 201, "{second:?}");
    server.kill();
    std::fs::remove_dir_all(&keys).unwrap();
    std::fs::rename(&copy, &keys).unwrap();

    let server = Server::start(&db);
    let log = server.log_lines().join("\n");
    assert!(
        log.contains("the key index takes the journal's writes it missed"),
        "{log}"
    );
    assert!(!log.contains("rebuilding the key index"), "{log}");
    for well in [1, 2] {
        assert_eq!(
            server.get(&format!("{WR}/records/{well}")).body["well_code"],
            json!(well)
        );
    }
    assert_eq!(server.get(&format!("{WR}/count")).body["count"], json!(2));
    let again = server.post_json(&format!("{WR}/records"), &registry_well(2));
    assert_eq!(
        again.status, 409,
        "the index knows the write it took: {again:?}"
    );
}
