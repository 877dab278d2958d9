//! Reassignment and revocation: an admin hands a claimed task to someone else or back
//! to the queue (API, CLI, web UI), the old lease stops working, and a revoked token's
//! claims return to the queue in the revocation's transaction. SLA reminders name
//! whoever holds the task at the sweep.

use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{count, okta_user, TestApp};
use scimbridge::auth::Role;
use scimbridge::config::Config;

async fn token_id(app: &TestApp, name: &str) -> Uuid {
    sqlx::query_scalar("select token_id from token where name = $1")
        .bind(name)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

async fn post(app: &TestApp, path: &str, token: &str, body: Value) -> (u16, Value) {
    let res = app
        .api(Method::POST, path, token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn task(app: &TestApp, id: &Value) -> Value {
    let res = app
        .api(Method::GET, &format!("/tasks/{id}"), &app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

fn history_actions(t: &Value) -> Vec<String> {
    t["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["action"].as_str().unwrap().to_owned())
        .collect()
}

async fn events(app: &TestApp, kind: &str) -> Vec<Value> {
    sqlx::query_scalar("select payload from event where kind = $1 order by event_id")
        .bind(kind)
        .fetch_all(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn an_admin_reassigns_a_claimed_task_and_the_old_lease_stops_working() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let bob = app.token("peopleai", Role::Agent, "bob").await;
    app.create_user(okta_user("ann@x.com")).await;
    let claimed = app.claim(&app.agent_token).await.unwrap();
    let id = claimed["id"].clone();

    let (s, moved) = post(
        &app,
        &format!("/tasks/{id}/reassign"),
        &app.admin_token,
        json!({"to": "bob", "reason": "robot is stuck"}),
    )
    .await;
    assert_eq!(s, 200, "{moved}");
    assert_eq!(moved["state"], "in_progress");
    assert_eq!(moved["claimed_by"], "bob");
    assert_ne!(moved["lease_id"], claimed["lease_id"], "a fresh lease");
    assert_eq!(moved["attempts"], 1, "a handover is not a new attempt");

    // The old holder's lease, and its token without a lease, no longer work.
    let res = app.complete(&claimed, json!({"outcome": "done"})).await;
    assert_eq!(res.status(), 409);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "lease_mismatch", "{body}");
    let (s, body) = post(
        &app,
        &format!("/tasks/{id}/heartbeat"),
        &app.agent_token,
        json!({}),
    )
    .await;
    assert_eq!((s, body["code"].as_str()), (409, Some("not_your_task")));
    let (s, body) = post(
        &app,
        &format!("/tasks/{id}/release"),
        &app.agent_token,
        json!({"lease_id": claimed["lease_id"]}),
    )
    .await;
    assert_eq!((s, body["code"].as_str()), (409, Some("lease_mismatch")));

    // The new holder works it with its own token, no lease needed.
    let (s, done) = post(
        &app,
        &format!("/tasks/{id}/complete"),
        &bob,
        json!({"outcome": "done"}),
    )
    .await;
    assert_eq!((s, done["state"].as_str()), (200, Some("done")), "{done}");
    assert_eq!(done["finished_by"], "bob");

    let t = task(&app, &id).await;
    let reassign = t["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["action"] == "task.reassign")
        .unwrap()
        .clone();
    assert_eq!(reassign["actor"], "alice");
    assert_eq!(reassign["outcome"], "reassigned");
    assert_eq!(reassign["detail"]["from"], "robot");
    assert_eq!(reassign["detail"]["to"], "bob");
    assert_eq!(reassign["detail"]["reason"], "robot is stuck");
    let announced = events(&app, "task.reassigned").await;
    assert_eq!(announced.len(), 1);
    assert_eq!(
        (
            &announced[0]["from"],
            &announced[0]["to"],
            &announced[0]["by"]
        ),
        (&json!("robot"), &json!("bob"), &json!("alice"))
    );
}

#[tokio::test]
async fn an_admin_returns_a_claimed_task_to_the_queue() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    app.create_user(okta_user("ann@x.com")).await;
    let claimed = app.claim(&app.agent_token).await.unwrap();
    let id = claimed["id"].clone();
    let (s, back) = post(
        &app,
        &format!("/tasks/{id}/reassign"),
        &app.admin_token,
        json!({"to": "queue"}),
    )
    .await;
    assert_eq!(s, 200, "{back}");
    assert_eq!(back["state"], "open");
    assert_eq!(back["claimed_by"], Value::Null);
    assert_eq!(back["lease_id"], Value::Null);
    let res = app.complete(&claimed, json!({"outcome": "done"})).await;
    assert_eq!(res.status(), 409);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "task_not_in_progress");
    // Anyone may claim it again; it is the same task.
    let again = app.claim(&app.admin_token).await.unwrap();
    assert_eq!(again["id"], id);
    let t = task(&app, &id).await;
    assert!(history_actions(&t).contains(&"task.reassign".to_owned()));
    let announced = events(&app, "task.reassigned").await;
    assert_eq!(announced[0]["to"], Value::Null);
    assert_eq!(announced[0]["outcome"], "returned_to_queue");
}

#[tokio::test]
async fn an_open_task_can_be_assigned_to_someone_who_then_holds_it() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let bob = app.token("peopleai", Role::Admin, "bob").await;
    app.create_user(okta_user("ann@x.com")).await;
    let open = app.tasks("?state=open").await[0].clone();
    let bob_id = token_id(&app, "bob").await;
    let (s, t) = post(
        &app,
        &format!("/tasks/{}/reassign", open["id"]),
        &app.admin_token,
        json!({"to": bob_id, "lease_seconds": 120}),
    )
    .await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(
        (
            t["state"].as_str(),
            t["claimed_by"].as_str(),
            t["attempts"].as_i64()
        ),
        (Some("in_progress"), Some("bob"), Some(1))
    );
    // Nobody else can claim it; bob can release it.
    assert!(app.claim(&app.agent_token).await.is_none());
    let (s, _) = post(
        &app,
        &format!("/tasks/{}/release", open["id"]),
        &bob,
        json!({}),
    )
    .await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn reassignments_that_cannot_be_made_are_refused_and_change_nothing() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    app.add_app("sixsense").await;
    app.token("sixsense", Role::Agent, "other-app").await;
    app.token("peopleai", Role::Agent, "twin").await;
    app.token("peopleai", Role::Agent, "twin").await;
    let gone = app.token("peopleai", Role::Agent, "gone").await;
    let _ = gone;
    let gone_id = token_id(&app, "gone").await;
    app.store.revoke_token(gone_id).await.unwrap();
    let okta_id = token_id(&app, "okta").await;
    let other_id = token_id(&app, "other-app").await;
    app.create_user(okta_user("ann@x.com")).await;
    let claimed = app.claim(&app.agent_token).await.unwrap();
    let id = claimed["id"].clone();
    let path = format!("/tasks/{id}/reassign");
    let audits = count(&app.pool, "audit").await;

    let cases: Vec<(&str, Value, u16, &str)> = vec![
        ("an agent", json!({"to": "queue"}), 403, "forbidden_role"),
        ("no target", json!({}), 400, "invalid_json"),
        ("empty target", json!({"to": " "}), 400, "invalid_assignee"),
        (
            "an unknown name",
            json!({"to": "nobody"}),
            400,
            "unknown_assignee",
        ),
        (
            "a scim token",
            json!({"to": okta_id}),
            400,
            "unknown_assignee",
        ),
        (
            "a revoked token",
            json!({"to": gone_id}),
            400,
            "unknown_assignee",
        ),
        (
            "another app's token",
            json!({"to": other_id}),
            400,
            "unknown_assignee",
        ),
        (
            "a name two tokens share",
            json!({"to": "twin"}),
            400,
            "ambiguous_assignee",
        ),
        (
            "a bad lease",
            json!({"to": "queue", "lease_seconds": 1}),
            400,
            "invalid_lease",
        ),
        (
            "an unknown field",
            json!({"to": "queue", "who": "x"}),
            400,
            "invalid_json",
        ),
    ];
    for (what, body, status, code) in cases {
        let token = if what == "an agent" {
            &app.agent_token
        } else {
            &app.admin_token
        };
        let (s, b) = post(&app, &path, token, body).await;
        assert_eq!((s, b["code"].as_str()), (status, Some(code)), "{what}: {b}");
    }
    let (s, b) = post(
        &app,
        "/tasks/999/reassign",
        &app.admin_token,
        json!({"to": "queue"}),
    )
    .await;
    assert_eq!((s, b["code"].as_str()), (404, Some("not_found")));
    let t = task(&app, &id).await;
    assert_eq!(
        (&t["claimed_by"], &t["lease_id"]),
        (&json!("robot"), &claimed["lease_id"])
    );
    assert_eq!(count(&app.pool, "audit").await, audits, "nothing recorded");

    // A finished task, an open task sent to the queue, and a task waiting for its user's
    // task in progress cannot be moved.
    app.complete(&claimed, json!({"outcome": "done"})).await;
    let (s, b) = post(&app, &path, &app.admin_token, json!({"to": "queue"})).await;
    assert_eq!((s, b["code"].as_str()), (409, Some("task_not_assignable")));
    app.create_user(okta_user("bea@x.com")).await;
    let open = app.tasks("?state=open").await[0]["id"].clone();
    let (s, b) = post(
        &app,
        &format!("/tasks/{open}/reassign"),
        &app.admin_token,
        json!({"to": "queue"}),
    )
    .await;
    assert_eq!((s, b["code"].as_str()), (409, Some("task_not_claimed")));
    let first = app.claim(&app.agent_token).await.unwrap();
    let user = first["subject"]["id"].as_str().unwrap().to_owned();
    let res = app
        .patch(
            &format!("/Users/{user}"),
            json!([{"op": "replace", "path": "displayName", "value": "Bea Two"}]),
        )
        .await;
    assert_eq!(res.status(), 200);
    let waiting = app.tasks("?state=open").await[0].clone();
    assert_eq!(waiting["blocked_by"], first["id"]);
    let (s, b) = post(
        &app,
        &format!("/tasks/{}/reassign", waiting["id"]),
        &app.admin_token,
        json!({"to": "alice"}),
    )
    .await;
    assert_eq!((s, b["code"].as_str()), (409, Some("task_blocked")), "{b}");
}

#[tokio::test]
async fn revoking_a_token_returns_its_claimed_tasks_to_the_queue() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    for u in ["ann@x.com", "bea@x.com", "cid@x.com"] {
        app.create_user(okta_user(u)).await;
    }
    let a = app.claim(&app.agent_token).await.unwrap();
    let b = app.claim(&app.agent_token).await.unwrap();
    let kept = app.claim(&app.admin_token).await.unwrap();
    let robot = token_id(&app, "robot").await;

    let revoked = app
        .store
        .revoke_token_by(robot, None)
        .await
        .unwrap()
        .unwrap();
    let mut returned = revoked.returned.clone();
    returned.sort_unstable();
    let mut expected = vec![a["id"].as_i64().unwrap(), b["id"].as_i64().unwrap()];
    expected.sort_unstable();
    assert_eq!(returned, expected);
    for t in [&a, &b] {
        let now = task(&app, &t["id"]).await;
        assert_eq!(
            (now["state"].as_str(), &now["claimed_by"]),
            (Some("open"), &Value::Null)
        );
        let release = now["history"]
            .as_array()
            .unwrap()
            .iter()
            .rev()
            .find(|h| h["action"] == "task.release")
            .unwrap()
            .clone();
        assert_eq!(release["actor"], "scimbridge");
        assert!(
            release["detail"]["reason"]
                .as_str()
                .unwrap()
                .contains("\"robot\" holding it was revoked"),
            "{release}"
        );
    }
    // Another holder's task is untouched; a second revocation finds nothing.
    assert_eq!(task(&app, &kept["id"]).await["claimed_by"], "alice");
    assert!(app
        .store
        .revoke_token_by(robot, None)
        .await
        .unwrap()
        .is_none());
    // Both returned tasks can be claimed at once by someone else.
    let bob = app.token("peopleai", Role::Agent, "bob").await;
    assert!(app.claim(&bob).await.is_some());
    assert!(app.claim(&bob).await.is_some());
}

#[tokio::test]
async fn revocation_from_the_cli_returns_claims_and_says_so() {
    let db = crate::db::test_db().await;
    crate::needs_server!(db, "runs the CLI as a second process on the test database");
    let pool = db.pool();
    use crate::profiles::{database_url, scimbridge};
    let app = TestApp::spawn(pool.clone()).await;
    app.create_user(okta_user("ann@x.com")).await;
    let t = app.claim(&app.agent_token).await.unwrap();
    let robot = token_id(&app, "robot").await.to_string();
    let out = scimbridge(&database_url(&pool), &["token", "revoke", &robot]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        said.contains(&format!("returned task #{} to the queue", t["id"])),
        "{said}"
    );
    assert_eq!(task(&app, &t["id"]).await["state"], "open");
}

#[tokio::test]
async fn a_revoked_token_still_in_a_token_cache_cannot_claim() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let mut config = Config::for_tests();
    config.token_cache_secs = 300;
    let app = TestApp::spawn_with(pool, config).await;
    app.create_user(okta_user("ann@x.com")).await;
    // Cached by this request.
    assert_eq!(app.tasks("").await.len(), 1);
    app.store
        .revoke_token(token_id(&app, "robot").await)
        .await
        .unwrap();
    let res = app
        .api(Method::POST, "/tasks/claim", &app.agent_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 409);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "token_revoked");
    assert_eq!(app.tasks("?state=in_progress").await.len(), 0);
}

#[tokio::test]
async fn claims_racing_a_revocation_never_leave_a_task_with_the_revoked_token() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    for i in 0..40 {
        app.create_user(okta_user(&format!("u{i}@x.com"))).await;
    }
    for round in 0..8 {
        let name = format!("racer{round}");
        let secret = app.token("peopleai", Role::Agent, &name).await;
        let id = token_id(&app, &name).await;
        let claims = (0..4).map(|_| {
            let (client, url, secret) = (
                app.client.clone(),
                app.url("/api/v1/tasks/claim"),
                secret.clone(),
            );
            tokio::spawn(async move {
                for _ in 0..3 {
                    let _ = client.post(&url).bearer_auth(&secret).send().await;
                }
            })
        });
        let claims: Vec<_> = claims.collect();
        tokio::time::sleep(std::time::Duration::from_millis(round * 3)).await;
        app.store.revoke_token(id).await.unwrap();
        for c in claims {
            c.await.unwrap();
        }
        let held: i64 = sqlx::query_scalar(
            "select count(*) from task where state = 'in_progress' and claimed_token = $1",
        )
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
        assert_eq!(held, 0, "round {round}: a task is held by a revoked token");
    }
}

