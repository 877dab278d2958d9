//! The queue as a product: leases and heartbeats, attempts, long-poll claims, kinds,
//! idempotent completion, evidence files, not_applicable, counts and user views.

use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{okta_user, TestApp};
use scimbridge::auth::Role;

async fn create(app: &TestApp, name: &str) -> String {
    app.create_user(okta_user(name)).await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn post(app: &TestApp, path: &str, token: &str, body: Value) -> (u16, Value) {
    let res = app
        .api(Method::POST, path, token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let body = if status == 204 {
        Value::Null
    } else {
        res.json().await.unwrap()
    };
    (status, body)
}

async fn get(app: &TestApp, path: &str) -> Value {
    let res = app
        .api(Method::GET, path, &app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{path}");
    res.json().await.unwrap()
}

async fn lapse(app: &TestApp, task_id: &Value) {
    sqlx::query(
        "update task set lease_expires_at = now() - interval '1 second' where task_id = $1",
    )
    .bind(task_id.as_i64().unwrap())
    .execute(&app.pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn a_claim_returns_a_lease_that_heartbeats_extend() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    create(&app, "ann@x.com").await;
    let (s, t) = post(
        &app,
        "/tasks/claim",
        &app.agent_token,
        json!({"lease_seconds": 60}),
    )
    .await;
    assert_eq!(s, 200);
    let first_expiry = t["lease_expires_at"].as_str().unwrap().to_owned();
    let (s, hb) = post(
        &app,
        &format!("/tasks/{}/heartbeat", t["id"]),
        &app.agent_token,
        json!({"lease_id": t["lease_id"], "lease_seconds": 600}),
    )
    .await;
    assert_eq!(s, 200, "{hb}");
    assert!(
        hb["lease_expires_at"].as_str().unwrap() > first_expiry.as_str(),
        "extended"
    );
    let (s, err) = post(
        &app,
        &format!("/tasks/{}/heartbeat", t["id"]),
        &app.agent_token,
        json!({"lease_id": uuid::Uuid::new_v4()}),
    )
    .await;
    assert_eq!((s, err["code"].as_str()), (409, Some("lease_mismatch")));
    let (s, err) = post(
        &app,
        "/tasks/claim",
        &app.agent_token,
        json!({"lease_seconds": 5}),
    )
    .await;
    assert_eq!((s, err["code"].as_str()), (400, Some("invalid_lease")));
}

#[tokio::test]
async fn a_lapsed_lease_returns_the_task_with_the_attempt_recorded_and_the_last_attempt_fails_it() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let id = create(&app, "ann@x.com").await;
    let mut t = app.claim(&app.agent_token).await.unwrap();
    for attempt in 2..=3 {
        lapse(&app, &t["id"]).await;
        t = app
            .claim(&app.agent_token)
            .await
            .expect("the lapsed task is claimable again");
        assert_eq!(t["attempts"], attempt);
    }
    let history = get(&app, &format!("/tasks/{}", t["id"])).await["history"].clone();
    let expired = history
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["action"] == "task.lease_expired")
        .count();
    assert_eq!(expired, 2, "each lapse is recorded");
    // Third attempt lapses too: with --max-attempts 3 the task fails and the user is flagged.
    lapse(&app, &t["id"]).await;
    assert!(app.claim(&app.agent_token).await.is_none());
    let failed = get(&app, &format!("/tasks/{}", t["id"])).await;
    assert_eq!(failed["state"], "failed");
    assert_eq!(failed["finished_by"], "scimbridge");
    let last = failed["history"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        (last["action"].as_str(), last["actor_role"].as_str()),
        (Some("task.fail"), Some("system"))
    );
    let user = get(&app, &format!("/users/{id}")).await;
    assert_eq!(user["needs_attention"], true);
    assert_eq!(user["state"], "failed");
}

#[tokio::test]
async fn a_long_poll_claim_wakes_when_a_task_appears() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let started = Instant::now();
    let waiter = {
        let req = app
            .api(Method::POST, "/tasks/claim", &app.agent_token)
            .json(&json!({"wait": 20}));
        tokio::spawn(async move { req.send().await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    create(&app, "ann@x.com").await;
    let res = waiter.await.unwrap();
    assert_eq!(res.status(), 200);
    let t: Value = res.json().await.unwrap();
    assert_eq!(t["subject"]["user_name"], "ann@x.com");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "woken by the notification, not the deadline: {:?}",
        started.elapsed()
    );

    let started = Instant::now();
    let (s, _) = post(&app, "/tasks/claim", &app.agent_token, json!({"wait": 1})).await;
    assert_eq!(s, 204);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "waited until the deadline"
    );
    let (s, err) = post(&app, "/tasks/claim", &app.agent_token, json!({"wait": 61})).await;
    assert_eq!((s, err["code"].as_str()), (400, Some("invalid_wait")));
}

#[tokio::test]
async fn claims_can_be_narrowed_to_kinds() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let ann = create(&app, "ann@x.com").await;
    let t = app.claim(&app.agent_token).await.unwrap();
    assert_eq!(
        app.complete(&t, json!({"outcome": "done"})).await.status(),
        200
    );
    create(&app, "bob@x.com").await;
    app.scim(Method::DELETE, &format!("/Users/{ann}"))
        .send()
        .await
        .unwrap();
    let (s, t) = post(
        &app,
        "/tasks/claim",
        &app.agent_token,
        json!({"kinds": ["create_account"]}),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        t["kind"], "create_account",
        "the removal is skipped although it comes first"
    );
    let (s, _) = post(
        &app,
        "/tasks/claim",
        &app.agent_token,
        json!({"kinds": ["deactivate"]}),
    )
    .await;
    assert_eq!(s, 204);
    let (s, err) = post(
        &app,
        "/tasks/claim",
        &app.agent_token,
        json!({"kinds": ["nope"]}),
    )
    .await;
    assert_eq!((s, err["code"].as_str()), (400, Some("invalid_kind")));
}

#[tokio::test]
async fn completion_is_idempotent_by_lease_and_by_idempotency_key() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    create(&app, "ann@x.com").await;
    create(&app, "bob@x.com").await;
    let t = app.claim(&app.agent_token).await.unwrap();
    let first: Value = app
        .complete(&t, json!({"outcome": "done", "note": "first"}))
        .await
        .json()
        .await
        .unwrap();
    let again = app
        .complete(&t, json!({"outcome": "done", "note": "first"}))
        .await;
    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again, first, "the first result, unchanged");
    // A repeat naming another outcome is no retry: 409, and the first result stands.
    let other = app
        .complete(&t, json!({"outcome": "failed", "note": "second"}))
        .await;
    assert_eq!(other.status(), 409);

    let t = app.claim(&app.agent_token).await.unwrap();
    let path = format!("/tasks/{}/complete", t["id"]);
    let send = || {
        app.api(Method::POST, &path, &app.agent_token)
            .header("idempotency-key", "k-123")
            .json(&json!({"outcome": "done", "note": "by key"}))
            .send()
    };
    let a: Value = send().await.unwrap().json().await.unwrap();
    let b = send().await.unwrap();
    assert_eq!(b.status(), 200);
    assert_eq!(b.json::<Value>().await.unwrap(), a);
    let history = get(&app, &format!("/tasks/{}", t["id"])).await["history"].clone();
    let completions = history
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["action"] == "task.complete")
        .count();
    assert_eq!(completions, 1, "done once");
}

