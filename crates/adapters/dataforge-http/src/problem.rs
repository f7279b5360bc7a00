//! RFC 9457 problem details: the one shape every error answer takes, and the one place where
//! application errors become HTTP statuses.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dataforge_app::AppError;
use dataforge_domain::access::Denied;
use serde_json::{Map, Value as Json, json};

/// An error answer: `application/problem+json` with a precise `detail` and optional extensions.
#[derive(Debug)]
pub struct Problem {
    status: StatusCode,
    slug: &'static str,
    title: &'static str,
    detail: String,
    /// Boxed to keep `Result<_, Problem>` small on the happy path.
    extensions: Box<Map<String, Json>>,
}

impl Problem {
    pub fn new(
        status: StatusCode,
        slug: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Problem {
            status,
            slug,
            title,
            detail: detail.into(),
            extensions: Box::default(),
        }
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn with(mut self, key: &str, value: Json) -> Self {
        self.extensions.insert(key.to_owned(), value);
        self
    }

    pub fn bad_request(parameter: &str, detail: impl Into<String>) -> Self {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "bad-parameter",
            "Bad parameter",
            detail,
        )
        .with("parameter", json!(parameter))
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut body = Map::new();
        body.insert("type".into(), json!(format!("/problems/{}", self.slug)));
        body.insert("title".into(), json!(self.title));
        body.insert("status".into(), json!(self.status.as_u16()));
        body.insert("detail".into(), json!(self.detail));
        body.extend(*self.extensions);
        let mut response = (self.status, Json::Object(body).to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if matches!(
            self.status,
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
        ) {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// Maps an application error to its problem answer. `dataset` names key fields in conflicts.
pub fn from_app_error(
    error: AppError,
    dataset: Option<&dataforge_domain::schema::DatasetSchema>,
) -> Problem {
    let detail = error.to_string();
    match error {
        AppError::UnknownDataset { known, .. } => Problem::new(
            StatusCode::NOT_FOUND,
            "unknown-dataset",
            "Unknown dataset",
            format!("{detail}; datasets are: {}", known.join(", ")),
        )
        .with("datasets", json!(known)),
        AppError::RecordNotFound { .. } => Problem::new(
            StatusCode::NOT_FOUND,
            "record-not-found",
            "Record not found",
            detail,
        ),
        AppError::BadParameter(e) => Problem::bad_request(&e.parameter, detail),
        AppError::MalformedBody(_) => Problem::new(
            StatusCode::BAD_REQUEST,
            "malformed-body",
            "Malformed request body",
            detail,
        ),
        AppError::Invalid { violations, total } => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            "Validation failed",
            detail,
        )
        .with("errors", json!(violations))
        .with("total_errors", json!(total)),
        AppError::Conflict { keys, total } => {
            let listed: Vec<Json> = match dataset {
                Some(schema) => keys.iter().map(|k| k.to_json(schema)).collect(),
                None => Vec::new(),
            };
            Problem::new(
                StatusCode::CONFLICT,
                "key-conflict",
                "Primary key conflict",
                detail,
            )
            .with("conflicts", json!(listed))
            .with("total_conflicts", json!(total))
        }
        AppError::TooMany { affected, max } => Problem::new(
            StatusCode::CONFLICT,
            "too-many-affected",
            "Too many records affected",
            detail,
        )
        .with("parameter", json!("max_affected"))
        .with("affected", json!(affected))
        .with("max_affected", json!(max)),
        AppError::Timeout(_) => Problem::new(
            StatusCode::GATEWAY_TIMEOUT,
            "query-timeout",
            "Query timed out",
            detail,
        ),
        AppError::Unavailable(_) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
            detail,
        ),
        AppError::StorageFull { path } => Problem::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "storage-full",
            "Insufficient storage",
            detail,
        )
        .with("path", json!(path)),
        AppError::Denied(Denied::Permission {
            dataset,
            permission,
            ..
        }) => Problem::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", detail)
            .with("dataset", json!(dataset))
            .with("permission", json!(permission.name())),
        AppError::Denied(Denied::Rule { dataset, rule, .. }) => Problem::new(
            StatusCode::FORBIDDEN,
            "row-rule-broken",
            "Row rule does not apply",
            detail,
        )
        .with("dataset", json!(dataset))
        .with("rule", json!(rule)),
        AppError::OutsideRule { dataset, rule, .. } => Problem::new(
            StatusCode::FORBIDDEN,
            "outside-row-rule",
            "Outside the row rule",
            detail,
        )
        .with("dataset", json!(dataset))
        .with("rule", json!(rule)),
        AppError::Internal(message) => {
            tracing::error!(error = %message, "internal error");
            Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
                "the server failed to handle the request; see its log",
            )
        }
    }
}
