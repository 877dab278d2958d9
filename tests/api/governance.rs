//! Governance around the queue: the tamper-evident audit trail, approvals, SLAs, the
//! mass-change guard, notifications and reports.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{okta_user, TestApp};

async fn verify(app: &TestApp) -> Value {
    let res = app
        .api(Method::GET, "/audit/verify", &app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

#[tokio::test]
async fn the_audit_chain_verifies_and_an_edit_behind_the_servers_back_is_named() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    for u in ["a@x.com", "b@x.com", "c@x.com"] {
        app.create_user(okta_user(u)).await;
    }
    let t = app.claim(&app.agent_token).await.unwrap();
    app.complete(&t, json!({"outcome": "done"})).await;
    let v = verify(&app).await;
    assert_eq!(v["ok"], true, "{v}");
    assert!(v["records"].as_i64().unwrap() >= 8);
    let res = app
        .api(Method::GET, "/audit/verify", &app.agent_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403, "admins only");

    // Someone edits the record of who completed the task, directly in the database.
    let (victim, seq): (i64, i64) =
        sqlx::query_as("select audit_id, chain_seq from audit where action = 'task.complete'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    sqlx::query("update audit set actor = 'someone-else' where audit_id = $1")
        .bind(victim)
        .execute(&app.pool)
        .await
        .unwrap();
    let v = verify(&app).await;
    assert_eq!(v["ok"], false);
    assert_eq!(v["first_broken"]["audit_id"], victim);
    assert_eq!(v["first_broken"]["chain_seq"], seq);

    // Deleting a record instead is caught too.
    sqlx::query("update audit set actor = 'robot' where audit_id = $1")
        .bind(victim)
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!(verify(&app).await["ok"], true, "restored");
    sqlx::query("delete from audit where chain_seq = 2")
        .execute(&app.pool)
        .await
        .unwrap();
    let v = verify(&app).await;
    assert_eq!(v["ok"], false);
    assert_eq!(v["first_broken"]["chain_seq"], 3);
}

#[tokio::test]
async fn concurrent_writes_keep_one_unbroken_chain_per_app() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let mut writers = Vec::new();
    for i in 0..40 {
        let req = app
            .scim(Method::POST, "/Users")
            .json(&okta_user(&format!("u{i}@x.com")));
        writers.push(tokio::spawn(
            async move { req.send().await.unwrap().status() },
        ));
    }
    for w in writers {
        assert_eq!(w.await.unwrap(), 201);
    }
    let v = verify(&app).await;
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(
        v["records"], 80,
        "a user.create and a task.create per request"
    );
}

use std::sync::{Arc, Mutex};
use std::time::Duration;

use scimbridge::config::Config;
use scimbridge::db::outbox::NewWebhook;

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

async fn get(app: &TestApp, path: &str) -> Value {
    let res = app
        .api(Method::GET, path, &app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{path}");
    res.json().await.unwrap()
}

fn admin_user(name: &str) -> Value {
    let mut u = okta_user(name);
    u["roles"] = json!([{"value": "Admin"}]);
    u
}

#[tokio::test]
async fn granting_admin_waits_for_an_admin_and_a_rejection_shows_over_scim() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let ann = app.create_user(admin_user("ann@x.com")).await;
    let bob = app.create_user(admin_user("bob@x.com")).await;
    let waiting = app.tasks("?state=awaiting_approval").await;
    assert_eq!(waiting.len(), 2);
    assert_eq!(waiting[0]["needs_approval"], true);
    assert!(
        app.claim(&app.agent_token).await.is_none(),
        "not claimable before approval"
    );

    let (s, err) = post(
        &app,
        &format!("/tasks/{}/approve", waiting[0]["id"]),
        &app.agent_token,
        json!({}),
    )
    .await;
    assert_eq!(
        (s, err["code"].as_str()),
        (403, Some("forbidden_role")),
        "agents cannot approve"
    );
    let (s, t) = post(
        &app,
        &format!("/tasks/{}/approve", waiting[0]["id"]),
        &app.admin_token,
        json!({}),
    )
    .await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(
        (t["state"].as_str(), t["approved_by"].as_str()),
        (Some("open"), Some("alice"))
    );
    let claimed = app.claim(&app.agent_token).await.unwrap();
    assert_eq!(claimed["id"], waiting[0]["id"]);
    let history = get(&app, &format!("/tasks/{}", t["id"])).await["history"].clone();
    assert!(history
        .as_array()
        .unwrap()
        .iter()
        .any(|h| h["action"] == "task.approve" && h["actor"] == "alice"));

    let (s, t) = post(
        &app,
        &format!("/tasks/{}/reject", waiting[1]["id"]),
        &app.admin_token,
        json!({"reason": "not in the sales org"}),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(t["state"], "cancelled");
    assert!(t["cancel_reason"]
        .as_str()
        .unwrap()
        .contains("not in the sales org"));
    let prov = "urn:scimbridge:params:scim:schemas:extension:provisioning:1.0:User";
    let read: Value = app
        .scim(
            Method::GET,
            &format!("/Users/{}?attributes={prov}", bob["id"].as_str().unwrap()),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read[prov]["state"], "rejected");
    let (s, err) = post(
        &app,
        &format!("/tasks/{}/approve", waiting[1]["id"]),
        &app.admin_token,
        json!({}),
    )
    .await;
    assert_eq!(
        (s, err["code"].as_str()),
        (409, Some("not_awaiting_approval"))
    );
    // A Standard user needs no approval.
    app.create_user(okta_user("cid@x.com")).await;
    assert_eq!(app.tasks("?state=open").await.len(), 1);
    let _ = ann;
}

#[tokio::test]
async fn every_task_is_due_by_its_kind() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let u = app.create_user(okta_user("ann@x.com")).await;
    let t = app.claim(&app.agent_token).await.unwrap();
    app.complete(&t, json!({"outcome": "done"})).await;
    app.scim(
        Method::DELETE,
        &format!("/Users/{}", u["id"].as_str().unwrap()),
    )
    .send()
    .await
    .unwrap();
    let hours: Vec<(String, f64)> = sqlx::query_as(
        "select kind::text, extract(epoch from due_at - created_at)::float8 / 3600 from task order by task_id",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        hours,
        [
            ("create_account".to_string(), 72.0),
            ("remove".to_string(), 4.0)
        ]
    );
}

/// A webhook receiver on 127.0.0.1:0 that records what it gets; `fail` makes it 500.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<(axum::http::HeaderMap, String)>>>,
    fail: Arc<std::sync::atomic::AtomicBool>,
}

