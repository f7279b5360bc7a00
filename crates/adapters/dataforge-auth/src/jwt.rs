//! JWTs: HS256 with a configured secret, RS256 and ES256 with public keys from a JWKS file. The
//! signature, `exp` (required), `nbf`, `iss` and `aud` are checked; a configured claim names the
//! token's roles and the configuration maps each role to grants.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use dataforge_domain::access::{Access, Grant};
use dataforge_domain::ports::AuthError;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value as Json;

/// `[auth.jwt]` in the configuration.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSettings {
    /// The HS256 secret.
    pub hs256_secret: Option<String>,
    /// A JWKS file (JSON) with the RS256/ES256 public keys.
    pub jwks_file: Option<PathBuf>,
    /// Required `iss`, when set.
    pub issuer: Option<String>,
    /// Required `aud`, when set.
    pub audience: Option<String>,
    /// The claim that lists the token's roles (a dotted path, e.g. `realm_access.roles`).
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
    /// Grants per role, e.g. `analyst = ["*:read"]`.
    #[serde(default)]
    pub roles: BTreeMap<String, Vec<String>>,
}

fn default_roles_claim() -> String {
    "roles".into()
}

/// A key a token may be signed with.
struct Key {
    id: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

pub struct JwtVerifier {
    keys: Vec<Key>,
    issuer: Option<String>,
    audience: Option<String>,
    roles_claim: Vec<String>,
    roles: BTreeMap<String, Vec<Grant>>,
}

impl JwtVerifier {
    /// Reads the keys and the role grants; a mistake stops the start, naming the setting.
    pub fn new(settings: &JwtSettings) -> Result<JwtVerifier, String> {
        let mut keys = Vec::new();
        if let Some(secret) = &settings.hs256_secret {
            if secret.len() < 32 {
                return Err("auth.jwt.hs256_secret must be at least 32 bytes".into());
            }
            keys.push(Key {
                id: None,
                algorithm: Algorithm::HS256,
                key: DecodingKey::from_secret(secret.as_bytes()),
            });
        }
        if let Some(path) = &settings.jwks_file {
            keys.extend(read_jwks(path)?);
        }
        if keys.is_empty() {
            return Err("auth.jwt needs hs256_secret or jwks_file".into());
        }
        let mut roles = BTreeMap::new();
        for (role, grants) in &settings.roles {
            let grants = grants
                .iter()
                .map(|g| g.parse::<Grant>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("auth.jwt.roles.{role}: {e}"))?;
            roles.insert(role.clone(), grants);
        }
        Ok(JwtVerifier {
            keys,
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            roles_claim: settings.roles_claim.split('.').map(str::to_owned).collect(),
            roles,
        })
    }

    pub(crate) fn access(&self, token: &str) -> Result<Arc<Access>, AuthError> {
        let invalid = |why: String| AuthError::Invalid(format!("the JWT is refused: {why}"));
        let header = jsonwebtoken::decode_header(token).map_err(|e| invalid(e.to_string()))?;
        let candidates = self.keys.iter().filter(|k| {
            k.algorithm == header.alg
                && (header.kid.is_none() || k.id.is_none() || k.id == header.kid)
        });
        let mut last = format!("no configured key signs {:?} tokens", header.alg);
        for key in candidates {
            match jsonwebtoken::decode::<Json>(token, &key.key, &self.validation(key.algorithm)) {
                Ok(data) => return Ok(Arc::new(self.grants_of(&data.claims))),
                Err(e) => last = e.to_string(),
            }
        }
        Err(invalid(last))
    }

    fn validation(&self, algorithm: Algorithm) -> Validation {
        let mut validation = Validation::new(algorithm);
        validation.validate_nbf = true;
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp"]);
        match &self.audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
        }
        validation
    }

    /// The grants of the roles the token names (roles the configuration does not map give none).
    fn grants_of(&self, claims: &Json) -> Access {
        let mut at = claims;
        for part in &self.roles_claim {
            at = at.get(part).unwrap_or(&Json::Null);
        }
        let roles: Vec<&str> = match at {
            Json::String(role) => vec![role.as_str()],
            Json::Array(items) => items.iter().filter_map(Json::as_str).collect(),
            _ => vec![],
        };
        let grants = roles
            .iter()
            .filter_map(|role| self.roles.get(*role))
            .flatten()
            .cloned()
            .collect();
        let subject = claims.get("sub").and_then(Json::as_str).unwrap_or("?");
        Access {
            name: format!("jwt:{subject}"),
            grants,
        }
    }
}

/// The RS256 (RSA) and ES256 (P-256) keys of a JWKS file.
fn read_jwks(path: &PathBuf) -> Result<Vec<Key>, String> {
    let at = |why: String| format!("auth.jwt.jwks_file {}: {why}", path.display());
    let text = std::fs::read_to_string(path).map_err(|e| at(e.to_string()))?;
    let set: JwkSet = serde_json::from_str(&text).map_err(|e| at(e.to_string()))?;
    set.keys
        .iter()
        .map(|jwk| {
            let algorithm = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => Algorithm::RS256,
                AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
                    Algorithm::ES256
                }
                _ => {
                    return Err(at(
                        "only RSA (RS256) and P-256 (ES256) keys are supported".into()
                    ));
                }
            };
            let key = DecodingKey::from_jwk(jwk).map_err(|e| at(e.to_string()))?;
            Ok(Key {
                id: jwk.common.key_id.clone(),
                algorithm,
                key,
            })
        })
        .collect()
}
