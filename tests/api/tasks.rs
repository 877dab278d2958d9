use std::collections::HashSet;

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{okta_user, TestApp};

async fn create(app: &TestApp, user_name: &str) -> String {
    app.create_user(okta_user(user_name)).await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn open_tasks(app: &TestApp) -> Vec<Value> {
    app.tasks("?state=open").await
}

async fn claim_and_finish(app: &TestApp, fields: Value) -> Value {
    let t = app.claim(&app.agent_token).await.expect("a claimable task");
    let res = app
        .complete(&t, json!({"outcome": "done", "fields": fields}))
        .await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    t
}

async fn confirmed(app: &TestApp, user_id: &str) -> Option<Value> {
    sqlx::query_scalar("select confirmed from scim_user where user_id = $1::uuid")
        .bind(user_id)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_new_user_becomes_one_create_task_with_email_role_and_steps() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let id = create(&app, "ann@corp.com").await;
    let tasks = open_tasks(&app).await;
    assert_eq!(tasks.len(), 1);
    let t = &tasks[0];
    assert_eq!(t["kind"], "create_account");
    assert_eq!(t["subject"]["id"], id.as_str());
    assert_eq!(t["subject"]["user_name"], "ann@corp.com");
    assert_eq!(t["target"]["email"], "ann@corp.com");
    assert_eq!(t["target"]["role"], "Standard");
    assert!(t["title"].as_str().unwrap().contains("ann@corp.com"));
    let steps: Vec<&str> = t["instructions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(
        steps
            .iter()
            .any(|s| s.contains("work email ann@corp.com with role Standard")),
        "{steps:?}"
    );
    assert!(steps.iter().any(|s| s.contains("SSO")), "{steps:?}");
    assert_eq!(t["completion_fields"][0]["name"], "app_account_id");
}

#[tokio::test]
async fn okta_resending_the_same_profile_makes_no_task() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let id = create(&app, "ann@corp.com").await;
    claim_and_finish(&app, json!({})).await;
    let before = app.tasks("").await.len();
    // Same PUT twice, and a PATCH to the value it already has.
    for _ in 0..2 {
        let res = app
            .scim(Method::PUT, &format!("/Users/{id}"))
            .json(&okta_user("ann@corp.com"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    let res = app
        .patch(
            &format!("/Users/{id}"),
            json!([{"op": "replace", "path": "active", "value": true}]),
        )
        .await;
    assert_eq!(res.status(), 200);
    // A change the app does not care about (title) makes no task either.
    let res = app
        .patch(
            &format!("/Users/{id}"),
            json!([{"op": "replace", "path": "title", "value": "CFO"}]),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(app.tasks("").await.len(), before);
}

#[tokio::test]
async fn create_then_rename_before_claim_is_one_create_task_with_the_new_name() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let id = create(&app, "ann@corp.com").await;
    let res = app
        .patch(
            &format!("/Users/{id}"),
            json!([
                {"op": "replace", "path": "userName", "value": "ann.lee@corp.com"},
                {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "ann.lee@corp.com"}
            ]),
        )
        .await;
    assert_eq!(res.status(), 200);
    let tasks = app.tasks("").await;
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert_eq!(tasks[0]["kind"], "create_account");
    assert_eq!(tasks[0]["state"], "open");
    assert_eq!(tasks[0]["target"]["email"], "ann.lee@corp.com");
    assert!(tasks[0]["title"]
        .as_str()
        .unwrap()
        .contains("ann.lee@corp.com"));
}

#[tokio::test]
async fn create_then_deactivate_before_claim_leaves_nothing_to_do() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let id = create(&app, "ann@corp.com").await;
    let res = app
        .patch(
            &format!("/Users/{id}"),
            json!([{"op": "replace", "path": "active", "value": false}]),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert!(open_tasks(&app).await.is_empty());
    let cancelled = app.tasks("?state=cancelled").await;
    assert_eq!(cancelled.len(), 1);
    assert!(
        cancelled[0]["cancel_reason"]
            .as_str()
            .unwrap()
            .contains("deactivated"),
        "{}",
        cancelled[0]
    );
    assert!(app.claim(&app.agent_token).await.is_none());
}

#[tokio::test]
async fn create_then_delete_before_claim_cancels_the_create() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let id = create(&app, "ann@corp.com").await;
    assert_eq!(
        app.scim(Method::DELETE, &format!("/Users/{id}"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert!(open_tasks(&app).await.is_empty());
    assert!(app.tasks("?state=cancelled").await[0]["cancel_reason"]
        .as_str()
        .unwrap()
        .contains("deleted"));
}

#[tokio::test]
async fn a_change_during_work_waits_for_the_task_in_progress() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let id = create(&app, "ann@corp.com").await;
    let first = app.claim(&app.agent_token).await.unwrap();
    assert_eq!(first["kind"], "create_account");
    let res = app
        .patch(
            &format!("/Users/{id}"),
            json!([{"op": "replace", "path": "active", "value": false}]),
        )
        .await;
    assert_eq!(res.status(), 200);
    let waiting = open_tasks(&app).await;
    assert_eq!(waiting.len(), 1);
    assert_eq!(
        waiting[0]["kind"], "deactivate",
        "planned from the in-progress task's target"
    );
    assert_eq!(waiting[0]["blocked_by"], first["id"]);
    assert!(
        app.claim(&app.agent_token).await.is_none(),
        "the second task waits for the first"
    );
    let res = app
        .complete(
            &first,
            json!({"outcome": "done", "fields": {"app_account_id": "pa-1"}}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let second = app.claim(&app.agent_token).await.expect("now claimable");
    assert_eq!(second["id"], waiting[0]["id"]);
}

#[tokio::test]
async fn completing_moves_confirmed_state_and_the_next_task_starts_from_it() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let id = create(&app, "ann@corp.com").await;
    assert_eq!(confirmed(&app, &id).await, None);
    let t = claim_and_finish(&app, json!({"app_account_id": "pa-1"})).await;
    let c = confirmed(&app, &id).await.unwrap();
    assert_eq!(c, t["target"]);
    let done: Value = app
        .api(
            Method::GET,
            &format!("/tasks/{}", t["id"]),
            &app.admin_token,
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(done["state"], "done");
    assert_eq!(done["finished_by"], "robot");
    assert_eq!(done["evidence"]["app_account_id"], "pa-1");
    let actions: Vec<&str> = done["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["task.create", "task.claim", "task.complete"]);

    // Role via the SCIM roles attribute: a change_role from Standard to Admin.
    let res = app
        .patch(
            &format!("/Users/{id}"),
            json!([{"op": "add", "path": "roles", "value": [{"value": "Admin"}]}]),
        )
        .await;
    assert_eq!(res.status(), 200);
    // Granting Admin waits for an admin's approval (People.ai's profile rule).
    let next = &app.tasks("?state=awaiting_approval").await[0];
    assert_eq!(next["kind"], "change_role");
    assert_eq!(next["base"]["role"], "Standard");
    assert_eq!(next["target"]["role"], "Admin");
    assert_eq!(
        next["changes"],
        json!([{"field": "role", "from": "Standard", "to": "Admin"}])
    );
}

#[tokio::test]
async fn membership_of_people_ai_admins_changes_the_role() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let ann = create(&app, "ann@corp.com").await;
    let bob = create(&app, "bob@corp.com").await;
    claim_and_finish(&app, json!({})).await;
    claim_and_finish(&app, json!({})).await;
    let g = app
        .create_group(json!({"displayName": "People.ai Admins", "members": [{"value": ann}]}))
        .await;
    let tasks = app.tasks("?state=awaiting_approval").await;
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0]["kind"], "change_role");
    assert_eq!(tasks[0]["subject"]["id"], ann.as_str());
    assert_eq!(tasks[0]["target"]["role"], "Admin");
    // Membership of an unrelated group changes nothing in the app.
    app.create_group(json!({"displayName": "Sales", "members": [{"value": bob}]}))
        .await;
    assert_eq!(app.tasks("?state=awaiting_approval").await.len(), 1);
    assert!(open_tasks(&app).await.is_empty());
    // Removing Ann before anyone approved cancels her role change.
    let res = app
        .patch(
            &format!("/Groups/{}", g["id"].as_str().unwrap()),
            json!([{"op": "remove", "path": "members"}]),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert!(open_tasks(&app).await.is_empty());
}

#[tokio::test]
async fn leavers_are_claimed_before_joiners() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let ann = create(&app, "ann@corp.com").await;
    claim_and_finish(&app, json!({})).await;
    create(&app, "bob@corp.com").await;
    create(&app, "cid@corp.com").await;
    assert_eq!(
        app.scim(Method::DELETE, &format!("/Users/{ann}"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    let first = app.claim(&app.agent_token).await.unwrap();
    assert_eq!(
        first["kind"], "remove",
        "the leaver comes first although it is newest"
    );
    let second = app.claim(&app.agent_token).await.unwrap();
    assert_eq!(
        second["subject"]["user_name"], "bob@corp.com",
        "then oldest first"
    );
}

#[tokio::test]
async fn removal_needs_the_seat_answer_and_failed_leaves_confirmed_alone() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let id = create(&app, "ann@corp.com").await;
    let created = claim_and_finish(&app, json!({})).await;
    assert_eq!(
        app.scim(Method::DELETE, &format!("/Users/{id}"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    let t = app.claim(&app.agent_token).await.unwrap();
    assert_eq!(t["kind"], "remove");
    assert!(t["instructions"].to_string().contains("connector"));
    let res = app.complete(&t, json!({"outcome": "done"})).await;
    assert_eq!(res.status(), 400);
    let err: Value = res.json().await.unwrap();
    assert_eq!(err["code"], "missing_fields");
    assert!(err["message"].as_str().unwrap().contains("seat_freed"));
    let res = app
        .complete(
            &t,
            json!({"outcome": "done", "fields": {"seat_freed": "perhaps"}}),
        )
        .await;
    assert_eq!(res.json::<Value>().await.unwrap()["code"], "invalid_field");

    let res = app
        .complete(&t, json!({"outcome": "failed", "note": "console down"}))
        .await;
    assert_eq!(res.status(), 200);
    let failed: Value = res.json().await.unwrap();
    assert_eq!(failed["state"], "failed");
    assert_eq!(failed["note"], "console down");
    assert_eq!(
        confirmed(&app, &id).await.unwrap(),
        created["target"],
        "confirmed state unchanged"
    );
    let attention: bool =
        sqlx::query_scalar("select needs_attention from scim_user where user_id = $1::uuid")
            .bind(&id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(attention);
}

#[tokio::test]
async fn removal_done_with_the_seat_answer_clears_the_account() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let id = create(&app, "ann@corp.com").await;
    claim_and_finish(&app, json!({})).await;
    app.scim(Method::DELETE, &format!("/Users/{id}"))
        .send()
        .await
        .unwrap();
    let t = claim_and_finish(
        &app,
        json!({"seat_freed": "yes", "ownership_moved_to": "bob@corp.com"}),
    )
    .await;
    assert_eq!(t["kind"], "remove");
    assert_eq!(confirmed(&app, &id).await, None);
    assert!(app.claim(&app.agent_token).await.is_none());
}

#[tokio::test]
async fn completing_a_task_that_is_not_yours_or_not_in_progress_is_409() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    create(&app, "ann@corp.com").await;
    let open = &open_tasks(&app).await[0];
    let res = app
        .api(
            Method::POST,
            &format!("/tasks/{}/complete", open["id"]),
            &app.agent_token,
        )
        .json(&json!({"outcome": "done"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 409);
    assert_eq!(
        res.json::<Value>().await.unwrap()["code"],
        "task_not_in_progress"
    );

    let t = app.claim(&app.agent_token).await.unwrap();
    let res = app
        .api(
            Method::POST,
            &format!("/tasks/{}/complete", t["id"]),
            &app.admin_token,
        )
        .json(&json!({"outcome": "done"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 409);
    assert_eq!(res.json::<Value>().await.unwrap()["code"], "not_your_task");
    let res = app
        .api(
            Method::POST,
            &format!("/tasks/{}/complete", t["id"]),
            &app.admin_token,
        )
        .json(&json!({"outcome": "done", "lease_id": uuid::Uuid::new_v4()}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 409);
    assert_eq!(res.json::<Value>().await.unwrap()["code"], "lease_mismatch");
    // The holder's own token may complete without the lease id.
    let res = app
        .api(
            Method::POST,
            &format!("/tasks/{}/complete", t["id"]),
            &app.agent_token,
        )
        .json(&json!({"outcome": "done"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // Completing again with the same lease returns the first result.
    let again = app.complete(&t, json!({"outcome": "done"})).await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.json::<Value>().await.unwrap()["state"], "done");
    // Without the lease, it is a conflict.
    let res = app
        .api(
            Method::POST,
            &format!("/tasks/{}/complete", t["id"]),
            &app.agent_token,
        )
        .json(&json!({"outcome": "failed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 409);
}

#[tokio::test]
async fn repeating_a_completion_differently_is_409_and_an_exact_repeat_is_idempotent() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    create(&app, "ann@corp.com").await;
    let t = app.claim(&app.agent_token).await.unwrap();
    let first = json!({"outcome": "done", "note": "created in the admin console"});
    let res = app.complete(&t, first.clone()).await;
    assert_eq!(res.status(), 200);
    let done: Value = res.json().await.unwrap();
    // The exact same request again (a retry after a lost answer): the first result.
    let again = app.complete(&t, first).await;
    assert_eq!(again.status(), 200);
    assert_eq!(
        again.json::<Value>().await.unwrap()["finished_at"],
        done["finished_at"]
    );
    // The same lease with another outcome, note or fields is refused, and changes nothing.
    for other in [
        json!({"outcome": "failed", "note": "created in the admin console"}),
        json!({"outcome": "not_applicable", "note": "created in the admin console"}),
        json!({"outcome": "done", "note": "something else"}),
        json!({"outcome": "done"}),
    ] {
        let res = app.complete(&t, other.clone()).await;
        assert_eq!(res.status(), 409, "{other}");
        assert_eq!(
            res.json::<Value>().await.unwrap()["code"],
            "completion_differs"
        );
    }
    let now: Value = app
        .api(
            Method::GET,
            &format!("/tasks/{}", t["id"]),
            &app.agent_token,
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(now["state"], "done");
    assert_eq!(now["note"], "created in the admin console");
    // The same Idempotency-Key with another outcome is refused too.
    let t2 = {
        create(&app, "bob@corp.com").await;
        app.claim(&app.agent_token).await.unwrap()
    };
    let send = |outcome: &'static str| {
        app.api(
            Method::POST,
            &format!("/tasks/{}/complete", t2["id"]),
            &app.agent_token,
        )
        .header("idempotency-key", "k-1")
        .json(&json!({"outcome": outcome}))
        .send()
    };
    assert_eq!(send("done").await.unwrap().status(), 200);
    assert_eq!(send("done").await.unwrap().status(), 200);
    assert_eq!(send("failed").await.unwrap().status(), 409);
}

#[tokio::test]
async fn release_puts_the_task_back_and_an_expired_lease_is_claimable_again() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    create(&app, "ann@corp.com").await;
    let t = app.claim(&app.agent_token).await.unwrap();
    let res = app
        .api(
            Method::POST,
            &format!("/tasks/{}/release", t["id"]),
            &app.agent_token,
        )
        .json(&json!({"lease_id": t["lease_id"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["state"], "open");

    let again = app.claim(&app.admin_token).await.unwrap();
    assert_eq!(again["id"], t["id"]);
    assert_eq!(again["claimed_by"], "alice");
    // The lease lapses (moved into the past instead of waiting 15 minutes).
    sqlx::query(
        "update task set lease_expires_at = now() - interval '1 second' where task_id = $1",
    )
    .bind(again["id"].as_i64().unwrap())
    .execute(&app.pool)
    .await
    .unwrap();
    let third = app.claim(&app.agent_token).await.unwrap();
    assert_eq!(third["id"], t["id"]);
    assert_eq!(third["attempts"], 3);
    let stale = app
        .api(
            Method::POST,
            &format!("/tasks/{}/complete", t["id"]),
            &app.admin_token,
        )
        .json(&json!({"outcome": "done", "lease_id": again["lease_id"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        stale.status(),
        409,
        "the lapsed lease no longer holds the task"
    );
}

#[tokio::test]
async fn release_with_a_waiting_task_folds_both_into_one() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let id = create(&app, "ann@corp.com").await;
    let t = app.claim(&app.agent_token).await.unwrap();
    app.patch(
        &format!("/Users/{id}"),
        json!([{"op": "replace", "path": "name.givenName", "value": "Annie"}]),
    )
    .await;
    let res = app
        .api(
            Method::POST,
            &format!("/tasks/{}/release", t["id"]),
            &app.agent_token,
        )
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let open = open_tasks(&app).await;
    assert_eq!(open.len(), 1);
    assert_eq!(
        open[0]["kind"], "create_account",
        "the waiting update became the create"
    );
    assert_eq!(open[0]["target"]["given_name"], "Annie");
}

#[tokio::test]
async fn the_task_list_pages_with_a_cursor_and_filters() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let ann = create(&app, "ann@corp.com").await;
    for i in 0..4 {
        create(&app, &format!("u{i}@corp.com")).await;
    }
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let body: Value = app
            .api(
                Method::GET,
                &format!("/tasks?limit=2{cursor}"),
                &app.agent_token,
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        seen.extend(
            body["tasks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["id"].as_i64().unwrap()),
        );
        match body["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5);
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(app.tasks(&format!("?subject={ann}")).await.len(), 1);
    assert_eq!(app.tasks("?kind=remove").await.len(), 0);
    assert_eq!(app.tasks("?kind=create_account&state=open").await.len(), 5);
    for bad in [
        "?state=nope",
        "?kind=nope",
        "?subject=nope",
        "?limit=x",
        "?bogus=1",
    ] {
        let res = app
            .api(Method::GET, &format!("/tasks{bad}"), &app.agent_token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{bad}");
    }
    let res = app
        .api(Method::GET, "/tasks/999999", &app.agent_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}

#[tokio::test]
async fn concurrent_workers_claim_each_task_once() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    for i in 0..20 {
        create(&app, &format!("u{i}@corp.com")).await;
    }
    let mut workers = Vec::new();
    for _ in 0..4 {
        let client = app.client.clone();
        let url = app.url("/api/v1/tasks/claim");
        let token = app.agent_token.clone();
        workers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let res = client.post(&url).bearer_auth(&token).send().await.unwrap();
                if res.status() == 204 {
                    return got;
                }
                assert_eq!(res.status(), 200);
                let t: Value = res.json().await.unwrap();
                got.push(t["id"].as_i64().unwrap());
            }
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    let unique: HashSet<i64> = all.iter().copied().collect();
    assert_eq!(all.len(), 20, "every task claimed");
    assert_eq!(unique.len(), 20, "no task claimed twice");
}
