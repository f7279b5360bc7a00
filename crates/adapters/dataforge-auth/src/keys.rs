//! API keys. The key file (JSON, beside the database by default) holds each key's name, grants,
//! expiry and the SHA-256 of its secret, never the secret: secrets are 32 random bytes, so one
//! unsalted hash is enough and a lookup is one hash and one map probe. The server re-reads the file
//! when its modification time or length changes, checked at most once a second.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, NaiveDate, Utc};
use dataforge_domain::access::{Access, Grant};
use dataforge_domain::ports::AuthError;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

pub(crate) const SECRET_PREFIX: &str = "dfk_";

/// How often a running server looks at the key file.
const RECHECK: Duration = Duration::from_secs(1);

/// One key as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoredKey {
    pub name: String,
    /// Hex SHA-256 of the secret.
    pub sha256: String,
    pub grants: Vec<String>,
    /// RFC 3339; the key is refused from this moment on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    pub created: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Document {
    keys: Vec<StoredKey>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read or write the key file {path}: {why}")]
    Io { path: PathBuf, why: String },
    #[error("the key file {path} is not readable JSON: {why}")]
    Corrupt { path: PathBuf, why: String },
    #[error("a key named `{0}` exists already; revoke it first or choose another name")]
    Exists(String),
    #[error("no key is named `{0}`")]
    Unknown(String),
    #[error("{0}")]
    Invalid(String),
}

/// The key file, for the `dataforge keys` commands.
pub struct KeyFile {
    path: PathBuf,
}

impl KeyFile {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        KeyFile { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn list(&self) -> Result<Vec<StoredKey>, KeyFileError> {
        Ok(read_document(&self.path)?.keys)
    }

    /// Stores a new key and answers its secret (shown once, never stored).
    pub fn create(
        &self,
        name: &str,
        grants: &[String],
        expires: Option<&str>,
    ) -> Result<String, KeyFileError> {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(KeyFileError::Invalid(format!(
                "`{name}` is not a key name: use letters, digits, `-`, `_` and `.`"
            )));
        }
        if grants.is_empty() {
            return Err(KeyFileError::Invalid(
                "a key needs at least one --grant DATASET:PERMS".into(),
            ));
        }
        for grant in grants {
            grant
                .parse::<Grant>()
                .map_err(|e| KeyFileError::Invalid(e.to_string()))?;
        }
        let expires = expires.map(parse_expiry).transpose()?;
        let mut document = read_document(&self.path)?;
        if document.keys.iter().any(|k| k.name == name) {
            return Err(KeyFileError::Exists(name.to_owned()));
        }
        let secret = new_secret().map_err(KeyFileError::Invalid)?;
        document.keys.push(StoredKey {
            name: name.to_owned(),
            sha256: hex_sha256(&secret),
            grants: grants.to_vec(),
            expires: expires.map(|e| e.to_rfc3339()),
            created: now().to_rfc3339(),
        });
        write_document(&self.path, &document)?;
        Ok(secret)
    }

    pub fn revoke(&self, name: &str) -> Result<(), KeyFileError> {
        let mut document = read_document(&self.path)?;
        let before = document.keys.len();
        document.keys.retain(|k| k.name != name);
        if document.keys.len() == before {
            return Err(KeyFileError::Unknown(name.to_owned()));
        }
        write_document(&self.path, &document)
    }
}

/// `YYYY-MM-DD` (the key ends as that day begins, UTC) or an RFC 3339 timestamp.
fn parse_expiry(text: &str) -> Result<DateTime<Utc>, KeyFileError> {
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(date.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            KeyFileError::Invalid(format!(
                "--expires `{text}` is neither a date (2027-01-31) nor an RFC 3339 timestamp (2027-01-31T12:00:00Z)"
            ))
        })
}

fn now() -> DateTime<Utc> {
    let since = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    DateTime::from_timestamp(since.as_secs() as i64, since.subsec_nanos()).unwrap_or_default()
}

/// A new secret: the prefix and 32 random bytes.
fn new_secret() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| "the system's random number source failed".to_owned())?;
    Ok(format!("{SECRET_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

fn hex_sha256(secret: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, secret.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn read_document(path: &Path) -> Result<Document, KeyFileError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Document::default()),
        Err(e) => {
            return Err(KeyFileError::Io {
                path: path.to_owned(),
                why: e.to_string(),
            });
        }
    };
    serde_json::from_str(&text).map_err(|e| KeyFileError::Corrupt {
        path: path.to_owned(),
        why: e.to_string(),
    })
}

/// Writes the whole file beside itself and renames it over the old one, so a reader sees the old
/// file or the new one, never half of one.
fn write_document(path: &Path, document: &Document) -> Result<(), KeyFileError> {
    let io = |e: std::io::Error| KeyFileError::Io {
        path: path.to_owned(),
        why: e.to_string(),
    };
    let text =
        serde_json::to_vec_pretty(document).map_err(|e| KeyFileError::Invalid(e.to_string()))?;
    let partial = path.with_extension("json.partial");
    std::fs::write(&partial, text).map_err(io)?;
    std::fs::rename(&partial, path).map_err(io)
}

/// A key as the server holds it.
struct LiveKey {
    access: Arc<Access>,
    expires: Option<DateTime<Utc>>,
}

/// What was read from the file, and which version of the file it was.
#[derive(Default)]
struct Loaded {
    stamp: Option<(SystemTime, u64)>,
    by_hash: HashMap<String, LiveKey>,
}

/// The keys a running server accepts, following the key file.
pub struct KeyRing {
    path: PathBuf,
    loaded: RwLock<Loaded>,
    checked: Mutex<Instant>,
}

