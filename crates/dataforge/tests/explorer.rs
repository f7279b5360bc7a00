//! The explorer's page over HTTP (its browser tests are in crates/adapters/dataforge-explorer/web):
//! served at `/` and every `/datasets/...` address without a credential, with a strict content
//! security policy, its files revalidated by ETag, off when `server.explorer = false`; and what
//! the page reads from the API: the credential and what it may do, each field's operators.

mod support;

use serde_json::json;
use support::{Server, create_key, temp_db};

fn get(url: &str, headers: &[(&str, &str)]) -> ureq::Response {
    let mut request = ureq::get(url);
    for (name, value) in headers {
        request = request.set(name, value);
    }
    match request.call() {
        Ok(response) | Err(ureq::Error::Status(_, response)) => response,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn the_page_is_served_to_anyone_and_loads_only_its_own_files() {
    let (_dir, db) = temp_db();
    let server = Server::start_with(
        &db,
        &support::shipped_schemas(),
        &[("DATAFORGE_AUTH__REQUIRED", "true")],
    );
    for path in [
        "/",
        "/datasets/well_production",
        "/datasets/well_production/records/1/2/2020-01-01T00:00:00Z",
    ] {
        let page = get(&format!("{}{path}", server.base), &[]);
        assert_eq!(page.status(), 200, "{path}");
        assert_eq!(
            page.header("content-type"),
            Some("text/html; charset=utf-8")
        );
        let policy = page
            .header("content-security-policy")
            .unwrap_or_default()
            .to_owned();
        assert!(
            policy.contains("script-src 'self'") && policy.contains("frame-ancestors 'none'"),
            "{policy}"
        );
        assert!(page.into_string().unwrap().contains("/explorer/app.js"));
    }
    // the page holds no data: the API still asks for a credential
    assert_eq!(server.get("/v1/datasets").status, 401);

    let script = get(&format!("{}/explorer/app.js", server.base), &[]);
    assert_eq!(script.status(), 200);
    assert_eq!(
        script.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(script.header("cache-control"), Some("no-cache"));
    let etag = script.header("etag").expect("an ETag").to_owned();
    let again = get(
        &format!("{}/explorer/app.js", server.base),
        &[("If-None-Match", &etag)],
    );
    assert_eq!(again.status(), 304);
    let strong = etag.trim_start_matches("W/");
    for (given, status) in [
        ("\"other\"".to_owned(), 200),
        (format!("\"other\", {strong}"), 304),
        ("*".to_owned(), 304),
    ] {
        let answer = get(
            &format!("{}/explorer/app.js", server.base),
            &[("If-None-Match", &given)],
        );
        assert_eq!(answer.status(), status, "{given}");
    }
    for missing in [
        "/explorer/nothing.js",
        "/explorer/index.html",
        "/explorer/..%2FCargo.toml",
    ] {
        let answer = server.get(missing);
        assert_eq!(answer.status, 404, "{missing}");
        assert_eq!(answer.content_type, "application/problem+json");
    }
}

#[test]
fn the_page_can_be_turned_off() {
    let (_dir, db) = temp_db();
    let server = Server::start_with(
        &db,
        &support::shipped_schemas(),
        &[("DATAFORGE_SERVER__EXPLORER", "false")],
    );
    for path in ["/", "/datasets/well_registry", "/explorer/app.js"] {
        let answer = server.get(path);
        assert_eq!(answer.status, 404, "{path}");
        assert_eq!(answer.body["type"], "/problems/no-route");
    }
    assert_eq!(server.get("/v1/datasets").status, 200);
}

#[test]
fn the_api_says_what_a_credential_may_do_and_what_each_field_takes() {
    let (_dir, db) = temp_db();
    let key = create_key(
        &db,
        "loader",
        &["well_registry:read,write", "*:read:field_code=eq.1"],
        None,
    );
    let server = Server::start_with(
        &db,
        &support::shipped_schemas(),
        &[("DATAFORGE_AUTH__REQUIRED", "true")],
    );
    let who = server.send_as(Some(&key), "GET", "/v1/credential", None);
    assert_eq!(who.status, 200, "{:?}", who.body);
    assert_eq!(
        who.body,
        json!({"name": "loader", "grants": [
            {"dataset": "well_registry", "permissions": ["read", "write"], "rule": null},
            {"dataset": "*", "permissions": ["read"], "rule": "field_code=eq.1"},
        ]})
    );
    assert_eq!(server.get("/v1/credential").status, 401);

    let registry = server
        .send_as(Some(&key), "GET", "/v1/datasets/well_registry", None)
        .body;
    assert_eq!(registry["permissions"], json!(["read", "write"]));
    let production = server
        .send_as(Some(&key), "GET", "/v1/datasets/well_production", None)
        .body;
    assert_eq!(production["permissions"], json!(["read"]));
    let field = |name: &str| {
        production["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .unwrap()
            .clone()
    };
    let period = field("production_period");
    assert_eq!(
        period["buckets"],
        json!(["minute", "hour", "day", "week", "month", "quarter", "year"])
    );
    assert_eq!(period["metrics"], json!(["count_distinct", "min", "max"]));
    let oil = field("oil_production_kbd");
    assert_eq!(oil["buckets"], json!([]));
    assert!(
        oil["operators"]
            .as_array()
            .unwrap()
            .contains(&json!("between"))
    );
    assert!(
        oil["metrics"]
            .as_array()
            .unwrap()
            .contains(&json!("percentile"))
    );
    let name = field("well_name");
    assert!(
        name["operators"]
            .as_array()
            .unwrap()
            .contains(&json!("ilike"))
    );
    assert!(
        !oil["operators"]
            .as_array()
            .unwrap()
            .contains(&json!("like"))
    );
}
