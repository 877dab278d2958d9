//! SCIM groups. Membership is rows in `group_member`; a membership change re-derives the
//! tasks of the users whose app role it decides (e.g. "People.ai Admins" → Admin).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::PgConnection;
use uuid::Uuid;

use super::audit::{self, Entry};
use super::derive::{app_profile, derive_user, derive_user_held};
use super::filter::{list_page, ListQuery, Resource};
use super::retry::retrying;
use super::{is_unique_violation, Store};
use crate::auth::Actor;
use crate::error::{Error, Result};
use crate::reconcile::{Profile, Profiles};
use crate::scim::members::MemberDelta;
use crate::scim::{ScimError, ScimType};

/// A group as stored, with what a SCIM read needs.
#[derive(Debug, Clone)]
pub struct GroupRecord {
    /// SCIM `id`.
    pub id: Uuid,
    /// The desired state without members.
    pub doc: Value,
    /// Version counter.
    pub version: i64,
    /// `meta.created`.
    pub created_at: DateTime<Utc>,
    /// `meta.lastModified`.
    pub updated_at: DateTime<Utc>,
    /// `[{"value": user id, "display": as sent}]`, or None when the caller excluded members.
    pub members: Option<Vec<Value>>,
}

/// SQL yielding the members of group `g` as a JSON array.
const MEMBERS: &str = r#"
    coalesce((select jsonb_agg(jsonb_strip_nulls(jsonb_build_object('value', mu.user_id, 'display', m.display))
                               order by mu.seq)
                from group_member m join scim_user mu on mu.user_id = m.user_id
               where m.group_id = g.group_id and mu.deleted_at is null), '[]')
"#;

/// The select behind every group list, from `from` (aliased `g`).
fn select_from(with_members: bool, from: &str) -> String {
    let members = if with_members { MEMBERS } else { "null::jsonb" };
    format!("select g.group_id, g.seq, g.doc, g.version, g.created_at, g.updated_at, {members} as members from {from}")
}

/// The select behind every group list.
fn select(with_members: bool) -> String {
    select_from(with_members, "scim_group g")
}

/// The select of one group by id (`$2`), behind every group read and the answer to every
/// group write (RFC 7644 §3.5.2: 200 with the resource). Primary key first (issue #13):
/// the row is found by `scim_group_pkey` alone in a materialized CTE and only then checked
/// for its app and liveness by the caller's `where`, so no plan can scan the app's groups.
fn select_by_id(with_members: bool) -> String {
    format!(
        "with one as materialized (select * from scim_group where group_id = $2) {}",
        select_from(with_members, "one g")
    )
}

/// A row of [`select`].
#[derive(sqlx::FromRow)]
struct GroupRow {
    group_id: Uuid,
    seq: i64,
    doc: Value,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    members: Option<Value>,
}

impl super::filter::ListRow for GroupRow {
    fn seq(&self) -> i64 {
        self.seq
    }
}

impl From<GroupRow> for GroupRecord {
    fn from(r: GroupRow) -> GroupRecord {
        GroupRecord {
            id: r.group_id,
            doc: r.doc,
            version: r.version,
            created_at: r.created_at,
            updated_at: r.updated_at,
            members: r.members.map(|m| match m {
                Value::Array(a) => a,
                _ => Vec::new(),
            }),
        }
    }
}

fn taken(e: sqlx::Error, name: &str) -> Error {
    if is_unique_violation(&e, "scim_group_name_uq") {
        Error::Uniqueness(format!("a group named {name:?} already exists in this app"))
    } else {
        e.into()
    }
}

fn entry(action: &'static str, id: Uuid, outcome: &'static str, detail: Value) -> Entry<'static> {
    Entry {
        action,
        subject_type: "group",
        subject_id: id.to_string(),
        task_id: None,
        outcome,
        detail,
    }
}

/// A member as the client listed it.
#[derive(Debug, Clone)]
pub struct Member {
    /// The member's id as sent.
    pub value: String,
    /// The `display` the client sent, echoed back on reads.
    pub display: Option<String>,
}

/// Splits the `members` out of a normalised group document.
pub fn take_members(doc: &mut Value) -> Vec<Member> {
    let members = doc.as_object_mut().and_then(|m| m.remove("members"));
    members
        .and_then(|m| match m {
            Value::Array(a) => Some(a),
            _ => None,
        })
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| {
            Some(Member {
                value: m.get("value")?.as_str()?.to_owned(),
                display: m.get("display").and_then(Value::as_str).map(str::to_owned),
            })
        })
        .collect()
}

