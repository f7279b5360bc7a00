//! The HTTP API end to end: the real server, a real DuckDB file, real HTTP.

mod support;

use std::collections::HashSet;

use serde_json::{Value, json};
use support::{Server, production};

fn temp_db() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("data").join("test.duckdb");
    (dir, db)
}

fn assert_problem(answer: &support::Answer, status: u16, detail_contains: &str) {
    assert_eq!(answer.status, status, "{answer:?}");
    assert_eq!(
        answer.content_type, "application/problem+json",
        "{answer:?}"
    );
    assert_eq!(answer.body["status"], json!(status), "{answer:?}");
    let detail = answer.body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(detail_contains),
        "detail `{detail}` lacks `{detail_contains}`"
    );
}

const WP: &str = "/v1/datasets/well_production";

#[test]
fn health_and_schemas() {
    let (_dir, db) = temp_db();
    let server = Server::start(&db);
    let health = server.get("/health");
    assert_eq!(
        (health.status, health.body.clone()),
        (200, json!({"status": "ok"}))
    );

    let list = server.get("/v1/datasets");
    assert_eq!(list.status, 200);
    let names: Vec<&str> = list.body["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["well_production", "well_registry"]);

    let one = server.get(WP);
    assert_eq!(one.status, 200);
    assert_eq!(
        one.body["primary_key"],
        json!(["field_code", "well_code", "production_period"])
    );
    let days = &one.body["fields"].as_array().unwrap()[6];
    assert_eq!(days["name"], "days_on_production");
    assert_eq!(
        (days["min"].clone(), days["max"].clone()),
        (json!(0), json!(31))
    );
    let key_field = &one.body["fields"].as_array().unwrap()[0];
    assert_eq!(key_field["required"], json!(true));

    for path in [
        "/v1/datasets/nope",
        "/v1/datasets/nope/records",
        "/v1/datasets/nope/count",
        "/v1/datasets/nope/records/1",
    ] {
        let answer = server.get(path);
        assert_problem(&answer, 404, "no dataset named `nope`");
        assert_eq!(
            answer.body["datasets"],
            json!(["well_production", "well_registry"])
        );
    }
    assert_problem(
        &server.post_json("/v1/datasets/nope/records", &json!({})),
        404,
        "no dataset named `nope`",
    );
    assert_problem(
        &server.get("/v2/anything"),
        404,
        "no endpoint at `/v2/anything`",
    );
}

#[test]
fn insert_one_or_many_and_read_back_by_key() {
    let (_dir, db) = temp_db();
    let server = Server::start(&db);
    let one = server.post_json(&format!("{WP}/records"), &production(0));
    assert_eq!(
        (one.status, one.body.clone()),
        (
            201,
            json!({"inserted": 1, "updated": 0, "skipped": 0, "rejected": 0})
        )
    );
    let many = server.post_json(
        &format!("{WP}/records"),
        &json!([production(1), production(2), production(3)]),
    );
    assert_eq!(
        (many.status, many.body.clone()),
        (
            201,
            json!({"inserted": 3, "updated": 0, "skipped": 0, "rejected": 0})
        )
    );

    let record = production(2);
    let path = format!(
        "{WP}/records/{}/{}/2020-03-01T00:00:00Z",
        record["field_code"], record["well_code"]
    );
    let got = server.get(&path);
    assert_eq!(got.status, 200, "{got:?}");
    assert_eq!(got.body, record);
    // a plain date is midnight UTC, in keys as in bodies
    let by_date = server.get(&format!(
        "{WP}/records/{}/{}/2020-03-01",
        record["field_code"], record["well_code"]
    ));
    assert_eq!(by_date.body, record);

    assert_problem(
        &server.get(&format!("{WP}/records/1/1/2020-03-01")),
        404,
        "no record of well_production",
    );
    let two_datasets_deep = server.get("/v1/datasets/well_production/records/records/1/2020-03-01");
    assert_problem(
        &two_datasets_deep,
        400,
        "key field `field_code`: expected a 64-bit integer, found `records`",
    );
    let short = server.get(&format!("{WP}/records/1/2"));
    assert_problem(
        &short,
        400,
        "has a key of 3 part(s) (field_code/well_code/production_period), but the path gives 2",
    );
    assert_eq!(short.body["parameter"], "key");
    assert_problem(
        &server.get(&format!("{WP}/records/x/1/2020-03-01")),
        400,
        "key field `field_code`",
    );
    assert_problem(
        &server.get(&format!("{WP}/records/1/1/March")),
        400,
        "key field `production_period`",
    );
    assert_eq!(
        server.get(&format!("{WP}/count")).body,
        json!({"count": 4, "exact": true})
    );
}

#[test]
fn validation_errors_list_every_problem_and_write_nothing() {
    let (_dir, db) = temp_db();
    let server = Server::start(&db);
    let mut bad_days = production(1);
    bad_days["days_on_production"] = json!(32);
    let mut bad_types = production(2);
    bad_types["oil_production_kbd"] = json!("lots");
    bad_types["production_period"] = json!("last month");
    let mut missing_key = production(3);
    missing_key.as_object_mut().unwrap().remove("well_code");
    let mut unknown = production(4);
    unknown["colour"] = json!("red");
    let mut negative = production(5);
    negative["water_production_kbd"] = json!(-0.5);
    let mut overflow = production(6);
    overflow["field_code"] = json!(1e20);
    let body = json!([
        production(0),
        bad_days,
        bad_types,
        missing_key,
        unknown,
        negative,
        overflow,
        7
    ]);
    let answer = server.post_json(&format!("{WP}/records"), &body);
    assert_problem(&answer, 422, "8 validation error(s)");
    let errors: Vec<(u64, String, String)> = answer.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["row"].as_u64().unwrap(),
                e["field"].as_str().unwrap_or("").to_owned(),
                e["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected = [
        (2, "days_on_production", "max"),
        (3, "production_period", "type"),
        (3, "oil_production_kbd", "type"),
        (4, "well_code", "required"),
        (5, "colour", "unknown_field"),
        (6, "water_production_kbd", "min"),
        (7, "field_code", "overflow"),
        (8, "", "not_an_object"),
    ];
    for (row, field, code) in expected {
        assert!(
            errors.contains(&(row, field.to_owned(), code.to_owned())),
            "missing {row}/{field}/{code} in {errors:?}"
        );
    }
    assert_eq!(answer.body["total_errors"], json!(8));
    assert_eq!(
        server.get(&format!("{WP}/count")).body,
        json!({"count": 0, "exact": true})
    );

    // the list is capped at 100, the total is not
    let many: Vec<Value> = (0..150)
        .map(|i| {
            let mut r = production(i);
            r["days_on_production"] = json!(-1);
            r
        })
        .collect();
    let capped = server.post_json(&format!("{WP}/records"), &Value::Array(many));
    assert_eq!(capped.status, 422);
    assert_eq!(capped.body["errors"].as_array().unwrap().len(), 100);
    assert_eq!(capped.body["total_errors"], json!(150));
    assert_eq!(
        server.get(&format!("{WP}/count")).body,
        json!({"count": 0, "exact": true})
    );
}

#[test]
fn key_conflicts_write_nothing() {
    let (_dir, db) = temp_db();
    let server = Server::start(&db);
    assert_eq!(
        server
            .post_json(
                &format!("{WP}/records"),
                &json!([production(0), production(1)])
            )
            .status,
        201
    );

    let existing = server.post_json(
        &format!("{WP}/records"),
        &json!([production(5), production(1)]),
    );
    assert_problem(&existing, 409, "1 primary key(s)");
    let record = production(1);
    assert_eq!(
        existing.body["conflicts"],
        json!([{"key": {"field_code": record["field_code"], "well_code": record["well_code"], "production_period": "2020-02-01T00:00:00Z"}, "reason": "exists"}])
    );

    let repeated = server.post_json(
        &format!("{WP}/records"),
        &json!([production(7), production(8), production(7)]),
    );
    assert_problem(&repeated, 409, "1 primary key(s)");
    assert_eq!(repeated.body["conflicts"][0]["reason"], "repeated");
    assert_eq!(repeated.body["total_conflicts"], json!(1));
    assert_eq!(
        server.get(&format!("{WP}/count")).body,
        json!({"count": 2, "exact": true})
    );
}

#[test]
fn malformed_bodies_are_client_errors() {
    let (_dir, db) = temp_db();
    let server = Server::start_with(
        &db,
        &support::shipped_schemas(),
        &[("DATAFORGE_SERVER__MAX_BODY_BYTES", "2048")],
    );
    let path = format!("{WP}/records");
    assert_problem(
        &server.post_raw(&path, "application/json", b"{\"field_code\": "),
        400,
        "not valid JSON",
    );
    assert_problem(
        &server.post_raw(&path, "application/json", b"[1, 2"),
        400,
        "not valid JSON",
    );
    assert_problem(
        &server.post_raw(&path, "application/json", b"\"text\""),
        400,
        "a JSON object or an array of objects",
    );
    assert_problem(
        &server.post_raw(&path, "application/json", b"[]"),
        400,
        "holds no records",
    );
    assert_problem(
        &server.post_raw(&path, "application/json", b"[{\"a\": \"\xff\"}]"),
        400,
        "not valid JSON",
    );
    let unsupported = server.post_raw(&path, "application/xml", b"<a/>");
    assert_problem(&unsupported, 415, "supported: application/json");
    // a body without a Content-Type is not guessed to be JSON (a cross-site page can send one)
    for target in [path.clone(), path.replace("/records", "/query")] {
        let untyped = ureq::post(&format!("{}{target}", server.base))
            .send_bytes(production(1).to_string().as_bytes());
        let Err(ureq::Error::Status(415, response)) = untyped else {
            panic!("{target}: a body without a Content-Type was accepted")
        };
        let body: Value = serde_json::from_str(&response.into_string().unwrap()).unwrap();
        assert!(
            body["detail"].as_str().unwrap().contains("Content-Type"),
            "{body}"
        );
    }
    let big: Vec<Value> = (0..40).map(production).collect();
    let too_large = server.post_json(&path, &Value::Array(big));
    assert_problem(&too_large, 413, "exceeds the limit of 2048 bytes");
    // without a Content-Length (chunked), the limit is enforced while the body streams in
    let big: Vec<Value> = (0..40).map(production).collect();
    let chunked = ureq::post(&format!("{}{path}", server.base))
        .set("Content-Type", "application/json")
        .send(std::io::Cursor::new(
            Value::Array(big).to_string().into_bytes(),
        ));
    match chunked {
        Err(ureq::Error::Status(413, _)) => {}
        other => panic!("expected 413 for a chunked body past the limit, got {other:?}"),
    }
    assert_eq!(
        server.get(&format!("{WP}/count")).body,
        json!({"count": 0, "exact": true})
    );
}

fn registry(code: i64, field: i64, name: &str, status: &str, depth: Option<f64>) -> Value {
    json!({"well_code": code, "well_name": name, "field_code": field, "status": status, "depth_m": depth,
           "spud_date": format!("2001-01-{:02}", code % 28 + 1), "onshore": code % 2 == 0, "metadata": {"n": code}})
}

#[test]
fn filters_select_order_and_count() {
    let (_dir, db) = temp_db();
    let server = Server::start(&db);
    let rows = json!([
        registry(1, 10, "North A", "producing", Some(1000.0)),
        registry(2, 10, "North B", "shut_in", Some(2500.0)),
        registry(3, 20, "South, C", "producing", None),
        registry(4, 20, "south d", "abandoned", Some(500.0)),
        registry(5, 30, "East E", "drilling", Some(3000.0)),
    ]);
    assert_eq!(
        server
            .post_json("/v1/datasets/well_registry/records", &rows)
            .status,
        201
    );
    let codes = |query: &str| -> Vec<i64> {
        let answer = server.get(&format!("/v1/datasets/well_registry/records?{query}"));
        assert_eq!(answer.status, 200, "{query}: {answer:?}");
        answer.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["well_code"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(codes("field_code=eq.10"), vec![1, 2]);
    assert_eq!(codes("field_code=ne.10"), vec![3, 4, 5]);
    assert_eq!(codes("depth_m=gt.1000"), vec![2, 5]);
    assert_eq!(codes("depth_m=gte.1000"), vec![1, 2, 5]);
    assert_eq!(codes("depth_m=lt.1000"), vec![4]);
    assert_eq!(codes("depth_m=lte.1000"), vec![1, 4]);
    assert_eq!(codes("status=in.(shut_in,drilling)"), vec![2, 5]);
    assert_eq!(
        codes("well_name=in.(%22South,%20C%22,East%20E)"),
        vec![3, 5]
    );
    assert_eq!(codes("well_name=like.North*"), vec![1, 2]);
    assert_eq!(codes("well_name=like.South%25"), vec![3]);
    assert_eq!(codes("well_name=ilike.south*"), vec![3, 4]);
    assert_eq!(codes("depth_m=is.null"), vec![3]);
    assert_eq!(codes("depth_m=is.notnull&field_code=eq.20"), vec![4]);
    assert_eq!(
        codes("spud_date=gte.2001-01-04&spud_date=lt.2001-01-06"),
        vec![3, 4]
    );
    assert_eq!(codes("onshore=eq.true"), vec![2, 4]);
    assert_eq!(
        codes("metadata=is.notnull&order=field_code.desc,well_code.desc"),
        vec![5, 4, 3, 2, 1]
    );
    assert_eq!(codes("order=depth_m.desc"), vec![5, 2, 1, 4, 3]);
    assert_eq!(codes("order=depth_m"), vec![4, 1, 2, 5, 3]);

    let projected =
        server.get("/v1/datasets/well_registry/records?select=well_name,well_code&well_code=eq.3");
    assert_eq!(
        projected.body,
        json!({"items": [{"well_name": "South, C", "well_code": 3}], "next_cursor": null})
    );
    let json_field =
        server.get("/v1/datasets/well_registry/records?select=metadata&well_code=eq.2");
    assert_eq!(json_field.body["items"], json!([{"metadata": {"n": 2}}]));

    assert_eq!(
        server.get("/v1/datasets/well_registry/count").body,
        json!({"count": 5, "exact": true})
    );
    assert_eq!(
        server
            .get("/v1/datasets/well_registry/count?field_code=gte.20&status=ne.abandoned")
            .body,
        json!({"count": 2, "exact": true})
    );

    let bad = [
        (
            "records?colour=eq.red",
            "colour",
            "unknown field or parameter `colour`",
        ),
        (
            "records?field_code=about.10",
            "field_code",
            "unknown operator `about`",
        ),
        (
            "records?field_code=eq.ten",
            "field_code",
            "`ten` is not a valid integer",
        ),
        (
            "records?spud_date=gt.yesterday",
            "spud_date",
            "`yesterday` is not a valid date",
        ),
        (
            "records?field_code=like.1*",
            "field_code",
            "applies to string fields only",
        ),
        ("records?select=ghost", "select", "unknown field `ghost`"),
        (
            "records?order=depth_m.sideways",
            "order",
            "direction must be `asc` or `desc`",
        ),
        (
            "records?limit=0",
            "limit",
            "must be an integer from 1 to 10000",
        ),
        (
            "records?limit=10001",
            "limit",
            "must be an integer from 1 to 10000",
        ),
        ("records?cursor=garbage", "cursor", "invalid cursor"),
        ("count?limit=5", "limit", "does not apply to a count"),
        (
            "count?depth_m=gt.deep",
            "depth_m",
            "`deep` is not a valid float",
        ),
    ];
    for (query, parameter, detail) in bad {
        let answer = server.get(&format!("/v1/datasets/well_registry/{query}"));
        assert_problem(&answer, 400, detail);
        assert_eq!(answer.body["parameter"], parameter, "{query}");
    }
}

/// Reads every page in turn, returning the keys seen.
fn read_all_pages(server: &Server, query: &str) -> (Vec<(i64, i64, String)>, usize) {
    let mut keys = Vec::new();
    let mut pages = 0;
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("{WP}/records?{query}&limit=100&cursor={c}"),
            None => format!("{WP}/records?{query}&limit=100"),
        };
        let page = server.get(&path);
        assert_eq!(page.status, 200, "{page:?}");
        pages += 1;
        for item in page.body["items"].as_array().unwrap() {
            keys.push((
                item["field_code"].as_i64().unwrap(),
                item["well_code"].as_i64().unwrap(),
                item["production_period"].as_str().unwrap().to_owned(),
            ));
        }
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return (keys, pages),
        }
    }
}

