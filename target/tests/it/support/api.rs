//! The API's side of the tests: an instance built with `app()` on a real SQLite
//! file or a real PostgreSQL cluster, a JSON client driving it through `oneshot`,
//! the behaviour scenarios both databases must pass, and instances served on port 0.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use target::api::{app, serve, ApiConfig, ApiError, AppState, DbConfig};
use target::auth::{JwtKey, Role};
use target::process::postgres::{Postgres, PostgresOptions};
use target::store::{ensure_admin, Store};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower::ServiceExt as _;

pub const SECRET: &[u8] = b"api-test-secret";
pub const ADMIN_PASSWORD: &str = "admin-password";

/// An API instance serving on port 0 (`target::api::serve`) until shut down.
pub struct RunningApi {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ApiError>>,
}

impl RunningApi {
    pub async fn start(config: ApiConfig) -> RunningApi {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(config, listener, async {
            let _ = rx.await;
        }));
        RunningApi {
            addr,
            stop: Some(tx),
            task,
        }
    }

    /// Signals shutdown and waits (bounded) for `serve` to return cleanly.
    pub async fn shutdown(mut self) {
        self.begin_shutdown();
        self.finished("serve returns after shutdown").await;
    }

    /// Signals shutdown without waiting: new connections are refused from now
    /// on, while requests in flight drain.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    /// Waits (bounded; `expect` says what was awaited) for `serve` to return
    /// cleanly.
    pub async fn finished(self, expect: &str) {
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect(expect)
            .unwrap()
            .expect("serve ends cleanly");
    }
}

/// Migrates `dir/tasks.db` and creates the admin, once, before instances share
/// the file; returns an admin token.
pub async fn admin_token(dir: &std::path::Path) -> String {
    let store = Store::connect(&DbConfig::Sqlite {
        path: dir.join("tasks.db"),
    })
    .await
    .unwrap();
    let admin = ensure_admin(&store, "admin", ADMIN_PASSWORD).await.unwrap();
    store.close().await;
    JwtKey::new(SECRET).issue(&admin.id.to_string(), Role::Admin, Duration::from_secs(60))
}

/// One API instance and the real database (and temp dir) behind it.
pub struct Harness {
    pub state: AppState,
    pub router: Router,
    pub admin_token: String,
    pub admin_id: i64,
    _dir: Option<tempfile::TempDir>,
}

/// A decoded response.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the error envelope and returns its code.
    pub fn error_code(&self) -> &str {
        self.body["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("not an error envelope ({}): {}", self.status, self.text))
    }
}

pub fn sqlite_config(dir: &std::path::Path, name: &str) -> ApiConfig {
    ApiConfig::new(
        name,
        DbConfig::Sqlite {
            path: dir.join("tasks.db"),
        },
        SECRET,
    )
}

pub fn postgres_config(url: &str) -> ApiConfig {
    let mut config = ApiConfig::new("api-test", DbConfig::Postgres { url: url.into() }, SECRET);
    config.store.acquire_timeout = Duration::from_millis(500);
    config
}

pub fn start_postgres() -> Postgres {
    Postgres::start(PostgresOptions::default()).expect("start a private postgres")
}

/// Creates the database `name` in the cluster `pg`; returns its URL.
pub async fn create_database(pg: &Postgres, name: &str) -> String {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(&pg.url()).await.unwrap();
    sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    format!("postgres://postgres@127.0.0.1:{}/{name}", pg.port())
}

