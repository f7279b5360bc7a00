//! The PostgreSQL store's own behaviour (run by scripts/test-postgres): connections that
//! PostgreSQL ends under a running server are replaced, reads going on without an error; small
//! writes committed in groups each stay whole; a closed store holds no connection.

mod support;

use std::collections::HashMap;
use std::path::Path;

use serde_json::{Value, json};
use support::{Server, temp_db, well};

const WR: &str = "/v1/datasets/well_registry";

/// The URL of the test database of `db`.
fn database_url(db: &Path) -> String {
    support::engine_env(db)
        .into_iter()
        .find(|(name, _)| name == "DATAFORGE_DATABASE__URL")
        .map(|(_, url)| url)
        .expect("a database URL on PostgreSQL")
}

/// `select` (a count) over dataforge's connections to the test database, through psql.
fn over_connections(db: &Path, select: &str) -> usize {
    let output = std::process::Command::new("psql")
        .args([&database_url(db), "-Atc"])
        .arg(format!(
            "SELECT {select} FROM pg_stat_activity \
             WHERE application_name = 'dataforge' AND datname = current_database() AND pid <> pg_backend_pid()"
        ))
        .output()
        .expect("run psql");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

/// Ends every connection dataforge holds to the test database, as a restart of PostgreSQL or an
/// administrator would.
fn end_connections(db: &Path) -> usize {
    over_connections(db, "count(pg_terminate_backend(pid))")
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

/// Single-record POSTs from many clients at once, a fifth of them to keys every client posts:
/// each key is acknowledged to exactly one client and stored once, with that client's record;
/// every other post of it is answered 409 naming it and stores nothing; and the writes were
/// committed in groups, conflicting ones rolled back to their savepoints.
#[test]
fn concurrent_single_writes_in_groups_are_each_stored_once_or_refused() {
    if support::postgres_only("group commit of small writes") {
        return;
    }
    const CLIENTS: i64 = 32;
    const POSTS: i64 = 30;
    let (_dir, db) = temp_db();
    let log = [("RUST_LOG", "info,dataforge_postgres=debug")];
    let server = Server::start_with(&db, &support::shipped_schemas(), &log);
    let base = server.base.clone();
    let answers: Vec<(i64, i64, u16, Value)> = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|client| {
                let base = &base;
                scope.spawn(move || {
                    (0..POSTS)
                        .map(|post| {
                            let code = if post % 5 == 0 {
                                1_000_000 + post
                            } else {
                                1 + client * POSTS + post
                            };
                            let mut record = well(code, 1);
                            record["operator"] = json!(format!("Client {client}"));
                            let answer = support::answer(
                                ureq::post(&format!("{base}{WR}/records"))
                                    .set("Content-Type", "application/json")
                                    .send_string(&record.to_string()),
                            );
                            (code, client, answer.status, answer.body)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        clients
            .into_iter()
            .flat_map(|c| c.join().expect("a client"))
            .collect()
    });
    let mut winners: HashMap<i64, i64> = HashMap::new();
    for (code, client, status, body) in &answers {
        match status {
            201 => assert!(
                winners.insert(*code, *client).is_none(),
                "well {code} acknowledged twice"
            ),
            409 => {
                assert!(
                    *code >= 1_000_000,
                    "well {code}, posted once, refused: {body}"
                );
                assert_eq!(body["total_conflicts"], 1, "{body}");
                assert_eq!(
                    body["conflicts"][0],
                    json!({"key": {"well_code": code}, "reason": "exists"}),
                    "{body}"
                );
            }
            _ => panic!("well {code} from client {client}: {status} {body}"),
        }
    }
    let unique = CLIENTS * (POSTS - POSTS / 5);
    assert_eq!(
        winners.len() as i64,
        unique + POSTS / 5,
        "every key acknowledged once"
    );
    assert_eq!(
        server.get(&format!("{WR}/count")).body["count"],
        json!(winners.len()),
        "every acknowledged record stored once, no refused one"
    );
    for (code, client) in &winners {
        let stored = server.get(&format!("{WR}/records/{code}"));
        assert_eq!(stored.status, 200, "{stored:?}");
        assert_eq!(stored.body["operator"], json!(format!("Client {client}")));
    }
    let metrics = ureq::get(&format!("{base}/metrics"))
        .call()
        .expect("metrics")
        .into_string()
        .expect("metrics text");
    let metric = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {metrics}"))
    };
    let (writes, groups) = (
        metric("dataforge_postgres_group_writes_sum"),
        metric("dataforge_postgres_group_writes_count"),
    );
    assert_eq!(
        writes as i64,
        CLIENTS * POSTS,
        "every write went through a group"
    );
    assert!(
        groups < writes,
        "some group took more than one write ({groups} groups)"
    );
    let rolled_back = server
        .log_lines()
        .iter()
        .filter(|l| l.contains("rolled back to its savepoint") && l.contains("23505"))
        .count();
    assert!(rolled_back > 0, "no conflict settled within a group");
}

/// Waits up to 5 s for the number of dataforge's connections to the test database to satisfy
/// `enough`; answers the last number seen.
fn connections_until(db: &Path, enough: impl Fn(usize) -> bool) -> usize {
    let mut seen = over_connections(db, "count(*)");
    for _ in 0..50 {
        if enough(seen) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        seen = over_connections(db, "count(*)");
    }
    seen
}

/// Closing the store closes the replicas' pools and stops their watcher too, not only the
/// primary's pool: no connection of the store's is left (the "replica" here is the primary's
/// own database, which the watcher connects to and finds not in recovery).
#[test]
fn a_closed_store_holds_no_connection_to_the_primary_or_a_replica() {
    use dataforge_domain::ports::{RecordReader, Store};
    use dataforge_postgres::{PostgresConfig, PostgresStore};

    if support::postgres_only("closing the PostgreSQL store") {
        return;
    }
    let (_dir, db) = temp_db();
    let url = database_url(&db);
    let store = PostgresStore::open(&PostgresConfig {
        url: Some(url.clone()),
        replica_urls: vec![url],
        ..PostgresConfig::default()
    })
    .expect("open the store");
    // the runtime's workers go on driving the connections and the watcher between the calls
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    // a read (of a table not made: it fails) starts the watcher, which connects to both
    let key = vec![dataforge_domain::value::Value::Integer(1)];
    let _ = runtime.block_on(store.get(dataforge_domain::testing::wells(), key));
    let open = connections_until(&db, |n| n >= 2);
    assert!(open >= 2, "the primary and the replica connected: {open}");
    store.close();
    let left = connections_until(&db, |n| n == 0);
    let listed = std::process::Command::new("psql")
        .args([&database_url(&db), "-Atc"])
        .arg(
            "SELECT backend_start, state, query FROM pg_stat_activity \
             WHERE application_name = 'dataforge' AND datname = current_database()",
        )
        .output()
        .expect("run psql");
    assert_eq!(
        left,
        0,
        "connections left after close: {}",
        String::from_utf8_lossy(&listed.stdout)
    );
}
