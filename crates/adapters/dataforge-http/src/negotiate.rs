//! Which format a read is answered in (`?format=`, else `Accept`), and which a write body is in
//! (`Content-Type`), chosen from the formats table; the 406 and 415 answers list what the table
//! offers.

use std::str::FromStr;

use axum::http::{HeaderMap, StatusCode, header};
use dataforge_domain::records::BodyFormat;
use dataforge_formats::table::{self, Format};
use mediatype::{MediaTypeBuf, ReadParams, names};
use serde_json::json;

use crate::problem::Problem;

/// Whether an answer in `format` is the paged JSON shape (`{items, next_cursor}`), not a stream.
pub(crate) fn is_page(format: &Format) -> bool {
    format.id() == BodyFormat::JSON
}

/// The format a read is answered in: `?format=` if given (and taken out of `params`), else
/// `Accept`, else JSON.
pub(crate) fn answer_format(
    headers: &HeaderMap,
    params: &mut Vec<(String, String)>,
) -> Result<&'static Format, Problem> {
    if let Some(i) = params.iter().position(|(name, _)| name == "format") {
        let (_, name) = params.remove(i);
        if params.iter().any(|(n, _)| n == "format") {
            return Err(Problem::bad_request("format", "given more than once"));
        }
        return table::encodable().find(|f| f.name == name).ok_or_else(|| {
            Problem::bad_request(
                "format",
                format!(
                    "unknown format `{name}`; formats: {}",
                    table::names(table::encodable())
                ),
            )
        });
    }
    let json = table::of(BodyFormat::JSON);
    let Some(accept) = headers.get(header::ACCEPT) else {
        return json.ok_or_else(not_acceptable_json);
    };
    let accept = accept.to_str().unwrap_or_default();
    let ranges = headers_accept::Accept::from_str(accept).map_err(|e| {
        Problem::bad_request(
            "Accept",
            format!("the Accept header `{accept}` is not a list of media ranges: {e}"),
        )
    })?;
    let ranges: Vec<&MediaTypeBuf> = ranges.media_types().collect();
    if ranges.is_empty() {
        return json.ok_or_else(not_acceptable_json);
    }
    best(&ranges).ok_or_else(|| not_acceptable(accept))
}

/// RFC 9110 12.5.1: each type offered takes the quality of the most specific range that matches
/// it (`q=0` refusing it); the highest quality wins, then the client's order, then the table's
/// (JSON first, so `*/*` gets JSON; CSV the first text type, so `text/*` gets CSV). `ranges` come
/// sorted most specific first, then by quality, then in the client's order.
fn best(ranges: &[&MediaTypeBuf]) -> Option<&'static Format> {
    let mut chosen: Option<(u16, usize, &'static Format)> = None;
    for format in table::encodable() {
        for offered in format.media_types {
            let Some((at, range)) = ranges.iter().enumerate().find(|(_, r)| covers(r, offered))
            else {
                continue;
            };
            let q = quality(range);
            let better = chosen
                .is_none_or(|(best_q, best_at, _)| q > best_q || (q == best_q && at < best_at));
            if q > 0 && better {
                chosen = Some((q, at, format));
            }
        }
    }
    chosen.map(|(_, _, format)| format)
}

/// Whether a media range names the type `offered` (`*/*`, `type/*` or the type itself). Parameters
/// such as `charset` do not narrow it: every text answer is UTF-8.
fn covers(range: &MediaTypeBuf, offered: &str) -> bool {
    let (ty, subty) = offered.split_once('/').unwrap_or((offered, ""));
    let any = |name: mediatype::Name| name == names::_STAR;
    (any(range.ty()) || range.ty().as_str().eq_ignore_ascii_case(ty))
        && (any(range.subty()) || range.subty().as_str().eq_ignore_ascii_case(subty))
        && (!any(range.ty()) || any(range.subty()))
}

/// A range's quality in thousandths (1000 when it has no `q`).
fn quality(range: &MediaTypeBuf) -> u16 {
    range
        .get_param(names::Q)
        .and_then(|q| q.as_str().parse::<f32>().ok())
        .map_or(1000, |q| (q.clamp(0.0, 1.0) * 1000.0).round() as u16)
}

