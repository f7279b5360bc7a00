//! `dataforge generate`: deterministic synthetic records of any dataset, for demos, tests and
//! benchmarks, written as a stream (batch by batch) so any row count needs the same memory.
//! `well_production` keeps its documented generator; every other dataset is generated from its
//! schema ([`synthetic`]).

mod synthetic;
mod well_production;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use arrow_array::RecordBatch;
use clap::Args;
use dataforge_domain::records::BodyFormat;
use dataforge_domain::schema::DatasetSchema;
use dataforge_domain::value::{Value, format_date, format_timestamp};

use crate::FormatArg;
use crate::settings::ServerSettings;
use crate::wire::{fail, load_catalog};

#[derive(Args)]
pub struct GenerateArgs {
    /// Dataset to generate rows of.
    #[arg(long)]
    dataset: String,
    /// Number of rows.
    #[arg(long)]
    rows: u64,
    /// Index of the first row, so that files of consecutive ranges hold distinct keys.
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// Output format.
    #[arg(long, value_enum)]
    format: FormatArg,
    /// Output file.
    #[arg(short, long)]
    output: PathBuf,
    /// Directory of schema files (default: ./schemas).
    #[arg(long)]
    schemas: Option<PathBuf>,
}

pub fn run(args: GenerateArgs) -> ExitCode {
    let dir = args
        .schemas
        .unwrap_or_else(|| ServerSettings::default().schemas);
    let catalog = match load_catalog(&dir) {
        Ok(catalog) => catalog,
        Err(code) => return code,
    };
    let Some(schema) = catalog.get(&args.dataset) else {
        return fail(&format!(
            "no dataset named `{}` in {}",
            args.dataset,
            dir.display()
        ));
    };
    let format: BodyFormat = args.format.into();
    match generate(schema, args.start, args.rows, format, &args.output) {
        Ok(()) => {
            println!(
                "wrote {} {} records (rows {}..{}) as {} to {}",
                args.rows,
                schema.name,
                args.start,
                args.start + args.rows,
                format.name(),
                args.output.display()
            );
            ExitCode::SUCCESS
        }
        Err(message) => fail(&message),
    }
}

/// Rows per generated batch.
const BATCH: u64 = 64 * 1024;

/// Writes rows `start..start + rows` of `dataset` to `out`.
fn generate(
    dataset: &Arc<DatasetSchema>,
    start: u64,
    rows: u64,
    format: BodyFormat,
    out: &Path,
) -> Result<(), String> {
    let end = start
        .checked_add(rows)
        .ok_or("--start plus --rows is too large")?;
    let batches: Box<dyn Iterator<Item = Result<RecordBatch, String>>> = if dataset.name
        == "well_production"
    {
        let schema = Arc::clone(dataset.arrow_schema());
        Box::new(well_production::batches(schema, start, end).map(|b| b.map_err(|e| e.to_string())))
    } else {
        let generator = synthetic::Synthetic::new(Arc::clone(dataset));
        generator.check_range(end)?;
        Box::new(
            (start..end)
                .step_by(BATCH as usize)
                .map(move |s| generator.batch(s, (s + BATCH).min(end))),
        )
    };
    let file = File::create(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    write(dataset, format, batches, &mut out)?;
    out.flush().map_err(|e| format!("writing failed: {e}"))
}

/// Writes batches in `format`.
fn write(
    dataset: &DatasetSchema,
    format: BodyFormat,
    batches: impl Iterator<Item = Result<RecordBatch, String>>,
    out: &mut (impl Write + Send),
) -> Result<(), String> {
    let failed = |e: &dyn std::fmt::Display| format!("writing failed: {e}");
    let schema = Arc::clone(dataset.arrow_schema());
    match format {
        BodyFormat::Arrow => {
            let mut writer =
                arrow_ipc::writer::StreamWriter::try_new(out, &schema).map_err(|e| failed(&e))?;
            for batch in batches {
                writer.write(&batch?).map_err(|e| failed(&e))?;
            }
            writer.finish().map_err(|e| failed(&e))
        }
        BodyFormat::Parquet => {
            let mut writer =
                parquet::arrow::ArrowWriter::try_new(out, schema, None).map_err(|e| failed(&e))?;
            for batch in batches {
                writer.write(&batch?).map_err(|e| failed(&e))?;
            }
            writer.close().map(|_| ()).map_err(|e| failed(&e))
        }
        BodyFormat::Csv => {
            let mut writer = csv::WriterBuilder::new()
                .terminator(csv::Terminator::CRLF)
                .from_writer(out);
            writer
                .write_record(dataset.fields.iter().map(|f| f.name.as_str()))
                .map_err(|e| failed(&e))?;
            for batch in batches {
                let batch = batch?;
                for row in 0..batch.num_rows() {
                    let cells = dataset.fields.iter().enumerate().map(|(f, field)| {
                        cell(&Value::from_array(field.field_type, batch.column(f), row))
                    });
                    writer.write_record(cells).map_err(|e| failed(&e))?;
                }
            }
            writer.flush().map_err(|e| failed(&e))
        }
        BodyFormat::Ndjson | BodyFormat::Json => {
            let array = format == BodyFormat::Json;
            let mut first = true;
            out.write_all(if array { b"[" } else { b"" })
                .map_err(|e| failed(&e))?;
            for batch in batches {
                let batch = batch?;
                for row in 0..batch.num_rows() {
                    let record: serde_json::Map<String, serde_json::Value> = dataset
                        .fields
                        .iter()
                        .enumerate()
                        .map(|(f, field)| {
                            let value = Value::from_array(field.field_type, batch.column(f), row);
                            (field.name.clone(), value.to_json())
                        })
                        .collect();
                    let separator: &[u8] = match (array, first) {
                        (true, false) => b",",
                        _ => b"",
                    };
                    first = false;
                    out.write_all(separator).map_err(|e| failed(&e))?;
                    serde_json::to_writer(&mut *out, &record).map_err(|e| failed(&e))?;
                    if !array {
                        out.write_all(b"\n").map_err(|e| failed(&e))?;
                    }
                }
            }
            out.write_all(if array { b"]" } else { b"" })
                .map_err(|e| failed(&e))
        }
    }
}

/// A value as a CSV cell: null is empty, dates and timestamps as the API writes them.
fn cell(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::Date(d) => format_date(*d),
        Value::Timestamp(t) => format_timestamp(*t),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_written_as_the_api_reads_them() {
        assert_eq!(cell(&Value::Null), "");
        assert_eq!(cell(&Value::Timestamp(0)), "1970-01-01T00:00:00Z");
        assert_eq!(cell(&Value::Date(1)), "1970-01-02");
        assert_eq!(cell(&Value::Json("{\"a\":1}".into())), "{\"a\":1}");
    }
}
