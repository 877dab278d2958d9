//! The ticket bridge end to end, against local fakes of Jira Cloud and ServiceNow that
//! speak their documented JSON (tests/api/ticket_fakes.rs): configuration, tickets
//! created through the outbox exactly once (also when an answer is lost), closing tasks
//! from a ticket's status (webhook and poll), closing tickets from scimbridge, and the
//! completion-field rule for removals.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::helpers::{count, okta_user, TestApp};
use crate::ticket_fakes::{adf_text, jira_site, servicenow_instance, Fake};
use crate::web::Browser;
use scimbridge::config::Config;
use scimbridge::tickets::sync::Syncer;

fn fast() -> Config {
    let mut c = Config::for_tests();
    c.webhook_backoff_secs = 1;
    c
}

async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = app.api(method, path, token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

fn jira_bridge(fake: &Fake) -> Value {
    json!({
        "system": "jira", "base_url": fake.url,
        "auth": {"type": "basic", "username": "bot@acme.example", "secret": "jira-token"},
        "settings": {"project": "IT"},
    })
}

fn servicenow_bridge(fake: &Fake, table: &str) -> Value {
    json!({
        "system": "servicenow", "base_url": fake.url,
        "auth": {"type": "basic", "username": "scim.bridge", "secret": "sn-pass"},
        "settings": {"table": table},
        "poll_seconds": 30,
    })
}

async fn configure(app: &TestApp, body: Value) -> Value {
    let (s, v) = call(
        app,
        Method::PUT,
        "/ticket-bridge",
        &app.admin_token,
        Some(body),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    v
}

async fn task(app: &TestApp, id: i64) -> Value {
    call(
        app,
        Method::GET,
        &format!("/tasks/{id}"),
        &app.admin_token,
        None,
    )
    .await
    .1
}

/// Waits until the task's ticket is linked; returns the task.
async fn linked(app: &TestApp, id: i64) -> Value {
    for _ in 0..200 {
        let t = task(app, id).await;
        if t["ticket"]["key"].is_string() {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("task {id} got no ticket: {}", task(app, id).await);
}

async fn first_task_id(app: &TestApp) -> i64 {
    app.tasks("").await.last().unwrap()["id"].as_i64().unwrap()
}

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn jira_hook(id: &str, key: &str, status: &str, fields: Value) -> Value {
    let mut f = fields;
    f["status"] = json!({"name": status, "statusCategory": {"key": "done"}});
    json!({"timestamp": 1764921600000_i64, "webhookEvent": "jira:issue_updated",
           "issue_event_type_name": "issue_generic",
           "user": {"accountId": "5b10a2844c20165700ede21g", "displayName": "Jane Doe"},
           "issue": {"id": id, "key": key, "fields": f},
           "changelog": {"items": [{"field": "status", "fromString": "In Progress", "toString": status}]}})
}

/// Posts a payload to the bridge's webhook URL as Jira does: signed with the secret.
async fn post_signed(app: &TestApp, hook_url: &str, secret: &str, payload: &Value) -> (u16, Value) {
    let body = serde_json::to_vec(payload).unwrap();
    let res = app
        .client
        .post(hook_url)
        .header("content-type", "application/json")
        .header("x-hub-signature", sign(secret, &body))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn post_bearer(app: &TestApp, hook_url: &str, secret: &str, payload: &Value) -> (u16, Value) {
    let res = app
        .client
        .post(hook_url)
        .bearer_auth(secret)
        .json(payload)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// The hook URL of a bridge answer, on this test server (the API answers with the
/// request's Host, which is the test server).
fn hook(v: &Value) -> String {
    v["hook_url"].as_str().unwrap().to_owned()
}

async fn key_of(app: &TestApp, id: i64) -> String {
    task(app, id).await["ticket"]["key"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn history(t: &Value) -> Vec<Value> {
    t["history"].as_array().cloned().unwrap_or_default()
}

/// A syncer like the server's, to run a poll round now.
fn syncer(app: &TestApp) -> Syncer {
    Syncer {
        store: app.store.clone(),
        sealer: Arc::new(scimbridge::secrets::Sealer::new(None)),
        http: reqwest::Client::new(),
        settle: Duration::ZERO,
        public_url: None,
    }
}

#[tokio::test]
async fn jira_round_trip_creates_an_issue_and_closes_the_task_from_its_webhook() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn_with(pool, fast()).await;
    let jira = jira_site().await;
    let bridge = configure(&app, jira_bridge(&jira)).await;
    let secret = bridge["hook_secret"].as_str().unwrap().to_owned();
    assert!(hook(&bridge).ends_with(&format!(
        "/api/v1/ticket-hooks/{}",
        bridge["bridge_id"].as_str().unwrap()
    )));
    assert!(
        !bridge.to_string().contains("jira-token"),
        "the API token is never shown"
    );

    let user = app.create_user(okta_user("ann@x.com")).await;
    let id = first_task_id(&app).await;
    let t = linked(&app, id).await;
    assert_eq!(t["ticket"]["system"], "jira");
    assert_eq!(t["ticket"]["key"], "IT-1");
    assert_eq!(t["ticket"]["url"], format!("{}/browse/IT-1", jira.url));
    assert_eq!(t["ticket"]["state"], "open");

    // What Jira got: one create, with basic auth, an ADF description with the steps, and
    // the labels a retry finds it by.
    let creates = jira.calls(Method::POST, "/rest/api/3/issue");
    assert_eq!(creates.len(), 1);
    let fields = &creates[0].body["fields"];
    assert_eq!(fields["project"]["key"], "IT");
    assert_eq!(fields["issuetype"]["name"], "Task");
    assert_eq!(fields["summary"], t["title"]);
    assert_eq!(
        fields["labels"],
        json!(["scimbridge", format!("scimbridge-peopleai-{id}")])
    );
    let description = adf_text(&fields["description"]);
    assert!(
        description.contains(&format!("scimbridge task #{id}")),
        "{description}"
    );
    assert!(
        description.contains("move this ticket to Done"),
        "{description}"
    );
    assert_eq!(
        creates[0].authorization.as_deref(),
        Some(jira.expect_auth.as_str())
    );

    // A person moves the issue to Done in Jira; Jira's webhook says so.
    jira.set("IT-1", "Done", json!({}));
    let payload = jira_hook("10001", "IT-1", "Done", json!({}));
    let (s, answer) = post_signed(&app, &hook(&bridge), &secret, &payload).await;
    assert_eq!(
        (s, answer["outcome"].as_str()),
        (200, Some("closed")),
        "{answer}"
    );
    let done = task(&app, id).await;
    assert_eq!(done["state"], "done");
    assert_eq!(done["finished_by"], "Jira IT-1");
    assert_eq!(
        done["note"],
        "Closed by Jira IT-1 reaching Done (changed by Jane Doe)"
    );
    assert_eq!(done["ticket"]["closed_by_ticket"], true);
    let completion = history(&done)
        .into_iter()
        .find(|h| h["action"] == "task.complete")
        .unwrap();
    assert_eq!(completion["actor"], "Jira IT-1");
    assert_eq!(completion["detail"]["ticket"], "IT-1");
    assert_eq!(completion["detail"]["via"], "webhook");
    assert_eq!(completion["detail"]["changed_by"], "Jane Doe");
    // The confirmed state moved, as for any completion.
    let (_, u) = call(
        &app,
        Method::GET,
        &format!("/users/{}", user["id"].as_str().unwrap()),
        &app.admin_token,
        None,
    )
    .await;
    assert_eq!(u["confirmed"]["user_name"], "ann@x.com", "{u}");

    // scimbridge says so on the issue, without moving it again.
    jira.wait("the confirming comment", |f| {
        !f.tickets()[0].comments.is_empty()
    })
    .await;
    let comment = adf_text(&jira.tickets()[0].comments[0]);
    assert!(
        comment.contains("recorded this") && comment.contains(&format!("Task #{id}")),
        "{comment}"
    );
    assert!(jira.calls(Method::POST, "/transitions").is_empty());

    // The same webhook again changes nothing.
    let (s, answer) = post_signed(&app, &hook(&bridge), &secret, &payload).await;
    assert_eq!((s, answer["outcome"].as_str()), (200, Some("finished")));
    let completions = history(&task(&app, id).await)
        .into_iter()
        .filter(|h| h["action"] == "task.complete")
        .count();
    assert_eq!(completions, 1);
}

#[tokio::test]
async fn a_task_done_in_scimbridge_closes_its_jira_issue_with_a_comment() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn_with(pool, fast()).await;
    let jira = jira_site().await;
    configure(&app, jira_bridge(&jira)).await;
    app.create_user(okta_user("ann@x.com")).await;
    let id = first_task_id(&app).await;
    linked(&app, id).await;
    let t = app.claim(&app.agent_token).await.unwrap();
    let res = app
        .complete(&t, json!({"outcome": "done", "note": "added in the console", "fields": {"app_account_id": "pa-7"}}))
        .await;
    assert_eq!(res.status(), 200);
    jira.wait("the issue moved to Done", |f| {
        f.tickets()[0].status == "Done"
    })
    .await;
    jira.wait("the comment", |f| !f.tickets()[0].comments.is_empty())
        .await;
    let comment = adf_text(&jira.tickets()[0].comments[0]);
    assert!(
        comment.contains(&format!("Task #{id} was completed in scimbridge by robot"))
            && comment.contains("added in the console")
            && comment.contains("app_account_id = pa-7"),
        "{comment}"
    );
    let transition = &jira.calls(Method::POST, "/transitions")[0];
    assert_eq!(transition.body, json!({"transition": {"id": "31"}}));
    for _ in 0..50 {
        if task(&app, id).await["ticket"]["state"] == "closed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(task(&app, id).await["ticket"]["state"], "closed");
}

#[tokio::test]
async fn servicenow_round_trip_by_poll_by_business_rule_and_from_scimbridge() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn_with(pool, fast()).await;
    let sn = servicenow_instance().await;
    let bridge = configure(&app, servicenow_bridge(&sn, "sc_task")).await;
    let secret = bridge["hook_secret"].as_str().unwrap().to_owned();
    for u in ["ann@x.com", "bea@x.com", "cid@x.com"] {
        app.create_user(okta_user(u)).await;
    }
    let ids: Vec<i64> = app
        .tasks("")
        .await
        .iter()
        .map(|t| t["id"].as_i64().unwrap())
        .collect();
    for id in &ids {
        linked(&app, *id).await;
    }
    let records = sn.tickets();
    assert_eq!(records.len(), 3);
    for r in &records {
        assert!(r.key.starts_with("SCTASK"));
        assert_eq!(r.fields["correlation_display"], "scimbridge");
        assert!(r.fields["description"].as_str().unwrap().contains("1. "));
    }

    // 1. Done in scimbridge: the record is closed complete with a work note.
    let t = app.claim(&app.agent_token).await.unwrap();
    let done_id = t["id"].as_i64().unwrap();
    let done_key = key_of(&app, done_id).await;
    app.complete(&t, json!({"outcome": "done"})).await;
    sn.wait("the record closed", |f| {
        f.tickets()
            .iter()
            .any(|r| r.key == done_key && r.status == "3")
    })
    .await;
    let patch = sn
        .calls(Method::PATCH, "/api/now/table/sc_task/")
        .pop()
        .unwrap();
    assert_eq!(patch.body["state"], "3");
    assert!(patch.body["close_notes"]
        .as_str()
        .unwrap()
        .contains("completed in scimbridge"));

    // 2. Closed in ServiceNow, seen by the status poll.
    let polled_id = *ids.iter().find(|i| **i != done_id).unwrap();
    let polled_key = key_of(&app, polled_id).await;
    sn.set(&polled_key, "3", json!({}));
    sqlx::query("update ticket set next_poll_at = now() where task_id = $1")
        .bind(polled_id)
        .execute(&app.pool)
        .await
        .unwrap();
    let polled = syncer(&app).poll_once().await.unwrap();
    assert!(polled >= 1);
    let closed = task(&app, polled_id).await;
    assert_eq!(closed["state"], "done", "{closed}");
    assert_eq!(closed["finished_by"], format!("ServiceNow {polled_key}"));
    assert_eq!(
        closed["note"],
        format!("Closed by ServiceNow {polled_key} reaching 3")
    );
    let completion = history(&closed)
        .into_iter()
        .find(|h| h["action"] == "task.complete")
        .unwrap();
    assert_eq!(completion["detail"]["via"], "poll");

    // 3. Closed in ServiceNow, told by a business rule (bearer secret, flat columns).
    let hooked_id = *ids
        .iter()
        .find(|i| **i != done_id && **i != polled_id)
        .unwrap();
    let hooked_key = key_of(&app, hooked_id).await;
    let record = sn
        .tickets()
        .into_iter()
        .find(|r| r.key == hooked_key)
        .unwrap();
    let payload = json!({"number": hooked_key, "sys_id": record.id, "state": "7",
                         "sys_updated_by": "fred.admin"});
    let (s, answer) = post_bearer(&app, &hook(&bridge), &secret, &payload).await;
    assert_eq!(
        (s, answer["outcome"].as_str()),
        (200, Some("closed")),
        "{answer}"
    );
    let skipped = task(&app, hooked_id).await;
    assert_eq!(
        skipped["state"], "not_applicable",
        "7 (Closed Skipped) maps to not_applicable"
    );
    assert_eq!(
        skipped["note"],
        format!("Closed by ServiceNow {hooked_key} reaching 7 (changed by fred.admin)")
    );
}

#[tokio::test]
async fn polls_back_off_while_a_ticket_does_not_change() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn_with(pool, fast()).await;
    let sn = servicenow_instance().await;
    configure(&app, servicenow_bridge(&sn, "incident")).await;
    app.create_user(okta_user("ann@x.com")).await;
    let id = first_task_id(&app).await;
    linked(&app, id).await;
    let interval = || async {
        sqlx::query_scalar::<_, i32>("select poll_interval_secs from ticket where task_id = $1")
            .bind(id)
            .fetch_one(&app.pool)
            .await
            .unwrap()
    };
    assert_eq!(interval().await, 30);
    let due_now = || async {
        sqlx::query("update ticket set next_poll_at = now() where task_id = $1")
            .bind(id)
            .execute(&app.pool)
            .await
            .unwrap();
    };
    let mut seen = Vec::new();
    for _ in 0..3 {
        due_now().await;
        syncer(&app).poll_once().await.unwrap();
        seen.push(interval().await);
    }
    // The record is still "1" (New), as its create answer said: each poll doubles.
    assert_eq!(seen, [60, 120, 240]);
    let key = task(&app, id).await["ticket"]["key"]
        .as_str()
        .unwrap()
        .to_owned();
    sn.set(&key, "2", json!({}));
    due_now().await;
    syncer(&app).poll_once().await.unwrap();
    assert_eq!(
        interval().await,
        30,
        "a change starts again from the first interval"
    );
    assert_eq!(task(&app, id).await["ticket"]["status"], "2");
    // A failing poll backs off too, and says why.
    sqlx::query("update ticket set remote_id = 'gone' where task_id = $1")
        .bind(id)
        .execute(&app.pool)
        .await
        .unwrap();
    due_now().await;
    syncer(&app).poll_once().await.unwrap();
    let (err, iv): (Option<String>, i32) =
        sqlx::query_as("select poll_error, poll_interval_secs from ticket where task_id = $1")
            .bind(id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(err.unwrap().contains("No Record found"));
    assert_eq!(iv, 60);
    assert_eq!(task(&app, id).await["state"], "open");
}

/// Jira's status poll without any webhook: polls that see no change back off, the closing
/// status closes the task (recorded as seen by the poll), and a finished task's ticket is
/// polled no more. `closing` is the status that closes it; `backoff` the intervals after
/// each of three polls before it does.
async fn closed_by_the_jira_poll(
    app: &TestApp,
    jira: &Fake,
    closing: &str,
    backoff: [i32; 3],
) -> Value {
    app.create_user(okta_user("ann@x.com")).await;
    let id = first_task_id(app).await;
    let key = linked(app, id).await["ticket"]["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let remote_id = jira.tickets()[0].id.clone();
    let interval = || async {
        sqlx::query_scalar::<_, i32>("select poll_interval_secs from ticket where task_id = $1")
            .bind(id)
            .fetch_one(&app.pool)
            .await
            .unwrap()
    };
    let due_now = || async {
        sqlx::query("update ticket set next_poll_at = now() where task_id = $1")
            .bind(id)
            .execute(&app.pool)
            .await
            .unwrap();
    };
    assert_eq!(interval().await, 30);
    let mut seen = Vec::new();
    for _ in 0..3 {
        due_now().await;
        assert_eq!(syncer(app).poll_once().await.unwrap(), 1);
        seen.push(interval().await);
    }
    assert_eq!(seen, backoff, "unchanged statuses back off");
    assert_eq!(task(app, id).await["state"], "open");
    // The poll asks the platform API for the issue by its id.
    assert!(
        jira.calls(Method::GET, &format!("/rest/api/3/issue/{remote_id}"))
            .len()
            >= 3
    );

    // A person closes the ticket; no webhook is configured in Jira: the poll sees it.
    jira.set(&key, closing, json!({}));
    due_now().await;
    assert_eq!(syncer(app).poll_once().await.unwrap(), 1);
    let done = task(app, id).await;
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["finished_by"], format!("Jira {key}"));
    assert_eq!(
        done["note"],
        format!("Closed by Jira {key} reaching {closing}")
    );
    assert_eq!(done["ticket"]["closed_by_ticket"], true);
    assert_eq!(done["ticket"]["status"], closing);
    let completion = history(&done)
        .into_iter()
        .find(|h| h["action"] == "task.complete")
        .unwrap();
    assert_eq!(completion["actor"], format!("Jira {key}"));
    assert_eq!(completion["detail"]["via"], "poll");
    assert_eq!(completion["detail"]["ticket"], key.as_str());

    // The finished task's ticket is polled no more, and the task is completed once.
    due_now().await;
    assert_eq!(syncer(app).poll_once().await.unwrap(), 0);
    let completions = history(&task(app, id).await)
        .into_iter()
        .filter(|h| h["action"] == "task.complete")
        .count();
    assert_eq!(completions, 1);
    done
}

#[tokio::test]
async fn a_jira_issue_closes_its_task_by_the_status_poll_with_backoff() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn_with(pool, fast()).await;
    let jira = jira_site().await;
    let mut body = jira_bridge(&jira);
    body["poll_seconds"] = json!(30);
    configure(&app, body).await;
    // The create answer has no status: the first poll learns "To Do" (a change, so the
    // interval stays), the next two see it unchanged and double it.
    closed_by_the_jira_poll(&app, &jira, "Done", [30, 60, 120]).await;
}

#[tokio::test]
async fn a_service_management_request_closes_its_task_by_the_status_poll_with_backoff() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn_with(pool, fast()).await;
    let jira = jira_site().await;
    let mut body = jira_bridge(&jira);
    body["system"] = json!("jira_service_management");
    body["settings"] = json!({"service_desk_id": "4", "request_type_id": "17",
                              "statuses": {"Resolved": "done"}});
    body["poll_seconds"] = json!(30);
    configure(&app, body).await;
    // The create answer already says "Waiting for support": every poll before the
    // request is resolved doubles the interval.
    let done = closed_by_the_jira_poll(&app, &jira, "Resolved", [60, 120, 240]).await;
    assert!(done["ticket"]["key"].as_str().unwrap().starts_with("HD-"));
}

async fn lost_answer_makes_one_ticket(app: &TestApp, fake: &Fake, create_path: &str) {
    fake.lose_next_create();
    app.create_user(okta_user("ann@x.com")).await;
    let id = first_task_id(app).await;
    let t = linked(app, id).await;
    // The first create's answer was lost; the retry looked, found it, and adopted it.
    assert_eq!(fake.tickets().len(), 1, "exactly one ticket");
    assert_eq!(
        fake.calls(Method::POST, create_path).len(),
        1,
        "created once"
    );
    assert_eq!(t["ticket"]["key"], fake.tickets()[0].key);
    let linked_entry = history(&t)
        .into_iter()
        .find(|h| h["action"] == "task.ticket")
        .unwrap();
    assert_eq!(linked_entry["outcome"], "found", "{linked_entry}");
    let attempts: i32 = sqlx::query_scalar("select create_attempts from ticket where task_id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(attempts, 1);
    let (_, d) = call(
        app,
        Method::GET,
        "/deliveries?state=delivered",
        &app.admin_token,
        None,
    )
    .await;
    let create = d["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["kind"] == "ticket.create")
        .unwrap()
        .clone();
    assert_eq!(create["attempts"], 2, "{create}");
}

#[tokio::test]
async fn a_lost_jira_answer_never_makes_a_second_issue() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn_with(pool, fast()).await;
    let jira = jira_site().await;
    configure(&app, jira_bridge(&jira)).await;
    lost_answer_makes_one_ticket(&app, &jira, "/rest/api/3/issue").await;
    assert_eq!(jira.calls(Method::POST, "/search/jql").len(), 1);
}

#[tokio::test]
async fn a_lost_service_management_answer_never_makes_a_second_request() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn_with(pool, fast()).await;
    let jira = jira_site().await;
    let mut body = jira_bridge(&jira);
    body["system"] = json!("jira_service_management");
    body["settings"] = json!({"service_desk_id": "4", "request_type_id": "17"});
    configure(&app, body).await;
    lost_answer_makes_one_ticket(&app, &jira, "/rest/servicedeskapi/request").await;
    let summary = jira.tickets()[0].fields["summary"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(summary.ends_with("[scimbridge-peopleai-1]"), "{summary}");
    let search = &jira.calls(Method::POST, "/search/jql")[0];
    assert!(search.body["jql"]
        .as_str()
        .unwrap()
        .starts_with("summary ~"));
}

#[tokio::test]
async fn a_lost_servicenow_answer_never_makes_a_second_record() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn_with(pool, fast()).await;
    let sn = servicenow_instance().await;
    configure(&app, servicenow_bridge(&sn, "sc_task")).await;
    lost_answer_makes_one_ticket(&app, &sn, "/api/now/table/sc_task").await;
    let search = sn
        .calls(Method::GET, "/api/now/table/sc_task")
        .into_iter()
        .find(|c| c.query.contains("sysparm_query"))
        .unwrap();
    assert!(
        search
            .query
            .contains("correlation_id%3Dscimbridge-peopleai-1"),
        "{}",
        search.query
    );
}

#[tokio::test]
async fn jira_waits_for_its_search_index_before_looking_for_a_lost_issue() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let mut config = fast();
    config.ticket_settle_secs = 3;
    let app = TestApp::spawn_with(pool, config).await;
    let jira = jira_site().await;
    configure(&app, jira_bridge(&jira)).await;
    jira.lose_next_create();
    app.create_user(okta_user("ann@x.com")).await;
    let id = first_task_id(&app).await;
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert!(
        jira.calls(Method::POST, "/search/jql").is_empty(),
        "not before the settle time"
    );
    let (_, d) = call(
        &app,
        Method::GET,
        "/deliveries?state=pending",
        &app.admin_token,
        None,
    )
    .await;
    let pending = d["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["kind"] == "ticket.create")
        .unwrap()
        .clone();
    let error = pending["last_error"].as_str().unwrap();
    assert!(
        error.contains("search") || error.contains("may exist"),
        "{pending}"
    );
    let t = linked(&app, id).await;
    assert_eq!(t["ticket"]["key"], "IT-1");
    assert_eq!(jira.tickets().len(), 1);
}

#[tokio::test]
async fn refused_creates_are_retried_with_the_systems_error_and_then_succeed() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn_with(pool, fast()).await;
    let jira = jira_site().await;
    configure(&app, jira_bridge(&jira)).await;
    jira.refuse_next_create(
        400,
        json!({"errorMessages": [], "errors": {"components": "Component is required."}}),
    );
    app.create_user(okta_user("ann@x.com")).await;
    let id = first_task_id(&app).await;
    let t = linked(&app, id).await;
    assert_eq!(jira.tickets().len(), 1);
    // A refusal is certain: the retry created without searching first.
    assert!(jira.calls(Method::POST, "/search/jql").is_empty());
    assert_eq!(t["ticket"]["key"], "IT-1");

    // Wrong credentials: the delivery keeps failing with Jira's words, visibly.
    let mut body = jira_bridge(&jira);
    body["auth"]["secret"] = json!("wrong");
    configure(&app, body).await;
    app.create_user(okta_user("bea@x.com")).await;
    let mut last = Value::Null;
    for _ in 0..100 {
        let (_, d) = call(
            &app,
            Method::GET,
            "/deliveries?state=pending",
            &app.admin_token,
            None,
        )
        .await;
        if let Some(x) = d["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["kind"] == "ticket.create" && x["attempts"].as_i64() >= Some(1))
        {
            last = x.clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let error = last["last_error"].as_str().unwrap_or_default().to_owned();
    assert!(
        error.contains("401") && error.contains("Client must be authenticated"),
        "{last}"
    );
    assert_eq!(jira.tickets().len(), 1);
    let state: String =
        sqlx::query_scalar("select state from ticket order by task_id desc limit 1")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(state, "pending", "a refusal leaves nothing to look for");
}

/// A user created and confirmed in the app, then deleted in the IdP: a remove task.
async fn removal(app: &TestApp) -> i64 {
    let user = app.create_user(okta_user("leaver@x.com")).await;
    let t = app.claim(&app.agent_token).await.unwrap();
    assert_eq!(
        app.complete(&t, json!({"outcome": "done"})).await.status(),
        200
    );
    let res = app
        .scim(
            Method::DELETE,
            &format!("/Users/{}", user["id"].as_str().unwrap()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    app.tasks("?kind=remove").await[0]["id"].as_i64().unwrap()
}

#[tokio::test]
async fn a_removal_closed_in_jira_needs_seat_freed_from_a_mapped_field_or_a_person() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn_with(pool, fast()).await;
    let jira = jira_site().await;
    let mut body = jira_bridge(&jira);
    body["kinds"] = json!(["remove", "deactivate"]);
    let bridge = configure(&app, body).await;
    let secret = bridge["hook_secret"].as_str().unwrap().to_owned();
    let id = removal(&app).await;
    let t = linked(&app, id).await;
    assert_eq!(
        jira.tickets().len(),
        1,
        "only the mirrored kinds get tickets"
    );
    let key = t["ticket"]["key"].as_str().unwrap().to_owned();
    let issue_id = jira.tickets()[0].id.clone();
    let description = adf_text(&jira.tickets()[0].fields["description"]);
    assert!(
        description.contains("record it in scimbridge"),
        "{description}"
    );

    // Done in Jira, but nothing says whether the seat was freed: the task stays.
    let payload = jira_hook(&issue_id, &key, "Done", json!({}));
    let (s, answer) = post_signed(&app, &hook(&bridge), &secret, &payload).await;
    assert_eq!(
        (s, answer["outcome"].as_str()),
        (200, Some("pending")),
        "{answer}"
    );
    let waiting = task(&app, id).await;
    assert_eq!(waiting["state"], "open");
    let why = waiting["ticket"]["pending"].as_str().unwrap().to_owned();
    assert!(
        why.contains("seat_freed") && why.contains("maps no ticket field"),
        "{why}"
    );
    let noted = history(&waiting)
        .into_iter()
        .filter(|h| h["action"] == "task.ticket_done")
        .count();
    assert_eq!(noted, 1);
    // The person opening the task in the web UI sees the ticket and why it is still open.
    let mut b = Browser::new(&app);
    b.login(&app.admin_token).await;
    let page = b.page(&format!("/ui/tasks/{id}")).await;
    assert!(
        page.contains(&format!(">{key}</a>")) && page.contains("ticket-pending"),
        "{page}"
    );
    assert!(page.contains("status did not close"), "{page}");
    jira.wait("the explanation on the issue", |f| {
        !f.tickets()[0].comments.is_empty()
    })
    .await;
    assert!(adf_text(&jira.tickets()[0].comments[0]).contains("seat_freed"));
    // Told again, it records nothing new.
    post_signed(&app, &hook(&bridge), &secret, &payload).await;
    let noted = history(&task(&app, id).await)
        .into_iter()
        .filter(|h| h["action"] == "task.ticket_done")
        .count();
    assert_eq!(noted, 1);

    // The admin maps the field (credentials kept), the person sets it: the task closes.
    let (s, v) = call(
        &app,
        Method::PUT,
        "/ticket-bridge",
        &app.admin_token,
        Some(json!({
            "system": "jira", "base_url": jira.url, "kinds": ["remove", "deactivate"],
            "settings": {"project": "IT", "completion_fields": {"seat_freed": "customfield_10050"}},
        })),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert!(
        v.get("hook_secret").is_none(),
        "the hook secret is kept, not regenerated"
    );
    let payload = jira_hook(
        &issue_id,
        &key,
        "Done",
        json!({"customfield_10050": {"self": "x", "value": "Yes", "id": "10021"}}),
    );
    let (s, answer) = post_signed(&app, &hook(&bridge), &secret, &payload).await;
    assert_eq!(
        (s, answer["outcome"].as_str()),
        (200, Some("closed")),
        "{answer}"
    );
    let done = task(&app, id).await;
    assert_eq!(done["state"], "done");
    assert_eq!(done["evidence"], json!({"seat_freed": "yes"}));
    assert_eq!(done["ticket"]["pending"], Value::Null);
    let (_, leavers) = call(
        &app,
        Method::GET,
        "/reports/leavers",
        &app.admin_token,
        None,
    )
    .await;
    assert!(leavers.to_string().contains("yes"), "{leavers}");
}

#[tokio::test]
async fn ticket_hooks_without_the_secret_are_refused_and_change_nothing() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn_with(pool, fast()).await;
    let jira = jira_site().await;
    let bridge = configure(&app, jira_bridge(&jira)).await;
    let secret = bridge["hook_secret"].as_str().unwrap().to_owned();
    app.create_user(okta_user("ann@x.com")).await;
    let id = first_task_id(&app).await;
    linked(&app, id).await;
    let url = hook(&bridge);
    let payload = jira_hook("10001", "IT-1", "Done", json!({}));
    let body = serde_json::to_vec(&payload).unwrap();
    let audits = count(&app.pool, "audit").await;
    let send = |req: reqwest::RequestBuilder| async move {
        let res = req.send().await.unwrap();
        let s = res.status().as_u16();
        (s, res.json::<Value>().await.unwrap_or(Value::Null))
    };
    let cases = vec![
        (
            "no secret",
            app.client.post(&url).body(body.clone()),
            401,
            "invalid_secret",
        ),
        (
            "a wrong bearer",
            app.client.post(&url).bearer_auth("nope").body(body.clone()),
            401,
            "invalid_secret",
        ),
        (
            "an admin token",
            app.client
                .post(&url)
                .bearer_auth(&app.admin_token)
                .body(body.clone()),
            401,
            "invalid_secret",
        ),
        (
            "a signature of another body",
            app.client
                .post(&url)
                .header("x-hub-signature", sign(&secret, b"{}"))
                .body(body.clone()),
            401,
            "invalid_secret",
        ),
        (
            "a signature with another key",
            app.client
                .post(&url)
                .header("x-hub-signature", sign("other-secret-0123", &body))
                .body(body.clone()),
            401,
            "invalid_secret",
        ),
        (
            "an unknown bridge",
            app.client
                .post(app.url(&format!("/api/v1/ticket-hooks/{}", uuid::Uuid::new_v4())))
                .bearer_auth(&secret)
                .body(body.clone()),
            404,
            "not_found",
        ),
        (
            "not a bridge id",
            app.client
                .post(app.url("/api/v1/ticket-hooks/42"))
                .bearer_auth(&secret)
                .body(body.clone()),
            404,
            "not_found",
        ),
        (
            "not JSON",
            app.client.post(&url).bearer_auth(&secret).body("{"),
            400,
            "invalid_json",
        ),
        (
            "no issue",
            app.client
                .post(&url)
                .bearer_auth(&secret)
                .json(&json!({"webhookEvent": "jira:issue_updated"})),
            400,
            "invalid_payload",
        ),
    ];
    for (what, req, status, code) in cases {
        let (s, b) = send(req).await;
        assert_eq!((s, b["code"].as_str()), (status, Some(code)), "{what}: {b}");
    }
    assert_eq!(task(&app, id).await["state"], "open");
    assert_eq!(count(&app.pool, "audit").await, audits, "nothing recorded");
    // An issue scimbridge did not create is acknowledged and ignored.
    let (s, b) = post_signed(
        &app,
        &url,
        &secret,
        &jira_hook("999", "IT-999", "Done", json!({})),
    )
    .await;
    assert_eq!((s, b["outcome"].as_str()), (200, Some("ignored")));
    // A disabled bridge refuses its webhooks.
    let (s, _) = call(
        &app,
        Method::DELETE,
        "/ticket-bridge",
        &app.admin_token,
        None,
    )
    .await;
    assert_eq!(s, 200);
    let (s, b) = post_signed(&app, &url, &secret, &payload).await;
    assert_eq!((s, b["code"].as_str()), (404, Some("not_found")));
}

#[tokio::test]
async fn the_bridge_is_configured_by_admins_with_clear_errors_and_sealed_secrets() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn_with(pool, fast()).await;
    let jira = jira_site().await;
    let (s, b) = call(&app, Method::GET, "/ticket-bridge", &app.admin_token, None).await;
    assert_eq!((s, b["code"].as_str()), (404, Some("not_found")));
    let (s, b) = call(
        &app,
        Method::PUT,
        "/ticket-bridge",
        &app.agent_token,
        Some(jira_bridge(&jira)),
    )
    .await;
    assert_eq!((s, b["code"].as_str()), (403, Some("forbidden_role")));
    let with = |f: &dyn Fn(&mut Value)| {
        let mut v = jira_bridge(&jira);
        f(&mut v);
        v
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "unknown system",
            with(&|v| v["system"] = json!("zendesk")),
            "invalid_system",
        ),
        (
            "another scheme",
            with(&|v| v["base_url"] = json!("ftp://acme.atlassian.net")),
            "invalid_base_url",
        ),
        (
            "no scheme",
            with(&|v| v["base_url"] = json!("acme.atlassian.net")),
            "invalid_base_url",
        ),
        (
            "user info in the URL",
            with(&|v| v["base_url"] = json!("https://u:p@acme.atlassian.net")),
            "invalid_base_url",
        ),
        (
            "no project",
            with(&|v| v["settings"] = json!({})),
            "invalid_settings",
        ),
        (
            "a ServiceNow table on Jira",
            with(&|v| v["settings"]["table"] = json!("incident")),
            "invalid_settings",
        ),
        (
            "an unknown setting",
            with(&|v| v["settings"]["projekt"] = json!("IT")),
            "invalid_settings",
        ),
        (
            "an unknown outcome",
            with(&|v| v["settings"]["statuses"] = json!({"Done": "finished"})),
            "invalid_settings",
        ),
        (
            "an unknown completion field",
            with(&|v| v["settings"]["completion_fields"] = json!({"seats": "customfield_1"})),
            "invalid_settings",
        ),
        (
            "no auth for a new bridge",
            with(&|v| {
                v.as_object_mut().unwrap().remove("auth");
            }),
            "invalid_auth",
        ),
        (
            "basic auth without a user",
            with(&|v| v["auth"] = json!({"type": "basic", "username": " ", "secret": "t"})),
            "invalid_auth",
        ),
        (
            "an unknown auth type",
            with(&|v| v["auth"] = json!({"type": "digest", "secret": "t"})),
            "invalid_json",
        ),
        (
            "an unknown kind",
            with(&|v| v["kinds"] = json!(["remove", "fire"])),
            "invalid_kind",
        ),
        (
            "no kinds",
            with(&|v| v["kinds"] = json!([])),
            "invalid_kind",
        ),
        (
            "a poll too often",
            with(&|v| v["poll_seconds"] = json!(5)),
            "invalid_poll",
        ),
        (
            "a short hook secret",
            with(&|v| v["hook_secret"] = json!("short")),
            "invalid_hook_secret",
        ),
        (
            "an unknown field",
            with(&|v| v["colour"] = json!("red")),
            "invalid_json",
        ),
    ];
    for (what, body, code) in cases {
        let (s, b) = call(
            &app,
            Method::PUT,
            "/ticket-bridge",
            &app.admin_token,
            Some(body),
        )
        .await;
        assert_eq!((s, b["code"].as_str()), (400, Some(code)), "{what}: {b}");
    }
    assert_eq!(count(&app.pool, "ticket_bridge").await, 0, "nothing stored");

    let mut body = jira_bridge(&jira);
    body["hook_secret"] = json!("a-hook-secret-of-mine-0123");
    let v = configure(&app, body).await;
    assert!(
        v.get("hook_secret").is_none(),
        "a given secret is not echoed"
    );
    assert_eq!(v["settings"]["statuses"], json!({"Done": "done"}));
    assert_eq!(v["settings"]["close_status"], "Done");
    assert_eq!(
        v["auth"],
        json!({"type": "basic", "username": "bot@acme.example"})
    );
    assert_eq!(v["poll_seconds"], 300);
    assert_eq!(
        v["kinds"].as_array().unwrap().len(),
        scimbridge::reconcile::TaskKind::ALL.len()
    );
    // Stored sealed: neither secret appears in the row.
    let (cred, hook_secret): (String, String) =
        sqlx::query_as("select credential, hook_secret from ticket_bridge")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(cred.starts_with("v1.") && !cred.contains("jira-token"));
    assert!(hook_secret.starts_with("v1.") && !hook_secret.contains("a-hook-secret-of-mine"));
    let (_, shown) = call(&app, Method::GET, "/ticket-bridge", &app.admin_token, None).await;
    assert!(!shown.to_string().contains("jira-token") && !shown.to_string().contains("v1."));
    let audit: Value =
        sqlx::query_scalar("select detail from audit where action = 'ticket_bridge.configure'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(audit["credential_changed"], true);
    assert!(!audit.to_string().contains("jira-token"));

    // Disabled: tasks made meanwhile get no ticket; re-enabled with backfill, they do.
    let (s, _) = call(
        &app,
        Method::DELETE,
        "/ticket-bridge",
        &app.admin_token,
        None,
    )
    .await;
    assert_eq!(s, 200);
    let (s, b) = call(
        &app,
        Method::DELETE,
        "/ticket-bridge",
        &app.admin_token,
        None,
    )
    .await;
    assert_eq!((s, b["code"].as_str()), (404, Some("not_found")));
    app.create_user(okta_user("ann@x.com")).await;
    let id = first_task_id(&app).await;
    assert_eq!(task(&app, id).await["ticket"], Value::Null);
    let (_, shown) = call(&app, Method::GET, "/ticket-bridge", &app.admin_token, None).await;
    assert_eq!(shown["enabled"], false);
    let mut again = jira_bridge(&jira);
    again.as_object_mut().unwrap().remove("auth");
    again["backfill"] = json!(true);
    let v = configure(&app, again).await;
    assert_eq!(
        (v["enabled"].as_bool(), v["backfilled"].as_i64()),
        (Some(true), Some(1))
    );
    assert_eq!(linked(&app, id).await["ticket"]["key"], "IT-1");
    // Switching systems while tickets of unfinished tasks exist is refused.
    let sn = servicenow_instance().await;
    let (s, b) = call(
        &app,
        Method::PUT,
        "/ticket-bridge",
        &app.admin_token,
        Some(servicenow_bridge(&sn, "sc_task")),
    )
    .await;
    assert_eq!((s, b["code"].as_str()), (409, Some("tickets_open")), "{b}");
    let (s, list) = call(
        &app,
        Method::GET,
        "/tickets?state=open",
        &app.agent_token,
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(list["tickets"][0]["key"], "IT-1");
}

#[tokio::test]
async fn the_cli_configures_shows_and_disables_the_bridge() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn_with(pool, fast()).await;
    let jira = jira_site().await;
    let run = |args: Vec<String>, envs: Vec<(&'static str, String)>| {
        let (root, token) = (app.root.clone(), app.admin_token.clone());
        async move {
            let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_scimbridge"));
            cmd.args(&args)
                .env("SCIMBRIDGE_URL", root)
                .env("SCIMBRIDGE_TOKEN", token)
                .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none");
            for (k, v) in envs {
                cmd.env(k, v);
            }
            cmd.output().await.unwrap()
        }
    };
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let out = run(
        args(&[
            "tickets",
            "configure",
            "--system",
            "jira",
            "--base-url",
            &jira.url,
            "--username",
            "bot@acme.example",
            "--project",
            "IT",
            "--status",
            "Done=done",
            "--status",
            "Won't Do=not_applicable",
            "--completion-field",
            "seat_freed=customfield_10050",
            "--kinds",
            "remove,deactivate",
            "--poll-seconds",
            "600",
        ]),
        vec![("SCIMBRIDGE_TICKET_SECRET", "jira-token".into())],
    )
    .await;
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("Hook secret:") && said.contains("/api/v1/ticket-hooks/"),
        "{said}"
    );
    assert!(
        said.contains("Done → done") && said.contains("Won't Do → not_applicable"),
        "{said}"
    );
    let out = run(args(&["tickets", "show"]), vec![]).await;
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        said.contains("enabled")
            && said.contains("remove, deactivate")
            && !said.contains("Hook secret"),
        "{said}"
    );
    let out = run(
        args(&[
            "tickets",
            "configure",
            "--system",
            "jira",
            "--base-url",
            "ftp://example.com",
        ]),
        vec![],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid_base_url"));
    let out = run(args(&["tickets", "disable"]), vec![]).await;
    assert!(out.status.success());
    let out = run(args(&["tickets", "show", "--json"]), vec![]).await;
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["enabled"], false);
}

#[tokio::test]
async fn a_task_reopened_by_a_snapshot_is_followed_again_and_not_closed_by_a_stale_status() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn_with(pool, fast()).await;
    let jira = jira_site().await;
    let bridge = configure(&app, jira_bridge(&jira)).await;
    let secret = bridge["hook_secret"].as_str().unwrap().to_owned();
    let people: Vec<String> = (0..10).map(|i| format!("user{i}@corp.com")).collect();
    for p in &people {
        app.create_user(okta_user(p)).await;
    }
    // (A task finished before its ticket was created gets none: wait for them first.)
    jira.wait("ten issues", |f| f.tickets().len() == 10).await;
    while let Some(t) = app.claim(&app.agent_token).await {
        assert_eq!(
            app.complete(&t, json!({"outcome": "done"})).await.status(),
            200
        );
    }
    jira.wait("every issue moved to Done", |f| {
        f.tickets().len() == 10 && f.tickets().iter().all(|t| t.status == "Done")
    })
    .await;
    // The app's own list lacks user0: its done task is reopened.
    let mut csv = "Email,First Name,Last Name,Role,Status\n".to_owned();
    for p in &people[1..] {
        csv += &format!("{p},Ann,Lee,User,Active\n");
    }
    let res = app
        .api(Method::POST, "/snapshots", &app.admin_token)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let reopened = app.tasks("?state=open").await[0].clone();
    let id = reopened["id"].as_i64().unwrap();
    let key = reopened["ticket"]["key"].as_str().unwrap().to_owned();
    let issue = jira.tickets().into_iter().find(|t| t.key == key).unwrap();
    jira.wait("the reopening comment", |f| {
        f.tickets()
            .iter()
            .find(|t| t.key == key)
            .is_some_and(|t| t.comments.iter().any(|c| adf_text(c).contains("reopened")))
    })
    .await;
    for _ in 0..50 {
        if task(&app, id).await["ticket"]["state"] == "open" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(task(&app, id).await["ticket"]["state"], "open");
    // The issue still says Done: that no longer closes the task.
    let (s, b) = post_signed(
        &app,
        &hook(&bridge),
        &secret,
        &jira_hook(&issue.id, &key, "Done", json!({})),
    )
    .await;
    assert_eq!(
        (s, b["outcome"].as_str()),
        (200, Some("not_closing")),
        "{b}"
    );
    assert_eq!(task(&app, id).await["state"], "open");
    // Moved on and back to Done, it closes the task again.
    post_signed(
        &app,
        &hook(&bridge),
        &secret,
        &jira_hook(&issue.id, &key, "In Progress", json!({})),
    )
    .await;
    let (s, b) = post_signed(
        &app,
        &hook(&bridge),
        &secret,
        &jira_hook(&issue.id, &key, "Done", json!({})),
    )
    .await;
    assert_eq!((s, b["outcome"].as_str()), (200, Some("closed")), "{b}");
    assert_eq!(task(&app, id).await["state"], "done");
}

#[tokio::test]
async fn a_ticket_row_committed_meanwhile_never_fails_the_tasks_own_transition() {
    let db = crate::db::test_db().await;
    crate::needs_server!(
        db,
        "commits a concurrent transaction from a second connection"
    );
    let pool = db.pool();
    let app = TestApp::spawn_with(pool, fast()).await;
    let jira = jira_site().await;
    let bridge = configure(&app, jira_bridge(&jira)).await;
    let (s, _) = call(
        &app,
        Method::DELETE,
        "/ticket-bridge",
        &app.admin_token,
        None,
    )
    .await;
    assert_eq!(s, 200);
    let user = app.create_user(okta_user("ann@x.com")).await;
    let id = first_task_id(&app).await;
    let mut again = jira_bridge(&jira);
    again.as_object_mut().unwrap().remove("auth");
    configure(&app, again).await;
    // A backfill (another transaction) makes the task's ticket row and has not committed
    // when an IdP change re-plans the task, whose trigger makes the same row.
    let bridge_id = uuid::Uuid::parse_str(bridge["bridge_id"].as_str().unwrap()).unwrap();
    let mut backfill = app.pool.begin().await.unwrap();
    sqlx::query("insert into ticket (task_id, app_id, bridge_id, correlation) values ($1, 'peopleai', $2, $3)")
        .bind(id)
        .bind(bridge_id)
        .bind(format!("scimbridge-peopleai-{id}"))
        .execute(&mut *backfill)
        .await
        .unwrap();
    let patch = {
        let req = app
            .scim(Method::PATCH, &format!("/Users/{}", user["id"].as_str().unwrap()))
            .json(&json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                          "Operations": [{"op": "replace", "path": "name.familyName", "value": "Lee-Smith"}]}));
        tokio::spawn(async move { req.send().await.unwrap().status().as_u16() })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    backfill.commit().await.unwrap();
    assert_eq!(
        patch.await.unwrap(),
        200,
        "the IdP's write does not fail because of the bridge"
    );
    assert!(task(&app, id).await["title"]
        .as_str()
        .unwrap()
        .contains("Lee-Smith"));
}

#[tokio::test]
async fn plain_http_ticket_systems_are_refused_unless_allowed() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let mut config = fast();
    config.ticket_allow_http = false;
    let app = TestApp::spawn_with(pool, config).await;
    let jira = jira_site().await;
    let (s, b) = call(
        &app,
        Method::PUT,
        "/ticket-bridge",
        &app.admin_token,
        Some(jira_bridge(&jira)),
    )
    .await;
    assert_eq!(
        (s, b["code"].as_str()),
        (400, Some("invalid_base_url")),
        "{b}"
    );
    assert!(b["message"].as_str().unwrap().contains("https://"));
    let mut https = jira_bridge(&jira);
    https["base_url"] = json!("https://acme.atlassian.net");
    let (s, _) = call(
        &app,
        Method::PUT,
        "/ticket-bridge",
        &app.admin_token,
        Some(https),
    )
    .await;
    assert_eq!(s, 200);
}
