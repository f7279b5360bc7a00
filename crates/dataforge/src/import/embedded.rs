//! Import into the embedded database: the files go through the same use case and write pipeline
//! as an HTTP write (the database must not be held by a running server: `--url` for that).

use std::io::BufReader;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dataforge_app::{App, AppError};
use dataforge_domain::write::WriteOptions;

use super::{
    ImportArgs, Source, Summary, conflict_line, open_tracked, print_summary, sources,
    violation_line,
};
use crate::settings::Settings;
use crate::wire::{close, fail, runtime, wire};

/// Imports every file in turn: success when all were written, 2 for a usage error.
pub fn import(settings: &Settings, args: &ImportArgs, options: WriteOptions) -> ExitCode {
    let dataset = args.dataset.as_str();
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    runtime.block_on(async {
        let (app, store, _) = match wire(settings).await {
            Ok(wired) => wired,
            Err(code) => return code,
        };
        if let Err(e) = app.dataset(dataset) {
            drop(app);
            close(store).await;
            return fail(&e.to_string());
        }
        let mut all_ok = true;
        for source in sources(&args.files, args.format, &args.read) {
            let Some(source) = source else {
                all_ok = false;
                continue;
            };
            if let Err(message) = import_file(&app, dataset, &source, options).await {
                eprintln!("error: {}: {message}", source.path.display());
                all_ok = false;
            }
        }
        drop(app);
        close(store).await;
        if all_ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    })
}

async fn import_file(
    app: &App,
    dataset: &str,
    source: &Source<'_>,
    options: WriteOptions,
) -> Result<(), String> {
    let (tracked, bar) = open_tracked(source.path)?;
    let seen = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let ticker = {
        let (bar, seen) = (bar.clone(), Arc::clone(&seen));
        tokio::spawn(async move {
            loop {
                bar.set_message(format!("{} rows", seen.load(Ordering::Relaxed)));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let body = BufReader::with_capacity(1 << 20, tracked);
    let result = app
        .ingest_counted(
            dataset,
            source.format.id(),
            source.read.clone(),
            body,
            options,
            Arc::clone(&seen),
        )
        .await;
    ticker.abort();
    bar.finish_and_clear();
    let written = result.map_err(|e| describe(app, dataset, &e))?;
    let o = written.outcome;
    let summary = Summary {
        rows: seen.load(Ordering::Relaxed),
        inserted: o.inserted,
        updated: o.updated,
        skipped: o.skipped,
        rejected: written.rejected,
        violations: written
            .violations
            .iter()
            .map(|v| violation_line(v.row, v.field.as_deref(), &v.message, v.code))
            .collect(),
    };
    print_summary(source.path, started, &summary);
    Ok(())
}

/// An error as text, with every listed violation or conflicting key on its own line.
fn describe(app: &App, dataset: &str, error: &AppError) -> String {
    let mut lines = vec![error.to_string()];
    let (listed, total) = match error {
        AppError::Invalid { violations, total } => {
            lines.extend(
                violations
                    .iter()
                    .map(|v| violation_line(v.row, v.field.as_deref(), &v.message, v.code)),
            );
            (violations.len() as u64, *total)
        }
        AppError::Conflict { keys, total } => {
            if let Ok(schema) = app.dataset(dataset) {
                lines.extend(keys.iter().map(|k| {
                    let shown = k.to_json(&schema);
                    conflict_line(&shown["key"], shown["reason"].as_str().unwrap_or_default())
                }));
            }
            (keys.len() as u64, *total)
        }
        _ => (0, 0),
    };
    if total > listed {
        lines.push(format!("... and {} more", total - listed));
    }
    lines.join("\n  ")
}