/// Resolves member ids to live users of the app; any other id is a 400 invalidValue
/// (RFC 7644 §3.5.2: a member that does not exist must not be dropped silently).
async fn resolve_members(
    conn: &mut PgConnection,
    app_id: &str,
    members: &[Member],
) -> Result<BTreeSet<Uuid>> {
    let ids: Vec<&str> = members.iter().map(|m| m.value.as_str()).collect();
    let parsed: Vec<Uuid> = ids.iter().filter_map(|s| Uuid::parse_str(s).ok()).collect();
    // By primary key first, then app and liveness on those rows (issue #13): without
    // statistics the combined condition could walk the app's whole partial index.
    let found: Vec<Uuid> = sqlx::query_scalar(
        "with named as materialized (select user_id, app_id, deleted_at from scim_user \
                                      where user_id = any($2)) \
         select user_id from named where app_id = $1 and deleted_at is null",
    )
    .bind(app_id)
    .bind(&parsed)
    .fetch_all(conn)
    .await?;
    let found: BTreeSet<Uuid> = found.into_iter().collect();
    let unknown: Vec<&str> = ids
        .iter()
        .filter(|s| Uuid::parse_str(s).map_or(true, |id| !found.contains(&id)))
        .copied()
        .collect();
    if !unknown.is_empty() {
        return Err(ScimError::bad_request(
            ScimType::InvalidValue,
            format!(
                "unknown member id(s): {} (members must be Users of this app)",
                unknown.join(", ")
            ),
        )
        .into());
    }
    Ok(found)
}

async fn current_members(conn: &mut PgConnection, group_id: Uuid) -> Result<BTreeSet<Uuid>> {
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "select m.user_id from group_member m join scim_user u using (user_id) \
         where m.group_id = $1 and u.deleted_at is null",
    )
    .bind(group_id)
    .fetch_all(conn)
    .await?;
    Ok(ids.into_iter().collect())
}

async fn profile(
    conn: &mut PgConnection,
    profiles: &Profiles,
    app_id: &str,
) -> Result<std::sync::Arc<Profile>> {
    let key: String = sqlx::query_scalar("select profile from app where app_id = $1")
        .bind(app_id)
        .fetch_one(conn)
        .await?;
    app_profile(profiles, app_id, &key)
}

/// Writes membership and re-derives the users whose role the change may decide.
#[allow(clippy::too_many_arguments)] // one transaction's worth of context, all needed
async fn sync_members(
    conn: &mut PgConnection,
    profiles: &Profiles,
    actor: &Actor,
    group_id: Uuid,
    names: (&str, &str),
    old: &BTreeSet<Uuid>,
    new: &BTreeSet<Uuid>,
    listed: &[Member],
) -> Result<()> {
    let display = |id: &Uuid| {
        listed
            .iter()
            .find(|m| Uuid::parse_str(&m.value).ok() == Some(*id))
            .and_then(|m| m.display.clone())
    };
    let add: Vec<(Uuid, Option<String>)> =
        new.difference(old).map(|id| (*id, display(id))).collect();
    let remove: Vec<Uuid> = old.difference(new).copied().collect();
    let (added, removed) = write_member_rows(conn, group_id, &add, &remove).await?;
    rederive(conn, profiles, actor, names, &added, &removed, || {
        old.union(new).copied().collect()
    })
    .await
}

/// Inserts and deletes membership rows; returns the members actually added and removed
/// (adding a member twice or removing an absent one changes nothing).
async fn write_member_rows(
    conn: &mut PgConnection,
    group_id: Uuid,
    add: &[(Uuid, Option<String>)],
    remove: &[Uuid],
) -> Result<(Vec<Uuid>, Vec<Uuid>)> {
    let mut added = Vec::new();
    if !add.is_empty() {
        let (ids, display): (Vec<Uuid>, Vec<Option<String>>) = add.iter().cloned().unzip();
        added = sqlx::query_scalar(
            "insert into group_member (group_id, user_id, display) \
             select $1, u, d from unnest($2::uuid[], $3::text[]) as x(u, d) \
             on conflict do nothing returning user_id",
        )
        .bind(group_id)
        .bind(&ids)
        .bind(&display)
        .fetch_all(&mut *conn)
        .await?;
    }
    let mut removed = Vec::new();
    if !remove.is_empty() {
        // Deleted users are no longer members as SCIM shows them; their rows stay.
        removed = sqlx::query_scalar(
            "delete from group_member m using scim_user u \
             where m.group_id = $1 and m.user_id = any($2) and u.user_id = m.user_id \
               and u.deleted_at is null returning m.user_id",
        )
        .bind(group_id)
        .bind(remove)
        .fetch_all(&mut *conn)
        .await?;
    }
    Ok((added, removed))
}

