//! Request inputs checked by hand — JSON bodies, query strings, path ids,
//! bearer tokens, Idempotency-Key — so every problem is reported per field in
//! the API's error format instead of axum's plain-text rejections.

use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use chrono::{DateTime, Utc};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::{Map, Value};

use super::error::{ApiError, FieldError};
use super::AppState;
use crate::auth::{AuthError, Role};
use crate::store::{IdempotencyKey, TaskStatus};

/// A JSON object body, read within the body limit, with its raw bytes kept
/// as the Idempotency-Key fingerprint.
pub struct JsonObject {
    pub object: Map<String, Value>,
    pub raw: bytes::Bytes,
}

impl FromRequest<AppState> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let limit = state.0.body_limit;
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(ApiError::PayloadTooLarge(limit));
        }
        let raw = match Limited::new(req.into_body(), limit).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
                return Err(ApiError::PayloadTooLarge(limit))
            }
            Err(e) => {
                return Err(bad_body(format!("could not read the request body: {e}")));
            }
        };
        if raw.iter().all(u8::is_ascii_whitespace) {
            return Err(bad_body(
                "the request body is empty; expected a JSON object".into(),
            ));
        }
        match serde_json::from_slice::<Value>(&raw) {
            Ok(Value::Object(object)) => Ok(JsonObject { object, raw }),
            Ok(_) => Err(bad_body("expected a JSON object".into())),
            Err(e) => Err(bad_body(format!("invalid JSON: {e}"))),
        }
    }
}

fn bad_body(message: String) -> ApiError {
    ApiError::BadRequest {
        code: "invalid_json",
        message,
        details: Vec::new(),
    }
}

/// A field's state in a body: PATCH tells "absent" (leave) from `null` (clear).
pub enum Slot<T> {
    Absent,
    Null,
    Set(T),
}

/// Reads typed fields out of a JSON object, collecting every problem.
pub struct Fields<'a> {
    object: &'a Map<String, Value>,
    errors: Vec<FieldError>,
}

type Parse<T> = fn(&Value) -> Result<T, String>;

impl<'a> Fields<'a> {
    /// `known` lists the accepted fields; any other field is an error, which
    /// catches typos like `titel` instead of silently ignoring them.
    pub fn new(object: &'a Map<String, Value>, known: &[&str]) -> Self {
        let errors = object
            .keys()
            .filter(|k| !known.contains(&k.as_str()))
            .map(|k| FieldError::new(k.clone(), "unknown field"))
            .collect();
        Fields { object, errors }
    }

    fn slot<T>(&mut self, name: &str, parse: Parse<T>) -> Slot<T> {
        match self.object.get(name) {
            None => Slot::Absent,
            Some(Value::Null) => Slot::Null,
            Some(v) => match parse(v) {
                Ok(t) => Slot::Set(t),
                Err(message) => {
                    self.errors.push(FieldError::new(name, message));
                    Slot::Absent
                }
            },
        }
    }

    pub fn required<T>(&mut self, name: &str, parse: Parse<T>) -> Option<T> {
        let present = self.object.contains_key(name);
        match self.slot(name, parse) {
            Slot::Set(t) => Some(t),
            Slot::Absent if present => None,
            _ => {
                self.errors.push(FieldError::new(name, "is required"));
                None
            }
        }
    }

    /// Absent is `None`; null is an error (the field is not nullable).
    pub fn optional<T>(&mut self, name: &str, parse: Parse<T>) -> Option<T> {
        match self.slot(name, parse) {
            Slot::Set(t) => Some(t),
            Slot::Absent => None,
            Slot::Null => {
                self.errors.push(FieldError::new(name, "must not be null"));
                None
            }
        }
    }

    /// Absent is `None`; null is `Some(None)`.
    pub fn nullable<T>(&mut self, name: &str, parse: Parse<T>) -> Option<Option<T>> {
        match self.slot(name, parse) {
            Slot::Set(t) => Some(Some(t)),
            Slot::Null => Some(None),
            Slot::Absent => None,
        }
    }

    pub fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.errors))
        }
    }
}

