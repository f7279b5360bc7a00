//! Field names that are SQL keywords (`user`, `time`, `from`, `to`, `end`, `position`,
//! `timestamp`), as real files have them, work on every path: writes, reads by key, filters,
//! order, projection, declared-index pages, aggregates, exports, changes and a new field.

mod support;

use serde_json::{Value, json};
use support::{Server, temp_db};

const EVENTS: &str = r#"
[[datasets]]
name = "events"
primary_key = ["user", "time"]
indexes = [["from"]]
cluster_by = ["end"]

[[datasets.fields]]
name = "user"
type = "string"

[[datasets.fields]]
name = "time"
type = "timestamp"

[[datasets.fields]]
name = "from"
type = "integer"

[[datasets.fields]]
name = "to"
type = "integer"

[[datasets.fields]]
name = "end"
type = "date"

[[datasets.fields]]
name = "position"
type = "float"
"#;

fn event(user: &str, hour: u32, from: i64) -> Value {
    json!({
        "user": user,
        "time": format!("2024-05-01T{hour:02}:00:00Z"),
        "from": from,
        "to": from + 1,
        "end": format!("2024-06-{:02}", hour + 1),
        "position": f64::from(hour) / 2.0,
    })
}

#[test]
fn keyword_field_names_work_on_every_path() {
    let (dir, db) = temp_db();
    let schemas = dir.path().join("schemas");
    std::fs::create_dir(&schemas).unwrap();
    std::fs::write(schemas.join("events.toml"), EVENTS).unwrap();
    let server = Server::start_with(&db, &schemas, &[]);
    let records: Vec<Value> = (0..6)
        .map(|h| event(if h % 2 == 0 { "ann" } else { "bob" }, h, i64::from(h % 3)))
        .collect();
    let written = server.post_json("/v1/datasets/events/records", &json!(records));
    assert_eq!(written.status, 201, "{written:?}");

    let one = server.get("/v1/datasets/events/records/ann/2024-05-01T02:00:00Z");
    assert_eq!(one.status, 200, "{one:?}");
    assert_eq!(one.body["from"], 2);
    assert_eq!(one.body["end"], "2024-06-03");

    let page =
        server.get("/v1/datasets/events/records?from=eq.1&order=end.desc&select=user,end,position");
    assert_eq!(page.status, 200, "{page:?}");
    let ends: Vec<&str> = page.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["end"].as_str().unwrap())
        .collect();
    assert_eq!(ends, ["2024-06-05", "2024-06-02"]);
    assert_eq!(page.body["items"][0].as_object().unwrap().len(), 3);

    let totals = server.get(
        "/v1/datasets/events/aggregate?group_by=from&metrics=sum(position),count(to)&order=from",
    );
    assert_eq!(totals.status, 200, "{totals:?}");
    assert_eq!(
        totals.body["items"][0],
        json!({"from": 0, "sum_position": 1.5, "count_to": 2})
    );

    let csv = ureq::get(&format!(
        "{}/v1/datasets/events/records?format=csv&to=gte.3",
        server.base
    ))
    .call()
    .unwrap()
    .into_string()
    .unwrap();
    assert!(
        csv.starts_with("user,time,from,to,end,position\r\n"),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 3, "{csv}");

    let patched = server.send(
        "PATCH",
        "/v1/datasets/events/records/bob/2024-05-01T01:00:00Z",
        Some(&json!({"to": 9, "position": 7.5})),
    );
    assert_eq!(patched.status, 200, "{patched:?}");
    let deleted = server.send(
        "DELETE",
        "/v1/datasets/events/records?user=eq.ann&end=lt.2024-06-04",
        None,
    );
    assert_eq!(deleted.body, json!({"deleted": 2}));
    let left = server.get("/v1/datasets/events/records?order=time");
    let kept: Vec<(&str, i64)> = left.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["user"].as_str().unwrap(), r["to"].as_i64().unwrap()))
        .collect();
    assert_eq!(kept, [("bob", 9), ("bob", 1), ("ann", 2), ("bob", 3)]);
    server.stop();

    // a new keyword field is added by the next start
    std::fs::write(
        schemas.join("events.toml"),
        format!("{EVENTS}\n[[datasets.fields]]\nname = \"timestamp\"\ntype = \"timestamp\"\n"),
    )
    .unwrap();
    let server = Server::start_with(&db, &schemas, &[]);
    let later = server.post_json(
        "/v1/datasets/events/records",
        &json!({"user": "cy", "time": "2024-05-02T00:00:00Z", "timestamp": "2024-05-02T01:00:00Z"}),
    );
    assert_eq!(later.status, 201, "{later:?}");
    let found =
        server.get("/v1/datasets/events/records?timestamp=is.notnull&select=user,timestamp");
    assert_eq!(
        found.body["items"],
        json!([{"user": "cy", "timestamp": "2024-05-02T01:00:00Z"}])
    );
}
