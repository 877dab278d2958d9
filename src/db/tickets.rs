//! The ticket bridge's rows: each app's bridge (its webhook row in the outbox, its
//! settings and sealed secrets), each task's ticket (created, being created, open,
//! closed), the status polls, and the notes scimbridge leaves on tickets. Closing a
//! task from its ticket is a lifecycle transition (`lifecycle::ticket`).
//!
//! Ticket events (`ticket.create`, `.update`, `.close`) are written by the `ticket_mirror`
//! trigger (migration 20261205050001) in the transaction of the task change; `ticket.note`
//! by [`note`] here. All of them are deliveries to the bridge's webhook row, so the
//! outbox sends them once, in order of their due time, with retries and backoff.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::PgConnection;
use uuid::Uuid;

use super::audit::{self, Entry};
use super::Store;
use crate::auth::Actor;
use crate::error::{Error, Result};

/// A bridge as stored (secrets sealed).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BridgeRow {
    /// Id; the inbound webhook's path names it.
    pub bridge_id: Uuid,
    /// Its app.
    pub app_id: String,
    /// Its row in the outbox's webhook table.
    pub webhook_id: Uuid,
    /// `jira`, `jira_service_management` or `servicenow`.
    pub system: String,
    /// The site or instance.
    pub base_url: String,
    /// [`crate::tickets::Settings`] as JSON.
    pub settings: Value,
    /// Task kinds mirrored.
    pub kinds: Vec<String>,
    /// `basic` or `bearer`.
    pub auth_kind: String,
    /// Basic auth's user (Jira: the account's email).
    pub username: Option<String>,
    /// The sealed API token, password or bearer token.
    pub credential: String,
    /// The sealed inbound hook secret.
    pub hook_secret: String,
    /// First poll interval, seconds (0: no polling).
    pub poll_seconds: i32,
    /// Its webhook row is live.
    pub enabled: bool,
    /// When it was first configured.
    pub created_at: DateTime<Utc>,
    /// When it was last configured.
    pub updated_at: DateTime<Utc>,
    /// Who configured it last.
    pub updated_by: String,
}

const BRIDGE: &str = "select b.bridge_id, b.app_id, b.webhook_id, b.system, b.base_url, b.settings, b.kinds, \
     b.auth_kind, b.username, b.credential, b.hook_secret, b.poll_seconds, w.disabled_at is null as enabled, \
     b.created_at, b.updated_at, b.updated_by \
     from ticket_bridge b join webhook w using (webhook_id)";

/// A bridge to store. Secrets arrive sealed; None keeps the stored one.
#[derive(Debug, Clone)]
pub struct NewBridge {
    /// `jira`, `jira_service_management` or `servicenow`.
    pub system: String,
    /// The site or instance.
    pub base_url: String,
    /// Settings (defaults applied, checked).
    pub settings: Value,
    /// Task kinds mirrored.
    pub kinds: Vec<String>,
    /// `basic` or `bearer`.
    pub auth_kind: String,
    /// Basic auth's user.
    pub username: Option<String>,
    /// The sealed credential; None: keep the stored one.
    pub credential: Option<String>,
    /// The sealed hook secret; None: keep the stored one.
    pub hook_secret: Option<String>,
    /// First poll interval (0: none).
    pub poll_seconds: i32,
    /// Also mirror the open and claimed tasks that exist now.
    pub backfill: bool,
}

/// A task's ticket.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct TicketRow {
    /// The task.
    pub task_id: i64,
    /// Its app.
    #[serde(skip)]
    pub app_id: String,
    /// The bridge it was created through.
    #[serde(skip)]
    pub bridge_id: Uuid,
    /// The tag the ticket system finds it by.
    pub correlation: String,
    /// pending, creating, open or closed.
    pub state: String,
    /// ABC-123, SCTASK0010001.
    pub key: Option<String>,
    /// Jira issue id, ServiceNow sys_id.
    pub remote_id: Option<String>,
    /// Where a person opens it.
    pub url: Option<String>,
    /// Create requests sent.
    pub create_attempts: i32,
    /// When the last one was sent.
    pub create_attempted_at: Option<DateTime<Utc>>,
    /// Its status as last seen.
    pub remote_status: Option<String>,
    /// When that status was first seen.
    pub remote_status_at: Option<DateTime<Utc>>,
    /// When it is polled next.
    pub next_poll_at: Option<DateTime<Utc>>,
    /// The current poll interval.
    pub poll_interval_secs: Option<i32>,
    /// Why the last poll failed.
    pub poll_error: Option<String>,
    /// The ticket reached a closing status but could not close the task: why.
    pub done_pending: Option<String>,
    /// The task was closed by the ticket.
    pub closed_by_ticket: bool,
    /// The closing status the ticket showed when its task was reopened: it no longer
    /// closes the task until the ticket shows another status.
    pub reopened_status: Option<String>,
    /// When the row was made (the task became workable).
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

