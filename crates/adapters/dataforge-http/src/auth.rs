//! Credentials at the edge: the bearer token of each request becomes the access the use cases act
//! for (`401` with `WWW-Authenticate: Bearer` when it is missing or refused), and each credential
//! is held to its request rate (`429` with `Retry-After`).

use std::convert::Infallible;
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dataforge_domain::access::Access;
use dataforge_domain::ports::{AuthError, Authenticator};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde_json::json;

use crate::handlers::HttpState;
use crate::problem::Problem;

/// Limits per credential.
#[derive(Debug, Clone, Copy, Default)]
pub struct CredentialLimits {
    /// Requests per second, with bursts of as many; 0 for no limit.
    pub requests_per_second: u32,
    /// Streamed exports open at once.
    pub max_exports: usize,
}

/// Who a request acts for, and how fast each credential may go.
pub struct Gate {
    authenticator: Arc<dyn Authenticator>,
    rate: Option<DefaultKeyedRateLimiter<String>>,
}

impl Gate {
    pub fn new(authenticator: Arc<dyn Authenticator>, limits: CredentialLimits) -> Gate {
        let rate = NonZeroU32::new(limits.requests_per_second)
            .map(|n| RateLimiter::keyed(Quota::per_second(n).allow_burst(n)));
        Gate {
            authenticator,
            rate,
        }
    }

    /// Puts the request's access in its extensions; or the answer refusing it.
    pub fn refusal(&self, request: &mut Request) -> Option<Response> {
        let bearer = match request
            .headers()
            .get(header::AUTHORIZATION)
            .map(bearer_token)
        {
            None => None,
            Some(Ok(token)) => Some(token),
            Some(Err(e)) => return Some(refused(e)),
        };
        let presented = bearer.is_some();
        let access = match self.authenticator.authenticate(bearer) {
            Ok(access) => access,
            Err(e) => return Some(refused(e)),
        };
        if presented && let Some(rate) = &self.rate {
            if let Err(not_until) = rate.check_key(&access.name) {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                return Some(too_fast(&access.name, wait.as_secs().max(1)));
            }
            if rate.len() > 10_000 {
                rate.retain_recent();
            }
        }
        request.extensions_mut().insert(access);
        None
    }
}

fn bearer_token(value: &HeaderValue) -> Result<&str, AuthError> {
    value
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            AuthError::Invalid("the Authorization header is not `Bearer <API key or JWT>`".into())
        })
}

fn refused(error: AuthError) -> Response {
    let (code, slug) = match error {
        AuthError::Missing => ("invalid_request", "unauthenticated"),
        AuthError::Invalid(_) => ("invalid_token", "bad-credential"),
    };
    let mut response = Problem::new(
        StatusCode::UNAUTHORIZED,
        slug,
        "Unauthorized",
        error.to_string(),
    )
    .into_response();
    let challenge = format!("Bearer realm=\"dataforge\", error=\"{code}\"");
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

fn too_fast(credential: &str, retry_after: u64) -> Response {
    let mut response = Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate-limited",
        "Too many requests",
        format!("the credential `{credential}` sent more requests per second than auth.requests_per_second allows; retry after {retry_after} s"),
    )
    .with("retry_after_s", json!(retry_after))
    .into_response();
    if let Ok(value) = HeaderValue::from_str(&retry_after.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// The route state, with the use cases acting for the request's credential.
pub struct Acting(pub HttpState);

impl FromRequestParts<HttpState> for Acting {
    type Rejection = Infallible;
    async fn from_request_parts(parts: &mut Parts, state: &HttpState) -> Result<Self, Infallible> {
        // the edge admits every request before routing; without its mark nothing is allowed
        let access = parts
            .extensions
            .get::<Arc<Access>>()
            .cloned()
            .unwrap_or_else(|| {
                Arc::new(Access {
                    name: "unadmitted".into(),
                    grants: Vec::new(),
                })
            });
        let mut acting = state.clone();
        acting.app = state.app.acting_as(access);
        crate::consistency::for_request(&mut acting.app, parts);
        Ok(Acting(acting))
    }
}
