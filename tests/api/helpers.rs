//! The test app: the real router on 127.0.0.1:0 over a fresh database per test
//! (`crate::db::test_db` creates and migrates it), driven over HTTP with reqwest.

use reqwest::{Client, Method, RequestBuilder, Response};
use serde_json::{json, Value};
use sqlx::PgPool;

use scimbridge::auth::{generate_token, hash_token, Role};
use scimbridge::config::Config;
use scimbridge::db::Store;
use scimbridge::startup::{Application, Stopper};

pub struct TestApp {
    /// `http://127.0.0.1:PORT`
    pub root: String,
    pub client: Client,
    pub pool: PgPool,
    pub store: Store,
    /// A scim token of app `peopleai`.
    pub scim_token: String,
    /// An agent token of app `peopleai`.
    pub agent_token: String,
    /// An admin token of app `peopleai`.
    pub admin_token: String,
    /// Stops the server and its background work when the test ends (so no database
    /// connection outlives the test's database).
    stop: Stopper,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop.stop();
    }
}

/// One process-wide subscriber before any test's own: the server's logs with TEST_LOG,
/// else a silent one interested in INFO. Span tests capture with a thread-scoped
/// subscriber; without a global one beside it, tracing computes a callsite's interest
/// from whichever thread registers it first (its default: none), and a span first met
/// on another test's thread stayed disabled for the capturing test too.
fn global_subscriber() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var("TEST_LOG").is_ok() {
            scimbridge::telemetry::init(false);
        } else {
            use tracing_subscriber::layer::SubscriberExt as _;
            let quiet =
                tracing_subscriber::registry().with(tracing_subscriber::filter::LevelFilter::INFO);
            let _ = tracing::subscriber::set_global_default(quiet);
        }
    });
}

impl TestApp {
    pub async fn spawn(pool: PgPool) -> TestApp {
        Self::spawn_with(pool, Config::for_tests()).await
    }

    pub async fn spawn_with(pool: PgPool, config: Config) -> TestApp {
        Self::spawn_with_store(Store::new(pool), config).await
    }

    /// The app over a store of the test's choosing (e.g. with extra profiles).
    pub async fn spawn_with_store(store: Store, config: Config) -> TestApp {
        global_subscriber();
        let pool = store.pool().clone();
        let app = Application::build(config, store.clone())
            .await
            .expect("bind 127.0.0.1:0");
        let root = format!("http://{}", app.addr().expect("bound address"));
        let stop = app.stopper();
        tokio::spawn(app.run_until_stopped());
        let mut t = TestApp {
            stop,
            root,
            client: Client::new(),
            pool,
            store,
            scim_token: String::new(),
            agent_token: String::new(),
            admin_token: String::new(),
        };
        t.scim_token = t.token("peopleai", Role::Scim, "okta").await;
        t.agent_token = t.token("peopleai", Role::Agent, "robot").await;
        t.admin_token = t.token("peopleai", Role::Admin, "alice").await;
        t
    }

    /// Creates a token directly in the store (what `scimbridge token create` does).
    pub async fn token(&self, app: &str, role: Role, name: &str) -> String {
        let secret = generate_token();
        self.store
            .insert_token(app, role, name, &hash_token(&secret))
            .await
            .expect("insert token");
        secret
    }

