//! `scimbridge agent`: the real binary, with handler scripts written here, against the
//! real server. Outcomes from exit codes and stdout, heartbeats, shutdown on SIGTERM,
//! and several agents draining 1,000 tasks exactly once and in order per user.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{okta_user, TestApp};
use scimbridge::auth::Role;

/// A fresh scratch directory for handler scripts and what they record.
pub fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("scimbridge-test-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes an executable `sh` script.
pub fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// A running `scimbridge agent`; its log goes to a file shown when a check fails.
pub struct Agent {
    child: tokio::process::Child,
    log: PathBuf,
}

impl Agent {
    pub fn start(app: &TestApp, handler: &Path, args: &[&str]) -> Agent {
        let log = handler.with_extension(format!("agent-{}.log", uuid::Uuid::new_v4()));
        let out = std::fs::File::create(&log).unwrap();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_scimbridge"))
            .arg("agent")
            .args(["--url", &app.root, "--token", &app.agent_token])
            .arg("--exec")
            .arg(handler)
            .args(args)
            // Client commands must not need a database: give them one that does not exist.
            .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
            .env("RUST_LOG", "scimbridge=debug")
            .env("NO_COLOR", "1")
            .env_remove("SCIMBRIDGE_TOKEN")
            .env_remove("SCIMBRIDGE_URL")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .expect("run scimbridge agent");
        Agent { child, log }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn signal(&self, sig: &str) {
        let pid = self.child.id().expect("agent still running").to_string();
        let s = tokio::process::Command::new("kill")
            .args([&format!("-{sig}"), &pid])
            .status()
            .await
            .unwrap();
        assert!(s.success(), "kill -{sig} {pid}");
    }

    /// Waits for the agent to exit on its own.
    pub async fn wait(&mut self, within: Duration) -> ExitStatus {
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(s) => s.unwrap(),
            Err(_) => panic!("agent still running after {within:?}; log:\n{}", self.log()),
        }
    }

    /// SIGTERM, then the exit status (which must come within `within`).
    pub async fn stop(mut self, within: Duration) -> (ExitStatus, String) {
        self.signal("TERM").await;
        let s = self.wait(within).await;
        (s, self.log())
    }
}

pub async fn task(app: &TestApp, id: &Value) -> Value {
    let res = app
        .api(Method::GET, &format!("/tasks/{id}"), &app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// Polls until `check` holds for the task list, or panics with the agent's log.
async fn until(
    app: &TestApp,
    agent: &Agent,
    within: Duration,
    what: &str,
    check: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + within;
    loop {
        let tasks = app.tasks("?limit=500").await;
        if check(&tasks) {
            return tasks;
        }
        if Instant::now() > deadline {
            panic!(
                "timed out waiting for {what}; tasks: {tasks:#?}\nagent log:\n{}",
                agent.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn finished(tasks: &[Value]) -> bool {
    !tasks.is_empty()
        && tasks
            .iter()
            .all(|t| !matches!(t["state"].as_str(), Some("open" | "in_progress")))
}

async fn create(app: &TestApp, name: &str) -> String {
    app.create_user(okta_user(name)).await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn the_agent_records_done_with_the_fields_its_handler_prints() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    create(&app, "ann@x.com").await;
    create(&app, "bob@x.com").await;
    let dir = scratch();
    let seen = dir.display().to_string();
    let handler = script(
        &dir,
        "handler",
        &format!(
            r#"cat > "{seen}/task-$SCIMBRIDGE_TASK_ID.json"
echo "$SCIMBRIDGE_TASK_KIND $SCIMBRIDGE_LEASE_ID token=${{SCIMBRIDGE_TOKEN:-none}}" > "{seen}/env-$SCIMBRIDGE_TASK_ID"
printf '{{"fields": {{"app_account_id": "pa-%s"}}, "note": "created by the handler"}}' "$SCIMBRIDGE_TASK_ID""#
        ),
    );
    let agent = Agent::start(&app, &handler, &["--concurrency", "2", "--wait", "2"]);
    let tasks = until(
        &app,
        &agent,
        Duration::from_secs(30),
        "both tasks done",
        finished,
    )
    .await;
    let (status, log) = agent.stop(Duration::from_secs(10)).await;
    assert!(
        status.success(),
        "agent exits 0 on SIGTERM: {status}\n{log}"
    );

    assert_eq!(tasks.len(), 2);
    for t in &tasks {
        let id = &t["id"];
        assert_eq!(t["state"], "done", "{t:#}\n{log}");
        assert_eq!(t["evidence"]["app_account_id"], format!("pa-{id}"));
        assert_eq!(t["note"], "created by the handler");
        assert_eq!(t["finished_by"], "robot", "recorded as the agent token");
        // The handler got the task JSON on stdin and the lease in its environment, and
        // not the agent's token.
        let stdin: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join(format!("task-{id}.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(
            (&stdin["id"], &stdin["kind"]),
            (id, &json!("create_account"))
        );
        assert_eq!(stdin["subject"], t["subject"]);
        let env = std::fs::read_to_string(dir.join(format!("env-{id}"))).unwrap();
        assert_eq!(
            env.trim(),
            format!(
                "create_account {} token=none",
                t["lease_id"].as_str().unwrap()
            )
        );
        let h = task(&app, id).await["history"].clone();
        let completes = h
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["action"] == "task.complete")
            .count();
        assert_eq!(completes, 1, "{h:#}");
    }
    assert!(log.contains("task finished"), "{log}");
}

#[tokio::test]
async fn exit_3_is_not_applicable_and_other_failures_keep_the_stderr_tail() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let ghost = create(&app, "ghost@x.com").await;
    let broken = create(&app, "broken@x.com").await;
    let liar = create(&app, "liar@x.com").await;
    let dir = scratch();
    let handler = script(
        &dir,
        "handler",
        r#"task=$(cat)
case "$task" in
  *ghost@*) echo '{"note": "never had an account"}'; exit 3 ;;
  *broken@*)
    i=0
    while [ $i -lt 300 ]; do echo "noise line $i" >&2; i=$((i+1)); done
    echo "console said: 500 Internal Server Error" >&2
    exit 1 ;;
  *liar@*) echo "all good!"; exit 0 ;;
esac"#,
    );
    let agent = Agent::start(&app, &handler, &["--wait", "1"]);
    let tasks = until(
        &app,
        &agent,
        Duration::from_secs(30),
        "three tasks finished",
        finished,
    )
    .await;
    let (status, log) = agent.stop(Duration::from_secs(10)).await;
    assert!(status.success(), "{log}");
    let of = |user: &str| {
        tasks
            .iter()
            .find(|t| t["subject"]["id"] == user)
            .unwrap()
            .clone()
    };

    let na = of(&ghost);
    assert_eq!(
        (na["state"].as_str(), na["note"].as_str()),
        (Some("not_applicable"), Some("never had an account")),
        "{log}"
    );

    let failed = of(&broken);
    assert_eq!(failed["state"], "failed");
    let note = failed["note"].as_str().unwrap();
    assert!(
        note.starts_with("handler exited with status 1; stderr:"),
        "{note}"
    );
    assert!(
        note.ends_with("console said: 500 Internal Server Error"),
        "{note}"
    );
    assert!(
        !note.contains("noise line 0\n"),
        "only the tail is kept: {note}"
    );
    assert!(note.len() < 2300, "about 2 KB: {}", note.len());

    let invalid = of(&liar);
    assert_eq!(invalid["state"], "failed");
    assert!(
        invalid["note"].as_str().unwrap().contains("stdout is not"),
        "{invalid:#}"
    );
}

#[tokio::test]
async fn done_without_a_required_field_is_recorded_as_failed_with_the_reason() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let ann = create(&app, "ann@x.com").await;
    let t = app.claim(&app.agent_token).await.unwrap();
    assert_eq!(
        app.complete(&t, json!({"outcome": "done"})).await.status(),
        200
    );
    app.scim(Method::DELETE, &format!("/Users/{ann}"))
        .send()
        .await
        .unwrap();
    let dir = scratch();
    // Says done but leaves out seat_freed, which removals require.
    let handler = script(
        &dir,
        "handler",
        "cat >/dev/null; echo '{\"note\": \"removed\"}'",
    );
    let agent = Agent::start(&app, &handler, &["--kinds", "remove", "--wait", "1"]);
    let tasks = until(
        &app,
        &agent,
        Duration::from_secs(30),
        "the removal finished",
        |ts| {
            ts.iter().any(|t| {
                t["kind"] == "remove" && t["state"] != "open" && t["state"] != "in_progress"
            })
        },
    )
    .await;
    let (status, log) = agent.stop(Duration::from_secs(10)).await;
    assert!(status.success(), "{log}");
    let removal = tasks.iter().find(|t| t["kind"] == "remove").unwrap();
    assert_eq!(removal["state"], "failed", "{log}");
    let note = removal["note"].as_str().unwrap();
    assert!(
        note.contains("missing_fields")
            && note.contains("seat_freed")
            && note.contains("handler note: removed"),
        "{note}"
    );
}

#[tokio::test]
async fn a_slow_handler_gets_heartbeats() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    create(&app, "ann@x.com").await;
    let dir = scratch();
    let handler = script(&dir, "handler", "cat >/dev/null; sleep 8");
    let agent = Agent::start(&app, &handler, &["--lease-seconds", "10", "--wait", "1"]);
    let claimed = until(&app, &agent, Duration::from_secs(20), "the claim", |ts| {
        ts[0]["state"] == "in_progress"
    })
    .await;
    let first = claimed[0]["lease_expires_at"].as_str().unwrap().to_owned();
    // Heartbeats every third of the lease (3.3 s) push the expiry forward.
    let mut moved = false;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let t = task(&app, &claimed[0]["id"]).await;
        if t["state"] == "in_progress" && t["lease_expires_at"].as_str().unwrap() > first.as_str() {
            moved = true;
            break;
        }
    }
    assert!(
        moved,
        "lease_expires_at moved forward while the handler ran\n{}",
        agent.log()
    );
    let tasks = until(&app, &agent, Duration::from_secs(20), "done", finished).await;
    let (status, log) = agent.stop(Duration::from_secs(10)).await;
    assert!(status.success(), "{log}");
    let t = &tasks[0];
    assert_eq!(
        t["state"], "done",
        "an 8 s handler outlived its 10 s lease only through heartbeats\n{log}"
    );
    assert_eq!(t["attempts"], 1, "never lapsed and reclaimed");
    let claimed_at =
        chrono::DateTime::parse_from_rfc3339(t["claimed_at"].as_str().unwrap()).unwrap();
    let expires =
        chrono::DateTime::parse_from_rfc3339(t["lease_expires_at"].as_str().unwrap()).unwrap();
    assert!(
        (expires - claimed_at).num_seconds() >= 15,
        "two heartbeats extended the lease: {claimed_at} → {expires}"
    );
}

