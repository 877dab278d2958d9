//! The admin CLI (`scimbridge tasks …`, `scimbridge users …`): the real binary against
//! the real server, checking what a person sees (stdout, stderr, exit codes).

use std::process::Output;

use reqwest::Method;
use serde_json::{json, Value};

use crate::agent::{scratch, task};
use crate::helpers::{okta_user, TestApp};

/// Runs `scimbridge ARGS` with the server's URL and `token` in the environment.
async fn cli(app: &TestApp, token: &str, args: &[&str]) -> Output {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_scimbridge"))
        .args(args)
        .env("SCIMBRIDGE_URL", &app.root)
        .env("SCIMBRIDGE_TOKEN", token)
        // Client commands must not need a database: give them one that does not exist.
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
        .output()
        .await
        .expect("run scimbridge");
    if std::env::var("TEST_CLI_ECHO").is_ok() {
        eprintln!(
            "$ scimbridge {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts success and returns stdout.
fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        stdout(o),
        stderr(o)
    );
    stdout(o)
}

/// Asserts failure with exactly one `error: …` line and returns it.
fn fails(o: &Output) -> String {
    assert_eq!(
        o.status.code(),
        Some(1),
        "stdout:\n{}\nstderr:\n{}",
        stdout(o),
        stderr(o)
    );
    let err = stderr(o);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("error: "), "{err}");
    err.trim_end().to_owned()
}

async fn create(app: &TestApp, name: &str) -> String {
    app.create_user(okta_user(name)).await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn tasks_list_show_claim_and_done_with_an_attachment() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    create(&app, "ann@x.com").await;
    create(&app, "bob@x.com").await;

    let list = ok(&cli(
        &app,
        &app.admin_token,
        &["tasks", "list", "--state", "open"],
    )
    .await);
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 3, "{list}");
    for col in ["ID", "STATE", "KIND", "USER", "AGE", "TITLE"] {
        assert!(lines[0].contains(col), "{list}");
    }
    assert!(
        lines[1].contains("open")
            && lines[1].contains("create_account")
            && lines[1].contains("ann@x.com"),
        "{list}"
    );
    assert!(
        lines[1].contains("Create People.ai account for Ann Lee (ann@x.com) as Standard"),
        "{list}"
    );
    let json: Value = serde_json::from_str(&ok(&cli(
        &app,
        &app.admin_token,
        &["tasks", "list", "--json"],
    )
    .await))
    .unwrap();
    assert_eq!(json["tasks"].as_array().unwrap().len(), 2);
    let empty = cli(
        &app,
        &app.admin_token,
        &["tasks", "list", "--state", "done"],
    )
    .await;
    assert_eq!(
        (ok(&empty).as_str(), stderr(&empty).trim()),
        ("", "no tasks")
    );

    // Claim as an agent would; the CLI shows the task with its lease and what to run next.
    let claim = ok(&cli(
        &app,
        &app.admin_token,
        &["tasks", "claim", "--kinds", "create_account"],
    )
    .await);
    let first = &json["tasks"][0];
    let id = first["id"].to_string();
    assert!(
        claim.starts_with(&format!("Task {id}  create_account  IN_PROGRESS\n")),
        "{claim}"
    );
    assert!(
        claim.contains("\nInstructions:\n   1. [ ] Sign in to People.ai"),
        "{claim}"
    );
    assert!(
        claim.contains("Add the user by work email ann@x.com with role Standard"),
        "{claim}"
    );
    assert!(claim.contains("app_account_id (optional)"), "{claim}");
    let held = task(&app, &first["id"]).await;
    let lease = held["lease_id"].as_str().unwrap();
    assert!(
        claim.contains(&format!("Lease:     {lease}, held by alice")),
        "{claim}"
    );
    assert!(
        claim.contains(&format!("scimbridge tasks done {id} --lease {lease}")),
        "{claim}"
    );

    let show = ok(&cli(&app, &app.admin_token, &["tasks", "show", &id]).await);
    assert!(
        show.contains("\nHistory:\n")
            && show.contains("task.claim")
            && show.contains("alice (admin)"),
        "{show}"
    );
    let shown: Value = serde_json::from_str(&ok(&cli(
        &app,
        &app.admin_token,
        &["tasks", "show", &id, "--json"],
    )
    .await))
    .unwrap();
    assert_eq!(shown["id"], first["id"]);
    assert!(shown["history"].is_array());

    let dir = scratch();
    let png = dir.join("console.png");
    std::fs::write(&png, b"\x89PNG fake").unwrap();
    let done = cli(
        &app,
        &app.admin_token,
        &[
            "tasks",
            "done",
            &id,
            "--lease",
            lease,
            "--field",
            "app_account_id=pa-9",
            "--note",
            "added by hand",
            "--attach",
            png.to_str().unwrap(),
        ],
    )
    .await;
    let out = ok(&done);
    assert!(
        out.starts_with(&format!(
            "task {id} done (recorded by alice): Create People.ai account"
        )),
        "{out}"
    );
    let t = task(&app, &first["id"]).await;
    assert_eq!(t["evidence"], json!({"app_account_id": "pa-9"}));
    assert_eq!(t["note"], "added by hand");
    assert_eq!(t["attachments"][0]["filename"], "console.png");
    assert_eq!(t["attachments"][0]["content_type"], "image/png");
    let res = app
        .api(
            Method::GET,
            &format!("/tasks/{id}/attachments/1"),
            &app.admin_token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.bytes().await.unwrap().as_ref(), b"\x89PNG fake");
    let show = ok(&cli(&app, &app.admin_token, &["tasks", "show", &id]).await);
    assert!(
        show.contains("   1. [x] Sign in"),
        "finished steps are ticked: {show}"
    );
    assert!(
        show.contains(
            "app_account_id (optional): The account's id in the app (if it shows one) = pa-9"
        ),
        "{show}"
    );
    assert!(
        show.contains("attachment 1: console.png (image/png, 9 bytes)"),
        "{show}"
    );

    let counts = ok(&cli(&app, &app.admin_token, &["tasks", "counts"]).await);
    assert!(
        counts
            .lines()
            .any(|l| l.starts_with("create_account") && l.trim_end().ends_with('2')),
        "{counts}"
    );
    assert!(
        counts.lines().last().unwrap().starts_with("TOTAL"),
        "{counts}"
    );
}

