//! Configuration: defaults, then `dataforge.toml`, then `DATAFORGE_*` environment variables (which
//! win), then command-line flags. Every setting has one home here.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use dataforge_domain::query::QueryLimits;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::database::{self, DatabaseSettings};

/// All settings of a dataforge server.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub query: QuerySettings,
    pub database: DatabaseSettings,
    pub auth: AuthSettings,
}

/// `[auth]`: who may use the API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// Whether every request but `/health` needs a credential. Unset: yes when `server.listen` is
    /// not a loopback address, no on loopback. Turning it off on a network address must be said
    /// here, and is logged as a warning.
    pub required: Option<bool>,
    /// The API key file (default: beside the database, `<database.path>.api-keys.json`).
    pub keys_file: Option<PathBuf>,
    /// Requests per second one credential may send (bursts of as many); 0 for no limit.
    pub requests_per_second: u32,
    /// Streamed exports one credential may have open at once; past it, 429.
    pub max_exports_per_credential: usize,
    /// JWTs accepted besides API keys.
    pub jwt: Option<dataforge_auth::JwtSettings>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            required: None,
            keys_file: None,
            requests_per_second: 0,
            max_exports_per_credential: 4,
            jwt: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Address to listen on.
    pub listen: String,
    /// Directory of schema files.
    pub schemas: PathBuf,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// Largest body of an endpoint that reads one whole JSON document (`query`, `update`,
    /// `delete`, a record's `PATCH`/`PUT`), in bytes: such a body is held in memory.
    pub max_json_body_bytes: usize,
    /// Host names requests may name (the `Host` header, port aside). Empty: loopback names when
    /// listening on a loopback address (so a web page cannot reach this server through a domain
    /// re-pointed at 127.0.0.1, "DNS rebinding"), any otherwise.
    pub allowed_hosts: Vec<String>,
    /// How long a client may stop sending a request body or reading a streamed answer, in ms,
    /// before the request is ended (408 for a body; an export is cut and its database connection
    /// freed).
    pub stalled_client_ms: u64,
    /// How long a client may take to send a request's header, in ms, before its connection is
    /// closed ("slow loris" clients).
    pub header_read_timeout_ms: u64,
    /// Connections open at once, at most; further ones are closed at once.
    pub max_connections: usize,
    /// Streamed exports one client (IP address) may have open at once; past it, 503.
    pub max_exports_per_client: usize,
    /// Uploads (bodies larger than a small single write) decoded at once; each holds a thread
    /// while its body arrives. Further ones wait up to `stalled_client_ms`, then 503.
    pub max_streamed_uploads: usize,
    /// Origins whose browser pages may call the API (`*` for any); none by default.
    pub cors_origins: Vec<String>,
    /// Whether the data explorer page is served at `/` (it holds no data and calls the API with
    /// the credential it is given).
    pub explorer: bool,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            listen: "127.0.0.1:8000".into(),
            schemas: PathBuf::from("./schemas"),
            max_body_bytes: 16 * 1024 * 1024 * 1024,
            max_json_body_bytes: 2 * 1024 * 1024,
            allowed_hosts: Vec::new(),
            stalled_client_ms: 30_000,
            header_read_timeout_ms: 10_000,
            max_connections: 1024,
            max_exports_per_client: 2,
            max_streamed_uploads: 64,
            cors_origins: Vec::new(),
            explorer: true,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuerySettings {
    /// Page size when a listing gives no `limit`.
    pub default_limit: usize,
    /// Largest `limit` a listing may ask for.
    pub max_limit: usize,
}

impl Default for QuerySettings {
    fn default() -> Self {
        let limits = QueryLimits::default();
        QuerySettings {
            default_limit: limits.default_limit,
            max_limit: limits.max_limit,
        }
    }
}

/// Variables a command reads as a flag's value (not settings).
const COMMAND_VARIABLES: &[&str] = &["DATAFORGE_TOKEN"];

/// The default configuration file, read when present.
pub const DEFAULT_CONFIG_FILE: &str = "dataforge.toml";

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("configuration file {0} does not exist")]
    MissingFile(String),
    #[error("invalid configuration: {0}")]
    Invalid(String),
    #[error("invalid configuration: {0}")]
    Rule(String),
}

/// Figment's errors, those from the environment naming the variable as the user wrote it (figment
/// names `database.memory_limt`, which is nowhere in the user's files).
fn describe(errors: figment::Error) -> String {
    let described: Vec<String> = errors
        .into_iter()
        .map(|e| {
            let from_environment = e
                .metadata
                .as_ref()
                .is_some_and(|m| m.name.contains("environment"));
            if from_environment && !e.path.is_empty() {
                let variable = format!("DATAFORGE_{}", e.path.join("__").to_uppercase());
                format!("environment variable {variable}: {}", e.kind)
            } else {
                e.to_string()
            }
        })
        .collect();
    described.join("; ")
}

