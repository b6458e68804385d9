//! Category routes: public reads, authenticated writes; a category that still
//! has tasks cannot be deleted (409).

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::envelope;
use super::input::{self, Fields, Id, JsonObject, Principal, QueryParams};
use super::{created_body, created_response, ApiError, AppState};
use crate::store::{CategoryChanges, NewCategory};

const CATEGORY_FIELDS: &[&str] = &["name", "description"];

#[utoipa::path(get, path = "/api/v1/categories", tag = "categories",
    params(("page" = Option<u32>, Query), ("per_page" = Option<u32>, Query)),
    responses((status = 200, body = super::openapi::CategoryList)))]
pub async fn list(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let (page, per_page) = QueryParams::page_only(raw.as_deref())?;
    let found = state.0.store.list_categories(page, per_page).await?;
    Ok(envelope::page(&found, page, per_page))
}

#[utoipa::path(get, path = "/api/v1/categories/{id}", tag = "categories", params(("id" = i64, Path)),
    responses((status = 200, body = super::openapi::CategoryOne), (status = 404, body = super::openapi::ErrorBody)))]
pub async fn get(State(state): State<AppState>, Id(id): Id) -> Result<Response, ApiError> {
    let category = state
        .0
        .store
        .get_category(id)
        .await?
        .ok_or_else(|| ApiError::missing("category", id))?;
    Ok(envelope::one(&category))
}

#[utoipa::path(post, path = "/api/v1/categories", tag = "categories",
    request_body = super::openapi::CategoryInput,
    responses((status = 201, body = super::openapi::CategoryOne), (status = 409, body = super::openapi::ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: JsonObject,
) -> Result<Response, ApiError> {
    let mut f = Fields::new(&body.object, CATEGORY_FIELDS);
    let name = f.required("name", input::name);
    let description = f.nullable("description", input::description).flatten();
    f.finish()?;
    let new = NewCategory {
        name: name.unwrap_or_default(),
        description,
    };
    let key = input::idempotency_key(&headers, &principal, "POST /api/v1/categories", &body.raw)?;
    let created = state
        .0
        .store
        .create_category(&new, key.as_ref(), created_body)
        .await?;
    Ok(created_response(created))
}

async fn update(state: &AppState, id: i64, changes: CategoryChanges) -> Result<Response, ApiError> {
    let category = state
        .0
        .store
        .update_category(id, &changes)
        .await
        .map_err(ApiError::from_store("category", id))?
        .ok_or_else(|| ApiError::missing("category", id))?;
    Ok(envelope::one(&category))
}

#[utoipa::path(put, path = "/api/v1/categories/{id}", tag = "categories", params(("id" = i64, Path)),
    request_body = super::openapi::CategoryInput,
    responses((status = 200, body = super::openapi::CategoryOne), (status = 404, body = super::openapi::ErrorBody)),
    security(("bearer" = [])))]
pub async fn replace(
    State(state): State<AppState>,
    Id(id): Id,
    _principal: Principal,
    body: JsonObject,
) -> Result<Response, ApiError> {
    let mut f = Fields::new(&body.object, CATEGORY_FIELDS);
    let name = f.required("name", input::name);
    let description = f.nullable("description", input::description).flatten();
    f.finish()?;
    let changes = CategoryChanges {
        name,
        description: Some(description),
    };
    update(&state, id, changes).await
}

#[utoipa::path(patch, path = "/api/v1/categories/{id}", tag = "categories", params(("id" = i64, Path)),
    request_body = super::openapi::CategoryInput,
    responses((status = 200, body = super::openapi::CategoryOne), (status = 404, body = super::openapi::ErrorBody)),
    security(("bearer" = [])))]
pub async fn patch(
    State(state): State<AppState>,
    Id(id): Id,
    _principal: Principal,
    body: JsonObject,
) -> Result<Response, ApiError> {
    let mut f = Fields::new(&body.object, CATEGORY_FIELDS);
    let changes = CategoryChanges {
        name: f.optional("name", input::name),
        description: f.nullable("description", input::description),
    };
    f.finish()?;
    update(&state, id, changes).await
}

#[utoipa::path(delete, path = "/api/v1/categories/{id}", tag = "categories", params(("id" = i64, Path)),
    responses((status = 204), (status = 409, body = super::openapi::ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    Id(id): Id,
    _principal: Principal,
) -> Result<StatusCode, ApiError> {
    state
        .0
        .store
        .delete_category(id)
        .await
        .map_err(ApiError::from_store("category", id))?;
    Ok(StatusCode::NO_CONTENT)
}