#[tokio::test]
async fn removals_need_seat_freed_and_fail_na_and_release_work() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let ann = create(&app, "ann@x.com").await;
    let bob = create(&app, "bob@x.com").await;
    let carl = create(&app, "carl@x.com").await;
    // Create the accounts, then the IdP deletes ann: a removal.
    for _ in 0..3 {
        let t = app.claim(&app.agent_token).await.unwrap();
        assert_eq!(
            app.complete(&t, json!({"outcome": "done"})).await.status(),
            200
        );
    }
    app.scim(Method::DELETE, &format!("/Users/{ann}"))
        .send()
        .await
        .unwrap();
    let claimed: Value = serde_json::from_str(&ok(&cli(
        &app,
        &app.admin_token,
        &["tasks", "claim", "--kinds", "remove", "--json"],
    )
    .await))
    .unwrap();
    let id = claimed["id"].to_string();
    assert_eq!(claimed["kind"], "remove");

    // The same token needs no lease; a required field is named when missing.
    let err = fails(&cli(&app, &app.admin_token, &["tasks", "done", &id]).await);
    assert_eq!(
        err,
        "error: completing a remove task as done needs: seat_freed (missing_fields)"
    );
    let err = fails(
        &cli(
            &app,
            &app.admin_token,
            &["tasks", "done", &id, "--field", "seat_freed=maybe"],
        )
        .await,
    );
    assert_eq!(
        err,
        "error: seat_freed must be one of yes, no, unknown (invalid_field)"
    );
    let err = fails(
        &cli(
            &app,
            &app.admin_token,
            &["tasks", "done", &id, "--field", "seat_freed"],
        )
        .await,
    );
    assert!(err.contains("expected NAME=VALUE"), "{err}");
    let out = ok(&cli(
        &app,
        &app.admin_token,
        &[
            "tasks",
            "done",
            &id,
            "--field",
            "seat_freed=yes",
            "--note",
            "seat back",
        ],
    )
    .await);
    assert!(out.starts_with(&format!("task {id} done")), "{out}");
    assert_eq!(
        task(&app, &claimed["id"]).await["evidence"]["seat_freed"],
        "yes"
    );

    // fail, na and release on attribute changes of bob and carl.
    for u in [&bob, &carl] {
        let res = app
            .patch(
                &format!("/Users/{u}"),
                json!([{"op": "replace", "path": "name.familyName", "value": "Moved"}]),
            )
            .await;
        assert_eq!(res.status(), 200);
    }
    let a: Value = serde_json::from_str(&ok(&cli(
        &app,
        &app.admin_token,
        &["tasks", "claim", "--json"],
    )
    .await))
    .unwrap();
    let out = ok(&cli(
        &app,
        &app.admin_token,
        &[
            "tasks",
            "fail",
            &a["id"].to_string(),
            "--note",
            "console down",
        ],
    )
    .await);
    assert!(
        out.starts_with(&format!("task {} failed", a["id"])),
        "{out}"
    );
    let failed = task(&app, &a["id"]).await;
    assert_eq!(
        (failed["state"].as_str(), failed["note"].as_str()),
        (Some("failed"), Some("console down"))
    );
    assert!(
        !cli(&app, &app.admin_token, &["tasks", "fail", "1"])
            .await
            .status
            .success(),
        "--note is required"
    );

    let b: Value = serde_json::from_str(&ok(&cli(
        &app,
        &app.admin_token,
        &["tasks", "claim", "--json"],
    )
    .await))
    .unwrap();
    let b_id = b["id"].to_string();
    let out = ok(&cli(&app, &app.admin_token, &["tasks", "release", &b_id]).await);
    assert_eq!(
        out.trim(),
        format!("task {b_id} released; it is open again")
    );
    let err = fails(&cli(&app, &app.admin_token, &["tasks", "release", &b_id]).await);
    assert!(err.ends_with("(task_not_in_progress)"), "{err}");
    let b: Value = serde_json::from_str(&ok(&cli(
        &app,
        &app.admin_token,
        &["tasks", "claim", "--json"],
    )
    .await))
    .unwrap();
    assert_eq!(b["id"].to_string(), b_id);
    let out = ok(&cli(
        &app,
        &app.admin_token,
        &["tasks", "na", &b_id, "--note", "already renamed"],
    )
    .await);
    assert!(
        out.starts_with(&format!("task {b_id} not_applicable")),
        "{out}"
    );

    let none = cli(&app, &app.admin_token, &["tasks", "claim"]).await;
    assert_eq!(
        (ok(&none).as_str(), stderr(&none).trim()),
        ("", "no task to claim right now")
    );
}

