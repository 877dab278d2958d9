//! `scimbridge-bench --embedded` (issue #12): every scenario against a server on the
//! embedded store, for figures beside Postgres.
//!
//! The engine serves one backend and one process may open a data directory, so the run
//! goes in turns: this process opens a temporary data directory, migrates and seeds it
//! (the same set-based SQL as for Postgres), makes the tokens and reads the ids the
//! scenarios pick from, and closes it; the server child then serves it with no database
//! URL; after the scenarios and the server's clean stop, this process opens it again for
//! the exactly-once check. The store and minimal-SQL columns are not measured: they would
//! need a connection while the server holds the only one.

use std::collections::HashSet;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use scimbridge::db::embedded::Embedded;

use crate::scenarios::{Ctx, ALL};
use crate::{populate, Args, ServerStore};

/// Runs the benchmark on the embedded store; the data directory is removed at the end.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let run = format!("{:08x}", rand::random::<u32>());
    let dir = std::env::temp_dir().join(format!("scimbridge-bench-{run}"));
    let result = bench(&args, &dir, &run).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn bench(args: &Args, dir: &std::path::Path, run: &str) -> anyhow::Result<()> {
    let groups = args.groups.max(1);
    let t = Instant::now();
    let (engine, store) = Embedded::open(dir, "scimbridge-bench seed", true).await?;
    store.migrate().await?;
    let pool = store.pool().clone();
    let (scim, scim_actor) = crate::token(&store, scimbridge::auth::Role::Scim, "okta").await?;
    let (agent, agent_actor) =
        crate::token(&store, scimbridge::auth::Role::Agent, "bench-agent").await?;
    populate::seed(&pool, args.users, groups).await?;
    let ids = populate::user_ids(&pool).await?;
    let group_ids = sqlx::query_scalar("select group_id from scim_group order by seq")
        .fetch_all(&pool)
        .await?;
    engine.close(&store).await;
    eprintln!(
        "seeded {} users, {groups} groups in the embedded store in {:.1} s",
        args.users,
        t.elapsed().as_secs_f64()
    );
    anyhow::ensure!(!ids.is_empty(), "no benchmark user exists");

    let log = std::env::temp_dir().join(format!("scimbridge-bench-{run}.log"));
    let mut server = crate::spawn_server(ServerStore::Embedded(dir), args.pool, &log).await?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .timeout(Duration::from_secs(30))
        .build()?;
    let ctx = Arc::new(Ctx {
        http,
        base: server.base.clone(),
        scim,
        agent,
        scim_actor,
        agent_actor,
        // Only the HTTP side runs (`run_scenarios(.., false)`): the store and its pool
        // are never used, and this pool never connects.
        store: scimbridge::db::Store::new(
            sqlx::postgres::PgPoolOptions::new()
                .connect_lazy_with(sqlx::postgres::PgConnectOptions::new()),
        ),
        pool: sqlx::postgres::PgPoolOptions::new()
            .connect_lazy_with(sqlx::postgres::PgConnectOptions::new()),
        ids,
        groups: group_ids,
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
    let rows = crate::run_scenarios(&ctx, args, server.pid, &ALL, only.as_deref(), false).await;
    let mut walks = Vec::new();
    if only.is_none() && args.walk_seconds > 0.0 {
        for cursor in [false, true] {
            walks.push((
                cursor,
                crate::full_walk(&ctx, cursor, args.walk_seconds).await,
            ));
        }
    }
    let hwm = crate::rss_kib(server.pid, "VmHWM:");
    // A clean stop (SIGTERM): the engine writes its checkpoint and frees the directory.
    let pid = nix::unistd::Pid::from_raw(server.pid as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    match tokio::time::timeout(Duration::from_secs(120), server.child.wait()).await {
        Ok(status) => {
            status.context("waiting for the server")?;
        }
        Err(_) => {
            let _ = server.child.start_kill();
            let _ = server.child.wait().await;
            bail!("the server did not stop within 120 s of SIGTERM");
        }
    }

    // Exactly-once: no task was completed twice (client side and in the audit trail).
    let (engine, store) = Embedded::open(dir, "scimbridge-bench check", false).await?;
    let twice: Result<i64, sqlx::Error> = sqlx::query_scalar(
        "select count(*) from (select subject_id, task_id from audit where action = 'task.complete' \
         and task_id is not null group by subject_id, task_id having count(*) > 1) x",
    )
    .fetch_one(store.pool())
    .await;
    engine.close(&store).await;
    let twice = twice?;

    println!(
        "\nscimbridge-bench --embedded: {} users, {groups} groups, seeded by SQL, VACUUM ANALYZE, \
         concurrency {} (drain: 4 workers), limits {} ops / {} s per scenario; the embedded \
         store (one connection); HTTP only (the store and minimal-SQL columns need the \
         engine's one backend, which the server holds)",
        args.users, args.concurrency, args.requests, args.seconds
    );
    println!();
    let mut errors = 0;
    if !rows.is_empty() {
        errors += crate::print_table(&rows);
    }
    println!();
    let dups = crate::print_walks_and_drain(&walks, &ctx, twice);
    let peak = rows.iter().map(|r| r.peak_kib).max().unwrap_or(0);
    println!(
        "server peak RSS (VmHWM): {:.1} MiB; max sampled VmRSS: {:.1} MiB",
        hwm as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    let logged = std::fs::metadata(&log).map_or(0, |m| m.len());
    if logged > 0 {
        println!("the server logged errors: {}", log.display());
    } else {
        let _ = std::fs::remove_file(&log);
    }
    if errors > 0 || dups > 0 || twice > 0 {
        bail!("{errors} errors, {dups}+{twice} tasks completed twice");
    }
    Ok(())
}
