//! `scimbridge tasks …`: list, show, claim, complete, release, reassign, approve or reject
//! and count tasks.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use chrono::Utc;
use serde_json::{json, Map, Value};

use super::render::{age, cut, json as pretty, show, when, wrap, Table};
use super::TasksCommand;
use crate::client::{
    Attachment, Claim, Client, Completion, HistoryRecord, Outcome, Task, TaskQuery,
};
use crate::reconcile::TaskState;

/// How long the CLI resends a completion that got no answer (same Idempotency-Key).
const COMPLETE_RETRY_FOR: Duration = Duration::from_secs(30);
/// Largest page the API serves.
const MAX_PAGE: u32 = 500;

pub(super) async fn run(client: &Client, cmd: TasksCommand) -> anyhow::Result<()> {
    match cmd {
        TasksCommand::List {
            state,
            kind,
            user,
            limit,
            cursor,
            json,
        } => {
            let q = TaskQuery {
                state,
                kind,
                subject: user,
                cursor,
                limit: None,
            };
            list(client, q, limit, json).await
        }
        TasksCommand::Show { id, json } => {
            let t = client.task(id).await?;
            if json {
                println!("{}", pretty(&t.raw));
            } else {
                print!("{}", task_view(&t));
            }
            Ok(())
        }
        TasksCommand::Claim {
            kinds,
            wait,
            lease_seconds,
            json,
        } => claim(client, kinds, wait, lease_seconds, json).await,
        TasksCommand::Done {
            id,
            fields,
            note,
            lease,
            attach,
            json,
        } => {
            let mut c = Completion::new(Outcome::Done);
            c.fields = parse_fields(&fields)?;
            c.attachments = attachments(&attach)?;
            c.note = note;
            c.lease_id = lease;
            complete(client, id, c, json).await
        }
        TasksCommand::Fail {
            id,
            note,
            lease,
            attach,
            json,
        } => {
            let mut c = Completion::new(Outcome::Failed);
            c.note = Some(note);
            c.lease_id = lease;
            c.attachments = attachments(&attach)?;
            complete(client, id, c, json).await
        }
        TasksCommand::Na {
            id,
            note,
            lease,
            json,
        } => {
            let mut c = Completion::new(Outcome::NotApplicable);
            c.note = note;
            c.lease_id = lease;
            complete(client, id, c, json).await
        }
        TasksCommand::Release { id, lease, json } => {
            let t = client.release(id, lease.as_deref()).await?;
            if json {
                println!("{}", pretty(&t.raw));
            } else if t.state == TaskState::Cancelled {
                println!(
                    "task {id} released and cancelled: {}",
                    t.cancel_reason
                        .as_deref()
                        .unwrap_or("a newer task covers it")
                );
            } else {
                println!("task {id} released; it is {} again", t.state);
            }
            Ok(())
        }
        TasksCommand::Approve { id, json } => {
            let t = client.approve(id).await?;
            if json {
                println!("{}", pretty(&t.raw));
            } else {
                println!("task {id} approved; it is {} and can be claimed", t.state);
            }
            Ok(())
        }
        TasksCommand::Reject { id, reason, json } => {
            let t = client.reject(id, &reason).await?;
            if json {
                println!("{}", pretty(&t.raw));
            } else {
                println!("task {id} rejected ({}): {reason}", t.state);
            }
            Ok(())
        }
        TasksCommand::Reassign {
            id,
            to,
            reason,
            lease_seconds,
            json,
        } => {
            let t = client
                .reassign(id, &to, reason.as_deref(), lease_seconds)
                .await?;
            if json {
                println!("{}", pretty(&t.raw));
            } else if t.state == TaskState::InProgress {
                println!(
                    "task {id} now held by {} (lease until {})",
                    t.claimed_by.as_deref().unwrap_or("?"),
                    t.lease_expires_at
                        .map(crate::db::rfc3339)
                        .unwrap_or_else(|| "-".into())
                );
            } else if t.state == TaskState::Cancelled {
                println!(
                    "task {id} back to the queue and cancelled: {}",
                    t.cancel_reason
                        .as_deref()
                        .unwrap_or("a newer task covers it")
                );
            } else {
                println!("task {id} is back in the queue ({})", t.state);
            }
            Ok(())
        }
        TasksCommand::Counts { json } => {
            let c = client.task_counts().await?;
            if json {
                println!("{}", pretty(&c.raw));
                return Ok(());
            }
            let states: Vec<&String> = c.by_state.keys().collect();
            let mut header = vec!["KIND"];
            header.extend(states.iter().map(|s| s.as_str()));
            header.push("TOTAL");
            let mut t = Table::new(&header);
            for (kind, total) in &c.by_kind {
                let mut row = vec![kind.clone()];
                for s in &states {
                    let n = c
                        .by_state_and_kind
                        .get(*s)
                        .and_then(|m| m.get(kind))
                        .copied()
                        .unwrap_or(0);
                    row.push(n.to_string());
                }
                row.push(total.to_string());
                t.row(row);
            }
            let mut row = vec!["TOTAL".to_owned()];
            row.extend(c.by_state.values().map(|n| n.to_string()));
            row.push(c.total.to_string());
            t.row(row);
            print!("{}", t.render());
            Ok(())
        }
    }
}