#[tokio::test]
async fn api_errors_are_one_clear_line() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    create(&app, "ann@x.com").await;
    let t = app.claim(&app.agent_token).await.unwrap();
    let id = t["id"].to_string();

    let err = fails(&cli(&app, &app.admin_token, &["tasks", "done", &id]).await);
    assert_eq!(
        err,
        format!(
            "error: task {id} is held by robot; send its lease_id to act on it (not_your_task)"
        )
    );
    let err = fails(
        &cli(
            &app,
            &app.admin_token,
            &[
                "tasks",
                "release",
                &id,
                "--lease",
                &uuid::Uuid::new_v4().to_string(),
            ],
        )
        .await,
    );
    assert!(err.ends_with("(lease_mismatch)"), "{err}");
    assert_eq!(
        fails(&cli(&app, &app.admin_token, &["tasks", "show", "999"]).await),
        "error: task 999 not found (not_found)"
    );
    let err = fails(
        &cli(
            &app,
            &app.admin_token,
            &["tasks", "list", "--state", "bogus"],
        )
        .await,
    );
    assert!(
        err.starts_with("error: state must be one of open") && err.ends_with("(invalid_state)"),
        "{err}"
    );
    let err = fails(&cli(&app, "wrong", &["tasks", "list"]).await);
    assert_eq!(
        err,
        "error: the bearer token is not valid (unknown or revoked) (invalid_token)"
    );
    let err = fails(&cli(&app, &app.scim_token, &["users", "list"]).await);
    assert!(err.ends_with("(forbidden_role)"), "{err}");

    // Settings and connectivity.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_scimbridge"))
        .args(["tasks", "list"])
        .env_remove("SCIMBRIDGE_URL")
        .env_remove("SCIMBRIDGE_TOKEN")
        .output()
        .await
        .unwrap();
    assert!(fails(&out).contains("no server URL: pass --url or set SCIMBRIDGE_URL"));
    let out = cli(
        &app,
        &app.admin_token,
        &["tasks", "list", "--url", "http://127.0.0.1:1"],
    )
    .await;
    let err = fails(&out);
    assert!(
        err.starts_with("error: cannot reach http://127.0.0.1:1/api/v1/tasks"),
        "{err}"
    );
    assert!(err.to_lowercase().contains("connection refused"), "{err}");
}

