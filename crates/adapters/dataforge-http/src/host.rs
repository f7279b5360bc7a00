//! The `Host` a request names must be one this server answers to. A server on 127.0.0.1 is
//! otherwise reachable from any web page the user opens: the page's domain is re-pointed at
//! 127.0.0.1 ("DNS rebinding"), and the browser, seeing the same origin, lets the page read the
//! answers. A request naming another host is refused before any handler runs.

use axum::extract::Request;
use axum::http::{StatusCode, header};
use serde_json::json;

use crate::problem::Problem;

/// The `421` refusal of a request whose `Host` (port aside, any case) is not `allowed`; one that
/// names none passes (a browser always does).
pub(crate) fn refused(request: &Request, allowed: &[String]) -> Option<Problem> {
    let host = request.headers().get(header::HOST)?;
    let host = host.to_str().unwrap_or("(not text)");
    let name = host_name(host);
    if allowed.iter().any(|a| a.eq_ignore_ascii_case(name)) {
        return None;
    }
    Some(
        Problem::new(
            StatusCode::MISDIRECTED_REQUEST,
            "unknown-host",
            "Unknown host",
            format!(
                "this server does not answer to the host `{name}`; it answers to: {} (set server.allowed_hosts to add names)",
                allowed.join(", ")
            ),
        )
        .with("allowed_hosts", json!(allowed)),
    )
}

fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    host.split(':').next().unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::host_name;

    #[test]
    fn ports_are_set_aside() {
        assert_eq!(host_name("localhost:8000"), "localhost");
        assert_eq!(host_name("127.0.0.1"), "127.0.0.1");
        assert_eq!(host_name("[::1]:8000"), "[::1]");
        assert_eq!(host_name("evil.example:80"), "evil.example");
    }
}
