//! Decoding tests: every format, every decoding problem, batching, and validation of the result.

use dataforge_domain::records::{BatchDecoder, BodyError, BodyFormat, DecodedBatch, ReadOptions};
use dataforge_domain::schema::{DatasetSchema, Located, build_catalog};
use dataforge_domain::testing::{dataset, field, wells};
use dataforge_domain::validate::validate_batch;
use dataforge_domain::value::{FieldType, Value};
use serde_json::json;

use crate::Formats;

fn decode_batches(
    format: BodyFormat,
    schema: &DatasetSchema,
    body: &[u8],
    batch_rows: usize,
) -> Result<Vec<DecodedBatch>, BodyError> {
    let mut batches = Vec::new();
    let records = Formats.decode(
        format,
        &ReadOptions::default(),
        schema,
        &mut &body[..],
        batch_rows,
        &mut |b| {
            batches.push(b);
            Ok(())
        },
    )?;
    assert_eq!(
        records,
        batches
            .iter()
            .map(|b| b.batch.num_rows() as u64)
            .sum::<u64>()
    );
    Ok(batches)
}

fn decode_one(
    format: BodyFormat,
    schema: &DatasetSchema,
    body: &[u8],
) -> Result<DecodedBatch, BodyError> {
    let mut batches = decode_batches(format, schema, body, 1 << 20)?;
    assert_eq!(batches.len(), 1);
    Ok(batches.remove(0))
}

fn decode_json(
    schema: &DatasetSchema,
    body: &[u8],
    _first_row: u64,
) -> Result<DecodedBatch, BodyError> {
    decode_one(BodyFormat::named("json"), schema, body)
}

fn decode_ndjson(
    schema: &DatasetSchema,
    body: &[u8],
    _first_row: u64,
) -> Result<DecodedBatch, BodyError> {
    decode_one(BodyFormat::named("ndjson"), schema, body)
}

#[test]
fn long_bodies_are_cut_into_batches_with_request_row_numbers() {
    let schema = wells();
    let rows: Vec<_> = (0..10)
        .map(|i| {
            if i == 6 {
                json!({"well_code": "bad"})
            } else {
                json!({"well_code": i})
            }
        })
        .collect();
    let batches = decode_batches(
        BodyFormat::named("json"),
        &schema,
        json!(rows).to_string().as_bytes(),
        4,
    )
    .unwrap();
    let shape: Vec<(u64, usize)> = batches
        .iter()
        .map(|b| (b.first_row, b.batch.num_rows()))
        .collect();
    assert_eq!(shape, vec![(1, 4), (5, 4), (9, 2)]);
    let second = batches.into_iter().nth(1).unwrap();
    let listed = second.violations.into_listed();
    assert_eq!(
        (listed.len(), listed[0].row, listed[0].code),
        (1, 7, "type")
    );
    let ndjson: String = (0..5)
        .map(|i| format!("{{\"well_code\": {i}}}\n"))
        .collect();
    let batches =
        decode_batches(BodyFormat::named("ndjson"), &schema, ndjson.as_bytes(), 2).unwrap();
    assert_eq!(
        batches.iter().map(|b| b.first_row).collect::<Vec<_>>(),
        vec![1, 3, 5]
    );
}

// Decoding JSON and NDJSON

