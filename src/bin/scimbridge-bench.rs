//! `scimbridge-bench`: load-tests a real scimbridge server and, in the same run, the raw
//! SQL each scenario costs, so every scenario gets a `scimbridge / raw SQL` ratio.
//!
//! ```text
//! cargo run --release --bin scimbridge-bench -- --users 10000 --groups 100 --seconds 5
//! ```
//!
//! It creates a fresh database on `DATABASE_URL`'s server (dropped at the end), migrates
//! it, seeds users and groups with set-based SQL, spawns the server as a child process
//! (this binary re-executed with `--serve`, which runs exactly `scimbridge serve`, so the
//! child's `/proc/<pid>/status` gives the server's own RSS), and runs bounded scenarios
//! (each stops at `--requests` operations or `--seconds`, whichever comes first) against
//! 127.0.0.1 only. See docs/performance.md.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use rand::Rng;
use serde_json::{json, Value};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use uuid::Uuid;

const APP: &str = "peopleai";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// Benchmark scimbridge against the raw SQL it runs.
#[derive(Debug, Parser)]
#[command(about)]
struct Args {
    /// Users to seed.
    #[arg(long, default_value_t = 10_000)]
    users: usize,
    /// Groups to seed (every user is a member of one).
    #[arg(long, default_value_t = 100)]
    groups: usize,
    /// Concurrent clients per scenario (the task drain always uses 4 workers).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Time limit of each scenario, in seconds.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Operation limit of each scenario.
    #[arg(long, default_value_t = 20_000)]
    requests: u64,
    /// Server's database pool size (also the raw-SQL pool size).
    #[arg(long, default_value_t = 16)]
    pool: u32,
    /// Also time one full sequential import walk (startIndex and cursor); stops at
    /// `--walk-seconds`.
    #[arg(long, default_value_t = 60.0)]
    walk_seconds: f64,
    /// Only these scenarios (comma-separated names); all by default.
    #[arg(long)]
    only: Option<String>,
    /// Keep the benchmark database (for EXPLAIN ANALYZE afterwards).
    #[arg(long)]
    keep_db: bool,
    /// Postgres server URL; the benchmark database is created next to its database.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres",
        hide_env_values = true
    )]
    database_url: String,
    /// Internal: run as the server child (`scimbridge serve --bind ADDR`).
    #[arg(long, hide = true)]
    serve: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if let Some(bind) = &args.serve {
        // The child: exactly what `scimbridge serve` runs.
        scimbridge::telemetry::init(false);
        let cli = scimbridge::cli::Cli::try_parse_from([
            "scimbridge",
            "--database-url",
            &args.database_url,
            "serve",
            "--bind",
            bind,
            "--db-max-connections",
            &args.pool.to_string(),
            // The benchmark measures capacity, so the per-token rate limit is off.
            "--rate-limit-per-second",
            "0",
        ])?;
        return rt.block_on(scimbridge::cli::run(cli));
    }
    rt.block_on(bench(args))
}

/// `url` with its database name replaced.
fn with_database(url: &str, db: &str) -> anyhow::Result<String> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").context("DATABASE_URL has no scheme")? + 3;
    let host_part = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    Ok(match query {
        Some(q) => format!("{host_part}/{db}?{q}"),
        None => format!("{host_part}/{db}"),
    })
}

struct Server {
    child: tokio::process::Child,
    pid: u32,
    base: String,
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

async fn spawn_server(url: &str, pool: u32) -> anyhow::Result<Server> {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port()
    };
    let bind = format!("127.0.0.1:{port}");
    let exe = std::env::current_exe()?;
    let child = tokio::process::Command::new(exe)
        .args(["--serve", &bind, "--pool", &pool.to_string()])
        .env("DATABASE_URL", url)
        .env("RUST_LOG", "error")
        .kill_on_drop(true)
        .stdout(std::process::Stdio::null())
        .spawn()
        .context("spawning the server")?;
    let pid = child.id().context("server pid")?;
    let base = format!("http://{bind}");
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
            if r.status().is_success() {
                return Ok(Server { child, pid, base });
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("the server did not become ready within 10 s")
}

/// What the scenarios share: ids to pick from, tokens, the server.
struct Ctx {
    http: reqwest::Client,
    base: String,
    scim: String,
    agent: String,
    pool: PgPool,
    ids: Vec<Uuid>,
    groups: Vec<Uuid>,
    users: usize,
    run: String,
    created: AtomicU64,
    drained: Mutex<HashSet<i64>>,
    duplicates: AtomicU64,
}

fn user_name(i: usize) -> String {
    format!("user{i:07}@bench.example")
}

#[derive(Default)]
struct Outcome {
    ops: u64,
    errors: u64,
    secs: f64,
    lat: Vec<u32>,
    first_error: Option<String>,
}

impl Outcome {
    fn rate(&self) -> f64 {
        if self.secs > 0.0 {
            self.ops as f64 / self.secs
        } else {
            0.0
        }
    }
    fn pct(&self, p: f64) -> f64 {
        if self.lat.is_empty() {
            return 0.0;
        }
        let i = ((self.lat.len() as f64 - 1.0) * p).round() as usize;
        self.lat[i] as f64 / 1000.0
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scenario {
    RoundTrip,
    GetById,
    FilterHit,
    FilterMiss,
    IndexWalk,
    CursorWalk,
    PatchUser,
    PutUser,
    PatchGroup,
    Create,
    MixedSync,
    Drain,
}

const ALL: [Scenario; 12] = [
    Scenario::RoundTrip,
    Scenario::GetById,
    Scenario::FilterHit,
    Scenario::FilterMiss,
    Scenario::IndexWalk,
    Scenario::CursorWalk,
    Scenario::PatchUser,
    Scenario::PutUser,
    Scenario::PatchGroup,
    Scenario::Create,
    Scenario::MixedSync,
    Scenario::Drain,
];

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::RoundTrip => "round_trip",
            Scenario::GetById => "get_by_id",
            Scenario::FilterHit => "filter_hit",
            Scenario::FilterMiss => "filter_miss",
            Scenario::IndexWalk => "index_walk_page",
            Scenario::CursorWalk => "cursor_walk_page",
            Scenario::PatchUser => "patch_user",
            Scenario::PutUser => "put_user",
            Scenario::PatchGroup => "patch_group_add",
            Scenario::Create => "create_user",
            Scenario::MixedSync => "mixed_okta_sync",
            Scenario::Drain => "task_drain",
        }
    }
}