#[tokio::test]
async fn sigterm_lets_a_running_handler_finish_then_exits_0() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    create(&app, "ann@x.com").await;
    let dir = scratch();
    let handler = script(
        &dir,
        "handler",
        "cat >/dev/null; sleep 2; echo '{\"note\": \"finished after the signal\"}'",
    );
    let agent = Agent::start(
        &app,
        &handler,
        &[
            "--concurrency",
            "3",
            "--wait",
            "30",
            "--grace-seconds",
            "30",
        ],
    );
    until(&app, &agent, Duration::from_secs(20), "the claim", |ts| {
        ts[0]["state"] == "in_progress"
    })
    .await;
    let started = Instant::now();
    let (status, log) = agent.stop(Duration::from_secs(20)).await;
    assert!(status.success(), "{status}\n{log}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "idle workers did not wait out their 30 s long poll: {:?}",
        started.elapsed()
    );
    let t = &app.tasks("").await[0];
    assert_eq!(
        (t["state"].as_str(), t["note"].as_str()),
        (Some("done"), Some("finished after the signal")),
        "{log}"
    );
    // Nothing claimed after the signal: a new task stays open.
    create(&app, "bob@x.com").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all = app.tasks("").await;
    assert_eq!(
        all.iter().filter(|t| t["state"] == "open").count(),
        1,
        "{all:#?}\nagent log:\n{log}"
    );
}

