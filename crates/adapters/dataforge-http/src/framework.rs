//! The framework's own refusals (axum's extractor rejections: a path segment that is not UTF-8, a
//! JSON body over `server.max_json_body_bytes`; tower-http's refusal of a `Content-Encoding` it
//! does not decode) answered as problem+json like every other error, with their text as the
//! detail; and a request target too long for the log and the filters.

use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::problem::Problem;

/// Bytes of a framework refusal's text kept as the detail.
const DETAIL_BYTES: usize = 4096;

/// Longest request target (path and query) answered; longer ones get 414. (hyper itself answers
/// targets past 64 KiB with a bare 414, before any handler runs.)
pub(crate) const MAX_URI_BYTES: usize = 32 * 1024;

/// The `414` refusal of a request target over [`MAX_URI_BYTES`].
pub(crate) fn target_too_long(request: &Request) -> Option<Problem> {
    let target = request
        .uri()
        .path_and_query()
        .map_or(0, |t| t.as_str().len());
    (target > MAX_URI_BYTES).then(|| {
        Problem::new(
            StatusCode::URI_TOO_LONG,
            "uri-too-long",
            "URI too long",
            format!(
                "the request target is {target} bytes, more than {MAX_URI_BYTES}; send long filters in the body of POST .../query"
            ),
        )
        .with("limit_bytes", json!(MAX_URI_BYTES))
    })
}

/// The request's `Content-Encoding`, kept for [`as_problem`]'s words on a refused one.
pub(crate) fn encoding(request: &Request) -> Option<String> {
    request
        .headers()
        .get(header::CONTENT_ENCODING)
        .map(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// `response` as it is, or, when the framework refused the request with its own text, that
/// refusal as a problem.
pub(crate) async fn as_problem(
    response: Response,
    encoding: Option<String>,
    max_json_body_bytes: usize,
) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_problem(&response) {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, DETAIL_BYTES)
        .await
        .unwrap_or_default();
    let mut text = String::from_utf8_lossy(&text).into_owned();
    if let (StatusCode::UNSUPPORTED_MEDIA_TYPE, true, Some(encoding)) =
        (status, text.is_empty(), encoding)
    {
        // the decompression layer's refusal, which has no text
        text = format!(
            "Content-Encoding `{encoding}` is not supported: send the body as is, or with gzip, deflate or zstd"
        );
    }
    let (slug, title) = match status {
        StatusCode::PAYLOAD_TOO_LARGE => ("body-too-large", "Request body too large"),
        StatusCode::BAD_REQUEST => ("bad-request", "Bad request"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported-media-type", "Unsupported media type"),
        _ => ("http-error", status.canonical_reason().unwrap_or("Error")),
    };
    let mut problem = Problem::new(status, slug, title, text.trim().to_owned());
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        problem = problem
            .with("limit_bytes", json!(max_json_body_bytes))
            .with("setting", json!("server.max_json_body_bytes"));
    }
    let mut answer = problem.into_response();
    // headers the refusal set (`Allow`, ...) stay, save its type and length
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            answer.headers_mut().insert(name, value.clone());
        }
    }
    answer
}

fn is_problem(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"application/problem+json"))
}
