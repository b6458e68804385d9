//! Fixture data for `slolab stack up --seed-tasks N` and the admin account whose
//! token the stack prints; both are safe to run again on an existing database.

use std::fmt::Write as _;

use chrono::Duration as Days;

use super::model::role_str;
use super::tasks::now;
use super::users::hash_off_thread;
use super::{Bind, Store, StoreError, TaskStatus, User, UserChanges};
use crate::auth::Role;

/// What `seed` left in the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedSummary {
    pub users: usize,
    pub categories: usize,
    pub tasks_inserted: usize,
}

/// Seeded users are `user1..userN`, all with this password.
pub const SEED_PASSWORD: &str = "password";
const SEED_CATEGORIES: [&str; 3] = ["work", "home", "errands"];
/// Rows per INSERT: 100 x 9 parameters stays far below both drivers' limits.
const BATCH: usize = 100;

/// Ensures users `user1..user{users}` and three categories exist, then adds
/// `tasks` tasks spread over them (deterministic contents, in batches).
pub async fn seed(store: &Store, users: usize, tasks: usize) -> Result<SeedSummary, StoreError> {
    let users = users.max(usize::from(tasks > 0));
    // One hash for all seeded users: hashing thousands of passwords would
    // take minutes, and fixtures share a password anyway.
    let hash = hash_off_thread(SEED_PASSWORD.into()).await?;
    let at = now();
    for start in (0..users).step_by(BATCH) {
        let end = (start + BATCH).min(users);
        let mut sql =
            String::from("INSERT INTO users (username, password_hash, role, created_at) VALUES ");
        let mut binds = Vec::new();
        for i in start..end {
            let n = binds.len();
            let sep = if i > start { ", " } else { "" };
            let _ = write!(sql, "{sep}(${}, ${}, ${}, ${})", n + 1, n + 2, n + 3, n + 4);
            binds.push(Bind::Text(format!("user{}", i + 1)));
            binds.push(Bind::Text(hash.clone()));
            binds.push(Bind::Text(role_str(Role::User).into()));
            binds.push(Bind::Time(at));
        }
        sql.push_str(" ON CONFLICT (username) DO NOTHING");
        store.execute(&sql, binds).await?;
    }
    for name in SEED_CATEGORIES {
        store
            .execute(
                "INSERT INTO categories (name, description, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO NOTHING",
                vec![
                    Bind::Text(name.into()),
                    Bind::OptText(Some(format!("{name} tasks"))),
                    Bind::Time(at),
                ],
            )
            .await?;
    }
    let user_ids: Vec<(i64,)> = store
        .fetch_all(
            "SELECT id FROM users WHERE username LIKE 'user%' ORDER BY id LIMIT $1",
            vec![Bind::I64(users as i64)],
        )
        .await?;
    let category_ids: Vec<(i64,)> = store
        .fetch_all("SELECT id FROM categories ORDER BY id", vec![])
        .await?;
    if tasks > 0 && user_ids.is_empty() {
        return Err(StoreError::Conflict("no users to own seeded tasks".into()));
    }
    for start in (0..tasks).step_by(BATCH) {
        let end = (start + BATCH).min(tasks);
        let mut sql = String::from(
            "INSERT INTO tasks (title, description, status, priority, due_date, user_id, \
             category_id, created_at, updated_at) VALUES ",
        );
        let mut binds = Vec::new();
        for i in start..end {
            let n = binds.len();
            let sep = if i > start { ", " } else { "" };
            let _ = write!(sql, "{sep}(");
            for k in 1..=9 {
                let _ = write!(sql, "{}${}", if k > 1 { ", " } else { "" }, n + k);
            }
            sql.push(')');
            let category = if category_ids.is_empty() || i % 4 == 3 {
                None
            } else {
                Some(category_ids[i % category_ids.len()].0)
            };
            binds.extend([
                Bind::Text(format!("Task {}", i + 1)),
                Bind::OptText(Some(format!("Seeded task number {}", i + 1))),
                Bind::Text(TaskStatus::ALL[i % 3].as_str().into()),
                Bind::I64((i % 5) as i64 + 1),
                Bind::OptTime((i % 2 == 0).then(|| at + Days::days((i % 30) as i64))),
                Bind::I64(user_ids[i % user_ids.len()].0),
                Bind::OptI64(category),
                Bind::Time(at),
                Bind::Time(at),
            ]);
        }
        store.execute(&sql, binds).await?;
    }
    Ok(SeedSummary {
        users: user_ids.len(),
        categories: category_ids.len(),
        tasks_inserted: tasks,
    })
}

/// Creates the admin account, or resets its password and role if it exists,
/// so the credentials the stack prints always work.
pub async fn ensure_admin(
    store: &Store,
    username: &str,
    password: &str,
) -> Result<User, StoreError> {
    let existing: Option<(i64,)> = store
        .fetch_optional(
            "SELECT id FROM users WHERE username = $1",
            vec![Bind::Text(username.into())],
        )
        .await?;
    let changes = UserChanges {
        username: None,
        password: Some(password.into()),
        role: Some(Role::Admin),
    };
    if let Some((id,)) = existing {
        return store
            .update_user(id, &changes)
            .await?
            .ok_or(StoreError::NotFound);
    }
    let hash = hash_off_thread(password.into()).await?;
    // ON CONFLICT: two supervisors racing on one database both succeed.
    let sql = "INSERT INTO users (username, password_hash, role, created_at) \
               VALUES ($1, $2, 'admin', $3) ON CONFLICT (username) DO UPDATE \
               SET password_hash = excluded.password_hash, role = 'admin' \
               RETURNING id, username, role, created_at";
    let user: Option<User> = store
        .fetch_optional(
            sql,
            vec![
                Bind::Text(username.into()),
                Bind::Text(hash),
                Bind::Time(now()),
            ],
        )
        .await?;
    user.ok_or(StoreError::NotFound)
}
