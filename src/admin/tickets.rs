//! `scimbridge tickets …`: configure, show and disable the app's ticket bridge (Jira or
//! ServiceNow) and list its tickets, through the task API (an admin token).

use anyhow::Context as _;
use clap::Subcommand;
use serde_json::{json, Map, Value};

use super::render::{json as pretty, Table};
use crate::client::Client;

/// `tickets configure`: the bridge's settings as flags.
#[derive(Debug, clap::Args)]
pub struct ConfigureArgs {
    /// jira, jira_service_management or servicenow.
    #[arg(long)]
    system: String,
    /// The site: https://acme.atlassian.net, https://acme.service-now.com.
    #[arg(long)]
    base_url: String,
    /// Basic auth user: Jira Cloud's account email, a ServiceNow user. Without it the
    /// secret is sent as a bearer token (OAuth).
    #[arg(long)]
    username: Option<String>,
    /// The API token, password or access token.
    #[arg(long, env = "SCIMBRIDGE_TICKET_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// Jira: the project key.
    #[arg(long)]
    project: Option<String>,
    /// Jira: the issue type (default Task).
    #[arg(long)]
    issue_type: Option<String>,
    /// Service Management: the service desk id.
    #[arg(long)]
    service_desk_id: Option<String>,
    /// Service Management: the request type id.
    #[arg(long)]
    request_type_id: Option<String>,
    /// ServiceNow: the table (sc_task, incident, …).
    #[arg(long)]
    table: Option<String>,
    /// A field set on every created ticket: NAME=VALUE, the value JSON or text
    /// (repeatable), e.g. --field 'priority={"name":"High"}' --field assignment_group=IT.
    #[arg(long = "field", value_name = "NAME=VALUE")]
    fields: Vec<String>,
    /// A ticket status that closes the task: STATUS=done|failed|not_applicable
    /// (repeatable; replaces the defaults), e.g. --status Done=done.
    #[arg(long = "status", value_name = "STATUS=OUTCOME")]
    statuses: Vec<String>,
    /// Where a ticket goes when its task is done in scimbridge (a Jira status name, a
    /// ServiceNow state value).
    #[arg(long)]
    close_status: Option<String>,
    /// Where a ticket goes when its task is cancelled in scimbridge.
    #[arg(long)]
    cancel_status: Option<String>,
    /// ServiceNow: a column set when closing: NAME=VALUE (repeatable).
    #[arg(long = "close-field", value_name = "NAME=VALUE")]
    close_fields: Vec<String>,
    /// A completion field the ticket supplies: NAME=TICKET_FIELD (repeatable), e.g.
    /// --completion-field seat_freed=customfield_10050.
    #[arg(long = "completion-field", value_name = "NAME=TICKET_FIELD")]
    completion_fields: Vec<String>,
    /// Task kinds mirrored (comma-separated; default all).
    #[arg(long, value_delimiter = ',')]
    kinds: Vec<String>,
    /// First status poll interval in seconds, doubling while nothing changes (0:
    /// webhooks only; default 300).
    #[arg(long)]
    poll_seconds: Option<i32>,
    /// The inbound webhook's shared secret (default: generated and printed once).
    #[arg(long, env = "SCIMBRIDGE_TICKET_HOOK_SECRET", hide_env_values = true)]
    hook_secret: Option<String>,
    /// Also mirror the open and claimed tasks that exist now.
    #[arg(long)]
    backfill: bool,
    /// Print the API's JSON.
    #[arg(long)]
    json: bool,
}

