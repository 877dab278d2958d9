//! Operations: rate limits, body limits and timeouts on every surface, what the logs
//! say (and never say), JSON logs, and start-up validation of settings. Log tests run
//! the real binary and read its stderr.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::helpers::{assert_scim_error, okta_user, TestApp};
use scimbridge::config::Config;

fn limited(per_second: f64, burst: u32) -> Config {
    let mut c = Config::for_tests();
    c.rate_limit_per_second = per_second;
    c.rate_limit_burst = burst;
    c
}

#[tokio::test]
async fn a_scim_token_over_its_rate_gets_a_scim_429_with_retry_after() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn_with(pool, limited(0.5, 3)).await;
    for _ in 0..3 {
        let res = app.scim(Method::GET, "/Users").send().await.unwrap();
        assert_eq!(res.status(), 200);
    }
    let res = app.scim(Method::GET, "/Users").send().await.unwrap();
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    assert_scim_error(res, 429, None).await;
    // Writes are limited too, and nothing is written.
    let res = app
        .scim(Method::POST, "/Users")
        .json(&okta_user("ann@corp.com"))
        .send()
        .await
        .unwrap();
    assert_scim_error(res, 429, None).await;
    assert_eq!(crate::helpers::count(&app.pool, "scim_user").await, 0);
    // Another token of the same app has its own bucket.
    let res = app
        .api(Method::GET, "/tasks", &app.agent_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn a_task_api_token_over_its_rate_gets_a_429_code_and_message() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn_with(pool, limited(0.5, 2)).await;
    for _ in 0..2 {
        let res = app
            .api(Method::GET, "/tasks", &app.agent_token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    let res = app
        .api(Method::GET, "/tasks", &app.agent_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    assert!(res.headers().contains_key("retry-after"));
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "rate_limited", "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    // The bucket refills: after Retry-After the token works again.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let res = app
        .api(Method::GET, "/tasks", &app.agent_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn the_default_rate_limit_lets_a_normal_sync_through() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let defaults = {
        use clap::Parser;
        #[derive(Parser)]
        struct Serve {
            #[command(flatten)]
            config: Config,
        }
        Serve::parse_from(["serve"]).config
    };
    let app = TestApp::spawn_with(
        pool,
        limited(defaults.rate_limit_per_second, defaults.rate_limit_burst),
    )
    .await;
    // An import walk of 400 quick requests (well above what Okta sends in a burst).
    for i in 0..400 {
        let res = app
            .scim(Method::GET, &format!("/Users?startIndex={}&count=1", i + 1))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "request {i}");
    }
}

#[tokio::test]
async fn every_route_that_reads_a_body_refuses_one_over_the_limit() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let mut config = Config::for_tests();
    config.body_limit = 4096;
    let app = TestApp::spawn_with(pool, config).await;
    let big = json!({"filler": "x".repeat(8192)});
    // Task completion carries attachments and has its own, larger limit.
    let huge = json!({"filler": "x".repeat(16 * 1024 * 1024)});
    let mut checked = Vec::new();
    for (method, path) in scimbridge::http::route_table() {
        if !matches!(method.as_str(), "POST" | "PUT" | "PATCH") {
            continue;
        }
        let url = path
            .replace("{id}", "00000000-0000-0000-0000-000000000001")
            .replace("{n}", "1");
        let token = if path.starts_with("/scim/") {
            &app.scim_token
        } else {
            &app.admin_token
        };
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let res = app
            .client
            .request(method.clone(), app.url(&url))
            .bearer_auth(token)
            .json(if OWN_LIMIT.contains(&path.as_str()) {
                &huge
            } else {
                &big
            })
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        assert!(status < 500, "{method} {url}: {status}");
        if status != 413 {
            // Only a route that never reads its body may ignore it: it answers an empty
            // body the same way.
            let text = res.text().await.unwrap_or_default();
            let small = app
                .client
                .request(method.clone(), app.url(&url))
                .bearer_auth(token)
                .json(&json!({}))
                .send()
                .await
                .unwrap();
            assert_eq!(
                small.status().as_u16(),
                status,
                "{method} {path} answered {status} to an oversized body: {text}"
            );
            continue;
        }
        if path.starts_with("/scim/") {
            assert_scim_error(res, 413, None).await;
        } else if path.starts_with("/api/") {
            let body: Value = res.json().await.unwrap();
            assert!(body["code"].is_string(), "{method} {path}: {body}");
        }
        checked.push(path);
    }
    assert!(checked.iter().any(|p| p.starts_with("/scim/")));
    assert!(checked.iter().any(|p| p.starts_with("/api/")));
    // The web UI's sign-in form (the UI's other forms need a session first).
    let res = app
        .client
        .post(app.url("/ui/login"))
        .form(&[("token", "x".repeat(8192))])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
}

/// Routes with their own body limit (a few attachments), larger than `--body-limit`.
const OWN_LIMIT: &[&str] = &["/api/v1/tasks/{id}/complete", "/ui/tasks/{id}/complete"];

#[tokio::test]
async fn every_surface_answers_a_stuck_request_with_503_in_its_own_format() {
    let db = crate::db::test_db().await;
    crate::needs_server!(db, "holds row locks in a second connection and runs `scimbridge serve` as a second process on the database");
    let pool = db.pool();
    let mut config = Config::for_tests();
    config.request_timeout_secs = 1;
    let app = TestApp::spawn_with(pool, config).await;
    let user = app.create_user(okta_user("ann@corp.com")).await;
    let id = user["id"].as_str().unwrap().to_owned();
    // Lock the users table from outside: every read of it waits past the deadline.
    let mut blocker = app.pool.begin().await.unwrap();
    sqlx::query("lock table scim_user in access exclusive mode")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let res = app.scim(Method::GET, "/Users").send().await.unwrap();
    assert_eq!(res.headers()["retry-after"], "5");
    assert_scim_error(res, 503, None).await;
    let res = app
        .scim(Method::GET, &format!("/Users/{id}"))
        .send()
        .await
        .unwrap();
    assert_scim_error(res, 503, None).await;
    let res = app
        .api(Method::GET, &format!("/users/{id}"), &app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "timeout", "{body}");
    blocker.rollback().await.unwrap();
    let res = app
        .scim(Method::GET, &format!("/Users/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "the server recovers");
}

/// The real binary serving the test's database, its stderr collected.
struct Binary {
    child: tokio::process::Child,
    stderr: Arc<Mutex<String>>,
    root: String,
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

pub(crate) fn database_url(pool: &PgPool) -> String {
    let base = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let db = pool
        .connect_options()
        .get_database()
        .expect("test database name")
        .to_owned();
    let (server, _) = base.rsplit_once('/').expect("database URL has a path");
    format!("{server}/{db}")
}

impl Binary {
    async fn start(pool: &PgPool, args: &[&str]) -> Binary {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_scimbridge"))
            .args(args)
            .args(["serve", "--bind", "127.0.0.1:0"])
            .env("DATABASE_URL", database_url(pool))
            .env("RUST_LOG", "debug,scimbridge=trace,tower_http=trace")
            .env("NO_COLOR", "1")
            .env_remove("SCIMBRIDGE_LOG_JSON")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("run scimbridge serve");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let sink = stderr.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let mut root = None;
        for _ in 0..300 {
            let log = stderr.lock().unwrap().clone();
            if let Some(at) = log.find("listening") {
                let rest = &log[at..];
                if let Some(p) = rest.find("127.0.0.1:") {
                    let port: String = rest[p + 10..]
                        .chars()
                        .take_while(char::is_ascii_digit)
                        .collect();
                    root = Some(format!("http://127.0.0.1:{port}"));
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let root = root.unwrap_or_else(|| {
            panic!(
                "the server did not start:\n{}",
                stderr.lock().unwrap().clone()
            )
        });
        Binary {
            child,
            stderr,
            root,
        }
    }

    /// Waits a moment for the log lines of finished requests, then returns the log.
    async fn log(&self) -> String {
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.stderr.lock().unwrap().clone()
    }
}

/// Sends requests carrying a token, a user with an email and a password, and a few
/// failing requests (whose errors are logged), to the binary.
async fn traffic(app: &TestApp, bin: &Binary, email: &str) {
    let c = reqwest::Client::new();
    let mut user = okta_user(email);
    user["password"] = json!("Pa55word-NOT-LOGGED");
    let res = c
        .post(format!("{}/scim/v2/Users", bin.root))
        .bearer_auth(&app.scim_token)
        .json(&user)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    // Duplicate (409), a filter naming the email, a bad token, a malformed body.
    c.post(format!("{}/scim/v2/Users", bin.root))
        .bearer_auth(&app.scim_token)
        .json(&user)
        .send()
        .await
        .unwrap();
    c.get(format!("{}/scim/v2/Users", bin.root))
        .query(&[("filter", format!("userName eq \"{email}\""))])
        .bearer_auth(&app.scim_token)
        .send()
        .await
        .unwrap();
    c.get(format!("{}/scim/v2/Users", bin.root))
        .bearer_auth("not-a-real-token-SECRETVALUE")
        .send()
        .await
        .unwrap();
    c.post(format!("{}/scim/v2/Users", bin.root))
        .bearer_auth(&app.scim_token)
        .header("content-type", "application/scim+json")
        .body(format!("{{\"userName\": \"{email}\", "))
        .send()
        .await
        .unwrap();
    c.get(format!("{}/api/v1/users", bin.root))
        .query(&[("q", email)])
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn the_logs_never_show_a_token_an_authorization_header_or_a_users_email() {
    let db = crate::db::test_db().await;
    crate::needs_server!(
        db,
        "runs `scimbridge serve` as a second process on the test database"
    );
    let pool = db.pool();
    let app = TestApp::spawn(pool.clone()).await;
    let bin = Binary::start(&pool, &[]).await;
    let email = "leaky.person@pii.example";
    traffic(&app, &bin, email).await;
    let log = bin.log().await;
    assert!(
        log.contains("/scim/v2/Users") && log.contains("request"),
        "the request span is logged (else this test proves nothing):\n{log}"
    );
    for secret in [
        app.scim_token.as_str(),
        app.admin_token.as_str(),
        "SECRETVALUE",
        email,
        "leaky.person",
        "Pa55word-NOT-LOGGED",
    ] {
        assert!(!log.contains(secret), "the log shows {secret:?}:\n{log}");
    }
    for header in ["authorization", "Authorization", "Bearer "] {
        assert!(!log.contains(header), "the log shows {header:?}:\n{log}");
    }
}

#[tokio::test]
async fn log_json_writes_one_json_object_per_line() {
    let db = crate::db::test_db().await;
    crate::needs_server!(
        db,
        "runs `scimbridge serve` as a second process on the test database"
    );
    let pool = db.pool();
    let app = TestApp::spawn(pool.clone()).await;
    let bin = Binary::start(&pool, &["--log-json"]).await;
    traffic(&app, &bin, "json.person@pii.example").await;
    let log = bin.log().await;
    let mut lines = 0;
    let mut request_spans = 0;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
        if v["span"]["name"] == "request" {
            request_spans += 1;
        }
        lines += 1;
    }
    assert!(lines > 3, "{log}");
    assert!(request_spans > 0, "request spans are in the JSON: {log}");
    assert!(!log.contains("json.person"), "{log}");
}

#[tokio::test]
async fn serve_refuses_bad_settings_and_names_the_flag() {
    for (args, flag) in [
        (&["--rate-limit-burst", "0"][..], "--rate-limit-burst"),
        (
            &["--rate-limit-per-second=-1"][..],
            "--rate-limit-per-second",
        ),
        (&["--public-url", "ftp://scim.example"][..], "--public-url"),
        (&["--lease-secs", "5"][..], "--lease-secs"),
        (&["--body-limit", "10"][..], "--body-limit"),
        (
            &["--request-timeout-secs", "0"][..],
            "--request-timeout-secs",
        ),
        (&["--bind", "not-an-address"][..], "--bind"),
        (&["--jwt-secret", "too-short"][..], "--jwt-secret"),
    ] {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_scimbridge"))
            .arg("serve")
            .args(args)
            // Validation comes before the database: give it one that does not exist.
            .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(
            stderr.contains(flag),
            "{args:?}: stderr does not name {flag}: {stderr}"
        );
    }
}

#[tokio::test]
async fn a_scrape_shows_requests_tasks_outbox_and_pool() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    use scimbridge::auth::{generate_token, hash_token, Role};
    use scimbridge::db::Store;
    use scimbridge::startup::Application;

    let mut config = Config::for_tests();
    config.metrics_bind = Some(([127, 0, 0, 1], 0).into());
    let store = Store::new(pool);
    let app = Application::build(config, store.clone()).await.unwrap();
    let root = format!("http://{}", app.addr().unwrap());
    let metrics = format!("http://{}/metrics", app.metrics_addr().unwrap());
    let stop = app.stopper();
    tokio::spawn(app.run_until_stopped());
    let token = generate_token();
    store
        .insert_token("peopleai", Role::Scim, "okta", &hash_token(&token))
        .await
        .unwrap();
    let c = reqwest::Client::new();
    let res = c
        .post(format!("{root}/scim/v2/Users"))
        .bearer_auth(&token)
        .json(&okta_user("ann@corp.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let id = res.json::<Value>().await.unwrap()["id"].clone();
    let id = id.as_str().unwrap();
    for _ in 0..2 {
        c.get(format!("{root}/scim/v2/Users/{id}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
    }
    c.get(format!("{root}/no/such/path")).send().await.unwrap();
    // Not on the public port.
    let res = c.get(format!("{root}/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 404);

    let res = c.get(&metrics).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = res.text().await.unwrap();
    for line in [
        r#"scimbridge_http_requests_total{method="POST",route="/scim/v2/Users",status="201"} 1"#,
        r#"scimbridge_http_requests_total{method="GET",route="/scim/v2/Users/{id}",status="200"} 2"#,
        // /no/such/path and /metrics on the public port.
        r#"scimbridge_http_requests_total{method="GET",route="unmatched",status="404"} 2"#,
        r#"scimbridge_http_request_duration_seconds_count{method="GET",route="/scim/v2/Users/{id}",status="200"} 2"#,
        r#"scimbridge_http_request_duration_seconds_bucket{method="GET",route="/scim/v2/Users/{id}",status="200",le="+Inf"} 2"#,
        r#"scimbridge_tasks{app="peopleai",state="open",kind="create_account"} 1"#,
        "scimbridge_outbox_pending_deliveries 0",
        "scimbridge_scrape_database_ok 1",
        "scimbridge_db_pool_connections{state=\"idle\"} ",
        "scimbridge_db_pool_max_connections ",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    for family in [
        "# TYPE scimbridge_http_requests_total counter",
        "# TYPE scimbridge_http_request_duration_seconds histogram",
        "# TYPE scimbridge_tasks gauge",
        "# TYPE scimbridge_task_oldest_open_age_seconds gauge",
        "# TYPE scimbridge_outbox_pending_deliveries gauge",
        "# TYPE scimbridge_db_pool_connections gauge",
    ] {
        assert!(text.contains(family), "missing {family:?} in:\n{text}");
    }
    assert!(
        text.contains(r#"scimbridge_task_oldest_open_age_seconds{app="peopleai"} "#),
        "{text}"
    );
    assert!(!text.contains(id), "ids never become labels");
    stop.stop();
}

#[test]
fn compose_yaml_parses_and_sets_only_real_settings() {
    let root = env!("CARGO_MANIFEST_DIR");
    let text = std::fs::read_to_string(format!("{root}/compose.yaml")).unwrap();
    let compose: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let env = &compose["services"]["scimbridge"]["environment"];
    let env = env.as_mapping().expect("scimbridge has an environment map");
    let sources = ["src/config.rs", "src/cli.rs", "src/profiles.rs"]
        .map(|f| std::fs::read_to_string(format!("{root}/{f}")).unwrap_or_default())
        .concat();
    for key in env.keys() {
        let key = key.as_str().unwrap();
        assert!(
            sources.contains(&format!("\"{key}\"")),
            "compose.yaml sets {key}, which no flag reads"
        );
    }
    assert!(compose["services"]["postgres"]["image"]
        .as_str()
        .unwrap()
        .starts_with("postgres:15"));
}

/// Found by schemathesis (.ci/schemathesis): a multi-byte character in `attributes`
/// panicked the handler (a byte slice inside a character) and dropped the connection.
#[tokio::test]
async fn attributes_with_multibyte_characters_do_not_crash_a_request() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let user = app.create_user(okta_user("ann@corp.com")).await;
    let id = user["id"].as_str().unwrap();
    let long = "é".repeat(60);
    let long_odd = format!("x{long}");
    for attributes in [
        "0\u{10000}",
        "00\u{80}\u{80}\u{80}",
        "BxV\u{16013}",
        "mé",
        &long,
        &long_odd,
    ] {
        for path in [
            format!("/Users/{id}"),
            "/Users".to_owned(),
            "/Groups".to_owned(),
        ] {
            let res = app
                .scim(Method::GET, &path)
                .query(&[("attributes", attributes)])
                .send()
                .await
                .unwrap_or_else(|e| panic!("{path}?attributes={attributes:?}: {e}"));
            assert!(
                res.status().as_u16() < 500,
                "{path}?attributes={attributes:?}: {}",
                res.status()
            );
        }
    }
}
