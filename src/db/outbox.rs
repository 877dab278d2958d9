//! The notification outbox: events written in the transaction of their cause, one
//! delivery per subscribed webhook, and the claim-send-record cycle of deliverers.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use super::Store;
use crate::error::Result;

/// Channel of events that concern everyone watching the queue.
pub const PRIMARY: &str = "primary";
/// Channel of escalations (overdue leaver tasks): a second place to be told.
pub const ESCALATION: &str = "escalation";

/// Writes an event and its deliveries with the caller's transaction (one round trip).
pub async fn emit(
    conn: &mut PgConnection,
    app_id: &str,
    kind: &str,
    task_id: Option<i64>,
    payload: Value,
    channel: &str,
) -> Result<()> {
    sqlx::query(
        "with e as (insert into event (app_id, kind, task_id, payload) values ($1, $2, $3, $4) returning event_id) \
         insert into delivery (event_id, webhook_id) \
         select e.event_id, w.webhook_id from e, webhook w \
          where w.app_id = $1 and w.disabled_at is null and w.channel = $5 \
            and (w.events is null or $2 = any(w.events))",
    )
    .bind(app_id)
    .bind(kind)
    .bind(task_id)
    .bind(payload)
    .bind(channel)
    .execute(conn)
    .await?;
    Ok(())
}

/// A configured webhook (its secret never leaves the store through this type).
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct Webhook {
    /// Id.
    pub webhook_id: Uuid,
    /// App it belongs to.
    pub app_id: String,
    /// Name people know it by.
    pub name: String,
    /// Where events are POSTed.
    pub url: String,
    /// `json` (signed) or `slack` (incoming-webhook text).
    pub format: String,
    /// Event kinds wanted (None: all of its channel).
    pub events: Option<Vec<String>>,
    /// `primary` or `escalation`.
    pub channel: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// A webhook to add.
#[derive(Debug, Clone, Copy)]
pub struct NewWebhook<'a> {
    /// App it belongs to.
    pub app_id: &'a str,
    /// Name people know it by.
    pub name: &'a str,
    /// Where events are POSTed (http or https).
    pub url: &'a str,
    /// `json` (signed) or `slack`.
    pub format: &'a str,
    /// HMAC key of a `json` webhook.
    pub secret: Option<&'a str>,
    /// Event kinds wanted (None: all of its channel).
    pub events: Option<&'a [String]>,
    /// `primary` or `escalation`.
    pub channel: &'a str,
}

/// A delivery due now, with what sending it needs.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Due {
    /// The event.
    pub event_id: i64,
    /// The webhook.
    pub webhook_id: Uuid,
    /// Target URL.
    pub url: String,
    /// `json` or `slack`.
    pub format: String,
    /// HMAC key for `json`.
    pub secret: Option<String>,
    /// Event kind.
    pub kind: String,
    /// App of the event.
    pub app_id: String,
    /// Event data.
    pub payload: Value,
    /// When the event happened.
    pub created_at: DateTime<Utc>,
    /// Attempts so far.
    pub attempts: i32,
}

/// A delivery as the API lists it.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct DeliveryView {
    /// Event id.
    pub event_id: i64,
    /// Event kind.
    pub kind: String,
    /// Webhook name.
    #[sqlx(rename = "name")]
    pub webhook: String,
    /// pending, delivered or failed.
    pub state: String,
    /// Attempts so far.
    pub attempts: i32,
    /// Last error, if any.
    pub last_error: Option<String>,
    /// When the next attempt is due (pending).
    pub next_attempt_at: DateTime<Utc>,
    /// When it was delivered.
    pub delivered_at: Option<DateTime<Utc>>,
    /// Event data.
    pub payload: Value,
}

