//! Every PostgreSQL setting in one place. They sit in `[database]` beside the DuckDB ones and
//! apply when `database.engine = "postgres"`.

use serde::{Deserialize, Serialize};

/// Where the primary and its replicas are, and how the store uses them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PostgresConfig {
    /// The primary, as a connection URL (`postgres://user:password@host:5432/dbname`); every
    /// write and schema change goes there.
    pub url: Option<String>,
    /// Streaming replicas reads may go to (none: every read goes to the primary).
    pub replica_urls: Vec<String>,
    /// Connections kept open to the primary (and as many to each replica).
    pub pool_size: u32,
    /// Milliseconds a statement may run before PostgreSQL stops it (answered 504 for a read).
    pub statement_timeout_ms: u64,
    /// A replica further behind the primary than this, in milliseconds, is skipped for reads.
    pub replica_max_lag_ms: u64,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        PostgresConfig {
            url: None,
            replica_urls: Vec::new(),
            pool_size: 16,
            statement_timeout_ms: 30_000,
            replica_max_lag_ms: 5_000,
        }
    }
}

impl PostgresConfig {
    /// Whether any PostgreSQL setting differs from its default: with another engine it would be
    /// ignored, which is refused rather than left to surprise.
    pub fn is_set(&self) -> bool {
        *self != PostgresConfig::default()
    }

    /// The settings PostgreSQL would refuse only once connected, checked with a message naming
    /// the setting and an example.
    pub fn check(&self) -> Result<(), String> {
        let example = "e.g. postgres://dataforge@127.0.0.1:5432/dataforge";
        let Some(url) = self.url.as_deref() else {
            return Err(format!(
                "database.engine = \"postgres\" needs database.url, the primary's URL ({example})"
            ));
        };
        for (setting, url) in std::iter::once(("database.url", url)).chain(
            self.replica_urls
                .iter()
                .map(|u| ("database.replica_urls", u.as_str())),
        ) {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(format!(
                    "{setting} `{url}` is not a postgres:// URL ({example})"
                ));
            }
        }
        if self.pool_size == 0 {
            return Err("database.pool_size must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_needed_and_must_be_a_postgres_url() {
        let message = PostgresConfig::default().check().unwrap_err();
        assert!(message.contains("database.url"), "{message}");
        let config = |url: &str, replicas: &[&str]| PostgresConfig {
            url: Some(url.into()),
            replica_urls: replicas.iter().map(|r| r.to_string()).collect(),
            ..PostgresConfig::default()
        };
        assert_eq!(
            config("postgres://u@h/db", &["postgresql://r/db"]).check(),
            Ok(())
        );
        let message = config("mysql://u@h/db", &[]).check().unwrap_err();
        assert!(message.contains("`mysql://u@h/db`"), "{message}");
        let message = config("postgres://u@h/db", &["r:5432"])
            .check()
            .unwrap_err();
        assert!(message.contains("database.replica_urls"), "{message}");
        assert!(!PostgresConfig::default().is_set());
        assert!(config("postgres://u@h/db", &[]).is_set());
    }
}