fn text(v: &Value, max: usize, allow_empty: bool) -> Result<String, String> {
    let s = v.as_str().ok_or("must be a string")?;
    let trimmed = s.trim();
    if !allow_empty && trimmed.is_empty() {
        return Err("must not be empty".into());
    }
    if s.chars().count() > max {
        return Err(format!("must be at most {max} characters"));
    }
    if s.chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
    {
        return Err("must not contain control characters".into());
    }
    Ok(trimmed.to_string())
}

pub fn title(v: &Value) -> Result<String, String> {
    text(v, 200, false)
}

pub fn name(v: &Value) -> Result<String, String> {
    text(v, 100, false)
}

pub fn description(v: &Value) -> Result<String, String> {
    text(v, 5000, true)
}

pub fn password(v: &Value) -> Result<String, String> {
    let s = v.as_str().ok_or("must be a string")?;
    if s.chars().count() < 8 || s.len() > 1024 {
        return Err("must be 8 to 1024 characters".into());
    }
    Ok(s.to_string())
}

pub fn username(v: &Value) -> Result<String, String> {
    let s = v.as_str().ok_or("must be a string")?;
    let ok = (3..=50).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if !ok {
        return Err("must be 3 to 50 letters, digits, '_', '-' or '.'".into());
    }
    Ok(s.to_string())
}

pub fn id(v: &Value) -> Result<i64, String> {
    v.as_i64()
        .filter(|n| *n > 0)
        .ok_or_else(|| "must be a positive integer".into())
}

pub fn priority(v: &Value) -> Result<i64, String> {
    v.as_i64()
        .filter(|n| (1..=5).contains(n))
        .ok_or_else(|| "must be an integer from 1 to 5".into())
}

pub fn status(v: &Value) -> Result<TaskStatus, String> {
    v.as_str()
        .and_then(TaskStatus::parse)
        .ok_or_else(|| "must be one of todo, in_progress, done".into())
}

pub fn role(v: &Value) -> Result<Role, String> {
    match v.as_str() {
        Some("admin") => Ok(Role::Admin),
        Some("user") => Ok(Role::User),
        _ => Err("must be admin or user".into()),
    }
}

pub fn datetime(v: &Value) -> Result<DateTime<Utc>, String> {
    v.as_str()
        .and_then(parse_datetime)
        .ok_or_else(|| "must be an RFC 3339 date-time, e.g. 2030-01-31T12:00:00Z".into())
}

pub fn parse_datetime(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The query string as (name, value) pairs; each parameter may appear once,
/// and parameters nobody asked for are reported by `finish`.
pub struct QueryParams {
    pairs: Vec<(String, String)>,
    errors: Vec<FieldError>,
}

impl QueryParams {
    pub fn parse(raw: Option<&str>) -> Self {
        let pairs: Vec<(String, String)> = raw
            .map(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        QueryParams {
            pairs,
            errors: Vec::new(),
        }
    }

    /// Takes a parameter's value out (empty values count as absent).
    pub fn take(&mut self, name: &str) -> Option<String> {
        let mut found: Vec<String> = Vec::new();
        self.pairs.retain(|(k, v)| {
            if k == name {
                found.push(v.clone());
                false
            } else {
                true
            }
        });
        if found.len() > 1 {
            self.errors
                .push(FieldError::new(name, "must be given at most once"));
            return None;
        }
        found.pop().filter(|v| !v.is_empty())
    }

    pub fn take_with<T>(
        &mut self,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let raw = self.take(name)?;
        match parse(&raw) {
            Ok(t) => Some(t),
            Err(message) => {
                self.errors.push(FieldError::new(name, message));
                None
            }
        }
    }

    /// `page` (1..=100000, default 1) and `per_page` (1..=100, default 20).
    pub fn take_page(&mut self) -> (u32, u32) {
        let page = self
            .take_with("page", |s| bounded_int(s, 1, 100_000))
            .unwrap_or(1);
        let per_page = self
            .take_with("per_page", |s| bounded_int(s, 1, 100))
            .unwrap_or(20);
        (page, per_page)
    }

    /// The query of a list that takes nothing but `page` and `per_page`.
    pub fn page_only(raw: Option<&str>) -> Result<(u32, u32), ApiError> {
        let mut p = QueryParams::parse(raw);
        let paging = p.take_page();
        p.finish()?;
        Ok(paging)
    }

    pub fn finish(mut self) -> Result<(), ApiError> {
        for (k, _) in self.pairs.drain(..) {
            if !self.errors.iter().any(|e| e.field == k) {
                self.errors.push(FieldError::new(k, "unknown parameter"));
            }
        }
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::BadRequest {
                code: "invalid_query",
                message: "invalid query parameters".into(),
                details: self.errors,
            })
        }
    }
}

