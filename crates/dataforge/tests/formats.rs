//! Every body format, over HTTP and through `dataforge import`: the same generated rows load and
//! read back identical.

mod support;

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use support::{Server, answer};

const WP: &str = "/v1/datasets/well_production";
const ROWS: u64 = 3000;
const FORMATS: [(&str, &str); 5] = [
    ("json", "application/json"),
    ("ndjson", "application/x-ndjson"),
    ("csv", "text/csv"),
    ("arrow", "application/vnd.apache.arrow.stream"),
    ("parquet", "application/vnd.apache.parquet"),
];

/// Generates the test rows in every format into `dir`.
fn generate_all(dir: &Path) -> Vec<(PathBuf, &'static str)> {
    FORMATS
        .iter()
        .map(|(format, media_type)| {
            let file = dir.join(format!("rows.{format}"));
            let schemas = support::shipped_schemas();
            let (code, _, stderr) = support::run(
                &[
                    "generate",
                    "--dataset",
                    "well_production",
                    "--rows",
                    &ROWS.to_string(),
                    "--format",
                    format,
                    "-o",
                    file.to_str().unwrap(),
                    "--schemas",
                    schemas.to_str().unwrap(),
                ],
                dir,
            );
            assert_eq!(code, 0, "generate {format}: {stderr}");
            (file, *media_type)
        })
        .collect()
}

/// Every stored row, in key order.
fn all_rows(server: &Server) -> Vec<Value> {
    let page = server.get(&format!("{WP}/records?limit=10000"));
    assert_eq!(page.status, 200, "{page:?}");
    page.body["items"].as_array().unwrap().clone()
}

#[test]
fn every_format_loads_the_same_rows_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let mut loaded: Vec<(String, Vec<Value>)> = Vec::new();
    for (file, media_type) in generate_all(dir.path()) {
        let db = dir.path().join(format!(
            "{}.duckdb",
            file.extension().unwrap().to_string_lossy()
        ));
        let server = Server::start(&db);
        let answer = server.post_raw(
            &format!("{WP}/records"),
            media_type,
            &std::fs::read(&file).unwrap(),
        );
        assert_eq!(answer.status, 201, "{media_type}: {answer:?}");
        assert_eq!(answer.body["inserted"], json!(ROWS), "{media_type}");
        loaded.push((media_type.to_owned(), all_rows(&server)));
    }
    let (reference_type, reference) = &loaded[0];
    assert_eq!(reference.len() as u64, ROWS);
    assert_eq!(reference[0]["production_period"], "1947-01-01T00:00:00Z");
    for (media_type, rows) in &loaded[1..] {
        assert!(
            rows == reference,
            "{media_type} rows differ from {reference_type} rows"
        );
    }
}

