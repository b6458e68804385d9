//! Task routes: the cached reads (`GET /tasks`, `/tasks/{id}`,
//! `/users/{id}/tasks`) and the writes, each of which bumps the cache
//! generation after it commits.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Map, Value};

use super::envelope::{self, cached_json, wrap};
use super::input::{self, Fields, Id, JsonObject, Principal, QueryParams};
use super::{created_body, created_response, ApiError, AppState};
use crate::cache::Lookup;
use crate::store::{NewTask, SortField, SortKey, TaskChanges, TaskQuery, TaskStatus};

const TASK_FIELDS: &[&str] = &[
    "title",
    "description",
    "status",
    "priority",
    "due_date",
    "user_id",
    "category_id",
];
const DEFAULT_PRIORITY: i64 = 3;

/// A full task from a body (POST and PUT); `user_id` defaults to the caller.
fn full_task(object: &Map<String, Value>, principal: &Principal) -> Result<NewTask, ApiError> {
    let mut f = Fields::new(object, TASK_FIELDS);
    let title = f.required("title", input::title);
    let description = f.nullable("description", input::description).flatten();
    let status = f.optional("status", input::status);
    let priority = f.optional("priority", input::priority);
    let due_date = f.nullable("due_date", input::datetime).flatten();
    let user_id = f.optional("user_id", input::id);
    let category_id = f.nullable("category_id", input::id).flatten();
    f.finish()?;
    Ok(NewTask {
        title: title.unwrap_or_default(),
        description,
        status: status.unwrap_or(TaskStatus::Todo),
        priority: priority.unwrap_or(DEFAULT_PRIORITY),
        due_date,
        user_id: user_id.unwrap_or(principal.user_id),
        category_id,
    })
}

fn task_changes(object: &Map<String, Value>) -> Result<TaskChanges, ApiError> {
    let mut f = Fields::new(object, TASK_FIELDS);
    let changes = TaskChanges {
        title: f.optional("title", input::title),
        description: f.nullable("description", input::description),
        status: f.optional("status", input::status),
        priority: f.optional("priority", input::priority),
        due_date: f.nullable("due_date", input::datetime),
        user_id: f.optional("user_id", input::id),
        category_id: f.nullable("category_id", input::id),
    };
    f.finish()?;
    Ok(changes)
}

fn parse_sort(s: &str) -> Result<Vec<SortKey>, String> {
    let mut keys: Vec<SortKey> = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        let (descending, name) = match part.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, part.strip_prefix('+').unwrap_or(part)),
        };
        let field = SortField::parse(name).ok_or_else(|| {
            let allowed: Vec<&str> = SortField::ALL.iter().map(|f| f.name()).collect();
            format!(
                "unknown sort field {name:?}; allowed: {}",
                allowed.join(", ")
            )
        })?;
        if keys.iter().any(|k| k.field == field) {
            return Err(format!("sort field {name:?} given twice"));
        }
        keys.push(SortKey { field, descending });
    }
    Ok(keys)
}

/// Parses the list parameters; `user_id` is taken from the path instead on
/// `/users/{id}/tasks`.
fn task_query(raw: Option<&str>, user_in_query: bool) -> Result<TaskQuery, ApiError> {
    let mut p = QueryParams::parse(raw);
    let (page, per_page) = p.take_page();
    let datetime = |s: &str| {
        input::parse_datetime(s).ok_or_else(|| "must be an RFC 3339 date-time".to_string())
    };
    let query = TaskQuery {
        status: p.take_with("status", |s| {
            TaskStatus::parse(s).ok_or_else(|| "must be one of todo, in_progress, done".into())
        }),
        category_id: p.take_with("category_id", input::positive_id),
        user_id: if user_in_query {
            p.take_with("user_id", input::positive_id)
        } else {
            None
        },
        due_before: p.take_with("due_before", datetime),
        due_after: p.take_with("due_after", datetime),
        q: p.take_with("q", |s| {
            if s.chars().count() > 200 {
                Err("must be at most 200 characters".into())
            } else {
                Ok(s.to_string())
            }
        }),
        sort: p.take_with("sort", parse_sort).unwrap_or_default(),
        page,
        per_page,
    };
    p.finish()?;
    Ok(query)
}

/// Cache-aside list: the entry is `"{total}:{json array}"`.
async fn serve_list(
    state: &AppState,
    query: TaskQuery,
    user_must_exist: Option<i64>,
) -> Result<Response, ApiError> {
    let key = format!("list:{}", query.canonical());
    let mut lookup = state.0.cache.get(&key).await;
    if let Lookup::Hit(entry) = &lookup {
        let parsed = entry
            .split_once(':')
            .and_then(|(total, json)| Some((total.parse::<i64>().ok()?, json)));
        if let Some((total, json)) = parsed {
            let paging = Some((query.page, query.per_page, total));
            return Ok(cached_json(wrap(json, paging), &lookup));
        }
        lookup = Lookup::Bypass;
    }
    if let Some(user) = user_must_exist {
        if state.0.store.get_user(user).await?.is_none() {
            return Err(ApiError::missing("user", user));
        }
    }
    let page = state.0.store.list_tasks(&query).await?;
    let json = serde_json::to_string(&page.items).map_err(|e| ApiError::Internal(e.to_string()))?;
    if let Lookup::Miss { generation } = lookup {
        let cache = state.0.cache.clone();
        let entry = format!("{}:{json}", page.total);
        tokio::spawn(async move { cache.put(generation, &key, &entry).await });
    }
    let paging = Some((query.page, query.per_page, page.total));
    Ok(cached_json(wrap(&json, paging), &lookup))
}