/// Lists tasks, following pages until `limit` tasks were shown.
async fn list(client: &Client, mut q: TaskQuery, limit: u32, as_json: bool) -> anyhow::Result<()> {
    anyhow::ensure!(limit >= 1, "--limit must be at least 1");
    let mut tasks: Vec<Task> = Vec::new();
    let mut next;
    loop {
        q.limit = Some((limit - tasks.len() as u32).min(MAX_PAGE));
        let page = client.tasks(&q).await?;
        tasks.extend(page.tasks);
        next = page.next_cursor;
        match &next {
            Some(c) if (tasks.len() as u32) < limit => q.cursor = Some(c.clone()),
            _ => break,
        }
    }
    if as_json {
        let raw: Vec<&Value> = tasks.iter().map(|t| &t.raw).collect();
        println!("{}", pretty(&json!({"tasks": raw, "next_cursor": next})));
        return Ok(());
    }
    if tasks.is_empty() {
        eprintln!("no tasks");
        return Ok(());
    }
    let now = Utc::now();
    let mut t = Table::new(&["ID", "STATE", "KIND", "USER", "AGE", "TITLE"]);
    for task in &tasks {
        let mut state = task.state.to_string();
        if let Some(b) = task.blocked_by {
            // Open but waiting for the user's task in progress.
            let _ = write!(state, " (after #{b})");
        }
        t.row(vec![
            task.id.to_string(),
            state,
            task.kind.clone(),
            cut(&task.subject.user_name, 32),
            age(task.created_at, now),
            cut(&task.title, 80),
        ]);
    }
    print!("{}", t.render());
    if let Some(c) = next {
        eprintln!("more tasks follow: add --cursor {c}");
    }
    Ok(())
}

async fn claim(
    client: &Client,
    kinds: Vec<String>,
    wait: u64,
    lease_seconds: Option<u64>,
    as_json: bool,
) -> anyhow::Result<()> {
    anyhow::ensure!(wait <= 60, "--wait must be at most 60 seconds");
    let c = Claim {
        lease_seconds,
        wait: Some(wait),
        kinds,
    };
    let Some(t) = client.claim(&c).await? else {
        eprintln!("no task to claim right now");
        return Ok(());
    };
    if as_json {
        println!("{}", pretty(&t.raw));
        return Ok(());
    }
    print!("{}", task_view(&t));
    let lease = t.lease_id.as_deref().unwrap_or("?");
    let fields: String = t
        .completion_fields
        .iter()
        .filter(|f| f.required)
        .map(|f| format!(" --field {}=…", f.name))
        .collect();
    println!();
    println!(
        "When done:        scimbridge tasks done {} --lease {lease}{fields} --note '…'",
        t.id
    );
    println!(
        "If you cannot:    scimbridge tasks fail {} --lease {lease} --note 'why'",
        t.id
    );
    println!(
        "Nothing to do:    scimbridge tasks na {} --lease {lease} --note 'why'",
        t.id
    );
    println!(
        "Give it back:     scimbridge tasks release {} --lease {lease}",
        t.id
    );
    Ok(())
}

async fn complete(client: &Client, id: i64, c: Completion, as_json: bool) -> anyhow::Result<()> {
    // One key for all attempts: a resend after a lost answer is not a second completion.
    let key = uuid::Uuid::new_v4().to_string();
    let t = client
        .complete_with_retry(id, &c, &key, COMPLETE_RETRY_FOR)
        .await?;
    if as_json {
        println!("{}", pretty(&t.raw));
        return Ok(());
    }
    let by = t.finished_by.as_deref().unwrap_or("you");
    println!("task {id} {} (recorded by {by}): {}", t.state, t.title);
    let followers = client
        .tasks(&TaskQuery {
            subject: Some(t.subject.id.clone()),
            state: Some(TaskState::Open.as_str().into()),
            ..TaskQuery::default()
        })
        .await
        .map(|p| p.tasks)
        .unwrap_or_default();
    for f in followers {
        println!(
            "next for {}: task {} {}",
            t.subject.user_name, f.id, f.title
        );
    }
    Ok(())
}