#[test]
fn import_loads_every_format_and_reports_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let schemas = support::shipped_schemas();
    let schemas = schemas.to_str().unwrap();
    let files = generate_all(dir.path());
    let db = dir.path().join("import.duckdb");
    let db_arg = db.to_str().unwrap();
    // the first file inserts, the others (the same rows) are skipped with on_conflict=ignore
    for (index, (file, _)) in files.iter().enumerate() {
        let mut args = vec![
            "import",
            "--dataset",
            "well_production",
            "--db",
            db_arg,
            "--schemas",
            schemas,
            file.to_str().unwrap(),
        ];
        if index > 0 {
            args.extend(["--on-conflict", "ignore"]);
        }
        let (code, stdout, stderr) = support::run(&args, dir.path());
        assert_eq!(code, 0, "{}: {stderr}", file.display());
        let expected = if index == 0 {
            format!("inserted {ROWS}, updated 0, skipped 0")
        } else {
            format!("inserted 0, updated 0, skipped {ROWS}")
        };
        assert!(
            stdout.contains(&format!("{ROWS} rows read")) && stdout.contains(&expected),
            "{stdout}"
        );
    }

    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "well_code,field_code,production_period,days_on_production\n1,2,2020-01-01,40\n3,x,2020-01-01,1\n").unwrap();
    let (code, _, stderr) = support::run(
        &[
            "import",
            "--dataset",
            "well_production",
            "--db",
            db_arg,
            "--schemas",
            schemas,
            bad.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(code, 1);
    assert!(
        stderr.contains("2 validation error(s) in the request; nothing was written"),
        "{stderr}"
    );
    assert!(
        stderr.contains("row 1, days_on_production: 40 is greater than the maximum 31 (max)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("row 2, field_code: expected a 64-bit integer, found `x` (type)"),
        "{stderr}"
    );
    let (code, _, stderr) = support::run(
        &[
            "import",
            "--dataset",
            "nope",
            "--db",
            db_arg,
            "--schemas",
            schemas,
            bad.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("no dataset named `nope`"), "{stderr}");

    let server = Server::start(&db);
    assert_eq!(
        server.get(&format!("{WP}/count")).body,
        json!({"count": ROWS, "exact": true})
    );
}

/// `batches` as an Arrow IPC stream body.
fn arrow_body(batches: &[arrow_array::RecordBatch]) -> Vec<u8> {
    let mut body = Vec::new();
    let mut writer = arrow_ipc::writer::StreamWriter::try_new(&mut body, &batches[0].schema())
        .expect("arrow writer");
    for batch in batches {
        writer.write(batch).expect("write batch");
    }
    writer.finish().expect("finish stream");
    drop(writer);
    body
}

/// The batches of `body` (an Arrow IPC stream) with column `name` replaced by `column`'s answer.
fn with_column(
    body: &[u8],
    name: &str,
    column: impl Fn(&arrow_array::ArrayRef) -> arrow_array::ArrayRef,
) -> Vec<arrow_array::RecordBatch> {
    let reader = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(body), None)
        .expect("arrow reader");
    reader
        .map(|batch| {
            let batch = batch.expect("batch");
            let schema = batch.schema();
            let position = schema.index_of(name).expect("column");
            let mut fields: Vec<arrow_schema::Field> =
                schema.fields().iter().map(|f| f.as_ref().clone()).collect();
            let mut columns = batch.columns().to_vec();
            columns[position] = column(&columns[position]);
            fields[position] =
                arrow_schema::Field::new(name, columns[position].data_type().clone(), true);
            arrow_array::RecordBatch::try_new(
                std::sync::Arc::new(arrow_schema::Schema::new(fields)),
                columns,
            )
            .expect("batch with the new column")
        })
        .collect()
}

#[test]
fn broken_or_mistyped_binary_bodies_are_refused_whole_and_lossless_casts_load() {
    use arrow_array::{Array, Int32Array, Int64Array, StringArray};

    let dir = tempfile::tempdir().unwrap();
    let files = generate_all(dir.path());
    let read = |format: &str| {
        let (file, _) = files
            .iter()
            .find(|(f, _)| f.extension().is_some_and(|e| e == format))
            .unwrap();
        std::fs::read(file).unwrap()
    };
    let (arrow, parquet) = (read("arrow"), read("parquet"));
    let server = Server::start(&dir.path().join("db.duckdb"));
    let post =
        |media_type: &str, body: &[u8]| server.post_raw(&format!("{WP}/records"), media_type, body);
    let count = || server.get(&format!("{WP}/count")).body["count"].clone();

    // an Arrow stream cut short: 400, saying how far it got
    let cut = post(FORMATS[3].1, &arrow[..arrow.len() - 100]);
    assert_eq!(cut.status, 400, "{cut:?}");
    assert!(
        cut.body["detail"].as_str().unwrap().contains("truncated"),
        "{cut:?}"
    );
    // half a Parquet file
    let half = post(FORMATS[4].1, &parquet[..parquet.len() / 2]);
    assert_eq!(half.status, 400, "{half:?}");
    // a key column of text: 422 naming the column, its type and the field's
    let as_text = with_column(&arrow, "field_code", |column| {
        let ints = column.as_any().downcast_ref::<Int64Array>().unwrap();
        std::sync::Arc::new(StringArray::from_iter(
            ints.iter().map(|v| v.map(|v| format!("F{v}"))),
        ))
    });
    let mistyped = post(FORMATS[3].1, &arrow_body(&as_text));
    assert_eq!(mistyped.status, 422, "{mistyped:?}");
    let error = &mistyped.body["errors"][0];
    assert_eq!(error["field"], json!("field_code"), "{mistyped:?}");
    assert_eq!(error["code"], json!("column_type"), "{mistyped:?}");
    assert!(
        error["message"].as_str().unwrap().contains("Utf8"),
        "{mistyped:?}"
    );
    assert_eq!(count(), json!(0), "a refused body writes nothing");

    // a narrower integer column converts losslessly and loads
    let narrower = with_column(&arrow, "days_on_production", |column| {
        let ints = column.as_any().downcast_ref::<Int64Array>().unwrap();
        std::sync::Arc::new(Int32Array::from_iter(
            ints.iter().map(|v| v.map(|v| v as i32)),
        ))
    });
    let loaded = post(FORMATS[3].1, &arrow_body(&narrower));
    assert_eq!(loaded.status, 201, "{loaded:?}");
    assert_eq!(loaded.body["inserted"], json!(ROWS));
    assert_eq!(count(), json!(ROWS));
}

/// A few bytes declaring gigabytes of Arrow metadata or body are refused before anything is
/// allocated for them (they took the server from 310 MB to 2.3 GB, issue 13): 400 naming the
/// bound, nothing written, and the server's peak memory barely moves.
#[test]
fn arrow_bodies_declaring_huge_messages_allocate_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("bomb.duckdb"));
    let before = server.peak_rss_mib();
    let mut random = vec![0u8; 4096];
    let mut state: u32 = 12345;
    for byte in random.iter_mut() {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
        *byte = (state >> 16) as u8;
    }
    random[..4].copy_from_slice(b"\x00\x00\x00\x70");
    let bodies: [(&str, &[u8]); 3] = [
        (
            "a 2 GiB metadata claim",
            b"\xff\xff\xff\xff\xff\xff\xff\x7f",
        ),
        ("an Arrow file", b"ARROW1\0\0\xff\xff\xff\xff\x10\0\0\0"),
        ("4 KiB of noise", &random),
    ];
    for _ in 0..3 {
        for (what, body) in bodies {
            let answer = server.post_raw(
                "/v1/datasets/well_registry/records",
                "application/vnd.apache.arrow.stream",
                body,
            );
            assert_eq!(answer.status, 400, "{what}: {answer:?}");
            let detail = answer.body["detail"].as_str().unwrap_or_default();
            assert!(detail.contains("more than the"), "{what}: {detail}");
        }
    }
    let grown = server.peak_rss_mib().saturating_sub(before);
    assert!(grown < 200, "peak memory grew by {grown} MiB");
    assert_eq!(
        server.get("/v1/datasets/well_registry/count").body["count"],
        serde_json::json!(0)
    );
}

