//! Deriving a subject's task inside the transaction of the change that caused it (tasks are
//! derived, not appended: one open task per subject closes exactly the difference between
//! desired state and what the subject will have once its task in progress is done, so a
//! repeated or reverted change makes no extra work). The caller holds the subject's row
//! lock, so derivations of one subject never interleave.

use std::sync::Arc;

use serde_json::{json, Value};
use sqlx::PgConnection;
use uuid::Uuid;

use super::audit;
use super::lifecycle::{cancel, task_entry};
use crate::auth::Actor;
use crate::error::{Error, Result};
use crate::reconcile::{self, Account, Plan, Profile, Profiles, TaskKind, TaskState};

/// Everything derivation needs about one user, read in one round trip.
struct Subject {
    desired: Option<Account>,
    basis: Option<Account>,
    in_progress: Option<i64>,
    open: Option<OpenTask>,
    /// The batch holding the unclaimed task, if the mass-change guard holds it.
    open_batch: Option<i64>,
    /// An admin rejected the user's last change.
    rejected: bool,
    /// An account no IdP user owns (an orphan a snapshot found): its only task is the
    /// review a snapshot plans, never one derived from a difference.
    orphan: bool,
    profile: Arc<Profile>,
}

/// The account the IdP wants for a stored user document: its role resolved by the
/// profile from the user's group names and SCIM `roles` values.
pub(super) fn desired_of(profile: &Profile, doc: &Value, groups: &[String]) -> Account {
    let roles: Vec<&str> = doc
        .get("roles")
        .and_then(Value::as_array)
        .map(|rs| {
            rs.iter()
                .filter_map(|role| role.get("value").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    let role = profile.resolve_role(groups.iter().map(String::as_str), roles);
    Account::from_user_doc(doc, role)
}

/// The profile an app names, from the registry this process started with. `serve`
/// refuses to start while an app names an unknown profile, so this fails only for an app
/// created afterwards with a profile the server was not given: a 500 that says so
/// (rather than quietly using another app's roles and wording).
pub(super) fn app_profile(profiles: &Profiles, app_id: &str, key: &str) -> Result<Arc<Profile>> {
    profiles.get(key).cloned().ok_or_else(|| {
        Error::Misconfigured(format!(
            "app {app_id:?} uses profile {key:?}, which this server was not started with \
             (known: {}); restart it with --profiles-dir pointing at the directory that \
             defines {key:?}",
            profiles.keys().join(", ")
        ))
    })
}

/// The subject's unclaimed task, which derivation re-plans or cancels.
#[derive(Clone)]
struct OpenTask {
    id: i64,
    kind: TaskKind,
    target: Option<Account>,
}

/// The row [`load`] reads.
#[derive(sqlx::FromRow)]
struct SubjectRow {
    app_id: String,
    doc: Value,
    deleted: bool,
    confirmed: Option<Value>,
    profile: String,
    group_names: Vec<String>,
    in_progress_id: Option<i64>,
    in_progress_target: Option<Value>,
    open_id: Option<i64>,
    open_kind: Option<TaskKind>,
    open_target: Option<Value>,
    open_batch: Option<i64>,
    rejected: bool,
    orphan: bool,
}

async fn load(
    conn: &mut PgConnection,
    profiles: &Profiles,
    user_id: Uuid,
) -> Result<Option<Subject>> {
    // The group names from `group_member_user_idx`, then by primary key, whatever the
    // statistics (issue #13; see `users::GROUP_IDS`).
    let row: Option<SubjectRow> = sqlx::query_as(concat!(
        r#"
        select u.app_id, u.doc, u.deleted_at is not null as deleted, u.confirmed, a.profile,
               coalesce((select array_agg(g.display_name)
                           from scim_group g
                          where g.group_id = any(array(select m.group_id from group_member m
                                                       where m.user_id = u.user_id))
                            and g.deleted_at is null),
                        '{}') as group_names,
               p.task_id as in_progress_id, p.target as in_progress_target,
               o.task_id as open_id, o.kind as open_kind, o.target as open_target,
               o.batch_id as open_batch, u.rejected_at is not null as rejected,
               u.subject_kind = 'account' as orphan
          from scim_user u
          join app a using (app_id)
          left join task p on p.user_id = u.user_id and p.state = 'in_progress'
          left join task o on o.user_id = u.user_id
                          and o.state in "#,
        unclaimed_states!(),
        r#"
         where u.user_id = $1
        "#
    ))
    .bind(user_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(r) = row else { return Ok(None) };
    let profile = app_profile(profiles, &r.app_id, &r.profile)?;
    let desired = if r.deleted {
        None
    } else {
        Some(desired_of(&profile, &r.doc, &r.group_names))
    };
    let account = |v: Option<Value>| v.and_then(|v| serde_json::from_value::<Account>(v).ok());
    let in_progress = r.in_progress_id;
    let basis = if in_progress.is_some() {
        account(r.in_progress_target)
    } else {
        account(r.confirmed)
    };
    let open = match (r.open_id, r.open_kind) {
        (Some(id), Some(kind)) => Some(OpenTask {
            id,
            kind,
            target: account(r.open_target),
        }),
        _ => None,
    };
    Ok(Some(Subject {
        desired,
        basis,
        in_progress,
        open,
        open_batch: r.open_batch,
        rejected: r.rejected,
        orphan: r.orphan,
        profile,
    }))
}

/// The account the IdP wants for this user (None when deleted or unknown).
pub(super) async fn desired_account(
    conn: &mut PgConnection,
    profiles: &Profiles,
    user_id: Uuid,
) -> Result<Option<Account>> {
    Ok(load(conn, profiles, user_id).await?.and_then(|s| s.desired))
}

/// Brings the subject's open task in line with its desired state: creates, rewrites or
/// cancels it, or leaves it alone when it already closes exactly the difference.
pub(super) async fn derive_user(
    conn: &mut PgConnection,
    profiles: &Profiles,
    actor: &Actor,
    user_id: Uuid,
) -> Result<()> {
    derive(conn, profiles, actor, user_id, true, None).await?;
    Ok(())
}

/// [`derive_user`], returning the subject's unclaimed task after derivation, if any (for
/// a user created in this transaction: the task just planned, so the caller can answer
/// without re-reading; after a completion: the next task, which workers must hear of).
pub(super) async fn derive_user_task(
    conn: &mut PgConnection,
    profiles: &Profiles,
    actor: &Actor,
    user_id: Uuid,
) -> Result<Option<i64>> {
    derive(conn, profiles, actor, user_id, true, None).await
}

/// After a task failed: re-plans a task already waiting for it (it must now close the
/// whole difference from the confirmed state) but creates none. A failed subject gets
/// a new task when a person retries it or the IdP changes it again; an automatic new
/// task would have agents retry a broken change forever. Returns the waiting task.
pub(super) async fn replan_waiting(
    conn: &mut PgConnection,
    profiles: &Profiles,
    actor: &Actor,
    user_id: Uuid,
) -> Result<Option<i64>> {
    derive(conn, profiles, actor, user_id, false, None).await
}

/// Like [`derive_user`], but a task it plans is held in the given batch (a group change
/// that would plan many tasks, held for review as a whole).
pub(super) async fn derive_user_held(
    conn: &mut PgConnection,
    profiles: &Profiles,
    actor: &Actor,
    user_id: Uuid,
    batch_id: i64,
) -> Result<()> {
    derive(conn, profiles, actor, user_id, true, Some(batch_id)).await?;
    Ok(())
}

/// Where a planned task starts: held in a batch (mass-change guard), waiting for an
/// approval (profile rules), or open to claim.
pub(super) struct Placement {
    state: TaskState,
    batch: Option<i64>,
    needs_approval: bool,
}

impl Placement {
    /// Open to claim at once (a task no guard or approval applies to).
    pub(super) const OPEN: Placement = Placement {
        state: TaskState::Open,
        batch: None,
        needs_approval: false,
    };
}

async fn place(
    conn: &mut PgConnection,
    actor: &Actor,
    s: &Subject,
    plan: &Plan,
    hold: Option<i64>,
) -> Result<Placement> {
    let gov = &s.profile.governance;
    let needs_approval = gov.requires_approval(plan);
    let batch = match (hold, s.open_batch) {
        (Some(b), _) | (None, Some(b)) => Some(b),
        (None, None) => leaver_batch(conn, actor, plan, gov).await?,
    };
    let state = match (batch, needs_approval) {
        (Some(_), _) => TaskState::Held,
        (None, true) => TaskState::AwaitingApproval,
        (None, false) => TaskState::Open,
    };
    Ok(Placement {
        state,
        batch,
        needs_approval,
    })
}

/// The mass-change guard for leavers: once more than `mass_leavers` removals and
/// deactivations arrived within `mass_window`, new ones join a held batch instead of the
/// queue. (Counted without locks: concurrent requests may let a few more through before
/// the batch exists; the guard bounds a burst, not an exact number.)
async fn leaver_batch(
    conn: &mut PgConnection,
    actor: &Actor,
    plan: &Plan,
    gov: &crate::reconcile::Governance,
) -> Result<Option<i64>> {
    if gov.mass_leavers == 0 || !matches!(plan.kind, TaskKind::Remove | TaskKind::Deactivate) {
        return Ok(None);
    }
    let (held, recent): (Option<i64>, i64) = sqlx::query_as(
        "select (select batch_id from batch where app_id = $1 and kind = 'leavers' and state = 'held' \
                  order by batch_id desc limit 1), \
                (select count(*) from task where app_id = $1 and kind in ('remove', 'deactivate') \
                  and created_at > now() - make_interval(secs => $2))",
    )
    .bind(&actor.app_id)
    .bind(gov.mass_window().as_secs_f64())
    .fetch_one(&mut *conn)
    .await?;
    if held.is_some() {
        return Ok(held);
    }
    if recent < i64::from(gov.mass_leavers) {
        return Ok(None);
    }
    let reason = format!(
        "more than {} removals or deactivations within {}",
        gov.mass_leavers, gov.mass_window
    );
    Ok(Some(
        super::batches::open_batch(conn, actor, "leavers", &reason).await?,
    ))
}

async fn derive(
    conn: &mut PgConnection,
    profiles: &Profiles,
    actor: &Actor,
    user_id: Uuid,
    create: bool,
    hold: Option<i64>,
) -> Result<Option<i64>> {
    let Some(s) = load(conn, profiles, user_id).await? else {
        return Ok(None);
    };
    let mut records = Vec::new();
    let task = derive_subject(conn, actor, user_id, &s, create, hold, &mut records).await?;
    audit::write_all(conn, actor, records).await?;
    Ok(task)
}

/// Derives the task of a user inserted in this transaction from its document, without
/// reading it back (issue #13: round trips per create): a new user is in no group (members
/// must exist first), has no task and no confirmed account, and is nobody's rejection, so
/// its subject is known. `profile_key` is its app's profile. Returns the planned task, if
/// any, and the audit records to write with the caller's (one statement for all).
pub(super) async fn derive_created_user(
    conn: &mut PgConnection,
    profiles: &Profiles,
    actor: &Actor,
    user_id: Uuid,
    doc: &Value,
    profile_key: &str,
) -> Result<(Option<i64>, Vec<audit::Entry<'static>>)> {
    let profile = app_profile(profiles, &actor.app_id, profile_key)?;
    let s = Subject {
        desired: Some(desired_of(&profile, doc, &[])),
        basis: None,
        in_progress: None,
        open: None,
        open_batch: None,
        rejected: false,
        orphan: false,
        profile,
    };
    let mut records = Vec::new();
    let task = derive_subject(conn, actor, user_id, &s, true, None, &mut records).await?;
    Ok((task, records))
}

/// Plans, rewrites or cancels the subject's open task; the audit records of what it did
/// go to `records`, for the caller to write.
async fn derive_subject(
    conn: &mut PgConnection,
    actor: &Actor,
    user_id: Uuid,
    s: &Subject,
    create: bool,
    hold: Option<i64>,
    records: &mut Vec<audit::Entry<'static>>,
) -> Result<Option<i64>> {
    if s.orphan {
        return Ok(None);
    }
    let plan = reconcile::plan(s.desired.as_ref(), s.basis.as_ref());
    match (plan, s.open.clone()) {
        (None, None) => Ok(None),
        (None, Some(OpenTask { id: task_id, .. })) => {
            let reason = cancel_reason(&s.desired, s.in_progress);
            cancel(conn, actor, task_id, &reason).await?;
            records.push(task_entry(
                "task.cancel",
                task_id,
                user_id,
                "cancelled",
                json!({"reason": reason}),
            ));
            Ok(None)
        }
        (
            Some(plan),
            Some(OpenTask {
                id: task_id,
                kind,
                target,
            }),
        ) if kind == plan.kind && target == plan.target => Ok(Some(task_id)),
        (
            Some(plan),
            Some(OpenTask {
                id: task_id,
                kind: old_kind,
                ..
            }),
        ) => {
            let (title, steps) = s.profile.render(&plan);
            let at = place(conn, actor, s, &plan, hold).await?;
            // A changed plan needs a fresh approval; its due time follows its kind.
            sqlx::query(
                "update task set kind = $2::task_kind, title = $3, instructions = $4, changes = $5, \
                 base = $6, target = $7, completion_fields = $8, state = $9::task_state, \
                 needs_approval = $10, batch_id = $11, approved_by = null, approved_at = null, \
                 due_at = created_at + make_interval(secs => $12), sla_state = 'ok', \
                 updated_at = now() where task_id = $1",
            )
            .bind(task_id)
            .bind(plan.kind.as_str())
            .bind(&title)
            .bind(json!(steps))
            .bind(json!(plan.changes))
            .bind(json!(plan.base))
            .bind(json!(plan.target))
            .bind(json!(s.profile.completion_fields(plan.kind)))
            .bind(at.state)
            .bind(at.needs_approval)
            .bind(at.batch)
            .bind(s.profile.governance.sla(plan.kind).as_secs_f64())
            .execute(&mut *conn)
            .await?;
            super::notify_tasks(conn, &actor.app_id).await?;
            let detail =
                json!({"kind": plan.kind, "previous_kind": old_kind, "changes": plan.changes});
            records.push(task_entry(
                "task.update",
                task_id,
                user_id,
                "updated",
                detail,
            ));
            Ok(Some(task_id))
        }
        (Some(_), None) if !create => Ok(None),
        (Some(plan), None) => {
            let at = place(conn, actor, s, &plan, hold).await?;
            let Inserted {
                task_id,
                title,
                due_at,
            } = insert(conn, &actor.app_id, user_id, &plan, &s.profile, &at).await?;
            if s.rejected {
                sqlx::query("update scim_user set rejected_at = null where user_id = $1")
                    .bind(user_id)
                    .execute(&mut *conn)
                    .await?;
            }
            let payload = json!({
                "task_id": task_id, "user_id": user_id, "kind": plan.kind, "title": title,
                "state": at.state, "due_at": super::rfc3339(due_at), "batch_id": at.batch,
            });
            super::outbox::emit(
                conn,
                &actor.app_id,
                "task.created",
                Some(task_id),
                payload,
                super::outbox::PRIMARY,
            )
            .await?;
            let detail =
                json!({"kind": plan.kind, "changes": plan.changes, "waits_for": s.in_progress});
            records.push(task_entry(
                "task.create",
                task_id,
                user_id,
                "created",
                detail,
            ));
            Ok(Some(task_id))
        }
    }
}

/// A task [`insert`] planned.
pub(super) struct Inserted {
    pub task_id: i64,
    /// Its title, as the profile words it.
    pub title: String,
    /// When its SLA runs out.
    pub due_at: chrono::DateTime<chrono::Utc>,
}

/// The row of the insert: the new task's id and due time (the notification's result is
/// read only to run it).
#[derive(sqlx::FromRow)]
struct InsertedRow {
    task_id: i64,
    due_at: chrono::DateTime<chrono::Utc>,
}

/// Inserts a planned task; returns its id, title and due time.
pub(super) async fn insert(
    conn: &mut PgConnection,
    app_id: &str,
    user_id: Uuid,
    plan: &Plan,
    profile: &Profile,
    at: &Placement,
) -> Result<Inserted> {
    let (title, steps) = profile.render(plan);
    // Waiting workers are woken (LISTEN/NOTIFY, delivered at commit) by the same
    // statement: one round trip fewer on every create.
    let row: InsertedRow = sqlx::query_as(
        "with t as (insert into task (app_id, user_id, kind, title, instructions, changes, base, \
         target, completion_fields, state, needs_approval, batch_id, due_at) \
         values ($1, $2, $3::task_kind, $4, $5, $6, $7, $8, $9, $10::task_state, $11, $12, \
                 now() + make_interval(secs => $13)) returning task_id, due_at) \
         select t.task_id, t.due_at, pg_notify($14, $1)::text as notified from t",
    )
    .bind(app_id)
    .bind(user_id)
    .bind(plan.kind.as_str())
    .bind(&title)
    .bind(json!(steps))
    .bind(json!(plan.changes))
    .bind(json!(plan.base))
    .bind(json!(plan.target))
    .bind(json!(profile.completion_fields(plan.kind)))
    .bind(at.state)
    .bind(at.needs_approval)
    .bind(at.batch)
    .bind(profile.governance.sla(plan.kind).as_secs_f64())
    .bind(super::TASKS_CHANNEL)
    .fetch_one(conn)
    .await?;
    super::wake_locally(app_id);
    Ok(Inserted {
        task_id: row.task_id,
        title,
        due_at: row.due_at,
    })
}

/// Why an open task is no longer needed, in words for the admin reading the history.
fn cancel_reason(desired: &Option<Account>, in_progress: Option<i64>) -> String {
    match (desired, in_progress) {
        (None, None) => "The user was deleted in the IdP before the app account was created; \
                         there is nothing to do."
            .into(),
        (Some(d), None) if !d.active => "The user was deactivated in the IdP before the app \
                                         account was created; there is nothing to do."
            .into(),
        (_, Some(id)) => format!(
            "The IdP's latest change undid this one: once task #{id} is done the app has what \
             the IdP wants."
        ),
        (_, None) => "The IdP's latest change undid this one: the app already has what the IdP \
                      wants."
            .into(),
    }
}
