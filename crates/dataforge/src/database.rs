//! `[database]`: which engine stores the records, with each engine's settings, and the one place
//! that opens the store an engine names. Adding an engine is a variant, a flattened config and a
//! row in [`open`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use dataforge_domain::ports::Store;
use dataforge_duckdb::{DuckDbConfig, DuckDbStore};
use dataforge_postgres::{PostgresConfig, PostgresStore};
use serde::{Deserialize, Serialize};

/// The engines a store can be opened on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// Embedded, one file (the default).
    #[default]
    Duckdb,
    /// A PostgreSQL primary shared by many nodes, with read replicas.
    Postgres,
}

/// `[database]`: the engine and every engine's settings side by side, so a configuration names
/// them flat (`database.path`, `database.url`) whatever the engine.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DatabaseSettings {
    pub engine: Engine,
    #[serde(flatten)]
    pub duckdb: DuckDbConfig,
    #[serde(flatten)]
    pub postgres: PostgresConfig,
    /// Names no engine knows: refused by [`DatabaseSettings::check`] (flattened sections cannot
    /// deny unknown fields themselves).
    #[serde(flatten, skip_serializing)]
    unknown: BTreeMap<String, serde_json::Value>,
}

impl DatabaseSettings {
    /// Unknown names, and settings of an engine other than the chosen one, with what to write.
    pub fn check(&self) -> Result<(), String> {
        if let Some(name) = self.unknown.keys().next() {
            let variable = format!("DATAFORGE_DATABASE__{}", name.to_uppercase());
            let origin = if std::env::var_os(&variable).is_some() {
                format!("environment variable {variable}")
            } else {
                format!("database.{name}")
            };
            return Err(format!(
                "{origin}: unknown field `{name}`: [database] takes `engine`, the DuckDB settings \
                 (`path`, `memory_limit`, ...) and the PostgreSQL ones (`url`, `replica_urls`, ...)"
            ));
        }
        match self.engine {
            Engine::Duckdb if self.postgres.is_set() => Err(
                "database.url, replica_urls, pool_size, statement_timeout_ms and replica_max_lag_ms \
                 apply to database.engine = \"postgres\"; the engine is \"duckdb\""
                    .into(),
            ),
            Engine::Duckdb => self.duckdb.check(),
            Engine::Postgres => self.postgres.check(),
        }
    }

    /// Applies `--db` (the DuckDB file; the place of a node's own files on every engine), and lets
    /// the DuckDB store have its key index walked by this same program, in a child process, before
    /// it is trusted.
    pub fn place(&mut self, db: Option<&std::path::Path>) {
        if let Some(db) = db {
            self.duckdb.path = db.to_path_buf();
        }
        self.duckdb.key_index_verifier = std::env::current_exe().ok();
    }

    /// Where files kept beside the database go by default (API keys): beside `database.path`
    /// (`--db`) whatever the engine, so that one flag places a node's files.
    pub fn local_path(&self) -> PathBuf {
        self.duckdb.path.clone()
    }
}

/// `error` with the setting at fault named: a value of the wrong type in a flattened engine section
/// is reported at `database` alone, so each engine's settings are read on their own to find it.
pub fn precise(figment: &figment::Figment, error: figment::Error) -> figment::Error {
    if error.path != ["database"] {
        return error;
    }
    let engine = figment.extract_inner::<Engine>("database.engine").err();
    let duckdb = figment.extract_inner::<DuckDbConfig>("database").err();
    let postgres = figment.extract_inner::<PostgresConfig>("database").err();
    match engine.or(duckdb).or(postgres) {
        // figment names an inner setting after its section (`threads.database`)
        Some(mut inner) => {
            let field: Vec<String> = inner.path.drain(..).filter(|p| p != "database").collect();
            inner.path = std::iter::once("database".to_owned())
                .chain(field)
                .collect();
            inner
        }
        None => error,
    }
}

/// Walks a DuckDB key index (the child process [`DatabaseSettings::place`] asks for): its entry
/// count, or why it is unreadable.
pub fn walk_key_index(dir: &std::path::Path) -> Result<u64, String> {
    dataforge_duckdb::walk_key_index(dir)
}

/// Opens the store the settings name. Blocking: run it off the async executor.
pub fn open(settings: &DatabaseSettings) -> Result<Arc<dyn Store>, String> {
    match settings.engine {
        Engine::Duckdb => DuckDbStore::open(&settings.duckdb)
            .map(|store| Arc::new(store) as Arc<dyn Store>)
            .map_err(|e| e.to_string()),
        Engine::Postgres => PostgresStore::open(&settings.postgres)
            .map(|store| Arc::new(store) as Arc<dyn Store>)
            .map_err(|e| e.to_string()),
    }
}
