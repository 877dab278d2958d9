//! The embedded trial store (issue #12): the real binary with no DATABASE_URL on a fresh
//! data directory serves SCIM and the task API, prints its first tokens, keeps its data
//! across restarts, and refuses a second process on the same directory at once.

use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Client;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::helpers::okta_user;

/// Held by each test that runs embedded engines, so they run one at a time: several
/// engine processes at once on a loaded machine (two cores shared with builds) starved
/// each other past the tests' timeouts.
pub(crate) static ENGINES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The binary with no database URL: the test run against a Postgres server sets
/// DATABASE_URL, which the children must not inherit.
pub(crate) fn scimbridge(dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_scimbridge"));
    cmd.env_remove("DATABASE_URL")
        .env_remove("SCIMBRIDGE_DATA_DIR")
        .env_remove("SCIMBRIDGE_LOG_JSON")
        .env("NO_COLOR", "1")
        // A command a test gave up on (timed out) must not outlive it.
        .kill_on_drop(true)
        .arg("--data-dir")
        .arg(dir);
    cmd
}

/// A running `scimbridge serve` and everything it printed so far.
pub(crate) struct Server {
    child: Child,
    out: Arc<Mutex<String>>,
    err: Arc<Mutex<String>>,
    pub(crate) root: String,
}

fn collect(stream: impl tokio::io::AsyncRead + Unpin + Send + 'static) -> Arc<Mutex<String>> {
    let sink = Arc::new(Mutex::new(String::new()));
    let to = sink.clone();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut s = to.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
        }
    });
    sink
}

impl Server {
    pub(crate) async fn start(dir: &std::path::Path) -> Server {
        Server::start_with(dir, &[]).await
    }

