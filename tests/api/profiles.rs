//! App profiles from files: an app served with an example profile words its tasks from
//! that file, the `apps` commands of the real binary manage apps, and a bad profile or an
//! app with an unknown profile stops `serve` with a message that says where.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::PgPool;

use crate::helpers::{okta_user, TestApp};
use scimbridge::auth::Role;
use scimbridge::config::Config;
use scimbridge::db::Store;

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/examples")
}

/// The URL of the test's own database: `DATABASE_URL` with the database name replaced.
pub(crate) fn database_url(pool: &PgPool) -> String {
    let name = pool
        .connect_options()
        .get_database()
        .expect("the test pool names its database")
        .to_owned();
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL is set for tests");
    let (head, query) = match base.split_once('?') {
        Some((h, q)) => (h, format!("?{q}")),
        None => (base.as_str(), String::new()),
    };
    let (scheme, rest) = head.split_once("://").expect("a URL");
    let authority = rest.split('/').next().unwrap_or(rest);
    format!("{scheme}://{authority}/{name}{query}")
}

/// Runs the real binary to completion (at most 60 s) with a clean profiles setting.
pub(crate) fn scimbridge(database_url: &str, args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_scimbridge"))
        .args(args)
        .env("DATABASE_URL", database_url)
        .env_remove("SCIMBRIDGE_PROFILES_DIR")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run scimbridge");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("scimbridge {args:?} did not exit within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let dir = std::env::temp_dir().join(format!("scimbridge-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn an_app_with_the_6sense_example_profile_gets_6sense_worded_tasks() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let profiles = scimbridge::profiles::load(Some(&examples_dir())).unwrap();
    let store = Store::with_profiles(pool, Arc::new(profiles));
    let mut app = TestApp::spawn_with_store(store, Config::for_tests()).await;
    sqlx::query(
        "insert into app (app_id, display_name, profile) values ('6sense', '6sense', '6sense')",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    app.scim_token = app.token("6sense", Role::Scim, "okta").await;
    app.agent_token = app.token("6sense", Role::Agent, "robot").await;

    let user = app.create_user(okta_user("ann@corp.com")).await;
    let tasks = app.tasks("?state=open").await;
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    let t = &tasks[0];
    assert_eq!(t["kind"], "create_account");
    assert_eq!(
        t["title"], "Invite Ann Lee (ann@corp.com) to 6sense as User",
        "the file's default role and wording"
    );
    let steps: Vec<&str> = t["instructions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(
        steps.contains(&"Invite ann@corp.com with role User and name Ann Lee."),
        "{steps:?}"
    );
    assert!(
        !steps.iter().any(|s| s.contains("department")),
        "the optional department step is left out: {steps:?}"
    );
    assert_eq!(t["completion_fields"][1]["name"], "seats_left");

    // The file's group mapping decides the role: the create task now says Admin, and
    // waits for approval (the default rule: granting the profile's Admin role).
    app.create_group(json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": "6sense Admins",
        "members": [{"value": user["id"]}]
    }))
    .await;
    let tasks = app.tasks("?state=awaiting_approval").await;
    assert_eq!(tasks.len(), 1);
    assert_eq!(
        tasks[0]["title"],
        "Invite Ann Lee (ann@corp.com) to 6sense as Admin"
    );
}

#[tokio::test]
async fn apps_create_list_and_show_run_against_the_database() {
    let db = crate::db::test_db().await;
    crate::needs_server!(db, "runs the CLI as a second process on the test database");
    let pool = db.pool();
    let url = database_url(&pool);
    let dir = examples_dir();
    let dir = dir.to_str().unwrap();

    let out = scimbridge(
        &url,
        &[
            "apps",
            "create",
            "--app",
            "6sense",
            "--profile",
            "6sense",
            "--profiles-dir",
            dir,
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("created app 6sense (6sense) with profile 6sense"),
        "{}",
        text(&out.stdout)
    );
    let (name, profile): (String, String) =
        sqlx::query_as("select display_name, profile from app where app_id = '6sense'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((name.as_str(), profile.as_str()), ("6sense", "6sense"));

    // The same id again, and a profile nobody defined, are refused with a reason.
    let again = scimbridge(
        &url,
        &["apps", "create", "--app", "6sense", "--profile", "peopleai"],
    );
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("app \"6sense\" already exists"),
        "{}",
        text(&again.stderr)
    );
    let unknown = scimbridge(
        &url,
        &["apps", "create", "--app", "alkami", "--profile", "alkami"],
    );
    assert!(!unknown.status.success());
    assert!(
        text(&unknown.stderr).contains("no profile \"alkami\" (known: peopleai)"),
        "{}",
        text(&unknown.stderr)
    );

    let list = scimbridge(&url, &["apps", "list", "--profiles-dir", dir]);
    assert!(list.status.success(), "{}", text(&list.stderr));
    let stdout = text(&list.stdout);
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        ["APP", "NAME", "PROFILE", "USERS", "OPEN", "TASKS"]
    );
    assert!(
        rows.contains(&vec!["6sense", "6sense", "6sense", "0", "0"]),
        "{stdout}"
    );
    assert!(
        rows.contains(&vec!["peopleai", "People.ai", "peopleai", "0", "0"]),
        "{stdout}"
    );
    // Without the directory the 6sense profile is unknown, and the list says so.
    let list = scimbridge(&url, &["apps", "list"]);
    assert!(text(&list.stdout).contains("6sense (unknown)"));

    let show = scimbridge(&url, &["apps", "show", "6sense", "--profiles-dir", dir]);
    assert!(show.status.success(), "{}", text(&show.stderr));
    let stdout = text(&show.stdout);
    for expected in [
        "roles:        Admin, User, Read-only",
        "default role: User",
        "\"6sense Admins\" -> Admin",
        "\"viewer\" -> Read-only",
        "  create_account",
        "seat_freed (required: yes|no|unknown), assets_moved_to (optional)",
    ] {
        assert!(stdout.contains(expected), "{expected:?} in:\n{stdout}");
    }
    let show = scimbridge(&url, &["apps", "show", "6sense"]);
    assert!(!show.status.success());
    assert!(text(&show.stderr).contains("uses profile \"6sense\", which is not defined here"));
}

#[test]
fn serve_refuses_a_bad_profile_naming_the_file_and_line() {
    let dir = TempDir::new();
    let good = include_str!("../../profiles/examples/amazinghiring.toml");
    std::fs::write(dir.0.join("amazinghiring.toml"), good).unwrap();
    // Line 12 maps a group to a role the profile does not have.
    let bad = good
        .replace("key = \"amazinghiring\"", "key = \"ah2\"")
        .replace(
            "\"Recruiting\" = \"Recruiter\"",
            "\"Recruiting\" = \"Sourcer\"",
        );
    let line = bad.lines().position(|l| l.contains("\"Sourcer\"")).unwrap() + 1;
    std::fs::write(dir.0.join("zz-bad.toml"), bad).unwrap();

    let dir_arg = dir.0.to_str().unwrap().to_owned();
    let out = scimbridge(
        // Never reached: profiles are checked before the database is touched.
        "postgres://nobody@127.0.0.1:1/none",
        &["serve", "--bind", "127.0.0.1:0", "--profiles-dir", &dir_arg],
    );
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    let file = dir.0.join("zz-bad.toml");
    assert!(
        stderr.contains(&format!("{}:{line}:", file.display())),
        "file and line in: {stderr}"
    );
    assert!(
        stderr.contains("\"Sourcer\" is not one of the profile's roles"),
        "{stderr}"
    );
}

#[tokio::test]
async fn serve_refuses_an_app_whose_profile_is_unknown() {
    let db = crate::db::test_db().await;
    crate::needs_server!(
        db,
        "runs the CLI and `scimbridge serve` as second processes on the test database"
    );
    let pool = db.pool();
    sqlx::query(
        "insert into app (app_id, display_name, profile) values ('alkami', 'Alkami', 'alkami')",
    )
    .execute(&pool)
    .await
    .unwrap();
    let out = scimbridge(&database_url(&pool), &["serve", "--bind", "127.0.0.1:0"]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("app \"alkami\" uses profile \"alkami\", which is not defined"),
        "{stderr}"
    );
}
