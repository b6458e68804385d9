//! The API's error type: every failure, including a rejected extractor, becomes
//! `{"error": {"code", "message", "details"}}` with the right status, so no
//! plain-text rejection ever reaches a client.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::cache::CacheError;
use crate::store::StoreError;

/// One invalid input field (body field, query parameter, path segment, header).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed request: bad JSON syntax, query parameters, path or header.
    #[error("{message}")]
    BadRequest {
        code: &'static str,
        message: String,
        details: Vec<FieldError>,
    },
    /// Well-formed JSON whose fields are wrong.
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("service unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
    /// Start-up failures of `serve` (never an HTTP response in practice).
    #[error("cannot start: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot start: {0}")]
    Cache(#[from] CacheError),
    #[error("cannot start: {0}")]
    Startup(#[source] StoreError),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => ApiError::Unavailable(m),
            StoreError::NotFound => ApiError::NotFound("resource".into()),
            StoreError::Conflict(m) => ApiError::Conflict(m),
            StoreError::MissingReference(fields) => ApiError::Validation(
                fields
                    .into_iter()
                    .map(|f| FieldError::new(f, "refers to a row that does not exist"))
                    .collect(),
            ),
            StoreError::IdempotencyMismatch => ApiError::BadRequest {
                code: "idempotency_key_reused",
                message: "this Idempotency-Key was used with a different request body".into(),
                details: vec![FieldError::new(
                    "Idempotency-Key",
                    "already used for a different request",
                )],
            },
            other => ApiError::Internal(other.to_string()),
        }
    }
}

#[derive(Serialize)]
struct ErrorEnvelope<'a> {
    error: ErrorObject<'a>,
}

#[derive(Serialize)]
struct ErrorObject<'a> {
    code: &'a str,
    message: String,
    /// Field name to message, or null.
    details: Option<std::collections::BTreeMap<&'a str, &'a str>>,
}

impl ApiError {
    /// The 404 for a resource id that does not exist, worded `"user 7"`.
    pub fn missing(resource: &str, id: i64) -> ApiError {
        ApiError::NotFound(format!("{resource} {id}"))
    }

    /// Maps a store error about resource `id`: the store's `NotFound` names
    /// the resource (see [`ApiError::missing`]); every other error keeps the
    /// usual mapping (409, 422, 503, ...).
    pub fn from_store(resource: &'static str, id: i64) -> impl Fn(StoreError) -> ApiError {
        move |e| match e {
            StoreError::NotFound => ApiError::missing(resource, id),
            other => other.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) | ApiError::Io(_) | ApiError::Cache(_) | ApiError::Startup(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. } => code,
            ApiError::Validation(_) => "validation_failed",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::Unavailable(_) => "unavailable",
            _ => "internal",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let fields = match &self {
            ApiError::BadRequest { details, .. } | ApiError::Validation(details) => Some(details),
            _ => None,
        };
        let message = match &self {
            // Never leak internals (SQL, paths) to clients; they go to the log.
            ApiError::Internal(m) => {
                tracing::error!(error = %m, "internal error");
                "internal error".to_string()
            }
            ApiError::Unavailable(m) => {
                tracing::warn!(error = %m, "database unavailable");
                "the database is unavailable; retry shortly".to_string()
            }
            other => other.to_string(),
        };
        let body = ErrorEnvelope {
            error: ErrorObject {
                code: self.code(),
                message,
                details: fields.map(|fs| {
                    fs.iter()
                        .map(|f| (f.field.as_str(), f.message.as_str()))
                        .collect()
                }),
            },
        };
        let json = serde_json::to_string(&body).unwrap_or_else(|_| {
            r#"{"error":{"code":"internal","message":"internal error","details":null}}"#.into()
        });
        let mut response = (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            json,
        )
            .into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
