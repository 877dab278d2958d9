//! The audit trail: who did what to which subject, in the transaction of the change.
//! Records are written unsealed and linked into their app's hash chain shortly after
//! commit by the sealer ([`Store::seal_audit`], issue #13), so writes share no lock.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgConnection;

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
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct Record {
    /// Sequence number.
    #[sqlx(rename = "audit_id")]
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

/// Writes records with the caller's transaction in one statement (a create's task record
/// and its user record: one round trip instead of one per record), in the given order.
pub async fn write_all(
    conn: &mut PgConnection,
    actor: &Actor,
    entries: Vec<Entry<'_>>,
) -> Result<()> {
    match entries.len() {
        0 => return Ok(()),
        1 => {
            if let Some(e) = entries.into_iter().next() {
                write(conn, actor, e).await?;
            }
            return Ok(());
        }
        _ => {}
    }
    let mut action = Vec::with_capacity(entries.len());
    let mut subject_type = Vec::with_capacity(entries.len());
    let mut subject_id = Vec::with_capacity(entries.len());
    let mut task_id = Vec::with_capacity(entries.len());
    let mut outcome = Vec::with_capacity(entries.len());
    let mut detail = Vec::with_capacity(entries.len());
    for e in entries {
        action.push(e.action);
        subject_type.push(e.subject_type);
        subject_id.push(e.subject_id);
        task_id.push(e.task_id);
        outcome.push(e.outcome);
        detail.push(e.detail);
    }
    // Ordered by position, so the records' ids (and their chain order) follow `entries`.
    sqlx::query(
        "insert into audit (app_id, actor, actor_role, action, subject_type, subject_id, \
         task_id, request_id, outcome, detail) \
         select $1, $2, $3, x.action, x.subject_type, x.subject_id, x.task_id, $4, x.outcome, x.detail \
           from unnest($5::text[], $6::text[], $7::text[], $8::bigint[], $9::text[], $10::jsonb[]) \
                with ordinality as x(action, subject_type, subject_id, task_id, outcome, detail, n) \
          order by x.n",
    )
    .bind(&actor.app_id)
    .bind(&actor.name)
    .bind(actor.role.as_str())
    .bind(&actor.request_id)
    .bind(&action)
    .bind(&subject_type)
    .bind(&subject_id)
    .bind(&task_id)
    .bind(&outcome)
    .bind(&detail)
    .execute(conn)
    .await?;
    Ok(())
}

impl Store {
    /// The history of one task, oldest first.
    pub async fn task_history(&self, task_id: i64) -> Result<Vec<Record>> {
        Ok(sqlx::query_as(
            "select audit_id, at, actor, actor_role, action, outcome, request_id, detail, task_id \
             from audit where task_id = $1 order by audit_id",
        )
        .bind(task_id)
        .fetch_all(&self.pool)
        .await?)
    }
}

impl Store {
    /// Everything that happened to one subject of the app (its SCIM writes and all its
    /// tasks' events), oldest first: the auditor's trail.
    pub async fn subject_history(&self, app_id: &str, subject_id: &str) -> Result<Vec<Record>> {
        Ok(sqlx::query_as(
            "select audit_id, at, actor, actor_role, action, outcome, request_id, detail, task_id \
             from audit where app_id = $1 and subject_id = $2 order by audit_id",
        )
        .bind(app_id)
        .bind(subject_id)
        .fetch_all(&self.pool)
        .await?)
    }
}

/// The result of recomputing an app's audit chain.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Verification {
    /// The app verified.
    pub app: String,
    /// Sealed records checked.
    pub records: i64,
    /// Records committed but not yet linked into the chain (another replica was sealing
    /// at that moment); they are checked once sealed.
    pub unsealed: i64,
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

/// One sealed record as the verification reads it.
#[derive(sqlx::FromRow)]
struct Link {
    audit_id: i64,
    chain_seq: i64,
    /// Null only if someone cleared it: then it matches nothing.
    prev_hash: Option<Vec<u8>>,
    hash: Option<Vec<u8>>,
    /// `audit_payload(a)`: what the hash covers besides the predecessor's hash.
    payload: Vec<u8>,
}

impl Store {
    /// Seals what is committed, then recomputes the app's audit chain in chain order
    /// (each record's hash over its predecessor's hash and its own content) and names the
    /// first record that does not match: an edited, deleted or inserted row shows up
    /// there.
    pub async fn verify_audit(&self, app_id: &str) -> Result<Verification> {
        use futures_util::TryStreamExt as _;
        use sha2::{Digest, Sha256};
        self.seal_audit_all().await?;
        let unsealed: i64 = sqlx::query_scalar(
            "select count(*) from audit where app_id = $1 and chain_seq is null",
        )
        .bind(app_id)
        .fetch_one(&self.pool)
        .await?;
        let mut rows = sqlx::query_as::<_, Link>(
            "select a.audit_id, a.chain_seq, a.prev_hash, a.hash, audit_payload(a) as payload \
             from audit a where a.app_id = $1 and a.chain_seq is not null order by a.chain_seq",
        )
        .bind(app_id)
        .fetch(&self.pool);
        let mut expected_prev: Vec<u8> = Vec::new();
        let mut records = 0i64;
        let mut first_broken = None;
        while let Some(link) = rows.try_next().await? {
            let Link {
                audit_id,
                chain_seq,
                payload,
                ..
            } = link;
            let (prev, hash) = (
                link.prev_hash.unwrap_or_default(),
                link.hash.unwrap_or_default(),
            );
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
            unsealed,
            ok: first_broken.is_none(),
            first_broken,
        })
    }
}
