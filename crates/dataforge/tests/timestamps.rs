//! Timestamps the way real files write them: local times read in the schema's `timezone`, numbers
//! as `epoch` seconds or milliseconds, in every text format; without the options a local time is
//! refused with a hint naming them.

mod support;

use serde_json::json;
use support::{Server, temp_db};

const READINGS: &str = r#"
[[datasets]]
name = "readings"
primary_key = ["sensor", "taken"]
timezone = "America/Sao_Paulo"

[[datasets.fields]]
name = "sensor"
type = "integer"

[[datasets.fields]]
name = "taken"
type = "timestamp"

[[datasets.fields]]
name = "logged_ms"
type = "timestamp"
epoch = "ms"
timezone = "UTC"

[[datasets.fields]]
name = "strict"
type = "timestamp"
timezone = "UTC"
"#;

const STRICT: &str = r#"
[[datasets]]
name = "strict_readings"
primary_key = ["sensor", "taken"]

[[datasets.fields]]
name = "sensor"
type = "integer"

[[datasets.fields]]
name = "taken"
type = "timestamp"
"#;

#[test]
fn local_times_and_epoch_numbers_are_read_as_the_schema_says() {
    let (dir, db) = temp_db();
    let schemas = dir.path().join("schemas");
    std::fs::create_dir(&schemas).unwrap();
    std::fs::write(schemas.join("readings.toml"), READINGS).unwrap();
    std::fs::write(schemas.join("strict.toml"), STRICT).unwrap();
    let server = Server::start_with(&db, &schemas, &[]);

    let csv = "sensor,taken,logged_ms,strict\n1,2024-01-31 12:00:00,1706702400123,2024-01-31T12:00\n2,2024-01-31T12:00:00-05:00,,\n";
    let written = server.post_raw("/v1/datasets/readings/records", "text/csv", csv.as_bytes());
    assert_eq!(written.status, 201, "{written:?}");
    let json =
        json!([{"sensor": 3, "taken": "2024-07-01T08:30", "logged_ms": 1_706_702_400_000_i64}]);
    let written = server.post_json("/v1/datasets/readings/records", &json);
    assert_eq!(written.status, 201, "{written:?}");

    let page = server.get("/v1/datasets/readings/records?order=sensor");
    let rows: Vec<_> = page.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["taken"].as_str().unwrap().to_owned(),
                r["logged_ms"].clone(),
                r["strict"].clone(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            // São Paulo is UTC-3, all year since 2019
            (
                "2024-01-31T15:00:00Z".to_owned(),
                json!("2024-01-31T12:00:00.123Z"),
                json!("2024-01-31T12:00:00Z")
            ),
            ("2024-01-31T17:00:00Z".to_owned(), json!(null), json!(null)),
            (
                "2024-07-01T11:30:00Z".to_owned(),
                json!("2024-01-31T12:00:00Z"),
                json!(null)
            ),
        ]
    );

    // without the options: refused, naming them, and nothing written
    let refused = server.post_raw(
        "/v1/datasets/strict_readings/records",
        "text/csv",
        b"sensor,taken\n1,2024-01-31T12:00:00Z\n2,2024-01-31 12:00:00\n",
    );
    assert_eq!(refused.status, 422, "{refused:?}");
    let message = refused.body["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("timezone = \"UTC\""), "{message}");
    assert_eq!(refused.body["errors"][0]["row"], 2);
    let number = server.post_json(
        "/v1/datasets/strict_readings/records",
        &json!({"sensor": 1, "taken": 1_706_702_400}),
    );
    assert_eq!(number.status, 422, "{number:?}");
    assert!(
        number.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("epoch = \"s\""),
        "{number:?}"
    );
    let count = server.get("/v1/datasets/strict_readings/count");
    assert_eq!(count.body["count"], 0);

    // the schema shows how each field is read
    let schema = server.get("/v1/datasets/readings");
    let fields = schema.body["fields"].as_array().unwrap();
    assert_eq!(fields[1]["timezone"], "America/Sao_Paulo");
    assert_eq!(fields[2]["epoch"], "ms");
}