impl Receiver {
    async fn start(&self) -> String {
        let me = self.clone();
        let router = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
                let me = me.clone();
                async move {
                    if me.fail.load(std::sync::atomic::Ordering::SeqCst) {
                        return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
                    }
                    me.got.lock().unwrap().push((headers, body));
                    axum::http::StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        url
    }

    fn events(&self) -> Vec<Value> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|(_, b)| serde_json::from_str(b).unwrap())
            .collect()
    }

    async fn wait_for(&self, n: usize) -> Vec<Value> {
        for _ in 0..100 {
            if self.events().len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.events()
    }
}

fn hook<'a>(
    name: &'a str,
    url: &'a str,
    format: &'a str,
    secret: Option<&'a str>,
    events: Option<&'a [String]>,
    channel: &'a str,
) -> NewWebhook<'a> {
    NewWebhook {
        app_id: "peopleai",
        name,
        url,
        format,
        secret,
        events,
        channel,
    }
}

fn fast() -> Config {
    let mut c = Config::for_tests();
    c.sweep_interval_secs = 1;
    c.webhook_backoff_secs = 1;
    c
}

#[tokio::test]
async fn webhooks_get_each_event_once_signed_with_hmac() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn_with(pool, fast()).await;
    let rx = Receiver::default();
    let url = rx.start().await;
    app.store
        .add_webhook(&hook("ops", &url, "json", Some("s3cret"), None, "primary"))
        .await
        .unwrap();
    app.create_user(okta_user("ann@x.com")).await;
    let t = app.claim(&app.agent_token).await.unwrap();
    app.complete(&t, json!({"outcome": "done"})).await;
    // Several deliverers send in parallel, so arrival order is not promised (the README
    // says so): a receiver orders by the increasing event id.
    let mut events = rx.wait_for(2).await;
    events.sort_by_key(|e| e["id"].as_i64());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(rx.events().len(), 2, "each event once");
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["task.created", "task.completed"]);
    assert_eq!(events[0]["data"]["task_id"], t["id"]);
    // Verify the signature as a receiver would (README: HMAC-SHA256 of "timestamp.body").
    for (headers, body) in rx.got.lock().unwrap().iter() {
        let ts: u64 = headers["x-scimbridge-timestamp"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let sig = headers["x-scimbridge-signature"].to_str().unwrap();
        assert_eq!(sig, scimbridge::notify::signature("s3cret", ts, body));
        assert_ne!(sig, scimbridge::notify::signature("wrong", ts, body));
    }
    let delivered = get(&app, "/deliveries?state=delivered").await;
    assert_eq!(delivered["deliveries"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn failed_deliveries_are_retried_and_a_restart_loses_nothing() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn_with(pool.clone(), fast()).await;
    let rx = Receiver::default();
    rx.fail.store(true, std::sync::atomic::Ordering::SeqCst);
    let url = rx.start().await;
    app.store
        .add_webhook(&hook("ops", &url, "json", Some("k"), None, "primary"))
        .await
        .unwrap();
    for u in ["a@x.com", "b@x.com", "c@x.com"] {
        app.create_user(okta_user(u)).await;
    }
    // The receiver is down: attempts pile up, nothing is lost.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let pending = get(&app, "/deliveries?state=pending").await;
    assert_eq!(pending["deliveries"].as_array().unwrap().len(), 3);
    assert!(pending["deliveries"][0]["attempts"].as_i64().unwrap() >= 1);
    assert!(pending["deliveries"][0]["last_error"]
        .as_str()
        .unwrap()
        .contains("500"));

    // Restart: the first server stops (its deliverers with it, mid-retry) and a new one
    // starts on the same database while the receiver recovers.
    drop(app);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let app2 = TestApp::spawn_with(pool, fast()).await;
    rx.fail.store(false, std::sync::atomic::Ordering::SeqCst);
    let events = rx.wait_for(3).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        rx.events().len(),
        3,
        "each event exactly once across the restart"
    );
    let mut ids: Vec<i64> = events.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3);
    assert!(get(&app2, "/deliveries?state=pending").await["deliveries"]
        .as_array()
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn undeliverable_events_stay_visible_and_can_be_requeued() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let mut config = fast();
    config.webhook_max_attempts = 1;
    let app = TestApp::spawn_with(pool, config).await;
    app.store
        .add_webhook(&hook(
            "nowhere",
            "http://127.0.0.1:9/hook",
            "slack",
            None,
            None,
            "primary",
        ))
        .await
        .unwrap();
    app.create_user(okta_user("ann@x.com")).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let failed = get(&app, "/deliveries?state=failed").await;
    assert_eq!(failed["deliveries"].as_array().unwrap().len(), 1);
    assert!(failed["deliveries"][0]["last_error"]
        .as_str()
        .unwrap()
        .contains("could not reach"));
    let (s, body) = post(&app, "/deliveries/retry", &app.admin_token, json!({})).await;
    assert_eq!((s, body["requeued"].as_i64()), (200, Some(1)));
}

#[tokio::test]
async fn overdue_leaver_tasks_are_announced_and_escalated_to_the_second_channel() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn_with(pool, fast()).await;
    let (primary, escalation) = (Receiver::default(), Receiver::default());
    let (p_url, e_url) = (primary.start().await, escalation.start().await);
    app.store
        .add_webhook(&hook(
            "queue",
            &p_url,
            "json",
            Some("k"),
            Some(&["task.overdue".into(), "task.due_soon".into()]),
            "primary",
        ))
        .await
        .unwrap();
    app.store
        .add_webhook(&hook("security", &e_url, "slack", None, None, "escalation"))
        .await
        .unwrap();
    let u = app.create_user(okta_user("ann@x.com")).await;
    let t = app.claim(&app.agent_token).await.unwrap();
    app.complete(&t, json!({"outcome": "done"})).await;
    app.scim(
        Method::DELETE,
        &format!("/Users/{}", u["id"].as_str().unwrap()),
    )
    .send()
    .await
    .unwrap();
    // The removal's 4 hours have passed.
    sqlx::query("update task set created_at = now() - interval '5 hours', due_at = now() - interval '1 hour' where kind = 'remove'")
        .execute(&app.pool)
        .await
        .unwrap();
    let overdue = primary.wait_for(1).await;
    assert_eq!(overdue[0]["type"], "task.overdue");
    let esc = escalation.wait_for(1).await;
    assert!(
        esc[0]["text"].as_str().unwrap().contains("escalated"),
        "{esc:?}"
    );
    let task = &app.tasks("?kind=remove").await[0];
    assert_eq!(task["sla_state"], "overdue");
    let sla = get(&app, "/reports/sla").await;
    let remove = sla["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kind"] == "remove")
        .unwrap()
        .clone();
    assert_eq!(remove["overdue_now"], 1);
}

