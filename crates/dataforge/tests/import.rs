//! `dataforge import` through a running server (`--url`, with a token when auth is on), its
//! summaries and errors (conflicting keys as JSON objects), and the embedded import's message when
//! a server holds the database.

mod support;

use std::path::{Path, PathBuf};

use support::{Server, create_key, run, run_with, shipped_schemas, temp_db};

/// `rows` generated well_registry records in a CSV file.
fn registry_csv(dir: &Path, name: &str, start: u64, rows: u64) -> PathBuf {
    let file = dir.join(name);
    let (code, _, err) = run(
        &[
            "generate",
            "--dataset",
            "well_registry",
            "--rows",
            &rows.to_string(),
            "--start",
            &start.to_string(),
            "--format",
            "csv",
            "-o",
            &file.to_string_lossy(),
            "--schemas",
            &shipped_schemas().to_string_lossy(),
        ],
        dir,
    );
    assert_eq!(code, 0, "{err}");
    file
}

#[test]
fn files_go_through_a_running_server() {
    let (dir, db) = temp_db();
    let server = Server::start_with(
        &db,
        &shipped_schemas(),
        &[("DATAFORGE_AUTH__REQUIRED", "true")],
    );
    let token = create_key(&db, "loader", &["well_registry:read,write"], None);
    let first = registry_csv(dir.path(), "a.csv", 0, 500);
    let second = registry_csv(dir.path(), "b.csv", 500, 300);
    let import = |files: &[&Path], extra: &[&str], env: &[(&str, &str)]| {
        let mut args = vec![
            "import",
            "--url",
            server.base.as_str(),
            "--dataset",
            "well_registry",
        ];
        args.extend_from_slice(extra);
        let files: Vec<String> = files
            .iter()
            .map(|f| f.to_string_lossy().into_owned())
            .collect();
        args.extend(files.iter().map(String::as_str));
        run_with(&args, dir.path(), env)
    };

    let (code, _, stderr) = import(&[&first], &[], &[]);
    assert_ne!(code, 0);
    assert!(stderr.contains("401 Unauthorized"), "{stderr}");

    let (code, stdout, stderr) = import(&[&first, &second], &["--token", &token], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("a.csv: 500 rows") && stdout.contains("inserted 500"),
        "{stdout}"
    );
    assert!(
        stdout.contains("b.csv: 300 rows") && stdout.contains("inserted 300"),
        "{stdout}"
    );
    let count = server.send_as(
        Some(&token),
        "GET",
        "/v1/datasets/well_registry/count",
        None,
    );
    assert_eq!(count.body["count"], 800);

    // the token from the environment; conflicting keys are JSON objects, and nothing is written
    let (code, _, stderr) = import(&[&second], &[], &[("DATAFORGE_TOKEN", &token)]);
    assert_ne!(code, 0);
    assert!(stderr.contains("409 Primary key conflict"), "{stderr}");
    assert!(
        stderr.contains(r#"key {"well_code":501} (exists)"#),
        "{stderr}"
    );
    let (code, stdout, stderr) = import(
        &[&second],
        &["--on-conflict", "upsert"],
        &[("DATAFORGE_TOKEN", &token)],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("updated 300"), "{stdout}");
}

#[test]
fn the_embedded_import_says_to_use_the_url_while_a_server_runs() {
    if support::duckdb_only("the database file's lock") {
        return;
    }
    let (dir, db) = temp_db();
    let file = registry_csv(dir.path(), "a.csv", 0, 10);
    let server = Server::start(&db);
    let (db_arg, file_arg) = (db.to_string_lossy(), file.to_string_lossy());
    let schemas = shipped_schemas();
    let schemas = schemas.to_string_lossy();
    let args = [
        "import",
        "--dataset",
        "well_registry",
        "--db",
        &db_arg,
        "--schemas",
        &schemas,
        &file_arg,
    ];
    let (code, _, stderr) = run(&args, dir.path());
    assert_ne!(code, 0);
    assert!(
        stderr.contains("in use by another process") && stderr.contains("dataforge import --url"),
        "{stderr}"
    );
    server.stop();

    let (code, stdout, stderr) = run(&args, dir.path());
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("a.csv: 10 rows") && stdout.contains("inserted 10"),
        "{stdout}"
    );
    assert!(
        !stderr.contains("INFO"),
        "no log lines above the progress bar: {stderr}"
    );
    let (code, _, stderr) = run(&args, dir.path());
    assert_ne!(code, 0);
    assert!(
        stderr.contains(r#"key {"well_code":1} (exists)"#),
        "{stderr}"
    );
}
