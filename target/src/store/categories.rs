//! Categories: named groups of tasks; a category that still has tasks cannot
//! be deleted (409).

use super::tasks::now;
use super::{
    Bind, Category, CategoryChanges, Created, IdempotencyKey, NewCategory, Page, Store, StoreError,
    StoredResponse,
};

const CATEGORY_COLUMNS: &str = "id, name, description, created_at";

fn name_taken(e: StoreError, name: Option<&str>) -> StoreError {
    match (e, name) {
        (StoreError::Conflict(_), Some(name)) => {
            StoreError::Conflict(format!("category name {name:?} is taken"))
        }
        (e, _) => e,
    }
}

impl Store {
    pub async fn create_category(
        &self,
        new: &NewCategory,
        idem: Option<&IdempotencyKey>,
        render: impl FnOnce(&Category) -> StoredResponse + Send,
    ) -> Result<Created<Category>, StoreError> {
        let sql = format!(
            "INSERT INTO categories (name, description, created_at) VALUES ($1, $2, $3) \
             RETURNING {CATEGORY_COLUMNS}"
        );
        let binds = vec![
            Bind::Text(new.name.clone()),
            Bind::OptText(new.description.clone()),
            Bind::Time(now()),
        ];
        self.insert_returning(&sql, binds, idem, render)
            .await
            .map_err(|e| name_taken(e, Some(&new.name)))
    }

    pub async fn get_category(&self, id: i64) -> Result<Option<Category>, StoreError> {
        let sql = format!("SELECT {CATEGORY_COLUMNS} FROM categories WHERE id = $1");
        self.fetch_optional(&sql, vec![Bind::I64(id)]).await
    }

    pub async fn list_categories(
        &self,
        page: u32,
        per_page: u32,
    ) -> Result<Page<Category>, StoreError> {
        let sql =
            format!("SELECT {CATEGORY_COLUMNS} FROM categories ORDER BY id LIMIT $1 OFFSET $2");
        let offset = i64::from(page.saturating_sub(1)) * i64::from(per_page);
        let items = self
            .fetch_all(&sql, vec![Bind::I64(per_page.into()), Bind::I64(offset)])
            .await?;
        let total = self
            .fetch_count("SELECT COUNT(*) FROM categories", vec![])
            .await?;
        Ok(Page { items, total })
    }

    pub async fn update_category(
        &self,
        id: i64,
        changes: &CategoryChanges,
    ) -> Result<Option<Category>, StoreError> {
        let mut sets: Vec<(&'static str, Bind)> = Vec::new();
        if let Some(v) = &changes.name {
            sets.push(("name", Bind::Text(v.clone())));
        }
        if let Some(v) = &changes.description {
            sets.push(("description", Bind::OptText(v.clone())));
        }
        self.update_returning("categories", CATEGORY_COLUMNS, id, sets)
            .await
            .map_err(|e| name_taken(e, changes.name.as_deref()))
    }

    pub async fn delete_category(&self, id: i64) -> Result<(), StoreError> {
        self.delete_by_id("categories", "category", id).await
    }
}