#[tokio::test]
async fn a_burst_of_deactivations_is_held_as_one_batch_until_an_admin_decides() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let mut ids = Vec::new();
    for i in 0..25 {
        ids.push(
            app.create_user(okta_user(&format!("u{i}@x.com"))).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    while let Some(t) = app.claim(&app.agent_token).await {
        app.complete(&t, json!({"outcome": "done"})).await;
    }
    for id in &ids {
        app.patch(
            &format!("/Users/{id}"),
            json!([{"op": "replace", "path": "active", "value": false}]),
        )
        .await;
    }
    // People.ai: more than 20 leavers within 10 minutes are held.
    assert_eq!(app.tasks("?state=open&limit=100").await.len(), 20);
    let held = app.tasks("?state=held").await;
    assert_eq!(held.len(), 5);
    let batches = get(&app, "/batches").await;
    let b = batches["batches"][0].clone();
    assert_eq!(
        (b["state"].as_str(), b["kind"].as_str(), b["tasks"].as_i64()),
        (Some("held"), Some("leavers"), Some(5))
    );
    assert_eq!(b["by_kind"]["deactivate"], 5);
    assert_eq!(b["causes"]["okta"], 5, "who sent them");
    assert_eq!(b["users"].as_array().unwrap().len(), 5);
    assert!(app
        .claim(&app.agent_token)
        .await
        .map(|t| t["state"] != "held")
        .unwrap_or(true));

    let (s, err) = post(
        &app,
        &format!("/batches/{}/release", b["id"]),
        &app.agent_token,
        json!({}),
    )
    .await;
    assert_eq!((s, err["code"].as_str()), (403, Some("forbidden_role")));
    let (s, released) = post(
        &app,
        &format!("/batches/{}/release", b["id"]),
        &app.admin_token,
        json!({}),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        (released["state"].as_str(), released["decided_by"].as_str()),
        (Some("released"), Some("alice"))
    );
    assert!(app.tasks("?state=held").await.is_empty());
    let (s, err) = post(
        &app,
        &format!("/batches/{}/cancel", b["id"]),
        &app.admin_token,
        json!({}),
    )
    .await;
    assert_eq!((s, err["code"].as_str()), (409, Some("batch_decided")));
}

#[tokio::test]
async fn a_large_group_push_is_held_with_its_preview_and_can_be_cancelled() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let mut members = Vec::new();
    for i in 0..55 {
        let id = app.create_user(okta_user(&format!("u{i}@x.com"))).await["id"].clone();
        members.push(json!({"value": id}));
    }
    while let Some(t) = app.claim(&app.agent_token).await {
        app.complete(&t, json!({"outcome": "done"})).await;
    }
    app.create_group(json!({"displayName": "People.ai Admins", "members": members}))
        .await;
    let held = app.tasks("?state=held&limit=100").await;
    assert_eq!(held.len(), 55, "55 role changes held, none queued");
    let b = get(&app, "/batches").await["batches"][0].clone();
    assert_eq!(b["kind"], "group_push");
    assert!(
        b["reason"].as_str().unwrap().contains("People.ai Admins"),
        "{b}"
    );
    let (s, cancelled) = post(
        &app,
        &format!("/batches/{}/cancel", b["id"]),
        &app.admin_token,
        json!({}),
    )
    .await;
    assert_eq!((s, cancelled["state"].as_str()), (200, Some("cancelled")));
    assert!(app.tasks("?state=held").await.is_empty());
    assert_eq!(
        get(&app, "/users?state=rejected&limit=100").await["users"]
            .as_array()
            .map(|a| a.len()),
        Some(55)
    );
}

