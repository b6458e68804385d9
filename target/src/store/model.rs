//! The rows the Task API serves (users, categories, tasks) and the inputs that
//! create and change them; decoded the same way from SQLite and PostgreSQL.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{FromRow, Row};
use utoipa::ToSchema;

use crate::auth::Role;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Todo,
    InProgress,
    Done,
}

impl TaskStatus {
    pub const ALL: [TaskStatus; 3] = [TaskStatus::Todo, TaskStatus::InProgress, TaskStatus::Done];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Todo => "todo",
            TaskStatus::InProgress => "in_progress",
            TaskStatus::Done => "done",
        }
    }

    pub fn parse(s: &str) -> Option<TaskStatus> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

pub(crate) fn role_str(role: Role) -> &'static str {
    match role {
        Role::Admin => "admin",
        Role::User => "user",
    }
}

pub(crate) fn parse_role(s: &str) -> Option<Role> {
    match s {
        "admin" => Some(Role::Admin),
        "user" => Some(Role::User),
        _ => None,
    }
}

fn decode_err(what: &str, value: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("unknown {what} {value:?} in database").into())
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Task {
    pub id: i64,
    pub title: String,
    pub description: Option<String>,
    pub status: TaskStatus,
    /// 1 (lowest) to 5 (highest).
    pub priority: i64,
    pub due_date: Option<DateTime<Utc>>,
    pub user_id: i64,
    pub category_id: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct User {
    pub id: i64,
    pub username: String,
    #[schema(value_type = String, example = "user")]
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Category {
    pub id: i64,
    pub name: String,
    pub description: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// One `FromRow` body for both drivers (the derive needs sqlx's macros).
macro_rules! from_rows {
    ($ty:ty, |$r:ident| $body:expr) => {
        impl<'r> FromRow<'r, SqliteRow> for $ty {
            fn from_row($r: &'r SqliteRow) -> Result<Self, sqlx::Error> {
                $body
            }
        }
        impl<'r> FromRow<'r, PgRow> for $ty {
            fn from_row($r: &'r PgRow) -> Result<Self, sqlx::Error> {
                $body
            }
        }
    };
}

from_rows!(Task, |r| {
    let status: String = r.try_get("status")?;
    Ok(Task {
        id: r.try_get("id")?,
        title: r.try_get("title")?,
        description: r.try_get("description")?,
        status: TaskStatus::parse(&status).ok_or_else(|| decode_err("status", &status))?,
        priority: r.try_get("priority")?,
        due_date: r.try_get("due_date")?,
        user_id: r.try_get("user_id")?,
        category_id: r.try_get("category_id")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
});

from_rows!(User, |r| {
    let role: String = r.try_get("role")?;
    Ok(User {
        id: r.try_get("id")?,
        username: r.try_get("username")?,
        role: parse_role(&role).ok_or_else(|| decode_err("role", &role))?,
        created_at: r.try_get("created_at")?,
    })
});

from_rows!(Category, |r| {
    Ok(Category {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        description: r.try_get("description")?,
        created_at: r.try_get("created_at")?,
    })
});

#[derive(Debug, Clone, PartialEq)]
pub struct NewTask {
    pub title: String,
    pub description: Option<String>,
    pub status: TaskStatus,
    pub priority: i64,
    pub due_date: Option<DateTime<Utc>>,
    pub user_id: i64,
    pub category_id: Option<i64>,
}

/// A change set: `None` leaves a column alone; `Some(None)` clears a nullable one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskChanges {
    pub title: Option<String>,
    pub description: Option<Option<String>>,
    pub status: Option<TaskStatus>,
    pub priority: Option<i64>,
    pub due_date: Option<Option<DateTime<Utc>>>,
    pub user_id: Option<i64>,
    pub category_id: Option<Option<i64>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewUser {
    pub username: String,
    pub password: String,
    pub role: Role,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserChanges {
    pub username: Option<String>,
    pub password: Option<String>,
    pub role: Option<Role>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewCategory {
    pub name: String,
    pub description: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct CategoryChanges {
    pub name: Option<String>,
    pub description: Option<Option<String>>,
}
