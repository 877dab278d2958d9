//! Snapshots of an app's user list: taking one in (streamed: the body is parsed as it
//! arrives and its rows are stored in batches, one transaction each, so memory stays
//! bounded whatever the file's size), reading them back, and an admin's decision on a
//! held one. Comparing a snapshot with the desired and confirmed state is [`super::verify`].

use chrono::{DateTime, Utc};
use futures_util::{Stream, StreamExt};
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::audit::{self, Entry};
use super::Store;
use crate::auth::Actor;
use crate::error::{Error, Result};
use crate::reconcile::snapshot::{Format, Observed, RowParser, SnapshotError};

/// Rows stored per transaction while a file arrives.
const STAGE_BATCH: usize = 1000;

/// What the uploader says about a file besides its bytes.
#[derive(Debug, Clone)]
pub struct NewSnapshot {
    /// CSV or JSON.
    pub format: Format,
    /// The file's name, if it came as a file.
    pub filename: Option<String>,
    /// When the export was taken; the upload time if not given.
    pub taken_at: Option<DateTime<Utc>>,
}

/// Why an import failed. Nothing of the file is kept.
#[derive(Debug)]
pub enum ImportError<E> {
    /// The file cannot be read as the profile describes (400).
    Input(SnapshotError),
    /// The body could not be read (too large, connection lost): the caller's error.
    Stream(E),
    /// The store failed.
    Store(Error),
}

impl<E> From<Error> for ImportError<E> {
    fn from(e: Error) -> Self {
        ImportError::Store(e)
    }
}

impl<E> From<sqlx::Error> for ImportError<E> {
    fn from(e: sqlx::Error) -> Self {
        ImportError::Store(e.into())
    }
}

/// A snapshot as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// Id (`snapshot #3` in findings).
    pub id: i64,
    /// `receiving`, `held`, `applying`, `applied` or `discarded`.
    pub state: String,
    /// `csv` or `json`.
    pub format: String,
    /// The uploaded file's name.
    pub filename: Option<String>,
    /// Who submitted it (token name) and with which role.
    pub submitted_by: String,
    /// `admin` or `agent`.
    pub submitted_role: String,
    /// When it was submitted.
    pub created_at: DateTime<Utc>,
    /// When the export was taken.
    pub taken_at: DateTime<Utc>,
    /// SHA-256 of the file as received, hex.
    pub sha256: Option<String>,
    /// Size of the file in bytes.
    pub bytes: Option<i64>,
    /// Accounts in the file.
    pub rows: Option<i64>,
    /// Columns the profile does not name.
    pub unknown_columns: Vec<String>,
    /// Account fields the file has columns for.
    pub observed_fields: Vec<String>,
    /// Why the safeguard holds it.
    pub hold_reason: Option<String>,
    /// What applying would do: counts (`tally`) and the first flagged accounts.
    pub preview: Option<Value>,
    /// What applying did.
    pub summary: Option<Value>,
    /// The admin who confirmed or discarded it.
    pub decided_by: Option<String>,
    /// When.
    pub decided_at: Option<DateTime<Utc>>,
    /// When applying finished.
    pub applied_at: Option<DateTime<Utc>>,
}

pub(super) const SELECT: &str = "select snapshot_id, state, format, filename, submitted_by, \
    submitted_role, created_at, taken_at, sha256, bytes, row_count, unknown_columns, \
    observed_fields, hold_reason, preview, summary, decided_by, decided_at, applied_at \
    from snapshot";

/// A row of [`SELECT`].
#[derive(sqlx::FromRow)]
struct SnapshotRow {
    snapshot_id: i64,
    state: String,
    format: String,
    filename: Option<String>,
    submitted_by: String,
    submitted_role: String,
    created_at: DateTime<Utc>,
    taken_at: DateTime<Utc>,
    sha256: Option<Vec<u8>>,
    bytes: Option<i64>,
    row_count: Option<i64>,
    unknown_columns: Vec<String>,
    observed_fields: Vec<String>,
    hold_reason: Option<String>,
    preview: Option<Value>,
    summary: Option<Value>,
    decided_by: Option<String>,
    decided_at: Option<DateTime<Utc>>,
    applied_at: Option<DateTime<Utc>>,
}

impl From<SnapshotRow> for Snapshot {
    fn from(r: SnapshotRow) -> Snapshot {
        Snapshot {
            id: r.snapshot_id,
            state: r.state,
            format: r.format,
            filename: r.filename,
            submitted_by: r.submitted_by,
            submitted_role: r.submitted_role,
            created_at: r.created_at,
            taken_at: r.taken_at,
            sha256: r.sha256.map(hex::encode),
            bytes: r.bytes,
            rows: r.row_count,
            unknown_columns: r.unknown_columns,
            observed_fields: r.observed_fields,
            hold_reason: r.hold_reason,
            preview: r.preview,
            summary: r.summary,
            decided_by: r.decided_by,
            decided_at: r.decided_at,
            applied_at: r.applied_at,
        }
    }
}

