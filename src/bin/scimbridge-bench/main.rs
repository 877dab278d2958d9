//! `scimbridge-bench`: load-tests a real scimbridge server and, in the same run, the same
//! operations through the server's own store in-process (its SQL, no HTTP) and as the
//! minimal SQL they need, so every scenario gets a ratio against both.
//!
//! ```text
//! cargo run --release --bin scimbridge-bench -- --users 10000 --groups 10 --seconds 5
//! cargo run --release --bin scimbridge-bench -- --users 10000 --groups 10 --fresh
//! ```
//!
//! It creates a fresh database on `DATABASE_URL`'s server (dropped at the end), migrates
//! it, fills it (set-based SQL and `VACUUM ANALYZE`; or, with `--fresh`, through the
//! HTTP API with no ANALYZE, measured at once and again after one), spawns the server as
//! a child process (this binary re-executed with `--serve`, which runs exactly
//! `scimbridge serve`, so the child's `/proc/<pid>/status` gives the server's own RSS),
//! and runs bounded scenarios (each stops at `--requests` operations or `--seconds`,
//! whichever comes first) against 127.0.0.1 only. See docs/performance.md.

#[cfg(feature = "embedded")]
mod embedded;
mod load;
mod populate;
mod scenarios;
mod snapshot;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use load::{drive, Outcome};
use scenarios::{Ctx, Scenario, ALL, APP, READS};

