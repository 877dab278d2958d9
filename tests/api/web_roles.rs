//! Every web UI action × role: a person in the browser may do exactly what their token may
//! do over the task API (agents work tasks; only admins approve, reject and decide held
//! batches). The POST routes come from `scimbridge::http::route_table()`, so an action
//! added later fails this test until it is taught here; each is posted by an agent and by
//! an admin session with a valid CSRF token on a resource where it would succeed.

use reqwest::{header, Method};
use serde_json::{json, Value};

use crate::helpers::{okta_user, TestApp};
use crate::web::{location, Browser};

/// Who may post to a UI action, as the task API decides the same action.
fn admins_only(route: &str) -> Option<bool> {
    match route {
        "/ui/tasks/{id}/approve"
        | "/ui/tasks/{id}/reject"
        | "/ui/batches/{id}/release"
        | "/ui/batches/{id}/cancel"
        | "/ui/tasks/{id}/reassign"
        | "/ui/snapshots/{id}/apply"
        | "/ui/snapshots/{id}/discard"
        | "/ui/tokens"
        | "/ui/tokens/{id}/revoke"
        | "/ui/oauth-clients/{id}/revoke" => Some(true),
        "/ui/snapshots" => Some(false),
        "/ui/tasks/{id}/claim"
        | "/ui/tasks/{id}/complete"
        | "/ui/tasks/{id}/release"
        | "/ui/tasks/{id}/retry"
        | "/ui/logout" => Some(false),
        _ => None,
    }
}

