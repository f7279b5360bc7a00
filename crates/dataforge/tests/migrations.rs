//! Schema evolution end to end: the schema files change between starts of the real server, and
//! the database follows them (safe steps by themselves, checked steps once every stored record
//! passes, destructive ones only through `dataforge migrate --apply --allow-destructive`).

mod support;

use std::path::PathBuf;

use serde_json::{Value, json};
use support::{Server, run, serve_until_exit};

const WR: &str = "/v1/datasets/well_registry";

/// A database and a schema directory holding well_registry as shipped, edited by each test.
struct Setup {
    dir: tempfile::TempDir,
    db: PathBuf,
    schemas: PathBuf,
}

fn shipped_registry() -> String {
    std::fs::read_to_string(support::shipped_schemas().join("well_registry.toml")).unwrap()
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("m.duckdb");
        let schemas = dir.path().join("schemas");
        std::fs::create_dir(&schemas).unwrap();
        let setup = Setup { dir, db, schemas };
        setup.declare(&shipped_registry());
        setup
    }

    fn declare(&self, toml: &str) {
        std::fs::write(self.schemas.join("well_registry.toml"), toml).unwrap();
    }

    fn start(&self) -> Server {
        Server::start_with(&self.db, &self.schemas, &[])
    }

    /// A start expected to fail: its stderr.
    fn refused(&self) -> String {
        let (code, _, stderr) = serve_until_exit(&self.db, &self.schemas, self.dir.path());
        assert_ne!(code, 0, "the start was refused: {stderr}");
        stderr
    }

    fn migrate(&self, flags: &[&str]) -> (i32, String, String) {
        let (db, schemas) = (self.db.to_string_lossy(), self.schemas.to_string_lossy());
        let mut args = vec!["migrate", "--db", &db, "--schemas", &schemas];
        args.extend_from_slice(flags);
        run(&args, self.dir.path())
    }
}

fn well(code: i64, name: &str, operator: Option<&str>) -> Value {
    json!({"well_code": code, "well_name": name, "field_code": 10 + code % 2,
           "spud_date": "2001-02-03", "operator": operator, "depth_m": 100 * code})
}

/// Starts on the shipped schema with three wells (well 3 without an operator).
fn seeded() -> Setup {
    let setup = Setup::new();
    let server = setup.start();
    let wells = json!([
        well(1, "North", Some("Acme")),
        well(2, "South", Some("Bolt")),
        well(3, "East", None)
    ]);
    assert_eq!(
        server.post_json(&format!("{WR}/records"), &wells).status,
        201
    );
    assert_eq!(server.get(WR).body["version"], json!(1));
    server.stop();
    setup
}

fn add_field(toml: &str, after: &str, field: &str) -> String {
    toml.replace(after, &format!("{after}\n\n[[datasets.fields]]\n{field}"))
}