#[tokio::test]
async fn reminders_name_whoever_holds_the_task_after_a_reassignment() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    app.token("peopleai", Role::Agent, "bob").await;
    app.create_user(okta_user("ann@x.com")).await;
    let t = app.claim(&app.agent_token).await.unwrap();
    let id = t["id"].as_i64().unwrap();
    let overdue = || async {
        sqlx::query(
            "update task set created_at = now() - interval '100 hours', \
             due_at = now() - interval '1 hour' where task_id = $1",
        )
        .bind(id)
        .execute(&app.pool)
        .await
        .unwrap();
    };
    overdue().await;
    app.store.sweep().await.unwrap();
    assert_eq!(events(&app, "task.overdue").await[0]["held_by"], "robot");

    let (s, _) = post(
        &app,
        &format!("/tasks/{id}/reassign"),
        &app.admin_token,
        json!({"to": "bob"}),
    )
    .await;
    assert_eq!(s, 200);
    // The profile's reminder cadence has passed.
    sqlx::query("update task set last_reminder_at = now() - interval '2 hours' where task_id = $1")
        .bind(id)
        .execute(&app.pool)
        .await
        .unwrap();
    app.store.sweep().await.unwrap();
    let reminders = events(&app, "task.reminder").await;
    assert_eq!(reminders.len(), 1);
    assert_eq!(reminders[0]["held_by"], "bob");

    // Back in the queue, the next reminder names nobody.
    let (s, _) = post(
        &app,
        &format!("/tasks/{id}/reassign"),
        &app.admin_token,
        json!({"to": "queue"}),
    )
    .await;
    assert_eq!(s, 200);
    sqlx::query("update task set last_reminder_at = now() - interval '2 hours' where task_id = $1")
        .bind(id)
        .execute(&app.pool)
        .await
        .unwrap();
    app.store.sweep().await.unwrap();
    let reminders = events(&app, "task.reminder").await;
    assert_eq!(reminders.len(), 2);
    assert_eq!(reminders[1]["held_by"], Value::Null);
}