type OpResult = Result<(), String>;

/// Runs `op` from `workers` clients until `limit` operations or `secs` have passed.
async fn drive<F, Fut>(workers: usize, limit: u64, secs: f64, op: F) -> Outcome
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Option<OpResult>> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..workers {
        let (op, next, stop) = (op.clone(), next.clone(), stop.clone());
        handles.push(tokio::spawn(async move {
            let mut out = Outcome::default();
            loop {
                if stop.load(Ordering::Relaxed) || Instant::now() >= deadline {
                    break;
                }
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= limit {
                    break;
                }
                let t = Instant::now();
                // A bounded wait per operation, so a stuck request cannot outlive the run.
                let r = match tokio::time::timeout(Duration::from_secs(30), op(n)).await {
                    Ok(r) => r,
                    Err(_) => Some(Err("timed out after 30 s".into())),
                };
                let Some(r) = r else {
                    // Nothing left to do (e.g. the queue is empty).
                    stop.store(true, Ordering::Relaxed);
                    break;
                };
                out.lat
                    .push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                out.ops += 1;
                if let Err(e) = r {
                    out.errors += 1;
                    out.first_error.get_or_insert(e);
                }
            }
            out
        }));
    }
    let mut total = Outcome::default();
    for h in handles {
        if let Ok(o) = h.await {
            total.ops += o.ops;
            total.errors += o.errors;
            total.lat.extend(o.lat);
            if total.first_error.is_none() {
                total.first_error = o.first_error;
            }
        }
    }
    total.secs = start.elapsed().as_secs_f64();
    total.lat.sort_unstable();
    total
}

async fn check(r: reqwest::Result<reqwest::Response>) -> Result<Value, String> {
    let r = r.map_err(|e| e.to_string())?;
    let status = r.status();
    if status == reqwest::StatusCode::NO_CONTENT {
        return Ok(Value::Null);
    }
    let body = r.text().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!(
            "{status}: {}",
            body.chars().take(300).collect::<String>()
        ));
    }
    serde_json::from_str(&body).map_err(|e| e.to_string())
}

/// Like [`check`] for scenarios that look at nothing in the answer: the body is read in
/// full but not parsed, so the client spends no more per request than the raw side's
/// sqlx, which receives rows without decoding them.
async fn received(r: reqwest::Result<reqwest::Response>) -> OpResult {
    let r = r.map_err(|e| e.to_string())?;
    let status = r.status();
    let body = r.bytes().await.map_err(|e| e.to_string())?;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!(
            "{status}: {}",
            String::from_utf8_lossy(&body)
                .chars()
                .take(300)
                .collect::<String>()
        ))
    }
}

fn pick(ctx: &Ctx) -> (usize, Uuid) {
    let i = rand::thread_rng().gen_range(0..ctx.ids.len());
    (i, ctx.ids[i])
}

fn patch_body() -> Value {
    let mut rng = rand::thread_rng();
    let n: u32 = rng.gen_range(0..1_000_000);
    let mut ops = vec![
        json!({"op": "Replace", "path": "displayName", "value": format!("Person {n}")}),
        json!({"op": "Replace", "path": "title", "value": format!("Title {}", n % 50)}),
    ];
    if rng.gen_ratio(1, 4) {
        let v = if rng.gen_bool(0.5) { "False" } else { "True" };
        ops.push(json!({"op": "Replace", "path": "active", "value": v}));
    }
    json!({"schemas": [PATCH_OP], "Operations": ops})
}

