//! Snapshots of the app's user list (the observed state): a snapshot per case of
//! issue #15 (verified, drift, orphan, missing, contradiction of a done task, safeguard
//! hold), idempotent re-import, and bad files that change nothing.

use reqwest::{Method, Response};
use serde_json::{json, Value};

use crate::helpers::{count, okta_user, TestApp};

const HEADER: &str = "Email,First Name,Last Name,Role,Status\n";

fn row(email: &str, role: &str, status: &str) -> String {
    format!("{email},Ann,Lee,{role},{status}\n")
}

fn today() -> String {
    chrono::Utc::now().format("%Y-%m-%d").to_string()
}

async fn upload(app: &TestApp, token: &str, csv: &str) -> Response {
    app.api(Method::POST, "/snapshots", token)
        .header("content-type", "text/csv")
        .body(csv.to_owned())
        .send()
        .await
        .unwrap()
}

async fn upload_ok(app: &TestApp, csv: &str) -> Value {
    let res = upload(app, &app.admin_token, csv).await;
    assert_eq!(
        res.status(),
        201,
        "{}",
        res.text().await.unwrap_or_default()
    );
    res.json().await.unwrap()
}

/// Users whose accounts the app is confirmed to have (their create tasks done).
async fn confirmed_users(app: &TestApp, emails: &[String]) -> Vec<String> {
    let mut ids = Vec::new();
    for e in emails {
        ids.push(
            app.create_user(okta_user(e)).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    while let Some(t) = app.claim(&app.agent_token).await {
        assert_eq!(
            app.complete(&t, json!({"outcome": "done"})).await.status(),
            200
        );
    }
    ids
}

fn emails(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("user{i}@corp.com")).collect()
}

fn all_active(emails: &[String]) -> String {
    let mut csv = HEADER.to_owned();
    for e in emails {
        csv += &row(e, "User", "Active");
    }
    csv
}

async fn task(app: &TestApp, id: &Value) -> Value {
    app.api(Method::GET, &format!("/tasks/{id}"), &app.admin_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn findings(app: &TestApp, query: &str) -> Vec<Value> {
    let res: Value = app
        .api(Method::GET, &format!("/findings{query}"), &app.admin_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    res["findings"].as_array().cloned().unwrap()
}

async fn provisioning(app: &TestApp, id: &str) -> Value {
    let u: Value = app
        .scim(
            Method::GET,
            &format!("/Users/{id}?attributes=urn:scimbridge:params:scim:schemas:extension:provisioning:1.0:User"),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    u["urn:scimbridge:params:scim:schemas:extension:provisioning:1.0:User"].clone()
}

#[tokio::test]
async fn a_snapshot_that_matches_verifies_users_and_closes_the_tasks_it_already_meets() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let people = emails(5);
    let mut ids = Vec::new();
    for e in &people {
        ids.push(
            app.create_user(okta_user(e)).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    // The admin created the accounts in People.ai but never completed the tasks; the
    // export says so (emails in another case, People.ai's role name).
    let mut csv = HEADER.to_owned();
    for e in &people {
        csv += &row(&e.to_uppercase(), "Standard User", "active");
    }
    let snap = upload_ok(&app, &csv).await;
    assert_eq!(snap["state"], "applied", "{snap}");
    assert_eq!(snap["rows"], 5);
    assert_eq!(snap["summary"]["verified"], 5, "{snap}");
    assert_eq!(snap["summary"]["closes"], 5);
    assert_eq!(snap["sha256"].as_str().unwrap().len(), 64);
    let done = app.tasks("?state=done").await;
    assert_eq!(done.len(), 5);
    let t = task(&app, &done[0]["id"]).await;
    assert_eq!(t["evidence"]["verified_by_snapshot"], snap["id"]);
    assert!(t["note"]
        .as_str()
        .unwrap()
        .starts_with("Verified by snapshot #"));
    let history = t["history"].as_array().unwrap();
    assert!(
        history
            .iter()
            .any(|h| h["action"] == "task.verify" && h["outcome"] == "verified_by_snapshot"),
        "{t}"
    );
    let p = provisioning(&app, &ids[0]).await;
    assert_eq!(p["state"], "synced", "{p}");
    assert_eq!(p["drift"], false);
    assert!(p["lastVerified"].as_str().is_some(), "{p}");
    assert!(findings(&app, "?state=all").await.is_empty());
}

#[tokio::test]
async fn drift_annotates_the_open_task_or_plans_one() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let people = emails(10);
    let ids = confirmed_users(&app, &people).await;
    // A joiner whose create task failed: no task open, no account confirmed.
    let failed = app.create_user(okta_user("late@corp.com")).await;
    let t = app.claim(&app.agent_token).await.unwrap();
    assert_eq!(
        app.complete(&t, json!({"outcome": "failed", "note": "console down"}))
            .await
            .status(),
        200
    );
    // A leaver: deactivated in the IdP, task open. People.ai still has them active.
    let res = app
        .patch(
            &format!("/Users/{}", ids[0]),
            json!([{"op": "replace", "path": "active", "value": false}]),
        )
        .await;
    assert_eq!(res.status(), 200);
    let open = app.tasks("?state=open").await;
    assert_eq!(open.len(), 1);
    // The joiner was added by hand after all, as an Admin although the IdP wants Standard.
    let csv = all_active(&people) + &row("late@corp.com", "Administrator", "Active");
    let snap = upload_ok(&app, &csv).await;
    assert_eq!(snap["state"], "applied", "{snap}");
    assert_eq!(snap["summary"]["drift"], 2, "{snap}");
    let n = snap["id"].as_i64().unwrap();
    let leaver = task(&app, &open[0]["id"]).await;
    assert_eq!(leaver["kind"], "deactivate");
    assert_eq!(
        leaver["findings"][0]["text"],
        format!("still active in People.ai on {} per snapshot #{n}", today())
    );
    let open = app.tasks("?state=open").await;
    assert_eq!(open.len(), 2, "one new task for the wrong role");
    let role = open.iter().find(|t| t["kind"] == "change_role").unwrap();
    let role = task(&app, &role["id"]).await;
    assert_eq!(role["subject"]["id"], failed["id"]);
    assert_eq!(role["base"]["role"], "Admin");
    assert_eq!(role["target"]["role"], "Standard");
    assert!(
        role["findings"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("role is \"Admin\" (the IdP wants \"Standard\") in People.ai"),
        "{role}"
    );
    let p = provisioning(&app, failed["id"].as_str().unwrap()).await;
    assert_eq!(p["drift"], true, "{p}");
    let f = findings(&app, "?kind=drift").await;
    assert_eq!(f.len(), 2);
    assert_eq!(f[0]["subject"]["type"], "user");
}

#[tokio::test]
async fn an_account_no_idp_user_has_is_an_orphan_with_a_review_task() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let people = emails(10);
    confirmed_users(&app, &people).await;
    let csv = all_active(&people) + &row("ghost@corp.com", "Administrator", "Active");
    let snap = upload_ok(&app, &csv).await;
    assert_eq!(snap["summary"]["orphans"], 1, "{snap}");
    let open = app.tasks("?state=open").await;
    assert_eq!(open.len(), 1);
    let review = task(&app, &open[0]["id"]).await;
    assert_eq!(review["kind"], "review_account");
    assert_eq!(review["subject"]["type"], "account");
    assert_eq!(review["subject"]["user_name"], "ghost@corp.com");
    assert_eq!(
        review["title"],
        "Review People.ai account ghost@corp.com: no IdP user has it"
    );
    assert!(review["findings"][0]["text"]
        .as_str()
        .unwrap()
        .contains("no IdP user has it"));
    // Invisible over SCIM: the IdP's user count is unchanged.
    let list: Value = app.scim_get("/Users?count=0").await;
    assert_eq!(list["totalResults"], 10);
    // Reviewed and removed: done with its resolution.
    let t = app.claim(&app.agent_token).await.unwrap();
    let res = app
        .complete(
            &t,
            json!({"outcome": "done", "fields": {"resolution": "removed", "seat_freed": "yes"}}),
        )
        .await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    assert_eq!(findings(&app, "?kind=orphan").await.len(), 1);
}

#[tokio::test]
async fn a_joiner_missing_from_the_app_gets_not_found_on_their_create_task() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let people = emails(10);
    confirmed_users(&app, &people).await;
    app.create_user(okta_user("new@corp.com")).await;
    let snap = upload_ok(&app, &all_active(&people)).await;
    assert_eq!(snap["summary"]["missing"], 1, "{snap}");
    let n = snap["id"].as_i64().unwrap();
    let open = app.tasks("?state=open").await;
    assert_eq!(open.len(), 1);
    let create = task(&app, &open[0]["id"]).await;
    assert_eq!(create["kind"], "create_account");
    assert_eq!(
        create["findings"][0]["text"],
        format!("not found in People.ai on {} per snapshot #{n}", today())
    );
}

#[tokio::test]
async fn a_done_task_the_app_contradicts_is_reopened_as_a_verification_failure() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let people = emails(10);
    let ids = confirmed_users(&app, &people).await;
    // user0's create task was completed as done, but People.ai has no such account.
    let snap = upload_ok(&app, &all_active(&people[1..])).await;
    assert_eq!(snap["summary"]["contradictions"], 1, "{snap}");
    let n = snap["id"].as_i64().unwrap();
    let open = app.tasks("?state=open").await;
    assert_eq!(open.len(), 1, "the same task is reopened, not a new one");
    let t = task(&app, &open[0]["id"]).await;
    assert_eq!(t["kind"], "create_account");
    assert_eq!(t["subject"]["id"], ids[0].as_str());
    assert_eq!(
        t["findings"][0]["text"],
        format!(
            "Verification failed: not found in People.ai on {} per snapshot #{n}, although task #{} was completed as done",
            today(),
            t["id"]
        )
    );
    assert!(t["history"]
        .as_array()
        .unwrap()
        .iter()
        .any(|h| h["action"] == "task.reopen" && h["outcome"] == "verification_failed"));
    // It can be claimed and done again.
    let again = app.claim(&app.agent_token).await.unwrap();
    assert_eq!(again["id"], t["id"]);
    assert_eq!(
        app.complete(&again, json!({"outcome": "done"}))
            .await
            .status(),
        200
    );
    let report: Value = app
        .api(Method::GET, "/reports/verification", &app.admin_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(report["verification_failures"], 1, "{report}");
}

#[tokio::test]
async fn the_safeguard_holds_a_mass_change_until_an_admin_confirms_it() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let people = emails(10);
    confirmed_users(&app, &people).await;
    let mut csv = HEADER.to_owned();
    for (i, e) in people.iter().enumerate() {
        csv += &row(e, "User", if i < 5 { "Inactive" } else { "Active" });
    }
    let tasks_before = count(&app.pool, "task").await;
    let snap = upload_ok(&app, &csv).await;
    assert_eq!(snap["state"], "held", "{snap}");
    assert!(snap["hold_reason"]
        .as_str()
        .unwrap()
        .contains("more than 20 % of the 10 matched"));
    // Their create tasks were completed as done: the app contradicts them.
    assert_eq!(snap["preview"]["tally"]["contradictions"], 5);
    assert_eq!(snap["preview"]["flagged"].as_array().unwrap().len(), 5);
    assert_eq!(
        count(&app.pool, "task").await,
        tasks_before,
        "nothing applied"
    );
    assert_eq!(count(&app.pool, "finding").await, 0);
    let path = format!("/snapshots/{}/apply", snap["id"]);
    let res = app
        .api(Method::POST, &path, &app.agent_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403, "an agent cannot confirm");
    let res = app
        .api(Method::POST, &path, &app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let applied: Value = res.json().await.unwrap();
    assert_eq!(applied["state"], "applied", "{applied}");
    assert_eq!(applied["decided_by"], "alice", "the admin token's name");
    assert_eq!(
        app.tasks("?state=open").await.len(),
        5,
        "five reactivations"
    );
    let res = app
        .api(Method::POST, &path, &app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 409);
    // Empty, or with columns the profile does not name: held; a discard applies nothing.
    for csv in [
        HEADER.to_owned(),
        "Email,Status,Seat\nuser0@corp.com,Active,Full\n".to_owned(),
    ] {
        let held = upload_ok(&app, &csv).await;
        assert_eq!(held["state"], "held", "{held}");
        let res = app
            .api(
                Method::POST,
                &format!("/snapshots/{}/discard", held["id"]),
                &app.admin_token,
            )
            .send()
            .await
            .unwrap();
        let discarded: Value = res.json().await.unwrap();
        assert_eq!(discarded["state"], "discarded");
    }
    assert_eq!(app.tasks("?state=open").await.len(), 5);
}

#[tokio::test]
async fn importing_the_same_file_again_finds_nothing_new() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let people = emails(20);
    let ids = confirmed_users(&app, &people).await;
    app.patch(
        &format!("/Users/{}", ids[0]),
        json!([{"op": "replace", "path": "active", "value": false}]),
    )
    .await;
    app.create_user(okta_user("joiner@corp.com")).await;
    let csv = all_active(&people) + &row("ghost@corp.com", "User", "Active");
    let first = upload_ok(&app, &csv).await;
    assert_eq!(first["state"], "applied", "{first}");
    let (tasks, found, audits) = (
        count(&app.pool, "task").await,
        count(&app.pool, "finding").await,
        sqlx::query_scalar::<_, i64>(
            "select count(*) from audit where action = 'snapshot.finding'",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap(),
    );
    assert_eq!(found, 3, "drift, missing, orphan");
    let second = upload_ok(&app, &csv).await;
    assert_eq!(second["state"], "applied", "{second}");
    assert_eq!(second["sha256"], first["sha256"]);
    assert_eq!(count(&app.pool, "task").await, tasks, "no duplicate tasks");
    assert_eq!(count(&app.pool, "finding").await, found, "no new findings");
    let audits_after: i64 =
        sqlx::query_scalar("select count(*) from audit where action = 'snapshot.finding'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(audits_after, audits);
    let open = findings(&app, "").await;
    assert_eq!(open.len(), 3);
    assert!(
        open.iter().all(|f| f["last_seen"] == second["id"]),
        "{open:?}"
    );
}

#[tokio::test]
async fn json_rows_are_a_snapshot_too() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let people = emails(3);
    confirmed_users(&app, &people).await;
    let rows: Vec<Value> = people
        .iter()
        .map(|e| json!({"email": e, "role": "Standard", "status": "Active"}))
        .collect();
    let res = app
        .api(Method::POST, "/snapshots", &app.agent_token)
        .json(&rows)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let snap: Value = res.json().await.unwrap();
    assert_eq!(snap["format"], "json");
    assert_eq!(snap["submitted_role"], "agent");
    assert_eq!(snap["summary"]["verified"], 3, "{snap}");
    let listed: Value = app
        .api(Method::GET, "/snapshots", &app.agent_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["snapshots"][0]["id"], snap["id"]);
}

#[tokio::test]
async fn a_file_that_cannot_be_read_is_refused_and_changes_nothing() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let mut config = scimbridge::config::Config::for_tests();
    config.snapshot_limit = 64 * 1024;
    let app = TestApp::spawn_with(pool, config).await;
    confirmed_users(&app, &emails(2)).await;
    let cases = [
        (
            format!("{HEADER}a@corp.com,A,B,User,Pending\n"),
            400,
            "invalid_status",
        ),
        (
            "Name,Status\nAnn,Active\n".to_owned(),
            400,
            "missing_column",
        ),
        (
            format!("{HEADER}a@corp.com,A,B,User,Active\nA@corp.com,A,B,User,Active\n"),
            400,
            "duplicate_account",
        ),
        (
            HEADER.to_owned()
                + &(0..2000)
                    .map(|i| row(&format!("big{i}@corp.com"), "User", "Active"))
                    .collect::<String>(),
            413,
            "snapshot_too_large",
        ),
    ];
    for (csv, status, code) in cases {
        let res = upload(&app, &app.admin_token, &csv).await;
        assert_eq!(res.status().as_u16(), status, "{code}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["code"], code, "{body}");
    }
    let res = app
        .api(Method::POST, "/snapshots", &app.admin_token)
        .header("content-type", "application/xml")
        .body("<users/>")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 415);
    assert_eq!(count(&app.pool, "snapshot").await, 0);
    assert_eq!(count(&app.pool, "snapshot_row").await, 0);
    let res = app
        .api(Method::POST, "/snapshots", &app.scim_token)
        .header("content-type", "text/csv")
        .body(all_active(&emails(1)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403, "a scim token cannot submit snapshots");
}

#[tokio::test]
async fn a_reviewed_orphan_is_kept_or_linked_to_its_user_and_not_flagged_again() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let people = emails(20);
    let ids = confirmed_users(&app, &people).await;
    // user0's account is in People.ai under an alias; a service account has no owner.
    let csv = all_active(&people[1..])
        + &row("svc@corp.com", "User", "Active")
        + &row("u0.alias@corp.com", "User", "Active");
    let first = upload_ok(&app, &csv).await;
    assert_eq!(first["summary"]["orphans"], 2, "{first}");
    assert_eq!(first["summary"]["contradictions"], 1, "user0 looks missing");
    // Reviews rank before creations in the queue.
    let reviews = vec![
        app.claim(&app.agent_token).await.unwrap(),
        app.claim(&app.agent_token).await.unwrap(),
    ];
    assert!(
        reviews.iter().all(|t| t["kind"] == "review_account"),
        "{reviews:?}"
    );
    for t in &reviews {
        let fields = if t["subject"]["user_name"] == "svc@corp.com" {
            json!({"resolution": "kept"})
        } else {
            json!({"resolution": "linked", "linked_user": "nobody@corp.com"})
        };
        let res = app
            .complete(t, json!({"outcome": "done", "fields": fields}))
            .await;
        if t["subject"]["user_name"] == "svc@corp.com" {
            assert_eq!(res.status(), 200);
        } else {
            assert_eq!(res.status(), 400, "an unknown user cannot be linked");
            let body: Value = res.json().await.unwrap();
            assert_eq!(body["code"], "invalid_field");
            let res = app
                .complete(t, json!({"outcome": "done", "fields": {"resolution": "linked", "linked_user": people[0]}}))
                .await;
            assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
        }
    }
    // The alias is now the account user0 is known to have in the app: their reopened task
    // now changes the email instead of creating an account.
    let open = app.tasks("?state=open").await;
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0]["subject"]["id"], ids[0].as_str());
    assert_eq!(open[0]["kind"], "update_attributes");
    assert_eq!(open[0]["base"]["email"], "u0.alias@corp.com");
    // The same export again: the kept account and the linked alias are not orphans.
    let second = upload_ok(&app, &csv).await;
    assert_eq!(second["summary"]["orphans"], 0, "{second}");
    assert_eq!(app.tasks("?state=open").await.len(), 1, "no new review");
}

/// Posts `csv` as the snapshots page's upload form (`csrf` first, as the page sends it).
async fn upload_page(
    b: &crate::web::Browser<'_>,
    app: &TestApp,
    csrf: Option<String>,
    csv: &str,
) -> Response {
    let file = reqwest::multipart::Part::text(csv.to_owned())
        .file_name("peopleai-users.csv")
        .mime_str("text/csv")
        .unwrap();
    let mut form = reqwest::multipart::Form::new();
    if let Some(c) = csrf {
        form = form.text("csrf", c);
    }
    b.client
        .post(app.url("/ui/snapshots"))
        .header(reqwest::header::COOKIE, b.cookie_header(None))
        .multipart(form.part("file", file))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_admin_uploads_reads_the_preview_and_applies_it_in_the_browser() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    use crate::web::{location, Browser};
    let app = TestApp::spawn(pool).await;
    let people = emails(10);
    let ids = confirmed_users(&app, &people).await;
    let mut admin = Browser::new(&app);
    admin.login(&app.admin_token).await;
    let page = admin.page("/ui/snapshots").await;
    assert!(page.contains("Upload an export"), "{page}");
    assert!(page.contains("No snapshot yet."), "{page}");
    // A file People.ai cannot have written, and a form from elsewhere: nothing stored.
    let bad = format!("{HEADER}a@corp.com,A,B,User,Pending\n");
    let res = upload_page(&admin, &app, Some(admin.csrf().await), &bad).await;
    assert_eq!(res.status(), 400);
    let body = res.text().await.unwrap();
    assert!(
        body.contains("nothing changed") && body.contains("Pending"),
        "{body}"
    );
    let res = upload_page(&admin, &app, None, &all_active(&people)).await;
    assert_eq!(res.status(), 403);
    assert_eq!(count(&app.pool, "snapshot").await, 0);
    // Six of ten inactive: more than the profile's 20 %, so held with its preview.
    let mut csv = HEADER.to_owned();
    for (i, e) in people.iter().enumerate() {
        csv += &row(e, "User", if i < 6 { "Inactive" } else { "Active" });
    }
    let res = upload_page(&admin, &app, Some(admin.csrf().await), &csv).await;
    assert_eq!(res.status(), 303, "{}", res.text().await.unwrap());
    // (A refused file leaves no snapshot, but may have used up an id.)
    let to = location(&res);
    let id = to
        .strip_prefix("/ui/snapshots#snapshot-")
        .unwrap_or_else(|| panic!("{to}"))
        .to_owned();
    let page = admin.page("/ui/snapshots").await;
    assert!(page.contains(&format!("Snapshot #{id}")), "{page}");
    assert!(page.contains("more than 20 % of the 10 matched"), "{page}");
    assert!(page.contains("peopleai-users.csv"), "{page}");
    assert!(page.contains("<strong>user0@corp.com</strong>"), "{page}");
    assert!(
        page.contains(&format!("/ui/snapshots/{id}/apply")),
        "{page}"
    );
    assert_eq!(
        count(&app.pool, "finding").await,
        0,
        "held: nothing applied"
    );
    // An agent sees it held but has no buttons.
    let mut agent = Browser::new(&app);
    agent.login(&app.agent_token).await;
    let page = agent.page("/ui/snapshots").await;
    assert!(
        page.contains("An admin decides whether to apply it."),
        "{page}"
    );
    assert!(
        !page.contains(&format!("/ui/snapshots/{id}/apply")),
        "{page}"
    );
    let reports = admin.page("/ui/reports").await;
    assert!(
        reports.contains("No snapshot of the app&#x27;s user list was applied yet")
            || reports.contains("No snapshot of the app's user list was applied yet"),
        "{reports}"
    );
    let res = admin
        .post(
            &format!("/ui/snapshots/{id}/apply"),
            &[("csrf", &admin.csrf().await)],
        )
        .await;
    assert_eq!(res.status(), 303);
    let snap: Value = app
        .api(Method::GET, &format!("/snapshots/{id}"), &app.admin_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(snap["state"], "applied", "{snap}");
    assert_eq!(snap["decided_by"], "alice");
    // The reports: 4 of 10 verified, 6 seats seen fewer than wanted.
    let reports = admin.page("/ui/reports").await;
    assert!(reports.contains("40.0 %"), "{reports}");
    assert!(
        reports.contains("Seen active in the app: <strong>4</strong>"),
        "{reports}"
    );
    assert!(
        reports.contains("Wanted by the IdP: <strong>10</strong>"),
        "{reports}"
    );
    assert!(reports.contains(&format!("snapshot #{id}")), "{reports}");
    // The user page: wanted, known and seen side by side.
    let user = admin.page(&format!("/ui/users/{}", ids[0])).await;
    assert!(user.contains("Seen in the app (snapshot)"), "{user}");
    assert!(user.contains("Drift: the app differs"), "{user}");
}

#[tokio::test]
async fn the_verification_report_counts_verified_drift_orphans_and_seats() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let people = emails(20);
    let ids = confirmed_users(&app, &people).await;
    // A leaver still active in the app; a joiner not there yet; an account nobody owns.
    app.patch(
        &format!("/Users/{}", ids[0]),
        json!([{"op": "replace", "path": "active", "value": false}]),
    )
    .await;
    app.create_user(okta_user("joiner@corp.com")).await;
    let csv = all_active(&people) + &row("ghost@corp.com", "User", "Active");
    let snap = upload_ok(&app, &csv).await;
    assert_eq!(snap["state"], "applied", "{snap}");
    let report: Value = app
        .api(Method::GET, "/reports/verification", &app.admin_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(report["last_snapshot"], snap["id"], "{report}");
    assert_eq!(report["users"], 21);
    assert_eq!(report["verified"], 19, "{report}");
    assert_eq!(report["verified_pct"], 90.5);
    // Drift counts every user the app differs on: the leaver and the missing joiner.
    assert_eq!(report["drift"], 2);
    assert_eq!(report["missing"], 1);
    assert_eq!(report["orphans"], 1);
    assert_eq!(report["never_verified"], 0);
    // Seats: the IdP wants 20 active (19 + the joiner), the app showed 21 (20 + ghost).
    assert_eq!(report["seats"]["desired_active"], 20, "{report}");
    assert_eq!(report["seats"]["observed_active"], 21);
    // Every finding has its audit record.
    let audits: i64 =
        sqlx::query_scalar("select count(*) from audit where action = 'snapshot.finding'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(audits, count(&app.pool, "finding").await);
    assert_eq!(audits, 3);
}
