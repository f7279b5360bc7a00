//! Starts the real `dataforge` binary on an ephemeral loopback port with a DuckDB file in a
//! temporary directory, and talks to it over real HTTP. With `DATAFORGE_TEST_ENGINE=postgres` the
//! same tests run on PostgreSQL: each database path becomes a database of its own on the server
//! `DATAFORGE_TEST_POSTGRES` names (default: the machine's own, 127.0.0.1:5432).

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

/// The schemas shipped in the repository.
pub fn shipped_schemas() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas")
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_dataforge")
}

/// A running server.
pub struct Server {
    pub base: String,
    child: Child,
    /// Kept so the thread draining the server's stderr keeps going (a full pipe would block it).
    log: mpsc::Receiver<String>,
    /// What the server logged before it listened, until [`Server::log_lines`] hands it out.
    startup: std::cell::RefCell<Vec<String>>,
}

/// An HTTP answer: status, content type and parsed JSON body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: Value,
}

impl Server {
    /// Starts a server on `db` with `schemas`, plus extra environment variables.
    #[allow(clippy::zombie_processes)] // the returned Server waits for the child when dropped
    pub fn start_with(db: &Path, schemas: &Path, env: &[(&str, &str)]) -> Server {
        Server::start_on("127.0.0.1:0", db, schemas, env)
    }

    /// [`Server::start_with`] on the address `listen`.
    #[allow(clippy::zombie_processes)]
    pub fn start_on(listen: &str, db: &Path, schemas: &Path, env: &[(&str, &str)]) -> Server {
        let mut command = Command::new(binary());
        command
            .args(["serve", "--listen", listen, "--db"])
            .arg(db)
            .arg("--schemas")
            .arg(schemas)
            .current_dir(
                db.ancestors()
                    .find(|p| p.is_dir())
                    .expect("db has an existing ancestor"),
            )
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // a test that names its own database (postgres_nodes) gets no database from engine_env
        if !env.iter().any(|(key, _)| *key == "DATAFORGE_DATABASE__URL") {
            command.envs(engine_env(db));
        }
        for (key, value) in env {
            command.env(key, value);
            if let Some(same) = on_postgres().then(|| postgres_name(key)).flatten() {
                command.env(same, value);
            }
        }
        let mut child = command.spawn().expect("start dataforge");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (lines, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let mut seen = Vec::new();
        loop {
            match log.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => {
                    if let Some(rest) = line.split("listening on http://").nth(1) {
                        let address = rest.split_whitespace().next().expect("address follows");
                        let base = format!("http://{address}");
                        seen.push(line);
                        return Server {
                            base,
                            child,
                            log,
                            startup: std::cell::RefCell::new(seen),
                        };
                    }
                    seen.push(line);
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("server did not start; its log:\n{}", seen.join("\n"));
                }
            }
        }
    }

    pub fn start(db: &Path) -> Server {
        Server::start_with(db, &shipped_schemas(), &[])
    }

    pub fn get(&self, path: &str) -> Answer {
        answer(ureq::get(&format!("{}{}", self.base, path)).call())
    }

    pub fn post_json(&self, path: &str, body: &Value) -> Answer {
        self.post_raw(path, "application/json", body.to_string().as_bytes())
    }

    pub fn post_raw(&self, path: &str, content_type: &str, body: &[u8]) -> Answer {
        answer(
            ureq::post(&format!("{}{}", self.base, path))
                .set("Content-Type", content_type)
                .send_bytes(body),
        )
    }

    /// A request with any method and an optional JSON body.
    pub fn send(&self, method: &str, path: &str, body: Option<&Value>) -> Answer {
        self.send_as(None, method, path, body)
    }