    /// `serve` with more arguments (e.g. `--database-url`).
    pub(crate) async fn start_with(dir: &std::path::Path, args: &[&str]) -> Server {
        let mut child = scimbridge(dir)
            .args(args)
            .args(["serve", "--bind", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("run scimbridge serve");
        let out = collect(child.stdout.take().unwrap());
        let err = collect(child.stderr.take().unwrap());
        // Wait for the address in the "listening" line (a cold start unpacks the engine).
        for _ in 0..1200 {
            let log = err.lock().unwrap().clone();
            if let Some(at) = log.find("listening") {
                let rest = &log[at..];
                if let Some(p) = rest.find("127.0.0.1:") {
                    let port: String = rest[p + 10..]
                        .chars()
                        .take_while(char::is_ascii_digit)
                        .collect();
                    let root = format!("http://127.0.0.1:{port}");
                    return Server {
                        child,
                        out,
                        err,
                        root,
                    };
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("serve exited with {status}:\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("serve did not start:\n{}", err.lock().unwrap());
    }

    /// The server's pid.
    pub(crate) fn child_id(&self) -> u32 {
        self.child.id().unwrap()
    }

    pub(crate) fn stdout(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    /// The token printed after `<role> token: ` on the first run.
    pub(crate) fn printed_token(&self, role: &str) -> String {
        let out = self.stdout();
        let line = out
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{role} ")) && l.contains("token: "))
            .unwrap_or_else(|| panic!("no {role} token printed:\n{out}"));
        let after = &line[line.find("token: ").unwrap() + 7..];
        after.split_whitespace().next().unwrap().to_owned()
    }

    /// SIGTERM, then wait for the exit (the engine writes its checkpoint).
    pub(crate) async fn stop(mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id().unwrap() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("serve stops after SIGTERM")
            .unwrap();
        assert!(status.success(), "{status}\n{}", self.err.lock().unwrap());
    }
}

/// Runs a command to its end; a hang fails the test (the lock must fail at once).
pub(crate) async fn run(cmd: &mut Command) -> Output {
    // A command that overstays is killed with the test, not left running.
    cmd.kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("the command ends instead of waiting for the store")
        .expect("run scimbridge")
}

pub(crate) fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test]
async fn serve_without_a_database_url_runs_the_embedded_store_and_locks_its_directory() {
    let _one = ENGINES.lock().await;
    let dir = std::env::temp_dir().join(format!("scimbridge-emb-{}", uuid::Uuid::new_v4()));

    // Other commands never create a store nobody named.
    let out = run(scimbridge(&dir).args(["token", "list"])).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("there is no embedded store in"),
        "{}",
        text(&out.stderr)
    );
    assert!(!dir.exists(), "token list created {}", dir.display());

    let server = Server::start(&dir).await;
    let log = server.err.lock().unwrap().clone();
    assert!(log.contains("single-process trial store"), "{log}");
    assert!(
        log.contains("DATABASE_URL"),
        "says how to move to Postgres: {log}"
    );
    let admin = server.printed_token("admin");
    let scim = server.printed_token("scim");
    let printed = server.stdout();
    assert!(
        printed.contains(&format!("{}/scim/v2", server.root))
            && printed.contains(&format!("{}/ui", server.root)),
        "{printed}"
    );

    // SCIM create with the printed scim token.
    let http = Client::new();
    let res = http
        .post(format!("{}/scim/v2/Users", server.root))
        .bearer_auth(&scim)
        .json(&okta_user("ann@corp.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());

    // An agent token made by the printed admin token over the API (the CLI cannot open
    // the store now), then claim and complete the create task.
    let res = http
        .post(format!("{}/api/v1/tokens", server.root))
        .bearer_auth(&admin)
        .json(&json!({"role": "agent", "name": "robot"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let agent = res.json::<Value>().await.unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let claim = |wait: u64| {
        http.post(format!("{}/api/v1/tasks/claim", server.root))
            .bearer_auth(&agent)
            .json(&json!({"wait": wait}))
            .send()
    };
    let res = claim(0).await.unwrap();
    assert_eq!(res.status(), 200);
    let task: Value = res.json().await.unwrap();
    assert_eq!(task["kind"], "create_account");
    let res = http
        .post(format!(
            "{}/api/v1/tasks/{}/complete",
            server.root, task["id"]
        ))
        .bearer_auth(&agent)
        .json(&json!({"outcome": "done", "fields": {}, "lease_id": task["lease_id"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());

    // A long-poll waits without holding the one connection: SCIM keeps answering while
    // it waits, and the task of the user created meanwhile is what it gets.
    let poll = tokio::spawn(claim(20));
    let res = http
        .post(format!("{}/scim/v2/Users", server.root))
        .bearer_auth(&scim)
        .json(&okta_user("bob@corp.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let res = poll.await.unwrap().unwrap();
    assert_eq!(res.status(), 200);
    let task: Value = res.json().await.unwrap();
    assert_eq!(task["subject"]["user_name"], "bob@corp.com");

    // A second server on the same directory fails at once, naming the first.
    let pid = server.child.id().unwrap();
    let out = run(scimbridge(&dir).args(["serve", "--bind", "127.0.0.1:0"])).await;
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("is in use by pid {pid}: scimbridge serve")),
        "{err}"
    );
    assert!(err.contains("--data-dir"), "{err}");

    // So does a CLI command, saying what to do instead.
    let out = run(scimbridge(&dir).args(["token", "list"])).await;
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("pid {pid}")), "{err}");
    assert!(
        err.contains("web UI") && err.contains("POST /api/v1/tokens"),
        "{err}"
    );

    server.stop().await;

    // Stopped: the CLI opens the store, says which one, and sees the server's tokens.
    let out = run(scimbridge(&dir).args(["token", "list"])).await;
    let listed = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("using the embedded store in"),
        "{}",
        text(&out.stderr)
    );
    for name in ["admin", "idp", "robot"] {
        assert!(listed.contains(name), "{listed}");
    }

    // A restart keeps the data and prints no new tokens.
    let server = Server::start(&dir).await;
    let res = http
        .get(format!("{}/scim/v2/Users", server.root))
        .bearer_auth(&scim)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["totalResults"], 2);
    assert!(!server.stdout().contains("token: "), "{}", server.stdout());
    server.stop().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Issue #12 item 5, the embedded twin of tests/reliability/crash.py: `serve` on the
/// embedded store killed with SIGKILL in the middle of concurrent SCIM creates loses no
/// write it acknowledged. The restarted server opens the store at once (the dead
/// process's lock is gone with it), every user answered 201 is there, and the audit
/// chain verifies.
#[tokio::test]
async fn a_killed_embedded_server_loses_no_acknowledged_create() {
    const CREATES: usize = 400;
    const CONCURRENCY: usize = 16;
    const KILL_AFTER: usize = 120;
    let dir = std::env::temp_dir().join(format!("scimbridge-emb-{}", uuid::Uuid::new_v4()));
    let mut server = Server::start(&dir).await;
    let scim = server.printed_token("scim");
    let admin = server.printed_token("admin");
    let root = server.root.clone();
    let http = Client::new();

    // (userName, id) of every create answered 201; the kill comes once KILL_AFTER are in.
    let acked = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
    let enough = Arc::new(tokio::sync::Notify::new());
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let (http, root, scim) = (http.clone(), root.clone(), scim.clone());
        let (acked, enough, next) = (acked.clone(), enough.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= CREATES {
                    return;
                }
                let name = format!("u{i}@corp.com");
                let res = http
                    .post(format!("{root}/scim/v2/Users"))
                    .bearer_auth(&scim)
                    .json(&okta_user(&name))
                    .timeout(Duration::from_secs(30))
                    .send()
                    .await;
                // Refused or cut off by the kill: not acknowledged, nothing to check.
                let Ok(res) = res else { continue };
                if res.status() != 201 {
                    continue;
                }
                let Ok(body) = res.json::<Value>().await else {
                    continue;
                };
                let mut acked = acked.lock().unwrap();
                acked.push((name, body["id"].as_str().unwrap().to_owned()));
                if acked.len() == KILL_AFTER {
                    enough.notify_one();
                }
            }
        }));
    }
    tokio::time::timeout(Duration::from_secs(120), enough.notified())
        .await
        .expect("the creates go through before the kill");
    server.child.start_kill().expect("SIGKILL serve");
    let status = server.child.wait().await.unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "{status}"
    );
    for w in workers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= KILL_AFTER && acked.len() < CREATES,
        "killed mid-way: {} of {CREATES} acknowledged",
        acked.len()
    );

    // The lock died with the process: the store opens again at once, on the same tokens.
    let server = Server::start(&dir).await;
    for (name, id) in &acked {
        let res = http
            .get(format!("{}/scim/v2/Users/{id}", server.root))
            .bearer_auth(&scim)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "acknowledged user {name} ({id}) is lost");
        assert_eq!(res.json::<Value>().await.unwrap()["userName"], *name);
    }
    let res = http
        .get(format!("{}/scim/v2/Users?count=1", server.root))
        .bearer_auth(&scim)
        .send()
        .await
        .unwrap();
    let total = res.json::<Value>().await.unwrap()["totalResults"]
        .as_u64()
        .unwrap();
    assert!(total as usize >= acked.len(), "{total} users listed");

    // Every committed write has its audit record, and the chain holds (records written
    // before the kill and not yet sealed are sealed by the restarted server).
    let mut verified = Value::Null;
    for _ in 0..50 {
        let res = http
            .get(format!("{}/api/v1/audit/verify", server.root))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        verified = res.json().await.unwrap();
        if verified["unsealed"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(verified["ok"], true, "{verified}");
    assert_eq!(verified["unsealed"], 0, "{verified}");
    assert!(
        verified["records"].as_u64().unwrap() >= total,
        "a record per create: {verified}"
    );
    server.stop().await;
    std::fs::remove_dir_all(&dir).unwrap();
}
