//! Findings of snapshots as the API lists them.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::{Postgres, QueryBuilder};
use uuid::Uuid;

use super::Store;
use crate::error::Result;

/// Filters of the findings list.
#[derive(Debug, Clone)]
pub struct FindingQuery {
    /// `drift`, `missing`, `contradiction` or `orphan`.
    pub kind: Option<String>,
    /// `open`, `resolved` or `all`.
    pub state: String,
    /// Only findings first seen by this snapshot.
    pub snapshot: Option<i64>,
    /// After this id (the previous page's `next_cursor`).
    pub after: Option<i64>,
    /// Page size.
    pub limit: i64,
}

/// One finding.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// Id.
    pub id: i64,
    /// `drift`, `missing`, `contradiction` or `orphan`.
    pub kind: String,
    /// The subject: an IdP user, or an account no IdP user owns.
    pub subject: FindingSubject,
    /// In words ("still active in People.ai on 2026-12-05 per snapshot #3").
    pub text: String,
    /// What would turn the app's account into the wanted one.
    pub changes: Value,
    /// The snapshot that found it, and the last one that saw it.
    pub snapshot: i64,
    /// The last snapshot that still showed it.
    pub last_seen: i64,
    /// The task that carries it.
    pub task_id: Option<i64>,
    /// When it was found.
    pub created_at: DateTime<Utc>,
    /// When a snapshot showed it gone (or it was superseded by another difference).
    pub resolved_at: Option<DateTime<Utc>>,
}

/// Who a finding is about.
#[derive(Debug, Clone, Serialize)]
pub struct FindingSubject {
    /// `user` or `account`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Subject id (the SCIM id of a user).
    pub id: Uuid,
    /// The userName (or an orphan account's match key).
    pub user_name: String,
}

/// A row of the findings query.
#[derive(sqlx::FromRow)]
struct FindingRow {
    finding_id: i64,
    kind: String,
    subject_id: Uuid,
    subject_kind: String,
    user_name: String,
    text: String,
    changes: Value,
    snapshot_id: i64,
    last_seen: i64,
    task_id: Option<i64>,
    created_at: DateTime<Utc>,
    resolved_at: Option<DateTime<Utc>>,
}

impl From<FindingRow> for Finding {
    fn from(r: FindingRow) -> Finding {
        Finding {
            id: r.finding_id,
            kind: r.kind,
            subject: FindingSubject {
                kind: if r.subject_kind == "account" {
                    "account"
                } else {
                    "user"
                }
                .into(),
                id: r.subject_id,
                user_name: r.user_name,
            },
            text: r.text,
            changes: r.changes,
            snapshot: r.snapshot_id,
            last_seen: r.last_seen,
            task_id: r.task_id,
            created_at: r.created_at,
            resolved_at: r.resolved_at,
        }
    }
}

impl Store {
    /// Findings of the app, oldest first after the cursor; true when more follow.
    pub async fn findings(&self, app_id: &str, q: &FindingQuery) -> Result<(Vec<Finding>, bool)> {
        let mut b: QueryBuilder<'_, Postgres> = QueryBuilder::new(
            "select f.finding_id, f.kind, f.subject_id, u.subject_kind, u.user_name, f.text, f.changes, \
             f.snapshot_id, f.last_seen, f.task_id, f.created_at, f.resolved_at \
             from finding f join scim_user u on u.user_id = f.subject_id where f.app_id = ",
        );
        b.push_bind(app_id.to_owned());
        match q.state.as_str() {
            "open" => {
                b.push(" and f.resolved_at is null");
            }
            "resolved" => {
                b.push(" and f.resolved_at is not null");
            }
            _ => {}
        }
        if let Some(k) = &q.kind {
            b.push(" and f.kind = ").push_bind(k.clone());
        }
        if let Some(s) = q.snapshot {
            b.push(" and f.snapshot_id = ").push_bind(s);
        }
        if let Some(a) = q.after {
            b.push(" and f.finding_id > ").push_bind(a);
        }
        b.push(" order by f.finding_id limit ")
            .push_bind(q.limit + 1);
        let mut rows: Vec<FindingRow> = b.build_query_as().fetch_all(&self.pool).await?;
        let more = rows.len() as i64 > q.limit;
        rows.truncate(q.limit as usize);
        Ok((rows.into_iter().map(Finding::from).collect(), more))
    }
}
