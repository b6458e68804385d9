//! The OpenAPI document (`/openapi.json`), derived with utoipa from the route
//! annotations. Bodies are parsed by hand (for per-field errors), so their
//! accepted shapes are described here.

use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::login::Session;
use crate::store::{Category, Task, TaskStatus, User};

/// Fields of POST/PUT/PATCH /tasks (PATCH: all optional; null clears).
#[derive(Serialize, ToSchema)]
pub struct TaskInput {
    /// Required on POST and PUT; 1..=200 characters.
    title: String,
    description: Option<String>,
    /// Default `todo`.
    status: Option<TaskStatus>,
    /// 1..=5, default 3.
    priority: Option<i64>,
    /// RFC 3339.
    due_date: Option<String>,
    /// Defaults to the caller.
    user_id: Option<i64>,
    category_id: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct UserInput {
    /// 3..=50 letters, digits, `_`, `-`, `.`.
    username: String,
    /// 8..=1024 characters.
    password: String,
    /// `user` (default) or `admin` (admins only).
    role: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct CategoryInput {
    name: String,
    description: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct LoginInput {
    username: String,
    password: String,
}

#[derive(Serialize, ToSchema)]
pub struct Meta {
    timestamp: String,
    version: String,
    /// Lists only.
    page: Option<u32>,
    per_page: Option<u32>,
    total: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorObject {
    /// e.g. `validation_failed`, `invalid_query`, `not_found`, `conflict`.
    code: String,
    message: String,
    /// Field name to problem, for 400/422.
    details: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    error: ErrorObject,
}

/// `{"data": T, "meta": Meta}` schemas, one per payload.
macro_rules! envelopes {
    ($($name:ident => $data:ty),* $(,)?) => {$(
        #[derive(Serialize, ToSchema)]
        pub struct $name {
            data: $data,
            meta: Meta,
        }
    )*};
}

envelopes! {
    TaskOne => Task,
    TaskList => Vec<Task>,
    UserOne => User,
    UserList => Vec<User>,
    CategoryOne => Category,
    CategoryList => Vec<Category>,
    SessionOne => Session,
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "bearer",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format("JWT")
                        .build(),
                ),
            );
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "slolab Task API", description = "The bundled target stack's API instance."),
    paths(
        super::login::login,
        super::users::list, super::users::get, super::users::create,
        super::users::replace, super::users::patch, super::users::delete,
        super::categories::list, super::categories::get, super::categories::create,
        super::categories::replace, super::categories::patch, super::categories::delete,
        super::tasks::list, super::tasks::list_for_user, super::tasks::get,
        super::tasks::create, super::tasks::replace, super::tasks::patch, super::tasks::delete,
    ),
    components(schemas(
        Task, User, Category, TaskStatus, Session, TaskInput, UserInput, CategoryInput,
        LoginInput, Meta, ErrorObject, ErrorBody, TaskOne, TaskList, UserOne, UserList,
        CategoryOne, CategoryList, SessionOne,
    )),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;
