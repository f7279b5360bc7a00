//! HTTP conventions end to end: CORS preflights, compressed answers (gzip, zstd; never Parquet),
//! compressed request bodies in every format, and `X-Request-Id` kept or made, echoed and logged.

mod support;

use std::io::{Read, Write};

use serde_json::{Value, json};
use support::{Server, production, run, temp_db};

const WP: &str = "/v1/datasets/well_production";

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// A raw answer: status, headers asked for, body bytes.
fn fetch(request: ureq::Request) -> (u16, ureq::Response) {
    match request.call() {
        Ok(response) => (response.status(), response),
        Err(ureq::Error::Status(status, response)) => (status, response),
        Err(e) => panic!("{e}"),
    }
}

fn body(response: ureq::Response) -> Vec<u8> {
    let mut bytes = Vec::new();
    response.into_reader().read_to_end(&mut bytes).unwrap();
    bytes
}

#[test]
fn preflights_from_allowed_origins_are_answered_and_others_are_not() {
    let (_dir, db) = temp_db();
    let server = Server::start_with(
        &db,
        &support::shipped_schemas(),
        &[
            (
                "DATAFORGE_SERVER__CORS_ORIGINS",
                "[\"https://app.example\"]",
            ),
            ("DATAFORGE_AUTH__REQUIRED", "true"),
        ],
    );
    let preflight = |origin: &str| {
        fetch(
            ureq::request("OPTIONS", &format!("{}{WP}/records", server.base))
                .set("Origin", origin)
                .set("Access-Control-Request-Method", "POST")
                .set(
                    "Access-Control-Request-Headers",
                    "authorization, content-type",
                ),
        )
    };
    // answered without credentials (a browser sends none on a preflight)
    let (status, allowed) = preflight("https://app.example");
    assert_eq!(status, 200);
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    let methods = allowed
        .header("access-control-allow-methods")
        .unwrap_or_default();
    assert!(
        methods.contains("POST") && methods.contains("PATCH"),
        "{methods}"
    );
    let headers = allowed
        .header("access-control-allow-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(headers.contains("authorization"), "{headers}");
    let (_, refused) = preflight("https://evil.example");
    assert_eq!(refused.header("access-control-allow-origin"), None);
    // a real request from the page carries the header too (its 401 included)
    let (status, answer) = fetch(
        ureq::get(&format!("{}{WP}/count", server.base)).set("Origin", "https://app.example"),
    );
    assert_eq!(status, 401);
    assert_eq!(
        answer.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    // without cors_origins, no CORS headers at all
    let (_dir2, db2) = temp_db();
    let plain = Server::start(&db2);
    let (_, answer) = fetch(
        ureq::request("OPTIONS", &format!("{}{WP}/records", plain.base))
            .set("Origin", "https://app.example")
            .set("Access-Control-Request-Method", "POST"),
    );
    assert_eq!(answer.header("access-control-allow-origin"), None);
}

#[test]
fn answers_are_compressed_when_accepted_except_parquet() {
    let (_dir, db) = temp_db();
    let server = Server::start(&db);
    let rows: Vec<Value> = (0..500).map(production).collect();
    assert_eq!(
        server
            .post_json(&format!("{WP}/records"), &json!(rows))
            .status,
        201
    );
    let plain = body(
        fetch(ureq::get(&format!(
            "{}{WP}/records?format=csv",
            server.base
        )))
        .1,
    );
    for (encoding, decode) in [
        (
            "gzip",
            (|b: &[u8]| {
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(b)
                    .read_to_end(&mut out)
                    .unwrap();
                out
            }) as fn(&[u8]) -> Vec<u8>,
        ),
        ("zstd", |b: &[u8]| zstd::decode_all(b).unwrap()),
    ] {
        for path in [
            format!("{WP}/records?format=csv"),
            format!("{WP}/records?limit=50"),
            format!("{WP}/aggregate?group_by=field_code&metrics=count()"),
        ] {
            let (status, answer) = fetch(
                ureq::get(&format!("{}{path}", server.base)).set("Accept-Encoding", encoding),
            );
            assert_eq!(status, 200, "{path}");
            assert_eq!(answer.header("content-encoding"), Some(encoding), "{path}");
            let decoded = decode(&body(answer));
            if path.ends_with("csv") {
                assert_eq!(decoded, plain, "the same CSV, compressed");
            } else {
                serde_json::from_slice::<Value>(&decoded).expect("JSON once decoded");
            }
        }
        let (_, parquet) = fetch(
            ureq::get(&format!("{}{WP}/records?format=parquet", server.base))
                .set("Accept-Encoding", encoding),
        );
        assert_eq!(
            parquet.header("content-encoding"),
            None,
            "Parquet compresses itself"
        );
        assert_eq!(&body(parquet)[..4], b"PAR1");
    }
    let (_, identity) = fetch(ureq::get(&format!(
        "{}{WP}/records?format=csv",
        server.base
    )));
    assert_eq!(identity.header("content-encoding"), None);
}

#[test]
fn compressed_bodies_are_decoded_in_every_format() {
    let (dir, db) = temp_db();
    let server = Server::start(&db);
    let mut total = 0;
    for (format, media_type) in [
        ("csv", "text/csv"),
        ("ndjson", "application/x-ndjson"),
        ("json", "application/json"),
        ("arrow", "application/vnd.apache.arrow.stream"),
        ("parquet", "application/vnd.apache.parquet"),
    ] {
        for (encoding, compress) in [
            ("gzip", gzip as fn(&[u8]) -> Vec<u8>),
            ("zstd", |b: &[u8]| zstd::encode_all(b, 3).unwrap()),
        ] {
            let file = dir.path().join(format!("rows.{format}"));
            let start = total.to_string();
            let (code, _, stderr) = run(
                &[
                    "generate",
                    "--dataset",
                    "well_production",
                    "--rows",
                    "100",
                    "--start",
                    &start,
                    "--format",
                    format,
                    "-o",
                    file.to_str().unwrap(),
                    "--schemas",
                    support::shipped_schemas().to_str().unwrap(),
                ],
                dir.path(),
            );
            assert_eq!(code, 0, "{stderr}");
            let sent = support::answer(
                ureq::post(&format!("{}{WP}/records", server.base))
                    .set("Content-Type", media_type)
                    .set("Content-Encoding", encoding)
                    .send_bytes(&compress(&std::fs::read(&file).unwrap())),
            );
            assert_eq!(sent.status, 201, "{format} {encoding}: {sent:?}");
            assert_eq!(sent.body["inserted"], json!(100), "{format} {encoding}");
            total += 100;
        }
    }
    assert_eq!(
        server.get(&format!("{WP}/count")).body["count"],
        json!(total)
    );
}

#[test]
fn request_ids_are_kept_or_made_echoed_and_logged() {
    let (_dir, db) = temp_db();
    let server = Server::start(&db);
    let (_, kept) =
        fetch(ureq::get(&format!("{}{WP}/count", server.base)).set("X-Request-Id", "trace-42"));
    assert_eq!(kept.header("x-request-id"), Some("trace-42"));
    let (_, made) = fetch(ureq::get(&format!("{}{WP}/count", server.base)));
    let made = made
        .header("x-request-id")
        .expect("an id is made")
        .to_owned();
    assert_eq!(made.len(), 36, "a UUID: {made}");
    let (status, missing) = fetch(ureq::get(&format!("{}/nowhere", server.base)));
    assert_eq!(status, 404);
    assert!(
        missing.header("x-request-id").is_some(),
        "errors carry it too"
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    let lines = server.log_lines();
    for id in ["trace-42", made.as_str()] {
        assert!(
            lines
                .iter()
                .any(|l| l.contains("request") && l.contains(id)),
            "{id} in the access log: {lines:?}"
        );
    }
}