#[tokio::test]
async fn evidence_files_are_stored_returned_and_limited() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    create(&app, "ann@x.com").await;
    let t = app.claim(&app.agent_token).await.unwrap();
    let png = vec![0x89u8, b'P', b'N', b'G', 1, 2, 3];
    let b64 = base64::engine::general_purpose::STANDARD.encode(&png);
    let big = base64::engine::general_purpose::STANDARD.encode(vec![0u8; 2 * 1024 * 1024 + 1]);
    let res = app
        .complete(&t, json!({"outcome": "done", "attachments": [{"filename": "x.bin", "content_type": "application/octet-stream", "data": big}]}))
        .await;
    assert_eq!(res.status(), 400);
    assert_eq!(
        res.json::<Value>().await.unwrap()["code"],
        "attachment_too_large"
    );
    let res = app
        .complete(&t, json!({"outcome": "done", "attachments": [{"filename": "../etc", "content_type": "nope", "data": b64}]}))
        .await;
    assert_eq!(
        res.json::<Value>().await.unwrap()["code"],
        "invalid_attachment"
    );
    let res = app
        .complete(&t, json!({"outcome": "done", "fields": {"app_account_id": "pa-9"}, "attachments": [{"filename": "console.png", "content_type": "image/png", "data": b64}]}))
        .await;
    assert_eq!(res.status(), 200);
    let done: Value = res.json().await.unwrap();
    assert_eq!(
        done["attachments"],
        json!([{"n": 1, "filename": "console.png", "content_type": "image/png", "size": 7}])
    );
    let res = app
        .api(
            Method::GET,
            &format!("/tasks/{}/attachments/1", t["id"]),
            &app.admin_token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "image/png");
    assert!(res.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment"));
    // Untrusted content, as the web UI sends it: sandboxed, never sniffed or cached.
    assert_eq!(res.headers()["content-security-policy"], "sandbox");
    assert_eq!(res.headers()["cache-control"], "no-store");
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    assert_eq!(res.bytes().await.unwrap().to_vec(), png);
    let res = app
        .api(
            Method::GET,
            &format!("/tasks/{}/attachments/2", t["id"]),
            &app.admin_token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}

#[tokio::test]
async fn not_applicable_records_who_and_moves_confirmed_state() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let id = create(&app, "ann@x.com").await;
    let t = app.claim(&app.agent_token).await.unwrap();
    let res = app
        .complete(
            &t,
            json!({"outcome": "not_applicable", "note": "already had an account"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["state"], "not_applicable");
    assert_eq!(body["finished_by"], "robot");
    assert!(body["finished_at"].is_string());
    let user = get(&app, &format!("/users/{id}")).await;
    assert_eq!(user["state"], "synced");
    assert_eq!(user["confirmed"], t["target"]);
}

#[tokio::test]
async fn counts_by_state_and_kind() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    for u in ["a@x.com", "b@x.com", "c@x.com"] {
        create(&app, u).await;
    }
    let t = app.claim(&app.agent_token).await.unwrap();
    app.complete(&t, json!({"outcome": "done"})).await;
    app.claim(&app.agent_token).await.unwrap();
    let c = get(&app, "/tasks/counts").await;
    assert_eq!(c["total"], 3);
    assert_eq!(c["by_state"]["open"], 1);
    assert_eq!(c["by_state"]["in_progress"], 1);
    assert_eq!(c["by_state"]["done"], 1);
    assert_eq!(c["by_kind"]["create_account"], 3);
    assert_eq!(c["by_kind"]["remove"], 0);
    assert_eq!(c["by_state_and_kind"]["done"]["create_account"], 1);
}

#[tokio::test]
async fn users_show_desired_next_to_confirmed_and_their_whole_trail() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let ann = create(&app, "ann@x.com").await;
    create(&app, "bob@x.com").await;
    let t = app.claim(&app.agent_token).await.unwrap();
    app.complete(&t, json!({"outcome": "done"})).await;
    app.patch(
        &format!("/Users/{ann}"),
        json!([{"op": "add", "path": "roles", "value": [{"value": "Admin"}]}]),
    )
    .await;
    let u = get(&app, &format!("/users/{ann}")).await;
    assert_eq!(u["desired"]["role"], "Admin");
    assert_eq!(u["confirmed"]["role"], "Standard");
    assert_eq!(u["state"], "pending");
    let list = get(&app, "/users?limit=1").await;
    assert_eq!(list["users"].as_array().unwrap().len(), 1);
    let next = list["next_cursor"].as_str().unwrap();
    let page2 = get(&app, &format!("/users?limit=1&cursor={next}")).await;
    assert_eq!(page2["users"][0]["user_name"], "bob@x.com");
    assert!(page2["next_cursor"].is_null());
    assert_eq!(
        get(&app, "/users?user_name=BO").await["users"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        get(&app, "/users?state=pending").await["users"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // Deleted users keep their trail.
    app.scim(Method::DELETE, &format!("/Users/{ann}"))
        .send()
        .await
        .unwrap();
    let trail = get(&app, &format!("/users/{ann}/history")).await;
    let actions: Vec<&str> = trail["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "task.create",
            "user.create",
            "task.claim",
            "task.complete",
            "task.create",
            "user.patch",
            "task.update",
            "user.delete"
        ]
    );
    let res = app
        .api(
            Method::GET,
            &format!("/users/{}", uuid::Uuid::new_v4()),
            &app.admin_token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}

#[tokio::test]
async fn a_failed_task_gets_no_automatic_successor_until_retried() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let id = create(&app, "ann@x.com").await;
    let t = app.claim(&app.agent_token).await.unwrap();
    assert_eq!(
        app.complete(&t, json!({"outcome": "failed", "note": "console down"}))
            .await
            .status(),
        200
    );
    assert!(
        app.claim(&app.agent_token).await.is_none(),
        "no retry loop for agents"
    );
    let (s, err) = post(
        &app,
        &format!("/tasks/{}/retry", t["id"]),
        &app.admin_token,
        json!({}),
    )
    .await;
    assert_eq!(s, 200, "{err}");
    let new = err;
    assert_eq!(new["kind"], "create_account");
    assert_eq!(new["state"], "open");
    assert_ne!(new["id"], t["id"]);
    let (s, err) = post(
        &app,
        &format!("/tasks/{}/retry", t["id"]),
        &app.admin_token,
        json!({}),
    )
    .await;
    assert_eq!((s, err["code"].as_str()), (409, Some("already_retried")));
    let (s, err) = post(
        &app,
        &format!("/tasks/{}/retry", new["id"]),
        &app.admin_token,
        json!({}),
    )
    .await;
    assert_eq!((s, err["code"].as_str()), (409, Some("task_not_failed")));
    // A new IdP change also plans the user again.
    let t2 = app.claim(&app.agent_token).await.unwrap();
    app.complete(&t2, json!({"outcome": "failed"})).await;
    app.patch(
        &format!("/Users/{id}"),
        json!([{"op": "replace", "path": "name.givenName", "value": "Annie"}]),
    )
    .await;
    let open = app.tasks("?state=open").await;
    assert_eq!(open.len(), 1);
    assert_eq!(open[0]["target"]["given_name"], "Annie");
}

/// The log output of the test's thread (the in-process server runs on it).
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

/// Issue #16 item 7: each transition is a span named after it that carries the task's
/// id, app and kind, so a task can be followed through the server's logs.
#[tokio::test]
async fn each_task_transition_is_a_span_naming_its_task_app_and_kind() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let app = TestApp::spawn(pool).await;
    // Tests run in parallel threads: a span's callsite first met by another test while
    // this subscriber was being registered can keep the interest computed without it
    // (tracing caches it per callsite). Recomputed now, with this subscriber in place.
    tracing::callsite::rebuild_interest_cache();
    create(&app, "ann@x.com").await;
    let t = app.claim(&app.agent_token).await.unwrap();
    let id = t["id"].as_i64().unwrap();
    let lease = json!({"lease_id": t["lease_id"]});
    let (s, _) = post(
        &app,
        &format!("/tasks/{id}/heartbeat"),
        &app.agent_token,
        lease.clone(),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = post(
        &app,
        &format!("/tasks/{id}/release"),
        &app.agent_token,
        lease,
    )
    .await;
    assert_eq!(s, 200);
    let t = app.claim(&app.agent_token).await.unwrap();
    let res = app
        .complete(
            &t,
            json!({"outcome": "done", "fields": {"app_account_id": "pa-1"}}),
        )
        .await;
    assert_eq!(res.status(), 200);

    let out = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    for name in [
        "task.claim_next",
        "task.heartbeat",
        "task.release",
        "task.complete",
    ] {
        let line = out
            .lines()
            .find(|l| l.contains(&format!("{name}{{")))
            .unwrap_or_else(|| panic!("no {name} span in\n{out}"));
        for field in [
            "app=peopleai".to_owned(),
            format!("task_id={id}"),
            "kind=create_account".to_owned(),
        ] {
            assert!(line.contains(&field), "{name} lacks {field}: {line}");
        }
    }
}

/// Issue #16 item 7, the transitions no worker asks for: a lease lapsing on its last
/// attempt, a revoked token's claim going back to the queue, derivation cancelling a task
/// no longer needed, a held batch's decision and the SLA sweep each log a span per task
/// with its id, app and kind.
#[tokio::test]
async fn transitions_outside_a_workers_request_are_spans_naming_their_task() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let app = TestApp::spawn(pool).await;
    // Tests run in parallel threads: a span's callsite first met by another test while
    // this subscriber was being registered can keep the interest computed without it
    // (tracing caches it per callsite). Recomputed now, with this subscriber in place.
    tracing::callsite::rebuild_interest_cache();
    let mut expected: Vec<(&str, i64)> = Vec::new();

    // A lease that lapses on the last of its three attempts fails the task.
    create(&app, "ann@x.com").await;
    let first = app.claim(&app.agent_token).await.unwrap();
    for _ in 0..2 {
        lapse(&app, &first["id"]).await;
        app.claim(&app.agent_token).await.unwrap();
    }
    lapse(&app, &first["id"]).await;
    assert!(app.claim(&app.agent_token).await.is_none());
    expected.push(("task.lease_exhausted", first["id"].as_i64().unwrap()));

    // The claim of a token revoked meanwhile returns to the queue.
    create(&app, "bob@x.com").await;
    let temp = app.token("peopleai", Role::Agent, "temp").await;
    let held = app.claim(&temp).await.unwrap();
    let temp_id = app
        .store
        .tokens(Some("peopleai"))
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.name == "temp")
        .unwrap()
        .token_id;
    app.store.revoke_token(temp_id).await.unwrap();
    assert_eq!(
        get(&app, &format!("/tasks/{}", held["id"])).await["state"],
        "open"
    );
    expected.push(("task.return_claim", held["id"].as_i64().unwrap()));

    // The user is deleted in the IdP before anyone worked their task: cancelled.
    let cid = create(&app, "cid@x.com").await;
    let res = app
        .scim(Method::DELETE, &format!("/Users/{cid}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let cancelled = app.tasks("?state=cancelled").await;
    assert_eq!(cancelled.len(), 1, "{cancelled:?}");
    expected.push(("task.cancel", cancelled[0]["id"].as_i64().unwrap()));

    // Bob's task, back in the queue, passes its due time: the sweep marks it overdue.
    sqlx::query(
        "update task set created_at = now() - interval '100 hours', \
         due_at = now() - interval '1 hour' where task_id = $1",
    )
    .bind(held["id"].as_i64().unwrap())
    .execute(&app.pool)
    .await
    .unwrap();
    let swept = app.store.sweep().await.unwrap();
    assert_eq!(swept.overdue, 1, "{swept:?}");
    expected.push(("task.sla", held["id"].as_i64().unwrap()));

    let out = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    for (name, id) in expected {
        let line = out
            .lines()
            .find(|l| l.contains(&format!("{name}{{")) && l.contains(&format!("task_id={id}")))
            .unwrap_or_else(|| panic!("no {name} span of task {id} in\n{out}"));
        for field in ["app=peopleai", "kind=create_account"] {
            assert!(line.contains(field), "{name} lacks {field}: {line}");
        }
    }
}
