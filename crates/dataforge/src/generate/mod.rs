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
use dataforge_domain::query::OutputColumn;
use dataforge_domain::schema::DatasetSchema;
use dataforge_formats::AnswerColumns;
use dataforge_formats::table::{self, Format};

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
    #[arg(long, value_parser = writable)]
    format: &'static Format,
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
    let format = args.format;
    match generate(schema, args.start, args.rows, format, &args.output) {
        Ok(()) => {
            println!(
                "wrote {} {} records (rows {}..{}) as {} to {}",
                args.rows,
                schema.name,
                args.start,
                args.start + args.rows,
                format.name,
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
    format: &Format,
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

/// `--format` of `generate`: a format of the table that can be written.
pub fn writable(name: &str) -> Result<&'static Format, String> {
    table::encodable()
        .find(|f| f.name == name)
        .ok_or_else(|| format!("formats written: {}", table::names(table::encodable())))
}

/// Writes batches with `format`'s encoder from the formats table (the same as an export's).
fn write(
    dataset: &DatasetSchema,
    format: &Format,
    mut batches: impl Iterator<Item = Result<RecordBatch, String>>,
    out: &mut (impl Write + Send),
) -> Result<(), String> {
    let Some(encode) = format.encode else {
        return Err(format!("cannot write {} files", format.name));
    };
    let columns: Arc<[OutputColumn]> = dataset
        .fields
        .iter()
        .map(|f| OutputColumn {
            name: f.name.clone(),
            field_type: f.field_type,
        })
        .collect();
    let columns = AnswerColumns::new(columns, Some(dataset));
    encode(&columns, &mut batches, out).map_err(|e| format!("writing failed: {e}"))
}