#[test]
fn keyset_pagination_returns_each_row_exactly_once() {
    let (_dir, db) = temp_db();
    let server = Server::start(&db);
    for chunk in (0..2500).collect::<Vec<i64>>().chunks(500) {
        let body = Value::Array(chunk.iter().map(|&i| production(i)).collect());
        assert_eq!(
            server.post_json(&format!("{WP}/records"), &body).status,
            201
        );
    }
    for order in [
        "order=well_code",
        "order=oil_production_kbd.desc,partition_0",
        "order=production_period.desc",
    ] {
        let (keys, pages) = read_all_pages(&server, order);
        assert_eq!(keys.len(), 2500, "{order}");
        assert_eq!(pages, 25, "{order}");
        let unique: HashSet<_> = keys.iter().collect();
        assert_eq!(unique.len(), 2500, "{order}: a row was repeated");
    }
    // the order holds across page boundaries
    let (keys, _) = read_all_pages(&server, "order=well_code.desc");
    assert!(keys.windows(2).all(|w| w[0].1 >= w[1].1));
    // filters and pages combine
    let (filtered, _) = read_all_pages(&server, "partition_0=eq.p3");
    assert_eq!(filtered.len(), 250);
}

#[test]
fn data_survives_a_restart_and_two_datasets_live_side_by_side() {
    let (_dir, db) = temp_db();
    let server = Server::start(&db);
    assert_eq!(
        server
            .post_json(
                &format!("{WP}/records"),
                &json!([production(0), production(1)])
            )
            .status,
        201
    );
    assert_eq!(
        server
            .post_json(
                "/v1/datasets/well_registry/records",
                &registry(7, 1, "Solo", "producing", None)
            )
            .status,
        201
    );
    server.stop();

    let again = Server::start(&db);
    assert_eq!(
        again.get(&format!("{WP}/count")).body,
        json!({"count": 2, "exact": true})
    );
    assert_eq!(
        again.get("/v1/datasets/well_registry/count").body,
        json!({"count": 1, "exact": true})
    );
    let solo = again.get("/v1/datasets/well_registry/records/7");
    assert_eq!(solo.body["well_name"], "Solo");
    assert_eq!(solo.body["status"], "producing");
    // keys are per dataset
    assert_eq!(
        again
            .post_json(
                "/v1/datasets/well_registry/records",
                &registry(8, 1, "Other", "producing", None)
            )
            .status,
        201
    );
    assert_eq!(
        again
            .post_json(&format!("{WP}/records"), &production(0))
            .status,
        409
    );
    again.stop();
}

