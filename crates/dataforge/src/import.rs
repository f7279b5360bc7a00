//! `dataforge import`: loads files through the same use case and write pipeline as HTTP, with a
//! progress bar and a summary. Each file is one all-or-nothing write.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use std::process::ExitCode;

use clap::Args;
use dataforge_app::{App, AppError};
use dataforge_domain::records::BodyFormat;
use dataforge_domain::write::{WriteOptions, parse_write_params};
use indicatif::{ProgressBar, ProgressStyle};

use crate::FormatArg;
use crate::wire::{StoreArgs, close, fail, load_settings, runtime, wire};

#[derive(Args)]
pub struct ImportArgs {
    /// Dataset to load into.
    #[arg(long)]
    dataset: String,
    /// Files to load, each as one all-or-nothing write.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// File format (default: from each file's extension).
    #[arg(long, value_enum)]
    format: Option<FormatArg>,
    /// What to do with keys already stored or repeated: error, ignore, upsert or merge.
    #[arg(long, default_value = "error")]
    on_conflict: String,
    /// What to do with invalid records: reject (the whole file) or skip (them).
    #[arg(long, default_value = "reject")]
    on_error: String,
    #[command(flatten)]
    store: StoreArgs,
}

pub fn run(args: ImportArgs) -> ExitCode {
    let settings = match load_settings(args.store) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    let params = [
        ("on_conflict".to_owned(), args.on_conflict),
        ("on_error".to_owned(), args.on_error),
    ];
    let options = match parse_write_params(&params) {
        Ok(options) => options,
        Err(e) => {
            return fail(&format!(
                "--{}: {}",
                e.parameter.replace('_', "-"),
                e.message
            ));
        }
    };
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let (dataset, files, format) = (args.dataset, args.files, args.format.map(Into::into));
    runtime.block_on(async {
        let (app, store, _) = match wire(&settings).await {
            Ok(wired) => wired,
            Err(code) => return code,
        };
        if let Err(e) = app.dataset(&dataset) {
            close(store).await;
            return fail(&e.to_string());
        }
        let ok = import(&app, &dataset, &files, format, options).await;
        drop(app);
        close(store).await;
        if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    })
}

/// The format a file's extension names.
pub fn format_of(path: &Path) -> Option<BodyFormat> {
    let extension = path.extension()?.to_str()?.to_ascii_lowercase();
    Some(match extension.as_str() {
        "csv" => BodyFormat::Csv,
        "ndjson" | "jsonl" => BodyFormat::Ndjson,
        "json" => BodyFormat::Json,
        "parquet" => BodyFormat::Parquet,
        "arrow" | "arrows" | "ipc" => BodyFormat::Arrow,
        _ => return None,
    })
}

/// A file read that advances a progress bar by the bytes read.
struct Tracked {
    file: File,
    bar: ProgressBar,
}

impl Read for Tracked {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

/// Imports every file in turn; returns whether all succeeded.
pub async fn import(
    app: &App,
    dataset: &str,
    files: &[PathBuf],
    format: Option<BodyFormat>,
    options: WriteOptions,
) -> bool {
    let mut all_ok = true;
    for path in files {
        let Some(format) = format.or_else(|| format_of(path)) else {
            eprintln!(
                "error: {}: cannot tell the format from the extension; pass --format",
                path.display()
            );
            all_ok = false;
            continue;
        };
        match import_file(app, dataset, path, format, options).await {
            Ok(()) => {}
            Err(message) => {
                eprintln!("error: {}: {message}", path.display());
                all_ok = false;
            }
        }
    }
    all_ok
}

async fn import_file(
    app: &App,
    dataset: &str,
    path: &Path,
    format: BodyFormat,
    options: WriteOptions,
) -> Result<(), String> {
    let file = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = ProgressBar::new(size);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let seen = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let ticker = {
        let (bar, seen) = (bar.clone(), Arc::clone(&seen));
        tokio::spawn(async move {
            loop {
                let rows = seen.load(Ordering::Relaxed);
                let rate = rows as f64 / started.elapsed().as_secs_f64().max(1e-3);
                bar.set_message(format!("{rows} rows, {rate:.0} rows/s"));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let body = BufReader::with_capacity(
        1 << 20,
        Tracked {
            file,
            bar: bar.clone(),
        },
    );
    let result = app
        .ingest_counted(dataset, format, body, options, Arc::clone(&seen))
        .await;
    ticker.abort();
    bar.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();
    let summary = result.map_err(|e| describe(&e))?;
    let rows = seen.load(Ordering::Relaxed);
    let o = summary.outcome;
    println!(
        "{}: {rows} rows read in {elapsed:.1} s ({:.0} rows/s): inserted {}, updated {}, skipped {}, rejected {}",
        path.display(),
        rows as f64 / elapsed.max(1e-3),
        o.inserted,
        o.updated,
        o.skipped,
        summary.rejected
    );
    for v in &summary.violations {
        println!(
            "  row {}, {}: {} ({})",
            v.row,
            v.field.as_deref().unwrap_or("record"),
            v.message,
            v.code
        );
    }
    Ok(())
}

/// An error as text, with every listed violation or conflicting key on its own line.
fn describe(error: &AppError) -> String {
    let mut text = error.to_string();
    match error {
        AppError::Invalid { violations, total } => {
            for v in violations {
                text.push_str(&format!(
                    "\n  row {}, {}: {} ({})",
                    v.row,
                    v.field.as_deref().unwrap_or("record"),
                    v.message,
                    v.code
                ));
            }
            if *total > violations.len() as u64 {
                text.push_str(&format!(
                    "\n  ... and {} more",
                    *total - violations.len() as u64
                ));
            }
        }
        AppError::Conflict { keys, total } => {
            for key in keys {
                let values: Vec<String> = key.key.iter().map(ToString::to_string).collect();
                text.push_str(&format!("\n  key {} ({:?})", values.join("/"), key.reason));
            }
            if *total > keys.len() as u64 {
                text.push_str(&format!("\n  ... and {} more", *total - keys.len() as u64));
            }
        }
        _ => {}
    }
    text
}