/// Re-derives the users whose app role a membership change may decide: the added and
/// removed members, or `everyone` (old and new members) when the group was renamed into
/// or out of a role mapping.
async fn rederive(
    conn: &mut PgConnection,
    profiles: &Profiles,
    actor: &Actor,
    (old_name, new_name): (&str, &str),
    added: &[Uuid],
    removed: &[Uuid],
    everyone: impl FnOnce() -> BTreeSet<Uuid>,
) -> Result<()> {
    let p = profile(conn, profiles, &actor.app_id).await?;
    let affected: BTreeSet<Uuid> =
        if !p.group_decides_role(old_name) && !p.group_decides_role(new_name) {
            BTreeSet::new()
        } else if old_name.eq_ignore_ascii_case(new_name) {
            added.iter().chain(removed).copied().collect()
        } else {
            everyone()
        };
    if affected.is_empty() {
        return Ok(());
    }
    // Lock in id order so concurrent group writes sharing members cannot deadlock.
    let ids: Vec<Uuid> = affected.into_iter().collect();
    sqlx::query("select 1 from scim_user where user_id = any($1) order by user_id for update")
        .bind(&ids)
        .execute(&mut *conn)
        .await?;
    // A group change that would plan many tasks is held for review as one batch (the
    // preview of a large group push).
    let max = p.governance.group_push_max as usize;
    if max > 0 && ids.len() > max {
        let reason = format!(
            "group {new_name:?}: {} added, {} removed would change {} users' access",
            added.len(),
            removed.len(),
            ids.len()
        );
        let batch = super::batches::open_batch(conn, actor, "group_push", &reason).await?;
        for id in ids {
            derive_user_held(conn, profiles, actor, id, batch).await?;
        }
        return Ok(());
    }
    for id in ids {
        derive_user(conn, profiles, actor, id).await?;
    }
    Ok(())
}

fn name_of(doc: &Value) -> String {
    doc["displayName"].as_str().unwrap_or_default().to_owned()
}

async fn fetch(
    conn: &mut PgConnection,
    app_id: &str,
    id: Uuid,
    with_members: bool,
) -> Result<GroupRecord> {
    let row: Option<GroupRow> = sqlx::query_as(&format!(
        "{} where g.app_id = $1 and g.deleted_at is null",
        select_by_id(with_members)
    ))
    .bind(app_id)
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.map(GroupRecord::from)
        .ok_or_else(|| Error::NotFound(format!("Group {id}")))
}

/// Locks a live group of the app by primary key alone and checks its app and liveness on
/// that row (issue #13, as for users): another app's or a deleted group is a 404.
async fn lock(
    conn: &mut PgConnection,
    app_id: &str,
    id: Uuid,
    if_match: Option<&[i64]>,
) -> Result<Value> {
    let (doc, version, _): (Value, i64, bool) = sqlx::query_as(
        "select doc, version, app_id = $1 and deleted_at is null from scim_group \
         where group_id = $2 for update",
    )
    .bind(app_id)
    .bind(id)
    .fetch_optional(conn)
    .await?
    .filter(|(_, _, visible)| *visible)
    .ok_or_else(|| Error::NotFound(format!("Group {id}")))?;
    super::check_version(if_match, version)?;
    Ok(doc)
}

impl Store {
    /// Creates a group with its members (RFC 7644 §3.3).
    pub async fn create_group(&self, actor: &Actor, doc: Value) -> Result<GroupRecord> {
        retrying("group.create", || {
            self.create_group_once(actor, doc.clone())
        })
        .await
    }