#[test]
fn check_reports_every_schema_problem_and_serve_refuses_them() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout, _) = support::run(
        &["check", support::shipped_schemas().to_str().unwrap()],
        dir.path(),
    );
    assert_eq!(code, 0);
    assert!(stdout.contains("2 dataset(s)"), "{stdout}");

    let bad = dir.path().join("bad");
    std::fs::create_dir(&bad).unwrap();
    std::fs::write(
        bad.join("broken.toml"),
        "[[datasets]]\nname = \"Bad Name\"\nprimary_key = [\"id\"]\n\n[[datasets.fields]]\nname = \"id\"\ntype = \"uuid\"\n",
    )
    .unwrap();
    let (code, _, stderr) = support::run(&["check", bad.to_str().unwrap()], dir.path());
    assert_eq!(code, 1);
    assert!(
        stderr.contains(
            "broken.toml:2: bad dataset name: name `Bad Name` is not lowercase snake_case"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("broken.toml:7: field `id` has unknown type `uuid`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: one of: string, integer, float, boolean, date, timestamp, json"),
        "{stderr}"
    );

    let db = dir.path().join("db.duckdb");
    let (code, _, stderr) = support::serve_until_exit(&db, &bad, dir.path());
    assert_eq!(code, 1);
    assert!(
        stderr.contains("refusing to start on invalid schemas"),
        "{stderr}"
    );
    assert!(stderr.contains("unknown type `uuid`"), "{stderr}");
}

