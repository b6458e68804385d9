//! `POST /api/v1/auth/login`: checks a username and argon2 password hash and
//! issues the HS256 token that writes (and the gateway) require.

use axum::extract::State;
use axum::response::Response;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::envelope;
use super::input::{Fields, JsonObject};
use super::{ApiError, AppState};
use crate::auth::Role;
use crate::store::verify_password;

#[derive(Serialize, ToSchema)]
pub struct Session {
    pub token: String,
    pub token_type: &'static str,
    /// Seconds until the token expires.
    pub expires_in: u64,
    pub user_id: i64,
    #[schema(value_type = String)]
    pub role: Role,
}

fn credential(v: &Value) -> Result<String, String> {
    match v.as_str() {
        Some(s) if !s.is_empty() && s.len() <= 1024 => Ok(s.to_string()),
        _ => Err("must be a non-empty string".into()),
    }
}

#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth",
    request_body = super::openapi::LoginInput,
    responses((status = 200, body = super::openapi::SessionOne), (status = 401, body = super::openapi::ErrorBody)))]
pub async fn login(State(state): State<AppState>, body: JsonObject) -> Result<Response, ApiError> {
    let mut f = Fields::new(&body.object, &["username", "password"]);
    let username = f.required("username", credential);
    let password = f.required("password", credential);
    f.finish()?;
    let (username, password) = (username.unwrap_or_default(), password.unwrap_or_default());
    let credentials = state.0.store.credentials(&username).await?;
    let rejected = || ApiError::Unauthorized("invalid username or password".into());
    let Some(credentials) = credentials else {
        return Err(rejected());
    };
    let hash = credentials.password_hash.clone();
    // argon2 takes tens of milliseconds of CPU: keep it off the async workers.
    let matches = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    if !matches {
        return Err(rejected());
    }
    let ttl = state.0.token_ttl;
    let session = Session {
        token: state
            .0
            .jwt
            .issue(&credentials.user_id.to_string(), credentials.role, ttl),
        token_type: "Bearer",
        expires_in: ttl.as_secs(),
        user_id: credentials.user_id,
        role: credentials.role,
    };
    Ok(envelope::one(&session))
}
