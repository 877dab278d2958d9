//! SCIM users: desired state, written together with the derived task and the audit record.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::PgConnection;
use uuid::Uuid;

use super::audit::{self, Entry};
use super::derive::{derive_created_user, derive_user};
use super::filter::{list_page, ListQuery, ListRow, Resource};
use super::retry::retrying;
use super::{is_unique_violation, Store};
use crate::auth::Actor;
use crate::error::{Error, Result};
use crate::scim::ScimError;

/// A user as stored, with what a SCIM read needs.
#[derive(Debug, Clone)]
pub struct UserRecord {
    /// SCIM `id`.
    pub id: Uuid,
    /// The desired state (SCIM document without id/meta/groups).
    pub doc: Value,
    /// Version counter (`meta.version`, `ETag`).
    pub version: i64,
    /// `meta.created`.
    pub created_at: DateTime<Utc>,
    /// `meta.lastModified`.
    pub updated_at: DateTime<Utc>,
    /// Groups the user is a member of: `[{"value": id, "display": name}]`.
    pub groups: Vec<Value>,
    /// The provisioning status extension: state, open task, last confirmation.
    pub provisioning: Value,
}

/// SQL of the provisioning state of user `u` (the `state` of the provisioning extension).
///
/// Columns of the user row only (issue #13): `open_task_id` is the user's first
/// unfinished task, kept by the `task_open_task` trigger in the transaction of every task
/// change, so a read needs no subquery whose plan depends on statistics.
pub const STATE: &str = "case when u.needs_attention then 'failed' \
    when u.open_task_id is not null then 'pending' \
    when u.rejected_at is not null then 'rejected' \
    else 'synced' end";

/// SQL of the ids of the groups user `u` is a member of (deleted groups included: the
/// caller drops them), as an array.
///
/// Issue #13: as a join of `group_member` and `scim_group`, the planner without
/// statistics (right after an IdP's first push) drove it from the app's live groups and
/// probed each for the member. `array(…)` is evaluated on its own per user, so it is one
/// probe of `group_member_user_idx`, and the groups are then fetched by primary key,
/// whatever the statistics say.
pub(super) const GROUP_IDS: &str =
    "array(select m.group_id from group_member m where m.user_id = u.user_id)";

/// The select of a user as a SCIM read needs it, from `scim_user u`: the stored
/// document, the provisioning columns as they are, the groups, and `visible` (`{VISIBLE}`).
/// Issue #13: the provisioning extension is built from the columns in Rust
/// ([`provisioning`]), not by `jsonb_build_object`/`to_char` in the statement: measured
/// with pgbench on a fresh 10k database, building it in SQL cost Postgres about a third
/// of the primary-key read.
fn select_template(visible: &str) -> String {
    format!(
        "select u.user_id, u.seq, u.doc, u.version, u.created_at, u.updated_at, \
         u.needs_attention, u.open_task_id, u.rejected_at, u.confirmed_at, u.verified_at, \
         case when u.observed_snapshot is not null then u.drift end as drift, \
         {visible} as visible, \
         coalesce((select jsonb_agg(jsonb_build_object('value', g.group_id, 'display', g.display_name) \
                                    order by g.display_name) \
                     from scim_group g \
                    where g.group_id = any({GROUP_IDS}) and g.deleted_at is null), '[]') as groups \
         from scim_user u"
    )
}

/// The select of every user list; the caller's `where` keeps the app's live users.
static SELECT: LazyLock<String> = LazyLock::new(|| select_template("true"));

/// The select of one user by id (`$2`) of app `$1`: the row is found by
/// `scim_user_pkey` alone and its app and liveness are checked on that one row
/// (`visible`). Issue #13: with the app and liveness in the `where`, the planner, without
/// statistics right after a bulk import, walked an app's partial index instead of
/// probing the key.
static SELECT_BY_ID: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{} where u.user_id = $2",
        select_template("u.app_id = $1 and u.deleted_at is null")
    )
});

