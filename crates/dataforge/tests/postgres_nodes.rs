//! Several `dataforge serve` nodes on one PostgreSQL primary with a streaming replica: a cluster of
//! its own (scripts/pg-cluster) in a temporary directory, and two real nodes on it. Writes through
//! both nodes land once and keep the conflict rules across nodes; reads go to the replica and still
//! see the client's own writes (the `Dataforge-Consistency` token); a stopped replica leaves reads
//! to the primary; a promoted replica takes over the writes.
//!
//! Runs only with `DATAFORGE_TEST_PG_CLUSTER=1` (scripts/test-postgres sets it): it needs the
//! PostgreSQL 15 binaries and root (the servers run as the `postgres` OS user).
//!
//! The replica-routing contract (tokens, `Dataforge-Served-By`, the replicas in `/health/ready`)
//! is checked with [`Checks`], which gathers every failure and reports them together at the end,
//! so that one run names each part of the contract that does not hold.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Server, shipped_schemas, well};

const WR: &str = "/v1/datasets/well_registry";
const DATABASE: &str = "dataforge_nodes";
const CONSISTENCY: &str = "Dataforge-Consistency";
const SERVED_BY: &str = "Dataforge-Served-By";

/// One cluster at a time: each has two PostgreSQL servers and two nodes, on two cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn enabled() -> bool {
    if std::env::var("DATAFORGE_TEST_PG_CLUSTER").as_deref() == Ok("1") {
        return true;
    }
    eprintln!(
        "not run: set DATAFORGE_TEST_PG_CLUSTER=1 to start a PostgreSQL primary and replica \
         (scripts/pg-cluster, needs /usr/lib/postgresql/15/bin and root) for this test"
    );
    false
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/pg-cluster")
}

/// A primary and a replica started by scripts/pg-cluster; stopped when dropped, panic or not.
struct Cluster {
    dir: tempfile::TempDir,
    primary_port: u16,
    replica_port: u16,
}