/// Values are stored as sent or refused (issue 13, items 11 and 12): an Arrow date far past the
/// year 9999 and text holding NUL are 422 naming row and field, a json field keeps a large integer
/// exactly, dictionary-encoded columns load, and a repeated key in a query body is a 400.
#[test]
fn values_are_stored_as_sent_or_refused() {
    use arrow_array::types::Int32Type;
    use arrow_array::{Array, ArrayRef, Date32Array, DictionaryArray, Int64Array, RecordBatch};
    use arrow_schema::{DataType, Field, Schema};
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("values.duckdb"));
    let wr = "/v1/datasets/well_registry";
    let arrow = |spud: Date32Array, names: DictionaryArray<Int32Type>| {
        let schema = Schema::new(vec![
            Field::new("well_code", DataType::Int64, false),
            Field::new("well_name", names.data_type().clone(), false),
            Field::new("field_code", DataType::Int64, false),
            Field::new("spud_date", DataType::Date32, true),
        ]);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(vec![1, 2])),
            Arc::new(names),
            Arc::new(Int64Array::from(vec![7, 7])),
            Arc::new(spud),
        ];
        arrow_body(&[RecordBatch::try_new(Arc::new(schema), columns).unwrap()])
    };
    let names = || -> DictionaryArray<Int32Type> { vec!["A-1", "A-1"].into_iter().collect() };
    let media = "application/vnd.apache.arrow.stream";
    let far = server.post_raw(
        &format!("{wr}/records"),
        media,
        &arrow(Date32Array::from(vec![Some(0), Some(i32::MAX)]), names()),
    );
    assert_eq!(far.status, 422, "{far:?}");
    assert_eq!(
        (
            &far.body["errors"][0]["row"],
            &far.body["errors"][0]["field"],
            &far.body["errors"][0]["code"]
        ),
        (&json!(2), &json!("spud_date"), &json!("out_of_range")),
        "{far:?}"
    );
    // the same with dictionary-encoded names and a readable date loads
    let fine = server.post_raw(
        &format!("{wr}/records"),
        media,
        &arrow(Date32Array::from(vec![Some(0), Some(20_000)]), names()),
    );
    assert_eq!(fine.status, 201, "{fine:?}");
    assert_eq!(
        server.get(&format!("{wr}/records/2")).body["well_name"],
        json!("A-1")
    );

    let nul = server.post_json(
        &format!("{wr}/records"),
        &json!({"well_code": 3, "well_name": "bad\u{0}name", "field_code": 7}),
    );
    assert_eq!(nul.status, 422, "{nul:?}");
    assert_eq!(nul.body["errors"][0]["code"], json!("nul_character"));
    // a change is checked the same way
    for (set, code) in [
        (json!({"well_name": "bad\u{0}name"}), "nul_character"),
        (json!({"spud_date": "0000-12-31"}), "out_of_range"),
    ] {
        let patched = server.send("PATCH", &format!("{wr}/records/1"), Some(&set));
        assert_eq!(patched.status, 422, "{set}: {patched:?}");
        assert_eq!(
            patched.body["errors"][0]["code"],
            json!(code),
            "{patched:?}"
        );
    }

    let big = r#"{"well_code": 4, "well_name": "B", "field_code": 7, "metadata": {"id": 123456789012345678901234567890}}"#;
    let sent = server.post_raw(&format!("{wr}/records"), "application/json", big.as_bytes());
    assert_eq!(sent.status, 201, "{sent:?}");
    let stored = ureq::get(&format!("{}{wr}/records/4", server.base))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(
        stored.contains(r#""metadata":{"id":123456789012345678901234567890}"#),
        "{stored}"
    );
    assert_eq!(server.get(&format!("{wr}/count")).body["count"], json!(3));
    // a PATCH reads its body as a JSON document, where such a number would become a float:
    // refused, not rounded
    let rounded = answer(
        ureq::request("PATCH", &format!("{}{wr}/records/4", server.base))
            .set("Content-Type", "application/json")
            .send_string(r#"{"metadata": {"id": 123456789012345678901234567891}}"#),
    );
    assert_eq!(rounded.status, 400, "{rounded:?}");
    assert!(
        rounded.body["detail"]
            .as_str()
            .unwrap()
            .contains("does not fit in 64 bits"),
        "{rounded:?}"
    );
    let unchanged = ureq::get(&format!("{}{wr}/records/4", server.base))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert_eq!(unchanged, stored);

    let repeated = server.post_raw(
        &format!("{wr}/query"),
        "application/json",
        br#"{"limit": 1, "limit": 500}"#,
    );
    assert_eq!(repeated.status, 400, "{repeated:?}");
    assert!(
        repeated.body["detail"]
            .as_str()
            .unwrap()
            .contains("`limit` appears more than once"),
        "{repeated:?}"
    );
}

const WR: &str = "/v1/datasets/well_registry";

/// A stored well_registry record by key, or the status it was answered with.
fn registry_record(server: &Server, code: i64) -> Result<Value, u16> {
    let record = server.get(&format!("{WR}/records/{code}"));
    if record.status == 200 {
        Ok(record.body)
    } else {
        Err(record.status)
    }
}

/// A CSV body as spreadsheets export it (semicolons, `NA` for nothing, yes/no booleans, headers in
/// another case) loads with `delimiter` and `null`; every bad option value is a 400 naming the
/// parameter, and writes nothing.
#[test]
fn csv_bodies_load_with_their_delimiter_null_spelling_and_boolean_spellings() {
    let (_dir, db) = support::temp_db();
    let server = Server::start(&db);
    let body = "Well_Code;WELL_NAME;field_code;onshore;depth_m\n\
                1;A;10;yes;NA\n2;B;10;No;1200.5\n3;C;10;t;NA\n4;D;10;F;NA\n5;E;10;1;NA\n6;F;10;0;NA\n7;G;10;TRUE;NA\n8;H;10;NA;NA\n";
    let written = server.post_raw(
        &format!("{WR}/records?delimiter=%3B&null=NA"),
        "text/csv",
        body.as_bytes(),
    );
    assert_eq!(written.status, 201, "{written:?}");
    assert_eq!(written.body["inserted"], json!(8));
    let onshore: Vec<Value> = (1..=8)
        .map(|code| registry_record(&server, code).unwrap()["onshore"].clone())
        .collect();
    assert_eq!(
        onshore,
        [true, false, true, false, true, false, true]
            .map(Value::Bool)
            .into_iter()
            .chain([Value::Null])
            .collect::<Vec<_>>()
    );
    let second = registry_record(&server, 2).unwrap();
    assert_eq!(
        (&second["well_name"], &second["depth_m"]),
        (&json!("B"), &json!(1200.5))
    );
    assert_eq!(registry_record(&server, 1).unwrap()["depth_m"], Value::Null);

    // a tab and a pipe, with the default null (an empty cell)
    let tabbed = server.post_raw(
        &format!("{WR}/records?delimiter=tab"),
        "text/csv",
        b"well_code\twell_name\tfield_code\tonshore\n20\tT\t10\tno\n",
    );
    assert_eq!(tabbed.status, 201, "{tabbed:?}");
    let piped = server.post_raw(
        &format!("{WR}/records?delimiter=%7C"),
        "text/csv",
        b"well_code|well_name|field_code|depth_m\n21|P|10|\n",
    );
    assert_eq!(piped.status, 201, "{piped:?}");
    assert_eq!(
        registry_record(&server, 20).unwrap()["onshore"],
        json!(false)
    );
    assert_eq!(
        registry_record(&server, 21).unwrap()["depth_m"],
        Value::Null
    );

    let one = b"well_code;well_name;field_code\n30;X;10\n";
    for (query, content_type, parameter) in [
        ("delimiter=%3A", "text/csv", "delimiter"),
        ("delimiter=", "text/csv", "delimiter"),
        ("null=", "text/csv", "null"),
        ("delimiter=%3B&null=a%3Bb", "text/csv", "null"),
        ("null=NA&null=NULL", "text/csv", "null"),
        ("delimiter=%3B", "application/x-ndjson", "delimiter"),
    ] {
        let refused = server.post_raw(&format!("{WR}/records?{query}"), content_type, one);
        assert_eq!(refused.status, 400, "{query}: {refused:?}");
        assert_eq!(
            refused.body["parameter"],
            json!(parameter),
            "{query}: {refused:?}"
        );
        assert_eq!(refused.content_type, "application/problem+json");
    }
    assert_eq!(registry_record(&server, 30), Err(404));

    // a boolean spelled otherwise is the record's violation; headers equal ignoring case are a 400
    let maybe = server.post_raw(
        &format!("{WR}/records"),
        "text/csv",
        b"well_code,well_name,field_code,onshore\n31,M,10,maybe\n",
    );
    assert_eq!(maybe.status, 422, "{maybe:?}");
    let twice = server.post_raw(
        &format!("{WR}/records"),
        "text/csv",
        b"well_code,Well_Name,well_name,field_code\n32,M,N,10\n",
    );
    assert_eq!(twice.status, 400, "{twice:?}");
    let detail = twice.body["detail"].as_str().unwrap();
    assert!(detail.contains("`Well_Name` and `well_name`"), "{detail}");
    assert_eq!(
        (registry_record(&server, 31), registry_record(&server, 32)),
        (Err(404), Err(404))
    );
}

/// `dataforge import --delimiter ';' --null NA` reads a file as the POST's parameters would; a bad
/// value names the option and loads nothing.
#[test]
fn import_takes_the_csv_options() {
    let dir = tempfile::tempdir().unwrap();
    let schemas = support::shipped_schemas();
    let db = dir.path().join("import.duckdb");
    let file = dir.path().join("wells.csv");
    std::fs::write(
        &file,
        "well_code;well_name;field_code;onshore;depth_m\n1;A;10;Yes;NA\n2;B;10;f;15.5\n",
    )
    .unwrap();
    let import = |options: &[&str]| {
        let mut args = vec![
            "import",
            "--dataset",
            "well_registry",
            "--db",
            db.to_str().unwrap(),
            "--schemas",
            schemas.to_str().unwrap(),
        ];
        args.extend(options);
        args.push(file.to_str().unwrap());
        support::run(&args, dir.path())
    };
    let (code, _, stderr) = import(&["--delimiter", ";", "--null", "nil"]);
    assert_eq!(code, 1, "a NA depth is not a float without --null NA");
    assert!(stderr.contains("depth_m"), "{stderr}");
    let (code, _, stderr) = import(&["--delimiter", ":"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("--delimiter: must be"), "{stderr}");
    let (code, stdout, stderr) = import(&["--delimiter", ";", "--null", "NA"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("inserted 2"), "{stdout}");

    let server = Server::start(&db);
    let first = registry_record(&server, 1).unwrap();
    assert_eq!(
        (&first["onshore"], &first["depth_m"]),
        (&json!(true), &Value::Null)
    );
    assert_eq!(
        registry_record(&server, 2).unwrap()["onshore"],
        json!(false)
    );
}

/// A streamed answer's body as bytes, asked for with `Accept`.
fn export_with(server: &Server, path: &str, accept: &str) -> (u16, String, Vec<u8>) {
    let response = match ureq::get(&format!("{}{path}", server.base))
        .set("Accept", accept)
        .call()
    {
        Ok(response) | Err(ureq::Error::Status(_, response)) => response,
        Err(e) => panic!("request failed: {e}"),
    };
    let (status, content_type) = (response.status(), response.content_type().to_owned());
    let mut body = Vec::new();
    std::io::Read::read_to_end(&mut response.into_reader(), &mut body).unwrap();
    (status, content_type, body)
}

/// Arrow and Parquet exports say what other tools need to read them right: timestamps are instants
/// in UTC (`timestamp[us, tz=UTC]`), and key and required fields are never null.
#[test]
fn arrow_and_parquet_exports_declare_utc_timestamps_and_non_nullable_keys() {
    let (_dir, db) = support::temp_db();
    let server = Server::start(&db);
    for i in 0..3 {
        assert_eq!(
            server
                .post_json(&format!("{WP}/records"), &support::production(i))
                .status,
            201
        );
    }
    let registry = json!({"well_code": 1, "well_name": "A", "field_code": 10});
    assert_eq!(
        server.post_json(&format!("{WR}/records"), &registry).status,
        201
    );
    let utc =
        arrow_schema::DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, Some("UTC".into()));

    for format in ["arrow", "parquet"] {
        let (status, _, body) =
            export_with(&server, &format!("{WP}/records?format={format}"), "*/*");
        assert_eq!(status, 200, "{format}");
        let (schema, rows) = read_export(format, body);
        assert_eq!(rows, 3, "{format}");
        let period = schema.field_with_name("production_period").unwrap();
        assert_eq!(
            (period.data_type(), period.is_nullable()),
            (&utc, false),
            "{format}"
        );
        for key in ["field_code", "well_code"] {
            assert!(
                !schema.field_with_name(key).unwrap().is_nullable(),
                "{format} {key}"
            );
        }
        assert!(
            schema
                .field_with_name("oil_production_kbd")
                .unwrap()
                .is_nullable(),
            "{format}"
        );

        let (status, _, body) =
            export_with(&server, &format!("{WR}/records?format={format}"), "*/*");
        assert_eq!(status, 200, "{format}");
        let (schema, _) = read_export(format, body);
        let nullable = |name| schema.field_with_name(name).unwrap().is_nullable();
        // the key, and the fields declared required
        assert_eq!(
            [
                nullable("well_code"),
                nullable("well_name"),
                nullable("field_code"),
                nullable("depth_m")
            ],
            [false, false, false, true],
            "{format}"
        );
        // an aggregate's metrics may be null
        let (status, _, body) = export_with(
            &server,
            &format!(
                "{WP}/aggregate?group_by=well_code&metrics=sum(oil_production_kbd)&format={format}"
            ),
            "*/*",
        );
        assert_eq!(status, 200, "{format}");
        let (schema, _) = read_export(format, body);
        assert!(
            schema.fields().iter().any(|f| f.is_nullable()),
            "{format}: {schema:?}"
        );
    }
}

/// The Arrow schema and row count of an Arrow or Parquet export, read back with the arrow and
/// parquet crates as another tool would.
fn read_export(format: &str, body: Vec<u8>) -> (arrow_schema::SchemaRef, usize) {
    if format == "arrow" {
        let reader =
            arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(body), None).unwrap();
        let schema = reader.schema();
        let rows = reader.map(|b| b.unwrap().num_rows()).sum();
        return (schema, rows);
    }
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        bytes::Bytes::from(body),
    )
    .unwrap();
    let schema = std::sync::Arc::clone(builder.schema());
    let rows = builder
        .build()
        .unwrap()
        .map(|b| b.unwrap().num_rows())
        .sum();
    (schema, rows)
}

