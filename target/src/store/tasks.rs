//! Tasks: create/get/update/delete and the filtered, searched, sorted and
//! paginated list — the API's hot read path, built from whitelisted columns.

use std::fmt::Write as _;

use chrono::{DateTime, SubsecRound, Utc};

use super::{
    Bind, Created, IdempotencyKey, NewTask, Page, Store, StoreError, StoredResponse, Task,
    TaskChanges, TaskStatus,
};

const TASK_COLUMNS: &str = "id, title, description, status, priority, due_date, user_id, \
    category_id, created_at, updated_at";

/// Microsecond precision is what PostgreSQL keeps; SQLite gets the same so a
/// row reads back identically from either.
pub(crate) fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// Columns a list may be sorted by (`sort=-created_at,title`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortField {
    Id,
    Title,
    Status,
    Priority,
    DueDate,
    CreatedAt,
    UpdatedAt,
}

impl SortField {
    pub const ALL: [SortField; 7] = [
        SortField::Id,
        SortField::Title,
        SortField::Status,
        SortField::Priority,
        SortField::DueDate,
        SortField::CreatedAt,
        SortField::UpdatedAt,
    ];

    /// The query-string name, which is also the column name.
    pub fn name(self) -> &'static str {
        match self {
            SortField::Id => "id",
            SortField::Title => "title",
            SortField::Status => "status",
            SortField::Priority => "priority",
            SortField::DueDate => "due_date",
            SortField::CreatedAt => "created_at",
            SortField::UpdatedAt => "updated_at",
        }
    }

    pub fn parse(s: &str) -> Option<SortField> {
        Self::ALL.into_iter().find(|f| f.name() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortKey {
    pub field: SortField,
    pub descending: bool,
}

/// A validated task list request.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskQuery {
    pub status: Option<TaskStatus>,
    pub category_id: Option<i64>,
    pub user_id: Option<i64>,
    /// Tasks due strictly before this instant.
    pub due_before: Option<DateTime<Utc>>,
    /// Tasks due strictly after this instant.
    pub due_after: Option<DateTime<Utc>>,
    /// Case-insensitive substring of the title or description.
    pub q: Option<String>,
    /// Empty means by id.
    pub sort: Vec<SortKey>,
    /// 1-based.
    pub page: u32,
    pub per_page: u32,
}

impl Default for TaskQuery {
    fn default() -> Self {
        Self {
            status: None,
            category_id: None,
            user_id: None,
            due_before: None,
            due_after: None,
            q: None,
            sort: Vec::new(),
            page: 1,
            per_page: 20,
        }
    }
}

impl TaskQuery {
    /// A canonical text of the query: equal queries give equal text whatever
    /// the order of their URL parameters (the cache key).
    pub fn canonical(&self) -> String {
        let mut s = String::with_capacity(64);
        let _ = write!(
            s,
            "st={};c={};u={};db={};da={};p={};pp={};o=",
            self.status.map(TaskStatus::as_str).unwrap_or(""),
            self.category_id.map(|v| v.to_string()).unwrap_or_default(),
            self.user_id.map(|v| v.to_string()).unwrap_or_default(),
            self.due_before.map(|v| v.to_rfc3339()).unwrap_or_default(),
            self.due_after.map(|v| v.to_rfc3339()).unwrap_or_default(),
            self.page,
            self.per_page,
        );
        for k in &self.sort {
            let _ = write!(
                s,
                "{}{},",
                if k.descending { "-" } else { "" },
                k.field.name()
            );
        }
        // Last, and length-prefixed, so no search text can forge another key.
        if let Some(q) = &self.q {
            let _ = write!(s, ";q{}={q}", q.len());
        }
        s
    }

    fn where_clause(&self) -> (String, Vec<Bind>) {
        let mut conds: Vec<String> = Vec::new();
        let mut binds = Vec::new();
        let mut push = |cond: &str, b: Bind| {
            binds.push(b);
            conds.push(cond.replace('?', &format!("${}", binds.len())));
        };
        if let Some(s) = self.status {
            push("status = ?", Bind::Text(s.as_str().into()));
        }
        if let Some(c) = self.category_id {
            push("category_id = ?", Bind::I64(c));
        }
        if let Some(u) = self.user_id {
            push("user_id = ?", Bind::I64(u));
        }
        if let Some(t) = self.due_before {
            push("due_date < ?", Bind::Time(t));
        }
        if let Some(t) = self.due_after {
            push("due_date > ?", Bind::Time(t));
        }
        if let Some(q) = &self.q {
            let pattern = format!("%{}%", escape_like(&q.to_lowercase()));
            push(
                "(LOWER(title) LIKE ? ESCAPE '\\' OR LOWER(COALESCE(description, '')) LIKE ? ESCAPE '\\')",
                Bind::Text(pattern),
            );
        }
        if conds.is_empty() {
            (String::new(), binds)
        } else {
            (format!(" WHERE {}", conds.join(" AND ")), binds)
        }
    }

    fn order_clause(&self) -> String {
        let mut parts: Vec<String> = Vec::with_capacity(self.sort.len() + 1);
        for k in &self.sort {
            let dir = if k.descending { "DESC" } else { "ASC" };
            let col = k.field.name();
            if k.field == SortField::DueDate {
                // NULLs last in both directions on both databases.
                parts.push(format!("(due_date IS NULL) ASC, due_date {dir}"));
            } else {
                parts.push(format!("{col} {dir}"));
            }
        }
        // A unique tiebreaker keeps pages stable.
        if !self.sort.iter().any(|k| k.field == SortField::Id) {
            parts.push("id ASC".into());
        }
        format!(" ORDER BY {}", parts.join(", "))
    }
}

fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl Store {
    pub async fn create_task(
        &self,
        new: &NewTask,
        idem: Option<&IdempotencyKey>,
        render: impl FnOnce(&Task) -> StoredResponse + Send,
    ) -> Result<Created<Task>, StoreError> {
        let at = now();
        let sql = format!(
            "INSERT INTO tasks (title, description, status, priority, due_date, user_id, \
             category_id, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             RETURNING {TASK_COLUMNS}"
        );
        let binds = vec![
            Bind::Text(new.title.clone()),
            Bind::OptText(new.description.clone()),
            Bind::Text(new.status.as_str().into()),
            Bind::I64(new.priority),
            Bind::OptTime(new.due_date),
            Bind::I64(new.user_id),
            Bind::OptI64(new.category_id),
            Bind::Time(at),
            Bind::Time(at),
        ];
        match self.insert_returning(&sql, binds, idem, render).await {
            Err(StoreError::Conflict(m)) => Err(self
                .missing_refs(Some(new.user_id), new.category_id, m)
                .await),
            other => other,
        }
    }

    /// Turns a foreign-key failure into the names of the fields at fault.
    async fn missing_refs(
        &self,
        user_id: Option<i64>,
        category_id: Option<i64>,
        message: String,
    ) -> StoreError {
        let mut missing = Vec::new();
        if let Some(u) = user_id {
            match self.exists("users", u).await {
                Ok(false) => missing.push("user_id"),
                Ok(true) => {}
                Err(e) => return e,
            }
        }
        if let Some(c) = category_id {
            match self.exists("categories", c).await {
                Ok(false) => missing.push("category_id"),
                Ok(true) => {}
                Err(e) => return e,
            }
        }
        if missing.is_empty() {
            StoreError::Conflict(message)
        } else {
            StoreError::MissingReference(missing)
        }
    }

    pub async fn get_task(&self, id: i64) -> Result<Option<Task>, StoreError> {
        let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1");
        self.fetch_optional(&sql, vec![Bind::I64(id)]).await
    }

    pub async fn list_tasks(&self, query: &TaskQuery) -> Result<Page<Task>, StoreError> {
        let (where_sql, binds) = query.where_clause();
        let n = binds.len();
        let mut sql = format!("SELECT {TASK_COLUMNS} FROM tasks{where_sql}");
        sql.push_str(&query.order_clause());
        let _ = write!(sql, " LIMIT ${} OFFSET ${}", n + 1, n + 2);
        let mut page_binds = binds.clone();
        page_binds.push(Bind::I64(i64::from(query.per_page)));
        page_binds.push(Bind::I64(
            i64::from(query.page.saturating_sub(1)) * i64::from(query.per_page),
        ));
        let items: Vec<Task> = self.fetch_all(&sql, page_binds).await?;
        // The count is only needed when this page does not already tell it.
        let total = if query.page == 1 && (items.len() as u32) < query.per_page {
            items.len() as i64
        } else {
            let count_sql = format!("SELECT COUNT(*) FROM tasks{where_sql}");
            self.fetch_count(&count_sql, binds).await?
        };
        Ok(Page { items, total })
    }

    pub async fn update_task(
        &self,
        id: i64,
        changes: &TaskChanges,
    ) -> Result<Option<Task>, StoreError> {
        let mut sets: Vec<(&'static str, Bind)> = Vec::new();
        if let Some(v) = &changes.title {
            sets.push(("title", Bind::Text(v.clone())));
        }
        if let Some(v) = &changes.description {
            sets.push(("description", Bind::OptText(v.clone())));
        }
        if let Some(v) = changes.status {
            sets.push(("status", Bind::Text(v.as_str().into())));
        }
        if let Some(v) = changes.priority {
            sets.push(("priority", Bind::I64(v)));
        }
        if let Some(v) = changes.due_date {
            sets.push(("due_date", Bind::OptTime(v)));
        }
        if let Some(v) = changes.user_id {
            sets.push(("user_id", Bind::I64(v)));
        }
        if let Some(v) = changes.category_id {
            sets.push(("category_id", Bind::OptI64(v)));
        }
        sets.push(("updated_at", Bind::Time(now())));
        match self.update_returning("tasks", TASK_COLUMNS, id, sets).await {
            Err(StoreError::Conflict(m)) => Err(self
                .missing_refs(changes.user_id, changes.category_id.flatten(), m)
                .await),
            other => other,
        }
    }

    pub async fn delete_task(&self, id: i64) -> Result<(), StoreError> {
        self.delete_by_id("tasks", "task", id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_ignores_nothing_and_cannot_be_forged_by_search_text() {
        let a = TaskQuery {
            q: Some("x;p=2".into()),
            ..TaskQuery::default()
        };
        let b = TaskQuery {
            page: 2,
            q: Some("x".into()),
            ..TaskQuery::default()
        };
        assert_ne!(a.canonical(), b.canonical());
        assert_eq!(a.canonical(), a.clone().canonical());
        let sorted = TaskQuery {
            sort: vec![SortKey {
                field: SortField::CreatedAt,
                descending: true,
            }],
            ..TaskQuery::default()
        };
        assert_ne!(sorted.canonical(), TaskQuery::default().canonical());
    }

    #[test]
    fn where_clause_numbers_placeholders_in_order() {
        let q = TaskQuery {
            status: Some(TaskStatus::Done),
            user_id: Some(3),
            q: Some("50%_off".into()),
            ..TaskQuery::default()
        };
        let (sql, binds) = q.where_clause();
        assert!(sql.contains("status = $1"), "{sql}");
        assert!(sql.contains("user_id = $2"), "{sql}");
        assert!(sql.contains("LIKE $3"), "{sql}");
        assert_eq!(binds.len(), 3);
        match &binds[2] {
            Bind::Text(p) => assert_eq!(p, "%50\\%\\_off%"),
            other => panic!("unexpected bind {other:?}"),
        }
    }

    #[test]
    fn order_clause_always_ends_with_a_unique_key() {
        let q = TaskQuery {
            sort: vec![
                SortKey {
                    field: SortField::CreatedAt,
                    descending: true,
                },
                SortKey {
                    field: SortField::Title,
                    descending: false,
                },
            ],
            ..TaskQuery::default()
        };
        assert_eq!(
            q.order_clause(),
            " ORDER BY created_at DESC, title ASC, id ASC"
        );
        assert_eq!(TaskQuery::default().order_clause(), " ORDER BY id ASC");
    }
}