impl Cluster {
    fn start() -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        // the servers run as the postgres OS user: it must reach the directory
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod the temp dir");
        let mut cluster = Cluster {
            dir,
            primary_port: 0,
            replica_port: 0,
        };
        let out = cluster.run(&["start"]);
        let port = |name: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}=")))
                .and_then(|p| p.trim().parse().ok())
                .unwrap_or_else(|| panic!("{name} in pg-cluster's output:\n{out}"))
        };
        cluster.primary_port = port("PRIMARY_PORT");
        cluster.replica_port = port("REPLICA_PORT");
        cluster
    }

    fn pg_dir(&self) -> PathBuf {
        self.dir.path().join("pg")
    }

    /// Runs `scripts/pg-cluster COMMAND DIR ARGS`, panicking when it fails; its standard output.
    fn run(&self, args: &[&str]) -> String {
        let (command, rest) = args.split_first().expect("a command");
        let output = Command::new(script())
            .arg(command)
            .arg(self.pg_dir())
            .args(rest)
            .output()
            .expect("run scripts/pg-cluster");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "scripts/pg-cluster {args:?} failed:\n{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }

    fn url(port: u16, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{port}/{database}")
    }

    fn primary_url(&self) -> String {
        Cluster::url(self.primary_port, DATABASE)
    }

    fn replica_url(&self) -> String {
        Cluster::url(self.replica_port, DATABASE)
    }

    /// Creates the test database on the primary and waits until the replica has it too.
    fn create_database(&self) {
        psql(
            &Cluster::url(self.primary_port, "postgres"),
            &format!("CREATE DATABASE {DATABASE}"),
        )
        .expect("create the test database");
        let found = poll(Duration::from_secs(30), || {
            psql(
                &Cluster::url(self.replica_port, "postgres"),
                &format!("SELECT count(*) FROM pg_database WHERE datname = '{DATABASE}'"),
            )
            .is_ok_and(|n| n == "1")
        });
        assert!(found, "the replica did not get database {DATABASE} in 30 s");
    }

    /// Waits until the replica has replayed everything the primary has written so far.
    fn wait_replica_caught_up(&self) {
        let lsn = psql(&self.primary_url(), "SELECT pg_current_wal_lsn()").expect("primary LSN");
        let query = format!("SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn");
        let caught_up = poll(Duration::from_secs(30), || {
            psql(&self.replica_url(), &query).is_ok_and(|t| t == "t")
        });
        assert!(caught_up, "the replica did not replay up to {lsn} in 30 s");
    }

    /// A dataforge node on the primary, reading from the replica.
    fn node(&self, name: &str) -> Server {
        let db = self.dir.path().join(format!("{name}.duckdb"));
        let replicas = format!("[\"{}\"]", self.replica_url());
        let primary = self.primary_url();
        // with DATAFORGE_DATABASE__URL given, support leaves out engine_env's database (the one
        // DATAFORGE_TEST_ENGINE=postgres makes on the machine's server for the other tests)
        Server::start_with(
            &db,
            &shipped_schemas(),
            &[
                ("DATAFORGE_DATABASE__ENGINE", "postgres"),
                ("DATAFORGE_DATABASE__URL", &primary),
                ("DATAFORGE_DATABASE__REPLICA_URLS", &replicas),
                ("DATAFORGE_DATABASE__POOL_SIZE", "4"),
            ],
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let stopped = Command::new(script())
            .arg("stop-all")
            .arg(self.pg_dir())
            .status();
        if !stopped.is_ok_and(|s| s.success()) {
            eprintln!(
                "scripts/pg-cluster stop-all {} failed",
                self.pg_dir().display()
            );
        }
    }
}

/// `psql URL -Atc QUERY`: its trimmed output, or its error.
fn psql(url: &str, query: &str) -> Result<String, String> {
    let output = Command::new("psql")
        .args(["-X", "-At", url, "-c", query])
        .output()
        .expect("run psql");
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// Calls `done` every 100 ms until it is true or `limit` has passed; whether it became true.
fn poll(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An HTTP answer with the headers of the replica contract. Status 0: no answer at all.
#[derive(Debug, Clone)]
struct Reply {
    status: u16,
    content_type: String,
    consistency: Option<String>,
    served_by: Option<String>,
    body: Value,
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(30))
        .build()
}

/// `method path` on `node`, with a JSON body and a consistency token when given.
fn call(node: &str, method: &str, path: &str, body: Option<&Value>, token: Option<&str>) -> Reply {
    let mut request = agent().request(method, &format!("{node}{path}"));
    if let Some(token) = token {
        request = request.set(CONSISTENCY, token);
    }
    let result = match body {
        Some(body) => request
            .set("Content-Type", "application/json")
            .send_string(&body.to_string()),
        None => request.call(),
    };
    let response = match result {
        Ok(response) | Err(ureq::Error::Status(_, response)) => response,
        Err(e) => {
            return Reply {
                status: 0,
                content_type: String::new(),
                consistency: None,
                served_by: None,
                body: Value::String(e.to_string()),
            };
        }
    };
    let header = |name: &str| response.header(name).map(str::to_owned);
    let (consistency, served_by) = (header(CONSISTENCY), header(SERVED_BY));
    let status = response.status();
    let content_type = header("content-type").unwrap_or_default();
    let text = response.into_string().unwrap_or_default();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    Reply {
        status,
        content_type,
        consistency,
        served_by,
        body,
    }
}

fn get(node: &str, path: &str, token: Option<&str>) -> Reply {
    call(node, "GET", path, None, token)
}

fn post(node: &str, path: &str, body: &Value) -> Reply {
    call(node, "POST", path, Some(body), None)
}

/// `well(code, 10)` with `depth` as its depth.
fn well_at(code: i64, depth: f64) -> Value {
    let mut record = well(code, 10);
    record["depth_m"] = json!(depth);
    record
}

fn wells(codes: std::ops::Range<i64>, depth: f64) -> Value {
    Value::Array(codes.map(|c| well_at(c, depth)).collect())
}

/// Rows and distinct keys of well_registry with codes in `codes`, on the primary itself.
fn stored_on_primary(url: &str, codes: std::ops::Range<i64>) -> (u64, u64) {
    let out = psql(
        url,
        &format!(
            "SELECT count(*) || ' ' || count(DISTINCT well_code) FROM well_registry \
             WHERE well_code >= {} AND well_code < {}",
            codes.start, codes.end
        ),
    )
    .expect("count on the primary");
    let mut n = out.split(' ').map(|n| n.parse::<u64>().expect("a number"));
    (n.next().unwrap(), n.next().unwrap())
}

/// `(url, state)` of each replica `/health/ready` lists (other fields it may carry aside).
fn replica_states(ready: &Value) -> Vec<(String, String)> {
    let text = |v: &Value| v.as_str().unwrap_or("(not a string)").to_owned();
    ready["replicas"]
        .as_array()
        .map(|replicas| {
            replicas
                .iter()
                .map(|r| (text(&r["url"]), text(&r["state"])))
                .collect()
        })
        .unwrap_or_default()
}

/// The failures of the replica contract, reported together at the end.
#[derive(Default)]
struct Checks(Vec<String>);

impl Checks {
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            let what = what();
            eprintln!("FAILED: {what}");
            self.0.push(what);
        }
    }

    fn finish(self) {
        assert!(
            self.0.is_empty(),
            "{} check(s) of the replica contract failed:\n- {}",
            self.0.len(),
            self.0.join("\n- ")
        );
    }
}

