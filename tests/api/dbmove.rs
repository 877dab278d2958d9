//! Moving a trial to production (issue #12): `scimbridge db move|export|import` carry an
//! embedded trial store to a Postgres database, which then serves the same SCIM answers
//! and tasks with the same tokens, and whose audit chain verifies. A non-empty target
//! and a damaged dump are refused and change nothing.

use std::collections::BTreeSet;

use reqwest::Client;
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};

use crate::embedded::{run, scimbridge, text, Server, ENGINES};
use crate::helpers::okta_user;

/// A fresh database on DATABASE_URL's server, dropped by [`Target::drop`].
struct Target {
    name: String,
    url: String,
}

impl Target {
    async fn create() -> Target {
        let name = format!("scimbridge_move_{}", uuid::Uuid::new_v4().simple());
        let mut c = server().await;
        sqlx::raw_sql(&format!("create database {name}"))
            .execute(&mut c)
            .await
            .unwrap();
        let base = std::env::var("DATABASE_URL").expect("DATABASE_URL");
        let (head, _) = base.rsplit_once('/').expect("a URL with a database");
        Target {
            url: format!("{head}/{name}"),
            name,
        }
    }

    async fn conn(&self) -> PgConnection {
        PgConnection::connect(&self.url).await.unwrap()
    }

    /// Rows of a table, or None when the table does not exist (never migrated).
    async fn count(&self, table: &str) -> Option<i64> {
        let mut c = self.conn().await;
        let exists: bool = sqlx::query_scalar("select to_regclass($1) is not null")
            .bind(table)
            .fetch_one(&mut c)
            .await
            .unwrap();
        if !exists {
            return None;
        }
        Some(
            sqlx::query_scalar(&format!("select count(*) from {table}"))
                .fetch_one(&mut c)
                .await
                .unwrap(),
        )
    }

    async fn drop(self) {
        let mut c = server().await;
        sqlx::raw_sql(&format!(
            "drop database if exists {} with (force)",
            self.name
        ))
        .execute(&mut c)
        .await
        .unwrap();
    }
}

/// Runs a command that copies a whole store to its end: longer than `run` allows (a
/// command that must fail at once), as the machine may be loaded by parallel tests.
async fn copy(cmd: &mut tokio::process::Command) -> std::process::Output {
    tokio::time::timeout(std::time::Duration::from_secs(600), cmd.output())
        .await
        .expect("the command ends")
        .expect("run scimbridge")
}

async fn server() -> PgConnection {
    PgConnection::connect(&std::env::var("DATABASE_URL").expect("DATABASE_URL"))
        .await
        .unwrap()
}

fn temp_dir(what: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("scimbridge-{what}-{}", uuid::Uuid::new_v4()))
}

/// A client of one server with one token.
struct Http<'a> {
    c: &'a Client,
    root: &'a str,
}

impl Http<'_> {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .c
            .request(method, format!("{}{path}", self.root))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn get(&self, path: &str, token: &str) -> Value {
        let (s, v) = self.send(reqwest::Method::GET, path, token, None).await;
        assert_eq!(s, 200, "GET {path}: {v}");
        v
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> Value {
        let (s, v) = self
            .send(reqwest::Method::POST, path, token, Some(body))
            .await;
        assert!((200..300).contains(&s), "POST {path}: {s} {v}");
        v
    }

    async fn claim(&self, agent: &str) -> Value {
        self.post("/api/v1/tasks/claim", agent, json!({})).await
    }

    async fn complete(&self, task: &Value, agent: &str, mut body: Value) {
        body["lease_id"] = task["lease_id"].clone();
        self.post(
            &format!("/api/v1/tasks/{}/complete", task["id"]),
            agent,
            body,
        )
        .await;
    }

    async fn bytes(&self, path: &str, token: &str) -> Vec<u8> {
        let res = self
            .c
            .get(format!("{}{path}", self.root))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "GET {path}");
        res.bytes().await.unwrap().to_vec()
    }
}

