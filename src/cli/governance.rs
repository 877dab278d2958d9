//! `scimbridge webhooks …`, `audit verify` and `reports …`. Webhooks and the audit check
//! are bootstrap commands on the database (like `token`); reports are a client of the
//! task API (`SCIMBRIDGE_URL`, `SCIMBRIDGE_TOKEN`).

use clap::Subcommand;
use uuid::Uuid;

use crate::client::Connection;
use crate::db::outbox::{NewWebhook, ESCALATION, PRIMARY};
use crate::db::Store;

/// `webhooks` subcommands.
#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// Add a webhook that receives the app's events.
    Add {
        /// The app whose events it receives.
        #[arg(long, default_value = "peopleai")]
        app: String,
        /// A name for people and logs.
        #[arg(long)]
        name: String,
        /// Where events are POSTed (https in production).
        #[arg(long)]
        url: String,
        /// `json` (signed with --secret) or `slack` (incoming-webhook text).
        #[arg(long, default_value = "json", value_parser = ["json", "slack"])]
        format: String,
        /// HMAC-SHA256 key for `json` deliveries (required for json).
        #[arg(long, env = "SCIMBRIDGE_WEBHOOK_SECRET", hide_env_values = true)]
        secret: Option<String>,
        /// Only these event kinds (comma-separated); default all of the channel.
        #[arg(long, value_delimiter = ',')]
        events: Vec<String>,
        /// `primary` (everything else) or `escalation` (overdue leaver tasks).
        #[arg(long, default_value = PRIMARY, value_parser = [PRIMARY, ESCALATION])]
        channel: String,
    },
    /// List webhooks (secrets are never shown).
    List {
        /// Only webhooks of this app.
        #[arg(long)]
        app: Option<String>,
    },
    /// Disable a webhook (its delivery history stays).
    Remove {
        /// The webhook id shown by `webhooks list`.
        id: Uuid,
    },
}

/// The event kinds a webhook can ask for.
pub const EVENT_KINDS: [&str; 12] = [
    "task.created",
    "task.due_soon",
    "task.overdue",
    "task.reminder",
    "task.escalated",
    "task.completed",
    "task.failed",
    "task.reassigned",
    "batch.held",
    "task.reopened",
    "snapshot.held",
    "snapshot.applied",
];

/// Runs a `webhooks` command.
pub async fn webhooks(store: &Store, cmd: WebhooksCommand) -> anyhow::Result<()> {
    match cmd {
        WebhooksCommand::Add {
            app,
            name,
            url,
            format,
            secret,
            events,
            channel,
        } => {
            anyhow::ensure!(store.app(&app).await?.is_some(), "no app {app:?}");
            anyhow::ensure!(
                url.starts_with("https://") || url.starts_with("http://"),
                "--url must start with https:// (or http:// for local tests)"
            );
            anyhow::ensure!(
                format != "json" || secret.as_deref().is_some_and(|s| s.len() >= 16),
                "a json webhook needs --secret of at least 16 characters (receivers verify signatures with it)"
            );
            if let Some(bad) = events.iter().find(|e| !EVENT_KINDS.contains(&e.as_str())) {
                anyhow::bail!(
                    "unknown event kind {bad:?}; kinds: {}",
                    EVENT_KINDS.join(", ")
                );
            }
            let events = (!events.is_empty()).then_some(events);
            let id = store
                .add_webhook(&NewWebhook {
                    app_id: &app,
                    name: &name,
                    url: &url,
                    format: &format,
                    secret: secret.as_deref(),
                    events: events.as_deref(),
                    channel: &channel,
                })
                .await?;
            println!("added webhook {id} ({format}, {channel}) for app {app}");
        }
        WebhooksCommand::List { app } => {
            println!(
                "{:<36}  {:<10}  {:<12}  {:<6}  {:<10}  URL",
                "ID", "APP", "NAME", "FORMAT", "CHANNEL"
            );
            for w in store.webhooks(app.as_deref()).await? {
                println!(
                    "{:<36}  {:<10}  {:<12}  {:<6}  {:<10}  {}{}",
                    w.webhook_id,
                    w.app_id,
                    w.name,
                    w.format,
                    w.channel,
                    w.url,
                    w.events
                        .map(|e| format!("  (events: {})", e.join(",")))
                        .unwrap_or_default()
                );
            }
        }
        WebhooksCommand::Remove { id } => {
            anyhow::ensure!(
                store.disable_webhook(id).await?,
                "no live webhook with id {id}"
            );
            println!("disabled webhook {id}");
        }
    }
    Ok(())
}