/// `NAME=VALUE` pairs into the completion's `fields` (values are strings).
fn parse_fields(pairs: &[String]) -> anyhow::Result<Map<String, Value>> {
    let mut fields = Map::new();
    for p in pairs {
        let (k, v) = p
            .split_once('=')
            .filter(|(k, _)| !k.trim().is_empty())
            .with_context(|| {
                format!("--field {p:?}: expected NAME=VALUE, e.g. --field seat_freed=yes")
            })?;
        fields.insert(k.trim().to_owned(), Value::String(v.to_owned()));
    }
    Ok(fields)
}

fn attachments(paths: &[std::path::PathBuf]) -> anyhow::Result<Vec<Attachment>> {
    paths
        .iter()
        .map(|p| Attachment::from_file(p).with_context(|| format!("--attach {}", p.display())))
        .collect()
}

/// One task for a person: what to do as a checklist, then its state and trail.
pub(super) fn task_view(t: &Task) -> String {
    let now = Utc::now();
    let mut o = String::new();
    let _ = writeln!(
        o,
        "Task {}  {}  {}",
        t.id,
        t.kind,
        t.state.as_str().to_uppercase()
    );
    let _ = writeln!(o, "{}", t.title);
    let _ = writeln!(o);
    let _ = writeln!(o, "User:      {} ({})", t.subject.user_name, t.subject.id);
    if let Some(c) = t.created_at {
        let _ = writeln!(o, "Created:   {}", when(c, now));
    }
    if let Some(b) = t.blocked_by {
        let _ = writeln!(
            o,
            "Waits for: task {b} (this user's tasks are worked in order)"
        );
    }
    if t.state == TaskState::InProgress {
        let holder = t.claimed_by.as_deref().unwrap_or("?");
        let lease = t.lease_id.as_deref().unwrap_or("?");
        let expires = t
            .lease_expires_at
            .map(|e| when(e, now))
            .unwrap_or_else(|| "?".into());
        let _ = writeln!(o, "Lease:     {lease}, held by {holder}, expires {expires}");
    }
    let _ = writeln!(o, "Attempts:  {}", t.attempts);
    let ticket = &t.raw["ticket"];
    if let Some(system) = ticket["system"].as_str() {
        let key = ticket["key"].as_str().unwrap_or("(not created yet)");
        let status = ticket["status"]
            .as_str()
            .map(|s| format!(", status {s}"))
            .unwrap_or_default();
        let url = ticket["url"]
            .as_str()
            .map(|u| format!("  {u}"))
            .unwrap_or_default();
        let _ = writeln!(o, "Ticket:    {system} {key}{status}{url}");
        if let Some(p) = ticket["pending"].as_str() {
            let _ = writeln!(o, "           {p}");
        }
    }

    if !t.instructions.is_empty() {
        let _ = writeln!(o, "\nInstructions:");
        let box_ = if t.state.is_in(&TaskState::CONFIRMED) {
            "[x]"
        } else {
            "[ ]"
        };
        for (i, step) in t.instructions.iter().enumerate() {
            let prefix = format!("  {:>2}. {box_} ", i + 1);
            let text = wrap(&show(step), 100 - prefix.len(), prefix.chars().count());
            let _ = writeln!(o, "{prefix}{text}");
        }
    }
    if let Some(changes) = t.changes.as_array().filter(|c| !c.is_empty()) {
        let _ = writeln!(o, "\nChanges:");
        let width = changes
            .iter()
            .map(|c| show(&c["field"]).chars().count())
            .max()
            .unwrap_or(0);
        for c in changes {
            let field = show(&c["field"]);
            let _ = writeln!(
                o,
                "  {field:<width$}  {} → {}",
                show(c.get("from").unwrap_or(&Value::Null)),
                show(c.get("to").unwrap_or(&Value::Null))
            );
        }
    }
    if !t.completion_fields.is_empty() {
        let _ = writeln!(o, "\nCompletion fields (for done):");
        for f in &t.completion_fields {
            let mut spec = vec![if f.required { "required" } else { "optional" }.to_owned()];
            if !f.choices.is_empty() {
                spec.push(f.choices.join("|"));
            }
            let recorded = t
                .evidence
                .as_ref()
                .and_then(|e| e.get(&f.name))
                .map(|v| format!(" = {}", show(v)))
                .unwrap_or_default();
            let _ = writeln!(
                o,
                "  {} ({}): {}{recorded}",
                f.name,
                spec.join("; "),
                f.label
            );
        }
    }
    if let Some(fin) = t.finished_at {
        let _ = writeln!(o, "\nOutcome:");
        let by = t.finished_by.as_deref().unwrap_or("?");
        let _ = writeln!(o, "  {} by {by}, {}", t.state.label(), when(fin, now));
        if let Some(n) = t.note.as_deref().filter(|n| !n.is_empty()) {
            for line in n.lines() {
                let _ = writeln!(o, "  | {line}");
            }
        }
        if let Some(r) = &t.cancel_reason {
            let _ = writeln!(o, "  reason: {r}");
        }
        if let Some(ev) = t
            .evidence
            .as_ref()
            .and_then(Value::as_object)
            .filter(|e| !e.is_empty())
        {
            let known: Vec<&str> = t
                .completion_fields
                .iter()
                .map(|f| f.name.as_str())
                .collect();
            for (k, v) in ev.iter().filter(|(k, _)| !known.contains(&k.as_str())) {
                let _ = writeln!(o, "  {k} = {}", show(v));
            }
        }
        for a in &t.attachments {
            let _ = writeln!(
                o,
                "  attachment {}: {} ({}, {} bytes)",
                show(&a["n"]),
                show(&a["filename"]),
                show(&a["content_type"]),
                show(&a["size"])
            );
        }
    }
    if !t.history.is_empty() {
        let _ = writeln!(o, "\nHistory:");
        o.push_str(&history_table(&t.history, false));
    }
    o
}

