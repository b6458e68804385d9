//! User routes. Anyone may read; writes need a token; a user may change
//! themself, an admin anyone; only an admin grants roles or deletes users.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Map, Value};

use super::envelope;
use super::input::{self, Fields, Id, JsonObject, Principal, QueryParams};
use super::{created_body, created_response, ApiError, AppState};
use crate::auth::Role;
use crate::store::{NewUser, UserChanges};

const USER_FIELDS: &[&str] = &["username", "password", "role"];

fn may_change(principal: &Principal, id: i64, role: Option<Role>) -> Result<(), ApiError> {
    if role == Some(Role::Admin) && !principal.is_admin() {
        return Err(ApiError::Forbidden(
            "only an admin can grant the admin role".into(),
        ));
    }
    if principal.user_id != id && !principal.is_admin() {
        return Err(ApiError::Forbidden(
            "you can only change your own account".into(),
        ));
    }
    Ok(())
}

#[utoipa::path(get, path = "/api/v1/users", tag = "users",
    params(("page" = Option<u32>, Query), ("per_page" = Option<u32>, Query)),
    responses((status = 200, body = super::openapi::UserList)))]
pub async fn list(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let (page, per_page) = QueryParams::page_only(raw.as_deref())?;
    let users = state.0.store.list_users(page, per_page).await?;
    Ok(envelope::page(&users, page, per_page))
}

#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "users", params(("id" = i64, Path)),
    responses((status = 200, body = super::openapi::UserOne), (status = 404, body = super::openapi::ErrorBody)))]
pub async fn get(State(state): State<AppState>, Id(id): Id) -> Result<Response, ApiError> {
    let user = state
        .0
        .store
        .get_user(id)
        .await?
        .ok_or_else(|| ApiError::missing("user", id))?;
    Ok(envelope::one(&user))
}

#[utoipa::path(post, path = "/api/v1/users", tag = "users",
    request_body = super::openapi::UserInput,
    responses((status = 201, body = super::openapi::UserOne), (status = 409, body = super::openapi::ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: JsonObject,
) -> Result<Response, ApiError> {
    let new = full_user(&body.object)?;
    if new.role == Role::Admin && !principal.is_admin() {
        return Err(ApiError::Forbidden(
            "only an admin can create admins".into(),
        ));
    }
    let key = input::idempotency_key(&headers, &principal, "POST /api/v1/users", &body.raw)?;
    let created = state
        .0
        .store
        .create_user(&new, key.as_ref(), created_body)
        .await?;
    Ok(created_response(created))
}

fn full_user(object: &Map<String, Value>) -> Result<NewUser, ApiError> {
    let mut f = Fields::new(object, USER_FIELDS);
    let username = f.required("username", input::username);
    let password = f.required("password", input::password);
    let role = f.optional("role", input::role);
    f.finish()?;
    Ok(NewUser {
        username: username.unwrap_or_default(),
        password: password.unwrap_or_default(),
        role: role.unwrap_or(Role::User),
    })
}

async fn update(
    state: &AppState,
    id: i64,
    principal: &Principal,
    changes: UserChanges,
) -> Result<Response, ApiError> {
    may_change(principal, id, changes.role)?;
    if changes.role.is_some() && !principal.is_admin() {
        return Err(ApiError::Forbidden("only an admin can change roles".into()));
    }
    let user = state
        .0
        .store
        .update_user(id, &changes)
        .await
        .map_err(ApiError::from_store("user", id))?
        .ok_or_else(|| ApiError::missing("user", id))?;
    Ok(envelope::one(&user))
}

#[utoipa::path(put, path = "/api/v1/users/{id}", tag = "users", params(("id" = i64, Path)),
    request_body = super::openapi::UserInput,
    responses((status = 200, body = super::openapi::UserOne), (status = 403, body = super::openapi::ErrorBody)),
    security(("bearer" = [])))]
pub async fn replace(
    State(state): State<AppState>,
    Id(id): Id,
    principal: Principal,
    body: JsonObject,
) -> Result<Response, ApiError> {
    let mut f = Fields::new(&body.object, USER_FIELDS);
    let username = f.required("username", input::username);
    let password = f.required("password", input::password);
    let role = f.optional("role", input::role);
    f.finish()?;
    let changes = UserChanges {
        username,
        password,
        role,
    };
    update(&state, id, &principal, changes).await
}

#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "users", params(("id" = i64, Path)),
    request_body = super::openapi::UserInput,
    responses((status = 200, body = super::openapi::UserOne), (status = 403, body = super::openapi::ErrorBody)),
    security(("bearer" = [])))]
pub async fn patch(
    State(state): State<AppState>,
    Id(id): Id,
    principal: Principal,
    body: JsonObject,
) -> Result<Response, ApiError> {
    let mut f = Fields::new(&body.object, USER_FIELDS);
    let changes = UserChanges {
        username: f.optional("username", input::username),
        password: f.optional("password", input::password),
        role: f.optional("role", input::role),
    };
    f.finish()?;
    update(&state, id, &principal, changes).await
}

#[utoipa::path(delete, path = "/api/v1/users/{id}", tag = "users", params(("id" = i64, Path)),
    responses((status = 204), (status = 403, body = super::openapi::ErrorBody),
        (status = 409, body = super::openapi::ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    Id(id): Id,
    principal: Principal,
) -> Result<StatusCode, ApiError> {
    if !principal.is_admin() {
        return Err(ApiError::Forbidden(
            "deleting users needs the admin role".into(),
        ));
    }
    state
        .0
        .store
        .delete_user(id)
        .await
        .map_err(ApiError::from_store("user", id))?;
    // A cached (empty) /users/{id}/tasks must not outlive the user.
    state.0.cache.invalidate().await;
    Ok(StatusCode::NO_CONTENT)
}