    /// A second app, to check isolation.
    pub async fn add_app(&self, app_id: &str) {
        sqlx::query("insert into app (app_id, display_name, profile) values ($1, $1, 'peopleai')")
            .bind(app_id)
            .execute(&self.pool)
            .await
            .expect("insert app");
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.root, path)
    }

    /// A SCIM request (path relative to /scim/v2) with the scim token.
    pub fn scim(&self, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, self.url(&format!("/scim/v2{path}")))
            .bearer_auth(&self.scim_token)
    }

    /// GET of a SCIM path with the scim token: the answer's JSON, whatever its status.
    pub async fn scim_get(&self, path: &str) -> Value {
        self.scim(Method::GET, path)
            .send()
            .await
            .expect("GET")
            .json()
            .await
            .expect("json")
    }

    /// A task API request (path relative to /api/v1) with the given token.
    pub fn api(&self, method: Method, path: &str, token: &str) -> RequestBuilder {
        self.client
            .request(method, self.url(&format!("/api/v1{path}")))
            .bearer_auth(token)
    }

    pub async fn create_user(&self, body: Value) -> Value {
        let res = self
            .scim(Method::POST, "/Users")
            .json(&body)
            .send()
            .await
            .expect("POST /Users");
        assert_eq!(
            res.status(),
            201,
            "create user failed: {}",
            res.text().await.unwrap_or_default()
        );
        res.json().await.expect("json")
    }

    pub async fn create_group(&self, body: Value) -> Value {
        let res = self
            .scim(Method::POST, "/Groups")
            .json(&body)
            .send()
            .await
            .expect("POST /Groups");
        assert_eq!(
            res.status(),
            201,
            "create group failed: {}",
            res.text().await.unwrap_or_default()
        );
        res.json().await.expect("json")
    }

    pub async fn patch(&self, path: &str, ops: Value) -> Response {
        self.scim(Method::PATCH, path)
            .json(&json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops}))
            .send()
            .await
            .expect("PATCH")
    }

    /// Tasks of the app as the agent sees them (`query` like `?state=open`).
    pub async fn tasks(&self, query: &str) -> Vec<Value> {
        let res = self
            .api(Method::GET, &format!("/tasks{query}"), &self.agent_token)
            .send()
            .await
            .expect("GET /tasks");
        let status = res.status();
        let text = res.text().await.unwrap_or_default();
        assert_eq!(status, 200, "GET /tasks{query}: {text}");
        let body: Value = serde_json::from_str(&text).expect("json");
        body["tasks"].as_array().cloned().unwrap_or_default()
    }

    /// Claims the next task with the agent token; None on 204.
    pub async fn claim(&self, token: &str) -> Option<Value> {
        let res = self
            .api(Method::POST, "/tasks/claim", token)
            .send()
            .await
            .expect("claim");
        match res.status().as_u16() {
            204 => None,
            200 => Some(res.json().await.expect("json")),
            s => panic!(
                "claim answered {s}: {}",
                res.text().await.unwrap_or_default()
            ),
        }
    }

    pub async fn complete(&self, task: &Value, body: Value) -> Response {
        let mut body = body;
        body["lease_id"] = task["lease_id"].clone();
        self.api(
            Method::POST,
            &format!("/tasks/{}/complete", task["id"]),
            &self.agent_token,
        )
        .json(&body)
        .send()
        .await
        .expect("complete")
    }
}

/// A user body as Okta sends it on create.
pub fn okta_user(user_name: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": user_name,
        "name": {"givenName": "Ann", "familyName": "Lee"},
        "emails": [{"primary": true, "value": user_name, "type": "work"}],
        "displayName": "Ann Lee",
        "locale": "en-US",
        "externalId": format!("00u{}", user_name.len()),
        "groups": [],
        "password": "Sup3rS3cret!",
        "active": true
    })
}

/// Asserts an RFC 7644 §3.12 error response and returns its body.
pub async fn assert_scim_error(res: Response, status: u16, scim_type: Option<&str>) -> Value {
    assert_eq!(res.status().as_u16(), status, "unexpected status");
    assert_eq!(
        res.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/scim+json"),
        "SCIM errors are application/scim+json"
    );
    let body: Value = res.json().await.expect("error body is JSON");
    assert_eq!(
        body["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:Error"])
    );
    assert_eq!(
        body["status"],
        json!(status.to_string()),
        "status is a string (RFC 7644 §3.12)"
    );
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "detail is present"
    );
    match scim_type {
        Some(t) => assert_eq!(body["scimType"], json!(t), "{body}"),
        None => assert!(body.get("scimType").is_none(), "{body}"),
    }
    body
}

/// Number of rows of a table (for "changes nothing" checks).
pub async fn count(pool: &PgPool, table: &str) -> i64 {
    sqlx::query_scalar(&format!("select count(*) from {table}"))
        .fetch_one(pool)
        .await
        .expect("count")
}