fn full_user(name: &str, n: u64) -> Value {
    json!({
        "schemas": [USER_SCHEMA, ENTERPRISE],
        "userName": name,
        "externalId": format!("ext-{name}"),
        "name": {"givenName": format!("Given{n}"), "familyName": format!("Family{n}"),
                 "formatted": format!("Given{n} Family{n}")},
        "displayName": format!("Given{n} Family{n}"),
        "title": format!("Title {}", n % 50),
        "emails": [{"value": name, "type": "work", "primary": true}],
        "active": true,
        ENTERPRISE: {"department": format!("Dept {}", n % 20), "employeeNumber": n.to_string()},
    })
}

fn filter_url(ctx: &Ctx, name: &str) -> String {
    let f = format!("userName eq \"{name}\"");
    let mut u = reqwest::Url::parse(&format!("{}/scim/v2/Users", ctx.base)).expect("url");
    u.query_pairs_mut()
        .append_pair("filter", &f)
        .append_pair("startIndex", "1")
        .append_pair("count", "100");
    u.to_string()
}

/// One HTTP operation of a scenario.
async fn http_op(ctx: Arc<Ctx>, s: Scenario, n: u64) -> Option<OpResult> {
    let h = &ctx.http;
    let scim = |rb: reqwest::RequestBuilder| rb.bearer_auth(&ctx.scim).send();
    let pages = ctx.users.div_ceil(100).max(1);
    Some(match s {
        Scenario::RoundTrip => received(h.get(format!("{}/healthz", ctx.base)).send().await).await,
        Scenario::GetById => {
            let (_, id) = pick(&ctx);
            received(scim(h.get(format!("{}/scim/v2/Users/{id}", ctx.base))).await).await
        }
        Scenario::FilterHit => {
            let (i, _) = pick(&ctx);
            let r = check(scim(h.get(filter_url(&ctx, &user_name(i)))).await).await;
            r.and_then(|v| match v["totalResults"].as_i64() {
                Some(1) => Ok(()),
                other => Err(format!("filter hit found {other:?}")),
            })
        }
        Scenario::FilterMiss => {
            let name = format!("nobody{n}@bench.example");
            let r = check(scim(h.get(filter_url(&ctx, &name))).await).await;
            r.and_then(|v| match v["totalResults"].as_i64() {
                Some(0) => Ok(()),
                other => Err(format!("filter miss found {other:?}")),
            })
        }
        Scenario::IndexWalk => {
            let page = rand::thread_rng().gen_range(0..pages);
            let url = format!(
                "{}/scim/v2/Users?startIndex={}&count=100",
                ctx.base,
                page * 100 + 1
            );
            received(scim(h.get(url)).await).await
        }
        Scenario::CursorWalk => {
            let after = rand::thread_rng().gen_range(0..ctx.users as i64);
            let cursor = if after == 0 {
                String::new()
            } else {
                format!("c{after}")
            };
            let url = format!("{}/scim/v2/Users?cursor={cursor}&count=100", ctx.base);
            received(scim(h.get(url)).await).await
        }
        Scenario::PatchUser => {
            let (_, id) = pick(&ctx);
            let url = format!("{}/scim/v2/Users/{id}", ctx.base);
            received(scim(h.patch(url).json(&patch_body())).await).await
        }
        Scenario::PutUser => {
            let (i, id) = pick(&ctx);
            let url = format!("{}/scim/v2/Users/{id}", ctx.base);
            let body = full_user(&user_name(i), n);
            received(scim(h.put(url).json(&body)).await).await
        }
        Scenario::PatchGroup => {
            let g = ctx.groups[rand::thread_rng().gen_range(0..ctx.groups.len())];
            let (_, id) = pick(&ctx);
            let body = json!({"schemas": [PATCH_OP], "Operations": [
                {"op": "add", "path": "members", "value": [{"value": id}]}]});
            let url = format!("{}/scim/v2/Groups/{g}", ctx.base);
            received(scim(h.patch(url).json(&body)).await).await
        }
        Scenario::Create => {
            let k = ctx.created.fetch_add(1, Ordering::Relaxed);
            let name = format!("new-{}-{k}@bench.example", ctx.run);
            let url = format!("{}/scim/v2/Users", ctx.base);
            received(scim(h.post(url).json(&full_user(&name, k))).await).await
        }
        Scenario::MixedSync => {
            let roll = rand::thread_rng().gen_range(0..100);
            let s = match roll {
                0..=69 => Scenario::FilterHit,
                70..=79 => Scenario::GetById,
                80..=89 => Scenario::PatchUser,
                90..=94 => Scenario::PutUser,
                _ => Scenario::Create,
            };
            return Box::pin(http_op(ctx.clone(), s, n)).await;
        }
        Scenario::Drain => {
            let url = format!("{}/api/v1/tasks/claim", ctx.base);
            let claimed = match check(
                h.post(url)
                    .bearer_auth(&ctx.agent)
                    .json(&json!({}))
                    .send()
                    .await,
            )
            .await
            {
                Ok(Value::Null) => return None,
                Ok(v) => v,
                Err(e) => return Some(Err(e)),
            };
            let id = claimed["id"].as_i64().unwrap_or_default();
            let url = format!("{}/api/v1/tasks/{id}/complete", ctx.base);
            // What a person records: every required field, the first choice when it has some.
            let mut fields = serde_json::Map::new();
            for f in claimed["completion_fields"]
                .as_array()
                .into_iter()
                .flatten()
            {
                if f["required"].as_bool() == Some(true) {
                    let v = f["choices"][0]
                        .as_str()
                        .unwrap_or("recorded by the benchmark");
                    fields.insert(f["name"].as_str().unwrap_or_default().to_owned(), json!(v));
                }
            }
            let body =
                json!({"outcome": "done", "lease_id": claimed["lease_id"], "fields": fields});
            let r = check(h.post(url).bearer_auth(&ctx.agent).json(&body).send().await).await;
            record_done(&ctx, id);
            r.map(drop)
        }
    })
}