    /// [`Server::send`] with a bearer token, when given.
    pub fn send_as(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Answer {
        let mut request = ureq::request(method, &format!("{}{}", self.base, path));
        if let Some(token) = token {
            request = request.set("Authorization", &format!("Bearer {token}"));
        }
        answer(match body {
            Some(body) => request
                .set("Content-Type", "application/json")
                .send_string(&body.to_string()),
            None => request.call(),
        })
    }

    /// The server's peak resident memory so far (VmHWM), in MiB.
    pub fn peak_rss_mib(&self) -> u64 {
        self.status_line("VmHWM:") / 1024
    }

    /// The server's resident memory now (VmRSS), in MiB.
    pub fn rss_mib(&self) -> u64 {
        self.status_line("VmRSS:") / 1024
    }

    /// The server's address space now (VmSize), in MiB.
    pub fn vsz_mib(&self) -> u64 {
        self.status_line("VmSize:") / 1024
    }

    /// The server's threads now.
    pub fn threads(&self) -> u64 {
        self.status_line("Threads:")
    }

    /// A number of the server's `/proc/PID/status` (kB where it has a unit).
    fn status_line(&self, name: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the server's /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{name} in the server's status"))
    }

    /// Kills the server with SIGKILL, as a crash would, and waits for it to die.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Log lines the server printed since it started (or since the last call).
    pub fn log_lines(&self) -> Vec<String> {
        let mut lines = std::mem::take(&mut *self.startup.borrow_mut());
        lines.extend(self.log.try_iter());
        lines
    }

    /// Stops the server with SIGTERM and waits for a clean exit.
    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let status = self.child.wait().expect("wait for dataforge");
        assert!(status.success(), "dataforge exited with {status}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn answer(result: Result<ureq::Response, ureq::Error>) -> Answer {
    let response = match result {
        Ok(response) => response,
        Err(ureq::Error::Status(_, response)) => response,
        Err(e) => panic!("request failed: {e}"),
    };
    let status = response.status();
    let content_type = response
        .header("content-type")
        .unwrap_or_default()
        .to_owned();
    let text = response.into_string().expect("read body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    Answer {
        status,
        content_type,
        body,
    }
}

/// Runs the binary to completion, returning exit code, stdout and stderr.
pub fn run(args: &[&str], dir: &Path) -> (i32, String, String) {
    run_with(args, dir, &[])
}

/// [`run`] with extra environment variables.
pub fn run_with(args: &[&str], dir: &Path, env: &[(&str, &str)]) -> (i32, String, String) {
    let db = args
        .iter()
        .position(|a| *a == "--db")
        .and_then(|i| args.get(i + 1));
    let output = Command::new(binary())
        .args(args)
        .current_dir(dir)
        .envs(db.map(|db| engine_env(Path::new(db))).unwrap_or_default())
        .envs(env.iter().copied())
        .output()
        .expect("run dataforge");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A `well_production` record; `i` makes the key unique.
pub fn production(i: i64) -> Value {
    let well = 100_000 + i / 12;
    let month = i % 12 + 1;
    serde_json::json!({
        "field_code": 1 + well % 7,
        "field_name": format!("FIELD-{}", 1 + well % 7),
        "well_code": well,
        "well_reference": format!("REF-{well}"),
        "well_name": format!("WELL-{well}"),
        "production_period": format!("2020-{month:02}-01T00:00:00Z"),
        "days_on_production": 1 + i % 31,
        "oil_production_kbd": (i % 100) as f64 / 10.0,
        "gas_production_mmcfd": 1.5,
        "liquids_production_kbd": 0.25,
        "water_production_kbd": 2.0,
        "data_source": "ANP",
        "source_data": "{\"src\":\"anp\"}",
        "partition_0": format!("p{}", i % 10)
    })
}

/// `production(i)` with another oil rate.
pub fn with_oil(i: i64, oil: f64) -> Value {
    let mut record = production(i);
    record["oil_production_kbd"] = serde_json::json!(oil);
    record
}

/// The stored `well_production` record with the key of `production(i)`, read by key.
pub fn stored(server: &Server, i: i64) -> Value {
    let r = production(i);
    let answer = server.get(&format!(
        "/v1/datasets/well_production/records/{}/{}/{}",
        r["field_code"],
        r["well_code"],
        r["production_period"].as_str().unwrap_or_default()
    ));
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.body
}

/// Runs `dataforge serve` on `db` and `schemas` for a start that is expected to fail, returning
/// exit code, stdout and stderr.
pub fn serve_until_exit(db: &Path, schemas: &Path, dir: &Path) -> (i32, String, String) {
    serve_until_exit_with(db, schemas, dir, &[])
}

/// [`serve_until_exit`] with extra environment variables.
pub fn serve_until_exit_with(
    db: &Path,
    schemas: &Path,
    dir: &Path,
    env: &[(&str, &str)],
) -> (i32, String, String) {
    let (db, schemas) = (db.to_string_lossy(), schemas.to_string_lossy());
    run_with(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--db",
            &db,
            "--schemas",
            &schemas,
        ],
        dir,
        env,
    )
}

/// A temporary directory and a database file inside it (created by the server).
pub fn temp_db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("test.duckdb");
    (dir, db)
}

/// A `well_registry` record in field `field`.
pub fn well(code: i64, field: i64) -> Value {
    serde_json::json!({"well_code": code, "well_name": format!("W{code}"), "field_code": field,
           "depth_m": 1000.0, "operator": "Acme"})
}

/// `dataforge keys create`: the secret is the last line of standard output.
pub fn create_key(db: &Path, name: &str, grants: &[&str], expires: Option<&str>) -> String {
    let mut args = vec![
        "keys",
        "--db",
        db.to_str().unwrap(),
        "create",
        "--name",
        name,
    ];
    for grant in grants {
        args.extend(["--grant", grant]);
    }
    if let Some(expires) = expires {
        args.extend(["--expires", expires]);
    }
    let (code, stdout, stderr) = run(&args, db.parent().unwrap());
    assert_eq!(code, 0, "{stderr}");
    stdout.lines().last().expect("a secret").to_owned()
}

/// Whether the tests run on PostgreSQL (`DATAFORGE_TEST_ENGINE=postgres`).
pub fn on_postgres() -> bool {
    std::env::var("DATAFORGE_TEST_ENGINE").as_deref() == Ok("postgres")
}

/// The settings that put the database of `db` on the engine under test: none for DuckDB (the
/// file), a database of its own, created if missing, for PostgreSQL.
pub fn engine_env(db: &Path) -> Vec<(String, String)> {
    use std::hash::{Hash, Hasher};
    if !on_postgres() {
        return Vec::new();
    }
    let server = std::env::var("DATAFORGE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    db.hash(&mut hasher);
    let name = format!("dataforge_test_{:016x}", hasher.finish());
    let created = Command::new("psql")
        .arg(format!("{server}/postgres"))
        .args(["-qc", &format!("CREATE DATABASE {name}")])
        .output()
        .expect("run psql");
    let stderr = String::from_utf8_lossy(&created.stderr);
    assert!(
        created.status.success() || stderr.contains("already exists"),
        "cannot create the test database {name}: {stderr}"
    );
    vec![
        ("DATAFORGE_DATABASE__ENGINE".into(), "postgres".into()),
        ("DATAFORGE_DATABASE__URL".into(), format!("{server}/{name}")),
    ]
}

/// PostgreSQL's name for a DuckDB limit a test sets, where the two mean the same to a client.
fn postgres_name(duckdb: &str) -> Option<&'static str> {
    match duckdb {
        "DATAFORGE_DATABASE__READ_CONNECTIONS" => Some("DATAFORGE_DATABASE__POOL_SIZE"),
        "DATAFORGE_DATABASE__QUERY_TIMEOUT_MS" => Some("DATAFORGE_DATABASE__STATEMENT_TIMEOUT_MS"),
        _ => None,
    }
}

/// Whether a test of the DuckDB store's own machinery (its key index, writer queue, journal or
/// file) is to be left out: on PostgreSQL it has no counterpart. Says so when it is.
pub fn duckdb_only(what: &str) -> bool {
    if on_postgres() {
        eprintln!("not run on PostgreSQL: {what} belongs to the DuckDB store");
    }
    on_postgres()
}

/// Whether a test of the PostgreSQL store's own behaviour is to be left out: it runs only with
/// `DATAFORGE_TEST_ENGINE=postgres`. Says so when it is.
pub fn postgres_only(what: &str) -> bool {
    if !on_postgres() {
        eprintln!(
            "run with DATAFORGE_TEST_ENGINE=postgres: {what} belongs to the PostgreSQL store"
        );
    }
    !on_postgres()
}