#[test]
fn writes_through_two_nodes_land_once_under_the_conflict_rules() {
    if !enabled() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let cluster = Cluster::start();
    cluster.create_database();
    let node_a = cluster.node("a");
    let node_b = cluster.node("b");
    let (a, b) = (node_a.base.as_str(), node_b.base.as_str());
    let primary = cluster.primary_url();

    // writes through each node, stored once
    let answer = post(a, &format!("{WR}/records"), &wells(1..26, 100.0));
    assert_eq!(answer.status, 201, "{answer:?}");
    assert_eq!(answer.body["inserted"], json!(25), "{answer:?}");
    let answer = post(b, &format!("{WR}/records"), &wells(26..51, 200.0));
    assert_eq!(answer.status, 201, "{answer:?}");
    assert_eq!(answer.body["inserted"], json!(25), "{answer:?}");
    assert_eq!(stored_on_primary(&primary, 1..51), (50, 50));
    let token = answer.consistency.as_deref();
    for node in [a, b] {
        let count = get(node, &format!("{WR}/count"), token);
        assert_eq!(count.status, 200, "{count:?}");
        assert_eq!(count.body["count"], json!(50), "{count:?}");
    }

    // a key stored through one node is a conflict through the other
    let answer = post(
        a,
        &format!("{WR}/records?on_conflict=error"),
        &well(1000, 1),
    );
    assert_eq!(answer.status, 201, "{answer:?}");
    let answer = post(
        b,
        &format!("{WR}/records?on_conflict=error"),
        &well(1000, 2),
    );
    assert_eq!(answer.status, 409, "through B after A: {answer:?}");
    let answer = post(
        b,
        &format!("{WR}/records?on_conflict=error"),
        &well(1001, 1),
    );
    assert_eq!(answer.status, 201, "{answer:?}");
    let answer = post(
        a,
        &format!("{WR}/records?on_conflict=error"),
        &well(1001, 2),
    );
    assert_eq!(answer.status, 409, "through A after B: {answer:?}");
    let answer = post(
        a,
        &format!("{WR}/records?on_conflict=ignore"),
        &well(1001, 3),
    );
    assert_eq!(answer.status, 201, "{answer:?}");
    assert_eq!(answer.body["skipped"], json!(1), "{answer:?}");
    assert_eq!(
        psql(
            &primary,
            "SELECT string_agg(field_code::text, ',' ORDER BY well_code) FROM well_registry \
             WHERE well_code IN (1000, 1001)"
        )
        .as_deref(),
        Ok("1,1"),
        "the first writes stay"
    );

    // the same new keys through both nodes at once: one request wins, the other gets 409
    for round in 0..10 {
        let codes = 2000 + round * 10..2010 + round * 10;
        let barrier = Arc::new(Barrier::new(2));
        let statuses: Vec<u16> = [a, b]
            .into_iter()
            .map(|node| {
                let (node, barrier, codes) = (node.to_owned(), barrier.clone(), codes.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    post(&node, &format!("{WR}/records"), &wells(codes, 1.0)).status
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().expect("writer thread"))
            .collect();
        let mut sorted = statuses.clone();
        sorted.sort();
        assert_eq!(sorted, [201, 409], "round {round}: {statuses:?}");
        assert_eq!(stored_on_primary(&primary, codes), (10, 10));
    }

    // concurrent upserts of the same keys through both nodes: one record per key, and each request
    // settles whole (all keys end with the values of the request that settled last)
    let threads: Vec<_> = [(a, 1.0), (b, 2.0)]
        .into_iter()
        .flat_map(|(node, base)| (0..2).map(move |t| (node.to_owned(), base * 1000.0 + t as f64)))
        .map(|(node, base)| {
            std::thread::spawn(move || {
                for i in 0..15 {
                    let depth = base + i as f64 / 100.0;
                    let answer = post(
                        &node,
                        &format!("{WR}/records?on_conflict=upsert"),
                        &wells(3000..3040, depth),
                    );
                    assert_eq!(answer.status, 201, "{answer:?}");
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("upserting thread");
    }
    assert_eq!(stored_on_primary(&primary, 3000..3040), (40, 40));
    assert_eq!(
        psql(
            &primary,
            "SELECT count(DISTINCT depth_m) FROM well_registry \
             WHERE well_code >= 3000 AND well_code < 3040"
        )
        .as_deref(),
        Ok("1"),
        "one request's values for every key"
    );
    let total = stored_on_primary(&primary, 0..1_000_000);
    assert_eq!(total, (50 + 2 + 100 + 40, 50 + 2 + 100 + 40));
}

#[test]
fn reads_go_to_the_replica_and_see_the_clients_own_writes() {
    if !enabled() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let cluster = Cluster::start();
    cluster.create_database();
    let node_a = cluster.node("a");
    let node_b = cluster.node("b");
    let (a, b) = (node_a.base.as_str(), node_b.base.as_str());
    let mut checks = Checks::default();

    // every kind of write answers with a token
    let mut writes: Vec<(&str, Reply)> = vec![(
        "POST records",
        post(a, &format!("{WR}/records"), &wells(1..21, 100.0)),
    )];
    writes.push((
        "PATCH record",
        call(
            b,
            "PATCH",
            &format!("{WR}/records/1"),
            Some(&json!({"depth_m": 150.0})),
            None,
        ),
    ));
    writes.push((
        "PUT record",
        call(
            a,
            "PUT",
            &format!("{WR}/records/2"),
            Some(&well(2, 11)),
            None,
        ),
    ));
    writes.push((
        "DELETE record",
        call(b, "DELETE", &format!("{WR}/records/3"), None, None),
    ));
    writes.push((
        "PATCH by filter",
        call(
            a,
            "PATCH",
            &format!("{WR}/records?well_code=eq.4"),
            Some(&json!({"operator": "Petro"})),
            None,
        ),
    ));
    writes.push((
        "POST update",
        post(
            b,
            &format!("{WR}/update"),
            &json!({"filter": {"eq": {"well_code": 5}}, "set": {"operator": "Other"}}),
        ),
    ));
    writes.push((
        "DELETE by filter",
        call(
            a,
            "DELETE",
            &format!("{WR}/records?well_code=eq.6"),
            None,
            None,
        ),
    ));
    writes.push((
        "POST delete",
        post(
            b,
            &format!("{WR}/delete"),
            &json!({"filter": {"eq": {"well_code": 7}}}),
        ),
    ));
    for (what, reply) in &writes {
        assert!(
            (200..300).contains(&reply.status),
            "{what} succeeds: {reply:?}"
        );
        checks.check(reply.consistency.is_some(), || {
            format!("{what} answers with a {CONSISTENCY} token (got none)")
        });
    }
    let last_token = writes.iter().rev().find_map(|(_, r)| r.consistency.clone());

    // once the replica has caught up, reads without a token are served by it
    cluster.wait_replica_caught_up();
    let mut last = None;
    let by_replica = poll(Duration::from_secs(20), || {
        let reply = get(b, &format!("{WR}/count"), None);
        let done = reply.served_by.as_deref() == Some("replica");
        last = Some(reply);
        done
    });
    checks.check(by_replica, || {
        format!(
            "a read without a token is served by the caught-up replica within 20 s \
             ({SERVED_BY}: replica); the last answer: {last:?}"
        )
    });
    let reads = [
        ("GET record", format!("{WR}/records/1")),
        ("GET page", format!("{WR}/records?limit=5")),
        ("GET count", format!("{WR}/count")),
        (
            "GET aggregate",
            format!("{WR}/aggregate?group_by=field_code&metrics=count()"),
        ),
        ("GET export", format!("{WR}/records?format=csv")),
    ];
    for (what, path) in &reads {
        for (node, token) in [(a, None), (b, last_token.as_deref())] {
            let reply = get(node, path, token);
            assert_eq!(reply.status, 200, "{what}: {reply:?}");
            checks.check(
                matches!(reply.served_by.as_deref(), Some("primary" | "replica")),
                || {
                    format!(
                        "{what} (token: {token:?}) answers with {SERVED_BY}: primary|replica, got \
                         {:?}",
                        reply.served_by
                    )
                },
            );
        }
    }
    let ready = get(a, "/health/ready", None);
    assert_eq!(ready.status, 200, "{ready:?}");
    checks.check(
        ready.body["replicas"] == json!([{"url": cluster.replica_url(), "state": "ok"}]),
        || {
            format!(
                "/health/ready lists the replica as ok: replicas = [{{url: {}, state: ok}}], \
                 got {}",
                cluster.replica_url(),
                ready.body
            )
        },
    );

    // read-your-writes: a write through one node, read at once through the other with its token
    let mut unseen = Vec::new();
    let mut served = BTreeMap::<String, u32>::new();
    let mut missing_tokens = 0;
    for i in 0..200i64 {
        let (writer, reader) = if i % 2 == 0 { (a, b) } else { (b, a) };
        let code = 10_000 + i;
        let depth = i as f64;
        let written = post(writer, &format!("{WR}/records"), &well_at(code, depth));
        assert_eq!(written.status, 201, "{written:?}");
        missing_tokens += written.consistency.is_none() as u32;
        let read = get(
            reader,
            &format!("{WR}/records/{code}"),
            written.consistency.as_deref(),
        );
        *served
            .entry(read.served_by.clone().unwrap_or_else(|| "none".into()))
            .or_default() += 1;
        if read.status != 200 || read.body["depth_m"] != json!(depth) {
            unseen.push(format!("insert {code}: {} {}", read.status, read.body));
        }
        if i % 4 == 3 {
            // an update of a record written earlier, read back at once
            let code = 10_000 + i - 3;
            let patched = call(
                writer,
                "PATCH",
                &format!("{WR}/records/{code}"),
                Some(&json!({"depth_m": depth + 0.5})),
                None,
            );
            assert_eq!(patched.status, 200, "{patched:?}");
            missing_tokens += patched.consistency.is_none() as u32;
            let read = get(
                reader,
                &format!("{WR}/records/{code}"),
                patched.consistency.as_deref(),
            );
            if read.status != 200 || read.body["depth_m"] != json!(depth + 0.5) {
                unseen.push(format!("update {code}: {} {}", read.status, read.body));
            }
        }
    }
    eprintln!("read-your-writes reads served by: {served:?}");
    checks.check(missing_tokens == 0, || {
        format!("{missing_tokens} of 250 writes in the read-your-writes loop carried no token")
    });
    checks.check(unseen.is_empty(), || {
        format!(
            "{} of 250 reads with the token did not see the write (first: {:?})",
            unseen.len(),
            unseen.first()
        )
    });

    // the replica stopped: reads go on from the primary, and /health/ready says it is down
    node_a.log_lines();
    cluster.run(&["stop-replica"]);
    for (name, node) in [("A", a), ("B", b)] {
        let mut last = None;
        let went_on = poll(Duration::from_secs(15), || {
            let reply = get(node, &format!("{WR}/count"), None);
            let done = reply.status == 200 && reply.served_by.as_deref() == Some("primary");
            last = Some(reply);
            done
        });
        checks.check(went_on, || {
            format!(
                "with the replica stopped, reads through {name} are served by the primary within \
                 15 s; the last answer: {last:?}"
            )
        });
        let mut failed = Vec::new();
        for _ in 0..20 {
            let reply = get(node, &format!("{WR}/records?limit=5"), None);
            if reply.status != 200 || reply.served_by.as_deref() != Some("primary") {
                failed.push(format!("{} {:?}", reply.status, reply.served_by));
            }
        }
        checks.check(failed.is_empty(), || {
            format!(
                "with the replica stopped, {} of 20 reads through {name} were not answered 200 by \
                 the primary: {failed:?}",
                failed.len()
            )
        });
        // reads keep working whatever the routing: they must not fail
        let reply = get(node, &format!("{WR}/count"), None);
        assert_eq!(
            reply.status, 200,
            "reads go on with the replica down: {reply:?}"
        );
    }
    let mut last = None;
    let down = poll(Duration::from_secs(15), || {
        let ready = get(a, "/health/ready", None);
        let done = ready.status == 200
            && replica_states(&ready.body) == [(cluster.replica_url(), "down".to_owned())];
        last = Some(ready);
        done
    });
    checks.check(down, || {
        format!("/health/ready answers 200 with the replica down within 15 s; got {last:?}")
    });
    checks.check(
        node_a
            .log_lines()
            .iter()
            .any(|l| l.to_lowercase().contains("replica")),
        || "node A logs that the replica is down".into(),
    );
    // writes go on, and are read back through the other node with their token
    let written = post(a, &format!("{WR}/records"), &well_at(20_000, 1.0));
    assert_eq!(written.status, 201, "{written:?}");
    let read = get(
        b,
        &format!("{WR}/records/20000"),
        written.consistency.as_deref(),
    );
    assert_eq!(read.status, 200, "{read:?}");

    // the replica back: reads return to it
    cluster.run(&["start-replica"]);
    cluster.wait_replica_caught_up();
    let mut last = None;
    let back = poll(Duration::from_secs(30), || {
        let reply = get(a, &format!("{WR}/count"), None);
        let done = reply.served_by.as_deref() == Some("replica");
        last = Some(reply);
        done
    });
    checks.check(back, || {
        format!("reads return to the restarted replica within 30 s; the last answer: {last:?}")
    });
    checks.finish();
}

#[test]
fn writes_go_on_through_both_nodes_after_the_replica_is_promoted() {
    if !enabled() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let cluster = Cluster::start();
    cluster.create_database();
    let node_a = cluster.node("a");
    let node_b = cluster.node("b");
    let (a, b) = (node_a.base.as_str(), node_b.base.as_str());
    for (node, codes) in [(a, 1..11), (b, 11..21)] {
        let answer = post(node, &format!("{WR}/records"), &wells(codes, 1.0));
        assert_eq!(answer.status, 201, "{answer:?}");
    }
    cluster.wait_replica_caught_up();

    // the primary gone: writes are refused with 503
    cluster.run(&["stop-primary"]);
    for (name, node) in [("A", a), ("B", b)] {
        let answer = post(node, &format!("{WR}/records"), &well(100, 1));
        assert_eq!(answer.status, 503, "a write through {name}: {answer:?}");
        assert!(
            answer.content_type.starts_with("application/problem+json"),
            "{answer:?}"
        );
    }

    // the replica promoted and restarted on the old primary's port: database.url reaches it, and
    // the nodes' pools reconnect to it
    cluster.run(&["promote-replica", "--take-primary-port"]);
    let started = Instant::now();
    for (name, node, code) in [("A", a, 200), ("B", b, 201)] {
        let mut last = None;
        let written = poll(Duration::from_secs(30), || {
            let answer = post(
                node,
                &format!("{WR}/records?on_conflict=upsert"),
                &well(code, 1),
            );
            let done = answer.status == 201;
            last = Some(answer);
            done
        });
        assert!(
            written,
            "writes through {name} go on within 30 s of the promotion; the last answer: {last:?}"
        );
    }
    eprintln!("writes went on {:?} after the promotion", started.elapsed());
    // nothing written before the failover is lost, and every write landed once
    assert_eq!(
        stored_on_primary(&cluster.primary_url(), 0..1_000_000),
        (22, 22)
    );
    for node in [a, b] {
        let answer = post(node, &format!("{WR}/records"), &well(200, 1));
        assert_eq!(answer.status, 409, "{answer:?}");
        // the old replica's URL answers no more: reads go to the (new) primary once the node
        // has seen that
        let mut last = None;
        let counted = poll(Duration::from_secs(15), || {
            let count = get(node, &format!("{WR}/count"), None);
            let done = count.status == 200 && count.body["count"] == json!(22);
            last = Some(count);
            done
        });
        assert!(counted, "reads go on after the promotion: {last:?}");
    }
}