impl Settings {
    /// Loads settings from defaults, the configuration file and the environment.
    pub fn load(config_file: Option<&Path>) -> Result<Settings, SettingsError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        match config_file {
            Some(path) if !path.exists() => {
                return Err(SettingsError::MissingFile(path.display().to_string()));
            }
            Some(path) => figment = figment.merge(Toml::file_exact(path)),
            None if Path::new(DEFAULT_CONFIG_FILE).exists() => {
                figment = figment.merge(Toml::file_exact(DEFAULT_CONFIG_FILE))
            }
            None => {}
        }
        // a setting's variable names its section (`DATAFORGE_DATABASE__PATH`); other DATAFORGE_*
        // variables (a tool's own, say) are not settings
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name.starts_with("DATAFORGE_")
                && !name.contains("__")
                && !COMMAND_VARIABLES.contains(&name.as_ref())
            {
                tracing::warn!(variable = %name, "not a setting (settings are DATAFORGE_SECTION__KEY, e.g. DATAFORGE_DATABASE__PATH); ignored");
            }
        }
        let figment = figment.merge(
            Env::prefixed("DATAFORGE_")
                .filter(|key| key.as_str().contains("__"))
                .split("__"),
        );
        let settings: Settings = figment
            .extract()
            .map_err(|e| SettingsError::Invalid(describe(database::precise(&figment, e))))?;
        settings.check()?;
        Ok(settings)
    }

    fn check(&self) -> Result<(), SettingsError> {
        let q = &self.query;
        if q.max_limit == 0 || q.default_limit == 0 || q.default_limit > q.max_limit {
            return Err(SettingsError::Rule(format!(
                "query.default_limit ({}) must be between 1 and query.max_limit ({})",
                q.default_limit, q.max_limit
            )));
        }
        self.check_listen()?;
        self.database.check().map_err(SettingsError::Rule)?;
        Ok(())
    }

    /// `server.listen` is HOST:PORT, checked without a name lookup (only `serve` resolves it, so
    /// other commands never wait on DNS).
    fn check_listen(&self) -> Result<(), SettingsError> {
        let listen = self.server.listen.trim();
        if listen.parse::<SocketAddr>().is_ok() {
            return Ok(());
        }
        match listen.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
            _ => Err(SettingsError::Rule(format!(
                "server.listen `{listen}` has no port: write HOST:PORT, e.g. 127.0.0.1:8000, localhost:8000 or 0.0.0.0:8000"
            ))),
        }
    }

    /// The address to listen on: an IP address or a host name (`localhost:8000`, the first
    /// address it resolves to), with a port.
    pub fn listen_address(&self) -> Result<SocketAddr, SettingsError> {
        let listen = self.server.listen.trim();
        let invalid = |why: String| {
            SettingsError::Rule(format!(
                "server.listen `{listen}` {why}: write HOST:PORT, e.g. 127.0.0.1:8000, localhost:8000 or 0.0.0.0:8000"
            ))
        };
        if let Ok(address) = listen.parse() {
            return Ok(address);
        }
        if !listen.contains(':') {
            return Err(invalid("has no port".into()));
        }
        let mut resolved = listen
            .to_socket_addrs()
            .map_err(|e| invalid(format!("is not an address ({e})")))?;
        resolved
            .next()
            .ok_or_else(|| invalid("resolves to no address".into()))
    }

    /// The host names requests may name, or `None` for any (see
    /// [`ServerSettings::allowed_hosts`]).
    pub fn allowed_hosts(&self, listen: SocketAddr) -> Option<Vec<String>> {
        if !self.server.allowed_hosts.is_empty() {
            return Some(self.server.allowed_hosts.clone());
        }
        listen.ip().is_loopback().then(|| {
            ["localhost", "127.0.0.1", "[::1]"]
                .map(String::from)
                .to_vec()
        })
    }

    /// Whether requests need a credential on `listen` (see [`AuthSettings::required`]).
    pub fn auth_required(&self, listen: SocketAddr) -> bool {
        self.auth.required.unwrap_or(!listen.ip().is_loopback())
    }

    /// Where the API keys are stored.
    pub fn keys_file(&self) -> PathBuf {
        self.auth.keys_file.clone().unwrap_or_else(|| {
            let mut name = self.database.local_path().into_os_string();
            name.push(".api-keys.json");
            PathBuf::from(name)
        })
    }

    pub fn limits(&self) -> QueryLimits {
        QueryLimits {
            default_limit: self.query.default_limit,
            max_limit: self.query.max_limit,
        }
    }
}
