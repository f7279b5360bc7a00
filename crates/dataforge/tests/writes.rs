//! Write options end to end: conflict modes, skipping invalid records, and key uniqueness under
//! concurrent writers.

mod support;

use std::collections::HashSet;

use serde_json::{Value, json};
use support::{Server, production, stored, temp_db, with_oil};

const WP: &str = "/v1/datasets/well_production";

fn counts(answer: &support::Answer) -> (u64, u64, u64, u64) {
    assert_eq!(answer.status, 201, "{answer:?}");
    let n = |k: &str| answer.body[k].as_u64().unwrap_or(u64::MAX);
    (n("inserted"), n("updated"), n("skipped"), n("rejected"))
}

#[test]
fn ignore_keeps_stored_records_and_the_first_in_a_request() {
    let (_dir, db) = temp_db();
    let server = Server::start(&db);
    assert_eq!(
        counts(&server.post_json(
            &format!("{WP}/records"),
            &json!([with_oil(0, 1.0), with_oil(1, 1.0)])
        )),
        (2, 0, 0, 0)
    );
    let body = json!([
        with_oil(1, 2.0),
        with_oil(2, 2.0),
        with_oil(2, 3.0),
        with_oil(3, 2.0)
    ]);
    let answer = server.post_json(&format!("{WP}/records?on_conflict=ignore"), &body);
    assert_eq!(counts(&answer), (2, 0, 2, 0));
    assert_eq!(
        stored(&server, 1)["oil_production_kbd"],
        json!(1.0),
        "the stored record stays"
    );
    assert_eq!(
        stored(&server, 2)["oil_production_kbd"],
        json!(2.0),
        "the first in the request wins"
    );
    assert_eq!(
        server.get(&format!("{WP}/count")).body,
        json!({"count": 4, "exact": true})
    );
}

#[test]
fn upsert_replaces_stored_records_and_the_last_in_a_request_wins() {
    let (_dir, db) = temp_db();
    let server = Server::start(&db);
    assert_eq!(
        counts(&server.post_json(
            &format!("{WP}/records"),
            &json!([with_oil(0, 1.0), with_oil(1, 1.0)])
        )),
        (2, 0, 0, 0)
    );
    let body = json!([
        with_oil(1, 5.0),
        with_oil(2, 2.0),
        with_oil(2, 3.0),
        with_oil(1, 6.0)
    ]);
    let answer = server.post_json(&format!("{WP}/records?on_conflict=upsert"), &body);
    assert_eq!(counts(&answer), (1, 1, 2, 0));
    assert_eq!(stored(&server, 1)["oil_production_kbd"], json!(6.0));
    assert_eq!(stored(&server, 2)["oil_production_kbd"], json!(3.0));
    assert_eq!(stored(&server, 0)["oil_production_kbd"], json!(1.0));
    assert_eq!(
        server.get(&format!("{WP}/count")).body,
        json!({"count": 3, "exact": true})
    );
}

#[test]
fn skip_writes_the_valid_records_and_reports_the_rest() {
    let (_dir, db) = temp_db();
    let server = Server::start(&db);
    let mut bad_days = production(1);
    bad_days["days_on_production"] = json!(40);
    let mut bad_type = production(3);
    bad_type["well_code"] = json!("x");
    bad_type["oil_production_kbd"] = json!(-1);
    let body = json!([
        production(0),
        bad_days,
        production(2),
        bad_type,
        "not a record"
    ]);
    let answer = server.post_json(&format!("{WP}/records?on_error=skip"), &body);
    assert_eq!(counts(&answer), (2, 0, 0, 3));
    assert_eq!(answer.body["total_errors"], json!(4));
    let rows: Vec<u64> = answer.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["row"].as_u64().unwrap())
        .collect();
    assert_eq!(rows, vec![2, 4, 4, 5]);
    assert_eq!(
        server.get(&format!("{WP}/count")).body,
        json!({"count": 2, "exact": true})
    );
    stored(&server, 0);
    stored(&server, 2);

    // skip and conflict modes combine; a request with nothing valid writes nothing and says so
    let answer = server.post_json(
        &format!("{WP}/records?on_error=skip&on_conflict=ignore"),
        &json!([production(0), "x"]),
    );
    assert_eq!(counts(&answer), (0, 0, 1, 1));
    let answer = server.post_json(&format!("{WP}/records?on_error=skip"), &json!(["x"]));
    assert_eq!(counts(&answer), (0, 0, 0, 1));
    assert_eq!(
        server.get(&format!("{WP}/count")).body,
        json!({"count": 2, "exact": true})
    );
}