const STATES: [&str; 8] = [
    "open",
    "awaiting_approval",
    "held",
    "in_progress",
    "done",
    "failed",
    "not_applicable",
    "cancelled",
];

fn admin_user(name: &str) -> Value {
    let mut u = okta_user(name);
    u["roles"] = json!([{"value": "Admin"}]);
    u
}

/// Everything an IdP and an admin can read: the SCIM lists and resources, every task
/// (with its history) by state, and the attachment's bytes.
async fn answers(h: &Http<'_>, scim: &str, admin: &str) -> (Value, Vec<u8>) {
    let users = h.get("/scim/v2/Users?count=200", scim).await;
    let groups = h.get("/scim/v2/Groups", scim).await;
    let mut out = json!({"users": users, "groups": groups, "user": {}, "group": {}, "tasks": {}});
    for u in users["Resources"].as_array().unwrap() {
        let id = u["id"].as_str().unwrap();
        out["user"][id] = h.get(&format!("/scim/v2/Users/{id}"), scim).await;
    }
    for g in groups["Resources"].as_array().unwrap() {
        let id = g["id"].as_str().unwrap();
        out["group"][id] = h.get(&format!("/scim/v2/Groups/{id}"), scim).await;
    }
    let mut attachment = Vec::new();
    for state in STATES {
        let list = h
            .get(&format!("/api/v1/tasks?state={state}&limit=200"), admin)
            .await;
        let mut full = Vec::new();
        for t in list["tasks"].as_array().unwrap() {
            let one = h.get(&format!("/api/v1/tasks/{}", t["id"]), admin).await;
            if one["attachments"].as_array().is_some_and(|a| !a.is_empty()) {
                attachment = h
                    .bytes(&format!("/api/v1/tasks/{}/attachments/1", t["id"]), admin)
                    .await;
            }
            full.push(one);
        }
        assert!(!full.is_empty(), "the trial has a task in state {state}");
        out["tasks"][state] = json!({"list": list, "tasks": full});
    }
    (out, attachment)
}

/// Builds a trial with users, a group with members, tasks in every state, an
/// attachment and audit records; returns the server and its admin and scim tokens.
async fn trial(dir: &std::path::Path, c: &Client) -> (Server, String, String) {
    let server = Server::start(dir).await;
    let admin = server.printed_token("admin");
    let scim = server.printed_token("scim");
    let h = Http {
        c,
        root: &server.root,
    };
    let agent = h
        .post(
            "/api/v1/tokens",
            &admin,
            json!({"role": "agent", "name": "robot"}),
        )
        .await["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    // 22 joiners, all created in the app; the first with evidence and a file.
    let mut ids = Vec::new();
    for i in 0..22 {
        let (s, u) = h
            .send(
                reqwest::Method::POST,
                "/scim/v2/Users",
                &scim,
                Some(okta_user(&format!("u{i}@corp.com"))),
            )
            .await;
        assert_eq!(s, 201, "{u}");
        ids.push(u["id"].as_str().unwrap().to_owned());
    }
    for i in 0..22 {
        let t = h.claim(&agent).await;
        let body = if i == 0 {
            json!({"outcome": "done", "fields": {"app_account_id": "pa-1"}, "note": "by hand",
                   "attachments": [{"filename": "console.png", "content_type": "image/png",
                                    "data": "iVBORw0KGgpmYWtl"}]})
        } else {
            json!({"outcome": "done"})
        };
        h.complete(&t, &agent, body).await;
    }
    let (s, g) = h
        .send(
            reqwest::Method::POST,
            "/scim/v2/Groups",
            &scim,
            Some(
                json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                        "displayName": "Sales",
                        "members": [{"value": ids[0]}, {"value": ids[1]}]}),
            ),
        )
        .await;
    assert_eq!(s, 201, "{g}");
    // 21 leavers within the window: 20 open, the 21st held by the mass-change guard.
    for id in &ids[1..] {
        let (s, v) = h
            .send(
                reqwest::Method::PATCH,
                &format!("/scim/v2/Users/{id}"),
                &scim,
                Some(
                    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                            "Operations": [{"op": "replace", "path": "active", "value": false}]}),
                ),
            )
            .await;
        assert_eq!(s, 200, "{v}");
    }
    let t = h.claim(&agent).await;
    h.complete(
        &t,
        &agent,
        json!({"outcome": "failed", "note": "console down"}),
    )
    .await;
    let t = h.claim(&agent).await;
    h.complete(&t, &agent, json!({"outcome": "not_applicable"}))
        .await;
    h.claim(&agent).await; // stays in progress
                           // Granting Admin waits for approval; one such task is rejected (cancelled).
    for name in ["boss@corp.com", "rej@corp.com"] {
        let (s, v) = h
            .send(
                reqwest::Method::POST,
                "/scim/v2/Users",
                &scim,
                Some(admin_user(name)),
            )
            .await;
        assert_eq!(s, 201, "{v}");
    }
    let waiting = h.get("/api/v1/tasks?state=awaiting_approval", &admin).await["tasks"].clone();
    h.post(
        &format!("/api/v1/tasks/{}/reject", waiting[1]["id"]),
        &admin,
        json!({"reason": "not in sales"}),
    )
    .await;
    (server, admin, scim)
}