#[test]
fn safe_changes_apply_by_themselves_and_keep_every_record() {
    let setup = seeded();
    // a new optional field with a default at the end, a relaxed rule, a widened type
    let mut toml = shipped_registry()
        .replace("max_length = 120", "max_length = 200")
        .replace(
            "name = \"spud_date\"\ntype = \"date\"",
            "name = \"spud_date\"\ntype = \"timestamp\"",
        )
        .replace("min = 1900-01-01", "min = 1900-01-01T00:00:00Z");
    toml.push_str(
        "\n[[datasets.fields]]\nname = \"basin\"\ntype = \"string\"\ndefault = \"Campos\"\n",
    );
    setup.declare(&toml);
    let server = setup.start();
    let log = server.log_lines().join("\n");
    assert!(log.contains("add optional field `basin`"), "{log}");
    assert_eq!(server.get(WR).body["version"], json!(2));
    let one = server.get(&format!("{WR}/records/1")).body;
    assert_eq!(
        (one["basin"].clone(), one["spud_date"].clone()),
        (json!("Campos"), json!("2001-02-03T00:00:00Z"))
    );
    assert_eq!(one["operator"], json!("Acme"));
    let csv = ureq::get(&format!(
        "{}{WR}/records?format=csv&select=well_code,basin&order=well_code",
        server.base
    ))
    .call()
    .unwrap()
    .into_string()
    .unwrap();
    assert_eq!(
        csv,
        "well_code,basin\r\n1,Campos\r\n2,Campos\r\n3,Campos\r\n"
    );
    assert_eq!(
        server
            .post_json(
                &format!("{WR}/records"),
                &json!({"well_code": 4, "well_name": "W", "field_code": 10, "basin": "Santos"})
            )
            .status,
        201
    );
    server.stop();

    // an optional field in the middle (the table is rewritten), an index added, a rename
    let toml = add_field(
        &toml,
        "name = \"depth_m\"\ntype = \"float\"\nmin = 0\nmax = 15000",
        "name = \"water_depth_m\"\ntype = \"float\"",
    )
    .replace(
        "indexes = [[\"field_code\"]]",
        "indexes = [[\"field_code\"], [\"basin\"]]",
    )
    .replace(
        "name = \"operator\"",
        "name = \"operator_name\"\nrenamed_from = \"operator\"",
    );
    setup.declare(&toml);
    let server = setup.start();
    assert_eq!(server.get(WR).body["version"], json!(3));
    let one = server.get(&format!("{WR}/records/1")).body;
    assert_eq!(
        (
            one["operator_name"].clone(),
            one["water_depth_m"].clone(),
            one["depth_m"].clone()
        ),
        (json!("Acme"), Value::Null, json!(100.0))
    );
    assert!(one.get("operator").is_none());
    let by_basin = server.get(&format!("{WR}/records?basin=eq.Santos&select=well_code"));
    assert_eq!(by_basin.body["items"], json!([{"well_code": 4}]));
    let by_field = server.get(&format!("{WR}/records?field_code=eq.11&select=well_code"));
    assert_eq!(
        by_field.body["items"],
        json!([{"well_code": 1}, {"well_code": 3}])
    );
    server.stop();

    // the index removed again: nothing else changes; the same schema again is a no-op
    let toml = toml.replace(", [\"basin\"]]", "]");
    setup.declare(&toml);
    for version in [4, 4] {
        let server = setup.start();
        assert_eq!(server.get(WR).body["version"], json!(version));
        assert_eq!(server.get(&format!("{WR}/count")).body["count"], json!(4));
        assert_eq!(
            server.get(&format!("{WR}/records/2")).body["operator_name"],
            json!("Bolt")
        );
        server.stop();
    }
    let (code, history, _) = setup.migrate(&["--history"]);
    assert_eq!(code, 0);
    let registry: Vec<&str> = history
        .lines()
        .filter(|l| l.starts_with("well_registry\t"))
        .collect();
    assert_eq!(registry.len(), 4, "{history}");
    assert!(registry[3].contains("\tv4\t"), "{history}");
}