/// A row of [`SELECT`].
#[derive(sqlx::FromRow)]
struct UserRow {
    user_id: Uuid,
    seq: i64,
    doc: Value,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    needs_attention: bool,
    open_task_id: Option<i64>,
    rejected_at: Option<DateTime<Utc>>,
    confirmed_at: Option<DateTime<Utc>>,
    verified_at: Option<DateTime<Utc>>,
    drift: Option<bool>,
    visible: bool,
    groups: Value,
}

/// The provisioning status extension of a user row: the same states as [`STATE`]
/// (which filters and views use in SQL), absent values left out.
fn provisioning(r: &UserRow) -> Value {
    let state = if r.needs_attention {
        "failed"
    } else if r.open_task_id.is_some() {
        "pending"
    } else if r.rejected_at.is_some() {
        "rejected"
    } else {
        "synced"
    };
    let mut p = serde_json::Map::new();
    p.insert("state".into(), json!(state));
    if let Some(t) = r.open_task_id {
        p.insert("openTaskId".into(), json!(t.to_string()));
    }
    if let Some(t) = r.confirmed_at {
        p.insert("lastConfirmed".into(), json!(super::rfc3339(t)));
    }
    p.insert("needsAttention".into(), json!(r.needs_attention));
    if let Some(t) = r.verified_at {
        p.insert("lastVerified".into(), json!(super::rfc3339(t)));
    }
    if let Some(d) = r.drift {
        p.insert("drift".into(), json!(d));
    }
    Value::Object(p)
}

impl ListRow for UserRow {
    fn seq(&self) -> i64 {
        self.seq
    }
}

impl From<UserRow> for UserRecord {
    fn from(r: UserRow) -> UserRecord {
        let provisioning = provisioning(&r);
        UserRecord {
            id: r.user_id,
            doc: r.doc,
            version: r.version,
            created_at: r.created_at,
            updated_at: r.updated_at,
            groups: match r.groups {
                Value::Array(a) => a,
                _ => Vec::new(),
            },
            provisioning,
        }
    }
}

/// The indexed columns copied out of the document.
struct Columns {
    user_name: String,
    external_id: Option<String>,
    active: bool,
    emails: Vec<String>,
}

fn columns(doc: &Value) -> Columns {
    Columns {
        user_name: doc["userName"].as_str().unwrap_or_default().to_owned(),
        external_id: doc
            .get("externalId")
            .and_then(Value::as_str)
            .map(str::to_owned),
        active: doc.get("active").and_then(Value::as_bool).unwrap_or(true),
        emails: doc
            .get("emails")
            .and_then(Value::as_array)
            .map(|es| {
                es.iter()
                    .filter_map(|e| e.get("value").and_then(Value::as_str))
                    .map(str::to_lowercase)
                    .collect()
            })
            .unwrap_or_default(),
    }
}

fn taken(e: sqlx::Error, user_name: &str) -> Error {
    if is_unique_violation(&e, "scim_user_name_uq") {
        Error::Uniqueness(format!(
            "userName {user_name:?} is already taken in this app"
        ))
    } else {
        e.into()
    }
}

fn user_entry(
    action: &'static str,
    id: Uuid,
    outcome: &'static str,
    detail: Value,
) -> Entry<'static> {
    Entry {
        action,
        subject_type: "user",
        subject_id: id.to_string(),
        task_id: None,
        outcome,
        detail,
    }
}

async fn fetch(conn: &mut PgConnection, app_id: &str, id: Uuid) -> Result<UserRecord> {
    let row: Option<UserRow> = sqlx::query_as(&SELECT_BY_ID)
        .bind(app_id)
        .bind(id)
        .fetch_optional(conn)
        .await?;
    row.filter(|r| r.visible)
        .map(UserRecord::from)
        .ok_or_else(|| Error::NotFound(format!("User {id}")))
}

