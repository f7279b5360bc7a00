//! The PostgreSQL store's own behaviour (run by scripts/test-postgres): connections that
//! PostgreSQL ends under a running server are replaced, reads going on without an error.

mod support;

use std::path::Path;

use serde_json::json;
use support::{Server, temp_db, well};

const WR: &str = "/v1/datasets/well_registry";

/// Ends every connection dataforge holds to the test database, as a restart of PostgreSQL or an
/// administrator would.
fn end_connections(db: &Path) -> usize {
    let url = support::engine_env(db)
        .into_iter()
        .find(|(name, _)| name == "DATAFORGE_DATABASE__URL")
        .map(|(_, url)| url)
        .expect("a database URL on PostgreSQL");
    let output = std::process::Command::new("psql")
        .args([&url, "-Atc"])
        .arg(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE application_name = 'dataforge' AND datname = current_database() AND pid <> pg_backend_pid()",
        )
        .output()
        .expect("run psql");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

#[test]
fn connections_ended_by_postgresql_are_replaced_and_reads_go_on() {
    if support::postgres_only("replacing lost connections") {
        return;
    }
    let (_dir, db) = temp_db();
    let server = Server::start(&db);
    let records: Vec<_> = (1..=20).map(|code| well(code, 1 + code % 3)).collect();
    assert_eq!(
        server
            .post_json(&format!("{WR}/records"), &json!(records))
            .status,
        201
    );
    for round in 0..3 {
        // pooled connections exist: every kind of read has used one
        assert_eq!(server.get(&format!("{WR}/records/7")).status, 200);
        assert_eq!(server.get(&format!("{WR}/count")).body["count"], json!(20));
        let ended = end_connections(&db);
        assert!(
            ended > 0,
            "round {round}: no connection of dataforge's to end"
        );
        // the next reads find their connections gone and go on through new ones
        let one = server.get(&format!("{WR}/records/7"));
        assert_eq!(one.status, 200, "round {round}: {one:?}");
        let counted = server.get(&format!("{WR}/count"));
        assert_eq!(
            counted.body["count"],
            json!(20),
            "round {round}: {counted:?}"
        );
        let page = server.get(&format!("{WR}/records?limit=5"));
        assert_eq!(page.status, 200, "round {round}: {page:?}");
        assert_eq!(page.body["items"].as_array().map(Vec::len), Some(5));
        // and writes too, on new connections
        let written = server.post_json(&format!("{WR}/records"), &json!(well(100 + round, 1)));
        assert_eq!(written.status, 201, "round {round}: {written:?}");
        assert_eq!(
            server
                .send("DELETE", &format!("{WR}/records/{}", 100 + round), None)
                .status,
            204
        );
    }
}
