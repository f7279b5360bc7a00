//! Starting the binary the way a new user does: the listen address, settings from the environment
//! and their messages, a port already taken.

mod support;

use std::net::TcpListener;

use support::{Server, run_with, serve_until_exit_with, shipped_schemas, temp_db};

#[test]
fn a_taken_port_fails_at_once_before_anything_is_created() {
    let (dir, db) = temp_db();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let db = db.parent().unwrap().join("not-yet/dataforge.duckdb");
    let (db_arg, schemas) = (db.to_string_lossy(), shipped_schemas());
    let (code, _, stderr) = run_with(
        &[
            "serve",
            "--listen",
            &address,
            "--db",
            &db_arg,
            "--schemas",
            &schemas.to_string_lossy(),
        ],
        dir.path(),
        &[],
    );
    assert_ne!(code, 0);
    assert!(
        stderr.contains(&format!("cannot listen on {address}")),
        "{stderr}"
    );
    assert!(!stderr.contains("authentication"), "started work: {stderr}");
    assert!(
        !db.parent().unwrap().exists(),
        "the database directory was created"
    );
}

#[test]
fn a_host_name_is_a_listen_address() {
    let (_dir, db) = temp_db();
    let server = Server::start_on("localhost:0", &db, &shipped_schemas(), &[]);
    assert_eq!(server.get("/health").status, 200);
    let (_dir, db) = temp_db();
    let (code, _, stderr) = run_with(
        &[
            "serve",
            "--listen",
            "localhost",
            "--db",
            &db.to_string_lossy(),
        ],
        db.parent().unwrap(),
        &[],
    );
    assert_ne!(code, 0);
    assert!(
        stderr.contains("server.listen `localhost` has no port")
            && stderr.contains("localhost:8000"),
        "{stderr}"
    );
}

#[test]
fn a_mistyped_variable_is_named_as_written() {
    let (dir, db) = temp_db();
    let (code, _, stderr) = serve_until_exit_with(
        &db,
        &shipped_schemas(),
        dir.path(),
        &[("DATAFORGE_DATABASE__MEMORY_LIMT", "1GB")],
    );
    assert_ne!(code, 0);
    assert!(
        stderr.contains("environment variable DATAFORGE_DATABASE__MEMORY_LIMT")
            && stderr.contains("memory_limit"),
        "{stderr}"
    );
    let (code, _, stderr) = run_with(
        &["check", &shipped_schemas().to_string_lossy()],
        dir.path(),
        &[("DATAFORGE_SERVER__MAX_CONNECTIONS", "many")],
    );
    assert_ne!(code, 0);
    assert!(
        stderr.contains("DATAFORGE_SERVER__MAX_CONNECTIONS") && stderr.contains("many"),
        "{stderr}"
    );
}

#[test]
fn database_settings_name_the_engine_they_belong_to() {
    let (dir, _) = temp_db();
    let check = |variables: &[(&str, &str)]| {
        let (code, _, stderr) = run_with(
            &["check", &shipped_schemas().to_string_lossy()],
            dir.path(),
            variables,
        );
        assert_ne!(code, 0, "{variables:?} accepted");
        stderr
    };
    // a wrong type inside the flattened [database] section still names its variable
    let stderr = check(&[("DATAFORGE_DATABASE__THREADS", "many")]);
    assert!(stderr.contains("DATAFORGE_DATABASE__THREADS"), "{stderr}");
    let stderr = check(&[("DATAFORGE_DATABASE__ENGINE", "postgres")]);
    assert!(stderr.contains("needs database.url"), "{stderr}");
    let stderr = check(&[("DATAFORGE_DATABASE__URL", "postgres://127.0.0.1/test")]);
    assert!(
        stderr.contains("database.engine = \"postgres\"") && stderr.contains("\"duckdb\""),
        "{stderr}"
    );
    let stderr = check(&[("DATAFORGE_DATABASE__ENGINE", "mysql")]);
    assert!(stderr.contains("`duckdb` or `postgres`"), "{stderr}");
}

#[test]
fn a_memory_limit_that_is_not_a_size_is_explained() {
    let (dir, db) = temp_db();
    let (code, _, stderr) = serve_until_exit_with(
        &db,
        &shipped_schemas(),
        dir.path(),
        &[("DATAFORGE_DATABASE__MEMORY_LIMIT", "lots")],
    );
    assert_ne!(code, 0);
    assert!(
        stderr.contains("database.memory_limit `lots` is not a size") && stderr.contains("2GiB"),
        "{stderr}"
    );
    assert!(!db.exists(), "the database was opened");
}
