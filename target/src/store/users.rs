//! Users: accounts with an argon2 password hash and a role; a user who still
//! owns tasks cannot be deleted (409), because deletes never cascade.

use super::model::role_str;
use super::tasks::now;
use super::{
    hash_password, Bind, Created, IdempotencyKey, NewUser, Page, Store, StoreError, StoredResponse,
    User, UserChanges,
};
use crate::auth::Role;

const USER_COLUMNS: &str = "id, username, role, created_at";

/// What login needs: the id, the role and the stored hash.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub user_id: i64,
    pub role: Role,
    pub password_hash: String,
}

/// Hashing is CPU-bound; keep it off the async workers.
pub(crate) async fn hash_off_thread(password: String) -> Result<String, StoreError> {
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| StoreError::Password(e.to_string()))?
}

impl Store {
    pub async fn create_user(
        &self,
        new: &NewUser,
        idem: Option<&IdempotencyKey>,
        render: impl FnOnce(&User) -> StoredResponse + Send,
    ) -> Result<Created<User>, StoreError> {
        let hash = hash_off_thread(new.password.clone()).await?;
        let sql = format!(
            "INSERT INTO users (username, password_hash, role, created_at) \
             VALUES ($1, $2, $3, $4) RETURNING {USER_COLUMNS}"
        );
        let binds = vec![
            Bind::Text(new.username.clone()),
            Bind::Text(hash),
            Bind::Text(role_str(new.role).into()),
            Bind::Time(now()),
        ];
        self.insert_returning(&sql, binds, idem, render)
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => {
                    StoreError::Conflict(format!("username {:?} is taken", new.username))
                }
                other => other,
            })
    }

    pub async fn get_user(&self, id: i64) -> Result<Option<User>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        self.fetch_optional(&sql, vec![Bind::I64(id)]).await
    }

    pub async fn list_users(&self, page: u32, per_page: u32) -> Result<Page<User>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY id LIMIT $1 OFFSET $2");
        let offset = i64::from(page.saturating_sub(1)) * i64::from(per_page);
        let items = self
            .fetch_all(&sql, vec![Bind::I64(per_page.into()), Bind::I64(offset)])
            .await?;
        let total = self
            .fetch_count("SELECT COUNT(*) FROM users", vec![])
            .await?;
        Ok(Page { items, total })
    }

    pub async fn credentials(&self, username: &str) -> Result<Option<Credentials>, StoreError> {
        let row: Option<(i64, String, String)> = self
            .fetch_optional(
                "SELECT id, role, password_hash FROM users WHERE username = $1",
                vec![Bind::Text(username.into())],
            )
            .await?;
        Ok(row.map(|(user_id, role, password_hash)| Credentials {
            user_id,
            role: super::model::parse_role(&role).unwrap_or(Role::User),
            password_hash,
        }))
    }

    pub async fn update_user(
        &self,
        id: i64,
        changes: &UserChanges,
    ) -> Result<Option<User>, StoreError> {
        let mut sets: Vec<(&'static str, Bind)> = Vec::new();
        if let Some(v) = &changes.username {
            sets.push(("username", Bind::Text(v.clone())));
        }
        if let Some(v) = &changes.password {
            sets.push((
                "password_hash",
                Bind::Text(hash_off_thread(v.clone()).await?),
            ));
        }
        if let Some(v) = changes.role {
            sets.push(("role", Bind::Text(role_str(v).into())));
        }
        self.update_returning("users", USER_COLUMNS, id, sets)
            .await
            .map_err(|e| match (e, &changes.username) {
                (StoreError::Conflict(_), Some(name)) => {
                    StoreError::Conflict(format!("username {name:?} is taken"))
                }
                (e, _) => e,
            })
    }

    pub async fn delete_user(&self, id: i64) -> Result<(), StoreError> {
        self.delete_by_id("users", "user", id).await
    }
}