#[tokio::test]
async fn sigterm_past_the_grace_period_stops_the_handler_and_releases_its_task() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    create(&app, "ann@x.com").await;
    let dir = scratch();
    let pids = dir.join("pids");
    // The shell and its `sleep` are both stopped: the handler's whole process group.
    let handler = script(
        &dir,
        "handler",
        &format!(
            "cat >/dev/null; echo $$ > '{}'; sleep 60; echo never",
            pids.display()
        ),
    );
    let agent = Agent::start(&app, &handler, &["--wait", "1", "--grace-seconds", "1"]);
    let claimed = until(&app, &agent, Duration::from_secs(20), "the claim", |ts| {
        ts[0]["state"] == "in_progress"
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, log) = agent.stop(Duration::from_secs(20)).await;
    assert!(status.success(), "{status}\n{log}");
    let t = task(&app, &claimed[0]["id"]).await;
    assert_eq!(t["state"], "open", "released to the queue\n{log}");
    let actions: Vec<&str> = t["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["action"].as_str())
        .collect();
    assert!(
        actions.ends_with(&["task.claim", "task.release"]),
        "{actions:?}"
    );
    assert!(app.tasks("?state=in_progress").await.is_empty());
    let pid = std::fs::read_to_string(&pids).unwrap();
    let alive = std::process::Command::new("kill")
        .args(["-0", pid.trim()])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!alive.success(), "the handler was stopped");
}

