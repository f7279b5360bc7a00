//! The operators' endpoints end to end: `/metrics` counts what the test did and needs `admin`
//! when auth is on; `/health/ready` fails when the database is gone or does not answer, while
//! `/health` stays up.

mod support;

use std::io::Write;
use std::time::Duration;

use serde_json::json;
use support::{Server, create_key, production, run, temp_db, well};

const WP: &str = "/v1/datasets/well_production";
const WR: &str = "/v1/datasets/well_registry";

/// The value of the sample whose line starts with `series` (name and labels, as rendered).
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
}

fn scrape(server: &Server, token: Option<&str>) -> (u16, String) {
    let mut request = ureq::get(&format!("{}/metrics", server.base));
    if let Some(token) = token {
        request = request.set("Authorization", &format!("Bearer {token}"));
    }
    match request.call() {
        Ok(r) => (r.status(), r.into_string().unwrap()),
        Err(ureq::Error::Status(s, r)) => (s, r.into_string().unwrap()),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn metrics_count_what_was_done() {
    if support::duckdb_only("the writer thread and its metrics") {
        return;
    }
    let (_dir, db) = temp_db();
    let server = Server::start(&db);
    for i in 0..7 {
        assert_eq!(
            server
                .post_json(&format!("{WP}/records"), &production(i))
                .status,
            201
        );
    }
    let bulk: Vec<_> = (7..107).map(production).collect();
    assert_eq!(
        server
            .post_json(&format!("{WP}/records"), &json!(bulk))
            .status,
        201
    );
    for _ in 0..3 {
        assert_eq!(server.get(&format!("{WP}/records?limit=5")).status, 200);
    }
    assert_eq!(server.get(&format!("{WP}/records/not-a-key")).status, 400);
    assert_eq!(
        server
            .post_json(&format!("{WR}/records"), &json!([well(1, 1), well(2, 1)]))
            .status,
        201
    );
    let patched = server.send(
        "PATCH",
        &format!("{WR}/records?field_code=eq.1"),
        Some(&json!({"depth_m": 5})),
    );
    assert_eq!(patched.body["updated"], json!(2));
    assert_eq!(
        server
            .send("DELETE", &format!("{WR}/records/1"), None)
            .status,
        204
    );

    let (status, text) = scrape(&server, None);
    assert_eq!(status, 200);
    let requests = |route: &str, method: &str, status: &str| {
        sample(
            &text,
            &format!(
                "dataforge_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}}"
            ),
        )
    };
    assert_eq!(
        requests("/v1/datasets/{dataset}/records", "POST", "201"),
        9.0
    );
    assert_eq!(
        requests("/v1/datasets/{dataset}/records", "GET", "200"),
        3.0
    );
    assert_eq!(
        requests("/v1/datasets/{dataset}/records/{key}", "GET", "400"),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            "dataforge_rows_written_total{dataset=\"well_production\",format=\"json\",outcome=\"inserted\"}"
        ),
        107.0
    );
    assert_eq!(
        sample(
            &text,
            "dataforge_rows_changed_total{dataset=\"well_registry\",change=\"updated\"}"
        ),
        2.0
    );
    assert_eq!(
        sample(
            &text,
            "dataforge_rows_changed_total{dataset=\"well_registry\",change=\"deleted\"}"
        ),
        1.0
    );
    assert!(sample(&text, "dataforge_writer_commit_seconds_count") >= 1.0);
    assert!(
        sample(
            &text,
            "dataforge_http_request_duration_seconds_count{route=\"/v1/datasets/{dataset}/records\",method=\"GET\"}"
        ) == 3.0
    );
    for gauge in [
        "dataforge_writer_queue_depth",
        "dataforge_database_file_bytes",
        "dataforge_key_index_used_bytes",
        "dataforge_key_index_free_bytes",
        "dataforge_duckdb_memory_bytes",
        "dataforge_deferred_rows",
    ] {
        assert!(sample(&text, gauge) >= 0.0, "{gauge}");
    }
    assert!(sample(&text, "dataforge_database_file_bytes") > 0.0);
    assert!(sample(&text, "dataforge_key_index_used_bytes") > 0.0);
    assert!(sample(&text, "dataforge_read_wait_seconds_count") >= 1.0);
}

#[test]
fn metrics_need_admin_when_auth_is_on() {
    let (_dir, db) = temp_db();
    let reader = create_key(&db, "reader", &["*:read"], None);
    let one = create_key(&db, "one", &["well_production:admin"], None);
    let admin = create_key(&db, "admin", &["*:admin"], None);
    let server = Server::start_with(
        &db,
        &support::shipped_schemas(),
        &[("DATAFORGE_AUTH__REQUIRED", "true")],
    );
    assert_eq!(scrape(&server, None).0, 401);
    for token in [&reader, &one] {
        let (status, text) = scrape(&server, Some(token));
        assert_eq!(status, 403, "{text}");
        assert!(text.contains("`admin` permission on dataset `*`"), "{text}");
    }
    let (status, text) = scrape(&server, Some(&admin));
    assert_eq!(status, 200);
    assert!(text.contains("dataforge_http_requests_total"), "{text}");
    // the probes stay open
    assert_eq!(server.get("/health/ready").status, 200);
}

#[test]
fn readiness_fails_when_the_database_is_gone_or_does_not_answer() {
    if support::duckdb_only("the database file") {
        return;
    }
    let (_dir, db) = temp_db();
    let server = Server::start_with(
        &db,
        &support::shipped_schemas(),
        &[
            ("DATAFORGE_DATABASE__READ_CONNECTIONS", "1"),
            ("DATAFORGE_DATABASE__QUERY_TIMEOUT_MS", "500"),
        ],
    );
    // enough rows that an export does not fit in the socket buffers
    let file = db.with_extension("parquet");
    let (code, _, stderr) = run(
        &[
            "generate",
            "--dataset",
            "well_production",
            "--rows",
            "300000",
            "--format",
            "parquet",
            "-o",
            file.to_str().unwrap(),
            "--schemas",
            support::shipped_schemas().to_str().unwrap(),
        ],
        db.parent().unwrap(),
    );
    assert_eq!(code, 0, "{stderr}");
    let loaded = server.post_raw(
        &format!("{WP}/records"),
        "application/vnd.apache.parquet",
        &std::fs::read(&file).unwrap(),
    );
    assert_eq!(loaded.status, 201, "{loaded:?}");
    let ready = server.get("/health/ready");
    assert_eq!(
        (ready.status, &ready.body["status"]),
        (200, &json!("ready"))
    );

    // a client that opens an export and stops reading holds the only read connection
    let address = server.base.trim_start_matches("http://").to_owned();
    let mut stalled = std::net::TcpStream::connect(&address).unwrap();
    write!(
        stalled,
        "GET {WP}/records?format=csv HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let busy = server.get("/health/ready");
    assert_eq!(busy.status, 503, "{busy:?}");
    assert!(
        busy.body["reason"]
            .as_str()
            .unwrap()
            .contains("read connection"),
        "{busy:?}"
    );
    assert_eq!(
        server.get("/health").status,
        200,
        "liveness is not readiness"
    );
    drop(stalled);

    std::fs::remove_file(&db).unwrap();
    let gone = server.get("/health/ready");
    assert_eq!(gone.status, 503, "{gone:?}");
    assert!(
        gone.body["reason"].as_str().unwrap().contains("is gone"),
        "{gone:?}"
    );
    assert_eq!(gone.content_type, "application/problem+json");
}

#[test]
fn a_dataforge_variable_that_names_no_section_is_ignored_with_a_warning() {
    let (_dir, db) = temp_db();
    let server = Server::start_with(
        &db,
        &support::shipped_schemas(),
        &[("DATAFORGE_BIN", "/opt/x")],
    );
    assert_eq!(server.get("/health").status, 200);
    assert!(
        server
            .log_lines()
            .iter()
            .any(|l| l.contains("not a setting") && l.contains("DATAFORGE_BIN")),
        "{:?}",
        server.log_lines()
    );
}
