//! What a use case can fail with. The HTTP adapter maps each variant to a status once.

use dataforge_domain::access::Denied;
use dataforge_domain::ports::{ConflictingKey, StoreError};
use dataforge_domain::query::QueryError;
use dataforge_domain::validate::Violation;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("no dataset named `{name}`")]
    UnknownDataset { name: String, known: Vec<String> },
    #[error("no record of {dataset} has the key {key}")]
    RecordNotFound { dataset: String, key: String },
    #[error(transparent)]
    BadParameter(#[from] QueryError),
    #[error("the request body is malformed: {0}")]
    MalformedBody(String),
    #[error("{total} validation error(s) in the request; nothing was written")]
    Invalid {
        violations: Vec<Violation>,
        total: u64,
    },
    #[error("{total} primary key(s) already exist or repeat in the request; nothing was written")]
    Conflict {
        keys: Vec<ConflictingKey>,
        total: u64,
    },
    #[error(
        "the change would touch {affected} records, more than max_affected={max}; nothing was changed"
    )]
    TooMany { affected: u64, max: u64 },
    #[error("storage is unavailable: {0}")]
    Unavailable(String),
    #[error("the query ran longer than {0} ms and was stopped")]
    Timeout(u64),
    #[error("the disk holding {path} is full; nothing was written")]
    StorageFull { path: String },
    #[error(transparent)]
    Denied(#[from] Denied),
    /// What the credential's row rule forbids (`detail` says what and how to proceed).
    #[error("{detail}")]
    OutsideRule {
        dataset: String,
        rule: String,
        detail: String,
    },
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { keys, total } => AppError::Conflict { keys, total },
            StoreError::Unavailable(why) => AppError::Unavailable(why),
            StoreError::TooMany { affected, max } => AppError::TooMany { affected, max },
            StoreError::Incomplete { records, total } => AppError::Invalid {
                violations: records
                    .into_iter()
                    .map(|r| Violation {
                        row: r.row,
                        field: Some(r.field),
                        code: "required",
                        message: format!(
                            "no record has the key ({}), so this one is inserted and needs a value",
                            r.key
                                .iter()
                                .map(|v| v.to_json().to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    })
                    .collect(),
                total,
            },
            StoreError::Timeout(ms) => AppError::Timeout(ms),
            StoreError::StorageFull(path) => AppError::StorageFull { path },
            other => AppError::Internal(other.to_string()),
        }
    }
}
