//! `dataforge check`: every problem of every schema file, at once.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::settings::Settings;
use crate::wire::{fail, load_catalog};

#[derive(Args)]
pub struct CheckArgs {
    /// Directory of schema files (default: the configured one, ./schemas).
    dir: Option<PathBuf>,
    /// Configuration file (default: ./dataforge.toml when present).
    #[arg(long)]
    config: Option<PathBuf>,
}

pub fn run(args: CheckArgs) -> ExitCode {
    let settings = match Settings::load(args.config.as_deref()) {
        Ok(settings) => settings,
        Err(e) => return fail(&e.to_string()),
    };
    let dir = args.dir.unwrap_or(settings.server.schemas);
    match load_catalog(&dir) {
        Ok(catalog) => {
            let names: Vec<&str> = catalog.iter().map(|d| d.name.as_str()).collect();
            println!(
                "ok: {} dataset(s) in {}: {}",
                catalog.len(),
                dir.display(),
                names.join(", ")
            );
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}
