//! The bridge at work: delivering the outbox's ticket events, polling ticket statuses
//! with backoff, and applying a ticket's status to its task (from a poll or a webhook).
//!
//! Creating a ticket exactly once: the create request is recorded (`creating`, committed)
//! before it is sent. A refusal (4xx, no connection) puts it back to `pending`; a lost
//! answer (timeout, dropped connection, 5xx) leaves `creating`, and the next try first
//! looks for the ticket by its correlation tag (ServiceNow `correlation_id`; a Jira label,
//! or the tag at the end of a Service Management request's summary) and adopts it if it
//! exists. ServiceNow's Table API reads its database, so the look finds a record created
//! a moment ago; Jira's search index lags writes (seconds, rarely minutes), so for Jira
//! the look waits until `--ticket-settle-secs` (120 by default) have passed since the
//! unanswered request, retrying the delivery meanwhile.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::{json, Value};
use tokio::sync::watch;
use uuid::Uuid;

use super::content::{self, Context};
use super::jira::{Jira, Moved};
use super::servicenow::ServiceNow;
use super::{
    completion_values, Auth, Bridge, CallError, Certainty, Observed, Remote, Settings, System,
};
use crate::db::lifecycle::{Closing, TicketDone};
use crate::db::outbox::Due;
use crate::db::tasks::Task;
use crate::db::tickets::{BridgeRow, TicketRow};
use crate::db::Store;
use crate::reconcile::{TaskKind, TaskState};
use crate::secrets::Sealer;

/// Longest poll interval (the backoff's cap) unless the bridge's first interval is longer.
const MAX_POLL_SECS: i32 = 3600;
/// Tickets polled per round and replica.
const POLL_BATCH: i64 = 25;

/// The purpose a bridge secret is sealed for (associated data: a sealed value does not
/// open in another column or app).
pub fn purpose(app_id: &str, what: &str) -> String {
    format!("ticket_bridge/{app_id}/{what}")
}

/// What applying a ticket's status did.
#[derive(Debug, Clone)]
pub enum Applied {
    /// The payload carried no status.
    NoStatus,
    /// The status closes nothing.
    NotClosing(String),
    /// The task was closed.
    Closed(Box<Task>),
    /// The status closes the task, but it stays for a person: why.
    Pending(String),
    /// The task had finished already.
    Finished,
}

/// Everything the bridge's work needs.
#[derive(Debug, Clone)]
pub struct Syncer {
    /// The store.
    pub store: Store,
    /// Opens the bridge's secrets.
    pub sealer: Arc<Sealer>,
    /// HTTP client for the ticket systems (timeouts set).
    pub http: reqwest::Client,
    /// How long after an unanswered Jira create to look for the ticket.
    pub settle: Duration,
    /// `--public-url`, for links from tickets to tasks.
    pub public_url: Option<String>,
}

enum Client<'a> {
    Jira(Jira<'a>),
    ServiceNow(ServiceNow<'a>),
}

impl Client<'_> {
    async fn create(&self, c: &content::Content, correlation: &str) -> Result<Remote, CallError> {
        match self {
            Client::Jira(j) => j.create(c, correlation).await,
            Client::ServiceNow(s) => s.create(c, correlation).await,
        }
    }

    async fn find(&self, correlation: &str) -> Result<Option<Remote>, CallError> {
        match self {
            Client::Jira(j) => j.find(correlation).await,
            Client::ServiceNow(s) => s.find(correlation).await,
        }
    }

    async fn observe(&self, remote_id: &str) -> Result<Observed, CallError> {
        match self {
            Client::Jira(j) => j.observe(remote_id).await,
            Client::ServiceNow(s) => s.observe(remote_id).await,
        }
    }
}