#[tokio::test]
async fn a_rejected_token_stops_the_agent_with_the_apis_message() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let mut app = TestApp::spawn(pool).await;
    let dir = scratch();
    let handler = script(&dir, "handler", "cat >/dev/null");
    app.agent_token = "not-a-token".into();
    let mut agent = Agent::start(&app, &handler, &[]);
    let status = agent.wait(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(1));
    assert!(
        agent
            .log()
            .contains("error: the bearer token is not valid (unknown or revoked) (invalid_token)"),
        "{}",
        agent.log()
    );
}

/// A user body with a unique externalId.
fn user(i: usize) -> Value {
    let mut u = okta_user(&format!("user{i:04}@drain.example"));
    u["externalId"] = json!(format!("ext-{i}"));
    u
}

#[tokio::test]
async fn four_agents_drain_1000_tasks_once_each_and_in_order_per_user() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    const USERS: usize = 500; // two tasks each: create_account, then update_attributes
    let app = TestApp::spawn(pool).await;

    // 500 users in one SCIM Bulk request: 500 create_account tasks.
    let ops: Vec<Value> = (0..USERS)
        .map(|i| json!({"method": "POST", "path": "/Users", "bulkId": format!("u{i}"), "data": user(i)}))
        .collect();
    let t0 = Instant::now();
    let res = app
        .scim(Method::POST, "/Bulk")
        .json(&json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": ops}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let ids: Vec<String> = body["Operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|op| {
            assert_eq!(op["status"], "201", "{op}");
            op["location"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(ids.len(), USERS);

    // A second task per user: a rename that arrives while the create is being
    // worked waits behind it (claimed here, by another worker whose leases then lapse).
    let prep = app.token("peopleai", Role::Agent, "prep").await;
    for _ in 0..USERS {
        assert!(app.claim(&prep).await.is_some());
    }
    let mut patches = tokio::task::JoinSet::new();
    for chunk in ids.chunks(USERS / 8) {
        let (scim, root, token, chunk) = (
            app.client.clone(),
            app.root.clone(),
            app.scim_token.clone(),
            chunk.to_vec(),
        );
        patches.spawn(async move {
            for id in chunk {
                let res = scim
                    .patch(format!("{root}/scim/v2/Users/{id}"))
                    .bearer_auth(&token)
                    .json(&json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                                  "Operations": [{"op": "replace", "path": "name.familyName", "value": "Moved"}]}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 200);
            }
        });
    }
    while let Some(r) = patches.join_next().await {
        r.unwrap();
    }
    sqlx::query("update task set lease_expires_at = now() - interval '1 second' where state = 'in_progress'")
        .execute(&app.pool)
        .await
        .unwrap();
    let total: i64 = sqlx::query_scalar("select count(*) from task")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(total, 2 * USERS as i64);
    eprintln!(
        "drain: set up {total} tasks in {:.1}s",
        t0.elapsed().as_secs_f64()
    );

    // Four agents, two workers each, with the cheapest handler: the queue is measured.
    let dir = scratch();
    let handler = script(&dir, "handler", "cat >/dev/null");
    let started = Instant::now();
    let agents: Vec<Agent> = (0..4)
        .map(|_| Agent::start(&app, &handler, &["--concurrency", "2", "--wait", "2"]))
        .collect();
    let deadline = started + Duration::from_secs(150);
    loop {
        let done: i64 = sqlx::query_scalar("select count(*) from task where state = 'done'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
        if done == total {
            break;
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = agents.iter().map(Agent::log).collect();
            panic!(
                "only {done} of {total} done after 150 s; last agent log:\n{}",
                logs.last().unwrap()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed();
    eprintln!(
        "drain: 4 agents x 2 workers drained {total} tasks in {:.2}s = {:.0} tasks/s",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
    for a in agents {
        let (status, log) = a.stop(Duration::from_secs(20)).await;
        assert!(status.success(), "{log}");
    }

    // Every task done, by the agents, exactly once.
    let not_done: i64 = sqlx::query_scalar(
        "select count(*) from task where state <> 'done' or finished_by <> 'robot'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(not_done, 0);
    let completions: Vec<(i64, i64)> = sqlx::query_as(
        "select t.task_id, (select count(*) from audit a where a.task_id = t.task_id and a.action = 'task.complete') from task t",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(completions.len(), total as usize);
    let wrong: Vec<_> = completions.iter().filter(|(_, n)| *n != 1).collect();
    assert!(
        wrong.is_empty(),
        "tasks without exactly one task.complete record: {wrong:?}"
    );
    // Per user, tasks finish in task order ...
    let finished_out_of_order: i64 = sqlx::query_scalar(
        "select count(*) from task a join task b on a.user_id = b.user_id and a.task_id < b.task_id \
         where b.finished_at <= a.finished_at",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(finished_out_of_order, 0);
    // ... and the later task was claimed only after the earlier one's completion was
    // written. The audit sequence orders events across transactions; `now()` timestamps
    // cannot, being each transaction's start (a claim may begin before the completion
    // it waits for commits).
    let claimed_too_early: i64 = sqlx::query_scalar(
        "select count(*) from task a join task b on a.user_id = b.user_id and a.task_id < b.task_id \
         where (select min(audit_id) from audit where task_id = b.task_id and action = 'task.claim') \
             < (select max(audit_id) from audit where task_id = a.task_id and action = 'task.complete')",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(claimed_too_early, 0);
    let kinds: Vec<(String, i64)> =
        sqlx::query_as("select kind::text, count(*) from task group by 1 order by 1")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        kinds,
        vec![
            ("create_account".to_owned(), USERS as i64),
            ("update_attributes".to_owned(), USERS as i64)
        ]
    );
}

/// A TCP proxy to the server that forwards the first `…/complete` request but cuts the
/// connection before its answer reaches the client: the completion is recorded, its
/// answer lost. Returns the proxy's URL and how many answers it dropped.
async fn answer_losing_proxy(
    upstream: &str,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let upstream = upstream.trim_start_matches("http://").to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let dropped = Arc::new(AtomicUsize::new(0));
    let dropped_out = Arc::clone(&dropped);
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                continue;
            };
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            // Set once this connection carried a completion whose answer is to be lost.
            let cut = Arc::new(AtomicBool::new(false));
            let (cut_up, seen) = (Arc::clone(&cut), Arc::clone(&dropped));
            let up = tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = cr.read(&mut buf).await {
                    if n == 0 || sw.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                    let chunk = String::from_utf8_lossy(&buf[..n]);
                    if chunk.contains("/complete HTTP/1.1") && seen.load(Ordering::SeqCst) == 0 {
                        cut_up.store(true, Ordering::SeqCst);
                    }
                }
            });
            let dropped = Arc::clone(&dropped);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = sr.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    // HTTP/1.1 without pipelining: data after the completion request is
                    // its answer. Swallow it and hang up on the client.
                    if cut.load(Ordering::SeqCst) {
                        dropped.fetch_add(1, Ordering::SeqCst);
                        break;
                    }
                    if cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                up.abort();
            });
        }
    });
    (url, dropped_out)
}

#[tokio::test]
async fn a_completion_whose_answer_is_lost_is_resent_and_recorded_once() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let mut app = TestApp::spawn(pool).await;
    create(&app, "ann@x.com").await;
    let (proxy, dropped) = answer_losing_proxy(&app.root).await;
    let server = std::mem::replace(&mut app.root, proxy);
    let dir = scratch();
    let handler = script(
        &dir,
        "handler",
        "cat >/dev/null; echo '{\"fields\": {\"app_account_id\": \"pa-1\"}}'",
    );
    let agent = Agent::start(&app, &handler, &["--wait", "1"]);
    app.root = server;
    let tasks = until(&app, &agent, Duration::from_secs(30), "done", finished).await;
    // Give the retry time to arrive, then stop.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !agent.log().contains("task finished") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, log) = agent.stop(Duration::from_secs(10)).await;
    assert!(status.success(), "{log}");
    assert_eq!(
        dropped.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one answer was lost\n{log}"
    );
    assert!(
        log.contains("completion not recorded yet; retrying"),
        "{log}"
    );
    assert!(
        log.contains("task finished") && log.contains("outcome=done"),
        "the resend got the first result\n{log}"
    );
    let t = task(&app, &tasks[0]["id"]).await;
    assert_eq!(
        (t["state"].as_str(), &t["evidence"]),
        (Some("done"), &json!({"app_account_id": "pa-1"}))
    );
    let completes = t["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["action"] == "task.complete")
        .count();
    assert_eq!(completes, 1, "recorded exactly once: {:#}", t["history"]);
}

/// Issue #16 item 7: a job is one span carrying the task's id, app and kind, so every
/// line the agent logs about it (claim, handler, heartbeats, outcome) can be found by task.
#[tokio::test]
async fn every_log_line_of_a_job_names_its_task_app_and_kind() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    create(&app, "ann@x.com").await;
    let dir = scratch();
    let handler = script(
        &dir,
        "handler",
        r#"printf '{"fields": {"app_account_id": "pa-1"}}'"#,
    );
    let agent = Agent::start(&app, &handler, &["--wait", "2"]);
    let tasks = until(
        &app,
        &agent,
        Duration::from_secs(30),
        "the task done",
        finished,
    )
    .await;
    let (_, log) = agent.stop(Duration::from_secs(10)).await;
    let id = tasks[0]["id"].as_i64().unwrap();
    let job = format!("task_id={id} app=peopleai kind=create_account");
    for what in ["task claimed; running handler", "task finished"] {
        let line = log
            .lines()
            .find(|l| l.contains(what))
            .unwrap_or_else(|| panic!("no {what:?} line in\n{log}"));
        assert!(
            line.contains("agent.job{") && line.contains(&job),
            "{what:?} is logged outside the job's span: {line}"
        );
    }
}

