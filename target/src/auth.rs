//! Tokens shared by the API (which issues them at login) and the gateway (which
//! verifies them at the edge): HS256 JWTs with a subject, a role and an expiry.
//! Only HS256 is accepted, so `alg: none` and algorithm-confusion tokens fail.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    User,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id, as a string (JWT convention).
    pub sub: String,
    pub role: Role,
    pub iat: u64,
    pub exp: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("token expired")]
    Expired,
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// The HMAC secret both sides share (the supervisor hands the same one to all).
#[derive(Clone)]
pub struct JwtKey {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtKey(..)")
    }
}

impl JwtKey {
    pub fn new(secret: &[u8]) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
        }
    }

    pub fn issue(&self, sub: &str, role: Role, ttl: Duration) -> String {
        let iat = now_secs();
        let claims = Claims {
            sub: sub.to_string(),
            role,
            iat,
            exp: iat + ttl.as_secs(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 encoding with an HMAC key cannot fail")
    }

    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
                _ => AuthError::Invalid(e.to_string()),
            })
    }

    /// Verifies an `Authorization` header value (`Bearer <token>`).
    pub fn verify_header(&self, value: Option<&str>) -> Result<Claims, AuthError> {
        let value = value.ok_or(AuthError::Missing)?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or(AuthError::Missing)?
            .trim();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        self.verify(token)
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn issued_token_verifies_with_role() {
        let key = JwtKey::new(b"secret");
        let t = key.issue("7", Role::Admin, Duration::from_secs(60));
        let c = key.verify_header(Some(&format!("Bearer {t}"))).unwrap();
        assert_eq!(c.sub, "7");
        assert_eq!(c.role, Role::Admin);
    }

    #[test]
    fn missing_tampered_wrong_key_and_alg_none_are_rejected() {
        let key = JwtKey::new(b"secret");
        assert_eq!(key.verify_header(None), Err(AuthError::Missing));
        assert_eq!(key.verify_header(Some("Basic x")), Err(AuthError::Missing));
        let t = key.issue("1", Role::User, Duration::from_secs(60));
        let mut parts: Vec<String> = t.split('.').map(str::to_string).collect();
        parts[1] = b64(r#"{"sub":"1","role":"admin","iat":0,"exp":99999999999}"#);
        assert!(matches!(
            key.verify(&parts.join(".")),
            Err(AuthError::Invalid(_))
        ));
        let other = JwtKey::new(b"other").issue("1", Role::User, Duration::from_secs(60));
        assert!(matches!(key.verify(&other), Err(AuthError::Invalid(_))));
        let none = format!(
            "{}.{}.",
            b64(r#"{"alg":"none","typ":"JWT"}"#),
            b64(r#"{"sub":"1","role":"admin","iat":0,"exp":99999999999}"#)
        );
        assert!(matches!(key.verify(&none), Err(AuthError::Invalid(_))));
    }

    #[test]
    fn expired_token_is_expired() {
        let key = JwtKey::new(b"secret");
        let claims = Claims {
            sub: "1".into(),
            role: Role::User,
            iat: 1,
            exp: 2,
        };
        let t =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key.encoding).unwrap();
        assert_eq!(key.verify(&t), Err(AuthError::Expired));
    }
}
