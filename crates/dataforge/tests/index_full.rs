//! When the primary-key index cannot take more records (its size limit is reached), writes go on
//! with keys checked and read with SQL against the tables, nothing acknowledged is lost, a start
//! that still has no room fails and says what to raise, and a start with room rebuilds the index.

mod support;

use serde_json::{Value, json};
use support::{Server, production, run, serve_until_exit_with, shipped_schemas, stored, with_oil};

const WP: &str = "/v1/datasets/well_production";
const SMALL_INDEX: (&str, &str) = ("DATAFORGE_DATABASE__KEY_INDEX_MAX_MIB", "1");
const REQUEST_ROWS: i64 = 200;

fn count(server: &Server) -> u64 {
    let answer = server.get(&format!("{WP}/count"));
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.body["count"].as_u64().unwrap()
}

#[test]
fn a_full_key_index_loses_no_write_and_is_rebuilt_by_a_start_with_room() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("full.duckdb");
    let schemas = shipped_schemas();
    let server = Server::start_with(&db, &schemas, &[SMALL_INDEX]);

    // 200-record requests (small enough to be deferred) until the 1 MiB index is full; every one
    // is acknowledged, the one that filled it included
    let mut log = Vec::new();
    let mut sent = 0;
    let full = |log: &[String]| log.iter().any(|l| l.contains("the key index failed"));
    while !full(&log) && sent < 100 * REQUEST_ROWS {
        let rows: Vec<Value> = (sent..sent + REQUEST_ROWS).map(production).collect();
        let answer = server.post_json(&format!("{WP}/records"), &Value::Array(rows));
        assert_eq!(answer.status, 201, "request from record {sent}: {answer:?}");
        assert_eq!(answer.body["inserted"], json!(REQUEST_ROWS));
        sent += REQUEST_ROWS;
        log.extend(server.log_lines());
    }
    assert!(full(&log), "1 MiB of index filled up within {sent} records");
    assert!(
        log.iter().any(|l| l.contains("key_index_max_mib")),
        "the log names the setting to raise: {log:?}"
    );
    assert_eq!(count(&server), sent as u64);

    // without the index: keys are checked against the tables (a stored key and a key repeated in
    // the request conflict, in a single record and in a larger request), and nothing is written
    let stored_again = server.post_json(&format!("{WP}/records"), &production(3));
    assert_eq!(stored_again.status, 409, "{stored_again:?}");
    let mixed = Value::Array(vec![production(sent), production(sent + 1), production(5)]);
    let conflict = server.post_json(&format!("{WP}/records"), &mixed);
    assert_eq!(conflict.status, 409, "{conflict:?}");
    assert_eq!(count(&server), sent as u64);
    // new keys are taken, ignore skips stored keys, upsert replaces them
    let new = server.post_json(&format!("{WP}/records"), &production(sent));
    assert_eq!(new.status, 201, "{new:?}");
    // (inserted, updated, skipped) of a write in mode `mode`, which must be accepted
    let written = |mode: &str, body: Value| {
        let answer = server.post_json(&format!("{WP}/records?on_conflict={mode}"), &body);
        assert_eq!(answer.status, 201, "{answer:?}");
        let n = |k: &str| answer.body[k].as_u64();
        (n("inserted"), n("updated"), n("skipped"))
    };
    let ignored = written("ignore", json!([production(sent), production(sent + 1)]));
    assert_eq!(ignored, (Some(1), Some(0), Some(1)));
    let upserted = written(
        "upsert",
        json!([with_oil(7, 42.5), with_oil(sent + 2, 1.25)]),
    );
    assert_eq!(upserted, (Some(1), Some(1), Some(0)));
    let total = sent as u64 + 3;
    assert_eq!(count(&server), total);
    // reads by key come from the tables
    assert_eq!(stored(&server, 7)["oil_production_kbd"], json!(42.5));
    assert_eq!(stored(&server, sent + 2)["oil_production_kbd"], json!(1.25));
    assert_eq!(stored(&server, 11), production(11));
    // and records zstd cannot shrink much, so that a rebuild does not fit in 1 MiB either (the
    // index keeps records compressed in blocks, several times smaller than as they filled it)
    const NOISY: i64 = 10_000;
    for chunk in 0..NOISY / 2_500 {
        let rows: Vec<Value> = (0..2_500)
            .map(|i| 1_000_000 + chunk * 2_500 + i)
            .map(|i| with_noise(production(i), i))
            .collect();
        let answer = server.post_json(&format!("{WP}/records"), &Value::Array(rows));
        assert_eq!(answer.status, 201, "{answer:?}");
    }
    let total = total + NOISY as u64;
    assert_eq!(count(&server), total);
    server.stop();

    // a start without room cannot rebuild the index: it fails, naming the setting
    let (code, _, stderr) = serve_until_exit_with(&db, &schemas, dir.path(), &[SMALL_INDEX]);
    assert_ne!(code, 0, "{stderr}");
    assert!(stderr.contains("key_index_max_mib"), "{stderr}");

    // with room, the start rebuilds the index from the tables: every write is there, keys
    // conflict again through the index, reads by key use it
    let server = Server::start(&db);
    let log = server.log_lines();
    assert!(
        log.iter().any(|l| l.contains("rebuilding the key index")),
        "{log:?}"
    );
    assert_eq!(count(&server), total);
    assert_eq!(stored(&server, 7)["oil_production_kbd"], json!(42.5));
    assert_eq!(stored(&server, sent - 1), production(sent - 1));
    let again = server.post_json(&format!("{WP}/records"), &production(sent + 2));
    assert_eq!(again.status, 409, "{again:?}");
    let fresh = server.post_json(&format!("{WP}/records"), &production(sent + 3));
    assert_eq!(fresh.status, 201, "{fresh:?}");
    assert_eq!(count(&server), total + 1);
    server.stop();
}

