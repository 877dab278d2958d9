//! Tokens managed by an admin of the app, over the task API (`/api/v1/tokens`) and in
//! the web UI (`/ui/tokens`): create (secret shown once), list (never secrets), revoke
//! (the tasks it holds return to the queue); admins only, own app only, audited.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{okta_user, TestApp};
use crate::web::{hidden, location, Browser};
use scimbridge::auth::Role;

async fn live_tokens(app: &TestApp) -> i64 {
    sqlx::query_scalar("select count(*) from token where revoked_at is null")
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

async fn token_id(app: &TestApp, name: &str) -> String {
    sqlx::query_scalar::<_, uuid::Uuid>("select token_id from token where name = $1")
        .bind(name)
        .fetch_one(&app.pool)
        .await
        .unwrap()
        .to_string()
}

async fn json_of(res: reqwest::Response, want: u16) -> Value {
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    assert_eq!(status, want, "{text}");
    serde_json::from_str(&text).unwrap()
}

#[tokio::test]
async fn an_admin_creates_lists_and_revokes_tokens_of_their_app_over_the_api() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    // A long token cache: revocation must still stop the token at once on this server.
    let mut config = scimbridge::config::Config::for_tests();
    config.token_cache_secs = 300;
    let app = TestApp::spawn_with(pool, config).await;
    let res = app
        .api(Method::POST, "/tokens", &app.admin_token)
        .json(&json!({"role": "scim", "name": " entra "}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["cache-control"], "no-store");
    let made = json_of(res, 201).await;
    let secret = made["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("sbt_"), "{made}");
    assert_eq!(
        (
            made["name"].as_str(),
            made["role"].as_str(),
            made["app_id"].as_str()
        ),
        (Some("entra"), Some("scim"), Some("peopleai"))
    );
    // The secret works as what it was made for.
    let scim = |token: &str| {
        app.client
            .get(app.url("/scim/v2/Users"))
            .bearer_auth(token.to_owned())
            .send()
    };
    assert_eq!(scim(&secret).await.unwrap().status(), 200);
    // The list shows every token of the app, never a secret, and marks the caller's.
    let res = app
        .api(Method::GET, "/tokens", &app.admin_token)
        .send()
        .await
        .unwrap();
    let text = res.text().await.unwrap();
    assert!(
        !text.contains(&secret) && !text.contains("secret"),
        "{text}"
    );
    let list: Value = serde_json::from_str(&text).unwrap();
    let names: Vec<(&str, bool)> = list["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["name"].as_str().unwrap(), t["current"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        names,
        [
            ("okta", false),
            ("robot", false),
            ("alice", true),
            ("entra", false)
        ]
    );
    // Revoked: refused at once here, although the cache held it for 300 s.
    let id = made["token_id"].as_str().unwrap();
    let done = json_of(
        app.api(
            Method::POST,
            &format!("/tokens/{id}/revoke"),
            &app.admin_token,
        )
        .send()
        .await
        .unwrap(),
        200,
    )
    .await;
    assert!(done["token"]["revoked_at"].is_string(), "{done}");
    assert_eq!(scim(&secret).await.unwrap().status(), 401);
    // Both are in the audit trail, by the admin, and the chain still verifies.
    let audit: Vec<(String, String, String)> = sqlx::query_as(
        "select action, actor, subject_id from audit where subject_type = 'token' order by audit_id",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        audit,
        [
            ("token.create".into(), "alice".into(), id.to_owned()),
            ("token.revoke".into(), "alice".into(), id.to_owned()),
        ]
    );
    let verified = json_of(
        app.api(Method::GET, "/audit/verify", &app.admin_token)
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(verified["ok"], true, "{verified}");
}

#[tokio::test]
async fn only_admins_manage_tokens_and_bad_requests_change_nothing() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let before = live_tokens(&app).await;
    let robot = token_id(&app, "robot").await;
    let alice = token_id(&app, "alice").await;
    let okta = token_id(&app, "okta").await;
    for (method, path, body) in [
        (Method::GET, "/tokens".to_owned(), json!(null)),
        (
            Method::POST,
            "/tokens".to_owned(),
            json!({"role": "admin", "name": "mallory"}),
        ),
        (Method::POST, format!("/tokens/{alice}/revoke"), json!(null)),
    ] {
        let res = app
            .api(method.clone(), &path, &app.agent_token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let err = json_of(res, 403).await;
        assert_eq!(err["code"], "forbidden_role", "agent {method} {path}");
        assert_eq!(err["message"], "this needs an admin token");
    }
    let res = app
        .api(Method::GET, "/tokens", &app.scim_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    for (body, status, code) in [
        (json!({"role": "owner", "name": "x"}), 400, "invalid_role"),
        (json!({"role": "system", "name": "x"}), 400, "invalid_role"),
        (json!({"role": "agent", "name": "  "}), 400, "invalid_name"),
        (
            json!({"role": "agent", "name": "a\u{7}b"}),
            400,
            "invalid_name",
        ),
        (
            json!({"role": "agent", "name": "x".repeat(201)}),
            400,
            "invalid_name",
        ),
        (json!({"role": "agent"}), 400, "invalid_json"),
        (
            json!({"role": "agent", "name": "x", "app": "other"}),
            400,
            "invalid_json",
        ),
        (
            json!({"role": "agent", "name": "ROBOT"}),
            409,
            "token_name_taken",
        ),
    ] {
        let res = app
            .api(Method::POST, "/tokens", &app.admin_token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let err = json_of(res, status).await;
        assert_eq!(err["code"], code, "{body}");
    }
    for (path, status, code) in [
        (format!("/tokens/{alice}/revoke"), 409, "own_token"),
        (
            format!("/tokens/{}/revoke", uuid::Uuid::new_v4()),
            404,
            "token_not_found",
        ),
        (
            "/tokens/not-a-uuid/revoke".to_owned(),
            404,
            "token_not_found",
        ),
    ] {
        let res = app
            .api(Method::POST, &path, &app.admin_token)
            .send()
            .await
            .unwrap();
        let err = json_of(res, status).await;
        assert_eq!(err["code"], code, "{path}");
    }
    assert_eq!(
        live_tokens(&app).await,
        before,
        "nothing created or revoked"
    );
    // A revoked token cannot be revoked again, and its name is free again.
    let res = app
        .api(
            Method::POST,
            &format!("/tokens/{okta}/revoke"),
            &app.admin_token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = app
        .api(
            Method::POST,
            &format!("/tokens/{okta}/revoke"),
            &app.admin_token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(res, 404).await["code"], "token_not_found");
    let res = app
        .api(Method::POST, "/tokens", &app.admin_token)
        .json(&json!({"role": "scim", "name": "okta"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert!(!robot.is_empty());
}

#[tokio::test]
async fn revoking_an_agents_token_returns_its_claimed_task_to_the_queue() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    app.create_user(okta_user("ann@x.com")).await;
    let task = app.claim(&app.agent_token).await.expect("a task");
    let robot = token_id(&app, "robot").await;
    let done = json_of(
        app.api(
            Method::POST,
            &format!("/tokens/{robot}/revoke"),
            &app.admin_token,
        )
        .send()
        .await
        .unwrap(),
        200,
    )
    .await;
    assert_eq!(done["returned_tasks"], json!([task["id"]]), "{done}");
    let res = app
        .api(
            Method::GET,
            &format!("/tasks/{}", task["id"]),
            &app.admin_token,
        )
        .send()
        .await
        .unwrap();
    let t = json_of(res, 200).await;
    assert_eq!(t["state"], "open", "{t}");
}

#[tokio::test]
async fn an_admin_of_another_app_neither_sees_nor_revokes_this_apps_tokens() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    app.add_app("sixsense").await;
    let b_admin = app.token("sixsense", Role::Admin, "bob-b").await;
    let list = json_of(
        app.api(Method::GET, "/tokens", &b_admin)
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    let names: Vec<&str> = list["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["bob-b"]);
    let robot = token_id(&app, "robot").await;
    let res = app
        .api(Method::POST, &format!("/tokens/{robot}/revoke"), &b_admin)
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(res, 404).await["code"], "token_not_found");
    assert_eq!(app.tasks("").await.len(), 0, "A's agent token still works");
    // A token B creates belongs to B, whatever it is named.
    let made = json_of(
        app.api(Method::POST, "/tokens", &b_admin)
            .json(&json!({"role": "scim", "name": "okta"}))
            .send()
            .await
            .unwrap(),
        201,
    )
    .await;
    assert_eq!(made["app_id"], "sixsense");
    let a_audit: i64 = sqlx::query_scalar(
        "select count(*) from audit where app_id = 'peopleai' and subject_type = 'token'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(a_audit, 0, "nothing of it in A's audit trail");
}

#[tokio::test]
async fn the_web_ui_creates_a_token_shown_once_and_revokes_one() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let mut b = Browser::new(&app);
    b.login(&app.admin_token).await;
    let html = b.page("/ui/tasks").await;
    assert!(
        html.contains(r#"<a href="/ui/tokens""#),
        "admins see the menu entry"
    );
    let csrf = b.csrf().await;
    let res = b
        .post(
            "/ui/tokens",
            &[("csrf", &csrf), ("role", "agent"), ("name", "nightly-bot")],
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let html = res.text().await.unwrap();
    let secret = hidden(
        &html.replace("data-copy=", "name=\"secret\" value="),
        "secret",
    )
    .expect("the secret, once");
    assert!(secret.starts_with("sbt_"), "{html}");
    assert!(html.contains("shown only this once"), "{html}");
    // The secret works and is never shown again.
    let res = app
        .api(Method::GET, "/tasks", &secret)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let html = b.page("/ui/tokens").await;
    assert!(
        html.contains("nightly-bot") && !html.contains(&secret),
        "{html}"
    );
    // Bad input re-shows the form with the reason; nothing is created.
    let before = live_tokens(&app).await;
    let res = b
        .post(
            "/ui/tokens",
            &[("csrf", &csrf), ("role", "owner"), ("name", "x")],
        )
        .await;
    assert_eq!(res.status(), 400);
    assert!(res
        .text()
        .await
        .unwrap()
        .contains("Nothing was created: role must be"));
    let res = b
        .post("/ui/tokens", &[("role", "agent"), ("name", "no-csrf")])
        .await;
    assert_eq!(res.status(), 403);
    assert_eq!(live_tokens(&app).await, before);
    // Revoke it: back to the list, which says so; the secret stops working.
    let id = token_id(&app, "nightly-bot").await;
    let res = b
        .post(&format!("/ui/tokens/{id}/revoke"), &[("csrf", &csrf)])
        .await;
    assert_eq!(res.status(), 303);
    let to = location(&res);
    assert_eq!(to, "/ui/tokens?revoked=0");
    assert!(b.page(&to).await.contains("Token revoked."));
    let res = app
        .api(Method::GET, "/tasks", &secret)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // The session's own token has no revoke button, and posting it anyway is refused.
    let alice = token_id(&app, "alice").await;
    let html = b.page("/ui/tokens").await;
    assert!(
        !html.contains(&format!("/ui/tokens/{alice}/revoke")),
        "{html}"
    );
    let res = b
        .post(&format!("/ui/tokens/{alice}/revoke"), &[("csrf", &csrf)])
        .await;
    assert_eq!(res.status(), 409);
    // An agent's session has no menu entry and is refused the page.
    let mut agent = Browser::new(&app);
    agent.login(&app.agent_token).await;
    assert!(!agent.page("/ui/tasks").await.contains("/ui/tokens"));
    let res = agent.get("/ui/tokens").await;
    assert_eq!(res.status(), 403);
    assert!(res.text().await.unwrap().contains("Only an admin"));
}