impl KeyRing {
    /// Reads the key file (absent: no keys); a file that cannot be read stops the start.
    pub fn open(path: impl Into<PathBuf>) -> Result<KeyRing, KeyFileError> {
        let ring = KeyRing {
            path: path.into(),
            loaded: RwLock::default(),
            checked: Mutex::new(Instant::now()),
        };
        ring.reload()?;
        Ok(ring)
    }

    pub fn len(&self) -> usize {
        self.loaded.read().map_or(0, |l| l.by_hash.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn access(&self, secret: &str) -> Result<Arc<Access>, AuthError> {
        self.follow_file();
        let hash = hex_sha256(secret);
        let found = match self.lookup(&hash) {
            // a key created a moment ago works at once: a changed file is read on a miss
            None if self.reload().is_ok() => self.lookup(&hash),
            found => found,
        };
        let (access, expires) = found.ok_or_else(|| {
            AuthError::Invalid("the API key is not known (revoked, or mistyped)".into())
        })?;
        match expires {
            Some(expires) if expires <= now() => Err(AuthError::Invalid(format!(
                "the API key `{}` expired at {}",
                access.name,
                expires.to_rfc3339()
            ))),
            _ => Ok(access),
        }
    }

    fn lookup(&self, hash: &str) -> Option<(Arc<Access>, Option<DateTime<Utc>>)> {
        let loaded = self.loaded.read().unwrap_or_else(|p| p.into_inner());
        let key = loaded.by_hash.get(hash)?;
        Some((Arc::clone(&key.access), key.expires))
    }

    /// Re-reads the file if it changed, at most once per [`RECHECK`].
    fn follow_file(&self) {
        let Ok(mut checked) = self.checked.try_lock() else {
            return; // another request is looking
        };
        if checked.elapsed() < RECHECK {
            return;
        }
        *checked = Instant::now();
        if let Err(e) = self.reload() {
            tracing::warn!(error = %e, "the key file could not be re-read; the keys read before stay in force");
        }
    }

    fn reload(&self) -> Result<(), KeyFileError> {
        let stamp = std::fs::metadata(&self.path)
            .ok()
            .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()));
        if self
            .loaded
            .read()
            .is_ok_and(|l| l.stamp == stamp && stamp.is_some())
        {
            return Ok(());
        }
        let mut by_hash = HashMap::new();
        for key in read_document(&self.path)?.keys {
            let grants = key
                .grants
                .iter()
                .map(|g| g.parse::<Grant>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| KeyFileError::Invalid(format!("key `{}`: {e}", key.name)))?;
            let expires = key.expires.as_deref().map(parse_expiry).transpose()?;
            let access = Arc::new(Access {
                name: key.name,
                grants,
            });
            by_hash.insert(key.sha256, LiveKey { access, expires });
        }
        let mut loaded = self.loaded.write().unwrap_or_else(|p| p.into_inner());
        if loaded.stamp.is_some() && loaded.stamp != stamp {
            tracing::info!(keys = by_hash.len(), path = %self.path.display(), "the key file changed; its keys apply now");
        }
        *loaded = Loaded { stamp, by_hash };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stored_as_hashes_and_found_by_their_secret() {
        let dir = tempfile::tempdir().unwrap();
        let file = KeyFile::new(dir.path().join("keys.json"));
        let secret = file
            .create("ingest", &["wells:read,write".into()], None)
            .unwrap();
        assert!(secret.starts_with("dfk_") && secret.len() > 40);
        let text = std::fs::read_to_string(file.path()).unwrap();
        assert!(!text.contains(&secret[4..]), "the secret is not stored");
        assert!(matches!(
            file.create("ingest", &["*:read".into()], None),
            Err(KeyFileError::Exists(_))
        ));
        let ring = KeyRing::open(file.path()).unwrap();
        assert_eq!(ring.access(&secret).unwrap().name, "ingest");
        assert!(ring.access("dfk_not-a-key").is_err());
    }

    #[test]
    fn bad_grants_names_and_expiries_are_refused_before_anything_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let file = KeyFile::new(dir.path().join("keys.json"));
        for (name, grants, expires) in [
            ("a b", vec!["*:read".to_owned()], None),
            ("a", vec![], None),
            ("a", vec!["*:fly".to_owned()], None),
            ("a", vec!["*:read".to_owned()], Some("next week")),
        ] {
            assert!(
                file.create(name, &grants, expires).is_err(),
                "{name} {grants:?} {expires:?}"
            );
        }
        assert!(file.list().unwrap().is_empty());
    }

    #[test]
    fn an_expired_key_is_refused_and_a_revoked_one_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let file = KeyFile::new(dir.path().join("keys.json"));
        let old = file
            .create("old", &["*:read".into()], Some("2000-01-01"))
            .unwrap();
        let live = file
            .create("live", &["*:read".into()], Some("2999-01-01"))
            .unwrap();
        let ring = KeyRing::open(file.path()).unwrap();
        let refused = ring.access(&old).unwrap_err().to_string();
        assert!(
            refused.contains("expired at 2000-01-01T00:00:00+00:00"),
            "{refused}"
        );
        assert!(ring.access(&live).is_ok());
        file.revoke("live").unwrap();
        assert!(matches!(file.revoke("live"), Err(KeyFileError::Unknown(_))));
        ring.reload().unwrap();
        assert!(ring.access(&live).is_err());
    }

    #[test]
    fn a_key_created_while_serving_works_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = KeyFile::new(dir.path().join("keys.json"));
        file.create("first", &["*:read".into()], None).unwrap();
        let ring = KeyRing::open(file.path()).unwrap();
        let fresh = file.create("fresh", &["*:read".into()], None).unwrap();
        assert_eq!(ring.access(&fresh).unwrap().name, "fresh");
    }
}