/// `Accept: text/*` gets CSV, and `q=0` refuses a type even when a wildcard would take it; when
/// nothing acceptable remains the answer is 406 listing what is offered.
#[test]
fn accept_honours_text_wildcards_and_q_zero() {
    let (_dir, db) = support::temp_db();
    let server = Server::start(&db);
    assert_eq!(
        server
            .post_json(&format!("{WP}/records"), &support::production(1))
            .status,
        201
    );
    let path = format!("{WP}/records");
    for (accept, expected) in [
        ("text/*", "text/csv"),
        ("application/json;q=0, */*", "application/x-ndjson"),
        ("application/json;q=0, text/*;q=0.5, */*;q=0.1", "text/csv"),
    ] {
        let (status, content_type, body) = export_with(&server, &path, accept);
        assert_eq!((status, content_type.as_str()), (200, expected), "{accept}");
        assert!(
            !body.is_empty() && !body.starts_with(br#"{"items""#),
            "{accept}: a JSON page"
        );
    }
    let (_, _, csv) = export_with(&server, &path, "text/*");
    assert!(
        String::from_utf8(csv)
            .unwrap()
            .starts_with("field_code,field_name,well_code")
    );
    for accept in ["application/json;q=0", "text/*, text/csv;q=0", "*/*;q=0"] {
        let (status, content_type, body) = export_with(&server, &path, accept);
        assert_eq!(
            (status, content_type.as_str()),
            (406, "application/problem+json"),
            "{accept}"
        );
        let problem: Value = serde_json::from_slice(&body).unwrap();
        assert!(
            problem["supported"]
                .as_array()
                .unwrap()
                .contains(&json!("text/csv")),
            "{problem}"
        );
    }
}