#[test]
fn one_object_or_an_array() {
    let schema = wells();
    let one = decode_json(&schema, br#"{"well_code": 1, "name": "a\"b"}"#, 1).unwrap();
    assert_eq!(one.batch.num_rows(), 1);
    assert_eq!(
        Value::from_array(FieldType::String, one.batch.column(2), 0),
        Value::String("a\"b".into())
    );
    let many = decode_json(
        &schema,
        json!([{"well_code": 1}, {"well_code": 2, "extra": [1, {"a": null}]}])
            .to_string()
            .as_bytes(),
        1,
    )
    .unwrap();
    assert_eq!(many.batch.num_rows(), 2);
    assert!(many.violations.is_empty());
    assert_eq!(
        Value::from_array(FieldType::Json, many.batch.column(7), 1),
        Value::Json(r#"[1,{"a":null}]"#.into())
    );
}

#[test]
fn body_level_errors() {
    let schema = wells();
    assert_eq!(decode_json(&schema, b"[]", 1).err(), Some(BodyError::Empty));
    assert_eq!(
        decode_json(&schema, b" \"text\"", 1).err(),
        Some(BodyError::Shape)
    );
    assert_eq!(decode_json(&schema, b"42", 1).err(), Some(BodyError::Shape));
    assert!(matches!(
        decode_json(&schema, b"[{\"well_code\": 1}", 1),
        Err(BodyError::Syntax(_))
    ));
    assert!(matches!(
        decode_json(&schema, b"{} {}", 1),
        Err(BodyError::Syntax(_))
    ));
    assert!(matches!(
        decode_json(&schema, b"nope", 1),
        Err(BodyError::Syntax(_))
    ));
    assert!(matches!(
        decode_json(&schema, b"[{\"name\": \"\xff\"}]", 1),
        Err(BodyError::Syntax(_))
    ));
    let hidden = decode_json(&schema, b"[{\"ghost\": \"\xff\"}]", 1);
    assert!(
        matches!(hidden, Err(BodyError::Syntax(_))),
        "invalid UTF-8 in a skipped value"
    );
}

#[test]
fn ndjson_reports_malformed_lines_and_keeps_the_rest() {
    let schema = wells();
    let body = b"{\"well_code\": 1}\n\n{\"well_code\": 2, \"name\": \r\n[3]\n{\"well_code\": 4} trailing\n{\"well_code\": 5}";
    let decoded = decode_ndjson(&schema, body, 1).unwrap();
    assert_eq!(decoded.batch.num_rows(), 5);
    let found: Vec<(u64, &str)> = decoded
        .violations
        .into_listed()
        .iter()
        .map(|v| (v.row, v.code))
        .collect();
    assert_eq!(
        found,
        vec![
            (2, "malformed_json"),
            (3, "not_an_object"),
            (4, "malformed_json")
        ]
    );
    assert_eq!(
        Value::from_array(FieldType::Integer, decoded.batch.column(0), 4),
        Value::Integer(5)
    );
    assert_eq!(
        decode_ndjson(&schema, b"\n \n", 1).err(),
        Some(BodyError::Empty)
    );
}

#[test]
fn repeated_fields_keep_rows_aligned() {
    let schema = wells();
    let decoded = decode_json(
        &schema,
        br#"[{"well_code": 1, "well_code": 2}, {"well_code": 3}]"#,
        1,
    )
    .unwrap();
    assert_eq!(decoded.batch.num_rows(), 2);
    let listed = decoded.violations.into_listed();
    assert_eq!((listed[0].row, listed[0].code), (1, "duplicate_field"));
    assert_eq!(
        Value::from_array(FieldType::Integer, decoded.batch.column(0), 1),
        Value::Integer(3)
    );
}

// Decoding then validating

fn codes(rows: serde_json::Value) -> Vec<(u64, Option<String>, &'static str)> {
    codes_for(&wells(), rows)
}

fn codes_for(
    schema: &DatasetSchema,
    rows: serde_json::Value,
) -> Vec<(u64, Option<String>, &'static str)> {
    let mut decoded = decode_json(schema, rows.to_string().as_bytes(), 1).unwrap();
    validate_batch(
        schema,
        &decoded.batch,
        1,
        &decoded.rejected,
        &mut decoded.violations,
    );
    decoded
        .violations
        .into_listed()
        .into_iter()
        .map(|v| (v.row, v.field, v.code))
        .collect()
}

#[test]
fn valid_rows_pass() {
    assert!(
        codes(json!([{"well_code": 1, "oil": 2.5, "period": "2020-01-01", "extra": {"a": 1}}]))
            .is_empty()
    );
}

#[test]
fn each_violation_names_row_field_and_code() {
    let found = codes(json!([
        {"well_code": 1},
        {"well_code": "x"},
        {"oil": -1},
        {"well_code": 4, "ghost": 1},
        [1, 2],
        {"well_code": 6, "active": "yes", "period": "soon"}
    ]));
    let f = |s: &str| Some(s.to_string());
    assert_eq!(
        found,
        vec![
            (2, f("well_code"), "type"),
            (3, f("well_code"), "required"),
            (3, f("oil"), "min"),
            (4, f("ghost"), "unknown_field"),
            (5, None, "not_an_object"),
            (6, f("active"), "type"),
            (6, f("period"), "type"),
        ]
    );
}

#[test]
fn string_rules_and_defaults() {
    let mut code = field("code", "string");
    code.pattern = Some(Located::new("^[A-Z]{3}$".into(), None));
    code.max_length = Some(Located::new(4, None));
    let mut kind = field("kind", "string");
    kind.one_of = Some(Located::new(vec![json!("oil"), json!("gas")], None));
    kind.default = Some(Located::new(json!("oil"), None));
    let mut days = field("days", "integer");
    days.min = Some(Located::new(json!(0), None));
    days.max = Some(Located::new(json!(31), None));
    let catalog = build_catalog(&[dataset(
        "t",
        vec![field("id", "integer"), code, kind, days],
        &["id"],
    )])
    .unwrap();
    let schema = catalog.get("t").unwrap();
    let found = codes_for(
        schema,
        json!([
            {"id": 1, "code": "ABC", "days": 31},
            {"id": 2, "code": "abc"},
            {"id": 3, "code": "ABCDE"},
            {"id": 4, "kind": "water"},
            {"id": 5, "days": 32},
            {"id": 6, "days": 1e20}
        ]),
    );
    let f = |s: &str| Some(s.to_string());
    assert_eq!(
        found,
        vec![
            (2, f("code"), "pattern"),
            (3, f("code"), "max_length"),
            (4, f("kind"), "one_of"),
            (5, f("days"), "max"),
            (6, f("days"), "overflow")
        ]
    );
}

#[test]
fn listing_is_capped_but_total_counted() {
    let rows: Vec<_> = (0..250)
        .map(|i| json!({"well_code": i, "oil": -1}))
        .collect();
    let schema = wells();
    let mut decoded = decode_json(
        &schema,
        serde_json::Value::Array(rows).to_string().as_bytes(),
        1,
    )
    .unwrap();
    validate_batch(
        &schema,
        &decoded.batch,
        1,
        &decoded.rejected,
        &mut decoded.violations,
    );
    assert_eq!(decoded.violations.total(), 250);
    let listed = decoded.violations.into_listed();
    assert_eq!(
        listed.len(),
        dataforge_domain::validate::MAX_LISTED_VIOLATIONS
    );
    assert_eq!(listed[0].row, 1);
    assert_eq!(listed[99].row, 100);
}

// Decoding CSV

#[test]
fn csv_matches_columns_by_name_with_quoting_and_empty_cells() {
    let schema = wells();
    let body = "name,well_code,extra,period,active\n\"North, \"\"A\"\"\",1,\"{\"\"a\"\": 1}\",2020-01-01,true\n,2,,,\n";
    let decoded = decode_one(BodyFormat::named("csv"), &schema, body.as_bytes()).unwrap();
    assert!(decoded.violations.is_empty());
    let batch = &decoded.batch;
    assert_eq!(batch.num_rows(), 2);
    assert_eq!(
        Value::from_array(FieldType::String, batch.column(2), 0),
        Value::String("North, \"A\"".into())
    );
    // a json value is kept as sent, less whitespace
    assert_eq!(
        Value::from_array(FieldType::Json, batch.column(7), 0),
        Value::Json(r#"{"a":1}"#.into())
    );
    assert_eq!(
        Value::from_array(FieldType::Timestamp, batch.column(3), 0),
        Value::Timestamp(1_577_836_800_000_000)
    );
    assert_eq!(
        Value::from_array(FieldType::Boolean, batch.column(6), 0),
        Value::Boolean(true)
    );
    assert_eq!(
        Value::from_array(FieldType::String, batch.column(2), 1),
        Value::Null
    );
    assert_eq!(
        Value::from_array(FieldType::Integer, batch.column(0), 1),
        Value::Integer(2)
    );
}

#[test]
fn csv_row_problems_are_violations_of_their_record() {
    let schema = wells();
    let body = b"well_code,oil,name\n1,2.5,a\n2,x,b\n3,1.0\n99999999999999999999,1,c\n5,1,\xff\n";
    let mut decoded = decode_one(BodyFormat::named("csv"), &schema, body).unwrap();
    assert_eq!(decoded.batch.num_rows(), 5);
    validate_batch(
        &schema,
        &decoded.batch,
        1,
        &decoded.rejected,
        &mut decoded.violations,
    );
    let found: Vec<(u64, Option<String>, &str)> = decoded
        .violations
        .into_listed()
        .into_iter()
        .map(|v| (v.row, v.field, v.code))
        .collect();
    let f = |s: &str| Some(s.to_string());
    assert_eq!(
        found,
        vec![
            (2, f("oil"), "type"),
            (3, None, "column_count"),
            (4, f("well_code"), "overflow"),
            (5, f("name"), "invalid_utf8")
        ]
    );
}

#[test]
fn csv_header_problems_fail_the_body() {
    let schema = wells();
    let unknown = decode_one(
        BodyFormat::named("csv"),
        &schema,
        b"well_code,colour\n1,red\n",
    )
    .err()
    .unwrap();
    assert!(
        unknown
            .to_string()
            .contains("the CSV header names `colour`, which is not a field of wells"),
        "{unknown}"
    );
    let twice = decode_one(
        BodyFormat::named("csv"),
        &schema,
        b"well_code,well_code\n1,2\n",
    )
    .err()
    .unwrap();
    assert_eq!(twice.to_string(), "the CSV header names `well_code` twice");
    assert_eq!(
        decode_one(BodyFormat::named("csv"), &schema, b"well_code\n").err(),
        Some(BodyError::Empty)
    );
}

// Decoding Arrow IPC and Parquet

mod columnar {
    use std::sync::Arc;

    use arrow_array::{
        ArrayRef, Float32Array, Int32Array, Int64Array, RecordBatch, StringArray,
        TimestampMillisecondArray,
    };
    use arrow_schema::{DataType, Field, Schema, TimeUnit};

    use super::*;

    fn input() -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new("name", DataType::Utf8, true),
            Field::new("well_code", DataType::Int32, false),
            Field::new(
                "period",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                true,
            ),
            Field::new("oil", DataType::Float32, true),
            Field::new("extra", DataType::Utf8, true),
        ]);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![Some("a"), None, Some("c")])),
            Arc::new(Int32Array::from(vec![1, 2, 3])),
            Arc::new(TimestampMillisecondArray::from(vec![
                Some(1_577_836_800_000),
                None,
                Some(1),
            ])),
            Arc::new(Float32Array::from(vec![Some(1.5), Some(-2.0), None])),
            Arc::new(StringArray::from(vec![
                Some("{\"a\":1}"),
                Some("not json"),
                None,
            ])),
        ];
        RecordBatch::try_new(Arc::new(schema), columns).unwrap()
    }

    fn ipc(batches: &[RecordBatch]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut writer =
            arrow_ipc::writer::StreamWriter::try_new(&mut out, &batches[0].schema()).unwrap();
        for batch in batches {
            writer.write(batch).unwrap();
        }
        writer.finish().unwrap();
        drop(writer);
        out
    }

    fn parquet(batch: &RecordBatch) -> Vec<u8> {
        let mut out = Vec::new();
        let mut writer =
            parquet::arrow::ArrowWriter::try_new(&mut out, batch.schema(), None).unwrap();
        writer.write(batch).unwrap();
        writer.close().unwrap();
        out
    }

    fn check_conformed(decoded: DecodedBatch) {
        let schema = wells();
        let batch = &decoded.batch;
        assert_eq!(batch.schema(), *schema.arrow_schema());
        assert_eq!(
            Value::from_array(FieldType::Integer, batch.column(0), 2),
            Value::Integer(3)
        );
        assert_eq!(
            Value::from_array(FieldType::Timestamp, batch.column(3), 0),
            Value::Timestamp(1_577_836_800_000_000)
        );
        assert_eq!(
            Value::from_array(FieldType::Timestamp, batch.column(3), 2),
            Value::Timestamp(1_000)
        );
        assert_eq!(
            Value::from_array(FieldType::Float, batch.column(4), 1),
            Value::Float(-2.0)
        );
        assert_eq!(
            Value::from_array(FieldType::Integer, batch.column(1), 0),
            Value::Null,
            "a missing column is null"
        );
        let listed = decoded.violations.into_listed();
        assert_eq!(listed.len(), 1);
        assert_eq!(
            (listed[0].row, listed[0].field.as_deref(), listed[0].code),
            (2, Some("extra"), "type")
        );
    }

    #[test]
    fn arrow_streams_are_matched_by_name_and_widened() {
        let schema = wells();
        check_conformed(decode_one(BodyFormat::named("arrow"), &schema, &ipc(&[input()])).unwrap());
        let two = decode_batches(
            BodyFormat::named("arrow"),
            &schema,
            &ipc(&[input(), input()]),
            2,
        )
        .unwrap();
        let shape: Vec<(u64, usize)> = two
            .iter()
            .map(|b| (b.first_row, b.batch.num_rows()))
            .collect();
        assert_eq!(shape, vec![(1, 2), (3, 1), (4, 2), (6, 1)]);
    }

    #[test]
    fn parquet_files_are_matched_by_name_and_widened() {
        check_conformed(
            decode_one(BodyFormat::named("parquet"), &wells(), &parquet(&input())).unwrap(),
        );
    }

    #[test]
    fn columns_that_do_not_fit_are_named_with_their_types() {
        let schema = Schema::new(vec![
            Field::new("oil", DataType::Int64, true),
            Field::new("colour", DataType::Utf8, true),
            Field::new("well_code", DataType::Int32, true),
        ]);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(vec![1])),
            Arc::new(StringArray::from(vec!["red"])),
            Arc::new(Int32Array::from(vec![1])),
        ];
        let batch = RecordBatch::try_new(Arc::new(schema), columns).unwrap();
        for body in [ipc(std::slice::from_ref(&batch)), parquet(&batch)] {
            let format = if body.starts_with(b"PAR1") {
                BodyFormat::named("parquet")
            } else {
                BodyFormat::named("arrow")
            };
            let Err(BodyError::Columns(problems)) = decode_one(format, &wells(), &body) else {
                panic!("expected column problems")
            };
            let found: Vec<(&str, &str)> = problems
                .iter()
                .map(|p| (p.field.as_deref().unwrap_or(""), p.code))
                .collect();
            assert_eq!(
                found,
                vec![("oil", "column_type"), ("colour", "unknown_field")]
            );
            assert!(
                problems[0].message.contains(
                    "has type Int64, which does not convert losslessly to float (Float64)"
                ),
                "{}",
                problems[0].message
            );
        }
    }

    #[test]
    fn dictionary_encoded_columns_are_decoded_to_their_values() {
        use arrow_array::types::Int32Type;
        use arrow_array::{Array, DictionaryArray};
        let names: DictionaryArray<Int32Type> =
            vec!["north", "south", "north"].into_iter().collect();
        let schema = Schema::new(vec![
            Field::new("well_code", DataType::Int64, false),
            Field::new("name", names.data_type().clone(), true),
        ]);
        let columns: Vec<ArrayRef> =
            vec![Arc::new(Int64Array::from(vec![1, 2, 3])), Arc::new(names)];
        let batch = RecordBatch::try_new(Arc::new(schema), columns).unwrap();
        for (format, body) in [
            (
                BodyFormat::named("arrow"),
                ipc(std::slice::from_ref(&batch)),
            ),
            (BodyFormat::named("parquet"), parquet(&batch)),
        ] {
            let decoded = decode_one(format, &wells(), &body).unwrap();
            assert!(decoded.violations.is_empty(), "{format:?}");
            assert_eq!(
                Value::from_array(FieldType::String, decoded.batch.column(2), 2),
                Value::String("north".into()),
                "{format:?}"
            );
        }
    }

    #[test]
    fn truncated_or_foreign_bodies_are_malformed() {
        let full = ipc(&[input(), input()]);
        let cut = &full[..full.len() - 40];
        let Err(BodyError::Malformed(message)) =
            decode_one(BodyFormat::named("arrow"), &wells(), cut)
        else {
            panic!("expected malformed")
        };
        assert!(
            message.contains("truncated after 3 complete record(s)"),
            "{message}"
        );
        assert!(matches!(
            decode_one(BodyFormat::named("arrow"), &wells(), b"hello"),
            Err(BodyError::Malformed(_))
        ));
        assert!(matches!(
            decode_one(BodyFormat::named("parquet"), &wells(), b"hello"),
            Err(BodyError::Malformed(_))
        ));
    }
}