#[utoipa::path(get, path = "/api/v1/tasks", tag = "tasks",
    params(
        ("status" = Option<String>, Query, description = "todo | in_progress | done"),
        ("category_id" = Option<i64>, Query), ("user_id" = Option<i64>, Query),
        ("due_before" = Option<String>, Query, description = "RFC 3339"),
        ("due_after" = Option<String>, Query, description = "RFC 3339"),
        ("q" = Option<String>, Query, description = "search in title and description"),
        ("sort" = Option<String>, Query, description = "e.g. -created_at,title"),
        ("page" = Option<u32>, Query), ("per_page" = Option<u32>, Query, description = "1..=100"),
    ),
    responses((status = 200, body = super::openapi::TaskList), (status = 400, body = super::openapi::ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let query = task_query(raw.as_deref(), true)?;
    serve_list(&state, query, None).await
}

#[utoipa::path(get, path = "/api/v1/users/{id}/tasks", tag = "tasks",
    params(("id" = i64, Path)),
    responses((status = 200, body = super::openapi::TaskList), (status = 404, body = super::openapi::ErrorBody)))]
pub async fn list_for_user(
    State(state): State<AppState>,
    Id(user): Id,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let mut query = task_query(raw.as_deref(), false)?;
    query.user_id = Some(user);
    serve_list(&state, query, Some(user)).await
}

#[utoipa::path(get, path = "/api/v1/tasks/{id}", tag = "tasks", params(("id" = i64, Path)),
    responses((status = 200, body = super::openapi::TaskOne), (status = 404, body = super::openapi::ErrorBody)))]
pub async fn get(State(state): State<AppState>, Id(id): Id) -> Result<Response, ApiError> {
    let key = format!("id:{id}");
    let lookup = state.0.cache.get(&key).await;
    if let Lookup::Hit(json) = &lookup {
        return Ok(cached_json(wrap(json, None), &lookup));
    }
    let task = state
        .0
        .store
        .get_task(id)
        .await?
        .ok_or_else(|| ApiError::missing("task", id))?;
    let json = serde_json::to_string(&task).map_err(|e| ApiError::Internal(e.to_string()))?;
    if let Lookup::Miss { generation } = lookup {
        let cache = state.0.cache.clone();
        let entry = json.clone();
        tokio::spawn(async move { cache.put(generation, &key, &entry).await });
    }
    Ok(cached_json(wrap(&json, None), &lookup))
}

#[utoipa::path(post, path = "/api/v1/tasks", tag = "tasks",
    request_body = super::openapi::TaskInput,
    params(("Idempotency-Key" = Option<String>, Header, description = "a retry with the same key returns the first response")),
    responses((status = 201, body = super::openapi::TaskOne), (status = 422, body = super::openapi::ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: JsonObject,
) -> Result<Response, ApiError> {
    let new = full_task(&body.object, &principal)?;
    let key = input::idempotency_key(&headers, &principal, "POST /api/v1/tasks", &body.raw)?;
    let created = state
        .0
        .store
        .create_task(&new, key.as_ref(), created_body)
        .await?;
    state.0.cache.invalidate().await;
    Ok(created_response(created))
}

async fn update(state: &AppState, id: i64, changes: TaskChanges) -> Result<Response, ApiError> {
    let task = state
        .0
        .store
        .update_task(id, &changes)
        .await?
        .ok_or_else(|| ApiError::missing("task", id))?;
    state.0.cache.invalidate().await;
    Ok(envelope::one(&task))
}

#[utoipa::path(put, path = "/api/v1/tasks/{id}", tag = "tasks", params(("id" = i64, Path)),
    request_body = super::openapi::TaskInput,
    responses((status = 200, body = super::openapi::TaskOne), (status = 404, body = super::openapi::ErrorBody)),
    security(("bearer" = [])))]
pub async fn replace(
    State(state): State<AppState>,
    Id(id): Id,
    principal: Principal,
    body: JsonObject,
) -> Result<Response, ApiError> {
    let t = full_task(&body.object, &principal)?;
    let changes = TaskChanges {
        title: Some(t.title),
        description: Some(t.description),
        status: Some(t.status),
        priority: Some(t.priority),
        due_date: Some(t.due_date),
        user_id: Some(t.user_id),
        category_id: Some(t.category_id),
    };
    update(&state, id, changes).await
}

#[utoipa::path(patch, path = "/api/v1/tasks/{id}", tag = "tasks", params(("id" = i64, Path)),
    request_body = super::openapi::TaskInput,
    responses((status = 200, body = super::openapi::TaskOne), (status = 404, body = super::openapi::ErrorBody)),
    security(("bearer" = [])))]
pub async fn patch(
    State(state): State<AppState>,
    Id(id): Id,
    _principal: Principal,
    body: JsonObject,
) -> Result<Response, ApiError> {
    let changes = task_changes(&body.object)?;
    update(&state, id, changes).await
}

#[utoipa::path(delete, path = "/api/v1/tasks/{id}", tag = "tasks", params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = super::openapi::ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    Id(id): Id,
    _principal: Principal,
) -> Result<StatusCode, ApiError> {
    let result = state.0.store.delete_task(id).await;
    if result.is_ok() {
        state.0.cache.invalidate().await;
    }
    result.map_err(ApiError::from_store("task", id))?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_accepts_whitelisted_fields_with_direction() {
        let keys = parse_sort("-created_at, title").unwrap();
        assert_eq!(keys.len(), 2);
        assert!(keys[0].descending && keys[0].field == SortField::CreatedAt);
        assert!(!keys[1].descending && keys[1].field == SortField::Title);
        assert!(parse_sort("password_hash")
            .unwrap_err()
            .contains("unknown sort field"));
        assert!(parse_sort("id;drop table tasks").is_err());
        assert!(parse_sort("title,-title").is_err());
        assert!(parse_sort("").is_err());
    }
}