pub fn bounded_int(s: &str, min: u32, max: u32) -> Result<u32, String> {
    s.parse::<u32>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| format!("must be an integer from {min} to {max}"))
}

pub fn positive_id(s: &str) -> Result<i64, String> {
    s.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| "must be a positive integer".into())
}

/// The `{id}` path segment as a positive integer.
pub struct Id(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let invalid = |message: String| ApiError::BadRequest {
            code: "invalid_path",
            message: "invalid path parameter".into(),
            details: vec![FieldError::new("id", message)],
        };
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| invalid(e.body_text()))?;
        positive_id(&raw).map(Id).map_err(invalid)
    }
}

/// The caller of a write, from a valid bearer token.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: i64,
    pub role: Role,
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .map(|v| v.to_str().unwrap_or(""));
        let claims = state.0.jwt.verify_header(value).map_err(|e| match e {
            AuthError::Missing => ApiError::Unauthorized("a bearer token is required".into()),
            AuthError::Expired => ApiError::Unauthorized("the token has expired".into()),
            AuthError::Invalid(_) => ApiError::Unauthorized("the token is invalid".into()),
        })?;
        let user_id = claims
            .sub
            .parse()
            .map_err(|_| ApiError::Unauthorized("the token is invalid".into()))?;
        Ok(Principal {
            user_id,
            role: claims.role,
        })
    }
}

/// The Idempotency-Key of a POST, scoped to its caller and route.
pub fn idempotency_key(
    headers: &HeaderMap,
    principal: &Principal,
    route: &'static str,
    body: &[u8],
) -> Result<Option<IdempotencyKey>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| ApiError::BadRequest {
            code: "invalid_header",
            message: "invalid Idempotency-Key header".into(),
            details: vec![FieldError::new(
                "Idempotency-Key",
                "must be 1 to 255 visible ASCII characters",
            )],
        })?;
    Ok(Some(IdempotencyKey {
        principal: principal.user_id.to_string(),
        route,
        key: key.to_string(),
        fingerprint: String::from_utf8_lossy(body).into_owned(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_report_duplicates_unknowns_and_bad_values() {
        let mut q = QueryParams::parse(Some("page=0&per_page=1000&x=1&status=a&status=b"));
        assert_eq!(q.take_page(), (1, 20));
        assert_eq!(q.take("status"), None);
        let err = q.finish().unwrap_err();
        match err {
            ApiError::BadRequest { code, details, .. } => {
                assert_eq!(code, "invalid_query");
                let fields: Vec<&str> = details.iter().map(|d| d.field.as_str()).collect();
                assert_eq!(fields, ["page", "per_page", "status", "x"]);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn fields_tell_absent_from_null_and_collect_every_error() {
        let v: Value =
            serde_json::json!({"title": "", "priority": 9, "description": null, "oops": 1});
        let obj = v.as_object().unwrap();
        let mut f = Fields::new(obj, &["title", "priority", "description", "user_id"]);
        assert_eq!(f.required("title", title), None);
        assert_eq!(f.optional("priority", priority), None);
        assert_eq!(f.nullable("description", description), Some(None));
        assert_eq!(f.required("user_id", id), None);
        let ApiError::Validation(errors) = f.finish().unwrap_err() else {
            panic!("expected a validation error")
        };
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["oops", "title", "priority", "user_id"]);
    }
}