/// Locks a live user row of the app, checks an `If-Match` precondition (RFC 7644
/// §3.14) and returns its document. The row is locked by primary key alone and its app
/// and liveness checked on that row (issue #13: no plan can scan); a row of another app
/// or a deleted one is a 404, and its lock goes with the rolled-back transaction.
async fn lock(
    conn: &mut PgConnection,
    app_id: &str,
    id: Uuid,
    if_match: Option<&[i64]>,
) -> Result<Value> {
    let (doc, version, _): (Value, i64, bool) = sqlx::query_as(
        "select doc, version, app_id = $1 and deleted_at is null from scim_user \
         where user_id = $2 for update",
    )
    .bind(app_id)
    .bind(id)
    .fetch_optional(conn)
    .await?
    .filter(|(_, _, visible)| *visible)
    .ok_or_else(|| Error::NotFound(format!("User {id}")))?;
    super::check_version(if_match, version)?;
    Ok(doc)
}

impl Store {
    /// Creates a user from a normalised document (RFC 7644 §3.3).
    pub async fn create_user(&self, actor: &Actor, doc: Value) -> Result<UserRecord> {
        retrying("user.create", || self.create_user_once(actor, doc.clone())).await
    }

    /// Six round trips, all inside the transaction: begin, the user (with its app's
    /// profile), the task (with the wake-up), its outbox event, both audit records in one
    /// statement, commit. The task is planned from the document just written rather than
    /// from a read of it (issue #13).
    async fn create_user_once(&self, actor: &Actor, doc: Value) -> Result<UserRecord> {
        let c = columns(&doc);
        let id = Uuid::new_v4();
        let mut tx = self.pool.begin().await?;
        let (version, created_at, updated_at, profile): (i64, DateTime<Utc>, DateTime<Utc>, String) =
            sqlx::query_as(
                "with u as (insert into scim_user (user_id, app_id, user_name, external_id, active, emails, doc) \
                 values ($1, $2, $3, $4, $5, $6, $7) returning version, created_at, updated_at) \
                 select u.version, u.created_at, u.updated_at, a.profile from u, app a where a.app_id = $2",
            )
            .bind(id)
            .bind(&actor.app_id)
            .bind(&c.user_name)
            .bind(&c.external_id)
            .bind(c.active)
            .bind(&c.emails)
            .bind(&doc)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| taken(e, &c.user_name))?;
        let (task, mut records) =
            derive_created_user(&mut tx, &self.profiles, actor, id, &doc, &profile).await?;
        records.push(user_entry(
            "user.create",
            id,
            "created",
            json!({"userName": c.user_name}),
        ));
        audit::write_all(&mut tx, actor, records).await?;
        tx.commit().await?;
        // What a read would show, known without one: a new user is in no group yet
        // (members must exist first), and its one task, if any, is the one just planned.
        Ok(UserRecord {
            id,
            doc,
            version,
            created_at,
            updated_at,
            groups: Vec::new(),
            provisioning: match task {
                Some(t) => {
                    json!({"state": "pending", "openTaskId": t.to_string(), "needsAttention": false})
                }
                None => json!({"state": "synced", "needsAttention": false}),
            },
        })
    }

    /// Reads one live user of the app.
    pub async fn user(&self, app_id: &str, id: Uuid) -> Result<UserRecord> {
        let mut conn = self.pool.acquire().await?;
        fetch(&mut conn, app_id, id).await
    }

    /// Applies a change to a user's document under its row lock (used for PATCH, whose
    /// result depends on the current document: RFC 7644 §3.5.2). `change` is async so the
    /// caller can run costly document work off the async workers.
    pub async fn update_user<F, Fut>(
        &self,
        actor: &Actor,
        id: Uuid,
        action: &'static str,
        if_match: Option<&[i64]>,
        change: F,
    ) -> Result<UserRecord>
    where
        F: Fn(Value) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<Value, ScimError>>,
    {
        retrying(action, || {
            self.update_user_once(actor, id, action, if_match, &change)
        })
        .await
    }

    async fn update_user_once<Fut>(
        &self,
        actor: &Actor,
        id: Uuid,
        action: &'static str,
        if_match: Option<&[i64]>,
        change: &impl Fn(Value) -> Fut,
    ) -> Result<UserRecord>
    where
        Fut: std::future::Future<Output = std::result::Result<Value, ScimError>>,
    {
        let mut tx = self.pool.begin().await?;
        let old = lock(&mut tx, &actor.app_id, id, if_match).await?;
        let doc = change(old.clone()).await?;
        // Okta re-sends unchanged profiles: no new version, no task; still audited.
        let (outcome, detail) = if doc == old {
            ("unchanged", json!({}))
        } else {
            let c = columns(&doc);
            sqlx::query(
                "update scim_user set user_name = $2, external_id = $3, active = $4, emails = $5, \
                 doc = $6, version = version + 1, updated_at = now() where user_id = $1",
            )
            .bind(id)
            .bind(&c.user_name)
            .bind(&c.external_id)
            .bind(c.active)
            .bind(&c.emails)
            .bind(&doc)
            .execute(&mut *tx)
            .await
            .map_err(|e| taken(e, &c.user_name))?;
            derive_user(&mut tx, &self.profiles, actor, id).await?;
            ("updated", json!({"active": c.active}))
        };
        let rec = fetch(&mut tx, &actor.app_id, id).await?;
        audit::write(&mut tx, actor, user_entry(action, id, outcome, detail)).await?;
        tx.commit().await?;
        Ok(rec)
    }

    /// Deletes a user (RFC 7644 §3.6): hidden from SCIM at once, kept for the audit trail,
    /// and its app account is scheduled for removal.
    pub async fn delete_user(
        &self,
        actor: &Actor,
        id: Uuid,
        if_match: Option<&[i64]>,
    ) -> Result<()> {
        retrying("user.delete", || self.delete_user_once(actor, id, if_match)).await
    }

    async fn delete_user_once(
        &self,
        actor: &Actor,
        id: Uuid,
        if_match: Option<&[i64]>,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        lock(&mut tx, &actor.app_id, id, if_match).await?;
        sqlx::query("update scim_user set deleted_at = now(), version = version + 1, updated_at = now() where user_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        derive_user(&mut tx, &self.profiles, actor, id).await?;
        audit::write(
            &mut tx,
            actor,
            user_entry("user.delete", id, "deleted", json!({})),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// One page of the app's live users matching the query, and the total number of
    /// matches (RFC 7644 §3.4.2; cursor paging per RFC 9865).
    pub async fn list_users(
        &self,
        app_id: &str,
        q: ListQuery<'_>,
    ) -> Result<(i64, Vec<UserRecord>, Option<i64>)> {
        let page = list_page::<UserRow>(
            &self.pool,
            Resource::User,
            &SELECT,
            app_id,
            q,
            Some(&self.walks),
        )
        .await?;
        Ok((
            page.total,
            page.rows.into_iter().map(UserRecord::from).collect(),
            page.next,
        ))
    }
}

/// A user as the task API shows it: what the IdP wants next to what the app has.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UserView {
    /// SCIM id.
    pub id: Uuid,
    /// userName.
    pub user_name: String,
    /// Desired `active`.
    pub active: bool,
    /// When the IdP deleted the user (kept for audit).
    pub deleted_at: Option<DateTime<Utc>>,
    /// `pending`, `synced` or `failed` (the provisioning extension's state).
    pub state: String,
    /// A task for this user failed and no later one succeeded.
    pub needs_attention: bool,
    /// The open or in-progress task, if any.
    pub open_task_id: Option<i64>,
    /// The account the IdP wants in the app (None once deleted); only in single reads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desired: Option<Value>,
    /// The account the app is known to have (None: none).
    pub confirmed: Option<Value>,
    /// When the app last confirmed it.
    pub confirmed_at: Option<DateTime<Utc>>,
    /// `user` (an IdP user) or `account` (an account in the app no IdP user owns).
    pub kind: String,
    /// The account as the last applied snapshot showed it: `{"key", "active", "fields"}`
    /// with only the columns the export had (None: not in that snapshot, or no snapshot).
    pub observed: Option<Value>,
    /// The snapshot that last saw this user (None: no snapshot yet).
    pub observed_snapshot: Option<i64>,
    /// When that snapshot's export was taken.
    pub observed_at: Option<DateTime<Utc>>,
    /// When a snapshot last showed the account as the IdP wants it.
    pub last_verified: Option<DateTime<Utc>>,
    /// The last snapshot showed the account differing from what the IdP wanted.
    pub drift: bool,
}

const VIEW: &str =
    "select u.user_id, u.user_name, u.active, u.deleted_at, u.needs_attention, u.confirmed, \
    u.confirmed_at, {STATE} as state, u.subject_kind, u.observed, u.observed_snapshot, \
    u.observed_at, u.verified_at, u.drift, u.open_task_id \
    from scim_user u";

/// A row of [`VIEW`].
#[derive(sqlx::FromRow)]
struct ViewRow {
    user_id: Uuid,
    user_name: String,
    active: bool,
    deleted_at: Option<DateTime<Utc>>,
    state: String,
    needs_attention: bool,
    open_task_id: Option<i64>,
    confirmed: Option<Value>,
    confirmed_at: Option<DateTime<Utc>>,
    subject_kind: String,
    observed: Option<Value>,
    observed_snapshot: Option<i64>,
    observed_at: Option<DateTime<Utc>>,
    verified_at: Option<DateTime<Utc>>,
    drift: bool,
}

/// A row of [`Store::user_views`]: the view and its position.
#[derive(sqlx::FromRow)]
struct SeqViewRow {
    seq: i64,
    #[sqlx(flatten)]
    view: ViewRow,
}

impl From<ViewRow> for UserView {
    fn from(r: ViewRow) -> UserView {
        UserView {
            id: r.user_id,
            user_name: r.user_name,
            active: r.active,
            deleted_at: r.deleted_at,
            state: r.state,
            needs_attention: r.needs_attention,
            open_task_id: r.open_task_id,
            desired: None,
            confirmed: r.confirmed,
            confirmed_at: r.confirmed_at,
            kind: r.subject_kind,
            observed: r.observed,
            observed_snapshot: r.observed_snapshot,
            observed_at: r.observed_at,
            last_verified: r.verified_at,
            drift: r.drift,
        }
    }
}

impl Store {
    /// Users of the app (deleted ones too: their trail matters), in creation order after
    /// a cursor; `user_name` narrows to names starting with it (case-insensitive), `state`
    /// to one provisioning state. True when more follow.
    pub async fn user_views(
        &self,
        app_id: &str,
        user_name: Option<&str>,
        state: Option<&str>,
        after: Option<i64>,
        limit: i64,
    ) -> Result<(Vec<(i64, UserView)>, bool)> {
        crate::limits::check_opt("user_name", user_name, crate::limits::MAX_SEARCH_CHARS)?;
        let sql = format!(
            "select * from (select v.*, u2.seq from ({}) v join scim_user u2 on u2.user_id = v.user_id \
             where u2.app_id = $1 and u2.subject_kind = 'user') x \
             where ($2::text is null or starts_with(lower(x.user_name), lower($2))) \
             and ($3::text is null or x.state = $3) and ($4::bigint is null or x.seq > $4) \
             order by x.seq limit $5",
            VIEW.replace("{STATE}", STATE)
        );
        let rows: Vec<SeqViewRow> = sqlx::query_as(&sql)
            .bind(app_id)
            .bind(user_name)
            .bind(state)
            .bind(after)
            .bind(limit + 1)
            .fetch_all(&self.pool)
            .await?;
        let more = rows.len() as i64 > limit;
        Ok((
            rows.into_iter()
                .take(limit as usize)
                .map(|r| (r.seq, UserView::from(r.view)))
                .collect(),
            more,
        ))
    }

    /// One user of the app with the account the IdP wants, deleted or not.
    pub async fn user_view(&self, app_id: &str, id: Uuid) -> Result<UserView> {
        let mut conn = self.pool.acquire().await?;
        let sql = format!(
            "{} where u.app_id = $1 and u.user_id = $2",
            VIEW.replace("{STATE}", STATE)
        );
        let row: ViewRow = sqlx::query_as(&sql)
            .bind(app_id)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?
            .ok_or_else(|| Error::NotFound(format!("user {id}")))?;
        let mut v = UserView::from(row);
        v.desired = super::derive::desired_account(&mut conn, &self.profiles, id)
            .await?
            .map(|a| json!(a));
        Ok(v)
    }
}