#[tokio::test]
async fn an_idle_long_poll_ends_with_no_task_before_the_request_deadline() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let mut config = scimbridge::config::Config::for_tests();
    config.request_timeout_secs = 3;
    let app = TestApp::spawn_with(pool, config).await;
    // A claim asking to wait as long as the deadline answers 204 (no task) just before
    // it, not 503 `timeout` at it.
    let started = Instant::now();
    let res = app
        .api(Method::POST, "/tasks/claim", &app.agent_token)
        .json(&json!({"wait": 3}))
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(res.status(), 204, "{:?}", res.text().await);
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(3),
        "waited {took:?}: most of the wait, ending before the 3 s deadline"
    );
    // The agent, polling with --wait equal to the deadline, logs no warning or error
    // over several idle polls, and stops at once.
    let dir = scratch();
    let handler = script(&dir, "handler", "cat >/dev/null");
    let agent = Agent::start(&app, &handler, &["--wait", "3"]);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let started = Instant::now();
    let (status, log) = agent.stop(Duration::from_secs(10)).await;
    assert!(status.success(), "{status}\n{log}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "shutdown waited {:?}",
        started.elapsed()
    );
    assert!(log.contains("agent stopped"), "{log}");
    assert!(
        !log.contains("WARN") && !log.contains("ERROR"),
        "idle polls are not errors:\n{log}"
    );
}

#[tokio::test]
async fn a_server_shutting_down_ends_its_long_polls_at_once() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let claim = app
        .api(Method::POST, "/tasks/claim", &app.agent_token)
        .json(&json!({"wait": 25}))
        .send();
    let polling = tokio::spawn(claim);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    // Dropping the test app stops the server (as SIGTERM does): the drain must not wait
    // out the poll.
    drop(app);
    let res = tokio::time::timeout(Duration::from_secs(5), polling)
        .await
        .expect("the long poll ended with the shutdown")
        .unwrap()
        .unwrap();
    assert_eq!(res.status(), 204);
    assert!(started.elapsed() < Duration::from_secs(2));
}
