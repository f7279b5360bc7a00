//! The API contract, checked from outside: the document at `/openapi.json` validates as OpenAPI
//! 3.1, and schemathesis (a property-based client generated from it) sends a bounded number of
//! examples to every operation of a live server and finds no 5xx, no answer the document does not
//! describe (status, content type, body schema, headers) and no crash. The tools come from PyPI
//! into a virtual environment that `scripts/test` makes (`DATAFORGE_CONTRACT_TOOLS`).

mod support;

use std::path::PathBuf;
use std::process::Command;

use support::{Server, temp_db};

fn tools() -> PathBuf {
    let dir = std::env::var_os("DATAFORGE_CONTRACT_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default();
            home.join(".cache/dataforge/contract-venv/bin")
        });
    assert!(
        dir.join("schemathesis").exists(),
        "the contract test needs schemathesis in {}: run scripts/test, which installs it",
        dir.display()
    );
    dir
}

#[test]
fn the_document_is_valid_openapi_and_the_server_keeps_to_it() {
    let tools = tools();
    let (dir, db) = temp_db();
    let server = Server::start(&db);
    let document = ureq::get(&format!("{}/openapi.json", server.base))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    let path = dir.path().join("openapi.json");
    std::fs::write(&path, &document).unwrap();
    let validated = Command::new(tools.join("openapi-spec-validator"))
        .arg(&path)
        .output()
        .expect("run openapi-spec-validator");
    assert!(
        validated.status.success(),
        "{}{}",
        String::from_utf8_lossy(&validated.stdout),
        String::from_utf8_lossy(&validated.stderr)
    );

    let run = Command::new(tools.join("schemathesis"))
        .args(["run", &format!("{}/openapi.json", server.base)])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance",
            "--max-examples",
            "12",
            "--seed",
            "1",
            "--no-color",
        ])
        .current_dir(dir.path())
        .env("SCHEMATHESIS_HOOKS", "")
        .output()
        .expect("run schemathesis");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        run.status.success(),
        "schemathesis found problems:\n{report}"
    );
    let operations: usize = serde_json::from_str::<serde_json::Value>(&document).unwrap()["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|item| {
            ["get", "post", "put", "patch", "delete"]
                .iter()
                .filter(|m| item.get(**m).is_some())
                .count()
        })
        .sum();
    assert!(
        report.contains(&format!("Tested: {operations}")),
        "all {operations} operations were tested:\n{report}"
    );
    // the server is still there
    assert_eq!(server.get("/health").status, 200);
}

#[test]
fn the_document_describes_what_the_credential_may_touch() {
    let (_dir, db) = temp_db();
    let key = support::create_key(&db, "wells", &["well_registry:read"], None);
    let server = Server::start_with(
        &db,
        &support::shipped_schemas(),
        &[("DATAFORGE_AUTH__REQUIRED", "true")],
    );
    assert_eq!(server.get("/openapi.json").status, 401);
    let document: serde_json::Value = ureq::get(&format!("{}/openapi.json", server.base))
        .set("Authorization", &format!("Bearer {key}"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    let paths = document["paths"].as_object().unwrap();
    assert!(paths.contains_key("/v1/datasets/well_registry/records/{well_code}"));
    assert!(
        !paths.keys().any(|p| p.contains("well_production")),
        "a dataset it may not touch is not described"
    );
    assert_eq!(document["security"], serde_json::json!([{"bearer": []}]));
    let record = &document["components"]["schemas"]["well_registry_record"];
    assert_eq!(record["x-primary-key"], serde_json::json!(["well_code"]));
    assert_eq!(
        record["properties"]["status"]["enum"],
        serde_json::json!(["drilling", "producing", "shut_in", "abandoned"])
    );
    let input = &document["components"]["schemas"]["well_registry_input"];
    assert!(
        input["required"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("well_name"))
    );
    // each field's filter parameter names the operators its type takes
    let listing = &paths["/v1/datasets/well_registry/records"]["get"]["parameters"];
    let onshore = listing
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "onshore")
        .unwrap();
    let described = onshore["description"].as_str().unwrap();
    for operator in ["`eq` (equal)", "`ne`", "`in`", "`is`", "`is_null`"] {
        assert!(described.contains(operator), "{operator}: {described}");
    }
    assert!(!described.contains("`gt`"), "{described}");
    assert_eq!(
        onshore["schema"]["pattern"], "^(eq|ne|in|is|is_null)\\.",
        "a boolean takes no order operator"
    );
    let post = &paths["/v1/datasets/well_registry/records"]["post"];
    for media in [
        "application/json",
        "text/csv",
        "application/x-ndjson",
        "application/vnd.apache.arrow.stream",
        "application/vnd.apache.parquet",
    ] {
        assert!(
            post["requestBody"]["content"].get(media).is_some(),
            "{media}"
        );
    }
    assert_eq!(
        post["responses"]["default"]["content"]["application/problem+json"]["schema"]["$ref"],
        "#/components/schemas/problem"
    );
}

#[test]
fn docs_and_every_problem_type_are_pages_of_the_server() {
    let (_dir, db) = temp_db();
    let server = Server::start(&db);
    let docs = ureq::get(&format!("{}/docs", server.base)).call().unwrap();
    assert_eq!(docs.content_type(), "text/html");
    let page = docs.into_string().unwrap();
    assert!(
        page.contains("fetch(\"/openapi.json\"") && !page.contains("https://"),
        "served from the binary, no network"
    );
    // problems of several kinds: each `type` is a page that explains it
    let answers = [
        server.get("/v1/datasets/nope/records"),
        server.get("/v1/datasets/well_registry/records?limit=zero"),
        server.get("/v1/datasets/well_registry/records/1"),
        server.post_raw("/v1/datasets/well_registry/records", "text/plain", b"x"),
        server.post_json(
            "/v1/datasets/well_registry/records",
            &serde_json::json!({"well_code": 1}),
        ),
        server.get("/nowhere"),
    ];
    for answer in answers {
        assert_eq!(
            answer.content_type, "application/problem+json",
            "{answer:?}"
        );
        let kind = answer.body["type"].as_str().unwrap();
        let slug = kind.trim_start_matches("/problems/");
        let explained = ureq::get(&format!("{}{kind}", server.base)).call().unwrap();
        let text = explained.into_string().unwrap();
        assert!(text.contains(&format!("id=\"{slug}\"")), "{kind}: {text}");
    }
    assert_eq!(server.get("/problems/no-such-thing").status, 404);
}