#[test]
fn settings_come_from_file_and_environment() {
    let (dir, db) = temp_db();
    std::fs::write(
        dir.path().join("dataforge.toml"),
        "[query]\ndefault_limit = 2\nmax_limit = 3\n",
    )
    .unwrap();
    let server = Server::start_with(
        &db,
        &support::shipped_schemas(),
        &[("DATAFORGE_QUERY__MAX_LIMIT", "4")],
    );
    let rows: Vec<Value> = (0..5).map(production).collect();
    assert_eq!(
        server
            .post_json(&format!("{WP}/records"), &Value::Array(rows))
            .status,
        201
    );
    let page = server.get(&format!("{WP}/records"));
    assert_eq!(
        page.body["items"].as_array().unwrap().len(),
        2,
        "default_limit from the file"
    );
    assert_eq!(
        server.get(&format!("{WP}/records?limit=4")).status,
        200,
        "max_limit from the environment wins"
    );
    assert_problem(
        &server.get(&format!("{WP}/records?limit=5")),
        400,
        "from 1 to 4",
    );
    drop(server);

    std::fs::write(
        dir.path().join("dataforge.toml"),
        "[database]\nmemory_limt = \"1GB\"\n",
    )
    .unwrap();
    let (code, _, stderr) = support::run(&["serve", "--db", db.to_str().unwrap()], dir.path());
    assert_eq!(code, 2);
    assert!(stderr.contains("memory_limt"), "{stderr}");
}