/// Audit records as a table (with the task column when they span several tasks).
pub(super) fn history_table(h: &[HistoryRecord], with_task: bool) -> String {
    let mut header = vec!["AT", "ACTOR", "ACTION", "OUTCOME"];
    if with_task {
        header.push("TASK");
    }
    header.push("DETAIL");
    let mut t = Table::new(&header);
    for r in h {
        let actor = match &r.actor_role {
            Some(role) => format!("{} ({role})", r.actor),
            None => r.actor.clone(),
        };
        let mut row = vec![
            r.at.format("%Y-%m-%d %H:%M:%SZ").to_string(),
            actor,
            r.action.clone(),
            r.outcome.clone(),
        ];
        if with_task {
            row.push(
                r.task_id
                    .map(|t| t.to_string())
                    .unwrap_or_else(|| "-".into()),
            );
        }
        row.push(cut(&detail(&r.detail), 90));
        t.row(row);
    }
    t.render().lines().map(|l| format!("  {l}\n")).collect()
}

/// An audit detail object as `key=value` pairs, leaving out empty values.
fn detail(d: &Value) -> String {
    match d {
        Value::Object(m) => m
            .iter()
            .filter(|(_, v)| {
                !v.is_null()
                    && v.as_object().is_none_or(|o| !o.is_empty())
                    && v.as_array().is_none_or(|a| !a.is_empty())
            })
            .map(|(k, v)| format!("{k}={}", show(v).replace('\n', " ")))
            .collect::<Vec<_>>()
            .join(" "),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_name_value_pairs() {
        let f = parse_fields(&["seat_freed=yes".into(), "note=a=b".into()]).unwrap();
        assert_eq!(f["seat_freed"], "yes");
        assert_eq!(f["note"], "a=b");
        assert!(parse_fields(&["seat_freed".into()]).is_err());
        assert!(parse_fields(&["=yes".into()]).is_err());
    }

    #[test]
    fn details_leave_out_empty_values() {
        assert_eq!(
            detail(&json!({"note": null, "fields": {}, "lease_id": "L", "attachments": []})),
            "lease_id=L"
        );
    }

    #[test]
    fn a_task_reads_as_a_checklist() {
        let t = Task::from_value(json!({
            "id": 7, "kind": "remove", "state": "in_progress",
            "subject": {"id": "u1", "user_name": "ann@x.com"},
            "title": "Remove People.ai account of Ann Lee (leaver)",
            "instructions": ["Sign in.", "Remove ann@x.com."],
            "changes": [{"field": "active", "from": true, "to": null}],
            "completion_fields": [{"name": "seat_freed", "label": "Seat freed?", "required": true, "choices": ["yes", "no"]}],
            "lease_id": "L1", "claimed_by": "alice", "attempts": 1
        }))
        .unwrap();
        let v = task_view(&t);
        assert!(
            v.contains("   1. [ ] Sign in.\n   2. [ ] Remove ann@x.com.\n"),
            "{v}"
        );
        assert!(v.contains("active  true → (none)"), "{v}");
        assert!(
            v.contains("seat_freed (required; yes|no): Seat freed?"),
            "{v}"
        );
        assert!(v.contains("Lease:     L1, held by alice"), "{v}");
    }
}