#[test]
fn the_key_index_map_grows_as_it_fills_instead_of_reserving_its_limit() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("grow.duckdb");
    let server = Server::start_with(&db, &shipped_schemas(), &[]);
    let before = server.vsz_mib();
    assert!(
        before < 64 * 1024,
        "{before} MiB of address space at start: the 256 GiB limit is reserved"
    );
    // the index compresses records in blocks (about 40 bytes a generated record), so each record
    // carries 600 characters zstd cannot shrink much: 300,000 of them need more than the first
    // 64 MiB map
    for chunk in 0..30 {
        let records: Vec<Value> = (0..10_000)
            .map(|i| with_noise(production(chunk * 10_000 + i), chunk * 10_000 + i))
            .collect();
        let answer = server.post_json(&format!("{WP}/records"), &json!(records));
        assert_eq!(answer.status, 201, "{answer:?}");
    }
    assert_eq!(count(&server), 300_000);
    assert_eq!(
        stored(&server, 299_999)["well_code"],
        production(299_999)["well_code"]
    );
    let keys = dir.path().join("grow.duckdb.keys/data.mdb");
    let size = std::fs::metadata(&keys).unwrap().len();
    assert!(
        size > 64 << 20,
        "the index file ({size} bytes) outgrew the first map"
    );
    let after = server.vsz_mib();
    assert!(
        after < 64 * 1024,
        "{after} MiB of address space after loading"
    );
    assert!(
        server
            .log_lines()
            .iter()
            .any(|l| l.contains("key index map grown")),
        "{:?}",
        server.log_lines()
    );
}

/// `record` with 600 pseudo-random hexadecimal characters (from `seed`) in `source_data`.
fn with_noise(mut record: Value, seed: i64) -> Value {
    let mut state = seed as u64 ^ 0x9e37_79b9_7f4a_7c15;
    let noise: String = (0..600)
        .map(|_| {
            // xorshift64: cheap, and far from anything a compressor finds repeats in
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from_digit((state % 16) as u32, 16).unwrap_or('0')
        })
        .collect();
    record["source_data"] = json!(noise);
    record
}

/// Bytes the key index's file takes a record once `rows` are stored.
fn index_bytes_a_record(db: &std::path::Path, rows: u64) -> u64 {
    let keys = db.with_extension("duckdb.keys").join("data.mdb");
    std::fs::metadata(&keys).unwrap().len() / rows
}

#[test]
fn a_loaded_or_rebuilt_key_index_stores_records_densely() {
    // 320 bytes a generated record before the index left the key fields out of its values,
    // wrote them as varints and filled its pages; about 126 then; about 40 (DuckDB's file) since
    // records are compressed in blocks
    const MAX_BYTES_A_RECORD: u64 = 50;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("dense.duckdb");
    let file = dir.path().join("rows.arrow");
    let schemas = shipped_schemas();
    let rows = 100_000u64;
    let (paths, rows_arg) = (
        [&db, &file, &schemas].map(|p| p.to_str().unwrap()),
        rows.to_string(),
    );
    let (code, _, stderr) = run(
        &[
            "generate",
            "--dataset",
            "well_production",
            "--schemas",
            paths[2],
            "--rows",
            &rows_arg,
            "--format",
            "arrow",
            "-o",
            paths[1],
        ],
        dir.path(),
    );
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = run(
        &[
            "import",
            "--dataset",
            "well_production",
            "--schemas",
            paths[2],
            "--db",
            paths[0],
            paths[1],
        ],
        dir.path(),
    );
    assert_eq!(code, 0, "{stderr}");
    let loaded = index_bytes_a_record(&db, rows);
    assert!(
        loaded <= MAX_BYTES_A_RECORD,
        "{loaded} bytes a record after a load"
    );

    // rebuilt from the table (its directory deleted), and read back by key
    std::fs::remove_dir_all(db.with_extension("duckdb.keys")).unwrap();
    let server = Server::start_with(&db, &schemas, &[]);
    assert_eq!(count(&server), rows);
    // record 5,007 of `dataforge generate`'s numbering (bench/get_by_key.lua has it)
    let i = 5_007;
    let (well, month) = (100_000 + i / 924, i % 924);
    let field = 1 + (well * 7919) % 2000;
    let key = format!(
        "{field}/{well}/{}-{:02}-01",
        1947 + month / 12,
        month % 12 + 1
    );
    let answer = server.get(&format!("{WP}/records/{key}"));
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body["well_name"], json!(format!("WELL-{well}")));
    assert_eq!(answer.body["partition_0"], json!("p7"));
    server.stop();
    let rebuilt = index_bytes_a_record(&db, rows);
    assert!(
        rebuilt <= MAX_BYTES_A_RECORD,
        "{rebuilt} bytes a record after a rebuild"
    );
}
