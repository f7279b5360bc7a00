//! The composition root: settings from file, environment and flags; the schemas; the store opened
//! and prepared; the adapters wired into the use cases. Every command that opens the store starts
//! here.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use dataforge_app::App;
use dataforge_domain::ports::{MigrationPolicy, MigrationReport, Store};
use dataforge_domain::schema::{Catalog, SchemaProblem};
use dataforge_formats::Formats;

use crate::database;
use crate::settings::Settings;

/// Where the configuration, the schemas and the database are: shared by every command that opens
/// the store.
#[derive(Args)]
pub struct StoreArgs {
    /// Configuration file (default: ./dataforge.toml when present).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Directory of schema files (default: ./schemas).
    #[arg(long)]
    pub schemas: Option<PathBuf>,
    /// Database file of the DuckDB store (default: ./data/dataforge.duckdb); with PostgreSQL,
    /// where the node's own files (API keys) go beside.
    #[arg(long)]
    pub db: Option<PathBuf>,
}

/// Settings from file and environment, with the `--schemas` and `--db` flags applied on top.
pub fn load_settings(store: &StoreArgs) -> Result<Settings, ExitCode> {
    let mut settings = Settings::load(store.config.as_deref()).map_err(|e| fail(&e.to_string()))?;
    if let Some(schemas) = &store.schemas {
        settings.server.schemas = schemas.clone();
    }
    settings.database.place(store.db.as_deref());
    Ok(settings)
}

pub fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(&format!("cannot start the async runtime: {e}")))
}

pub fn fail(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}

pub fn print_problems(problems: &[SchemaProblem]) {
    for problem in problems {
        eprintln!("{problem}");
    }
    eprintln!("{} problem(s) found", problems.len());
}

/// The schemas of `dir`, or the problems printed and the exit code.
pub fn load_catalog(dir: &std::path::Path) -> Result<Catalog, ExitCode> {
    dataforge_schema_toml::load_catalog(dir).map_err(|problems| {
        print_problems(&problems);
        ExitCode::FAILURE
    })
}

/// Loads the schemas, opens and prepares the store, and wires the adapters into the use cases.
/// On failure, the problem is printed and the exit code returned.
pub async fn wire(settings: &Settings) -> Result<(App, Arc<dyn Store>, Arc<Catalog>), ExitCode> {
    let catalog = match load_catalog(&settings.server.schemas) {
        Ok(catalog) => Arc::new(catalog),
        Err(code) => {
            eprintln!("error: refusing to start on invalid schemas");
            return Err(code);
        }
    };
    let database = settings.database.clone();
    let opened = {
        let catalog = Arc::clone(&catalog);
        tokio::task::spawn_blocking(
            move || -> Result<(Arc<dyn Store>, MigrationReport), String> {
                let store = database::open(&database)?;
                let report = store
                    .prepare(&catalog, MigrationPolicy::SERVE)
                    .map_err(|e| e.to_string())?;
                Ok((store, report))
            },
        )
        .await
    };
    let (store, report) = match opened {
        Ok(Ok((store, report))) => (store, report),
        Ok(Err(message)) => return Err(fail(&message)),
        Err(e) => return Err(fail(&format!("opening the database failed: {e}"))),
    };
    let app = App::new(
        Arc::clone(&catalog),
        store.clone(),
        store.clone(),
        Arc::new(Formats),
        settings.limits(),
    )
    .with_versions(report.versions)
    .with_health(store.clone())
    .with_read_your_writes(store.clone());
    Ok((app, store, catalog))
}

/// Finishes queued writes and checkpoints, off the async executor.
pub async fn close(store: Arc<dyn Store>) {
    let _ = tokio::task::spawn_blocking(move || store.close()).await;
}