#[test]
fn slack_reminders_name_the_holder() {
    use scimbridge::db::outbox::Due;
    let due = Due {
        event_id: 1,
        webhook_id: Uuid::nil(),
        url: String::new(),
        format: "slack".into(),
        secret: None,
        kind: "task.reminder".into(),
        app_id: "peopleai".into(),
        payload: json!({"task_id": 7, "title": "Remove Ann", "held_by": "bob"}),
        created_at: chrono::Utc::now(),
        attempts: 0,
    };
    let text = scimbridge::notify::slack_body(&due)["text"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        text.contains("Still overdue: Remove Ann (task #7)") && text.ends_with("held by bob"),
        "{text}"
    );
}

#[tokio::test]
async fn the_cli_reassigns_by_name_and_back_to_the_queue() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    app.token("peopleai", Role::Agent, "bob").await;
    app.create_user(okta_user("ann@x.com")).await;
    let t = app.claim(&app.agent_token).await.unwrap();
    let id = t["id"].to_string();
    let run = |args: Vec<String>, token: String| {
        let root = app.root.clone();
        async move {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_scimbridge"))
                .args(&args)
                .env("SCIMBRIDGE_URL", root)
                .env("SCIMBRIDGE_TOKEN", token)
                .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
                .output()
                .await
                .unwrap()
        }
    };
    let args = |to: &str| -> Vec<String> {
        ["tasks", "reassign", &id, "--to", to, "--reason", "holiday"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    let out = run(args("bob"), app.admin_token.clone()).await;
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains(&format!("task {id} now held by bob")),
        "{said}"
    );
    let out = run(args("queue"), app.agent_token.clone()).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("forbidden_role"));
    let out = run(args("queue"), app.admin_token.clone()).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("back in the queue (open)"));
    assert_eq!(task(&app, &t["id"]).await["state"], "open");
}
