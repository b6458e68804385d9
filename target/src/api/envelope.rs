//! The success envelope `{"data": .., "meta": {timestamp, version, page,
//! per_page, total}}`, assembled around already-serialised data so a cached
//! JSON string is served without parsing it again.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::cache::Lookup;
use crate::store::Page;

/// The API version reported in every `meta`.
pub const API_VERSION: &str = "v1";

#[derive(Serialize)]
struct Meta {
    timestamp: String,
    version: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    page: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    per_page: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    total: Option<i64>,
}

/// Position of a list page: (page, per_page, total).
pub type Paging = (u32, u32, i64);

/// Wraps serialised `data` in the envelope.
pub fn wrap(data_json: &str, paging: Option<Paging>) -> String {
    let meta = Meta {
        timestamp: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        version: API_VERSION,
        page: paging.map(|p| p.0),
        per_page: paging.map(|p| p.1),
        total: paging.map(|p| p.2),
    };
    let meta = serde_json::to_string(&meta).unwrap_or_else(|_| "{}".into());
    let mut body = String::with_capacity(data_json.len() + meta.len() + 20);
    body.push_str("{\"data\":");
    body.push_str(data_json);
    body.push_str(",\"meta\":");
    body.push_str(&meta);
    body.push('}');
    body
}

/// Serialises a value and wraps it.
pub fn wrap_value<T: Serialize>(data: &T, paging: Option<Paging>) -> String {
    wrap(
        &serde_json::to_string(data).unwrap_or_else(|_| "null".into()),
        paging,
    )
}

pub fn json(status: StatusCode, body: String) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// `200` with one resource in the envelope.
pub fn one<T: Serialize>(data: &T) -> Response {
    json(StatusCode::OK, wrap_value(data, None))
}

/// `200` with a page of resources and its position in `meta`.
pub fn page<T: Serialize>(found: &Page<T>, page: u32, per_page: u32) -> Response {
    json(
        StatusCode::OK,
        wrap_value(&found.items, Some((page, per_page, found.total))),
    )
}

/// A JSON response carrying `X-Cache` for a cache-aside read.
pub fn cached_json(body: String, lookup: &Lookup) -> Response {
    let mut response = json(StatusCode::OK, body);
    response
        .headers_mut()
        .insert("x-cache", HeaderValue::from_static(lookup.label()));
    response
}