#[test]
fn pages_cross_null_sort_values_without_loss() {
    let (_dir, db) = temp_db();
    let server = Server::start(&db);
    let rows: Vec<Value> = (1..=57)
        .map(|i| {
            let depth = if i % 3 == 0 {
                None
            } else {
                Some((i % 5) as f64 * 100.0)
            };
            registry(i, i % 4, "W", "producing", depth)
        })
        .collect();
    assert_eq!(
        server
            .post_json("/v1/datasets/well_registry/records", &Value::Array(rows))
            .status,
        201
    );
    for order in ["depth_m.desc", "depth_m", "depth_m.desc,onshore"] {
        let mut seen = Vec::new();
        let mut cursor = String::new();
        loop {
            let page = server.get(&format!(
                "/v1/datasets/well_registry/records?order={order}&limit=4{cursor}"
            ));
            assert_eq!(page.status, 200, "{page:?}");
            seen.extend(
                page.body["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| (r["well_code"].as_i64().unwrap(), r["depth_m"].as_f64())),
            );
            match page.body["next_cursor"].as_str() {
                Some(next) => cursor = format!("&cursor={next}"),
                None => break,
            }
        }
        let codes: HashSet<i64> = seen.iter().map(|s| s.0).collect();
        assert_eq!((seen.len(), codes.len()), (57, 57), "{order}");
        // nulls come last in either direction
        let first_null = seen.iter().position(|s| s.1.is_none()).unwrap();
        assert!(seen[first_null..].iter().all(|s| s.1.is_none()), "{order}");
    }
}

/// A server on a loopback address answers only requests naming a loopback host: a web page whose
/// domain is re-pointed at 127.0.0.1 (DNS rebinding) gets 421, not the data.
#[test]
fn a_loopback_server_answers_loopback_hosts_only() {
    let (_dir, db) = temp_db();
    let server = Server::start(&db);
    let port = server.base.rsplit(':').next().unwrap().to_owned();
    let with_host = |host: &str| match ureq::get(&format!("{}/v1/datasets", server.base))
        .set("Host", host)
        .call()
    {
        Ok(response) => (response.status(), String::new()),
        Err(ureq::Error::Status(code, response)) => (code, response.into_string().unwrap()),
        Err(e) => panic!("{e}"),
    };
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "LOCALHOST".to_owned(),
    ] {
        assert_eq!(with_host(&host).0, 200, "{host}");
    }
    let (status, body) = with_host(&format!("rebound.example:{port}"));
    assert_eq!(status, 421);
    assert!(
        body.contains("does not answer to the host `rebound.example`"),
        "{body}"
    );
    assert!(body.contains("server.allowed_hosts"), "{body}");
    server.stop();
    // behind a proxy that passes its own name on, the name is configured
    let proxied = Server::start_with(
        &db,
        &support::shipped_schemas(),
        &[("DATAFORGE_SERVER__ALLOWED_HOSTS", "[\"api.example\"]")],
    );
    let call = |host: &str| match ureq::get(&format!("{}/health", proxied.base))
        .set("Host", host)
        .call()
    {
        Ok(response) => response.status(),
        Err(ureq::Error::Status(code, _)) => code,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(call("api.example"), 200);
    assert_eq!(call("localhost"), 421);
}

/// A client that stops sending its body holds neither a thread nor the request for long: after
/// `server.stalled_client_ms` it gets 408 and nothing is written (issue 13), streamed or small.
#[test]
fn a_stalled_upload_gets_408_and_writes_nothing() {
    use std::io::{Read, Write};
    let (_dir, db) = temp_db();
    let server = Server::start_with(
        &db,
        &support::shipped_schemas(),
        &[("DATAFORGE_SERVER__STALLED_CLIENT_MS", "1000")],
    );
    let address = server.base.trim_start_matches("http://").to_owned();
    let first = format!("[{},", production(1));
    let requests = [
        // streamed: chunked, one chunk then nothing
        format!(
            "POST {WP}/records HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{first}\r\n",
            first.len()
        ),
        // small: 1,000 bytes declared, a few sent
        format!(
            "POST {WP}/records HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n[{{\"field_code\":"
        ),
    ];
    for request in requests {
        let started = std::time::Instant::now();
        let mut socket = std::net::TcpStream::connect(&address).unwrap();
        socket
            .set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        socket.write_all(request.as_bytes()).unwrap();
        let mut answer = vec![0u8; 1024];
        let n = socket.read(&mut answer).unwrap();
        let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(
            answer.contains("no byte of the request body arrived"),
            "{answer}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(15));
    }
    assert_eq!(
        server.get(&format!("{WP}/count")).body,
        json!({"count": 0, "exact": true})
    );
}

/// A client that sends its request header a byte at a time ("slow loris") has its connection
/// closed after `server.header_read_timeout_ms`, and connections past `server.max_connections`
/// are closed at once (issue 13).
#[test]
fn slow_headers_and_too_many_connections_are_cut() {
    use std::io::{Read, Write};
    let (_dir, db) = temp_db();
    let server = Server::start_with(
        &db,
        &support::shipped_schemas(),
        &[
            ("DATAFORGE_SERVER__HEADER_READ_TIMEOUT_MS", "1000"),
            ("DATAFORGE_SERVER__MAX_CONNECTIONS", "2"),
        ],
    );
    let address = server.base.trim_start_matches("http://").to_owned();
    let read_to_end_within = |socket: &mut std::net::TcpStream| {
        socket
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let started = std::time::Instant::now();
        let mut seen = Vec::new();
        let _ = socket.read_to_end(&mut seen);
        (
            started.elapsed(),
            String::from_utf8_lossy(&seen).into_owned(),
        )
    };
    // a header that never ends: the connection is closed (with a 408 or without an answer)
    let mut slow = std::net::TcpStream::connect(&address).unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a")
        .unwrap();
    let (waited, seen) = read_to_end_within(&mut slow);
    assert!(
        waited < std::time::Duration::from_secs(8),
        "closed after {waited:?}"
    );
    assert!(
        seen.is_empty() || seen.starts_with("HTTP/1.1 408"),
        "{seen}"
    );
    // two connections held open; a third is closed without an answer
    let held: Vec<_> = (0..2)
        .map(|_| {
            let mut socket = std::net::TcpStream::connect(&address).unwrap();
            socket
                .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                .unwrap();
            let mut answer = [0u8; 12];
            socket.read_exact(&mut answer).unwrap();
            assert_eq!(&answer, b"HTTP/1.1 200");
            socket
        })
        .collect();
    let mut third = std::net::TcpStream::connect(&address).unwrap();
    let _ = third.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    let (_, seen) = read_to_end_within(&mut third);
    assert!(seen.is_empty(), "{seen}");
    drop(held);
    // once they are gone, requests are served again
    let mut answered = false;
    for _ in 0..50 {
        if ureq::get(&format!("{}/health", server.base)).call().is_ok() {
            answered = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(answered);
}

/// Refusals raised by the HTTP framework are problem+json too (issue 13, item 10): a dataset name
/// that is not UTF-8, a JSON body over `server.max_json_body_bytes`, a request target over 32 KiB.
#[test]
fn framework_refusals_are_problem_json() {
    let (_dir, db) = temp_db();
    let small = [("DATAFORGE_SERVER__MAX_JSON_BODY_BYTES", "1024")];
    let server = Server::start_with(&db, &support::shipped_schemas(), &small);
    for target in [
        "/v1/datasets/%FF/records",
        "/v1/datasets/%FF",
        "/v1/datasets/%FF/count",
    ] {
        assert_problem(&server.get(target), 400, "Invalid UTF-8 in `dataset`");
    }
    let filter: Vec<Value> = (0..100)
        .map(|i| json!({"field": "well_code", "op": "eq", "value": i}))
        .collect();
    let query = server.post_json(&format!("{WP}/query"), &json!({"filter": {"or": filter}}));
    assert_problem(&query, 413, "length limit exceeded");
    assert_eq!(query.body["limit_bytes"], json!(1024));
    assert_eq!(query.body["setting"], json!("server.max_json_body_bytes"));
    let long = format!("{WP}/records?well_code=in.({})", "1,".repeat(20_000));
    let too_long = server.get(&long);
    assert_problem(&too_long, 414, "more than 32768");
    // a small query still passes
    let fine = server.post_json(&format!("{WP}/query"), &json!({"limit": 1}));
    assert_eq!(fine.status, 200, "{fine:?}");
}

/// A compressed body is decoded as it streams in (gzip, deflate, zstd); another encoding is 415
/// and a body that does not decode is 400, both naming the problem and writing nothing (issue 13,
/// item 12: `Content-Encoding: gzip` bodies were parsed as if plain).
#[test]
fn content_encodings_are_decoded_or_refused() {
    use std::io::Write;
    let (_dir, db) = temp_db();
    let server = Server::start(&db);
    let path = "/v1/datasets/well_registry/records";
    let send = |encoding: &str, body: &[u8]| {
        support::answer(
            ureq::post(&format!("{}{path}", server.base))
                .set("Content-Type", "application/x-ndjson")
                .set("Content-Encoding", encoding)
                .send_bytes(body),
        )
    };
    let plain: String = (1..=3)
        .map(|code| {
            json!({"well_code": code, "well_name": "W", "field_code": 1}).to_string() + "\n"
        })
        .collect();
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gzip.write_all(plain.as_bytes()).unwrap();
    let gzipped = gzip.finish().unwrap();
    let sent = send("gzip", &gzipped);
    assert_eq!(sent.status, 201, "{sent:?}");
    assert_eq!(sent.body["inserted"], json!(3));
    assert_eq!(
        server.get(&format!("{path}/2")).body["well_name"],
        json!("W")
    );
    assert_problem(
        &send("br", &gzipped),
        415,
        "Content-Encoding `br` is not supported",
    );
    assert_problem(&send("gzip", plain.as_bytes()), 400, "gzip");
    assert_eq!(
        server.get("/v1/datasets/well_registry/count").body["count"],
        json!(3)
    );
}

/// Hundreds of uploads that send one chunk and stop hold neither threads nor reads (issue 13,
/// item 3: about 520 of them took every blocking thread, reads by key hung past 40 s and memory
/// grew by 1.4 GB for good): at most `server.max_streamed_uploads` hold a thread, reads answer at
/// once meanwhile, each stalled upload is answered (408, or 503 while waiting for a place), and a
/// second wave reuses the memory of the first instead of adding to it.
#[test]
fn stalled_uploads_hold_no_threads_and_give_their_memory_back() {
    use std::io::Write;
    let (_dir, db) = temp_db();
    let server = Server::start_with(
        &db,
        &support::shipped_schemas(),
        &[("DATAFORGE_SERVER__STALLED_CLIENT_MS", "3000")],
    );
    assert_eq!(
        server
            .post_json(&format!("{WP}/records"), &production(1))
            .status,
        201
    );
    let key = support::stored(&server, 1);
    let before = server.rss_mib();
    let address = server.base.trim_start_matches("http://").to_owned();
    let wave = || {
        let stalled: Vec<std::net::TcpStream> = (0..400)
            .map(|_| {
                let mut socket = std::net::TcpStream::connect(&address).unwrap();
                let chunk = "{\"field_code\":1,";
                write!(
                    socket,
                    "POST {WP}/records HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n",
                    chunk.len()
                )
                .unwrap();
                socket
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(500));
        assert!(server.threads() < 120, "{} threads", server.threads());
        let started = std::time::Instant::now();
        assert_eq!(support::stored(&server, 1), key);
        assert_eq!(server.get(&format!("{WP}/count")).body["count"], json!(1));
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        // each is answered after the stall limit; then the clients go
        std::thread::sleep(std::time::Duration::from_millis(4000));
        drop(stalled);
        std::thread::sleep(std::time::Duration::from_millis(1000));
        server.rss_mib()
    };
    let first = wave();
    let second = wave();
    assert!(
        first < before + 300 && second < first + 50,
        "memory {before} MiB, after a wave {first} MiB, after another {second} MiB"
    );
    assert_eq!(server.get(&format!("{WP}/count")).body["count"], json!(1));
}

/// A small body of unknown length (gzip-encoded, or chunked) takes the path of small writes: it
/// does not wait for a place among streamed uploads, which a large stalled one holds here.
#[test]
fn small_compressed_or_chunked_bodies_need_no_upload_place() {
    use std::io::Write;
    let (_dir, db) = temp_db();
    let server = Server::start_with(
        &db,
        &support::shipped_schemas(),
        &[
            ("DATAFORGE_SERVER__MAX_STREAMED_UPLOADS", "1"),
            ("DATAFORGE_SERVER__STALLED_CLIENT_MS", "20000"),
        ],
    );
    let address = server.base.trim_start_matches("http://").to_owned();
    // 100 KiB of a chunked upload, then nothing: it holds the only upload place
    let mut stalled = std::net::TcpStream::connect(&address).unwrap();
    let records: String = (0..300).map(|i| production(i).to_string() + "\n").collect();
    write!(
        stalled,
        "POST {WP}/records HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{records}\r\n",
        records.len()
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gzip.write_all(production(1000).to_string().as_bytes())
        .unwrap();
    let started = std::time::Instant::now();
    let sent = support::answer(
        ureq::post(&format!("{}{WP}/records", server.base))
            .set("Content-Type", "application/json")
            .set("Content-Encoding", "gzip")
            .send_bytes(&gzip.finish().unwrap()),
    );
    assert_eq!(sent.status, 201, "{sent:?}");
    let chunked = support::answer(
        ureq::post(&format!("{}{WP}/records", server.base))
            .set("Content-Type", "application/json")
            .send(std::io::Cursor::new(
                production(1001).to_string().into_bytes(),
            )),
    );
    assert_eq!(chunked.status, 201, "{chunked:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(
        support::stored(&server, 1000)["well_code"],
        production(1000)["well_code"]
    );
    drop(stalled);
}
