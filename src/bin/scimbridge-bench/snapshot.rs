//! The snapshot import scenario (`--snapshot-rows N`, issue #15): People.ai's user list
//! as a CSV of N rows, uploaded to `POST /api/v1/snapshots` by an admin, timed from the
//! first byte sent to the reconciled answer, with the server's RSS sampled throughout
//! (the import streams the file and reconciles in batches, so its memory must not grow
//! with N). Then the same file again: it must find nothing new.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;
use sqlx::PgPool;

use crate::scenarios::APP;

/// Accounts in the export that no IdP user has (orphans), per 1 000 rows.
const ORPHANS_PER_MILLE: usize = 2;

/// What one upload measured.
pub struct Upload {
    pub secs: f64,
    /// The server's VmRSS just before the upload, and its highest sample during it (KiB).
    pub rss_before_kib: u64,
    pub rss_peak_kib: u64,
    /// The snapshot as the server answered (after an admin's apply if it was held).
    pub snapshot: Value,
    /// Seconds the apply of a held snapshot took (included in `secs`).
    pub apply_secs: Option<f64>,
}

/// The scenario's result.
pub struct SnapshotRun {
    pub rows: usize,
    pub orphans: usize,
    pub bytes: usize,
    pub first: Upload,
    pub again: Upload,
    /// Findings and tasks in the database after the first import and after the second.
    pub findings: (i64, i64),
    pub tasks: (i64, i64),
}

/// The export: every benchmark user's account as the IdP wants it (People.ai's column
/// names and role wording; leavers "Inactive"), up to `rows`, plus a few accounts no IdP
/// user has. Users created but never confirmed (the open create tasks) are in it too: the
/// export is the evidence that closes their tasks.
async fn export(pool: &PgPool, rows: usize) -> anyhow::Result<(String, usize)> {
    let orphans = (rows * ORPHANS_PER_MILLE / 1000).max(1).min(rows);
    let users: Vec<(String, bool, Option<String>, Option<String>)> = sqlx::query_as(&format!(
        "select user_name, active, doc->'name'->>'givenName', doc->'name'->>'familyName' \
           from scim_user where app_id = '{APP}' and deleted_at is null order by seq limit $1"
    ))
    .bind((rows - orphans) as i64)
    .fetch_all(pool)
    .await?;
    let mut csv = String::with_capacity(rows * 80);
    csv.push_str("Email,First Name,Last Name,Role,Status\n");
    for (email, active, given, family) in &users {
        csv.push_str(&format!(
            "{email},{},{},Standard User,{}\n",
            given.as_deref().unwrap_or(""),
            family.as_deref().unwrap_or(""),
            if *active { "Active" } else { "Inactive" }
        ));
    }
    let orphans = rows - users.len();
    for i in 0..orphans {
        csv.push_str(&format!(
            "contractor{i:06}@bench.example,Con,Tractor{i},User,Active\n"
        ));
    }
    Ok((csv, orphans))
}

fn rss(pid: u32) -> u64 {
    crate::rss_kib(pid, "VmRSS:")
}

async fn post(
    http: &reqwest::Client,
    url: String,
    token: &str,
    csv: Option<String>,
) -> anyhow::Result<Value> {
    let mut req = http.post(&url).bearer_auth(token);
    if let Some(csv) = csv {
        req = req.header("content-type", "text/csv").body(csv);
    }
    let res = req.send().await.with_context(|| format!("POST {url}"))?;
    let status = res.status();
    let body = res.text().await?;
    if !status.is_success() {
        bail!(
            "POST {url}: {status}: {}",
            body.chars().take(300).collect::<String>()
        );
    }
    Ok(serde_json::from_str(&body)?)
}