const TICKET: &str = "select task_id, app_id, bridge_id, correlation, state, key, remote_id, url, create_attempts, \
     create_attempted_at, remote_status, remote_status_at, next_poll_at, poll_interval_secs, poll_error, \
     done_pending, closed_by_ticket, reopened_status, created_at, updated_at from ticket";

/// Writes a `ticket.note` event for the bridge that made the ticket (a comment scimbridge
/// leaves on the ticket), with the caller's transaction. Nothing when the bridge is off.
pub(crate) async fn note(conn: &mut PgConnection, task_id: i64, text: &str) -> Result<()> {
    sqlx::query(
        "with b as (select k.app_id, b.webhook_id from ticket k join ticket_bridge b using (bridge_id) \
                    join webhook w on w.webhook_id = b.webhook_id \
                    where k.task_id = $1 and w.disabled_at is null), \
              e as (insert into event (app_id, kind, task_id, payload) \
                    select app_id, 'ticket.note', $1, jsonb_build_object('task_id', $1, 'text', $2::text) from b \
                    returning event_id) \
         insert into delivery (event_id, webhook_id) select e.event_id, b.webhook_id from e, b",
    )
    .bind(task_id)
    .bind(text)
    .execute(conn)
    .await?;
    Ok(())
}

impl Store {
    /// The app's bridge, live or disabled.
    pub async fn bridge(&self, app_id: &str) -> Result<Option<BridgeRow>> {
        Ok(sqlx::query_as(&format!("{BRIDGE} where b.app_id = $1"))
            .bind(app_id)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// A bridge by id (the inbound webhook's path).
    pub async fn bridge_by_id(&self, bridge_id: Uuid) -> Result<Option<BridgeRow>> {
        Ok(sqlx::query_as(&format!("{BRIDGE} where b.bridge_id = $1"))
            .bind(bridge_id)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// The bridge whose webhook row a delivery belongs to.
    pub async fn bridge_by_webhook(&self, webhook_id: Uuid) -> Result<Option<BridgeRow>> {
        Ok(sqlx::query_as(&format!("{BRIDGE} where b.webhook_id = $1"))
            .bind(webhook_id)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Configures (or reconfigures, or re-enables) the app's bridge: its webhook row in
    /// the outbox and its settings, in one transaction, audited. Changing the system while
    /// tickets of unfinished tasks exist is refused (409 `tickets_open`): they could no
    /// longer be followed. With `backfill`, the app's open and claimed tasks of the
    /// mirrored kinds that have no ticket get one. Returns the bridge and how many tasks
    /// were backfilled.
    ///
    /// (A disabled bridge still has those tickets: switching then would leave them
    /// following the wrong system, so disabling does not lift the refusal.)
    pub async fn put_bridge(&self, actor: &Actor, nb: NewBridge) -> Result<(BridgeRow, u64)> {
        let mut tx = self.pool.begin().await?;
        let old: Option<BridgeRow> =
            sqlx::query_as(&format!("{BRIDGE} where b.app_id = $1 for update of b"))
                .bind(&actor.app_id)
                .fetch_optional(&mut *tx)
                .await?;
        let (bridge_id, webhook_id) = match &old {
            Some(o) => {
                if o.system != nb.system {
                    let open: i64 = sqlx::query_scalar(concat!(
                        "select count(*) from ticket k join task t using (task_id) ",
                        "where k.bridge_id = $1 and t.state in ",
                        unfinished_states!()
                    ))
                    .bind(o.bridge_id)
                    .fetch_one(&mut *tx)
                    .await?;
                    if open > 0 {
                        return Err(Error::TaskConflict {
                            code: "tickets_open",
                            message: format!(
                                "{open} unfinished tasks have {} tickets this bridge follows; \
                                 finish them (or let their tickets close them) before switching \
                                 to {}",
                                o.system, nb.system
                            ),
                        });
                    }
                }
                sqlx::query(
                    "update webhook set url = $2, name = $3, disabled_at = null where webhook_id = $1",
                )
                .bind(o.webhook_id)
                .bind(&nb.base_url)
                .bind(format!("ticket bridge ({})", nb.system))
                .execute(&mut *tx)
                .await?;
                (o.bridge_id, o.webhook_id)
            }
            None => {
                let (bridge_id, webhook_id) = (Uuid::new_v4(), Uuid::new_v4());
                sqlx::query(
                    "insert into webhook (webhook_id, app_id, name, url, format, channel) \
                     values ($1, $2, $3, $4, 'ticket', 'ticket')",
                )
                .bind(webhook_id)
                .bind(&actor.app_id)
                .bind(format!("ticket bridge ({})", nb.system))
                .bind(&nb.base_url)
                .execute(&mut *tx)
                .await?;
                (bridge_id, webhook_id)
            }
        };
        let (Some(credential), Some(hook_secret)) = (
            nb.credential
                .clone()
                .or(old.as_ref().map(|o| o.credential.clone())),
            nb.hook_secret
                .clone()
                .or(old.as_ref().map(|o| o.hook_secret.clone())),
        ) else {
            return Err(Error::Invalid {
                code: "missing_credentials",
                message: "a new bridge needs its credentials (auth.secret)".into(),
            });
        };
        sqlx::query(
            "insert into ticket_bridge (bridge_id, app_id, webhook_id, system, base_url, settings, kinds, \
             auth_kind, username, credential, hook_secret, poll_seconds, updated_by) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
             on conflict (bridge_id) do update set system = excluded.system, base_url = excluded.base_url, \
             settings = excluded.settings, kinds = excluded.kinds, auth_kind = excluded.auth_kind, \
             username = excluded.username, credential = excluded.credential, \
             hook_secret = excluded.hook_secret, poll_seconds = excluded.poll_seconds, \
             updated_by = excluded.updated_by, updated_at = now()",
        )
        .bind(bridge_id)
        .bind(&actor.app_id)
        .bind(webhook_id)
        .bind(&nb.system)
        .bind(&nb.base_url)
        .bind(&nb.settings)
        .bind(&nb.kinds)
        .bind(&nb.auth_kind)
        .bind(&nb.username)
        .bind(&credential)
        .bind(&hook_secret)
        .bind(nb.poll_seconds)
        .bind(&actor.name)
        .execute(&mut *tx)
        .await?;
        let backfilled = if nb.backfill {
            sqlx::query(concat!(
                "with t as (insert into ticket (task_id, app_id, bridge_id, correlation) ",
                "select t.task_id, t.app_id, $2, 'scimbridge-' || t.app_id || '-' || t.task_id from task t ",
                "where t.app_id = $1 and t.state in ",
                queued_states!(),
                " and t.kind::text = any($3) ",
                "and not exists (select 1 from ticket k where k.task_id = t.task_id) ",
                // A transition of one of these tasks may commit its ticket meanwhile.
                "on conflict do nothing returning task_id), ",
                "e as (insert into event (app_id, kind, task_id, payload) ",
                "select $1, 'ticket.create', t.task_id, jsonb_build_object('task_id', t.task_id, 'backfill', true) ",
                "from t returning event_id) ",
                "insert into delivery (event_id, webhook_id) select e.event_id, $4 from e"
            ))
            .bind(&actor.app_id)
            .bind(bridge_id)
            .bind(&nb.kinds)
            .bind(webhook_id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
        } else {
            0
        };
        let detail = json!({
            "system": nb.system, "base_url": nb.base_url, "settings": nb.settings, "kinds": nb.kinds,
            "auth_kind": nb.auth_kind, "username": nb.username, "poll_seconds": nb.poll_seconds,
            "credential_changed": nb.credential.is_some(), "hook_secret_changed": nb.hook_secret.is_some(),
            "backfilled": backfilled,
        });
        audit::write(
            &mut tx,
            actor,
            Entry {
                action: "ticket_bridge.configure",
                subject_type: "app",
                subject_id: actor.app_id.clone(),
                task_id: None,
                outcome: if old.is_some() { "updated" } else { "created" },
                detail,
            },
        )
        .await?;
        let row: BridgeRow = sqlx::query_as(&format!("{BRIDGE} where b.bridge_id = $1"))
            .bind(bridge_id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok((row, backfilled))
    }

    /// Disables the app's bridge (audited): no new tickets, no polls, inbound webhooks
    /// refused; tickets and their links stay. False when none is live.
    pub async fn disable_bridge(&self, actor: &Actor) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "update webhook w set disabled_at = now() from ticket_bridge b \
             where b.webhook_id = w.webhook_id and b.app_id = $1 and w.disabled_at is null",
        )
        .bind(&actor.app_id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        audit::write(
            &mut tx,
            actor,
            Entry {
                action: "ticket_bridge.disable",
                subject_type: "app",
                subject_id: actor.app_id.clone(),
                task_id: None,
                outcome: "disabled",
                detail: json!({}),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// A task's ticket.
    pub async fn ticket(&self, task_id: i64) -> Result<Option<TicketRow>> {
        Ok(sqlx::query_as(&format!("{TICKET} where task_id = $1"))
            .bind(task_id)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// The ticket of a bridge with this key or remote id (the remote id wins: a Jira
    /// issue moved to another project changes its key, not its id).
    pub async fn ticket_by_remote(
        &self,
        bridge_id: Uuid,
        key: Option<&str>,
        remote_id: Option<&str>,
    ) -> Result<Option<TicketRow>> {
        Ok(sqlx::query_as(&format!(
            "{TICKET} where bridge_id = $1 \
             and (($3::text is not null and remote_id = $3) or ($2::text is not null and key = $2)) \
             order by (remote_id is not distinct from $3) desc limit 1"
        ))
        .bind(bridge_id)
        .bind(key)
        .bind(remote_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Records that a create request is about to be sent (committed before sending, so
    /// a crash or a lost answer leaves `creating`: the next try looks before it creates).
    pub async fn ticket_create_attempt(&self, task_id: i64) -> Result<TicketRow> {
        Ok(sqlx::query_as(
            "update ticket set state = 'creating', create_attempts = create_attempts + 1, \
             create_attempted_at = now(), updated_at = now() where task_id = $1 \
             returning task_id, app_id, bridge_id, correlation, state, key, remote_id, url, create_attempts, \
             create_attempted_at, remote_status, remote_status_at, next_poll_at, poll_interval_secs, poll_error, \
             done_pending, closed_by_ticket, reopened_status, created_at, updated_at",
        )
        .bind(task_id)
        .fetch_one(&self.pool)
        .await?)
    }

    /// A create request the system certainly refused (or never got): nothing to look for
    /// on the next try.
    pub async fn ticket_create_refused(&self, task_id: i64) -> Result<()> {
        sqlx::query(
            "update ticket set state = 'pending', updated_at = now() where task_id = $1 and state = 'creating'",
        )
        .bind(task_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Links the task to its created (or found) ticket, audited in the task's history;
    /// the first poll is due `poll_in` seconds from now (None: no polling).
    pub async fn ticket_linked(
        &self,
        task_id: i64,
        system_label: &str,
        remote: &crate::tickets::Remote,
        found: bool,
        poll_in: Option<i32>,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let row: Option<(String, Uuid)> = sqlx::query_as(
            "update ticket k set state = 'open', key = $2, remote_id = $3, url = $4, \
             remote_status = $5, remote_status_at = case when $5::text is null then null else now() end, \
             poll_interval_secs = $6, next_poll_at = now() + make_interval(secs => $6), updated_at = now() \
             from task t where t.task_id = k.task_id and k.task_id = $1 returning k.app_id, t.user_id",
        )
        .bind(task_id)
        .bind(&remote.key)
        .bind(&remote.remote_id)
        .bind(&remote.url)
        .bind(&remote.status)
        .bind(poll_in)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((app_id, user_id)) = row {
            let system = Actor::system(&app_id);
            let detail = json!({
                "note": format!("{system_label} ticket {} {}", remote.key,
                                if found { "found (its create answer had been lost)" } else { "created" }),
                "ticket": remote.key, "url": remote.url,
            });
            audit::write(
                &mut tx,
                &system,
                Entry {
                    action: "task.ticket",
                    subject_type: "user",
                    subject_id: user_id.to_string(),
                    task_id: Some(task_id),
                    outcome: if found { "found" } else { "created" },
                    detail,
                },
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Marks a ticket closed (its task finished and the ticket was told).
    pub async fn ticket_closed(&self, task_id: i64) -> Result<()> {
        sqlx::query("update ticket set state = 'closed', next_poll_at = null, updated_at = now() where task_id = $1")
            .bind(task_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Follows a ticket again after its task was reopened: open, polled from now, not
    /// closed by the ticket; `stale` is the closing status it shows now (which then no
    /// longer closes the task until the ticket shows another).
    pub async fn ticket_reopened(
        &self,
        task_id: i64,
        stale: Option<&str>,
        poll_in: Option<i32>,
    ) -> Result<()> {
        sqlx::query(
            "update ticket set state = 'open', closed_by_ticket = false, done_pending = null, reopened_status = $2, \
             poll_interval_secs = $3, next_poll_at = now() + make_interval(secs => $3), updated_at = now() \
             where task_id = $1",
        )
        .bind(task_id)
        .bind(stale)
        .bind(poll_in)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The ticket showed a status other than the one it had when its task was reopened:
    /// closing statuses close the task again.
    pub async fn ticket_moved_on(&self, task_id: i64) -> Result<()> {
        sqlx::query("update ticket set reopened_status = null where task_id = $1")
            .bind(task_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Takes up to `limit` tickets whose poll is due (open tickets of unfinished tasks
    /// of live bridges that poll), pushing their next poll ten minutes out so another
    /// replica skips them while this one asks (SKIP LOCKED); [`Store::ticket_observed`]
    /// then sets the real next poll.
    pub async fn due_polls(&self, limit: i64) -> Result<Vec<TicketRow>> {
        Ok(sqlx::query_as(concat!(
            "update ticket k set next_poll_at = now() + interval '10 minutes' ",
            "where k.task_id in (select k2.task_id from ticket k2 join task t using (task_id) ",
            "join ticket_bridge b on b.bridge_id = k2.bridge_id join webhook w on w.webhook_id = b.webhook_id ",
            "where k2.state = 'open' and k2.next_poll_at <= now() and w.disabled_at is null ",
            "and b.poll_seconds > 0 and t.state in ",
            unfinished_states!(),
            " order by k2.next_poll_at limit $1 for update of k2 skip locked) ",
            "returning k.task_id, k.app_id, k.bridge_id, k.correlation, k.state, k.key, k.remote_id, k.url, ",
            "k.create_attempts, k.create_attempted_at, k.remote_status, k.remote_status_at, k.next_poll_at, ",
            "k.poll_interval_secs, k.poll_error, k.done_pending, k.closed_by_ticket, k.reopened_status, ",
            "k.created_at, k.updated_at"
        ))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Records what a poll or a webhook saw: the status (a change restarts its clock) or
    /// the poll's error, and when to poll next (None: keep the schedule).
    pub async fn ticket_observed(
        &self,
        task_id: i64,
        status: Option<&str>,
        error: Option<&str>,
        next_poll_in: Option<i32>,
    ) -> Result<()> {
        sqlx::query(
            "update ticket set \
               remote_status_at = case when $2::text is not null and remote_status is distinct from $2 then now() else remote_status_at end, \
               remote_status = coalesce($2, remote_status), poll_error = $3, \
               poll_interval_secs = coalesce($4, poll_interval_secs), \
               next_poll_at = case when $4::int is null then next_poll_at else now() + make_interval(secs => $4) end, \
               updated_at = now() where task_id = $1",
        )
        .bind(task_id)
        .bind(status)
        .bind(error)
        .bind(next_poll_in)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The app's tickets, newest task first, after the cursor (a task id); true when
    /// more follow.
    pub async fn tickets(
        &self,
        app_id: &str,
        state: Option<&str>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<(Vec<TicketRow>, bool)> {
        let rows: Vec<TicketRow> = sqlx::query_as(&format!(
            "{TICKET} where app_id = $1 and ($2::text is null or state = $2) \
             and ($3::bigint is null or task_id < $3) order by task_id desc limit $4"
        ))
        .bind(app_id)
        .bind(state)
        .bind(before)
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await?;
        let more = rows.len() as i64 > limit;
        Ok((rows.into_iter().take(limit as usize).collect(), more))
    }
}