fn record_done(ctx: &Ctx, id: i64) {
    let fresh = ctx.drained.lock().map(|mut s| s.insert(id)).unwrap_or(true);
    if !fresh {
        ctx.duplicates.fetch_add(1, Ordering::Relaxed);
    }
}

// ---- The raw-SQL side: the statements each request runs, straight through sqlx. ----

/// The select GET /Users/{id} and list pages run (src/db/users.rs), verbatim.
fn user_select() -> String {
    format!(
        r#"
    select u.user_id, u.seq, u.doc, u.version, u.created_at, u.updated_at,
           coalesce((select jsonb_agg(jsonb_build_object('value', g.group_id, 'display', g.display_name)
                                      order by g.display_name)
                       from group_member m join scim_group g using (group_id)
                      where m.user_id = u.user_id and g.deleted_at is null), '[]') as groups,
           jsonb_strip_nulls(jsonb_build_object(
               'state', {},
               'openTaskId', (select t.task_id::text from task t
                               where t.user_id = u.user_id
                                 and t.state in ('open', 'awaiting_approval', 'held', 'in_progress')
                               order by t.task_id limit 1),
               'lastConfirmed', to_char(u.confirmed_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
               'needsAttention', u.needs_attention)) as provisioning
      from scim_user u
"#,
        scimbridge::db::users::STATE
    )
}

async fn audit(
    tx: &mut sqlx::PgConnection,
    action: &str,
    subject: &str,
    detail: Value,
) -> sqlx::Result<()> {
    sqlx::query(
        "insert into audit (app_id, actor, actor_role, action, subject_type, subject_id, outcome, detail) \
         values ($1, 'bench', 'scim', $2, 'user', $3, 'ok', $4)",
    )
    .bind(APP)
    .bind(action)
    .bind(subject)
    .bind(detail)
    .execute(tx)
    .await?;
    Ok(())
}

async fn raw_update(ctx: &Ctx, id: Uuid, change: impl FnOnce(Value) -> Value) -> sqlx::Result<()> {
    let mut tx = ctx.pool.begin().await?;
    let (doc,): (Value,) = sqlx::query_as(
        "select doc from scim_user where app_id = $1 and user_id = $2 and deleted_at is null for update",
    )
    .bind(APP)
    .bind(id)
    .fetch_one(&mut *tx)
    .await?;
    let doc = change(doc);
    sqlx::query("update scim_user set doc = $2, version = version + 1, updated_at = now() where user_id = $1")
        .bind(id)
        .bind(&doc)
        .execute(&mut *tx)
        .await?;
    audit(&mut tx, "user.patch", &id.to_string(), json!({})).await?;
    sqlx::query(&format!("{} where u.user_id = $1", user_select()))
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await
}

/// The count, then (when something matched) the page, on one connection: what the
/// server's list does (src/db/filter.rs).
async fn raw_filter(ctx: &Ctx, name: &str) -> sqlx::Result<i64> {
    let mut conn = ctx.pool.acquire().await?;
    let total: i64 = sqlx::query_scalar(
        "select count(*) from scim_user u where u.app_id = $1 and u.deleted_at is null and lower(u.user_name) = lower($2)",
    )
    .bind(APP)
    .bind(name)
    .fetch_one(&mut *conn)
    .await?;
    if total > 0 {
        sqlx::query(&format!(
            "{} where u.app_id = $1 and u.deleted_at is null and lower(u.user_name) = lower($2) order by u.seq limit 100",
            user_select()
        ))
        .bind(APP)
        .bind(name)
        .fetch_all(&mut *conn)
        .await?;
    }
    Ok(total)
}

/// `totalResults` of an unfiltered list, as the server reads it (src/db/filter.rs).
async fn raw_count(conn: &mut sqlx::PgConnection) -> sqlx::Result<i64> {
    sqlx::query_scalar("select coalesce((select live from app_user_count where app_id = $1), 0)")
        .bind(APP)
        .fetch_one(conn)
        .await
}

/// One raw-SQL operation of a scenario.
async fn raw_op(ctx: Arc<Ctx>, s: Scenario, n: u64) -> Option<OpResult> {
    let r: sqlx::Result<()> = async {
        let pages = ctx.users.div_ceil(100).max(1);
        match s {
            Scenario::RoundTrip => {
                sqlx::query("select 1").execute(&ctx.pool).await?;
            }
            Scenario::GetById => {
                let (_, id) = pick(&ctx);
                sqlx::query(&format!(
                    "{} where u.app_id = $1 and u.user_id = $2 and u.deleted_at is null",
                    user_select()
                ))
                .bind(APP)
                .bind(id)
                .fetch_optional(&ctx.pool)
                .await?;
            }
            Scenario::FilterHit => {
                let (i, _) = pick(&ctx);
                raw_filter(&ctx, &user_name(i)).await?;
            }
            Scenario::FilterMiss => {
                raw_filter(&ctx, &format!("nobody{n}@bench.example")).await?;
            }
            Scenario::IndexWalk => {
                let page = rand::thread_rng().gen_range(0..pages) as i64;
                let mut conn = ctx.pool.acquire().await?;
                raw_count(&mut conn).await?;
                sqlx::query(&format!(
                    "{} where u.app_id = $1 and u.deleted_at is null and u.seq in (select u.seq from scim_user u \
                     where u.app_id = $1 and u.deleted_at is null order by u.seq limit 100 offset $2) order by u.seq",
                    user_select()
                ))
                .bind(APP)
                .bind(page * 100)
                .fetch_all(&mut *conn)
                .await?;
            }
            Scenario::CursorWalk => {
                let after = rand::thread_rng().gen_range(0..ctx.users as i64);
                let mut conn = ctx.pool.acquire().await?;
                raw_count(&mut conn).await?;
                sqlx::query(&format!(
                    "{} where u.app_id = $1 and u.deleted_at is null and u.seq > $2 order by u.seq limit 101",
                    user_select()
                ))
                .bind(APP)
                .bind(after)
                .fetch_all(&mut *conn)
                .await?;
            }
            Scenario::PatchUser => {
                let (_, id) = pick(&ctx);
                raw_update(&ctx, id, |mut d| {
                    d["displayName"] = json!(format!("Person {n}"));
                    d["title"] = json!(format!("Title {}", n % 50));
                    d
                })
                .await?;
            }
            Scenario::PutUser => {
                let (i, id) = pick(&ctx);
                let doc = full_user(&user_name(i), n);
                raw_update(&ctx, id, |_| doc).await?;
            }
            Scenario::PatchGroup => {
                let g = ctx.groups[rand::thread_rng().gen_range(0..ctx.groups.len())];
                let (_, id) = pick(&ctx);
                let mut tx = ctx.pool.begin().await?;
                sqlx::query("select 1 from scim_group where group_id = $1 for update")
                    .bind(g)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("insert into group_member (group_id, user_id) values ($1, $2) on conflict do nothing")
                    .bind(g)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("update scim_group set version = version + 1, updated_at = now() where group_id = $1")
                    .bind(g)
                    .execute(&mut *tx)
                    .await?;
                audit(&mut tx, "group.patch", &g.to_string(), json!({})).await?;
                // The group with its members: what a 200 answer to the PATCH carries.
                sqlx::query(&format!(
                    "{} where g.group_id = $1",
                    scimbridge::db::groups::select(true)
                ))
                .bind(g)
                .fetch_one(&mut *tx)
                .await?;
                tx.commit().await?;
            }
            Scenario::Create => {
                let k = ctx.created.fetch_add(1, Ordering::Relaxed);
                let name = format!("raw-{}-{k}@bench.example", ctx.run);
                let doc = full_user(&name, k);
                let id = Uuid::new_v4();
                let mut tx = ctx.pool.begin().await?;
                sqlx::query(
                    "insert into scim_user (user_id, app_id, user_name, external_id, active, emails, doc) \
                     values ($1, $2, $3, $4, true, $5, $6)",
                )
                .bind(id)
                .bind(APP)
                .bind(&name)
                .bind(format!("ext-{name}"))
                .bind(vec![name.clone()])
                .bind(&doc)
                .execute(&mut *tx)
                .await?;
                let target = json!({"user_name": name, "email": name, "given_name": format!("Given{k}"),
                    "family_name": format!("Family{k}"), "role": "Standard", "active": true});
                sqlx::query(
                    "insert into task (app_id, user_id, kind, title, instructions, changes, target) \
                     values ($1, $2, 'create_account', $3, '[]', '[]', $4)",
                )
                .bind(APP)
                .bind(id)
                .bind(format!("Create account for {name}"))
                .bind(&target)
                .execute(&mut *tx)
                .await?;
                audit(&mut tx, "user.create", &id.to_string(), json!({"userName": name})).await?;
                tx.commit().await?;
            }
            Scenario::MixedSync => {
                let roll = rand::thread_rng().gen_range(0..100);
                let s = match roll {
                    0..=69 => Scenario::FilterHit,
                    70..=79 => Scenario::GetById,
                    80..=89 => Scenario::PatchUser,
                    90..=94 => Scenario::PutUser,
                    _ => Scenario::Create,
                };
                return match Box::pin(raw_op(ctx.clone(), s, n)).await {
                    Some(Err(e)) => Err(sqlx::Error::Protocol(e)),
                    _ => Ok(()),
                };
            }
            Scenario::Drain => {
                let mut tx = ctx.pool.begin().await?;
                let picked: Option<(i64, Uuid, Option<Value>)> = sqlx::query_as(
                    "select t.task_id, t.user_id, t.target from task t join scim_user u on u.user_id = t.user_id \
                     where t.app_id = $1 and t.state = 'open' and not exists \
                       (select 1 from task p where p.user_id = t.user_id and p.state = 'in_progress') \
                     order by t.priority, t.task_id limit 1 for update of t, u skip locked",
                )
                .bind(APP)
                .fetch_optional(&mut *tx)
                .await?;
                let Some((id, user_id, target)) = picked else {
                    return Err(sqlx::Error::RowNotFound);
                };
                let lease = Uuid::new_v4();
                sqlx::query(
                    "update task set state = 'in_progress', claimed_by = 'bench', claimed_at = now(), lease_id = $2, \
                     lease_seconds = 900, lease_expires_at = now() + interval '900 s', attempts = attempts + 1, \
                     updated_at = now() where task_id = $1",
                )
                .bind(id)
                .bind(lease)
                .execute(&mut *tx)
                .await?;
                audit(&mut tx, "task.claim", &user_id.to_string(), json!({"lease_id": lease})).await?;
                tx.commit().await?;
                let mut tx = ctx.pool.begin().await?;
                sqlx::query("select 1 from task where task_id = $1 and lease_id = $2 for update")
                    .bind(id)
                    .bind(lease)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("update scim_user set confirmed = $2, confirmed_at = now(), needs_attention = false where user_id = $1")
                    .bind(user_id)
                    .bind(target)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("update task set state = 'done', finished_at = now(), finished_by = 'bench', updated_at = now() where task_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                audit(&mut tx, "task.complete", &user_id.to_string(), json!({})).await?;
                tx.commit().await?;
                record_done(&ctx, id);
            }
        }
        Ok(())
    }
    .await;
    match r {
        Err(sqlx::Error::RowNotFound) if s == Scenario::Drain => None,
        Err(e) => Some(Err(e.to_string())),
        Ok(()) => Some(Ok(())),
    }
}

// ---- Setup: database, seed, tokens. ----

async fn seed(pool: &PgPool, users: usize, groups: usize) -> anyhow::Result<()> {
    // Realistic documents built server-side in one statement per table (no per-row round
    // trips): names, work email, title, enterprise department, every 10th user inactive.
    // Everyone is synced (confirmed = the account the profile would derive), except the
    // last fifth, who wait for their create_account task (the queue the drain works).
    let waiting = (users / 5).min(20_000);
    // The live-user counter's trigger runs once per row at commit; for one statement
    // inserting N rows it would update the counter row N times in one transaction
    // (quadratic in N: 100 s for 100k). The server never writes more than a Bulk request
    // (1000 operations) at once, so the seed sets the counter itself.
    sqlx::query("alter table scim_user disable trigger scim_user_live_count")
        .execute(pool)
        .await?;
    sqlx::query(&format!(
        r#"
        insert into scim_user (user_id, app_id, user_name, external_id, active, emails, doc, confirmed, confirmed_at)
        select gen_random_uuid(), '{APP}', n.name, 'ext-' || i, i % 10 <> 0, array[n.name],
               jsonb_build_object(
                 'userName', n.name, 'externalId', 'ext-' || i,
                 'name', jsonb_build_object('givenName', 'Given' || i, 'familyName', 'Family' || i,
                                            'formatted', 'Given' || i || ' Family' || i),
                 'displayName', 'Given' || i || ' Family' || i,
                 'title', 'Title ' || (i % 50),
                 'emails', jsonb_build_array(jsonb_build_object('value', n.name, 'type', 'work', 'primary', true)),
                 'active', i % 10 <> 0,
                 '{ENTERPRISE}', jsonb_build_object('department', 'Dept ' || (i % 20), 'employeeNumber', i::text)),
               case when i < $2 then jsonb_build_object(
                 'user_name', n.name, 'email', n.name, 'given_name', 'Given' || i, 'family_name', 'Family' || i,
                 'display_name', 'Given' || i || ' Family' || i, 'department', 'Dept ' || (i % 20),
                 'role', 'Standard', 'active', i % 10 <> 0) end,
               case when i < $2 then now() end
          from generate_series(0, $1 - 1) i,
               lateral (select 'user' || lpad(i::text, 7, '0') || '@bench.example' as name) n
         order by i
        "#
    ))
    .bind(users as i64)
    .bind((users - waiting) as i64)
    .execute(pool)
    .await?;
    sqlx::query(&format!(
        "insert into app_user_count (app_id, live) \
         select '{APP}', count(*) from scim_user where app_id = '{APP}' and deleted_at is null \
         on conflict (app_id) do update set live = excluded.live"
    ))
    .execute(pool)
    .await?;
    sqlx::query("alter table scim_user enable trigger scim_user_live_count")
        .execute(pool)
        .await?;
    sqlx::query(&format!(
        "insert into scim_group (group_id, app_id, display_name, doc) \
         select gen_random_uuid(), '{APP}', 'Team ' || i, jsonb_build_object('displayName', 'Team ' || i) \
           from generate_series(0, $1 - 1) i order by i"
    ))
    .bind(groups as i64)
    .execute(pool)
    .await?;
    if groups > 0 {
        sqlx::query(
            "insert into group_member (group_id, user_id) \
             select g.group_id, u.user_id from scim_user u \
               join (select group_id, row_number() over (order by seq) - 1 as k from scim_group) g \
                 on g.k = (u.seq % $1)",
        )
        .bind(groups as i64)
        .execute(pool)
        .await?;
    }
    sqlx::query(&format!(
        "insert into task (app_id, user_id, kind, title, instructions, changes, target) \
         select '{APP}', u.user_id, 'create_account', 'Create People.ai account for ' || u.user_name, \
                '[]', '[]', jsonb_build_object('user_name', u.user_name, 'email', u.user_name, \
                'given_name', u.doc->'name'->>'givenName', 'family_name', u.doc->'name'->>'familyName', \
                'display_name', u.doc->>'displayName', 'department', u.doc->'{ENTERPRISE}'->>'department', \
                'role', 'Standard', 'active', u.active) \
           from scim_user u where u.confirmed is null order by u.seq"
    ))
    .execute(pool)
    .await?;
    // A database that has been in use is vacuumed (autovacuum): the visibility map lets
    // index-only scans (OFFSET pages, counts of filtered lists) skip the heap. Without
    // this, the measurements would be of a table minutes old, not of a running service.
    sqlx::query("vacuum analyze").execute(pool).await?;
    Ok(())
}

async fn token(pool: &PgPool, role: scimbridge::auth::Role, name: &str) -> anyhow::Result<String> {
    let store = scimbridge::db::Store::new(pool.clone());
    let secret = scimbridge::auth::generate_token();
    store
        .insert_token(APP, role, name, &scimbridge::auth::hash_token(&secret))
        .await?;
    Ok(secret)
}

/// One full sequential walk (as Okta's import does it): pages, seconds, complete?
async fn full_walk(ctx: &Ctx, cursor: bool, limit: f64) -> (u64, f64, bool) {
    let start = Instant::now();
    let mut pages = 0u64;
    let mut index = 1usize;
    let mut next = String::new();
    loop {
        if start.elapsed().as_secs_f64() > limit || pages > 100_000 {
            return (pages, start.elapsed().as_secs_f64(), false);
        }
        let url = if cursor {
            format!("{}/scim/v2/Users?cursor={next}&count=100", ctx.base)
        } else {
            format!("{}/scim/v2/Users?startIndex={index}&count=100", ctx.base)
        };
        let Ok(v) = check(ctx.http.get(url).bearer_auth(&ctx.scim).send().await).await else {
            return (pages, start.elapsed().as_secs_f64(), false);
        };
        pages += 1;
        let got = v["Resources"].as_array().map_or(0, Vec::len);
        if cursor {
            match v["nextCursor"].as_str() {
                Some(c) => next = c.to_owned(),
                None => return (pages, start.elapsed().as_secs_f64(), true),
            }
        } else {
            index += got;
            let total = v["totalResults"].as_u64().unwrap_or(0) as usize;
            if got == 0 || index > total {
                return (pages, start.elapsed().as_secs_f64(), true);
            }
        }
    }
}

async fn bench(args: Args) -> anyhow::Result<()> {
    let run = format!("{:08x}", rand::random::<u32>());
    let db = format!("scimbridge_bench_{run}");
    let admin_opts: PgConnectOptions = args.database_url.parse()?;
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(admin_opts)
        .await
        .context("connecting to DATABASE_URL")?;
    sqlx::query(&format!("create database {db}"))
        .execute(&admin)
        .await?;
    let url = with_database(&args.database_url, &db)?;
    let result = run_all(&args, &url, &run).await;
    if !args.keep_db {
        // The pools are closed by now; WITH (FORCE) covers a straggling connection.
        let _ = sqlx::query(&format!("drop database if exists {db} with (force)"))
            .execute(&admin)
            .await;
    } else {
        eprintln!("kept database {db}");
    }
    result
}

async fn run_all(args: &Args, url: &str, run: &str) -> anyhow::Result<()> {
    let pool = PgPoolOptions::new()
        .max_connections(args.pool)
        .connect(url)
        .await?;
    scimbridge::db::MIGRATOR.run(&pool).await?;
    let t = Instant::now();
    seed(&pool, args.users, args.groups.max(1)).await?;
    eprintln!(
        "seeded {} users, {} groups in {:.1} s",
        args.users,
        args.groups.max(1),
        t.elapsed().as_secs_f64()
    );
    let ids: Vec<Uuid> = sqlx::query_scalar("select user_id from scim_user order by seq")
        .fetch_all(&pool)
        .await?;
    let groups: Vec<Uuid> = sqlx::query_scalar("select group_id from scim_group order by seq")
        .fetch_all(&pool)
        .await?;
    let scim = token(&pool, scimbridge::auth::Role::Scim, "okta").await?;
    let agent = token(&pool, scimbridge::auth::Role::Agent, "bench-agent").await?;
    let mut server = spawn_server(url, args.pool).await?;
    let ctx = Arc::new(Ctx {
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(args.concurrency)
            .timeout(Duration::from_secs(30))
            .build()?,
        base: server.base.clone(),
        scim,
        agent,
        pool: pool.clone(),
        ids,
        groups,
        users: args.users,
        run: run.to_owned(),
        created: AtomicU64::new(0),
        drained: Mutex::new(HashSet::new()),
        duplicates: AtomicU64::new(0),
    });
    let only: Option<Vec<String>> = args
        .only
        .as_ref()
        .map(|o| o.split(',').map(|s| s.trim().to_owned()).collect());
    let peak_all = Arc::new(AtomicU64::new(0));
    let mut rows = Vec::new();
    for s in ALL {
        if only
            .as_ref()
            .is_some_and(|o| !o.iter().any(|n| n == s.name()))
        {
            continue;
        }
        let workers = if s == Scenario::Drain {
            4
        } else {
            args.concurrency
        };
        // Sample the server's RSS every 50 ms while the scenario runs.
        let peak = Arc::new(AtomicU64::new(0));
        let sampling = Arc::new(AtomicBool::new(true));
        let sampler = {
            let (peak, sampling, pid) = (peak.clone(), sampling.clone(), server.pid);
            tokio::spawn(async move {
                while sampling.load(Ordering::Relaxed) {
                    peak.fetch_max(rss_kib(pid, "VmRSS:"), Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        };
        let c = ctx.clone();
        let http = drive(workers, args.requests, args.seconds, move |n| {
            http_op(c.clone(), s, n)
        })
        .await;
        sampling.store(false, Ordering::Relaxed);
        let _ = sampler.await;
        peak_all.fetch_max(peak.load(Ordering::Relaxed), Ordering::Relaxed);
        let c = ctx.clone();
        let raw = drive(workers, args.requests, args.seconds, move |n| {
            raw_op(c.clone(), s, n)
        })
        .await;
        eprintln!(
            "{:<17} http {:>8.0}/s  raw {:>8.0}/s",
            s.name(),
            http.rate(),
            raw.rate()
        );
        for (side, o) in [("scimbridge", &http), ("raw SQL", &raw)] {
            if let Some(e) = &o.first_error {
                eprintln!("  {side} error in {}: {e}", s.name());
            }
        }
        rows.push((s, http, raw, peak.load(Ordering::Relaxed)));
    }

    let mut walks = Vec::new();
    if only.is_none() && args.walk_seconds > 0.0 {
        for cursor in [false, true] {
            walks.push((cursor, full_walk(&ctx, cursor, args.walk_seconds).await));
        }
    }
    let hwm = rss_kib(server.pid, "VmHWM:");
    let _ = server.child.start_kill();
    let _ = server.child.wait().await;

    // Exactly-once: no task was completed twice (client side and in the audit trail).
    let twice: i64 = sqlx::query_scalar(
        "select count(*) from (select subject_id, task_id from audit where action = 'task.complete' \
         and task_id is not null group by subject_id, task_id having count(*) > 1) x",
    )
    .fetch_one(&pool)
    .await?;
    pool.close().await;

    println!(
        "\nscimbridge-bench: {} users, {} groups, concurrency {} (drain: 4 workers), \
         limits {} ops / {} s per scenario, pool {}",
        args.users, args.groups, args.concurrency, args.requests, args.seconds, args.pool
    );
    println!(
        "| scenario | scimbridge ops/s | p50 ms | p95 ms | p99 ms | errors | raw SQL ops/s | raw p99 ms | ratio | server peak RSS MiB |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut errors = 0;
    for (s, h, r, peak) in &rows {
        errors += h.errors + r.errors;
        let ratio = if r.rate() > 0.0 {
            h.rate() / r.rate()
        } else {
            0.0
        };
        println!(
            "| {} | {:.0} ({} ops) | {:.2} | {:.2} | {:.2} | {} | {:.0} ({} ops) | {:.2} | {:.2} | {:.1} |",
            s.name(),
            h.rate(),
            h.ops,
            h.pct(0.50),
            h.pct(0.95),
            h.pct(0.99),
            h.errors + r.errors,
            r.rate(),
            r.ops,
            r.pct(0.99),
            ratio,
            *peak as f64 / 1024.0
        );
    }
    for (cursor, (pages, secs, complete)) in &walks {
        println!(
            "full sequential {} walk: {pages} pages in {secs:.2} s ({})",
            if *cursor { "cursor" } else { "startIndex" },
            if *complete {
                "complete"
            } else {
                "stopped at --walk-seconds"
            }
        );
    }
    let dups = ctx.duplicates.load(Ordering::Relaxed);
    println!(
        "tasks completed: {} distinct, {} completed twice (client), {} twice (audit)",
        ctx.drained.lock().map(|s| s.len()).unwrap_or(0),
        dups,
        twice
    );
    println!(
        "server peak RSS (VmHWM): {:.1} MiB; max sampled VmRSS: {:.1} MiB",
        hwm as f64 / 1024.0,
        peak_all.load(Ordering::Relaxed) as f64 / 1024.0
    );
    if errors > 0 || dups > 0 || twice > 0 {
        bail!("{errors} errors, {dups}+{twice} tasks completed twice");
    }
    Ok(())
}