#[tokio::test]
async fn users_list_show_side_by_side_and_history() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let ann = create(&app, "ann@x.com").await;
    create(&app, "bob@x.com").await;

    let list = ok(&cli(&app, &app.admin_token, &["users", "list"]).await);
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 3, "{list}");
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("STATE") && lines[0].contains("OPEN TASK"),
        "{list}"
    );
    assert!(
        lines[1].starts_with(&ann)
            && lines[1].contains("ann@x.com")
            && lines[1].contains("pending"),
        "{list}"
    );
    assert!(lines[1].contains("never"), "not confirmed yet: {list}");
    let only_bob = ok(&cli(
        &app,
        &app.admin_token,
        &["users", "list", "--user-name", "BO"],
    )
    .await);
    assert_eq!(only_bob.lines().count(), 2, "{only_bob}");
    assert!(only_bob.contains("bob@x.com"));
    let json: Value = serde_json::from_str(&ok(&cli(
        &app,
        &app.admin_token,
        &["users", "list", "--state", "pending", "--json"],
    )
    .await))
    .unwrap();
    assert_eq!(json["users"].as_array().unwrap().len(), 2);

    // Before the app has the account: every desired field is a difference.
    let show = ok(&cli(&app, &app.admin_token, &["users", "show", &ann]).await);
    assert!(
        show.starts_with(&format!("User ann@x.com  {ann}\nState:      pending\n")),
        "{show}"
    );
    assert!(show.contains("CONFIRMED (app): no account"), "{show}");
    assert!(
        show.lines()
            .any(|l| l.starts_with("* email") && l.contains("ann@x.com")),
        "{show}"
    );

    // Created, then renamed by the IdP: only the family name differs.
    let t = app.claim(&app.agent_token).await.unwrap();
    assert_eq!(
        app.complete(&t, json!({"outcome": "done"})).await.status(),
        200
    );
    let res = app
        .patch(
            &format!("/Users/{ann}"),
            json!([{"op": "replace", "path": "name.familyName", "value": "Lee-Smith"}]),
        )
        .await;
    assert_eq!(res.status(), 200);
    let show = ok(&cli(&app, &app.admin_token, &["users", "show", &ann]).await);
    let table: Vec<&str> = show
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("FIELD"))
        .take_while(|l| !l.is_empty())
        .collect();
    assert!(
        table[0].contains("DESIRED (IdP)") && table[0].contains("CONFIRMED (app)"),
        "{show}"
    );
    let family = table.iter().find(|l| l.contains("family_name")).unwrap();
    assert!(
        family.starts_with("* family_name")
            && family.contains("Lee-Smith")
            && family.trim_end().ends_with(" Lee"),
        "{show}"
    );
    let email = table.iter().find(|l| l.contains("email")).unwrap();
    assert!(
        email.starts_with("  email"),
        "same on both sides, unmarked: {show}"
    );
    assert_eq!(
        table.iter().filter(|l| l.starts_with('*')).count(),
        1,
        "{show}"
    );
    // The columns line up: desired values start where the DESIRED header does.
    let col = table[0].find("DESIRED").unwrap();
    assert_eq!(&family[col..col + 9], "Lee-Smith", "{show}");
    let open = show.lines().find(|l| l.starts_with("Open task:")).unwrap();
    assert!(open.contains("scimbridge tasks show"), "{show}");

    let raw: Value = serde_json::from_str(&ok(&cli(
        &app,
        &app.admin_token,
        &["users", "show", &ann, "--json"],
    )
    .await))
    .unwrap();
    assert_eq!(raw["desired"]["family_name"], "Lee-Smith");
    assert_eq!(raw["confirmed"]["family_name"], "Lee");

    let history = ok(&cli(&app, &app.admin_token, &["users", "history", &ann]).await);
    let actions: Vec<&str> = ["user.create", "task.claim", "task.complete"].to_vec();
    for a in actions {
        assert!(history.contains(a), "{a}: {history}");
    }
    assert!(
        history.contains("robot (agent)") && history.contains("okta (scim)"),
        "{history}"
    );
    let err = fails(&cli(&app, &app.admin_token, &["users", "show", "not-a-user"]).await);
    assert_eq!(err, "error: user not-a-user not found (not_found)");
}