impl Harness {
    pub async fn sqlite() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let config = sqlite_config(dir.path(), "api-test");
        Self::with_config(config, Some(dir)).await
    }

    /// An instance on a fresh database `name` in the cluster `pg`.
    pub async fn postgres_db(pg: &Postgres, name: &str) -> Harness {
        let url = create_database(pg, name).await;
        Self::with_config(postgres_config(&url), None).await
    }

    pub async fn with_config(config: ApiConfig, dir: Option<tempfile::TempDir>) -> Harness {
        let state = AppState::connect(&config).await.expect("connect the API");
        let admin = ensure_admin(state.store(), "admin", ADMIN_PASSWORD)
            .await
            .unwrap();
        let admin_token =
            JwtKey::new(SECRET).issue(&admin.id.to_string(), Role::Admin, Duration::from_secs(600));
        Harness {
            router: app(state.clone()),
            state,
            admin_token,
            admin_id: admin.id,
            _dir: dir,
        }
    }

    /// Sends a request with an optional JSON body and bearer token.
    pub async fn call(
        &self,
        method: Method,
        uri: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> Reply {
        let raw = body.map(|b| b.to_string());
        self.call_raw(method, uri, raw, token, &[]).await
    }

    pub async fn call_raw(
        &self,
        method: Method,
        uri: &str,
        body: Option<String>,
        token: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut builder = Request::builder().method(method).uri(uri);
        if body.is_some() {
            builder = builder.header("content-type", "application/json");
        }
        if let Some(t) = token {
            builder = builder.header("authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let request = builder
            .body(body.map(Body::from).unwrap_or_else(Body::empty))
            .unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 16 << 20)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            text,
        }
    }

    pub async fn get(&self, uri: &str) -> Reply {
        self.call(Method::GET, uri, None, None).await
    }

    pub async fn admin_delete(&self, uri: &str) -> Reply {
        self.call(Method::DELETE, uri, None, Some(&self.admin_token))
            .await
    }

    pub async fn admin(&self, method: Method, uri: &str, body: Value) -> Reply {
        self.call(method, uri, Some(body), Some(&self.admin_token))
            .await
    }

    /// Creates a task as admin and returns its id.
    pub async fn task(&self, body: Value) -> i64 {
        let r = self.admin(Method::POST, "/api/v1/tasks", body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.body["data"]["id"].as_i64().unwrap()
    }

    pub async fn category(&self, name: &str) -> i64 {
        let r = self
            .admin(Method::POST, "/api/v1/categories", json!({"name": name}))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.body["data"]["id"].as_i64().unwrap()
    }

    /// Creates a plain user and returns (id, token from a real login).
    pub async fn user(&self, username: &str) -> (i64, String) {
        let r = self
            .admin(
                Method::POST,
                "/api/v1/users",
                json!({"username": username, "password": "user-password"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        let id = r.body["data"]["id"].as_i64().unwrap();
        let login = self
            .call(
                Method::POST,
                "/api/v1/auth/login",
                Some(json!({"username": username, "password": "user-password"})),
                None,
            )
            .await;
        assert_eq!(login.status, StatusCode::OK, "{}", login.text);
        (
            id,
            login.body["data"]["token"].as_str().unwrap().to_string(),
        )
    }
}

/// Titles of a list reply, in order.
pub fn titles(r: &Reply) -> Vec<String> {
    r.body["data"]
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {}", r.text))
        .iter()
        .map(|t| t["title"].as_str().unwrap().to_string())
        .collect()
}

/// Create, read, update (PUT and PATCH), delete; envelope and meta.
pub async fn crud(h: &Harness) {
    let cat = h.category("work").await;
    let created = h
        .admin(
            Method::POST,
            "/api/v1/tasks",
            json!({"title": "write tests", "description": "all of them", "category_id": cat,
                   "due_date": "2030-01-02T03:04:05Z", "priority": 5}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let task = &created.body["data"];
    let id = task["id"].as_i64().unwrap();
    assert_eq!(task["status"], "todo");
    assert_eq!(
        task["user_id"], h.admin_id,
        "user_id defaults to the caller"
    );
    assert_eq!(task["due_date"], "2030-01-02T03:04:05Z");
    assert_eq!(created.body["meta"]["version"], "v1");
    assert!(created.body["meta"]["timestamp"].is_string());

    let got = h.get(&format!("/api/v1/tasks/{id}")).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body["data"], created.body["data"]);
    assert_eq!(got.header("x-served-by"), Some("api-test"));

    let patched = h
        .admin(
            Method::PATCH,
            &format!("/api/v1/tasks/{id}"),
            json!({"status": "done", "description": null}),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
    assert_eq!(patched.body["data"]["status"], "done");
    assert_eq!(patched.body["data"]["description"], Value::Null);
    assert_eq!(
        patched.body["data"]["title"], "write tests",
        "PATCH keeps the rest"
    );

    let put = h
        .admin(
            Method::PUT,
            &format!("/api/v1/tasks/{id}"),
            json!({"title": "rewritten"}),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.text);
    assert_eq!(put.body["data"]["title"], "rewritten");
    assert_eq!(
        put.body["data"]["status"], "todo",
        "PUT resets omitted fields"
    );
    assert_eq!(put.body["data"]["category_id"], Value::Null);
    assert_eq!(put.body["data"]["priority"], 3);

    let by_user = h.get(&format!("/api/v1/users/{}/tasks", h.admin_id)).await;
    assert_eq!(by_user.status, StatusCode::OK);
    assert_eq!(titles(&by_user), ["rewritten"]);
    assert_eq!(
        h.get("/api/v1/users/999999/tasks").await.status,
        StatusCode::NOT_FOUND
    );

    let cats = h.get("/api/v1/categories").await;
    assert_eq!(cats.body["meta"]["total"], 1);
    let renamed = h
        .admin(
            Method::PATCH,
            &format!("/api/v1/categories/{cat}"),
            json!({"name": "office"}),
        )
        .await;
    assert_eq!(renamed.body["data"]["name"], "office");

    let del = h.admin_delete(&format!("/api/v1/tasks/{id}")).await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    let gone = h.get(&format!("/api/v1/tasks/{id}")).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(gone.error_code(), "not_found");
    let again = h.admin_delete(&format!("/api/v1/tasks/{id}")).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
}

/// Filters, search, sort and pagination over a known data set.
pub async fn listing(h: &Harness) {
    let home = h.category("home").await;
    let (alice, _) = h.user("alice").await;
    let specs = [
        (
            "Buy milk",
            "todo",
            Some(home),
            alice,
            Some("2030-01-01T00:00:00Z"),
            "2 litres",
        ),
        (
            "Fix bike",
            "in_progress",
            Some(home),
            alice,
            Some("2030-06-01T00:00:00Z"),
            "flat tyre",
        ),
        ("File taxes", "done", None, h.admin_id, None, "100% on time"),
        (
            "Call mom",
            "todo",
            None,
            h.admin_id,
            Some("2029-01-01T00:00:00Z"),
            "SUNDAY",
        ),
        (
            "buy stamps",
            "todo",
            Some(home),
            h.admin_id,
            None,
            "for_letters",
        ),
    ];
    for (title, status, cat, user, due, desc) in specs {
        h.task(
            json!({"title": title, "status": status, "category_id": cat, "user_id": user,
                      "due_date": due, "description": desc}),
        )
        .await;
    }
    let all = h.get("/api/v1/tasks").await;
    assert_eq!(all.body["meta"]["total"], 5);
    assert_eq!(all.body["meta"]["page"], 1);
    assert_eq!(all.body["meta"]["per_page"], 20);

    let todo = h.get("/api/v1/tasks?status=todo&sort=title").await;
    assert_eq!(titles(&todo), ["Buy milk", "Call mom", "buy stamps"]);
    let cat = h
        .get(&format!("/api/v1/tasks?category_id={home}&user_id={alice}"))
        .await;
    assert_eq!(cat.body["meta"]["total"], 2);
    let due = h
        .get("/api/v1/tasks?due_before=2030-03-01T00:00:00Z&due_after=2029-06-01T00:00:00Z")
        .await;
    assert_eq!(titles(&due), ["Buy milk"]);
    let search = h.get("/api/v1/tasks?q=BUY&sort=-title").await;
    assert_eq!(
        titles(&search),
        ["buy stamps", "Buy milk"],
        "case-insensitive search"
    );
    let in_desc = h.get("/api/v1/tasks?q=sunday").await;
    assert_eq!(titles(&in_desc), ["Call mom"]);
    let literal = h.get("/api/v1/tasks?q=100%25").await;
    assert_eq!(titles(&literal), ["File taxes"], "% is matched literally");
    let underscore = h.get("/api/v1/tasks?q=r_l").await;
    assert_eq!(
        titles(&underscore),
        ["buy stamps"],
        "_ is matched literally"
    );
    let by_due = h.get("/api/v1/tasks?sort=-due_date").await;
    assert_eq!(
        titles(&by_due)[..3],
        ["Fix bike", "Buy milk", "Call mom"],
        "dated tasks first, undated last"
    );

    let p1 = h.get("/api/v1/tasks?sort=id&per_page=2&page=1").await;
    let p3 = h.get("/api/v1/tasks?sort=id&per_page=2&page=3").await;
    assert_eq!(p1.body["data"].as_array().unwrap().len(), 2);
    assert_eq!(p3.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(p3.body["meta"]["total"], 5);
    assert_eq!(p3.body["meta"]["page"], 3);
    let beyond = h.get("/api/v1/tasks?page=9&per_page=2").await;
    assert_eq!(beyond.body["data"], json!([]));
    assert_eq!(beyond.body["meta"]["total"], 5);
    let mine = h
        .get(&format!("/api/v1/users/{alice}/tasks?sort=-title"))
        .await;
    assert_eq!(titles(&mine), ["Fix bike", "Buy milk"]);
}

/// Foreign keys: missing references are 422 by field, deletes that would
/// orphan tasks are 409, and duplicates are 409.
pub async fn integrity(h: &Harness) {
    let cat = h.category("garden").await;
    let (bob, _) = h.user("bob").await;
    let r = h
        .admin(
            Method::POST,
            "/api/v1/tasks",
            json!({"title": "x", "user_id": 999999}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(
        r.body["error"]["details"]["user_id"].is_string(),
        "{}",
        r.text
    );
    let r = h
        .admin(
            Method::POST,
            "/api/v1/tasks",
            json!({"title": "x", "category_id": 999999}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(r.body["error"]["details"]["category_id"].is_string());

    let id = h
        .task(json!({"title": "mow", "category_id": cat, "user_id": bob}))
        .await;
    let r = h
        .admin(
            Method::PATCH,
            &format!("/api/v1/tasks/{id}"),
            json!({"category_id": 999999}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);

    let r = h.admin_delete(&format!("/api/v1/categories/{cat}")).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert_eq!(r.error_code(), "conflict");
    let r = h.admin_delete(&format!("/api/v1/users/{bob}")).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert_eq!(
        h.get(&format!("/api/v1/tasks/{id}")).await.status,
        StatusCode::OK
    );

    let dup = h
        .admin(
            Method::POST,
            "/api/v1/categories",
            json!({"name": "garden"}),
        )
        .await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    let dup = h
        .admin(
            Method::POST,
            "/api/v1/users",
            json!({"username": "bob", "password": "12345678"}),
        )
        .await;
    assert_eq!(dup.status, StatusCode::CONFLICT);

    // Once its tasks are gone, the user and the category can go.
    h.admin_delete(&format!("/api/v1/tasks/{id}")).await;
    let r = h.admin_delete(&format!("/api/v1/users/{bob}")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let r = h.admin_delete(&format!("/api/v1/categories/{cat}")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
}

/// POSTs a raw task body as admin under an Idempotency-Key.
pub async fn post_with_key(h: &Harness, body: &str, key: &str) -> Reply {
    h.call_raw(
        Method::POST,
        "/api/v1/tasks",
        Some(body.into()),
        Some(&h.admin_token),
        &[("idempotency-key", key)],
    )
    .await
}

/// An Idempotency-Key replays the first response and never makes a second row.
pub async fn idempotency(h: &Harness) {
    let body = r#"{"title":"pay rent"}"#;
    let first = post_with_key(h, body, "rent-2030-01").await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    let second = post_with_key(h, body, "rent-2030-01").await;
    assert_eq!(second.status, StatusCode::CREATED);
    assert_eq!(second.text, first.text, "the first response, byte for byte");
    assert_eq!(second.header("idempotent-replayed"), Some("true"));
    let list = h.get("/api/v1/tasks?q=pay%20rent").await;
    assert_eq!(list.body["meta"]["total"], 1, "no second row");

    let other = post_with_key(h, r#"{"title":"something else"}"#, "rent-2030-01").await;
    assert_eq!(other.status, StatusCode::BAD_REQUEST);
    assert_eq!(other.error_code(), "idempotency_key_reused");

    // A failed create stores nothing: after fixing the body the key works.
    let bad = post_with_key(h, r#"{"title":"t","user_id":999999}"#, "k2").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let bad_again = post_with_key(h, r#"{"title":"t","user_id":999999}"#, "k2").await;
    assert_eq!(bad_again.status, StatusCode::UNPROCESSABLE_ENTITY);

    // Concurrent retries (as from a gateway retrying elsewhere) make one row.
    let mut handles = Vec::new();
    for _ in 0..8 {
        let router = h.router.clone();
        let token = h.admin_token.clone();
        handles.push(tokio::spawn(async move {
            let request = Request::post("/api/v1/tasks")
                .header("authorization", format!("Bearer {token}"))
                .header("idempotency-key", "burst")
                .body(Body::from(r#"{"title":"burst"}"#))
                .unwrap();
            let response = router.oneshot(request).await.unwrap();
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .unwrap();
            (status, bytes)
        }));
    }
    let mut bodies = Vec::new();
    for handle in handles {
        let (status, bytes) = handle.await.unwrap();
        assert_eq!(
            status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&bytes)
        );
        bodies.push(bytes);
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "every retry got the first response"
    );
    let list = h.get("/api/v1/tasks?q=burst").await;
    assert_eq!(list.body["meta"]["total"], 1);
}

/// Login, token checks and role rules.
pub async fn auth(h: &Harness) {
    let login = |username: &str, password: &str| {
        h.call(
            Method::POST,
            "/api/v1/auth/login",
            Some(json!({"username": username, "password": password})),
            None,
        )
    };
    for (username, password) in [("admin", "nope"), ("ghost", "nope")] {
        let r = login(username, password).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{username}: {}", r.text);
    }
    let ok = login("admin", ADMIN_PASSWORD).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    let claims = JwtKey::new(SECRET)
        .verify(ok.body["data"]["token"].as_str().unwrap())
        .unwrap();
    assert_eq!(claims.role, Role::Admin);

    let forged = JwtKey::new(b"another secret").issue("1", Role::Admin, Duration::from_secs(60));
    for (token, what) in [
        (None, "no token"),
        (Some(forged.as_str()), "signed with another secret"),
        (Some("not.a.jwt"), "not a JWT"),
    ] {
        let r = h
            .call(
                Method::POST,
                "/api/v1/tasks",
                Some(json!({"title": "x"})),
                token,
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}: {}", r.text);
        assert_eq!(r.error_code(), "unauthorized", "{what}");
    }

    let (carol, carol_token) = h.user("carol").await;
    let (dave, _) = h.user("dave").await;
    let carol_uri = format!("/api/v1/users/{carol}");
    let dave_uri = format!("/api/v1/users/{dave}");
    for (method, uri, body, why) in [
        (
            Method::DELETE,
            &dave_uri,
            None,
            "deleting users needs admin",
        ),
        (
            Method::PATCH,
            &carol_uri,
            Some(json!({"role": "admin"})),
            "no self-promotion",
        ),
        (
            Method::PATCH,
            &dave_uri,
            Some(json!({"username": "dave2"})),
            "only your own account",
        ),
    ] {
        let r = h.call(method, uri, body, Some(&carol_token)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{why}: {}", r.text);
    }
    let r = h
        .call(
            Method::PATCH,
            &carol_uri,
            Some(json!({"username": "carol2"})),
            Some(&carol_token),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(
        r.body["data"].get("password_hash").is_none(),
        "hashes never leave"
    );
    let r = h
        .call(
            Method::POST,
            "/api/v1/tasks",
            Some(json!({"title": "mine"})),
            Some(&carol_token),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.body["data"]["user_id"], carol);
    let r = h.admin_delete(&dave_uri).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
}

/// Weird input is a 4xx in the error envelope, never a 500 or plain text.
pub async fn weird_inputs(h: &Harness) {
    let t = Some(h.admin_token.as_str());
    let post =
        |body: &'static str| h.call_raw(Method::POST, "/api/v1/tasks", Some(body.into()), t, &[]);
    for (body, status, code) in [
        ("{not json", 400, "invalid_json"),
        ("", 400, "invalid_json"),
        ("[1,2]", 400, "invalid_json"),
        ("\"title\"", 400, "invalid_json"),
        (r#"{"title": 42}"#, 422, "validation_failed"),
        (r#"{"title": ""}"#, 422, "validation_failed"),
        (r#"{"title": null}"#, 422, "validation_failed"),
        (
            r#"{"title": "x", "priority": "high"}"#,
            422,
            "validation_failed",
        ),
        (r#"{"title": "x", "priority": 1e400}"#, 400, "invalid_json"),
        (r#"{"title": "x", "user_id": -5}"#, 422, "validation_failed"),
        (
            r#"{"title": "x", "user_id": 9223372036854775808}"#,
            422,
            "validation_failed",
        ),
        (
            r#"{"title": "x", "status": "later"}"#,
            422,
            "validation_failed",
        ),
        (
            r#"{"title": "x", "due_date": "tomorrow"}"#,
            422,
            "validation_failed",
        ),
        (
            r#"{"title": "x", "titel": "typo"}"#,
            422,
            "validation_failed",
        ),
        (r#"{"title": "a\u0000b"}"#, 422, "validation_failed"),
    ] {
        let r = post(body).await;
        assert_eq!(r.status.as_u16(), status, "{body:?}: {}", r.text);
        assert_eq!(r.error_code(), code, "{body:?}");
    }
    let r = post(r#"{"title": 1, "priority": 0, "status": 3}"#).await;
    let details = r.body["error"]["details"].as_object().unwrap();
    assert_eq!(details.len(), 3, "every bad field is reported: {}", r.text);

    let huge = format!(r#"{{"title": "{}"}}"#, "x".repeat(70 * 1024));
    let r = h
        .call_raw(Method::POST, "/api/v1/tasks", Some(huge), t, &[])
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.error_code(), "payload_too_large");
    let long_title = format!(r#"{{"title": "{}"}}"#, "x".repeat(300));
    let r = h
        .call_raw(Method::POST, "/api/v1/tasks", Some(long_title), t, &[])
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);

    for uri in [
        "/api/v1/tasks?per_page=100000",
        "/api/v1/tasks?per_page=0",
        "/api/v1/tasks?page=-1",
        "/api/v1/tasks?page=abc",
        "/api/v1/tasks?page=99999999999999999999",
        "/api/v1/tasks?sort=password",
        "/api/v1/tasks?sort=title;DROP%20TABLE%20tasks",
        "/api/v1/tasks?sort=-",
        "/api/v1/tasks?status=whatever",
        "/api/v1/tasks?due_before=yesterday",
        "/api/v1/tasks?user_id=0",
        "/api/v1/tasks?colour=red",
        "/api/v1/tasks?page=1&page=2",
        "/api/v1/users?per_page=101",
    ] {
        let r = h.get(uri).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{uri}: {}", r.text);
        assert_eq!(r.error_code(), "invalid_query", "{uri}");
        assert!(r.body["error"]["details"].is_object(), "{uri}");
    }
    let r = h
        .get("/api/v1/tasks?per_page=100&page=100000&q=%F0%9F%92%A9%27--")
        .await;
    assert_eq!(r.status, StatusCode::OK, "odd but valid: {}", r.text);

    for uri in [
        "/api/v1/tasks/abc",
        "/api/v1/tasks/0",
        "/api/v1/tasks/-1",
        "/api/v1/tasks/1.5",
        "/api/v1/tasks/99999999999999999999999",
        "/api/v1/tasks/%FF",
        "/api/v1/users/x/tasks",
    ] {
        let r = h.get(uri).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{uri}: {}", r.text);
        assert_eq!(r.error_code(), "invalid_path", "{uri}");
    }
    let r = h.get("/api/v1/tasks/987654321").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = h.get("/api/v1/nothing-here").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_code(), "not_found");
    let r = h.call(Method::DELETE, "/api/v1/tasks", None, t).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.error_code(), "method_not_allowed");
    let r = h
        .call_raw(
            Method::POST,
            "/api/v1/tasks",
            Some(r#"{"title":"x"}"#.into()),
            t,
            &[("idempotency-key", "")],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error_code(), "invalid_header");
    let r = h
        .call(
            Method::PATCH,
            "/api/v1/tasks/1",
            Some(json!({"title": "x"})),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "auth before lookups");
}

/// Probes, metrics and the OpenAPI document.
pub async fn operations(h: &Harness) {
    let r = h.get("/healthz").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("x-served-by"), Some("api-test"));
    let r = h.get("/readyz").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    h.get("/api/v1/tasks").await;
    h.get("/api/v1/tasks/424242").await;
    let r = h.get("/metrics").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text.contains(
        r#"api_requests_total{instance="api-test",route="/api/v1/tasks",method="GET",status="200"}"#
    ), "{}", r.text);
    assert!(r
        .text
        .contains(r#"route="/api/v1/tasks/{id}",method="GET",status="404"} 1"#));
    assert!(r.text.contains("api_request_duration_seconds_bucket"));
    assert!(r.text.contains("api_cache_hits_total"));
    assert!(r.text.contains("api_db_pool_connections"));
    let r = h.get("/openapi.json").await;
    assert_eq!(r.status, StatusCode::OK);
    let paths = r.body["paths"].as_object().unwrap();
    for path in [
        "/api/v1/tasks",
        "/api/v1/tasks/{id}",
        "/api/v1/users/{id}/tasks",
        "/api/v1/auth/login",
    ] {
        assert!(paths.contains_key(path), "{path} documented");
    }
    assert!(r.body["components"]["schemas"]["Task"].is_object());
}
