//! A corpus of malformed and hostile requests over real HTTP: each gets a 4xx problem+json whose
//! `type` is a page of the server, nothing is written, and the server keeps serving.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;

use serde_json::json;
use support::{Server, temp_db};

const WP: &str = "/v1/datasets/well_production";
const WR: &str = "/v1/datasets/well_registry";

/// One raw HTTP/1.1 exchange: the status line's code and the whole answer.
fn exchange(server: &Server, request: &[u8]) -> (u16, String) {
    let address = server.base.trim_start_matches("http://");
    let mut socket = TcpStream::connect(address).unwrap();
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    socket.write_all(request).unwrap();
    let mut answer = Vec::new();
    let _ = socket.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

fn request(method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// A request: method, target, headers and body.
type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, Vec<u8>);

fn deep(depth: usize) -> String {
    format!(
        "{}{}",
        r#"{"not":"#.repeat(depth),
        "{\"eq\":{\"well_code\":1}}".to_owned() + &"}".repeat(depth)
    )
}

#[test]
fn every_bad_request_gets_a_problem_and_writes_nothing() {
    let (_dir, db) = temp_db();
    let server = Server::start(&db);
    let json = [("Content-Type", "application/json")];
    let long = "a".repeat(20_000);
    let huge_in = format!("{WP}/records?well_code=in.({})", "1,".repeat(20_000) + "1");
    let million = format!("{WP}/records?x={}", "y".repeat(1_000_000));
    let cases: Vec<Case> = vec![
        // SQL and path injection in every place a name or value goes
        (
            "GET",
            format!("{WP}/records?well_code=eq.1;DROP%20TABLE%20well_production"),
            vec![],
            vec![],
        ),
        (
            "GET",
            format!("{WP}/records?select=well_code,(SELECT%201)"),
            vec![],
            vec![],
        ),
        (
            "GET",
            format!("{WP}/records?order=well_code;DELETE"),
            vec![],
            vec![],
        ),
        (
            "GET",
            "/v1/datasets/..%2F..%2Fetc%2Fpasswd/records".into(),
            vec![],
            vec![],
        ),
        (
            "GET",
            "/v1/datasets/well_production%27--/records".into(),
            vec![],
            vec![],
        ),
        (
            "GET",
            format!("{WR}/records/1%27%20OR%20%271%27=%271"),
            vec![],
            vec![],
        ),
        (
            "GET",
            format!("{WP}/aggregate?group_by=field_code&metrics=sum(oil_production_kbd);DROP"),
            vec![],
            vec![],
        ),
        (
            "GET",
            format!(
                "{WP}/aggregate?group_by=field_code&metrics=count()&bucket=production_period:century"
            ),
            vec![],
            vec![],
        ),
        (
            "GET",
            format!("{WR}/records?well_name=in.(%22a%22%22%29%20OR%20(1=1%22)"),
            vec![],
            vec![],
        ),
        // malformed parameters
        ("GET", format!("{WP}/records?limit=-1"), vec![], vec![]),
        (
            "GET",
            format!("{WP}/records?limit=99999999999999999999"),
            vec![],
            vec![],
        ),
        (
            "GET",
            format!("{WP}/records?cursor=%00%01garbage"),
            vec![],
            vec![],
        ),
        (
            "GET",
            format!("{WP}/records?production_period=gt.not-a-date"),
            vec![],
            vec![],
        ),
        (
            "GET",
            format!("{WP}/records?well_code=between.(1)"),
            vec![],
            vec![],
        ),
        ("GET", format!("{WP}/records?format=xml"), vec![], vec![]),
        ("GET", format!("{WP}/count?exact=perhaps"), vec![], vec![]),
        ("GET", huge_in.clone(), vec![], vec![]),
        ("GET", million.clone(), vec![], vec![]),
        (
            "GET",
            format!("{WP}/records?{}", format!("well_name=eq.{long}&").repeat(2)),
            vec![],
            vec![],
        ),
        ("GET", "/v1/datasets/%FF/records".into(), vec![], vec![]),
        // headers
        (
            "GET",
            format!("{WP}/records"),
            vec![("Accept", "text/html")],
            vec![],
        ),
        (
            "GET",
            format!("{WP}/records"),
            vec![("Accept", ";;;q==")],
            vec![],
        ),
        (
            "GET",
            format!("{WP}/records"),
            vec![("Authorization", "Bearer dfk_forged")],
            vec![],
        ),
        ("POST", format!("{WP}/records"), vec![], b"{}".to_vec()),
        (
            "POST",
            format!("{WP}/records"),
            vec![("Content-Type", "text/plain")],
            b"{}".to_vec(),
        ),
        (
            "POST",
            format!("{WP}/records"),
            vec![
                ("Content-Type", "application/json"),
                ("Content-Encoding", "br"),
            ],
            b"{}".to_vec(),
        ),
        (
            "POST",
            format!("{WP}/records"),
            vec![
                ("Content-Type", "application/json"),
                ("Content-Encoding", "gzip"),
            ],
            b"not gzip".to_vec(),
        ),
        // bodies
        (
            "POST",
            format!("{WP}/records"),
            json.to_vec(),
            b"{\"well_code\":".to_vec(),
        ),
        (
            "POST",
            format!("{WP}/records"),
            json.to_vec(),
            b"[1,2,3]".to_vec(),
        ),
        (
            "POST",
            format!("{WP}/records"),
            json.to_vec(),
            json!({"well_code": "1; DROP TABLE x"})
                .to_string()
                .into_bytes(),
        ),
        (
            "POST",
            format!("{WP}/records"),
            json.to_vec(),
            b"{\"well_code\":1,\"well_code\":2}".to_vec(),
        ),
        (
            "POST",
            format!("{WP}/records"),
            json.to_vec(),
            b"\xff\xfe\x00garbage".to_vec(),
        ),
        (
            "POST",
            format!("{WP}/records"),
            vec![("Content-Type", "text/csv")],
            b"well_code,\"unterminated\n1,2".to_vec(),
        ),
        (
            "POST",
            format!("{WP}/records"),
            vec![("Content-Type", "application/x-ndjson")],
            b"{}\n{\n".to_vec(),
        ),
        (
            "POST",
            format!("{WP}/records"),
            vec![("Content-Type", "application/vnd.apache.arrow.stream")],
            b"\xff\xff\xff\xff\xff\xff\xff\x7f".to_vec(),
        ),
        (
            "POST",
            format!("{WP}/records"),
            vec![("Content-Type", "application/vnd.apache.parquet")],
            b"PAR1\x00\x00\x00\x00PAR1".to_vec(),
        ),
        // a stream whose null buffer is shorter than its array: arrow-ipc panicked (found by fuzzing)
        (
            "POST",
            format!("{WP}/records"),
            vec![("Content-Type", "application/vnd.apache.arrow.stream")],
            include_bytes!("data/arrow-short-null-buffer.arrows").to_vec(),
        ),
        // a file whose column chunk declares a negative offset: the page check panicked (fuzzing)
        (
            "POST",
            format!("{WP}/records"),
            vec![("Content-Type", "application/vnd.apache.parquet")],
            include_bytes!("data/parquet-negative-offset.parquet").to_vec(),
        ),
        // a footer declaring 2^31 - 1 schema elements: the parquet crate asked for 22 GB (fuzzing)
        (
            "POST",
            format!("{WP}/records"),
            vec![("Content-Type", "application/vnd.apache.parquet")],
            include_bytes!("data/parquet-huge-list.parquet").to_vec(),
        ),
        // a batch declaring rows beyond any column data: filling its missing columns overflowed
        (
            "POST",
            format!("{WP}/records"),
            vec![("Content-Type", "application/vnd.apache.arrow.stream")],
            include_bytes!("data/arrow-rows-without-data.arrows").to_vec(),
        ),
        (
            "POST",
            format!("{WP}/query"),
            json.to_vec(),
            deep(5_000).into_bytes(),
        ),
        (
            "POST",
            format!("{WP}/query"),
            json.to_vec(),
            format!(
                "{{\"filter\":{{\"in\":{{\"well_code\":[{}]}}}}}}",
                "1,".repeat(200_000) + "1"
            )
            .into_bytes(),
        ),
        (
            "POST",
            format!("{WP}/query"),
            json.to_vec(),
            json!({"filter": {"eq": {"well_code": 123456789012345678901234567890u128 as f64}}})
                .to_string()
                .into_bytes(),
        ),
        (
            "POST",
            format!("{WP}/delete"),
            json.to_vec(),
            b"{}".to_vec(),
        ),
        (
            "PATCH",
            format!("{WP}/records"),
            json.to_vec(),
            json!({"oil_production_kbd": 1}).to_string().into_bytes(),
        ),
        ("DELETE", format!("{WP}/records"), vec![], vec![]),
        (
            "PUT",
            format!("{WR}/records/1"),
            json.to_vec(),
            json!({"well_code": 2, "well_name": "x", "field_code": 1})
                .to_string()
                .into_bytes(),
        ),
        // paths and methods
        ("GET", "/v1/datasets/nope/records".into(), vec![], vec![]),
        ("GET", "/../../etc/passwd".into(), vec![], vec![]),
        ("TRACE", format!("{WP}/records"), vec![], vec![]),
        ("GET", format!("{WP}/records/1/2"), vec![], vec![]),
    ];
    for (method, target, headers, body) in &cases {
        let (status, text) = exchange(&server, &request(method, target, headers, body));
        let shown: String = target.chars().take(120).collect();
        assert!(
            (400..500).contains(&status),
            "{method} {shown}: {status}\n{}",
            &text[..text.len().min(600)]
        );
        if matches!(status, 414 | 431) && target.len() > 64 * 1024 {
            continue; // hyper's own answer, before the server sees the request (README)
        }
        assert!(
            text.contains("application/problem+json"),
            "{method} {shown}: {}",
            &text[..text.len().min(600)]
        );
        let problem: serde_json::Value =
            serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap_or_default().trim())
                .unwrap_or_else(|_| panic!("{method} {shown}: a JSON body: {text}"));
        let kind = problem["type"].as_str().unwrap();
        assert_eq!(
            server.get(kind).status,
            200,
            "{method} {shown}: its type {kind} is a page"
        );
    }
    // injection that is valid syntax is only a value: no rows match it
    for target in [
        format!("{WP}/records?well_name=like.%27%20OR%201=1--"),
        format!("{WP}/records?well_name=eq.%27%29%3B%20DROP%20TABLE%20well_production%3B--"),
    ] {
        let answer = server.get(&target);
        assert_eq!(
            (answer.status, &answer.body["items"]),
            (200, &json!([])),
            "{target}"
        );
    }
    // nothing was written, and the server still serves
    assert_eq!(server.get(&format!("{WP}/count")).body["count"], json!(0));
    assert_eq!(server.get(&format!("{WR}/count")).body["count"], json!(0));
    assert_eq!(server.get("/health").status, 200);
}