#[test]
fn bad_write_options_name_the_parameter() {
    let (_dir, db) = temp_db();
    let server = Server::start(&db);
    for (query, parameter) in [
        ("on_conflict=replace", "on_conflict"),
        ("on_error=maybe", "on_error"),
        ("limit=5", "limit"),
    ] {
        let answer = server.post_json(&format!("{WP}/records?{query}"), &production(0));
        assert_eq!(answer.status, 400, "{answer:?}");
        assert_eq!(answer.body["parameter"], parameter);
    }
    assert_eq!(
        server.get(&format!("{WP}/count")).body,
        json!({"count": 0, "exact": true})
    );
}

#[test]
fn keys_stay_unique_under_concurrent_writers_in_every_mode() {
    let (_dir, db) = temp_db();
    let server = Server::start(&db);
    let base = server.base.clone();
    // 8 writers per mode, each posting 20 requests of 10 records over the same 60 keys
    let handles: Vec<_> = (0..24)
        .map(|writer| {
            let base = base.clone();
            std::thread::spawn(move || {
                let mode = ["error", "ignore", "upsert"][writer % 3];
                let mut statuses = Vec::new();
                for request in 0..20 {
                    let records: Vec<Value> = (0..10)
                        .map(|k| {
                            with_oil((writer as i64 * 7 + request * 3 + k) % 60, writer as f64)
                        })
                        .collect();
                    let response = ureq::post(&format!("{base}{WP}/records?on_conflict={mode}"))
                        .set("Content-Type", "application/json")
                        .send_string(&Value::Array(records).to_string());
                    statuses.push(match response {
                        Ok(r) => r.status(),
                        Err(ureq::Error::Status(code, _)) => code,
                        Err(e) => panic!("{e}"),
                    });
                }
                statuses
            })
        })
        .collect();
    let statuses: Vec<u16> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 409),
        "{statuses:?}"
    );
    let page = server.get(&format!("{WP}/records?limit=1000"));
    let items = page.body["items"].as_array().unwrap();
    let keys: HashSet<(i64, i64, String)> = items
        .iter()
        .map(|r| {
            (
                r["field_code"].as_i64().unwrap(),
                r["well_code"].as_i64().unwrap(),
                r["production_period"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(items.len(), 60, "every key once");
    assert_eq!(keys.len(), 60);
}

#[test]
fn a_full_write_queue_answers_503_with_retry_after() {
    if support::duckdb_only("the writer queue") {
        return;
    }
    let (_dir, db) = temp_db();
    let env = [
        ("DATAFORGE_DATABASE__WRITE_QUEUE", "1"),
        ("DATAFORGE_DATABASE__WRITE_WAIT_MS", "0"),
    ];
    let server = Server::start_with(&db, &support::shipped_schemas(), &env);
    let base = server.base.clone();
    let handles: Vec<_> = (0..12)
        .map(|writer| {
            let base = base.clone();
            std::thread::spawn(move || {
                let records: Vec<Value> =
                    (0..3000).map(|k| production(writer * 3000 + k)).collect();
                let response = ureq::post(&format!("{base}{WP}/records"))
                    .set("Content-Type", "application/json")
                    .send_string(&Value::Array(records).to_string());
                match response {
                    Ok(r) => (r.status(), None),
                    Err(ureq::Error::Status(code, r)) => {
                        (code, r.header("retry-after").map(str::to_owned))
                    }
                    Err(e) => panic!("{e}"),
                }
            })
        })
        .collect();
    let answers: Vec<(u16, Option<String>)> =
        handles.into_iter().map(|h| h.join().unwrap()).collect();
    let accepted = answers.iter().filter(|a| a.0 == 201).count() as u64;
    let refused: Vec<_> = answers.iter().filter(|a| a.0 != 201).collect();
    assert!(
        !refused.is_empty(),
        "with a queue of one and no wait, some of 12 concurrent writes are refused: {answers:?}"
    );
    assert!(
        refused
            .iter()
            .all(|a| a.0 == 503 && a.1.as_deref() == Some("1")),
        "{answers:?}"
    );
    // every accepted request is stored whole, every refused one not at all
    assert_eq!(
        server.get(&format!("{WP}/count")).body,
        json!({"count": accepted * 3000, "exact": true})
    );
}

#[test]
fn ndjson_bodies_load_the_same_rows_as_json() {
    let (_dir, db) = temp_db();
    let server = Server::start(&db);
    let json_rows: Vec<Value> = (0..50).map(production).collect();
    assert_eq!(
        counts(&server.post_json(&format!("{WP}/records"), &Value::Array(json_rows))),
        (50, 0, 0, 0)
    );
    let ndjson: String = (50..100)
        .map(|i| production(i).to_string() + "\n")
        .collect();
    let answer = server.post_raw(
        &format!("{WP}/records"),
        "application/x-ndjson",
        ndjson.as_bytes(),
    );
    assert_eq!(counts(&answer), (50, 0, 0, 0));
    for i in [0, 49, 50, 99] {
        assert_eq!(stored(&server, i), production(i));
    }

    // a malformed line is a violation of its record: 422 by default, skipped with on_error=skip
    let body = format!(
        "{}\n{{\"field_code\": 1,\n{}\n",
        production(100),
        production(101)
    );
    let refused = server.post_raw(
        &format!("{WP}/records"),
        "application/x-ndjson",
        body.as_bytes(),
    );
    assert_eq!(refused.status, 422, "{refused:?}");
    assert_eq!(refused.body["errors"][0]["row"], json!(2));
    assert_eq!(refused.body["errors"][0]["code"], json!("malformed_json"));
    assert_eq!(
        server.get(&format!("{WP}/count")).body,
        json!({"count": 100, "exact": true})
    );
    let skipped = server.post_raw(
        &format!("{WP}/records?on_error=skip"),
        "application/x-ndjson",
        body.as_bytes(),
    );
    assert_eq!(counts(&skipped), (2, 0, 0, 1));
    assert_eq!(
        server.get(&format!("{WP}/count")).body,
        json!({"count": 102, "exact": true})
    );
}

/// A record as one CSV row of `columns`, every value quoted as RFC 4180 says.
fn csv_row(record: &Value, columns: &[&str]) -> String {
    let cells: Vec<String> = columns
        .iter()
        .map(|c| match &record[*c] {
            Value::Null => String::new(),
            Value::String(s) => format!("\"{}\"", s.replace('"', "\"\"")),
            other => other.to_string(),
        })
        .collect();
    cells.join(",") + "\r\n"
}

#[test]
fn csv_bodies_load_the_same_rows_as_json() {
    let (_dir, db) = temp_db();
    let server = Server::start(&db);
    let record = production(0);
    let mut columns: Vec<&str> = record
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    columns.reverse(); // columns are matched by name, in any order
    let mut body = columns.join(",") + "\r\n";
    for i in 0..200 {
        body += &csv_row(&production(i), &columns);
    }
    let answer = server.post_raw(
        &format!("{WP}/records"),
        "text/csv; charset=utf-8",
        body.as_bytes(),
    );
    assert_eq!(counts(&answer), (200, 0, 0, 0));
    for i in [0, 57, 199] {
        assert_eq!(stored(&server, i), production(i));
    }

    let bad = format!(
        "{}\r\n{}1,2\r\n",
        columns.join(","),
        csv_row(&production(300), &columns)
    );
    let refused = server.post_raw(&format!("{WP}/records"), "text/csv", bad.as_bytes());
    assert_eq!(refused.status, 422, "{refused:?}");
    assert_eq!(
        (
            refused.body["errors"][0]["row"].clone(),
            refused.body["errors"][0]["code"].clone()
        ),
        (json!(2), json!("column_count"))
    );
    let unknown = server.post_raw(
        &format!("{WP}/records"),
        "text/csv",
        b"well_code,colour\r\n1,red\r\n",
    );
    assert_eq!(unknown.status, 400, "{unknown:?}");
    assert!(
        unknown.body["detail"]
            .as_str()
            .unwrap()
            .contains("`colour`, which is not a field of well_production")
    );
    assert_eq!(
        server.get(&format!("{WP}/count")).body,
        json!({"count": 200, "exact": true})
    );
}

#[test]
fn concurrent_small_writes_are_committed_in_groups_and_each_stays_whole() {
    if support::duckdb_only("group commit") {
        return;
    }
    writes_in_groups_stay_whole(&[]);
}

/// The same with deferred appends off: every group is appended to DuckDB before it is answered.
#[test]
fn concurrent_small_writes_appended_at_once_are_committed_in_groups_and_each_stays_whole() {
    if support::duckdb_only("group commit") {
        return;
    }
    writes_in_groups_stay_whole(&[("DATAFORGE_DATABASE__DEFERRED_APPEND_MS", "0")]);
}

/// Small writes are acknowledged before DuckDB holds them; every read that goes to DuckDB (pages,
/// counts, aggregates, exports) first has them appended, so a read after a `201` sees the write
/// even when the periodic append is ten minutes away.
#[test]
fn reads_after_an_acknowledged_small_write_see_it() {
    let (_dir, db) = temp_db();
    let later = [("DATAFORGE_DATABASE__DEFERRED_APPEND_MS", "600000")];
    let server = Server::start_with(&db, &support::shipped_schemas(), &later);
    for round in 0..3i64 {
        let i = 100 + round;
        assert_eq!(
            counts(&server.post_json(&format!("{WP}/records"), &production(i))),
            (1, 0, 0, 0)
        );
        let count = server.get(&format!("{WP}/count"));
        assert_eq!(count.body["count"], json!(round + 1), "{count:?}");
        let well = production(i)["well_code"].clone();
        let page = server.get(&format!("{WP}/records?well_code=eq.{well}"));
        let items = page.body["items"].as_array().unwrap();
        assert!(
            items
                .iter()
                .any(|r| r["production_period"] == production(i)["production_period"]),
            "the page holds record {i}: {page:?}"
        );
        let sum = server.get(&format!("{WP}/aggregate?metrics=count()"));
        assert_eq!(sum.body["items"][0]["count"], json!(round + 1), "{sum:?}");
        // the key index knew the key all along
        assert_eq!(
            server
                .post_json(&format!("{WP}/records"), &production(i))
                .status,
            409
        );
    }
    let csv = ureq::get(&format!("{}{WP}/records?format=csv", server.base))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert_eq!(
        csv.lines().count(),
        1 + 3,
        "a header and three records: {csv}"
    );
}

/// The same with no write buffer: every write goes through a staging table of its own.
#[test]
fn concurrent_staged_writes_are_committed_in_groups_and_each_stays_whole() {
    if support::duckdb_only("group commit") {
        return;
    }
    writes_in_groups_stay_whole(&[("DATAFORGE_DATABASE__WRITE_BUFFER_MIB", "0")]);
}

fn writes_in_groups_stay_whole(settings: &[(&str, &str)]) {
    let (_dir, db) = temp_db();
    let mut env = vec![("RUST_LOG", "info,dataforge_duckdb::writer=debug")];
    env.extend_from_slice(settings);
    let server = Server::start_with(&db, &support::shipped_schemas(), &env);
    assert_eq!(
        counts(&server.post_json(&format!("{WP}/records"), &production(0))),
        (1, 0, 0, 0)
    );
    let base = server.base.clone();
    // 64 writers, 20 single-record requests each; every 10th request of writer 0 repeats key 0
    let handles: Vec<_> = (0..64i64)
        .map(|writer| {
            let base = base.clone();
            std::thread::spawn(move || {
                let mut acknowledged = Vec::new();
                for request in 0..20i64 {
                    let i = if writer == 0 && request % 10 == 0 {
                        0
                    } else {
                        1 + writer * 20 + request
                    };
                    let response = ureq::post(&format!("{base}{WP}/records"))
                        .set("Content-Type", "application/json")
                        .send_string(&production(i).to_string());
                    match response {
                        Ok(r) if r.status() == 201 => acknowledged.push(i),
                        Err(ureq::Error::Status(409, _)) => {
                            assert_eq!(i, 0, "only the repeated key conflicts")
                        }
                        other => panic!("request {i}: {other:?}"),
                    }
                }
                acknowledged
            })
        })
        .collect();
    let acknowledged: Vec<i64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert_eq!(
        acknowledged.len(),
        64 * 20 - 2,
        "all but the two repeats of key 0 are acknowledged"
    );
    let page = server.get(&format!(
        "{WP}/records?limit=10000&select=well_code,production_period,field_code"
    ));
    let rows = page.body["items"].as_array().unwrap().len();
    assert_eq!(
        rows,
        acknowledged.len() + 1,
        "every acknowledged row once, plus the first"
    );
    for &i in [
        acknowledged[1],
        acknowledged[600],
        acknowledged[acknowledged.len() - 1],
    ]
    .iter()
    {
        stored(&server, i);
    }
    let groups: Vec<usize> = server
        .log_lines()
        .iter()
        .filter(|l| l.contains("group commit"))
        .filter_map(|l| {
            l.split("writes=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect();
    let grouped: usize = groups.iter().sum();
    assert!(
        !groups.is_empty() && grouped > groups.len(),
        "commits were grouped: {} groups for {grouped} writes",
        groups.len()
    );
}

/// An NDJSON body of `production(i)` for each `i`.
fn ndjson_of(ids: impl Iterator<Item = i64>) -> Vec<u8> {
    let mut body = Vec::new();
    for i in ids {
        body.extend_from_slice(production(i).to_string().as_bytes());
        body.push(b'\n');
    }
    body
}

#[test]
fn a_write_too_large_to_check_in_memory_still_finds_every_conflict() {
    if support::duckdb_only("the key index") {
        return;
    }
    // past 128Ki staged records the writer checks keys slice by slice against the key index and
    // lets DuckDB find repeats within the write (with no write buffer, every write is staged)
    const LARGE: i64 = 140_000;
    let (_dir, db) = temp_db();
    let server = Server::start_with(
        &db,
        &support::shipped_schemas(),
        &[("DATAFORGE_DATABASE__WRITE_BUFFER_MIB", "0")],
    );
    let count = |server: &Server| server.get(&format!("{WP}/count")).body["count"].clone();
    let small: Vec<Value> = (0..10).map(production).collect();
    assert_eq!(
        counts(&server.post_json(&format!("{WP}/records"), &json!(small))).0,
        10
    );

    // five keys already stored (5..9) and one record repeated
    let mut body = ndjson_of(5..5 + LARGE);
    body.extend_from_slice(&ndjson_of(std::iter::once(100_000)));
    let refused = server.post_raw(&format!("{WP}/records"), "application/x-ndjson", &body);
    assert_eq!(refused.status, 409, "{refused:?}");
    assert_eq!(refused.body["total_conflicts"], 6, "{}", refused.body);
    let keys = refused.body["conflicts"].as_array().unwrap();
    let reasons = |reason: &str| keys.iter().filter(|k| k["reason"] == reason).count();
    assert_eq!((reasons("exists"), reasons("repeated")), (5, 1), "{keys:?}");
    assert_eq!(count(&server), 10, "a refused write stores nothing");

    // without conflicts it is stored whole, and sent again every key exists
    let body = ndjson_of(10..10 + LARGE);
    let written = server.post_raw(&format!("{WP}/records"), "application/x-ndjson", &body);
    assert_eq!(counts(&written).0, LARGE as u64);
    assert_eq!(count(&server), 10 + LARGE);
    let all_taken = |server: &Server| {
        let again = server.post_raw(&format!("{WP}/records"), "application/x-ndjson", &body);
        assert_eq!(again.status, 409, "{again:?}");
        assert_eq!(again.body["total_conflicts"], LARGE);
        assert_eq!(again.body["conflicts"].as_array().unwrap().len(), 100);
        assert_eq!(count(server), 10 + LARGE);
        // the key index took the records in parts of 64Ki: the first and the last read by key
        assert_eq!(stored(server, 10), production(10));
        assert_eq!(stored(server, 9 + LARGE), production(9 + LARGE));
        // ... from the index, not from the SQL fallback of a failed one
        let log = server.log_lines();
        assert!(
            !log.iter().any(|l| l.contains("key index failed")),
            "{log:?}"
        );
    };
    all_taken(&server);
    // a start without the index rebuilds it from the table, in parts too
    server.stop();
    let keys = db.with_file_name("test.duckdb.keys");
    std::fs::remove_dir_all(&keys).expect("remove the key index");
    let server = Server::start(&db);
    all_taken(&server);
}