#[tokio::test]
async fn reports_count_seats_and_list_leavers_and_the_audit_exports_as_csv() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let a = app.create_user(okta_user("a@x.com")).await;
    app.create_user(okta_user("b@x.com")).await;
    let t = app.claim(&app.agent_token).await.unwrap();
    app.complete(&t, json!({"outcome": "done"})).await;
    app.scim(
        Method::DELETE,
        &format!("/Users/{}", a["id"].as_str().unwrap()),
    )
    .send()
    .await
    .unwrap();
    let seats = get(&app, "/reports/seats").await["seats"].clone();
    assert_eq!(seats["desired_active"], 1);
    assert_eq!(seats["confirmed_active"], 1);
    assert_eq!(seats["pending_creations"], 1);
    assert_eq!(seats["pending_removals"], 1);
    let r = app.claim(&app.agent_token).await.unwrap();
    assert_eq!(r["kind"], "remove");
    app.complete(&r, json!({"outcome": "done", "fields": {"seat_freed": "unknown", "ownership_moved_to": "b@x.com"}})).await;
    let seats = get(&app, "/reports/seats").await["seats"].clone();
    assert_eq!(
        (
            seats["confirmed_active"].as_i64(),
            seats["removals_seat_unconfirmed"].as_i64()
        ),
        (Some(0), Some(1))
    );
    let leavers = get(&app, "/reports/leavers").await["leavers"].clone();
    assert_eq!(leavers[0]["user_name"], "a@x.com");
    assert_eq!(leavers[0]["done_by"], "robot");
    assert_eq!(leavers[0]["seat_freed"], "unknown");
    assert_eq!(leavers[0]["ownership_moved_to"], "b@x.com");

    let res = app
        .api(
            Method::GET,
            &format!("/audit/export?subject={}", a["id"].as_str().unwrap()),
            &app.admin_token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let csv = res.text().await.unwrap();
    let actions: Vec<&str> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(4).unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "task.create",
            "user.create",
            "task.claim",
            "task.complete",
            "task.create",
            "user.delete",
            "task.claim",
            "task.complete"
        ],
        "the chain request → completion in order"
    );
    assert!(csv.starts_with("chain_seq,at,actor"));
}

