//! `partition_by`: on PostgreSQL a table split by month of a key timestamp, partitions made as
//! records arrive (by writes, updates and a migration that partitions a stored dataset) and
//! dropped whole by a retention delete; on DuckDB the same declarations are accepted and every
//! answer is the same.

mod support;

use std::path::Path;

use serde_json::{Value, json};
use support::{Server, temp_db};

const READINGS: &str = r#"
[[datasets]]
name = "readings"
primary_key = ["sensor", "taken_at"]

[[datasets.fields]]
name = "sensor"
type = "integer"

[[datasets.fields]]
name = "taken_at"
type = "timestamp"

[[datasets.fields]]
name = "value"
type = "float"
"#;

const PARTITIONED: &str = "partition_by = { field = \"taken_at\", interval = \"month\" }\n";

const R: &str = "/v1/datasets/readings";

/// The schema file, partitioned or not.
fn write_schema(dir: &Path, partitioned: bool) {
    let text = if partitioned {
        READINGS.replacen("primary_key", &format!("{PARTITIONED}primary_key"), 1)
    } else {
        READINGS.to_owned()
    };
    std::fs::write(dir.join("readings.toml"), text).unwrap();
}

fn reading(sensor: i64, month: u32, value: f64) -> Value {
    json!({"sensor": sensor, "taken_at": format!("2024-{month:02}-15T12:00:00Z"), "value": value})
}

fn count(server: &Server, filter: &str) -> u64 {
    let answer = server.get(&format!("{R}/count?{filter}"));
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.body["count"].as_u64().unwrap()
}

/// The partitions of `readings` on PostgreSQL (none on DuckDB).
fn partitions(db: &Path) -> Vec<String> {
    let Some((_, url)) = support::engine_env(db)
        .into_iter()
        .find(|(name, _)| name == "DATAFORGE_DATABASE__URL")
    else {
        return Vec::new();
    };
    let output = std::process::Command::new("psql")
        .args([&url, "-Atc"])
        .arg("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'readings'::regclass ORDER BY 1")
        .output()
        .expect("run psql");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn partitions_follow_the_data_and_a_retention_delete_drops_them_whole() {
    let (dir, db) = temp_db();
    let schemas = dir.path().join("schemas");
    std::fs::create_dir(&schemas).unwrap();
    // stored first without partitions, then partitioned by a migration that keeps every record
    write_schema(&schemas, false);
    let server = Server::start_with(&db, &schemas, &[]);
    let records: Vec<Value> = (1..=3)
        .flat_map(|month| (0..4).map(move |sensor| reading(sensor, month, f64::from(month))))
        .collect();
    assert_eq!(
        server
            .post_json(&format!("{R}/records"), &json!(records))
            .status,
        201
    );
    server.stop();
    write_schema(&schemas, true);
    let server = Server::start_with(&db, &schemas, &[]);
    assert_eq!(count(&server, ""), 12);
    let on_postgres = support::on_postgres();
    let months = |names: &[&str]| -> Vec<String> {
        if on_postgres {
            names
                .iter()
                .map(|m| format!("readings__p2024_{m}"))
                .collect()
        } else {
            Vec::new()
        }
    };
    assert_eq!(partitions(&db), months(&["01", "02", "03"]));

    // writes into new months make their partitions (the partition field is part of the key, which
    // an update cannot change)
    let written = server.post_json(
        &format!("{R}/records"),
        &json!([reading(9, 5, 5.0), reading(9, 7, 7.0)]),
    );
    assert_eq!(written.status, 201, "{written:?}");
    assert_eq!(partitions(&db), months(&["01", "02", "03", "05", "07"]));

    // retention: everything before March goes; January and February are dropped whole, and a
    // delete that takes part of a month leaves its partition
    let deleted = server.send(
        "DELETE",
        &format!("{R}/records?taken_at=lt.2024-03-01T00:00:00Z"),
        None,
    );
    assert_eq!(deleted.status, 200, "{deleted:?}");
    assert_eq!(deleted.body["deleted"], json!(8), "{deleted:?}");
    let partial = server.send(
        "DELETE",
        &format!("{R}/records?sensor=eq.0&value=eq.3"),
        None,
    );
    assert_eq!(partial.body["deleted"], json!(1), "{partial:?}");
    assert_eq!(count(&server, ""), 5);
    assert_eq!(
        count(
            &server,
            "taken_at=gte.2024-03-01T00:00:00Z&taken_at=lt.2024-04-01T00:00:00Z"
        ),
        3
    );
    assert_eq!(partitions(&db), months(&["03", "05", "07"]));
    // a delete bounded by max_affected changes nothing past it, partitions included
    let refused = server.send(
        "DELETE",
        &format!("{R}/records?taken_at=lt.2024-12-01T00:00:00Z&max_affected=2"),
        None,
    );
    assert_eq!(refused.status, 409, "{refused:?}");
    assert_eq!(count(&server, ""), 5);
    assert_eq!(partitions(&db), months(&["03", "05", "07"]));
}
