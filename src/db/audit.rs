//! The audit trail: who did what to which subject, in the transaction of the change.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, Row};

use super::Store;
use crate::auth::Actor;
use crate::error::Result;

/// One audit record to write.
#[derive(Debug)]
pub struct Entry<'a> {
    /// Dotted action (`user.create`, `task.complete`, ...).
    pub action: &'a str,
    /// `user`, `group` or `task`.
    pub subject_type: &'a str,
    /// The subject's id.
    pub subject_id: String,
    /// The task concerned, if any.
    pub task_id: Option<i64>,
    /// What came of it (`created`, `unchanged`, `done`, ...).
    pub outcome: &'a str,
    /// Anything else worth keeping (changed fields, reasons).
    pub detail: Value,
}

/// One audit record as read back.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Record {
    /// Sequence number.
    pub id: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// Who (token name).
    pub actor: String,
    /// Their role.
    pub actor_role: String,
    /// What.
    pub action: String,
    /// Outcome.
    pub outcome: String,
    /// Request id of the call.
    pub request_id: Option<String>,
    /// The task concerned, if any.
    pub task_id: Option<i64>,
    /// Details.
    pub detail: Value,
}

fn record(r: &sqlx::postgres::PgRow) -> Record {
    Record {
        id: r.get("audit_id"),
        at: r.get("at"),
        actor: r.get("actor"),
        actor_role: r.get("actor_role"),
        action: r.get("action"),
        outcome: r.get("outcome"),
        request_id: r.get("request_id"),
        task_id: r.get("task_id"),
        detail: r.get("detail"),
    }
}

/// Writes one record with the caller's transaction.
pub async fn write(conn: &mut PgConnection, actor: &Actor, e: Entry<'_>) -> Result<()> {
    sqlx::query(
        "insert into audit (app_id, actor, actor_role, action, subject_type, subject_id, \
         task_id, request_id, outcome, detail) values ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)",
    )
    .bind(&actor.app_id)
    .bind(&actor.name)
    .bind(actor.role.as_str())
    .bind(e.action)
    .bind(e.subject_type)
    .bind(&e.subject_id)
    .bind(e.task_id)
    .bind(&actor.request_id)
    .bind(e.outcome)
    .bind(e.detail)
    .execute(conn)
    .await?;
    Ok(())
}

impl Store {
    /// The history of one task, oldest first.
    pub async fn task_history(&self, task_id: i64) -> Result<Vec<Record>> {
        let rows = sqlx::query(
            "select audit_id, at, actor, actor_role, action, outcome, request_id, detail, task_id \
             from audit where task_id = $1 order by audit_id",
        )
        .bind(task_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(record).collect())
    }
}

impl Store {
    /// Everything that happened to one subject of the app (its SCIM writes and all its
    /// tasks' events), oldest first: the auditor's trail.
    pub async fn subject_history(&self, app_id: &str, subject_id: &str) -> Result<Vec<Record>> {
        let rows = sqlx::query(
            "select audit_id, at, actor, actor_role, action, outcome, request_id, detail, task_id \
             from audit where app_id = $1 and subject_id = $2 order by audit_id",
        )
        .bind(app_id)
        .bind(subject_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(record).collect())
    }
}

/// The result of recomputing an app's audit chain.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Verification {
    /// The app verified.
    pub app: String,
    /// Records checked.
    pub records: i64,
    /// True when every record's hashes match its content and its predecessor.
    pub ok: bool,
    /// The first record that does not match, with why.
    pub first_broken: Option<Broken>,
}

/// A record whose hash does not match.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Broken {
    /// Its id.
    pub audit_id: i64,
    /// Its position in the app's chain.
    pub chain_seq: i64,
    /// What does not match.
    pub reason: String,
}

impl Store {
    /// Recomputes the app's audit chain in chain order (each record's hash over its
    /// predecessor's hash and its own content) and names the first record that does not
    /// match: an edited, deleted or inserted row shows up there.
    pub async fn verify_audit(&self, app_id: &str) -> Result<Verification> {
        use futures_util::TryStreamExt as _;
        use sha2::{Digest, Sha256};
        let mut rows = sqlx::query_as::<_, (i64, i64, Vec<u8>, Vec<u8>, Vec<u8>)>(
            "select a.audit_id, a.chain_seq, a.prev_hash, a.hash, audit_payload(a) from audit a \
             where a.app_id = $1 order by a.chain_seq",
        )
        .bind(app_id)
        .fetch(&self.pool);
        let mut expected_prev: Vec<u8> = Vec::new();
        let mut records = 0i64;
        let mut first_broken = None;
        while let Some((audit_id, chain_seq, prev, hash, payload)) = rows.try_next().await? {
            records += 1;
            if first_broken.is_some() {
                continue;
            }
            let reason = if chain_seq != records {
                Some(format!(
                    "chain position {chain_seq} where {records} was expected (a record is missing)"
                ))
            } else if prev != expected_prev {
                Some("its predecessor hash does not match the previous record".to_string())
            } else {
                let mut h = Sha256::new();
                h.update(&prev);
                h.update(&payload);
                (h.finalize().as_slice() != hash.as_slice()).then(|| {
                    "its content does not match its hash (edited after it was written)".to_string()
                })
            };
            if let Some(reason) = reason {
                first_broken = Some(Broken {
                    audit_id,
                    chain_seq,
                    reason,
                });
            }
            expected_prev = hash;
        }
        Ok(Verification {
            app: app_id.to_owned(),
            records,
            ok: first_broken.is_none(),
            first_broken,
        })
    }
}
