//! `scimbridge snapshot …`: submit the app's user list (the observed state), see what it
//! found, and decide on a held one.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::Value;

use super::render::{cut, json as pretty, show, Table};
use crate::client::{Client, Connection};

/// `scimbridge snapshot …`.
#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// Server URL and token.
    #[command(flatten)]
    pub conn: Connection,
    /// What to do.
    #[command(subcommand)]
    pub command: SnapshotCommand,
}

/// Snapshot subcommands.
#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Submit the app's full user list (CSV with a header row, or JSON rows) and print
    /// what it found; exits 2 when the safeguard holds it for an admin.
    Import {
        /// The export file.
        file: PathBuf,
        /// csv or json (default: from the file's extension, else csv).
        #[arg(long, value_parser = ["csv", "json"])]
        format: Option<String>,
        /// When the export was taken (RFC 3339), if earlier than now.
        #[arg(long)]
        taken_at: Option<String>,
        /// Seconds to wait for the server to apply it.
        #[arg(long, default_value_t = 1800)]
        timeout: u64,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// The newest snapshots.
    List {
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// One snapshot: counts, and what it flagged (held) or found (applied).
    Show {
        /// Snapshot id.
        id: i64,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Apply a held snapshot (admin).
    Apply {
        /// Snapshot id.
        id: i64,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Discard a held snapshot (admin).
    Discard {
        /// Snapshot id.
        id: i64,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// What snapshots found (open findings by default).
    Findings {
        /// drift, missing, contradiction or orphan.
        #[arg(long, value_parser = ["drift", "missing", "contradiction", "orphan"])]
        kind: Option<String>,
        /// open, resolved or all.
        #[arg(long, default_value = "open", value_parser = ["open", "resolved", "all"])]
        state: String,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a `snapshot` subcommand.
pub async fn run(args: SnapshotArgs) -> anyhow::Result<()> {
    let client = args.conn.client()?;
    let long = Duration::from_secs(1800);
    let (snap, json) = match args.command {
        SnapshotCommand::Import {
            file,
            format,
            taken_at,
            timeout,
            json,
        } => {
            let t = Duration::from_secs(timeout.max(1));
            let s = client
                .import_snapshot(&file, format.as_deref(), taken_at.as_deref(), t)
                .await?;
            (s, json)
        }
        SnapshotCommand::List { limit, json } => return list(&client, limit, json).await,
        SnapshotCommand::Show { id, json } => (client.snapshot(id).await?, json),
        SnapshotCommand::Apply { id, json } => {
            (client.decide_snapshot(id, true, long).await?, json)
        }
        SnapshotCommand::Discard { id, json } => {
            (client.decide_snapshot(id, false, long).await?, json)
        }
        SnapshotCommand::Findings {
            kind,
            state,
            limit,
            json,
        } => {
            let v = client.findings(kind.as_deref(), &state, limit).await?;
            if json {
                println!("{}", pretty(&v));
            } else {
                print!("{}", findings_table(&v));
            }
            return Ok(());
        }
    };
    if json {
        println!("{}", pretty(&snap));
    } else {
        print!("{}", render(&snap));
    }
    if snap["state"] == "held" {
        // A script uploading nightly must notice that nothing was applied.
        std::process::exit(2);
    }
    Ok(())
}

async fn list(client: &Client, limit: u32, json: bool) -> anyhow::Result<()> {
    let v = client.snapshots(limit.clamp(1, 500)).await?;
    if json {
        println!("{}", pretty(&v));
        return Ok(());
    }
    let mut t = Table::new(&["ID", "STATE", "TAKEN", "ROWS", "BY", "FOUND"]);
    for s in v["snapshots"].as_array().into_iter().flatten() {
        let tally = if s["summary"].is_object() {
            &s["summary"]
        } else {
            &s["preview"]["tally"]
        };
        t.row(vec![
            show(&s["id"]),
            show(&s["state"]),
            cut(&show(&s["taken_at"]), 20),
            show(&s["rows"]),
            show(&s["submitted_by"]),
            counts(tally),
        ]);
    }
    print!("{}", t.render());
    Ok(())
}

fn counts(t: &Value) -> String {
    if !t.is_object() {
        return "-".into();
    }
    format!(
        "verified {}, drift {}, missing {}, contradicted {}, orphans {}",
        show(&t["verified"]),
        show(&t["drift"]),
        show(&t["missing"]),
        show(&t["contradictions"]),
        show(&t["orphans"])
    )
}

/// A snapshot as a person reads it.
pub fn render(s: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Snapshot {}  {}  ({}, {} rows, sha256 {})",
        show(&s["id"]),
        show(&s["state"]).to_uppercase(),
        show(&s["format"]),
        show(&s["rows"]),
        cut(&show(&s["sha256"]), 12)
    );
    let _ = writeln!(
        out,
        "Taken:     {}  submitted by {} ({})",
        show(&s["taken_at"]),
        show(&s["submitted_by"]),
        show(&s["submitted_role"])
    );
    if let Some(cols) = s["unknown_columns"].as_array().filter(|c| !c.is_empty()) {
        let names: Vec<String> = cols.iter().map(show).collect();
        let _ = writeln!(out, "Unknown columns: {}", names.join(", "));
    }
    let applied = s["summary"].is_object();
    let tally = if applied {
        &s["summary"]
    } else {
        &s["preview"]["tally"]
    };
    if tally.is_object() {
        let _ = writeln!(
            out,
            "{} {} matched; verified {} (closed {} tasks), drift {}, missing {}, contradicted {}, \
             orphans {}, left to workers {}, changed since {}",
            if applied { "Applied:" } else { "Would:  " },
            show(&tally["matched"]),
            show(&tally["verified"]),
            show(&tally["closes"]),
            show(&tally["drift"]),
            show(&tally["missing"]),
            show(&tally["contradictions"]),
            show(&tally["orphans"]),
            show(&tally["in_progress"]),
            show(&tally["stale"]),
        );
    }
    if s["state"] == "held" {
        let _ = writeln!(out, "\nHELD: {}", show(&s["hold_reason"]));
        let mut t = Table::new(&["ROW", "ACCOUNT", "FINDING", "WHAT"]);
        for f in s["preview"]["flagged"].as_array().into_iter().flatten() {
            t.row(vec![
                show(&f["row"]),
                show(&f["key"]),
                show(&f["finding"]),
                show(&f["text"]),
            ]);
        }
        let _ = write!(out, "\n{}", t.render());
        let _ = writeln!(
            out,
            "\nNothing was applied. An admin applies it with `scimbridge snapshot apply {0}` \
             or discards it with `scimbridge snapshot discard {0}`.",
            show(&s["id"])
        );
    }
    out
}

fn findings_table(v: &Value) -> String {
    let mut t = Table::new(&["ID", "KIND", "ACCOUNT", "TASK", "SNAPSHOT", "WHAT"]);
    for f in v["findings"].as_array().into_iter().flatten() {
        t.row(vec![
            show(&f["id"]),
            show(&f["kind"]),
            show(&f["subject"]["user_name"]),
            show(&f["task_id"]),
            show(&f["snapshot"]),
            show(&f["text"]),
        ]);
    }
    t.render()
}