/// The words a ticket gets when its task finished in scimbridge.
fn finished_words(t: &Task) -> String {
    let by = t.finished_by.as_deref().unwrap_or("scimbridge");
    let note = t
        .note
        .as_deref()
        .filter(|n| !n.is_empty())
        .map(|n| format!(" Note: {n}"))
        .unwrap_or_default();
    let fields = match &t.evidence {
        Some(Value::Object(m)) if !m.is_empty() => format!(
            " Recorded: {}.",
            m.iter()
                .map(|(k, v)| format!("{k} = {}", super::plain(v).unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        _ => String::new(),
    };
    match t.state {
        TaskState::Done => format!("Task #{} was completed in scimbridge by {by}.{note}{fields}", t.id),
        TaskState::NotApplicable => format!(
            "Task #{} was closed in scimbridge by {by} as not applicable (the app already was as asked).{note}",
            t.id
        ),
        TaskState::Failed => format!(
            "Task #{} failed in scimbridge ({by}).{note} The ticket stays open for a person to look at.",
            t.id
        ),
        TaskState::Cancelled => format!(
            "Task #{} was cancelled in scimbridge: {}",
            t.id,
            t.cancel_reason.as_deref().unwrap_or("it is no longer needed.")
        ),
        TaskState::Open
        | TaskState::AwaitingApproval
        | TaskState::Held
        | TaskState::InProgress => format!("Task #{} is {} in scimbridge.", t.id, t.state.label()),
    }
}

impl Syncer {
    /// A bridge row with its secrets opened and its settings read.
    pub async fn bridge(&self, row: &BridgeRow) -> Result<Bridge, String> {
        let system = System::parse(&row.system)
            .ok_or_else(|| format!("unknown ticket system {:?}", row.system))?;
        let settings: Settings = serde_json::from_value(row.settings.clone())
            .map_err(|e| format!("the bridge's settings cannot be read: {e}"))?;
        let secret = self
            .sealer
            .open(
                &self.store,
                &purpose(&row.app_id, "credential"),
                &row.credential,
            )
            .await
            .map_err(|e| format!("the bridge's credential: {e}"))?;
        let auth = match (row.auth_kind.as_str(), &row.username) {
            ("basic", Some(user)) => Auth::Basic {
                username: user.clone(),
                password: secret,
            },
            _ => Auth::Bearer(secret),
        };
        Ok(Bridge {
            bridge_id: row.bridge_id,
            app_id: row.app_id.clone(),
            system,
            base_url: row.base_url.clone(),
            settings,
            kinds: row
                .kinds
                .iter()
                .filter_map(|k| TaskKind::parse(k))
                .collect(),
            auth,
            poll_seconds: row.poll_seconds,
        })
    }

    /// The bridge's inbound hook secret.
    pub async fn hook_secret(&self, row: &BridgeRow) -> Result<String, String> {
        self.sealer
            .open(
                &self.store,
                &purpose(&row.app_id, "hook_secret"),
                &row.hook_secret,
            )
            .await
            .map_err(|e| format!("the bridge's hook secret: {e}"))
    }

    fn client<'a>(&'a self, bridge: &'a Bridge) -> Client<'a> {
        match bridge.system {
            System::Jira | System::JiraServiceManagement => Client::Jira(Jira {
                http: &self.http,
                bridge,
            }),
            System::Servicenow => Client::ServiceNow(ServiceNow {
                http: &self.http,
                bridge,
            }),
        }
    }

    /// Delivers one ticket event from the outbox: Ok records it delivered, Err (a
    /// message) retries it with the outbox's backoff.
    pub async fn deliver(&self, due: &Due) -> Result<(), String> {
        let err = |e: crate::error::Error| e.to_string();
        let Some(row) = self
            .store
            .bridge_by_webhook(due.webhook_id)
            .await
            .map_err(err)?
        else {
            return Ok(());
        };
        if !row.enabled {
            tracing::info!(event = due.event_id, kind = %due.kind, "ticket bridge disabled; event dropped");
            return Ok(());
        }
        let bridge = self.bridge(&row).await?;
        let Some(task_id) = due.payload["task_id"].as_i64() else {
            return Ok(());
        };
        let Some(ticket) = self.store.ticket(task_id).await.map_err(err)? else {
            return Ok(());
        };
        let task = self.store.task(&row.app_id, task_id).await.map_err(err)?;
        match due.kind.as_str() {
            "ticket.create" => self.create(&bridge, &ticket, &task).await,
            "ticket.update" => {
                let text = format!(
                    "Task #{task_id} changed in scimbridge (the IdP changed the user again). It now reads: {}",
                    task.title
                );
                self.comment_when_open(&bridge, &ticket, &text).await
            }
            "ticket.note" => {
                let text = due.payload["text"].as_str().unwrap_or_default();
                self.comment_when_open(&bridge, &ticket, text).await
            }
            "ticket.close" => self.close(&bridge, &ticket, &task).await,
            "ticket.reopen" => self.reopen(&bridge, &ticket, &task).await,
            other => {
                tracing::warn!(kind = other, "unknown ticket event; dropped");
                Ok(())
            }
        }
    }

    async fn create(&self, bridge: &Bridge, ticket: &TicketRow, task: &Task) -> Result<(), String> {
        let err = |e: crate::error::Error| e.to_string();
        if matches!(ticket.state.as_str(), "open" | "closed") {
            return Ok(());
        }
        // Finished before its ticket was ever asked for (e.g. created, then undone by
        // the IdP a moment later): nobody needs the ticket.
        if ticket.create_attempts == 0
            && task.state.is_in(&[
                TaskState::Done,
                TaskState::Failed,
                TaskState::NotApplicable,
                TaskState::Cancelled,
            ])
        {
            return self.store.ticket_closed(task.id).await.map_err(err);
        }
        let client = self.client(bridge);
        let label = bridge.system.label();
        let poll_in = (bridge.poll_seconds > 0).then_some(bridge.poll_seconds);
        if ticket.state == "creating" {
            if matches!(bridge.system, System::Jira | System::JiraServiceManagement) {
                let since = ticket
                    .create_attempted_at
                    .map(|at| (Utc::now() - at).to_std().unwrap_or_default())
                    .unwrap_or_default();
                if since < self.settle {
                    return Err(format!(
                        "the answer to creating the ticket was lost; waiting until {} s have \
                         passed (--ticket-settle-secs) for Jira's search to show it before \
                         looking, so it is not created twice",
                        self.settle.as_secs()
                    ));
                }
            }
            match client.find(&ticket.correlation).await {
                Ok(Some(remote)) => {
                    tracing::info!(task = task.id, key = %remote.key, "found the ticket whose create answer was lost");
                    return self
                        .store
                        .ticket_linked(task.id, label, &remote, true, poll_in)
                        .await
                        .map_err(err);
                }
                Ok(None) => {}
                Err(e) => return Err(e.message),
            }
        }
        let app_name = self
            .store
            .app(&bridge.app_id)
            .await
            .map_err(err)?
            .map(|a| a.display_name)
            .unwrap_or_else(|| bridge.app_id.clone());
        let ctx = Context {
            app_name: &app_name,
            public_url: self.public_url.as_deref(),
        };
        let words = content::ticket(
            task,
            bridge.system,
            &bridge.settings,
            &ticket.correlation,
            ctx,
        );
        self.store
            .ticket_create_attempt(task.id)
            .await
            .map_err(err)?;
        match client.create(&words, &ticket.correlation).await {
            Ok(remote) => {
                tracing::info!(task = task.id, key = %remote.key, "ticket created");
                self.store
                    .ticket_linked(task.id, label, &remote, false, poll_in)
                    .await
                    .map_err(err)
            }
            Err(e) if e.certainty == Certainty::NothingHappened => {
                self.store
                    .ticket_create_refused(task.id)
                    .await
                    .map_err(err)?;
                Err(e.message)
            }
            Err(e) => Err(format!(
                "{} (the ticket may exist: the next try looks for it before creating another)",
                e.message
            )),
        }
    }

    async fn comment_when_open(
        &self,
        bridge: &Bridge,
        ticket: &TicketRow,
        text: &str,
    ) -> Result<(), String> {
        let (Some(key), Some(remote_id)) = (&ticket.key, &ticket.remote_id) else {
            return match ticket.state.as_str() {
                // Closed before it was ever created: nothing to tell.
                "closed" => Ok(()),
                _ => Err("the ticket is not created yet; this waits for it".into()),
            };
        };
        match self.client(bridge) {
            Client::Jira(j) => j.comment(key, text).await,
            Client::ServiceNow(s) => s.update(remote_id, json!({"work_notes": text})).await,
        }
        .map_err(|e| e.message)
    }

    async fn close(&self, bridge: &Bridge, ticket: &TicketRow, task: &Task) -> Result<(), String> {
        let err = |e: crate::error::Error| e.to_string();
        let (Some(key), Some(remote_id)) = (&ticket.key, &ticket.remote_id) else {
            // Closed before it was ever created, or its create (queued first) still to go.
            return match ticket.state.as_str() {
                "closed" => Ok(()),
                _ => Err("the ticket is not created yet; this waits for it".into()),
            };
        };
        let mut words = finished_words(task);
        if ticket.closed_by_ticket {
            words = format!(
                "scimbridge recorded this: {words} (closed by this ticket's status {}).",
                ticket.remote_status.as_deref().unwrap_or("?")
            );
        }
        // Where the ticket goes: done and not applicable close it, a cancellation goes to
        // the cancel status, a failure stays open for a person. A ticket that closed its
        // task is where it should be already.
        let target = match (ticket.closed_by_ticket, task.state) {
            (true, _) => None,
            (false, TaskState::Done | TaskState::NotApplicable) => {
                bridge.settings.close_status.clone()
            }
            (false, TaskState::Cancelled) => bridge.settings.cancel_status.clone(),
            (false, _) => None,
        };
        match self.client(bridge) {
            Client::Jira(j) => {
                if let Some(to) = &target {
                    match j.move_to(key, to).await.map_err(|e| e.message)? {
                        Moved::Already | Moved::Moved => {}
                        Moved::NoTransition { from, available } => {
                            words.push_str(&format!(
                                " (scimbridge could not move this ticket to {to}: no transition \
                                 leads there from {from}; available: {})",
                                available.join(", ")
                            ));
                        }
                    }
                }
                j.comment(key, &words).await.map_err(|e| e.message)?;
            }
            Client::ServiceNow(s) => {
                let mut columns = json!({"work_notes": words});
                if let Some(state) = &target {
                    columns["state"] = json!(state);
                    columns["close_notes"] = json!(words);
                    if task.state != TaskState::Cancelled {
                        for (k, v) in &bridge.settings.close_fields {
                            columns[k] = v.clone();
                        }
                    }
                }
                s.update(remote_id, columns).await.map_err(|e| e.message)?;
            }
        }
        self.store.ticket_closed(task.id).await.map_err(err)
    }

    /// The task was reopened (a snapshot contradicts its completion): the ticket is
    /// followed again, told why, and moved to `reopen_status` when one is configured.
    async fn reopen(&self, bridge: &Bridge, ticket: &TicketRow, task: &Task) -> Result<(), String> {
        let err = |e: crate::error::Error| e.to_string();
        let poll_in = (bridge.poll_seconds > 0).then_some(bridge.poll_seconds);
        let (Some(key), Some(remote_id)) = (&ticket.key, &ticket.remote_id) else {
            return self
                .store
                .ticket_reopened(task.id, None, poll_in)
                .await
                .map_err(err);
        };
        let client = self.client(bridge);
        let now = client
            .observe(remote_id)
            .await
            .map_err(|e| e.message)?
            .status;
        let mut words = format!(
            "Task #{} was reopened in scimbridge: the app's own user list contradicts its \
             completion, so it needs doing again.",
            task.id
        );
        let mut moved = false;
        if let Some(to) = &bridge.settings.reopen_status {
            match &client {
                Client::Jira(j) => match j.move_to(key, to).await.map_err(|e| e.message)? {
                    Moved::Already | Moved::Moved => moved = true,
                    Moved::NoTransition { from, .. } => words.push_str(&format!(
                        " (scimbridge could not move this ticket to {to} from {from})"
                    )),
                },
                Client::ServiceNow(s) => {
                    s.update(remote_id, json!({"state": to}))
                        .await
                        .map_err(|e| e.message)?;
                    moved = true;
                }
            }
        }
        // A ticket left in a closing status must not close the reopened task at once.
        let stale = now
            .filter(|st| !moved && bridge.settings.outcome_of(st).is_some())
            .inspect(|st| {
                words.push_str(&format!(
                    " Its status {st} no longer closes the task; move the ticket on, and to a \
                     closing status again once it is done."
                ))
            });
        match &client {
            Client::Jira(j) => j.comment(key, &words).await,
            Client::ServiceNow(s) => s.update(remote_id, json!({"work_notes": words})).await,
        }
        .map_err(|e| e.message)?;
        self.store
            .ticket_reopened(task.id, stale.as_deref(), poll_in)
            .await
            .map_err(err)
    }

    /// Applies what a ticket shows to its task: a closing status closes the task (or
    /// says why it stays for a person).
    pub async fn apply(
        &self,
        bridge: &Bridge,
        ticket: &TicketRow,
        observed: &Observed,
        via: &'static str,
    ) -> crate::error::Result<Applied> {
        let Some(status) = observed.status.clone() else {
            return Ok(Applied::NoStatus);
        };
        if let Some(stale) = &ticket.reopened_status {
            if stale.eq_ignore_ascii_case(&status) {
                return Ok(Applied::NotClosing(status));
            }
            self.store.ticket_moved_on(ticket.task_id).await?;
        }
        let Some(outcome) = bridge.settings.outcome_of(&status) else {
            return Ok(Applied::NotClosing(status));
        };
        let task = self.store.task(&bridge.app_id, ticket.task_id).await?;
        let fields = completion_values(
            &task.completion_fields,
            &bridge.settings.completion_fields,
            &observed.fields,
        );
        let field_sources = task
            .completion_fields
            .iter()
            .filter_map(|f| {
                bridge
                    .settings
                    .completion_fields
                    .get(&f.name)
                    .map(|src| (f.name.clone(), src.clone()))
            })
            .collect();
        let done = TicketDone {
            system: bridge.system.label(),
            key: ticket
                .key
                .clone()
                .unwrap_or_else(|| ticket.correlation.clone()),
            status,
            outcome,
            fields,
            field_sources,
            changed_by: observed.changed_by.clone(),
            via,
        };
        Ok(
            match self
                .store
                .close_from_ticket(&bridge.app_id, ticket.task_id, done)
                .await?
            {
                Closing::Closed(t) => Applied::Closed(t),
                Closing::Pending(why) => Applied::Pending(why),
                Closing::Finished => Applied::Finished,
            },
        )
    }

    /// One round of status polls: the tickets whose poll is due, each asked for its
    /// status; a closing status closes the task. An unchanged status (or a failed poll)
    /// doubles the ticket's interval, up to an hour (or the bridge's first interval when
    /// longer); a change starts again from the bridge's first interval. Returns how many
    /// tickets were polled.
    pub async fn poll_once(&self) -> crate::error::Result<usize> {
        let due = self.store.due_polls(POLL_BATCH).await?;
        let mut bridges: HashMap<Uuid, Option<Bridge>> = HashMap::new();
        for ticket in &due {
            if let std::collections::hash_map::Entry::Vacant(slot) = bridges.entry(ticket.bridge_id)
            {
                let b = match self.store.bridge_by_id(ticket.bridge_id).await? {
                    Some(row) => match self.bridge(&row).await {
                        Ok(b) => Some(b),
                        Err(e) => {
                            tracing::warn!(bridge = %row.bridge_id, error = %e, "cannot poll tickets");
                            None
                        }
                    },
                    None => None,
                };
                slot.insert(b);
            }
            let Some(Some(bridge)) = bridges.get(&ticket.bridge_id) else {
                continue;
            };
            let base = bridge.poll_seconds.max(1);
            let cap = MAX_POLL_SECS.max(base);
            let longer = (ticket.poll_interval_secs.unwrap_or(base).saturating_mul(2)).min(cap);
            let Some(remote_id) = &ticket.remote_id else {
                continue;
            };
            match self.client(bridge).observe(remote_id).await {
                Ok(observed) => {
                    let changed =
                        observed.status.is_some() && observed.status != ticket.remote_status;
                    let next = if changed { base } else { longer };
                    self.store
                        .ticket_observed(
                            ticket.task_id,
                            observed.status.as_deref(),
                            None,
                            Some(next),
                        )
                        .await?;
                    match self.apply(bridge, ticket, &observed, "poll").await? {
                        Applied::Closed(t) => {
                            tracing::info!(task = t.id, key = ?ticket.key, "task closed by its ticket's status")
                        }
                        Applied::Pending(why) => tracing::info!(
                            task = ticket.task_id,
                            why,
                            "ticket closed, task left for a person"
                        ),
                        Applied::NoStatus | Applied::NotClosing(_) | Applied::Finished => {}
                    }
                }
                Err(e) => {
                    let message = if e.is_gone() {
                        format!(
                            "the ticket is gone, or this account may not see it: {}",
                            e.message
                        )
                    } else {
                        e.message
                    };
                    tracing::warn!(task = ticket.task_id, error = %message, "ticket poll failed");
                    self.store
                        .ticket_observed(ticket.task_id, None, Some(&message), Some(longer))
                        .await?;
                }
            }
        }
        Ok(due.len())
    }
}

/// Polls due tickets every `tick` for as long as the process runs (every replica; due
/// tickets are taken with SKIP LOCKED, so each is polled by one).
pub fn spawn_poller(syncer: Arc<Syncer>, tick: Duration, mut stop: watch::Receiver<bool>) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                _ = tokio::time::sleep(tick) => {}
            }
            loop {
                match syncer.poll_once().await {
                    Ok(n) if n as i64 >= POLL_BATCH => continue,
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "ticket polls failed; retrying next round");
                        break;
                    }
                }
            }
        }
    });
}