#[tokio::test]
async fn the_cli_manages_webhooks_verifies_the_audit_and_prints_reports() {
    let db = crate::db::test_db().await;
    crate::needs_server!(db, "runs the CLI as a second process on the test database");
    let pool = db.pool();
    use crate::profiles::{database_url, scimbridge};
    let app = TestApp::spawn(pool.clone()).await;
    app.create_user(okta_user("ann@x.com")).await;
    let db = database_url(&pool);
    let out = scimbridge(
        &db,
        &[
            "webhooks",
            "add",
            "--name",
            "ops",
            "--url",
            "http://127.0.0.1:9/x",
            "--secret",
            "0123456789abcdef0123",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = scimbridge(
        &db,
        &[
            "webhooks",
            "add",
            "--name",
            "bad",
            "--url",
            "https://x",
            "--format",
            "json",
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--secret"));
    let out = scimbridge(&db, &["webhooks", "list"]);
    let listed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        listed.contains("http://127.0.0.1:9/x") && !listed.contains("0123456789abcdef0123"),
        "{listed}"
    );

    let out = scimbridge(&db, &["audit", "verify"]);
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("peopleai: 2 audit records, chain intact")
    );
    sqlx::query("update audit set outcome = 'forged' where chain_seq = 1")
        .execute(&pool)
        .await
        .unwrap();
    let out = scimbridge(&db, &["audit", "verify", "--app", "peopleai"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("BROKEN"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Async: the in-process server answers on this test's runtime while the CLI waits.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_scimbridge"))
        .args([
            "reports",
            "seats",
            "--url",
            &app.root,
            "--token",
            &app.admin_token,
        ])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seats: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seats["seats"]["desired_active"], 1);
    // Async: the in-process server answers on this test's runtime while the CLI waits.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_scimbridge"))
        .args([
            "reports",
            "audit",
            "--url",
            &app.root,
            "--token",
            &app.agent_token,
        ])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success(), "the audit export is for admins");
    assert!(String::from_utf8_lossy(&out.stderr).contains("forbidden_role"));
}

/// Inserts a live user of `app` in an open transaction.
async fn raw_user(tx: &mut sqlx::PgConnection, app: &str, name: &str) {
    sqlx::query(
        "insert into scim_user (user_id, app_id, user_name, active, doc) \
         values (gen_random_uuid(), $1, $2, true, '{}')",
    )
    .bind(app)
    .bind(name)
    .execute(&mut *tx)
    .await
    .unwrap();
}

/// The first writes of an app cannot deadlock. A writer whose counter update ran before
/// the app had a chain head used to hold the counter without the head, and deadlock
/// (40P01, a 500) with a writer that came after the head existed. Since issue #13 no
/// write takes either (the counter takes inserted deltas, audit records are sealed
/// later): the same interleaving commits both writers.
#[tokio::test]
async fn the_first_writes_of_a_new_app_cannot_deadlock() {
    let db = crate::db::test_db().await;
    crate::needs_server!(
        db,
        "runs two concurrent transactions (deadlock check), two connections"
    );
    let pool = db.pool();
    sqlx::query(
        "insert into app (app_id, display_name, profile) values ('fresh', 'Fresh', 'peopleai')",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("delete from audit_head where app_id = 'fresh'")
        .execute(&pool)
        .await
        .unwrap();
    // A: its user counter update fires now.
    let mut a = pool.begin().await.unwrap();
    raw_user(&mut a, "fresh", "a").await;
    // Another writer's first audit record creates the chain head and commits.
    let p = pool.clone();
    let head = tokio::spawn(async move {
        sqlx::query("insert into audit_head (app_id, last_hash) values ('fresh', '\\x') on conflict do nothing")
            .execute(&p)
            .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    // B: a user write that commits now.
    let p = pool.clone();
    let b = tokio::spawn(async move {
        let mut b = p.begin().await?;
        raw_user(&mut b, "fresh", "b").await;
        b.commit().await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A: its audit record links the chain, then it commits.
    sqlx::query(
        "insert into audit (app_id, actor, actor_role, action, subject_type, subject_id, outcome) \
         values ('fresh', 'okta', 'scim', 'user.create', 'user', 'a', 'created')",
    )
    .execute(&mut *a)
    .await
    .unwrap();
    a.commit().await.unwrap();
    head.await.unwrap().unwrap();
    let b = b.await.unwrap();
    assert!(b.is_ok(), "B: {b:?}");
    let live: i64 = sqlx::query_scalar(
        "select coalesce((select live from app_user_count where app_id = 'fresh'), 0) \
              + (select sum(delta) from app_user_count_delta where app_id = 'fresh')::bigint",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(live, 2);
}