async fn task_state(app: &TestApp, id: i64) -> String {
    sqlx::query_scalar("select state::text from task where task_id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

async fn batch_state(app: &TestApp, id: i64) -> String {
    sqlx::query_scalar("select state from batch where batch_id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

/// A new user's open task (an approval-gated one when `admin_role`).
async fn new_task(app: &TestApp, n: &mut u32, admin_role: bool) -> i64 {
    *n += 1;
    let mut body = okta_user(&format!("r{n}@roles.example"));
    if admin_role {
        body["roles"] = json!([{"value": "Admin"}]);
    }
    let user = app.create_user(body).await;
    sqlx::query_scalar("select max(task_id) from task where user_id = $1::uuid")
        .bind(user["id"].as_str().unwrap())
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

/// Posts the completion form of task `id` with `outcome`.
async fn complete(b: &Browser<'_>, app: &TestApp, id: i64, outcome: &str) -> reqwest::Response {
    let form = reqwest::multipart::Form::new()
        .text("csrf", b.csrf().await)
        .text("outcome", outcome.to_owned());
    b.client
        .post(app.url(&format!("/ui/tasks/{id}/complete")))
        .header(header::COOKIE, b.cookie_header(None))
        .multipart(form)
        .send()
        .await
        .unwrap()
}

/// A snapshot's state; for the upload route (`id` 0), how many snapshots there are.
async fn snapshot_state(app: &TestApp, id: i64) -> String {
    if id == 0 {
        return crate::helpers::count(&app.pool, "snapshot")
            .await
            .to_string();
    }
    sqlx::query_scalar("select state from snapshot where snapshot_id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

/// A snapshot the safeguard holds (an empty export).
async fn held_snapshot(app: &TestApp) -> i64 {
    let res = app
        .api(Method::POST, "/snapshots", &app.admin_token)
        .header("content-type", "text/csv")
        .body("Email,First Name,Last Name,Role,Status\n")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let snap: Value = res.json().await.unwrap();
    assert_eq!(snap["state"], "held", "{snap}");
    snap["id"].as_i64().unwrap()
}

/// Uploads an export through the snapshots page's form.
async fn upload(b: &Browser<'_>, app: &TestApp) -> reqwest::Response {
    let file = reqwest::multipart::Part::text("Email,Status\nnobody@roles.example,Active\n")
        .file_name("users.csv")
        .mime_str("text/csv")
        .unwrap();
    let form = reqwest::multipart::Form::new()
        .text("csrf", b.csrf().await)
        .part("file", file);
    b.client
        .post(app.url("/ui/snapshots"))
        .header(header::COOKIE, b.cookie_header(None))
        .multipart(form)
        .send()
        .await
        .unwrap()
}

/// A held batch of leavers: more than 20 deactivations within 10 minutes are held
/// (People.ai's governance), so once 20 are queued every further one is held.
async fn held_batch(app: &TestApp, n: &mut u32) -> i64 {
    let queued: i64 = sqlx::query_scalar(
        "select count(*) from task where kind = 'deactivate' and created_at > now() - interval '10 minutes'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let mut users = Vec::new();
    for _ in 0..(21 - queued).max(1) {
        *n += 1;
        users.push(
            app.create_user(okta_user(&format!("l{n}@roles.example")))
                .await,
        );
    }
    // Their accounts exist in the app first (a create cancelled before anyone acted
    // leaves nothing to deactivate).
    while let Some(t) = app.claim(&app.agent_token).await {
        let res = app.complete(&t, json!({"outcome": "not_applicable"})).await;
        assert_eq!(res.status(), 200);
    }
    for u in &users {
        let res = app
            .patch(
                &format!("/Users/{}", u["id"].as_str().unwrap()),
                json!([{"op": "replace", "path": "active", "value": false}]),
            )
            .await;
        assert_eq!(res.status(), 200);
    }
    let batches: Value = app
        .api(Method::GET, "/batches", &app.admin_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    batches["batches"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["state"] == "held")
        .and_then(|b| b["id"].as_i64())
        .unwrap_or_else(|| panic!("a held batch: {batches}"))
}

#[tokio::test]
async fn every_ui_action_applies_the_task_apis_role_rule() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let routes: Vec<String> = scimbridge::http::route_table()
        .into_iter()
        .filter(|(m, p)| m == "POST" && p.starts_with("/ui/") && p != "/ui/login")
        .map(|(_, p)| p)
        .collect();
    assert!(routes.len() >= 9, "{routes:?}");
    let mut n = 0;
    for route in &routes {
        let admins = admins_only(route)
            .unwrap_or_else(|| panic!("{route}: say which roles may post it in admins_only"));
        // The agent goes first, so a resource it must not touch is the admin's to decide.
        let mut shared: Option<i64> = None;
        for (who, token) in [("agent", &app.agent_token), ("admin", &app.admin_token)] {
            let mut b = Browser::new(&app);
            b.login(token).await;
            let allowed = who == "admin" || !admins;
            let case = format!("{who} POST {route}");
            if route == "/ui/oauth-clients/{id}/revoke" {
                // A fresh client for each caller.
                let (id, _) =
                    crate::oauth::create_client(&app.pool, "peopleai", &format!("c-{who}")).await;
                let live = || async {
                    sqlx::query_scalar::<_, i64>(
                        "select count(*) from oauth_client where revoked_at is null",
                    )
                    .fetch_one(&app.pool)
                    .await
                    .unwrap()
                };
                let before = live().await;
                let csrf = b.csrf().await;
                let res = b
                    .post(&route.replace("{id}", &id), &[("csrf", &csrf)])
                    .await;
                let status = res.status().as_u16();
                let body = res.text().await.unwrap();
                if allowed {
                    assert_eq!(status, 303, "{case}: {body}");
                    assert_eq!(live().await, before - 1, "{case}");
                } else {
                    assert_eq!(status, 403, "{case} must be refused: {body}");
                    assert!(body.contains("Only an admin"), "{case}: {body}");
                    assert_eq!(live().await, before, "{case} changed nothing");
                }
                continue;
            }
            if route.starts_with("/ui/tokens") {
                // Tokens are named by uuid: a fresh victim for each caller.
                let victim = format!("victim-of-{who}");
                app.token("peopleai", scimbridge::auth::Role::Agent, &victim)
                    .await;
                let id: uuid::Uuid =
                    sqlx::query_scalar("select token_id from token where name = $1")
                        .bind(&victim)
                        .fetch_one(&app.pool)
                        .await
                        .unwrap();
                let live = || async {
                    sqlx::query_scalar::<_, i64>(
                        "select count(*) from token where revoked_at is null",
                    )
                    .fetch_one(&app.pool)
                    .await
                    .unwrap()
                };
                let before = live().await;
                let csrf = b.csrf().await;
                let made = format!("made-by-{who}");
                let res = b
                    .post(
                        &route.replace("{id}", &id.to_string()),
                        &[("csrf", &csrf), ("role", "agent"), ("name", &made)],
                    )
                    .await;
                let status = res.status().as_u16();
                let body = res.text().await.unwrap();
                if allowed {
                    // Creating answers the page with the secret; revoking redirects.
                    let want = if route == "/ui/tokens" { 200 } else { 303 };
                    assert_eq!(status, want, "{case}: {body}");
                    let expect = if route == "/ui/tokens" {
                        before + 1
                    } else {
                        before - 1
                    };
                    assert_eq!(live().await, expect, "{case}");
                } else {
                    assert_eq!(status, 403, "{case} must be refused: {body}");
                    assert!(body.contains("Only an admin"), "{case}: {body}");
                    assert_eq!(live().await, before, "{case} changed nothing");
                }
                continue;
            }
            // The resource, in a state where the action succeeds.
            let id = match route.as_str() {
                "/ui/logout" | "/ui/snapshots" => 0,
                "/ui/snapshots/{id}/apply" | "/ui/snapshots/{id}/discard" => match shared {
                    Some(id) => id,
                    None => held_snapshot(&app).await,
                },
                "/ui/tasks/{id}/claim" => new_task(&app, &mut n, false).await,
                "/ui/tasks/{id}/approve" | "/ui/tasks/{id}/reject" => match shared {
                    Some(id) => id,
                    None => new_task(&app, &mut n, true).await,
                },
                "/ui/batches/{id}/release" | "/ui/batches/{id}/cancel" => match shared {
                    Some(id) => id,
                    None => held_batch(&app, &mut n).await,
                },
                _ => {
                    let id = new_task(&app, &mut n, false).await;
                    let csrf = b.csrf().await;
                    let res = b
                        .post(&format!("/ui/tasks/{id}/claim"), &[("csrf", &csrf)])
                        .await;
                    assert_eq!(res.status(), 303, "{case}: claiming first");
                    if route == "/ui/tasks/{id}/retry" {
                        let res = complete(&b, &app, id, "failed").await;
                        assert_eq!(res.status(), 303, "{case}: failing first");
                    }
                    id
                }
            };
            shared = Some(id);
            let path = route.replace("{id}", &id.to_string());
            let before = if route.starts_with("/ui/snapshots") {
                snapshot_state(&app, id).await
            } else if route.starts_with("/ui/batches") {
                batch_state(&app, id).await
            } else if id > 0 {
                task_state(&app, id).await
            } else {
                String::new()
            };
            let res = if route == "/ui/tasks/{id}/complete" {
                complete(&b, &app, id, "not_applicable").await
            } else if route == "/ui/snapshots" {
                upload(&b, &app).await
            } else {
                let csrf = b.csrf().await;
                b.post(
                    &path,
                    &[("csrf", &csrf), ("reason", "checked"), ("to", "queue")],
                )
                .await
            };
            let status = res.status().as_u16();
            let to = location(&res);
            let body = res.text().await.unwrap();
            let after = if route.starts_with("/ui/snapshots") {
                snapshot_state(&app, id).await
            } else if route.starts_with("/ui/batches") {
                batch_state(&app, id).await
            } else if id > 0 {
                task_state(&app, id).await
            } else {
                String::new()
            };
            if allowed {
                assert_eq!(status, 303, "{case}: {body}");
                assert!(
                    !to.contains("login") || route == "/ui/logout",
                    "{case}: {to}"
                );
                let want = match route.as_str() {
                    // The upload: one more snapshot than before.
                    "/ui/snapshots" => (before.parse::<i64>().unwrap() + 1).to_string(),
                    "/ui/tasks/{id}/claim" => "in_progress".to_owned(),
                    "/ui/tasks/{id}/complete" => "not_applicable".to_owned(),
                    "/ui/tasks/{id}/release" | "/ui/tasks/{id}/reassign" => "open".to_owned(),
                    "/ui/tasks/{id}/retry" => "failed".to_owned(),
                    "/ui/tasks/{id}/approve" => "open".to_owned(),
                    "/ui/tasks/{id}/reject" => "cancelled".to_owned(),
                    "/ui/batches/{id}/release" => "released".to_owned(),
                    "/ui/batches/{id}/cancel" => "cancelled".to_owned(),
                    "/ui/snapshots/{id}/apply" => "applied".to_owned(),
                    "/ui/snapshots/{id}/discard" => "discarded".to_owned(),
                    _ => String::new(),
                };
                assert_eq!(after, want, "{case}");
                if route == "/ui/tasks/{id}/retry" {
                    assert!(to.starts_with("/ui/tasks/"), "{case}: a new task: {to}");
                }
            } else {
                assert_eq!(status, 403, "{case} must be refused: {body}");
                assert!(body.contains("Only an admin"), "{case}: {body}");
                assert_eq!(after, before, "{case} changed nothing");
            }
        }
    }
}
