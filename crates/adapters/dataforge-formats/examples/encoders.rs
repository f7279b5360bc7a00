//! Measures our hand-written Arrow-to-NDJSON and Arrow-to-CSV encoders against arrow's own writers
//! (`arrow-json`, `arrow-csv`, the workspace's arrow version) on an export-sized batch stream, and
//! says whether each pair writes the same bytes. The batches come from an Arrow IPC stream file,
//! read whole into memory first so that only encoding is timed (`bench/encoders.sh` does all this):
//!
//! ```sh
//! dataforge generate --dataset well_production --rows 1000000 --format arrow -o /tmp/wp.arrow
//! cargo run --release -p dataforge-formats --example encoders -- /tmp/wp.arrow [runs]
//! ```

use std::io::{self, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{ArrayRef, RecordBatch, TimestampMicrosecondArray};
use arrow_schema::{DataType, SchemaRef};
use dataforge_domain::query::OutputColumn;
use dataforge_domain::value::FieldType;
use dataforge_formats::AnswerColumns;
use dataforge_formats::table::by_name;

/// A writer that counts the bytes (timed runs, so that output is never the cost) or keeps them
/// (the run whose bytes are compared).
#[derive(Default)]
struct Measured {
    bytes: u64,
    kept: Option<Vec<u8>>,
}

impl Write for Measured {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if let Some(kept) = &mut self.kept {
            kept.extend_from_slice(data);
        }
        self.bytes += data.len() as u64;
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The field type an Arrow column is exported from (string columns as strings).
fn field_type(ty: &DataType) -> FieldType {
    match ty {
        DataType::Int64 => FieldType::Integer,
        DataType::Float64 => FieldType::Float,
        DataType::Boolean => FieldType::Boolean,
        DataType::Date32 => FieldType::Date,
        DataType::Timestamp(_, _) => FieldType::Timestamp,
        _ => FieldType::String,
    }
}

/// The batches with their timestamps' zone taken off (no copy): arrow's writers, built without
/// chrono-tz, cannot format a zone named `UTC`; the instants are the same.
fn unzoned(batches: &[RecordBatch]) -> Vec<RecordBatch> {
    batches
        .iter()
        .map(|batch| {
            let columns: Vec<ArrayRef> = batch
                .columns()
                .iter()
                .map(
                    |c| match c.as_any().downcast_ref::<TimestampMicrosecondArray>() {
                        Some(stamps) => {
                            Arc::new(stamps.clone().with_timezone_opt(None::<String>)) as ArrayRef
                        }
                        None => Arc::clone(c),
                    },
                )
                .collect();
            RecordBatch::try_from_iter(
                batch
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .zip(columns),
            )
            .expect("the same batch")
        })
        .collect()
}

fn read(path: &str) -> (SchemaRef, Vec<RecordBatch>) {
    let file = std::fs::File::open(path).expect("open the Arrow stream file");
    let reader = arrow_ipc::reader::StreamReader::try_new(io::BufReader::new(file), None)
        .expect("an Arrow IPC stream");
    let schema = reader.schema();
    let batches = reader.map(|b| b.expect("batch")).collect();
    (schema, batches)
}

/// Ours: the formats table's encoder.
fn ours(name: &str, columns: &AnswerColumns, batches: &[RecordBatch], out: &mut Measured) {
    let encode = by_name(name).and_then(|f| f.encode).expect("an encoder");
    let mut stream = batches.iter().cloned().map(Ok);
    encode(columns, &mut stream, out).expect("encode");
}

/// RFC 3339 in UTC, as ours writes instants (whole seconds: the generated rows have no fraction).
const INSTANT: &str = "%Y-%m-%dT%H:%M:%SZ";

fn arrow_ndjson(batches: &[RecordBatch], out: &mut Measured) {
    let mut writer = arrow_json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .with_timestamp_format(INSTANT.into())
        .build::<_, arrow_json::writer::LineDelimited>(out);
    for batch in batches {
        writer.write(batch).expect("write");
    }
    writer.finish().expect("finish");
}

fn arrow_csv(batches: &[RecordBatch], out: &mut Measured) {
    let mut writer = arrow_csv::WriterBuilder::new()
        .with_timestamp_format(INSTANT.into())
        .build(out);
    for batch in batches {
        writer.write(batch).expect("write");
    }
}

/// The best of `runs` timings, and the bytes written.
fn best(
    runs: usize,
    encode: &dyn Fn(&[RecordBatch], &mut Measured),
    batches: &[RecordBatch],
) -> (Duration, u64) {
    let mut fastest = Duration::MAX;
    let mut bytes = 0;
    for _ in 0..runs {
        let mut out = Measured::default();
        let started = Instant::now();
        encode(batches, &mut out);
        fastest = fastest.min(started.elapsed());
        bytes = out.bytes;
    }
    (fastest, bytes)
}

/// The bytes written for the first `rows` rows (whole batches).
fn first_bytes(
    encode: &dyn Fn(&[RecordBatch], &mut Measured),
    batches: &[RecordBatch],
    rows: usize,
) -> Vec<u8> {
    let mut taken = 0;
    let head: Vec<RecordBatch> = batches
        .iter()
        .take_while(|b| {
            taken += b.num_rows();
            taken - b.num_rows() < rows
        })
        .cloned()
        .collect();
    let mut out = Measured {
        kept: Some(Vec::new()),
        ..Measured::default()
    };
    encode(&head, &mut out);
    out.kept.unwrap_or_default()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: encoders FILE.arrow [runs]");
    let runs: usize = args.next().map_or(5, |r| r.parse().expect("runs"));
    let (schema, batches) = read(&path);
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let columns: Arc<[OutputColumn]> = schema
        .fields()
        .iter()
        .map(|f| OutputColumn {
            name: f.name().clone(),
            field_type: field_type(f.data_type()),
        })
        .collect();
    let columns = AnswerColumns::new(columns, None);
    println!(
        "{rows} rows in {} batches, best of {runs} runs",
        batches.len()
    );
    // arrow's writers get the same instants without the zone name they cannot format
    let plain = unzoned(&batches);
    type Encoder<'a> = Box<dyn Fn(&[RecordBatch], &mut Measured) + 'a>;
    let cases: [(&str, Encoder, &[RecordBatch]); 4] = [
        (
            "ndjson, ours",
            Box::new(|b, o| ours("ndjson", &columns, b, o)),
            &batches,
        ),
        ("ndjson, arrow-json", Box::new(arrow_ndjson), &plain),
        (
            "csv, ours",
            Box::new(|b, o| ours("csv", &columns, b, o)),
            &batches,
        ),
        ("csv, arrow-csv", Box::new(arrow_csv), &plain),
    ];
    let mut heads = Vec::new();
    for (name, encode, input) in &cases {
        let (time, bytes) = best(runs, encode.as_ref(), input);
        let secs = time.as_secs_f64();
        println!(
            "{name:20} {:8.1} ms  {:6.2} M rows/s  {:7.1} MB/s  {bytes} bytes",
            secs * 1e3,
            rows as f64 / secs / 1e6,
            bytes as f64 / secs / 1e6,
        );
        heads.push(first_bytes(encode.as_ref(), input, 1));
    }
    for (name, ours, theirs) in [
        ("ndjson", &heads[0], &heads[1]),
        ("csv", &heads[2], &heads[3]),
    ] {
        let line = |text: &[u8]| {
            let start = if name == "csv" {
                text.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1)
            } else {
                0
            };
            let end = text[start..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(text.len(), |i| start + i);
            String::from_utf8_lossy(&text[start..end]).into_owned()
        };
        println!("{name}: same bytes on the first batch: {}", ours == theirs);
        println!("  ours:  {}", line(ours));
        println!("  arrow: {}", line(theirs));
    }
}