    async fn create_group_once(&self, actor: &Actor, mut doc: Value) -> Result<GroupRecord> {
        let members = take_members(&mut doc);
        let name = name_of(&doc);
        let id = Uuid::new_v4();
        let mut tx = self.pool.begin().await?;
        let new = resolve_members(&mut tx, &actor.app_id, &members).await?;
        sqlx::query("insert into scim_group (group_id, app_id, display_name, external_id, doc) values ($1, $2, $3, $4, $5)")
            .bind(id)
            .bind(&actor.app_id)
            .bind(&name)
            .bind(doc.get("externalId").and_then(Value::as_str))
            .bind(&doc)
            .execute(&mut *tx)
            .await
            .map_err(|e| taken(e, &name))?;
        sync_members(
            &mut tx,
            &self.profiles,
            actor,
            id,
            (&name, &name),
            &BTreeSet::new(),
            &new,
            &members,
        )
        .await?;
        let rec = fetch(&mut tx, &actor.app_id, id, true).await?;
        audit::write(
            &mut tx,
            actor,
            entry(
                "group.create",
                id,
                "created",
                json!({"displayName": name, "members": new.len()}),
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(rec)
    }

    /// Reads one live group of the app.
    pub async fn group(&self, app_id: &str, id: Uuid, with_members: bool) -> Result<GroupRecord> {
        let mut conn = self.pool.acquire().await?;
        fetch(&mut conn, app_id, id, with_members).await
    }

    /// Applies a change to the group document (members included as
    /// `[{"value","display"}]`) under the group's row lock: PUT and PATCH. `change` is
    /// async so the caller can run costly document work off the async workers.
    pub async fn update_group<F, Fut>(
        &self,
        actor: &Actor,
        id: Uuid,
        action: &'static str,
        if_match: Option<&[i64]>,
        change: F,
    ) -> Result<GroupRecord>
    where
        F: Fn(Value) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<Value, ScimError>>,
    {
        retrying(action, || {
            self.update_group_once(actor, id, action, if_match, &change)
        })
        .await
    }

    async fn update_group_once<Fut>(
        &self,
        actor: &Actor,
        id: Uuid,
        action: &'static str,
        if_match: Option<&[i64]>,
        change: &impl Fn(Value) -> Fut,
    ) -> Result<GroupRecord>
    where
        Fut: std::future::Future<Output = std::result::Result<Value, ScimError>>,
    {
        let mut tx = self.pool.begin().await?;
        let old_doc = lock(&mut tx, &actor.app_id, id, if_match).await?;
        let mut with_members = old_doc.clone();
        let listed = fetch(&mut tx, &actor.app_id, id, true)
            .await?
            .members
            .unwrap_or_default();
        // The listing already holds the current (live) members: no second query.
        let old_members: BTreeSet<Uuid> = listed
            .iter()
            .filter_map(|m| m["value"].as_str().and_then(|v| Uuid::parse_str(v).ok()))
            .collect();
        if let Value::Object(m) = &mut with_members {
            if !listed.is_empty() {
                m.insert("members".into(), Value::Array(listed));
            }
        }
        let mut doc = change(with_members).await?;
        let members = take_members(&mut doc);
        let new_members = resolve_members(&mut tx, &actor.app_id, &members).await?;
        let (old_name, new_name) = (name_of(&old_doc), name_of(&doc));
        let (outcome, detail) = if doc == old_doc && new_members == old_members {
            ("unchanged", json!({}))
        } else {
            sqlx::query(
                "update scim_group set display_name = $2, external_id = $3, doc = $4, \
                 version = version + 1, updated_at = now() where group_id = $1",
            )
            .bind(id)
            .bind(&new_name)
            .bind(doc.get("externalId").and_then(Value::as_str))
            .bind(&doc)
            .execute(&mut *tx)
            .await
            .map_err(|e| taken(e, &new_name))?;
            sync_members(
                &mut tx,
                &self.profiles,
                actor,
                id,
                (&old_name, &new_name),
                &old_members,
                &new_members,
                &members,
            )
            .await?;
            let detail = json!({
                "displayName": new_name,
                "added": new_members.difference(&old_members).count(),
                "removed": old_members.difference(&new_members).count(),
            });
            ("updated", detail)
        };
        let rec = fetch(&mut tx, &actor.app_id, id, true).await?;
        audit::write(&mut tx, actor, entry(action, id, outcome, detail)).await?;
        tx.commit().await?;
        Ok(rec)
    }

    /// Applies a membership-only PATCH (Okta's and Entra's group push) as row changes:
    /// reads only the members it names, never the whole list (issue #6). Same results
    /// and errors as the PATCH engine: unknown ids are a 400 invalidValue, adding a
    /// member twice or removing an absent one changes nothing (no new version).
    /// `with_members` false leaves the members out of the returned record.
    pub async fn patch_group_members(
        &self,
        actor: &Actor,
        id: Uuid,
        if_match: Option<&[i64]>,
        delta: &MemberDelta,
        with_members: bool,
    ) -> Result<GroupRecord> {
        retrying("group.patch", || {
            self.patch_group_members_once(actor, id, if_match, delta, with_members)
        })
        .await
    }

    async fn patch_group_members_once(
        &self,
        actor: &Actor,
        id: Uuid,
        if_match: Option<&[i64]>,
        delta: &MemberDelta,
        with_members: bool,
    ) -> Result<GroupRecord> {
        let mut tx = self.pool.begin().await?;
        let doc = lock(&mut tx, &actor.app_id, id, if_match).await?;
        let named: Vec<Member> = delta
            .add
            .iter()
            .map(|(value, display)| Member {
                value: value.clone(),
                display: display.clone(),
            })
            .collect();
        if !named.is_empty() {
            resolve_members(&mut tx, &actor.app_id, &named).await?;
        }
        let add: Vec<(Uuid, Option<String>)> = delta
            .add
            .iter()
            .filter_map(|(v, d)| Uuid::parse_str(v).ok().map(|u| (u, d.clone())))
            .collect();
        let remove: Vec<Uuid> = delta
            .remove
            .iter()
            .filter_map(|v| Uuid::parse_str(v).ok())
            .collect();
        let (added, removed) = write_member_rows(&mut tx, id, &add, &remove).await?;
        let name = name_of(&doc);
        let (outcome, detail) = if added.is_empty() && removed.is_empty() {
            ("unchanged", json!({}))
        } else {
            sqlx::query(
                "update scim_group set version = version + 1, updated_at = now() where group_id = $1",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
            // The name is unchanged, so only the named members can change role.
            rederive(
                &mut tx,
                &self.profiles,
                actor,
                (&name, &name),
                &added,
                &removed,
                BTreeSet::new,
            )
            .await?;
            let detail =
                json!({"displayName": name, "added": added.len(), "removed": removed.len()});
            ("updated", detail)
        };
        let rec = fetch(&mut tx, &actor.app_id, id, with_members).await?;
        audit::write(&mut tx, actor, entry("group.patch", id, outcome, detail)).await?;
        tx.commit().await?;
        Ok(rec)
    }

    /// Deletes a group (RFC 7644 §3.6); its members lose the roles it granted.
    pub async fn delete_group(
        &self,
        actor: &Actor,
        id: Uuid,
        if_match: Option<&[i64]>,
    ) -> Result<()> {
        retrying("group.delete", || {
            self.delete_group_once(actor, id, if_match)
        })
        .await
    }

    async fn delete_group_once(
        &self,
        actor: &Actor,
        id: Uuid,
        if_match: Option<&[i64]>,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let doc = lock(&mut tx, &actor.app_id, id, if_match).await?;
        let old = current_members(&mut tx, id).await?;
        sqlx::query("update scim_group set deleted_at = now(), version = version + 1, updated_at = now() where group_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let name = name_of(&doc);
        sync_members(
            &mut tx,
            &self.profiles,
            actor,
            id,
            (&name, &name),
            &old,
            &BTreeSet::new(),
            &[],
        )
        .await?;
        audit::write(
            &mut tx,
            actor,
            entry("group.delete", id, "deleted", json!({"displayName": name})),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// One page of the app's live groups matching the query, and the total.
    pub async fn list_groups(
        &self,
        app_id: &str,
        q: ListQuery<'_>,
        with_members: bool,
    ) -> Result<(i64, Vec<GroupRecord>, Option<i64>)> {
        let page = list_page::<GroupRow>(
            &self.pool,
            Resource::Group,
            &select(with_members),
            app_id,
            q,
            None,
        )
        .await?;
        let records = page.rows.into_iter().map(GroupRecord::from).collect();
        Ok((page.total, records, page.next))
    }
}
