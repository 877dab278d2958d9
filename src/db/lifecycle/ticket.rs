//! A ticket closes its task: the ticket system (Jira, ServiceNow) reached a status the
//! bridge maps to an outcome, seen by a poll or an inbound webhook.
//!
//! The ticket speaks for whoever worked it, so the task is completed as if its holder
//! had: same completion rules (a removal done needs `seat_freed`, taken from the ticket
//! field the bridge maps), same effects (confirmed state, next task, event), recorded by
//! the actor "Jira IT-7" with the note "Closed by Jira IT-7 reaching Done". A task held by
//! someone is closed too (their lease stops working; the history names them). When the
//! task cannot be closed from the ticket (a required field the ticket does not supply, a
//! task waiting for its user's task in progress, awaiting approval or held), it stays for
//! a person: the reason is kept on the ticket row (shown with the task), written once to
//! the task's history and left as a comment on the ticket.

use serde_json::{json, Map, Value};
use tracing::field::Empty;
use uuid::Uuid;

use super::finish::record_completion;
use super::{lock_task, task_entry, Completion, Locked, Outcome};
use crate::auth::{Actor, Role};
use crate::db::tasks::Task;
use crate::db::tickets::note;
use crate::db::{audit, Store};
use crate::error::Result;
use crate::reconcile::evidence::check_fields;
use crate::reconcile::TaskState;

/// A ticket that reached a closing status.
#[derive(Debug, Clone)]
pub struct TicketDone {
    /// "Jira" or "ServiceNow".
    pub system: &'static str,
    /// The ticket's key (`IT-7`, `SCTASK0010001`).
    pub key: String,
    /// The status it reached.
    pub status: String,
    /// What that status means for the task.
    pub outcome: Outcome,
    /// Completion field values the ticket supplies (already mapped).
    pub fields: Map<String, Value>,
    /// For a required field the bridge maps, the ticket field that supplies it (for the
    /// "set field X" advice).
    pub field_sources: Vec<(String, String)>,
    /// Who changed the ticket, when the system says.
    pub changed_by: Option<String>,
    /// `webhook` or `poll`.
    pub via: &'static str,
}

/// What a closing ticket did to its task.
#[derive(Debug, Clone)]
pub enum Closing {
    /// The task is closed now.
    Closed(Box<Task>),
    /// The task stays for a person: why.
    Pending(String),
    /// The task had finished already; nothing changed.
    Finished,
}

impl Store {
    /// Closes a task from its ticket (see the module doc). Idempotent: a finished task is
    /// left alone, and the same reason for staying open is recorded once.
    #[tracing::instrument(
        name = "task.close_from_ticket",
        skip(self, done),
        fields(app = %app_id, task_id, kind = Empty)
    )]
    pub async fn close_from_ticket(
        &self,
        app_id: &str,
        task_id: i64,
        done: TicketDone,
    ) -> Result<Closing> {
        let actor = Actor {
            app_id: app_id.to_owned(),
            token_id: Uuid::nil(),
            name: format!("{} {}", done.system, done.key),
            role: Role::System,
            request_id: None,
        };
        let mut tx = self.pool.begin().await?;
        let Locked { task: t, holder } = lock_task(&mut tx, &actor, task_id).await?;
        let reaching = format!("{} {} reached {}", done.system, done.key, done.status);
        let blocked = match t.state {
            TaskState::Done
            | TaskState::Failed
            | TaskState::NotApplicable
            | TaskState::Cancelled => return Ok(Closing::Finished),
            TaskState::AwaitingApproval => Some(format!(
                "{reaching}, but task #{task_id} still awaits an admin's approval; approve it, \
                 then the ticket's status closes it"
            )),
            TaskState::Held => Some(format!(
                "{reaching}, but task #{task_id} is held for review in batch #{}; release the \
                 batch, then the ticket's status closes it",
                t.batch_id.unwrap_or_default()
            )),
            TaskState::Open if t.blocked_by.is_some() => Some(format!(
                "{reaching}, but task #{task_id} waits for task #{} of the same user (tasks \
                 of one user are done in order); it is closed once that one is finished",
                t.blocked_by.unwrap_or_default()
            )),
            TaskState::Open | TaskState::InProgress => None,
        };
        let blocked = blocked.or_else(|| {
            check_fields(
                t.kind,
                &t.completion_fields,
                &done.fields,
                done.outcome == Outcome::Done,
            )
            .err()
            .map(|e| {
                let advice: Vec<String> = done
                    .field_sources
                    .iter()
                    .filter(|(name, _)| e.message.contains(name.as_str()))
                    .map(|(name, field)| format!("{name} comes from the ticket field {field}"))
                    .collect();
                let advice = if advice.is_empty() {
                    "the bridge maps no ticket field to it".to_owned()
                } else {
                    advice.join("; ")
                };
                format!(
                    "{reaching}, but {} ({advice}). Set it on the ticket, or complete task \
                     #{task_id} in scimbridge with it.",
                    e.message
                )
            })
        });
        if let Some(reason) = blocked {
            let before: Option<Option<String>> =
                sqlx::query_scalar("select done_pending from ticket where task_id = $1 for update")
                    .bind(task_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            sqlx::query(
                "update ticket set done_pending = $2, updated_at = now() where task_id = $1",
            )
            .bind(task_id)
            .bind(&reason)
            .execute(&mut *tx)
            .await?;
            let changed = before.map(|b| b.as_deref() != Some(reason.as_str()));
            if changed == Some(true) {
                let detail = json!({"note": reason, "ticket": done.key, "status": done.status,
                                    "via": done.via, "changed_by": done.changed_by});
                audit::write(
                    &mut tx,
                    &actor,
                    task_entry(
                        "task.ticket_done",
                        task_id,
                        t.subject.id,
                        "not_closed",
                        detail,
                    ),
                )
                .await?;
                note(
                    &mut tx,
                    task_id,
                    &format!("scimbridge did not close task #{task_id}: {reason}"),
                )
                .await?;
            }
            tx.commit().await?;
            return Ok(Closing::Pending(reason));
        }
        // Before the task changes, so the ticket_mirror trigger's ticket.close is told the
        // ticket itself closed it (a comment, no transition back).
        sqlx::query(
            "update ticket set closed_by_ticket = true, done_pending = null, remote_status = $2, \
             updated_at = now() where task_id = $1",
        )
        .bind(task_id)
        .bind(&done.status)
        .execute(&mut *tx)
        .await?;
        let by = done
            .changed_by
            .as_deref()
            .map(|who| format!(" (changed by {who})"))
            .unwrap_or_default();
        let c = Completion {
            outcome: done.outcome,
            lease_id: None,
            idempotency_key: None,
            note: Some(format!(
                "Closed by {} {} reaching {}{by}",
                done.system, done.key, done.status
            )),
            fields: done.fields.clone(),
            attachments: Vec::new(),
        };
        let previous_holder = match (t.state, &t.claimed_by, holder) {
            (TaskState::InProgress, Some(name), Some(_)) => Some(name.clone()),
            _ => None,
        };
        let extra = json!({"ticket": done.key, "system": done.system, "status": done.status,
                           "via": done.via, "changed_by": done.changed_by,
                           "previous_holder": previous_holder});
        let closed = record_completion(&mut tx, &self.profiles, &actor, &t, &c, extra).await?;
        tx.commit().await?;
        Ok(Closing::Closed(Box::new(closed)))
    }
}