/// Replaces the trial server's address with the new one's (SCIM `meta.location`s).
fn at(v: &Value, from: &str, to: &str) -> Value {
    serde_json::from_str(&v.to_string().replace(from, to)).unwrap()
}

#[tokio::test]
async fn a_trial_moves_to_postgres_and_serves_the_same_answers_there() {
    if std::env::var_os("DATABASE_URL").is_none() {
        crate::db::skip_line("the trial moves into a database on that server");
        return;
    }
    let _one = ENGINES.lock().await;
    let dir = temp_dir("move");
    let c = Client::new();
    let (server, admin, scim) = trial(&dir, &c).await;
    let h = Http {
        c: &c,
        root: &server.root,
    };
    let (before, file) = answers(&h, &scim, &admin).await;
    assert_eq!(file, b"\x89PNG\r\n\x1a\nfake");
    let trial_root = server.root.clone();

    // While serve holds the store, a move fails at once, naming it and what to do.
    let pid = server.child_id();
    let target = Target::create().await;
    let out = run(scimbridge(&dir).args(["db", "move", "--to", &target.url])).await;
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("pid {pid}")) && err.contains("Stop `scimbridge serve` first"),
        "{err}"
    );
    assert_eq!(
        target.count("task").await,
        None,
        "the target was not touched"
    );
    server.stop().await;

    let out = copy(scimbridge(&dir).args(["db", "move", "--to", &target.url])).await;
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}\n{}", text(&out.stdout));
    assert!(
        err.contains("moved ") && err.contains(&target.name),
        "{err}"
    );
    assert!(
        text(&out.stdout).contains("peopleai: "),
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stdout).contains("chain intact"),
        "{}",
        text(&out.stdout)
    );

    // `audit verify` passes there.
    let out = copy(scimbridge(&dir).args(["--database-url", &target.url, "audit", "verify"])).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let verified = text(&out.stdout);
    assert!(verified.contains("chain intact"), "{verified}");
    let records: i64 = verified
        .split("peopleai: ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(records > 60, "every record was carried: {verified}");

    // Served from Postgres with the trial's tokens: the same answers.
    let pg = Server::start_with(&dir, &["--database-url", &target.url]).await;
    let h = Http {
        c: &c,
        root: &pg.root,
    };
    let (after, moved_file) = answers(&h, &scim, &admin).await;
    assert_eq!(moved_file, file);
    let before = at(&before, &trial_root, &pg.root);
    for key in ["users", "groups", "user", "group"] {
        assert_eq!(after[key], before[key], "{key}");
    }
    for state in STATES {
        assert_eq!(
            after["tasks"][state], before["tasks"][state],
            "tasks {state}"
        );
    }

    // New ids continue past the trial's: a new task does not reuse one.
    let old: BTreeSet<i64> = STATES
        .iter()
        .flat_map(|s| before["tasks"][s]["tasks"].as_array().unwrap().clone())
        .map(|t| t["id"].as_i64().unwrap())
        .collect();
    let (s, v) = h
        .send(
            reqwest::Method::POST,
            "/scim/v2/Users",
            &scim,
            Some(okta_user("new@corp.com")),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let open = h.get("/api/v1/tasks?state=open&limit=200", &admin).await;
    let new = open["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["subject"]["user_name"] == "new@corp.com")
        .expect("the new user's task")
        .clone();
    assert!(new["id"].as_i64().unwrap() > *old.last().unwrap(), "{new}");
    pg.stop().await;

    // A second move into the now non-empty target is refused and changes nothing.
    let tasks = target.count("task").await;
    let audit = target.count("audit").await;
    let out = copy(scimbridge(&dir).args(["db", "move", "--to", &target.url])).await;
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("not empty") && err.contains("task"), "{err}");
    assert_eq!(
        (target.count("task").await, target.count("audit").await),
        (tasks, audit)
    );

    target.drop().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn import_refuses_a_damaged_or_truncated_dump_and_changes_nothing() {
    if std::env::var_os("DATABASE_URL").is_none() {
        crate::db::skip_line("the dump is imported into a database on that server");
        return;
    }
    let _one = ENGINES.lock().await;
    let dir = temp_dir("dump");
    let c = Client::new();
    let server = Server::start(&dir).await;
    let scim = server.printed_token("scim");
    let h = Http {
        c: &c,
        root: &server.root,
    };
    let (s, v) = h
        .send(
            reqwest::Method::POST,
            "/scim/v2/Users",
            &scim,
            Some(okta_user("ann@corp.com")),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    server.stop().await;

    let file = dir.with_extension("dump");
    let out = copy(scimbridge(&dir).args(["db", "export", "--out", file.to_str().unwrap()])).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the dump holds token hashes and keys");
    }
    let good = std::fs::read_to_string(&file).unwrap();
    assert!(good.contains("ann@corp.com"));

    let target = Target::create().await;
    let import = |path: &std::path::Path| {
        let mut cmd = scimbridge(&dir);
        cmd.args([
            "--database-url",
            &target.url,
            "db",
            "import",
            path.to_str().unwrap(),
        ]);
        cmd
    };
    // One character changed inside a value: still valid JSON, but not what was exported.
    let damaged = dir.with_extension("damaged");
    std::fs::write(&damaged, good.replacen("ann@corp.com", "ann@corp.org", 1)).unwrap();
    let out = copy(&mut import(&damaged)).await;
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("checksum does not match"), "{err}");
    // Cut short: the trailer is missing.
    let truncated = dir.with_extension("truncated");
    std::fs::write(&truncated, &good[..good.len() * 2 / 3]).unwrap();
    let out = copy(&mut import(&truncated)).await;
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("truncated"), "{err}");
    // Neither touched the target: it was not even migrated.
    assert_eq!(target.count("_sqlx_migrations").await, None);

    let out = copy(&mut import(&file)).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("chain intact"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(target.count("scim_user").await, Some(1));
    let audit = target.count("audit").await;

    // Once more into the filled target: refused, nothing changed.
    let out = copy(&mut import(&file)).await;
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("not empty"), "{err}");
    assert_eq!(target.count("scim_user").await, Some(1));
    assert_eq!(target.count("audit").await, audit);

    target.drop().await;
    for f in [&file, &damaged, &truncated] {
        std::fs::remove_file(f).unwrap();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