fn not_acceptable(accept: &str) -> Problem {
    let supported = table::media_types(table::encodable());
    Problem::new(
        StatusCode::NOT_ACCEPTABLE,
        "not-acceptable",
        "Not acceptable",
        format!(
            "cannot answer as `{accept}`; supported: {} (or ?format={})",
            supported.join(", "),
            table::encodable()
                .map(|f| f.name)
                .collect::<Vec<_>>()
                .join("|")
        ),
    )
    .with("supported", json!(supported))
}

/// Only reached if the table lost its JSON row.
fn not_acceptable_json() -> Problem {
    not_acceptable("application/json")
}

/// The format of a write body, named by its `Content-Type`. One is required: a web page on
/// another site may send a body without one (or as `text/plain`) without the browser asking first,
/// so a body is never guessed to be JSON.
pub(crate) fn body_format(headers: &HeaderMap) -> Result<&'static Format, Problem> {
    let supported = table::media_types(table::decodable());
    let unsupported = |detail: String| {
        Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            detail,
        )
        .with("supported", json!(supported))
    };
    let Some(content_type) = headers.get(header::CONTENT_TYPE) else {
        return Err(unsupported(format!(
            "the request has a body but no Content-Type; say what it is, one of: {}",
            supported.join(", ")
        )));
    };
    let essence = content_type
        .to_str()
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    table::by_media_type(&essence)
        .filter(|f| f.can_decode())
        .ok_or_else(|| {
            unsupported(format!(
                "cannot read a body of type `{essence}`; supported: {}",
                supported.join(", ")
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn negotiated(accept: &str) -> Result<&'static str, u16> {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, accept.parse().unwrap());
        answer_format(&headers, &mut Vec::new())
            .map(|f| f.name)
            .map_err(|p| p.status().as_u16())
    }

    #[test]
    fn accept_follows_rfc_9110() {
        for (accept, expected) in [
            ("text/csv", Ok("csv")),
            ("*/*", Ok("json")),
            ("application/*", Ok("json")),
            ("text/*", Ok("csv")),
            ("TEXT/*", Ok("csv")),
            ("text/csv;q=0.5, application/x-ndjson", Ok("ndjson")),
            ("application/ndjson", Ok("ndjson")),
            (
                "application/vnd.apache.parquet;q=0.9, text/csv;q=0.1",
                Ok("parquet"),
            ),
            // the client's order among equals, then the table's
            ("text/csv, application/json", Ok("csv")),
            ("application/json, text/csv", Ok("json")),
            // a parameter other than q does not narrow a range
            ("application/json; charset=utf-8", Ok("json")),
            ("text/csv;charset=utf-8", Ok("csv")),
            // a more specific range overrides a wildcard, q=0 refuses
            ("*/*;q=0.1, text/csv;q=0", Ok("json")),
            ("application/json;q=0, */*", Ok("ndjson")),
            ("application/json;q=0, text/*", Ok("csv")),
            ("text/*;q=0, */*", Ok("json")),
            ("text/*, text/csv;q=0", Err(406)),
            ("application/json;q=0", Err(406)),
            ("*/*;q=0", Err(406)),
            ("image/png", Err(406)),
            ("text/csv;;q==", Err(400)),
        ] {
            assert_eq!(negotiated(accept), expected, "{accept}");
        }
    }

    #[test]
    fn the_format_parameter_names_a_row_of_the_table() {
        let mut params = vec![("format".to_owned(), "parquet".to_owned())];
        let chosen = answer_format(&HeaderMap::new(), &mut params).unwrap();
        assert_eq!((chosen.name, params.len()), ("parquet", 0));
        let mut params = vec![("format".to_owned(), "xml".to_owned())];
        let refused = answer_format(&HeaderMap::new(), &mut params).unwrap_err();
        assert_eq!(refused.status().as_u16(), 400);
    }

    #[test]
    fn content_types_name_decodable_formats() {
        let format = |content_type: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, content_type.parse().unwrap());
            body_format(&headers)
                .map(|f| f.name)
                .map_err(|p| p.status().as_u16())
        };
        assert_eq!(format("text/csv; charset=utf-8"), Ok("csv"));
        assert_eq!(format("Application/X-NDJSON"), Ok("ndjson"));
        assert_eq!(format("text/plain"), Err(415));
        assert_eq!(
            body_format(&HeaderMap::new())
                .map_err(|p| p.status().as_u16())
                .err(),
            Some(415)
        );
    }
}