/// `audit verify`: recomputes the chain of one app (or every app) and exits non-zero
/// when a record does not match.
pub async fn verify(store: &Store, app: Option<String>) -> anyhow::Result<()> {
    let apps = match app {
        Some(a) => vec![a],
        None => store.app_ids().await?,
    };
    let mut broken = false;
    for app in apps {
        let v = store.verify_audit(&app).await?;
        match &v.first_broken {
            None => println!("{app}: {} audit records, chain intact", v.records),
            Some(b) => {
                broken = true;
                println!(
                    "{app}: {} audit records, chain BROKEN at record {} (position {}): {}",
                    v.records, b.audit_id, b.chain_seq, b.reason
                );
            }
        }
    }
    anyhow::ensure!(!broken, "the audit trail does not verify");
    Ok(())
}

/// `reports` subcommands.
#[derive(Debug, Subcommand)]
pub enum ReportsCommand {
    /// Seats: desired active vs confirmed active, pending changes, unconfirmed releases.
    Seats,
    /// Time to complete by task kind and what is overdue now.
    Sla,
    /// Every removal and deactivation: asked when, done by whom and when, seat freed?
    Leavers,
    /// What snapshots of the app's user list verified: verified %, drift, orphans,
    /// missing, verification failures, seats desired vs confirmed vs observed.
    Verification,
    /// The audit trail as CSV (chain order), for a subject or a period.
    Audit {
        /// A user, group or batch id.
        #[arg(long)]
        subject: Option<String>,
        /// RFC 3339 start (inclusive).
        #[arg(long)]
        from: Option<String>,
        /// RFC 3339 end (exclusive).
        #[arg(long)]
        to: Option<String>,
    },
}

/// Runs a `reports` command against the task API; prints JSON (or CSV for `audit`).
pub async fn reports(conn: &Connection, cmd: ReportsCommand) -> anyhow::Result<()> {
    let url = conn
        .url
        .as_deref()
        .filter(|u| !u.trim().is_empty())
        .ok_or_else(|| anyhow::anyhow!("no server URL: pass --url or set SCIMBRIDGE_URL"))?;
    let token = conn
        .token
        .as_deref()
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| anyhow::anyhow!("no token: pass --token or set SCIMBRIDGE_TOKEN"))?;
    let path = match &cmd {
        ReportsCommand::Seats => "/reports/seats".to_string(),
        ReportsCommand::Sla => "/reports/sla".to_string(),
        ReportsCommand::Leavers => "/reports/leavers".to_string(),
        ReportsCommand::Verification => "/reports/verification".to_string(),
        ReportsCommand::Audit { subject, from, to } => {
            let q: Vec<String> = [("subject", subject), ("from", from), ("to", to)]
                .iter()
                .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", urlencode(v))))
                .collect();
            format!("/audit/export?{}", q.join("&"))
        }
    };
    let full = format!("{}/api/v1{path}", url.trim_end_matches('/'));
    let res = reqwest::Client::new()
        .get(&full)
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("could not reach {full}: {e}"))?;
    let status = res.status();
    let text = res.text().await?;
    if !status.is_success() {
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        anyhow::bail!(
            "{} ({})",
            v["message"].as_str().unwrap_or(&text),
            v["code"].as_str().unwrap_or(status.as_str())
        );
    }
    match cmd {
        ReportsCommand::Audit { .. } => print!("{text}"),
        _ => {
            let v: serde_json::Value = serde_json::from_str(&text)?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
    }
    Ok(())
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
