//! `dataforge generate` for a dataset with no built-in generator: records made from the schema
//! alone load into the server in every format, and two runs write the same bytes.

mod support;

use support::{Server, run, shipped_schemas, temp_db};

#[test]
fn generated_records_of_any_dataset_load_in_every_format() {
    let (dir, db) = temp_db();
    let server = Server::start(&db);
    let schemas = shipped_schemas();
    let formats = [
        ("csv", "text/csv"),
        ("ndjson", "application/x-ndjson"),
        ("json", "application/json"),
        ("arrow", "application/vnd.apache.arrow.stream"),
        ("parquet", "application/vnd.apache.parquet"),
    ];
    for (n, (format, media_type)) in formats.into_iter().enumerate() {
        let file = dir.path().join(format!("registry.{format}"));
        let start = (n * 1000).to_string();
        let (code, out, err) = run(
            &[
                "generate",
                "--dataset",
                "well_registry",
                "--rows",
                "1000",
                "--start",
                &start,
                "--format",
                format,
                "-o",
                &file.to_string_lossy(),
                "--schemas",
                &schemas.to_string_lossy(),
            ],
            dir.path(),
        );
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("wrote 1000 well_registry records"), "{out}");
        let body = std::fs::read(&file).unwrap();
        let written = server.post_raw("/v1/datasets/well_registry/records", media_type, &body);
        assert_eq!(written.status, 201, "{format}: {written:?}");
        assert_eq!(written.body["inserted"], 1000, "{format}");
    }
    let count = server.get("/v1/datasets/well_registry/count");
    assert_eq!(count.body["count"], 5000);
    let nulls = server.get("/v1/datasets/well_registry/count?spud_date=is.null");
    let nulls = nulls.body["count"].as_u64().unwrap();
    assert!(nulls > 0 && nulls < 5000, "{nulls}");

    let again = dir.path().join("again.csv");
    let first = dir.path().join("registry.csv");
    let (code, _, err) = run(
        &[
            "generate",
            "--dataset",
            "well_registry",
            "--rows",
            "1000",
            "--format",
            "csv",
            "-o",
            &again.to_string_lossy(),
            "--schemas",
            &schemas.to_string_lossy(),
        ],
        dir.path(),
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read(&again).unwrap(),
        std::fs::read(first).unwrap(),
        "deterministic"
    );
}