/// Uploads the export once (applying it as the admin if the safeguard held it), sampling
/// the server's RSS every 20 ms.
async fn upload(
    http: &reqwest::Client,
    base: &str,
    admin: &str,
    pid: u32,
    csv: &str,
) -> anyhow::Result<Upload> {
    let rss_before_kib = rss(pid);
    let peak = Arc::new(AtomicU64::new(rss_before_kib));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, sampling) = (peak.clone(), sampling.clone());
        tokio::spawn(async move {
            while sampling.load(Ordering::Relaxed) {
                peak.fetch_max(rss(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let start = Instant::now();
    let result = async {
        let mut snap = post(
            http,
            format!("{base}/api/v1/snapshots?filename=peopleai-users.csv"),
            admin,
            Some(csv.to_owned()),
        )
        .await?;
        let mut apply_secs = None;
        if snap["state"] == "held" {
            let t = Instant::now();
            snap = post(
                http,
                format!("{base}/api/v1/snapshots/{}/apply", snap["id"]),
                admin,
                None,
            )
            .await?;
            apply_secs = Some(t.elapsed().as_secs_f64());
        }
        anyhow::Ok((snap, apply_secs))
    }
    .await;
    let secs = start.elapsed().as_secs_f64();
    sampling.store(false, Ordering::Relaxed);
    let _ = sampler.await;
    let (snapshot, apply_secs) = result?;
    if snapshot["state"] != "applied" {
        bail!("the snapshot ended {}: {snapshot}", snapshot["state"]);
    }
    Ok(Upload {
        secs,
        rss_before_kib,
        rss_peak_kib: peak.load(Ordering::Relaxed),
        snapshot,
        apply_secs,
    })
}

async fn counts(pool: &PgPool) -> anyhow::Result<(i64, i64)> {
    Ok(
        sqlx::query_as("select (select count(*) from finding), (select count(*) from task)")
            .fetch_one(pool)
            .await?,
    )
}

/// Runs the scenario against the server child `pid` at `base`.
pub async fn run(
    pool: &PgPool,
    base: &str,
    admin: &str,
    pid: u32,
    rows: usize,
) -> anyhow::Result<SnapshotRun> {
    let (csv, orphans) = export(pool, rows).await?;
    let bytes = csv.len();
    // The import of 100k rows takes longer than any other request: the server's own
    // deadline for snapshots (--snapshot-timeout) bounds it, not the client.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(3600))
        .build()?;
    let first = upload(&http, base, admin, pid, &csv).await?;
    let (f1, t1) = counts(pool).await?;
    let again = upload(&http, base, admin, pid, &csv).await?;
    let (f2, t2) = counts(pool).await?;
    if (f1, t1) != (f2, t2) {
        bail!("the same file again changed findings {f1} -> {f2} or tasks {t1} -> {t2}");
    }
    Ok(SnapshotRun {
        rows,
        orphans,
        bytes,
        first,
        again,
        findings: (f1, f2),
        tasks: (t1, t2),
    })
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Prints the scenario's report.
pub fn print(r: &SnapshotRun) {
    println!(
        "\nsnapshot import: {} rows ({} of them orphans), {:.1} MiB of CSV",
        r.rows,
        r.orphans,
        r.bytes as f64 / (1024.0 * 1024.0)
    );
    println!("| import | seconds | rows/s | state | server VmRSS before MiB | server peak VmRSS MiB | growth MiB | summary |");
    println!("|---|---:|---:|---|---:|---:|---:|---|");
    for (what, u) in [("first", &r.first), ("same file again", &r.again)] {
        let state = match u.apply_secs {
            Some(a) => format!("held, applied by the admin ({a:.1} s)"),
            None => "applied".to_owned(),
        };
        println!(
            "| {what} | {:.2} | {:.0} | {state} | {:.1} | {:.1} | {:.1} | `{}` |",
            u.secs,
            r.rows as f64 / u.secs.max(1e-9),
            mib(u.rss_before_kib),
            mib(u.rss_peak_kib),
            mib(u.rss_peak_kib.saturating_sub(u.rss_before_kib)),
            u.snapshot["summary"]
        );
    }
    println!(
        "findings after the first import: {}, after the second: {}; tasks: {} and {}",
        r.findings.0, r.findings.1, r.tasks.0, r.tasks.1
    );
}
