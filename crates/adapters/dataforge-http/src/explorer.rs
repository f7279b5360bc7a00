//! The explorer's page (crate dataforge-explorer): its HTML at `/` and at every `/datasets/...`
//! address (the page reads its view from the URL), its script and style under `/explorer/`. The
//! page holds no data: it calls the API like any client, with the credential it is given, so these
//! addresses answer without one.

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dataforge_explorer::Asset;

use crate::problem::Problem;

/// The page may load only its own files and call only its own origin.
const PAGE_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

pub async fn page(headers: HeaderMap) -> Response {
    let mut response = answer(dataforge_explorer::page(), &headers);
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_POLICY),
    );
    response
}

pub async fn file(Path(name): Path<String>, headers: HeaderMap) -> Result<Response, Problem> {
    match dataforge_explorer::asset(&name).filter(|a| a.name != "index.html") {
        Some(asset) => Ok(answer(asset, &headers)),
        None => Err(Problem::new(
            StatusCode::NOT_FOUND,
            "no-route",
            "Not found",
            format!("the explorer has no file `{name}`"),
        )),
    }
}

/// Whether an `If-None-Match` list names `etag` (`*` names any), compared weakly (RFC 9110
/// 13.1.2: `W/` aside).
fn matches(given: &str, etag: &str) -> bool {
    let opaque = |tag: &str| tag.trim().trim_start_matches("W/").to_owned();
    given
        .split(',')
        .any(|tag| tag.trim() == "*" || opaque(tag) == opaque(etag))
}

/// The asset, or `304` when the client holds these bytes already; always revalidated, so that a
/// new binary's page is seen at once.
fn answer(asset: &'static Asset, request: &HeaderMap) -> Response {
    let etag = HeaderValue::from_static(asset.etag);
    let held = request
        .get(header::IF_NONE_MATCH)
        .and_then(|given| given.to_str().ok())
        .is_some_and(|given| matches(given, asset.etag));
    let common = [
        (header::ETAG, etag),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
    ];
    if held {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (
        StatusCode::OK,
        common,
        [(header::CONTENT_TYPE, asset.content_type)],
        asset.bytes,
    )
        .into_response()
}