#[test]
fn checked_changes_apply_only_when_every_stored_record_passes() {
    let setup = seeded();
    // well 3 has no operator, two names are longer than 4 characters
    let strict = shipped_registry()
        .replace(
            "name = \"operator\"\ntype = \"string\"",
            "name = \"operator\"\ntype = \"string\"\nrequired = true",
        )
        .replace("max_length = 120", "max_length = 4");
    setup.declare(&strict);
    let stderr = setup.refused();
    assert!(
        stderr.contains("field `operator`, rule `required`: 1 record(s), keys (3)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("field `well_name`, rule `max_length`: 2 record(s), keys (1), (2)"),
        "{stderr}"
    );
    // nothing changed: the old schema still starts, at version 1; the records are corrected
    setup.declare(&shipped_registry());
    let server = setup.start();
    assert_eq!(server.get(WR).body["version"], json!(1));
    assert_eq!(
        server
            .send(
                "PATCH",
                &format!("{WR}/records/3"),
                Some(&json!({"operator": "Core"}))
            )
            .status,
        200
    );
    assert_eq!(
        server
            .send(
                "PATCH",
                &format!("{WR}/records?well_code=in.(1,2)"),
                Some(&json!({"well_name": "Ok"}))
            )
            .body,
        json!({"updated": 2})
    );
    server.stop();
    setup.declare(&strict);
    let server = setup.start();
    assert_eq!(server.get(WR).body["version"], json!(2));
    let refused = server.post_json(
        &format!("{WR}/records"),
        &json!({"well_code": 9, "well_name": "N", "field_code": 1}),
    );
    assert_eq!(refused.status, 422, "operator is required now");
    server.stop();

    // a new required field: with a default it is filled in, without one the start is refused
    let toml = format!(
        "{strict}\n[[datasets.fields]]\nname = \"country\"\ntype = \"string\"\nrequired = true\n"
    );
    setup.declare(&toml);
    let stderr = setup.refused();
    assert!(
        stderr.contains("field `country`, rule `required`: 3 record(s)"),
        "{stderr}"
    );
    setup.declare(&format!("{toml}default = \"BR\"\n"));
    let server = setup.start();
    assert_eq!(
        server.get(&format!("{WR}/records/2")).body["country"],
        json!("BR")
    );
    assert_eq!(server.get(WR).body["version"], json!(3));
}

#[test]
fn destructive_changes_need_migrate_with_allow_destructive() {
    let setup = seeded();
    let toml = shipped_registry().replace(
        "\n[[datasets.fields]]\nname = \"onshore\"\ntype = \"boolean\"\n",
        "\n",
    );
    assert!(!toml.contains("onshore"));
    setup.declare(&toml);
    let stderr = setup.refused();
    assert!(
        stderr.contains("[destructive] remove field `onshore` and its data"),
        "{stderr}"
    );
    assert!(
        stderr.contains("dataforge migrate --apply --allow-destructive"),
        "{stderr}"
    );
    // the plan is printed; --apply alone refuses; nothing changes
    let (code, plan, _) = setup.migrate(&[]);
    assert_eq!(code, 0);
    assert!(
        plan.contains("well_registry:\n  [destructive] remove field `onshore`"),
        "{plan}"
    );
    let (code, _, stderr) = setup.migrate(&["--apply"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("destructive"), "{stderr}");
    let (code, out, stderr) = setup.migrate(&["--apply", "--allow-destructive"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(out.contains("well_registry v2"), "{out}");
    let server = setup.start();
    let one = server.get(&format!("{WR}/records/1")).body;
    assert!(one.get("onshore").is_none(), "{one}");
    assert_eq!(one["operator"], json!("Acme"));
    assert_eq!(server.get(&format!("{WR}/count")).body["count"], json!(3));
    server.stop();

    // a type narrowed (float to integer) is destructive too
    setup.declare(&toml.replace(
        "name = \"depth_m\"\ntype = \"float\"",
        "name = \"depth_m\"\ntype = \"integer\"",
    ));
    assert!(
        setup
            .refused()
            .contains("change field `depth_m` from float to integer")
    );
    // a new primary key the stored records keep unique: reads by key and key checks follow it
    let wider_key = toml.replace(
        "primary_key = [\"well_code\"]",
        "primary_key = [\"well_code\", \"field_code\"]",
    );
    setup.declare(&wider_key);
    let (code, out, stderr) = setup.migrate(&["--apply", "--allow-destructive"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        out.contains("primary key (well_code) becomes (well_code, field_code)"),
        "{out}"
    );
    let server = setup.start();
    assert_eq!(
        server.get(&format!("{WR}/records/1/11")).body["well_name"],
        json!("North")
    );
    assert_eq!(
        server.get(&format!("{WR}/records/1")).status,
        400,
        "the key has two parts now"
    );
    let again = server.post_json(&format!("{WR}/records"), &well(1, "North", None));
    assert_eq!(again.status, 409, "{again:?}");
    server.stop();
    // a key that stored records repeat is refused even with the flag
    setup.declare(&toml.replace(
        "primary_key = [\"well_code\"]",
        "primary_key = [\"field_code\"]",
    ));
    let (code, _, stderr) = setup.migrate(&["--apply", "--allow-destructive"]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("repeat keys of the new primary key"),
        "{stderr}"
    );
}

#[test]
fn schemas_of_another_directory_never_create_tables_beside_unknown_datasets() {
    let setup = seeded();
    let production = support::shipped_schemas().join("well_production.toml");
    std::fs::copy(&production, setup.schemas.join("p.toml")).unwrap();
    setup.start().stop();
    // a directory without well_registry: reported, its data kept
    let only_production = setup.dir.path().join("production");
    std::fs::create_dir(&only_production).unwrap();
    std::fs::copy(&production, only_production.join("p.toml")).unwrap();
    let server = Server::start_with(&setup.db, &only_production, &[]);
    let log = server.log_lines().join("\n");
    assert!(
        log.contains("a dataset is stored but declared in no schema file")
            && log.contains("well_registry"),
        "{log}"
    );
    server.stop();
    // a directory declaring only a new dataset is refused: the wrong schemas, likely
    let other = setup.dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let new_dataset = shipped_registry().replace("name = \"well_registry\"", "name = \"wells_v2\"");
    std::fs::write(other.join("w.toml"), new_dataset).unwrap();
    let (code, _, stderr) = serve_until_exit(&setup.db, &other, setup.dir.path());
    assert_ne!(code, 0);
    assert!(
        stderr.contains("are these the right schemas for this database?"),
        "{stderr}"
    );
    // `dataforge migrate --apply` creates it deliberately; the others' data stays
    let (db, dir) = (setup.db.to_string_lossy(), other.to_string_lossy());
    let (code, out, stderr) = run(
        &["migrate", "--apply", "--db", &db, "--schemas", &dir],
        setup.dir.path(),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        out.contains("wells_v2:\n  [safe] create the dataset"),
        "{out}"
    );
    let server = setup.start();
    assert_eq!(server.get(&format!("{WR}/count")).body["count"], json!(3));
}

/// Writes acknowledged from the journal alone when the process died reach the table in the
/// shape they were written in, before the table changes: none is lost to a migration.
#[test]
fn deferred_writes_of_a_crash_survive_the_next_migration() {
    if support::duckdb_only("the journal of deferred writes") {
        return;
    }
    let setup = Setup::new();
    let never = [("DATAFORGE_DATABASE__DEFERRED_APPEND_MS", "600000")];
    let server = Server::start_with(&setup.db, &setup.schemas, &never);
    for code in 1..=5 {
        let answer = server.post_json(&format!("{WR}/records"), &well(code, "W", Some("Acme")));
        assert_eq!(answer.status, 201);
    }
    server.kill();
    let toml = add_field(
        &shipped_registry(),
        "name = \"well_code\"\ntype = \"integer\"",
        "name = \"basin\"\ntype = \"string\"\ndefault = \"Campos\"",
    );
    setup.declare(&toml);
    // and a new dataset at the same start: the journal of the others is still replayed
    std::fs::copy(
        support::shipped_schemas().join("well_production.toml"),
        setup.schemas.join("p.toml"),
    )
    .unwrap();
    let server = setup.start();
    let log = server.log_lines().join("\n");
    assert!(
        log.contains("appended the journal's acknowledged writes to the tables"),
        "{log}"
    );
    assert_eq!(server.get(&format!("{WR}/count")).body["count"], json!(5));
    let five = server.get(&format!("{WR}/records/5")).body;
    assert_eq!(
        (five["basin"].clone(), five["operator"].clone()),
        (json!("Campos"), json!("Acme"))
    );
}
