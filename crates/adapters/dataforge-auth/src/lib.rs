//! The credentials adapter: which access an `Authorization: Bearer` token carries. API keys
//! (`dfk_...`) are looked up by their hash in the key file, which is re-read when it changes, so
//! keys created or revoked by `dataforge keys` apply to a running server; any other token is read
//! as a JWT.

mod jwt;
mod keys;

use std::sync::{Arc, LazyLock};

use dataforge_domain::access::Access;
use dataforge_domain::ports::{AuthError, Authenticator};

pub use jwt::{JwtSettings, JwtVerifier};
pub use keys::{KeyFile, KeyFileError, KeyRing, StoredKey};

/// The access of every request without a credential when none is required: built once, not per
/// request.
static EVERYTHING: LazyLock<Arc<Access>> = LazyLock::new(|| Arc::new(Access::everything()));

/// API keys and JWTs, as configured.
pub struct Credentials {
    pub keys: KeyRing,
    pub jwt: Option<JwtVerifier>,
    /// Whether a request without a credential is refused (else it may do everything).
    pub required: bool,
}

impl Authenticator for Credentials {
    fn authenticate(&self, bearer: Option<&str>) -> Result<Arc<Access>, AuthError> {
        match bearer {
            None if self.required => Err(AuthError::Missing),
            None => Ok(Arc::clone(&EVERYTHING)),
            Some(token) if token.starts_with(keys::SECRET_PREFIX) => self.keys.access(token),
            Some(token) => match &self.jwt {
                Some(jwt) => jwt.access(token),
                None => Err(AuthError::Invalid(
                    "the token is not an API key (dfk_...) and this server accepts no JWTs (auth.jwt is not configured)".into(),
                )),
            },
        }
    }
}