#[test]
fn json_values_keep_large_integers_exactly_in_every_text_format() {
    let schema = wells();
    let big = "123456789012345678901234567890";
    // pretty-printed, with whitespace and an escaped quote inside a string
    let sent = format!("{{\n  \"id\": {big},\n  \"tiny\": 1e-400, \"s\": \"a \\\" b\"\n}}");
    let stored = format!(r#"{{"id":{big},"tiny":1e-400,"s":"a \" b"}}"#);
    for format in [BodyFormat::named("json"), BodyFormat::named("ndjson")] {
        // an NDJSON record takes one line
        let value = if format.name() == "ndjson" {
            sent.replace('\n', " ")
        } else {
            sent.clone()
        };
        let json = format!(r#"{{"well_code": 1, "extra": {value}}}"#);
        let decoded = decode_one(format, &schema, json.as_bytes()).unwrap();
        assert!(decoded.violations.is_empty(), "{format:?}");
        assert_eq!(
            Value::from_array(FieldType::Json, decoded.batch.column(7), 0),
            Value::Json(stored.clone()),
            "{format:?}"
        );
    }
    let csv = format!("well_code,extra\n1,\"{}\"\n", sent.replace('"', "\"\""));
    let decoded = decode_one(BodyFormat::named("csv"), &schema, csv.as_bytes()).unwrap();
    assert_eq!(
        Value::from_array(FieldType::Json, decoded.batch.column(7), 0),
        Value::Json(stored)
    );
    // still checked to be JSON, and `null` is null
    let bad = decode_one(
        BodyFormat::named("csv"),
        &schema,
        b"well_code,extra\n1,{oops\n",
    )
    .unwrap();
    assert_eq!(bad.violations.into_listed()[0].code, "type");
    let null = decode_json(&schema, br#"{"well_code": 1, "extra": null}"#, 1).unwrap();
    assert!(null.batch.column(7).is_null(0));
}

/// A CSV body decoded with read options.
fn decode_csv_with(
    schema: &DatasetSchema,
    options: &ReadOptions,
    body: &[u8],
) -> Result<DecodedBatch, BodyError> {
    let mut batches = Vec::new();
    Formats.decode(
        BodyFormat::named("csv"),
        options,
        schema,
        &mut &body[..],
        1 << 20,
        &mut |b| {
            batches.push(b);
            Ok(())
        },
    )?;
    assert_eq!(batches.len(), 1);
    Ok(batches.remove(0))
}

#[test]
fn csv_options_set_the_delimiter_and_the_null_spelling() {
    let schema = wells();
    let options = ReadOptions {
        delimiter: b';',
        null: Some("NA".into()),
    };
    let body = b"well_code;name;oil;note\n1;a,b;NA;\n2;NA;1.5;\"NA\"\n";
    let decoded = decode_csv_with(&schema, &options, body).unwrap();
    assert!(decoded.violations.is_empty());
    let cell = |col: usize, row: usize| {
        Value::from_array(
            schema.fields[col].field_type,
            decoded.batch.column(col),
            row,
        )
    };
    assert_eq!(cell(2, 0), Value::String("a,b".into()));
    assert_eq!((cell(4, 0), cell(2, 1)), (Value::Null, Value::Null));
    // the spelling is of the cell's text, quoted or not; an empty cell stays null
    assert_eq!((cell(5, 0), cell(5, 1)), (Value::Null, Value::Null));
    assert_eq!(cell(4, 1), Value::Float(1.5));
    // read with the default comma, the same body is one column the header does not name
    assert!(decode_csv_with(&schema, &ReadOptions::default(), body).is_err());
}

#[test]
fn csv_booleans_take_the_usual_spellings_in_any_case() {
    let schema = wells();
    let mut body = String::from("well_code,active\n");
    let spellings = ["true", "FALSE", "t", "F", "1", "0", "yes", "No", "Y", "on"];
    for (i, spelling) in spellings.iter().enumerate() {
        body.push_str(&format!("{i},{spelling}\n"));
    }
    let decoded = decode_csv_with(&schema, &ReadOptions::default(), body.as_bytes()).unwrap();
    let active: Vec<Value> = (0..8)
        .map(|row| Value::from_array(FieldType::Boolean, decoded.batch.column(6), row))
        .collect();
    let expected = [true, false, true, false, true, false, true, false].map(Value::Boolean);
    assert_eq!(active, expected);
    // other words are not guessed at
    let refused: Vec<(u64, &str)> = decoded
        .violations
        .into_listed()
        .into_iter()
        .map(|v| (v.row, v.code))
        .collect();
    assert_eq!(refused, [(9, "type"), (10, "type")]);
}

#[test]
fn csv_headers_match_fields_in_another_case_when_unambiguous() {
    let schema = wells();
    let decoded =
        decode_csv_with(&schema, &ReadOptions::default(), b"WELL_CODE,Name\n1,a\n").unwrap();
    assert_eq!(
        Value::from_array(FieldType::String, decoded.batch.column(2), 0),
        Value::String("a".into())
    );
    let twice = decode_csv_with(&schema, &ReadOptions::default(), b"Name,name\na,b\n")
        .err()
        .unwrap()
        .to_string();
    assert!(
        twice.contains("`Name` and `name`, which are both the field `name`"),
        "{twice}"
    );

    // fields that differ only in case: an exact header wins, another spelling is ambiguous
    let fields = vec![field("code", "integer"), field("Code", "integer")];
    let Ok(catalog) = build_catalog(&[dataset("cased", fields, &["code"])]) else {
        return; // schemas may refuse such fields; then nothing is ambiguous
    };
    let cased = catalog.get("cased").unwrap();
    let exact = decode_csv_with(cased, &ReadOptions::default(), b"Code,code\n1,2\n").unwrap();
    assert!(exact.violations.is_empty());
    let ambiguous = decode_csv_with(cased, &ReadOptions::default(), b"CODE\n1\n")
        .err()
        .unwrap()
        .to_string();
    assert!(
        ambiguous.contains("matches the fields `code` and `Code`"),
        "{ambiguous}"
    );
}
