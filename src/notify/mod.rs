//! Notification delivery: sends outbox events to webhooks — generic JSON signed with
//! HMAC-SHA256, or Slack incoming-webhook messages — retrying with backoff.
//!
//! Delivery is at-least-once: a delivery's row lock is held while it is sent and its
//! outcome is recorded in the same transaction, so replicas never send the same delivery
//! and nothing is lost across restarts. The one edge: a process that dies after the
//! receiver got the request but before the commit sends it again after restart; receivers
//! deduplicate by `X-Scimbridge-Delivery`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::db::outbox::Due;
use crate::db::Store;

/// How deliveries are retried.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Attempts before a delivery is marked failed (and listed by the API).
    pub max_attempts: i32,
    /// First retry delay; doubles with every attempt, at most an hour.
    pub backoff: Duration,
    /// Timeout of one HTTP request.
    pub timeout: Duration,
}

/// The signature header value of a JSON delivery: `v1=` + hex HMAC-SHA256 of
/// `"{timestamp}.{body}"` under the webhook's secret.
pub fn signature(secret: &str, timestamp: u64, body: &str) -> String {
    // HMAC takes keys of any length; new_from_slice cannot fail for Hmac<Sha256>.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// The JSON body of a generic webhook delivery.
pub fn json_body(d: &Due) -> Value {
    json!({
        "id": d.event_id,
        "type": d.kind,
        "app": d.app_id,
        "created_at": crate::db::rfc3339(d.created_at),
        "data": d.payload,
    })
}

/// A Slack incoming-webhook message for an event.
pub fn slack_body(d: &Due) -> Value {
    let p = &d.payload;
    let title = p["title"].as_str().unwrap_or("a task");
    let task = p["task_id"]
        .as_i64()
        .map(|id| format!(" (task #{id})"))
        .unwrap_or_default();
    let due = p["due_at"]
        .as_str()
        .map(|t| format!(", due {t}"))
        .unwrap_or_default();
    // SLA events name whoever holds the task at the sweep (after a reassignment, the new
    // holder), so a reminder reaches a person rather than the room.
    let held = p["held_by"]
        .as_str()
        .map(|h| format!(", held by {h}"))
        .unwrap_or_default();
    let text = match d.kind.as_str() {
        "task.created" => format!("New task: {title}{task}{due}"),
        "task.due_soon" => format!(":hourglass: Due soon: {title}{task}{due}{held}"),
        "task.overdue" => format!(":warning: Overdue: {title}{task}{due}{held}"),
        "task.reminder" => format!(":warning: Still overdue: {title}{task}{due}{held}"),
        "task.escalated" => {
            format!(":rotating_light: Overdue leaver task, escalated: {title}{task}{due}{held}")
        }
        "task.reassigned" => match p["to"].as_str() {
            Some(to) => format!(
                ":arrows_counterclockwise: Reassigned to {to} by {}: {title}{task}{due}",
                p["by"].as_str().unwrap_or("an admin")
            ),
            None => format!(
                ":arrows_counterclockwise: Back in the queue ({} by {}): {title}{task}{due}",
                p["from"]
                    .as_str()
                    .map(|f| format!("taken from {f}"))
                    .unwrap_or_else(|| "returned".into()),
                p["by"].as_str().unwrap_or("an admin")
            ),
        },
        "task.completed" => format!(":white_check_mark: Done: {title}{task}"),
        "task.failed" => format!(":x: Failed: {title}{task}"),
        "batch.held" => format!(
            ":octagonal_sign: {} changes held for review (batch #{}): {}",
            p["count"],
            p["batch_id"],
            p["reason"].as_str().unwrap_or("")
        ),
        other => format!("{other}: {title}{task}"),
    };
    json!({"text": format!("[{}] {text}", d.app_id)})
}

async fn send(client: &reqwest::Client, d: Due) -> Result<(), String> {
    let (body, signed) = match d.format.as_str() {
        "slack" => (slack_body(&d).to_string(), false),
        _ => (json_body(&d).to_string(), true),
    };
    let mut req = client
        .post(&d.url)
        .header("content-type", "application/json")
        .header("x-scimbridge-event", &d.kind)
        .header(
            "x-scimbridge-delivery",
            format!("{}-{}", d.event_id, d.webhook_id),
        );
    if signed {
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|t| t.as_secs())
            .unwrap_or(0);
        req = req.header("x-scimbridge-timestamp", ts.to_string());
        if let Some(secret) = &d.secret {
            req = req.header("x-scimbridge-signature", signature(secret, ts, &body));
        }
    }
    match req.body(body).send().await {
        Ok(res) if res.status().is_success() => Ok(()),
        Ok(res) => Err(format!("the webhook answered {}", res.status())),
        Err(e) => Err(format!("could not reach the webhook: {e}")),
    }
}

/// Starts `workers` delivery loops. Each claims one due delivery at a time and sleeps a
/// second when nothing is due.
pub fn spawn_deliverers(
    store: Store,
    policy: Policy,
    workers: usize,
    tickets: std::sync::Arc<crate::tickets::sync::Syncer>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let client = match reqwest::Client::builder().timeout(policy.timeout).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the webhook HTTP client; notifications stay in the outbox");
            return;
        }
    };
    for _ in 0..workers {
        let (store, client, tickets, mut stop) =
            (store.clone(), client.clone(), tickets.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                if *stop.borrow() {
                    return;
                }
                // Stopping abandons a send in progress: its transaction rolls back and the
                // delivery stays pending for the next process (at-least-once; on the
                // embedded store, once its in-flight lease has passed).
                let deliver = store.deliver_next(policy.max_attempts, policy.backoff, |d| {
                    let (client, tickets) = (client.clone(), tickets.clone());
                    async move {
                        let (event, kind) = (d.event_id, d.kind.clone());
                        // A ticket bridge's deliveries are calls to its ticket system.
                        let r = match d.format.as_str() {
                            "ticket" => tickets.deliver(&d).await,
                            _ => send(&client, d).await,
                        };
                        match &r {
                            Ok(()) => tracing::info!(event, kind, "webhook delivered"),
                            Err(e) => {
                                tracing::warn!(event, kind, error = %e, "webhook delivery failed")
                            }
                        }
                        r
                    }
                });
                let sent = tokio::select! {
                    _ = stop.changed() => return,
                    sent = deliver => sent,
                };
                let nap = match sent {
                    Ok(true) => continue,
                    Ok(false) => Duration::from_secs(1),
                    Err(e) => {
                        tracing::warn!(error = %e, "outbox unavailable");
                        Duration::from_secs(5)
                    }
                };
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = tokio::time::sleep(nap) => {}
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        // RFC 4231 test case 2 shape: key "Jefe"; our message is "1.{}".
        let sig = signature("Jefe", 1, "{}");
        assert!(sig.starts_with("v1=") && sig.len() == 3 + 64);
        assert_eq!(sig, signature("Jefe", 1, "{}"));
        assert_ne!(sig, signature("Jefe", 2, "{}"));
        assert_ne!(sig, signature("other", 1, "{}"));
    }
}