/// Benchmark scimbridge against its own SQL and the minimal SQL of each operation.
#[derive(Debug, Parser)]
#[command(about)]
struct Args {
    /// Users to create.
    #[arg(long, default_value_t = 10_000)]
    users: usize,
    /// Groups to create (every user is a member of one).
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
    /// Server's database pool size (also the store's and the minimal SQL's pool size).
    #[arg(long, default_value_t = 16)]
    pool: u32,
    /// Also time one full sequential import walk (startIndex and cursor); stops at
    /// `--walk-seconds`.
    #[arg(long, default_value_t = 60.0)]
    walk_seconds: f64,
    /// Fill the database through the HTTP API (POST /Users from `--concurrency` clients,
    /// groups by POST and PATCH) and measure at once, without VACUUM or ANALYZE and with
    /// autovacuum off; then ANALYZE and measure the reads again.
    #[arg(long)]
    fresh: bool,
    /// With `--fresh`: the first creates on the empty database, reported on their own
    /// (the burst scenario: any non-2xx fails the run).
    #[arg(long, default_value_t = 2_000)]
    burst: usize,
    /// Only these scenarios (comma-separated names); all by default.
    #[arg(long)]
    only: Option<String>,
    /// After the other scenarios, import a snapshot of the app's user list with this many
    /// rows (the benchmark users as the IdP wants them, plus 0.2 % orphans) through
    /// `POST /api/v1/snapshots`, then the same file again; 0 skips it. Use
    /// `--users` >= this. `--only snapshot_import` runs nothing else.
    #[arg(long, default_value_t = 0)]
    snapshot_rows: usize,
    /// Run every scenario against the embedded store instead of Postgres: the server
    /// child serves a temporary data directory with no database URL, seeded by SQL
    /// before it starts. HTTP only: the engine has one backend, which the server holds,
    /// so the store and minimal-SQL columns are not measured. Not with `--fresh` or
    /// `--snapshot-rows`.
    #[arg(long, conflicts_with_all = ["fresh", "snapshot_rows", "keep_db"])]
    embedded: bool,
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
    /// Internal: the server child serves the embedded store in this directory.
    #[arg(long, hide = true)]
    serve_data_dir: Option<std::path::PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if let Some(bind) = &args.serve {
        // The child: exactly what `scimbridge serve` runs.
        scimbridge::telemetry::init(false);
        let store = match &args.serve_data_dir {
            Some(dir) => ["--data-dir".to_owned(), dir.display().to_string()],
            None => ["--database-url".to_owned(), args.database_url.clone()],
        };
        let cli = scimbridge::cli::Cli::try_parse_from([
            "scimbridge",
            &store[0],
            &store[1],
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
    if args.embedded {
        #[cfg(feature = "embedded")]
        return rt.block_on(embedded::run(args));
        #[cfg(not(feature = "embedded"))]
        bail!("--embedded needs the `embedded` feature (on by default)");
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

/// Which store the server child serves.
enum ServerStore<'a> {
    /// Postgres at this URL.
    Postgres(&'a str),
    /// The embedded store in this data directory (the child gets no database URL).
    #[cfg_attr(not(feature = "embedded"), allow(dead_code))]
    Embedded(&'a std::path::Path),
}

pub(crate) fn rss_kib(pid: u32, field: &str) -> u64 {
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

/// Spawns the server child; its log (errors only) goes to `log`.
async fn spawn_server(
    db: ServerStore<'_>,
    pool: u32,
    log: &std::path::Path,
) -> anyhow::Result<Server> {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port()
    };
    let bind = format!("127.0.0.1:{port}");
    let exe = std::env::current_exe()?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.args(["--serve", &bind, "--pool", &pool.to_string()]);
    match db {
        ServerStore::Postgres(url) => cmd.env("DATABASE_URL", url),
        ServerStore::Embedded(dir) => cmd
            .arg("--serve-data-dir")
            .arg(dir)
            .env_remove("DATABASE_URL")
            .env_remove("SCIMBRIDGE_DATA_DIR"),
    };
    let child = cmd
        .env("RUST_LOG", "error")
        .kill_on_drop(true)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).context("creating the server log")?)
        .spawn()
        .context("spawning the server")?;
    let pid = child.id().context("server pid")?;
    let base = format!("http://{bind}");
    let http = reqwest::Client::new();
    // The embedded engine takes a few seconds to start (longer on a loaded machine).
    for _ in 0..1200 {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
            if r.status().is_success() {
                return Ok(Server { child, pid, base });
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("the server did not become ready within 60 s")
}

async fn token(
    store: &scimbridge::db::Store,
    role: scimbridge::auth::Role,
    name: &str,
) -> anyhow::Result<(String, scimbridge::auth::Actor)> {
    let secret = scimbridge::auth::generate_token();
    let token_id = store
        .insert_token(APP, role, name, &scimbridge::auth::hash_token(&secret))
        .await?;
    let actor = scimbridge::auth::Actor {
        app_id: APP.to_owned(),
        token_id,
        name: name.to_owned(),
        role,
        request_id: None,
    };
    Ok((secret, actor))
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
        let Ok(v) = scenarios::check(ctx.http.get(url).bearer_auth(&ctx.scim).send().await).await
        else {
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

/// One scenario's three sides and the server's peak RSS while its HTTP side ran.
struct Row {
    scenario: Scenario,
    http: Outcome,
    /// None when only the HTTP side runs (`--embedded`).
    store: Option<Outcome>,
    minimal: Option<Outcome>,
    peak_kib: u64,
}

/// Runs the scenarios (those `only` allows) on all three sides.
async fn run_scenarios(
    ctx: &Arc<Ctx>,
    args: &Args,
    pid: u32,
    scenarios: &[Scenario],
    only: Option<&[String]>,
    in_process: bool,
) -> Vec<Row> {
    let mut rows = Vec::new();
    for &s in scenarios {
        if only.is_some_and(|o| !o.iter().any(|n| n == s.name())) {
            continue;
        }
        let workers = s.workers(args.concurrency);
        // Sample the server's RSS every 50 ms while the HTTP side runs.
        let peak = Arc::new(AtomicU64::new(0));
        let sampling = Arc::new(AtomicBool::new(true));
        let sampler = {
            let (peak, sampling) = (peak.clone(), sampling.clone());
            tokio::spawn(async move {
                while sampling.load(Ordering::Relaxed) {
                    peak.fetch_max(rss_kib(pid, "VmRSS:"), Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        };
        let c = ctx.clone();
        let http = drive(workers, args.requests, args.seconds, move |n| {
            scenarios::http_op(c.clone(), s, n)
        })
        .await;
        sampling.store(false, Ordering::Relaxed);
        let _ = sampler.await;
        let store = if in_process {
            let c = ctx.clone();
            Some(
                drive(workers, args.requests, args.seconds, move |n| {
                    scenarios::store_op(c.clone(), s, n)
                })
                .await,
            )
        } else {
            None
        };
        let minimal = if in_process && s.has_minimal() {
            let c = ctx.clone();
            Some(
                drive(workers, args.requests, args.seconds, move |n| {
                    scenarios::minimal_op(c.clone(), s, n)
                })
                .await,
            )
        } else {
            None
        };
        eprintln!(
            "{:<17} http {:>8.0}/s  store {:>8}  minimal {:>8}",
            s.name(),
            http.rate(),
            store
                .as_ref()
                .map_or("-".into(), |m| format!("{:.0}/s", m.rate())),
            minimal
                .as_ref()
                .map_or("-".into(), |m| format!("{:.0}/s", m.rate()))
        );
        for (side, o) in [("scimbridge", Some(&http)), ("store", store.as_ref())]
            .into_iter()
            .chain([("minimal SQL", minimal.as_ref())])
        {
            if let Some(e) = o.and_then(|o| o.first_error.as_ref()) {
                eprintln!("  {side} error in {}: {e}", s.name());
            }
        }
        rows.push(Row {
            scenario: s,
            http,
            store,
            minimal,
            peak_kib: peak.load(Ordering::Relaxed),
        });
    }
    rows
}

fn ratio(a: &Outcome, b: &Outcome) -> f64 {
    if b.rate() > 0.0 {
        a.rate() / b.rate()
    } else {
        0.0
    }
}

/// Prints one table of rows; returns the errors counted in it.
/// Prints the full walks' times and the exactly-once count of the task drain; returns the
/// tasks the client saw completed twice.
fn print_walks_and_drain(walks: &[(bool, (u64, f64, bool))], ctx: &Ctx, twice: i64) -> u64 {
    for (cursor, (pages, secs, complete)) in walks {
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
    dups
}

fn print_table(rows: &[Row]) -> u64 {
    println!(
        "| scenario | scimbridge ops/s | p50 ms | p95 ms | p99 ms | errors | store ops/s | store p99 ms | ÷ store | minimal SQL ops/s | minimal p99 ms | ÷ minimal | server peak RSS MiB |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut errors = 0;
    for r in rows {
        let h = &r.http;
        let minimal_errors = r.minimal.as_ref().map_or(0, |m| m.errors);
        let store_errors = r.store.as_ref().map_or(0, |m| m.errors);
        errors += h.errors + store_errors + minimal_errors;
        let (s_rate, s_p99, s_ratio) = match &r.store {
            Some(m) => (
                format!("{:.0} ({} ops)", m.rate(), m.ops),
                format!("{:.2}", m.pct(0.99)),
                format!("{:.2}", ratio(h, m)),
            ),
            None => ("–".into(), "–".into(), "–".into()),
        };
        let (m_rate, m_p99, m_ratio) = match &r.minimal {
            Some(m) => (
                format!("{:.0} ({} ops)", m.rate(), m.ops),
                format!("{:.2}", m.pct(0.99)),
                format!("{:.2}", ratio(h, m)),
            ),
            None => ("–".into(), "–".into(), "–".into()),
        };
        println!(
            "| {} | {:.0} ({} ops) | {:.2} | {:.2} | {:.2} | {} | {s_rate} | {s_p99} | {s_ratio} | {m_rate} | {m_p99} | {m_ratio} | {:.1} |",
            r.scenario.name(),
            h.rate(),
            h.ops,
            h.pct(0.50),
            h.pct(0.95),
            h.pct(0.99),
            h.errors + store_errors + minimal_errors,
            r.peak_kib as f64 / 1024.0
        );
    }
    errors
}

fn print_outcome(what: &str, o: &Outcome) {
    println!(
        "- {what}: {} ops in {:.1} s = {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, non-2xx {}{}",
        o.ops,
        o.secs,
        o.rate(),
        o.pct(0.50),
        o.pct(0.99),
        o.pct(1.0),
        o.errors,
        o.first_error
            .as_ref()
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default()
    );
}

async fn run_all(args: &Args, url: &str, run: &str) -> anyhow::Result<()> {
    // The store's and the minimal SQL's pool behave as the server's does.
    let pool = scimbridge::db::pool_options()
        .max_connections(args.pool)
        .connect(url)
        .await?;
    scimbridge::db::MIGRATOR.run(&pool).await?;
    populate::minimal_tables(&pool).await?;
    let store = scimbridge::db::Store::new(pool.clone());
    let (scim, scim_actor) = token(&store, scimbridge::auth::Role::Scim, "okta").await?;
    let (agent, agent_actor) = token(&store, scimbridge::auth::Role::Agent, "bench-agent").await?;
    let (admin_token, _) = token(&store, scimbridge::auth::Role::Admin, "bench-admin").await?;
    let groups = args.groups.max(1);
    let mut populated = None;
    if args.fresh {
        populate::autovacuum(&pool, false).await?;
    } else {
        let t = Instant::now();
        populate::seed(&pool, args.users, groups).await?;
        eprintln!(
            "seeded {} users, {groups} groups in {:.1} s",
            args.users,
            t.elapsed().as_secs_f64()
        );
    }
    let log = std::env::temp_dir().join(format!("scimbridge-bench-{run}.log"));
    let mut server = spawn_server(ServerStore::Postgres(url), args.pool, &log).await?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .timeout(Duration::from_secs(30))
        .build()?;
    if args.fresh {
        let p = populate::through_api(
            &http,
            &server.base,
            &scim,
            &pool,
            (args.users, groups, args.burst, args.concurrency),
        )
        .await?;
        eprintln!(
            "created {} users ({:.0}/s) and {groups} groups through the API",
            args.users,
            (p.burst.ops + p.import.ops) as f64 / (p.burst.secs + p.import.secs).max(1e-9)
        );
        populated = Some(p);
    }
    let fresh_knowledge = populate::planner_knowledge(&pool).await?;
    let ctx = Arc::new(Ctx {
        http,
        base: server.base.clone(),
        scim,
        agent,
        scim_actor,
        agent_actor,
        store,
        pool: pool.clone(),
        ids: populate::user_ids(&pool).await?,
        groups: sqlx::query_scalar("select group_id from scim_group order by seq")
            .fetch_all(&pool)
            .await?,
        users: args.users,
        run: run.to_owned(),
        created: AtomicU64::new(0),
        drained: Mutex::new(HashSet::new()),
        duplicates: AtomicU64::new(0),
    });
    if ctx.ids.len() < args.users {
        // Creates failed (counted as errors above); measure with the users that exist.
        eprintln!("only {} of {} users exist", ctx.ids.len(), args.users);
    }
    anyhow::ensure!(!ctx.ids.is_empty(), "no benchmark user exists");
    // Open every connection of the store's and the minimal SQL's pool before measuring,
    // as the server's pool is by the time it has served the population.
    let warm: Vec<_> = futures_util::future::join_all((0..args.pool).map(|_| pool.acquire()))
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    drop(warm);
    let only: Option<Vec<String>> = args
        .only
        .as_ref()
        .map(|o| o.split(',').map(|s| s.trim().to_owned()).collect());
    let rows = run_scenarios(&ctx, args, server.pid, &ALL, only.as_deref(), true).await;
    let end_knowledge = populate::planner_knowledge(&pool).await?;

    // The same reads once the planner has statistics.
    let mut analyzed_rows = Vec::new();
    if args.fresh {
        populate::autovacuum(&pool, true).await?;
        let t = Instant::now();
        sqlx::query("analyze").execute(&pool).await?;
        eprintln!("ANALYZE took {:.1} s", t.elapsed().as_secs_f64());
        analyzed_rows = run_scenarios(&ctx, args, server.pid, &READS, only.as_deref(), true).await;
    }

    let mut walks = Vec::new();
    if only.is_none() && args.walk_seconds > 0.0 {
        for cursor in [false, true] {
            walks.push((cursor, full_walk(&ctx, cursor, args.walk_seconds).await));
        }
    }
    let snapshot = if args.snapshot_rows > 0 {
        let t = Instant::now();
        let r = snapshot::run(
            &pool,
            &server.base,
            &admin_token,
            server.pid,
            args.snapshot_rows,
        )
        .await;
        eprintln!(
            "snapshot import of {} rows (twice) in {:.1} s",
            args.snapshot_rows,
            t.elapsed().as_secs_f64()
        );
        Some(r)
    } else {
        None
    };
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
        "\nscimbridge-bench: {} users, {} groups, {}, concurrency {} (drain: 4 workers), \
         limits {} ops / {} s per scenario, pool {}",
        args.users,
        groups,
        if args.fresh {
            "created through the API on a fresh database, no ANALYZE (--fresh)"
        } else {
            "seeded by SQL, VACUUM ANALYZE"
        },
        args.concurrency,
        args.requests,
        args.seconds,
        args.pool
    );
    let mut errors = 0;
    if let Some(p) = &populated {
        print_outcome(
            &format!(
                "burst: the first {} creates on the empty database",
                p.burst.ops
            ),
            &p.burst,
        );
        print_outcome("import: the remaining creates", &p.import);
        print_outcome(
            "groups: POST /Groups and PATCH add members (100 per request)",
            &p.groups,
        );
        errors += p.burst.errors + p.import.errors + p.groups.errors;
    }
    let knowledge = |(tuples, stats): (i64, bool)| {
        format!(
            "planner assumes {tuples} rows, {} column statistics",
            if stats { "has" } else { "no" }
        )
    };
    println!(
        "scim_user before the scenarios: {}; after: {}",
        knowledge(fresh_knowledge),
        knowledge(end_knowledge)
    );
    println!();
    if !rows.is_empty() {
        errors += print_table(&rows);
    }
    if !analyzed_rows.is_empty() {
        println!("\nAfter ANALYZE:\n");
        errors += print_table(&analyzed_rows);
        println!("\nFresh ÷ analyzed (scimbridge ops/s; p99):\n");
        for a in &analyzed_rows {
            if let Some(f) = rows.iter().find(|r| r.scenario == a.scenario) {
                println!(
                    "- {}: {:.2} ({:.0}/s ÷ {:.0}/s); p99 {:.2} ms vs {:.2} ms",
                    a.scenario.name(),
                    ratio(&f.http, &a.http),
                    f.http.rate(),
                    a.http.rate(),
                    f.http.pct(0.99),
                    a.http.pct(0.99)
                );
            }
        }
    }
    println!();
    let dups = print_walks_and_drain(&walks, &ctx, twice);
    let peak = rows
        .iter()
        .chain(&analyzed_rows)
        .map(|r| r.peak_kib)
        .max()
        .unwrap_or(0);
    println!(
        "server peak RSS (VmHWM): {:.1} MiB; max sampled VmRSS: {:.1} MiB",
        hwm as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    let mut snapshot_failed = None;
    match snapshot {
        Some(Ok(r)) => snapshot::print(&r),
        Some(Err(e)) => {
            println!("\nsnapshot import failed: {e:#}");
            snapshot_failed = Some(e);
        }
        None => {}
    }
    let logged = std::fs::metadata(&log).map_or(0, |m| m.len());
    if logged > 0 {
        println!("the server logged errors: {}", log.display());
    } else {
        let _ = std::fs::remove_file(&log);
    }
    if let Some(e) = snapshot_failed {
        return Err(e.context("the snapshot import"));
    }
    if errors > 0 || dups > 0 || twice > 0 {
        bail!("{errors} errors, {dups}+{twice} tasks completed twice");
    }
    Ok(())
}