/// `tickets` subcommands.
#[derive(Debug, Subcommand)]
pub enum TicketsCommand {
    /// Configure (or reconfigure, or re-enable) the app's ticket bridge. Credentials and
    /// the hook secret are sent once and stored sealed; omit them when reconfiguring to
    /// keep the stored ones.
    Configure(Box<ConfigureArgs>),
    /// Show the app's ticket bridge (never its secrets) and its webhook URL.
    Show {
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Disable the app's ticket bridge: no new tickets, no polls, webhooks refused.
    Disable,
    /// List the app's tickets, newest task first.
    List {
        /// pending, creating, open or closed.
        #[arg(long)]
        state: Option<String>,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
}

fn pair(what: &str, s: &str) -> anyhow::Result<(String, String)> {
    let (k, v) = s
        .split_once('=')
        .with_context(|| format!("{what} takes NAME=VALUE, got {s:?}"))?;
    anyhow::ensure!(!k.trim().is_empty(), "{what} takes NAME=VALUE, got {s:?}");
    Ok((k.trim().to_owned(), v.to_owned()))
}

/// NAME=VALUE pairs as a JSON object; a value that parses as JSON is taken as such.
fn object(what: &str, pairs: &[String], json_values: bool) -> anyhow::Result<Map<String, Value>> {
    pairs
        .iter()
        .map(|p| {
            let (k, v) = pair(what, p)?;
            let value = if json_values {
                serde_json::from_str(&v).unwrap_or(Value::String(v))
            } else {
                Value::String(v)
            };
            Ok((k, value))
        })
        .collect()
}

fn show(v: &Value) -> String {
    let s = &v["settings"];
    let target = [
        ("project", &s["project"]),
        ("issue type", &s["issue_type"]),
        ("service desk", &s["service_desk_id"]),
        ("request type", &s["request_type_id"]),
        ("table", &s["table"]),
    ]
    .iter()
    .filter_map(|(k, v)| v.as_str().map(|v| format!("{k} {v}")))
    .collect::<Vec<_>>()
    .join(", ");
    let statuses = s["statuses"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, o)| format!("{k} → {}", o.as_str().unwrap_or("?")))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let mut out = format!(
        "Ticket bridge {} ({})\n\
         System:       {} at {}\n\
         Target:       {target}\n\
         Signs in as:  {} {}\n\
         Closes tasks: {statuses}\n\
         Kinds:        {}\n\
         Polls:        {}\n\
         Webhook URL:  {}\n",
        v["bridge_id"].as_str().unwrap_or("?"),
        if v["enabled"] == true {
            "enabled"
        } else {
            "DISABLED"
        },
        v["system"].as_str().unwrap_or("?"),
        v["base_url"].as_str().unwrap_or("?"),
        v["auth"]["type"].as_str().unwrap_or("?"),
        v["auth"]["username"].as_str().unwrap_or(""),
        v["kinds"]
            .as_array()
            .map(|k| k
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", "))
            .unwrap_or_default(),
        match v["poll_seconds"].as_i64() {
            Some(0) | None => "no (webhooks only)".to_owned(),
            Some(n) => format!("every {n} s at first, backing off while nothing changes"),
        },
        v["hook_url"].as_str().unwrap_or("?"),
    );
    if let Some(secret) = v["hook_secret"].as_str() {
        out.push_str(&format!(
            "Hook secret:  {secret}\n              (shown once: give it to Jira or ServiceNow now)\n"
        ));
    }
    if let Some(n) = v["backfilled"].as_i64() {
        out.push_str(&format!("Backfilled:   {n} existing tasks get tickets\n"));
    }
    out
}

/// Runs a `tickets` subcommand.
pub(super) async fn run(client: &Client, cmd: TicketsCommand) -> anyhow::Result<()> {
    match cmd {
        TicketsCommand::Configure(args) => {
            let ConfigureArgs {
                system,
                base_url,
                username,
                secret,
                project,
                issue_type,
                service_desk_id,
                request_type_id,
                table,
                fields,
                statuses,
                close_status,
                cancel_status,
                close_fields,
                completion_fields,
                kinds,
                poll_seconds,
                hook_secret,
                backfill,
                json,
            } = *args;
            let mut settings = json!({
                "fields": object("--field", &fields, true)?,
                "statuses": object("--status", &statuses, false)?,
                "close_fields": object("--close-field", &close_fields, true)?,
                "completion_fields": object("--completion-field", &completion_fields, false)?,
            });
            for (k, v) in [
                ("project", project),
                ("issue_type", issue_type),
                ("service_desk_id", service_desk_id),
                ("request_type_id", request_type_id),
                ("table", table),
                ("close_status", close_status),
                ("cancel_status", cancel_status),
            ] {
                if let Some(v) = v {
                    settings[k] = json!(v);
                }
            }
            let mut body = json!({"system": system, "base_url": base_url, "settings": settings,
                                  "backfill": backfill});
            match (secret, username) {
                (Some(secret), Some(username)) => {
                    body["auth"] = json!({"type": "basic", "username": username, "secret": secret})
                }
                (Some(secret), None) => body["auth"] = json!({"type": "bearer", "secret": secret}),
                (None, Some(_)) => anyhow::bail!(
                    "--username needs --secret (or SCIMBRIDGE_TICKET_SECRET): the API token or password"
                ),
                (None, None) => {}
            }
            if !kinds.is_empty() {
                body["kinds"] = json!(kinds);
            }
            if let Some(p) = poll_seconds {
                body["poll_seconds"] = json!(p);
            }
            if let Some(h) = hook_secret {
                body["hook_secret"] = json!(h);
            }
            let v = client.put_ticket_bridge(&body).await?;
            if json {
                println!("{}", pretty(&v));
            } else {
                print!("{}", show(&v));
            }
        }
        TicketsCommand::Show { json } => {
            let v = client.ticket_bridge().await?;
            if json {
                println!("{}", pretty(&v));
            } else {
                print!("{}", show(&v));
            }
        }
        TicketsCommand::Disable => {
            client.disable_ticket_bridge().await?;
            println!("ticket bridge disabled (its tickets stay linked to their tasks)");
        }
        TicketsCommand::List { state, json } => {
            let v = client.tickets(state.as_deref(), None).await?;
            if json {
                println!("{}", pretty(&v));
                return Ok(());
            }
            let mut t = Table::new(&["TASK", "TICKET", "STATE", "STATUS", "NOTE"]);
            for k in v["tickets"].as_array().into_iter().flatten() {
                let text = |f: &str| k[f].as_str().unwrap_or("-").to_owned();
                let note = match (k["closed_by_ticket"] == true, k["done_pending"].as_str()) {
                    (true, _) => "closed the task".to_owned(),
                    (false, Some(p)) => p.to_owned(),
                    (false, None) => String::new(),
                };
                t.row(vec![
                    k["task_id"].to_string(),
                    text("key"),
                    text("state"),
                    text("remote_status"),
                    note,
                ]);
            }
            print!("{}", t.render());
        }
    }
    Ok(())
}