pub(super) fn snapshot_entry(
    action: &'static str,
    id: i64,
    outcome: &'static str,
    detail: Value,
) -> Entry<'static> {
    Entry {
        action,
        subject_type: "snapshot",
        subject_id: id.to_string(),
        task_id: None,
        outcome,
        detail,
    }
}

impl Store {
    /// Takes in an app's user list from a stream of chunks and returns its id, ready for
    /// [`Store::reconcile_snapshot`]. The file is hashed and parsed as it arrives and
    /// stored in batches; a file that cannot be read leaves nothing behind.
    pub async fn import_snapshot<S, B, E>(
        &self,
        actor: &Actor,
        new: NewSnapshot,
        mut chunks: S,
    ) -> std::result::Result<i64, ImportError<E>>
    where
        S: Stream<Item = std::result::Result<B, E>> + Unpin,
        B: AsRef<[u8]>,
    {
        let profile = self.app_profile(&actor.app_id).await?;
        let id: i64 = sqlx::query_scalar(
            "insert into snapshot (app_id, format, filename, submitted_by, submitted_role, taken_at) \
             values ($1, $2, $3, $4, $5, coalesce($6, now())) returning snapshot_id",
        )
        .bind(&actor.app_id)
        .bind(new.format.as_str())
        .bind(&new.filename)
        .bind(&actor.name)
        .bind(actor.role.as_str())
        .bind(new.taken_at)
        .fetch_one(&self.pool)
        .await?;
        let received = self.receive(id, new.format, &profile, &mut chunks).await;
        let (sha, bytes, rows) = match received {
            Ok(r) => r,
            Err(e) => {
                // Best effort: a file that could not be read leaves no rows behind (a
                // failure here leaves a `receiving` snapshot, which nothing reads).
                let _ = self.forget(id).await;
                return Err(e);
            }
        };
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "update snapshot set sha256 = $2, bytes = $3, row_count = $4, unknown_columns = $5, \
             observed_fields = $6, state = 'applying', progress_at = now() where snapshot_id = $1",
        )
        .bind(id)
        .bind(&sha[..])
        .bind(bytes as i64)
        .bind(rows.rows as i64)
        .bind(&rows.unknown_columns)
        .bind(
            rows.observed_fields
                .iter()
                .map(|f| f.as_str())
                .collect::<Vec<_>>(),
        )
        .execute(&mut *tx)
        .await?;
        let detail = json!({
            "format": new.format.as_str(), "filename": new.filename, "sha256": hex::encode(sha),
            "bytes": bytes, "rows": rows.rows, "unknown_columns": rows.unknown_columns,
        });
        audit::write(
            &mut tx,
            actor,
            snapshot_entry("snapshot.submit", id, "received", detail),
        )
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn receive<S, B, E>(
        &self,
        id: i64,
        format: Format,
        profile: &crate::reconcile::Profile,
        chunks: &mut S,
    ) -> std::result::Result<([u8; 32], u64, crate::reconcile::snapshot::Rows), ImportError<E>>
    where
        S: Stream<Item = std::result::Result<B, E>> + Unpin,
        B: AsRef<[u8]>,
    {
        let mut parser = RowParser::new(format, &profile.snapshot, &profile.roles)
            .map_err(ImportError::Input)?;
        let mut hasher = Sha256::new();
        let mut bytes: u64 = 0;
        let mut buf: Vec<Observed> = Vec::with_capacity(STAGE_BATCH);
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(ImportError::Stream)?;
            let chunk = chunk.as_ref();
            hasher.update(chunk);
            bytes += chunk.len() as u64;
            parser.feed(chunk, &mut buf).map_err(ImportError::Input)?;
            if buf.len() >= STAGE_BATCH {
                self.stage(id, &mut buf).await?;
            }
        }
        let rows = parser.finish(&mut buf).map_err(ImportError::Input)?;
        self.stage(id, &mut buf).await?;
        Ok((hasher.finalize().into(), bytes, rows))
    }

    /// Stores a batch of rows (one transaction); a match key seen before in the file is
    /// the error.
    async fn stage<E>(
        &self,
        id: i64,
        buf: &mut Vec<Observed>,
    ) -> std::result::Result<(), ImportError<E>> {
        if buf.is_empty() {
            return Ok(());
        }
        let keys: Vec<&str> = buf.iter().map(|o| o.key.as_str()).collect();
        let lines: Vec<i64> = buf.iter().map(|o| o.line as i64).collect();
        let docs: Vec<Value> = buf.iter().map(|o| json!(o)).collect();
        let stored: Vec<String> = sqlx::query_scalar(
            "insert into snapshot_row (snapshot_id, match_key, line, observed) \
             select $1, k, l, o from unnest($2::text[], $3::bigint[], $4::jsonb[]) as x(k, l, o) \
             on conflict do nothing returning match_key",
        )
        .bind(id)
        .bind(&keys)
        .bind(&lines)
        .bind(&docs)
        .fetch_all(&self.pool)
        .await?;
        if stored.len() < buf.len() {
            let mut left: std::collections::HashSet<&str> =
                stored.iter().map(String::as_str).collect();
            // The first row whose key was not stored by this batch repeats an earlier one.
            let dup = buf.iter().find(|o| !left.remove(o.key.as_str()));
            if let Some(o) = dup {
                let first: Option<i64> = sqlx::query_scalar(
                    "select line from snapshot_row where snapshot_id = $1 and match_key = $2",
                )
                .bind(id)
                .bind(&o.key)
                .fetch_optional(&self.pool)
                .await?;
                return Err(ImportError::Input(SnapshotError {
                    code: "duplicate_account",
                    message: format!(
                        "row {}: {} appears twice (first at row {}); an app has one account per key",
                        o.line,
                        o.key,
                        first.unwrap_or_default()
                    ),
                }));
            }
        }
        buf.clear();
        Ok(())
    }

    async fn forget(&self, id: i64) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("delete from snapshot_row where snapshot_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("delete from snapshot where snapshot_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The app's profile (snapshot settings, roles, texts).
    pub async fn app_profile(
        &self,
        app_id: &str,
    ) -> Result<std::sync::Arc<crate::reconcile::Profile>> {
        let key: Option<String> = sqlx::query_scalar("select profile from app where app_id = $1")
            .bind(app_id)
            .fetch_optional(&self.pool)
            .await?;
        let key = key.ok_or_else(|| Error::NotFound(format!("app {app_id}")))?;
        super::derive::app_profile(&self.profiles, app_id, &key)
    }

    /// The app's snapshots, newest first (at most `limit`, before `before`).
    pub async fn snapshots(
        &self,
        app_id: &str,
        before: Option<i64>,
        limit: i64,
    ) -> Result<(Vec<Snapshot>, bool)> {
        let mut rows: Vec<SnapshotRow> = sqlx::query_as(&format!(
            "{SELECT} where app_id = $1 and ($2::bigint is null or snapshot_id < $2) \
             order by snapshot_id desc limit $3"
        ))
        .bind(app_id)
        .bind(before)
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await?;
        let more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        Ok((rows.into_iter().map(Snapshot::from).collect(), more))
    }

    /// One snapshot of the app.
    pub async fn snapshot(&self, app_id: &str, id: i64) -> Result<Snapshot> {
        let row: Option<SnapshotRow> =
            sqlx::query_as(&format!("{SELECT} where app_id = $1 and snapshot_id = $2"))
                .bind(app_id)
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        row.map(Snapshot::from)
            .ok_or_else(|| Error::NotFound(format!("snapshot {id}")))
    }

    /// An admin's decision on a held snapshot: apply it anyway (`apply`: it is then
    /// `applying`, and [`Store::reconcile_snapshot`] with `confirmed` applies it) or
    /// discard it. A snapshot whose application was interrupted (no progress for two
    /// minutes) can be applied again: subjects it already reached are skipped.
    pub async fn decide_snapshot(&self, actor: &Actor, id: i64, apply: bool) -> Result<Snapshot> {
        let mut tx = self.pool.begin().await?;
        let state: Option<(String, bool)> = sqlx::query_as(
            "select state, coalesce(progress_at < now() - interval '2 minutes', true) \
             from snapshot where app_id = $1 and snapshot_id = $2 for update",
        )
        .bind(&actor.app_id)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        match state {
            None => return Err(Error::NotFound(format!("snapshot {id}"))),
            Some((s, _)) if s == "held" => {}
            Some((s, true)) if s == "applying" && apply => {}
            Some((s, _)) => {
                return Err(Error::TaskConflict {
                    code: "snapshot_not_held",
                    message: format!(
                        "snapshot {id} is {s}; only a held snapshot can be applied or discarded"
                    ),
                })
            }
        }
        let (state, action, outcome) = if apply {
            ("applying", "snapshot.confirm", "confirmed")
        } else {
            ("discarded", "snapshot.discard", "discarded")
        };
        sqlx::query(
            "update snapshot set state = $2, decided_by = $3, decided_at = now(), progress_at = now() \
             where snapshot_id = $1",
        )
        .bind(id)
        .bind(state)
        .bind(&actor.name)
        .execute(&mut *tx)
        .await?;
        audit::write(
            &mut tx,
            actor,
            snapshot_entry(action, id, outcome, json!({})),
        )
        .await?;
        tx.commit().await?;
        self.snapshot(&actor.app_id, id).await
    }
}