impl Store {
    /// Adds a webhook; returns its id.
    pub async fn add_webhook(&self, w: &NewWebhook<'_>) -> Result<Uuid> {
        let id = Uuid::new_v4();
        sqlx::query(
            "insert into webhook (webhook_id, app_id, name, url, format, secret, events, channel) \
             values ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(id)
        .bind(w.app_id)
        .bind(w.name)
        .bind(w.url)
        .bind(w.format)
        .bind(w.secret)
        .bind(w.events)
        .bind(w.channel)
        .execute(&self.pool)
        .await?;
        Ok(id)
    }

    /// Live webhooks, optionally of one app.
    pub async fn webhooks(&self, app_id: Option<&str>) -> Result<Vec<Webhook>> {
        Ok(sqlx::query_as(
            "select webhook_id, app_id, name, url, format, events, channel, created_at from webhook \
             where disabled_at is null and ($1::text is null or app_id = $1) order by app_id, created_at",
        )
        .bind(app_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Disables a webhook (its history stays); false when none is live with this id.
    pub async fn disable_webhook(&self, id: Uuid) -> Result<bool> {
        let done = sqlx::query(
            "update webhook set disabled_at = now() where webhook_id = $1 and disabled_at is null",
        )
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Claims one due delivery (SKIP LOCKED, so replicas never send the same one), runs
    /// `send` while holding its lock, and records the outcome: delivered, or retried
    /// after `backoff × 2^(attempts-1)` (at most an hour), or failed after
    /// `max_attempts`. False when nothing was due.
    ///
    /// A store of one connection (the embedded store) cannot hold it for the length of a
    /// send: every request would wait for the webhook's answer, and a ticket bridge's
    /// send, which itself uses the store, would wait for ever. There the claim is a lease
    /// instead (see [`IN_FLIGHT_LEASE`]), and no connection is held while sending.
    pub async fn deliver_next<F, Fut>(
        &self,
        max_attempts: i32,
        backoff: Duration,
        send: F,
    ) -> Result<bool>
    where
        F: FnOnce(Due) -> Fut,
        Fut: Future<Output = std::result::Result<(), String>>,
    {
        let mut tx = self.pool.begin().await?;
        let due: Option<Due> = sqlx::query_as(DUE).fetch_optional(&mut *tx).await?;
        let Some(due) = due else { return Ok(false) };
        let (event_id, webhook_id, attempts) = (due.event_id, due.webhook_id, due.attempts + 1);
        if !self.one_connection() {
            let outcome = send(due).await;
            record_outcome(
                &mut tx,
                event_id,
                webhook_id,
                attempts,
                max_attempts,
                backoff,
                outcome,
            )
            .await?;
            tx.commit().await?;
            return Ok(true);
        }
        sqlx::query(
            "update delivery set next_attempt_at = now() + make_interval(secs => $3) \
             where event_id = $1 and webhook_id = $2",
        )
        .bind(event_id)
        .bind(webhook_id)
        .bind(IN_FLIGHT_LEASE.as_secs_f64())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        let outcome = send(due).await;
        let mut conn = self.pool.acquire().await?;
        record_outcome(
            &mut conn,
            event_id,
            webhook_id,
            attempts,
            max_attempts,
            backoff,
            outcome,
        )
        .await?;
        Ok(true)
    }

    /// The app's deliveries in a state (pending, delivered, failed), newest first.
    pub async fn deliveries(
        &self,
        app_id: &str,
        state: Option<&str>,
        limit: i64,
    ) -> Result<Vec<DeliveryView>> {
        Ok(sqlx::query_as(
            "select d.event_id, e.kind, w.name, d.state, d.attempts, d.last_error, d.next_attempt_at, d.delivered_at, e.payload \
               from delivery d join event e using (event_id) join webhook w using (webhook_id) \
              where e.app_id = $1 and ($2::text is null or d.state = $2) order by d.event_id desc limit $3",
        )
        .bind(app_id)
        .bind(state)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Puts the app's failed deliveries back in the queue; returns how many.
    pub async fn retry_failed_deliveries(&self, app_id: &str) -> Result<u64> {
        let done = sqlx::query(
            "update delivery d set state = 'pending', attempts = 0, next_attempt_at = now() from event e \
             where e.event_id = d.event_id and e.app_id = $1 and d.state = 'failed'",
        )
        .bind(app_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}

/// The next due delivery, locked (SKIP LOCKED: replicas never take the same one).
const DUE: &str = "select d.event_id, d.webhook_id, d.attempts, w.url, w.format, w.secret, e.kind, e.app_id, e.payload, e.created_at \
       from delivery d join webhook w using (webhook_id) join event e using (event_id) \
      where d.state = 'pending' and d.next_attempt_at <= now() \
      order by d.next_attempt_at, d.event_id limit 1 for update of d skip locked";

/// How long a delivery being sent without a held lock (one-connection stores) is out of
/// the queue: far longer than a send takes (webhook and ticket timeouts are seconds), so
/// no other worker takes it meanwhile. A send cut off by a crash or a stop is retried
/// once it has passed, like a failed attempt that was not counted.
pub const IN_FLIGHT_LEASE: Duration = Duration::from_secs(600);

/// Records a send's outcome: delivered, or retried after `backoff × 2^(attempts-1)` (at
/// most an hour), or failed after `max_attempts`.
async fn record_outcome(
    conn: &mut PgConnection,
    event_id: i64,
    webhook_id: Uuid,
    attempts: i32,
    max_attempts: i32,
    backoff: Duration,
    outcome: std::result::Result<(), String>,
) -> Result<()> {
    let backoff_secs = (backoff.as_secs_f64() * 2f64.powi(attempts - 1)).min(3600.0);
    match outcome {
        Ok(()) => {
            sqlx::query(
                "update delivery set state = 'delivered', attempts = $3, delivered_at = now(), last_error = null \
                 where event_id = $1 and webhook_id = $2",
            )
            .bind(event_id)
            .bind(webhook_id)
            .bind(attempts)
            .execute(conn)
            .await?;
        }
        Err(error) => {
            sqlx::query(
                "update delivery set attempts = $3, last_error = $4, \
                 state = case when $3 >= $5 then 'failed' else 'pending' end, \
                 next_attempt_at = now() + make_interval(secs => $6) where event_id = $1 and webhook_id = $2",
            )
            .bind(event_id)
            .bind(webhook_id)
            .bind(attempts)
            .bind(error)
            .bind(max_attempts)
            .bind(backoff_secs)
            .execute(conn)
            .await?;
        }
    }
    Ok(())
}