#[tokio::test]
async fn snapshot_import_shows_what_it_found_and_a_held_one_exits_2_until_applied() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    for i in 0..4 {
        app.create_user(okta_user(&format!("u{i}@corp.com"))).await;
    }
    let dir = scratch();
    let file = dir.join("peopleai-users.csv");
    let mut csv = "Email,First Name,Last Name,Role,Status\n".to_owned();
    for i in 0..4 {
        csv += &format!("u{i}@corp.com,Ann,Lee,User,Active\n");
    }
    std::fs::write(&file, &csv).unwrap();
    let path = file.to_str().unwrap();
    let out = ok(&cli(&app, &app.admin_token, &["snapshot", "import", path]).await);
    assert!(out.contains("Snapshot 1  APPLIED  (csv, 4 rows"), "{out}");
    assert!(out.contains("verified 4 (closed 4 tasks)"), "{out}");
    // Everyone inactive: held, exit 2, the flagged accounts listed.
    std::fs::write(&file, csv.replace("Active", "Inactive")).unwrap();
    let held = cli(&app, &app.agent_token, &["snapshot", "import", path]).await;
    assert_eq!(held.status.code(), Some(2), "{}", stderr(&held));
    let out = stdout(&held);
    assert!(out.contains("HELD: it would flag 4 accounts"), "{out}");
    assert!(out.contains("u0@corp.com"), "{out}");
    assert!(out.contains("scimbridge snapshot apply 2"), "{out}");
    let e = fails(&cli(&app, &app.agent_token, &["snapshot", "apply", "2"]).await);
    assert!(e.contains("forbidden_role"), "{e}");
    let out = ok(&cli(&app, &app.admin_token, &["snapshot", "apply", "2"]).await);
    assert!(out.contains("APPLIED"), "{out}");
    let out = ok(&cli(&app, &app.admin_token, &["snapshot", "findings"]).await);
    assert_eq!(out.lines().count(), 5, "header and 4 findings:\n{out}");
    let out = ok(&cli(&app, &app.admin_token, &["snapshot", "list"]).await);
    assert!(out.lines().nth(1).unwrap().starts_with("2 "), "{out}");
    let out = ok(&cli(&app, &app.admin_token, &["reports", "verification"]).await);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["drift"], 4, "{v}");
    assert_eq!(v["seats"]["observed_active"], 0, "{v}");
    let e = fails(
        &cli(
            &app,
            &app.admin_token,
            &["snapshot", "import", "/nonexistent.csv"],
        )
        .await,
    );
    assert!(e.contains("cannot read /nonexistent.csv"), "{e}");
}

#[tokio::test]
async fn tasks_approve_and_reject_decide_grants_waiting_for_an_admin() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    for name in ["ann@x.com", "bob@x.com"] {
        let mut u = okta_user(name);
        u["roles"] = json!([{"value": "Admin"}]);
        app.create_user(u).await;
    }
    let waiting = app.tasks("?state=awaiting_approval").await;
    assert_eq!(waiting.len(), 2, "granting Admin waits for an admin");
    let (ann, bob) = (
        waiting[0]["id"].as_i64().unwrap().to_string(),
        waiting[1]["id"].as_i64().unwrap().to_string(),
    );
    // An agent may not decide: the API's refusal, one line, nothing changes.
    let err = fails(&cli(&app, &app.agent_token, &["tasks", "approve", &ann]).await);
    assert!(err.contains("(forbidden_role)"), "{err}");
    assert_eq!(app.tasks("?state=awaiting_approval").await.len(), 2);
    // A reason is required to reject.
    let out = cli(&app, &app.admin_token, &["tasks", "reject", &bob]).await;
    assert_eq!(out.status.code(), Some(2), "clap usage error");
    assert!(stderr(&out).contains("--reason"), "{}", stderr(&out));

    let said = ok(&cli(&app, &app.admin_token, &["tasks", "approve", &ann]).await);
    assert_eq!(
        said.trim(),
        format!("task {ann} approved; it is open and can be claimed")
    );
    let said = ok(&cli(
        &app,
        &app.admin_token,
        &["tasks", "reject", &bob, "--reason", "not an admin"],
    )
    .await);
    assert!(said.starts_with(&format!("task {bob} rejected")), "{said}");
    assert!(said.trim_end().ends_with(": not an admin"), "{said}");
    let t = task(&app, &json!(ann.parse::<i64>().unwrap())).await;
    assert_eq!(t["state"], "open");
    let t = task(&app, &json!(bob.parse::<i64>().unwrap())).await;
    assert_ne!(t["state"], "awaiting_approval");
    // Deciding twice is the API's conflict, said in one line.
    let err = fails(&cli(&app, &app.admin_token, &["tasks", "approve", &ann]).await);
    assert!(err.contains("(not_awaiting_approval)"), "{err}");
}
