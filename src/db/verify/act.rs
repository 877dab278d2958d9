//! What applying a snapshot does to one subject: records the observation, closes the
//! task the app already meets, reopens a contradicted one, plans or annotates the task
//! that closes a difference, and records each new finding (with its audit record).
//! Every function runs in the caller's transaction, with the subject locked.

use serde_json::{json, Value};
use sqlx::PgConnection;
use uuid::Uuid;

use super::load::Loaded;
use super::{Ctx, Outcome};
use crate::auth::Actor;
use crate::db::audit::{self, Entry};
use crate::db::derive::{derive_user_task, insert, Inserted, Placement};
use crate::db::lifecycle::{close_verified, reopen_contradicted, task_entry};
use crate::db::outbox::{emit, PRIMARY};
use crate::error::Result;
use crate::reconcile::snapshot::Observed;
use crate::reconcile::verify::{fingerprint, FindingKind, Verdict};
use crate::reconcile::{Account, Plan, Profiles, TaskKind};

/// Acts on one subject the snapshot has a row for (`obs`) or not.
#[allow(clippy::too_many_arguments)]
pub(super) async fn act(
    tx: &mut PgConnection,
    profiles: &Profiles,
    actor: &Actor,
    ctx: &Ctx<'_>,
    s: &Loaded,
    obs: Option<&Observed>,
    outcome: &Outcome,
    text: Option<String>,
) -> Result<()> {
    // Observed beats confirmed: the app's own list replaces what a person said, for the
    // fields it shows.
    let seen = obs.map(|o| {
        o.account(
            s.confirmed.as_ref().or(s.desired.as_ref()),
            &ctx.profile.default_role,
        )
    });
    match outcome {
        Outcome::Done | Outcome::Stale => Ok(()),
        Outcome::User(Verdict::InProgress { matches }) => {
            observe(tx, ctx, s.id, obs, *matches, None).await
        }
        Outcome::User(Verdict::Verified { close }) => {
            let changed = seen != s.confirmed;
            observe(tx, ctx, s.id, obs, true, Some(seen.as_ref())).await?;
            resolve_findings(tx, ctx, s.id).await?;
            if let Some(task) = close {
                close_verified(
                    tx,
                    actor,
                    &ctx.evidence(),
                    s.id,
                    *task,
                    "the account is as this task wants it",
                )
                .await?;
            }
            if changed || s.open.is_some() {
                derive_user_task(tx, profiles, actor, s.id).await?;
            }
            Ok(())
        }
        Outcome::User(Verdict::Finding {
            kind,
            changes,
            reopen,
        }) => {
            observe(tx, ctx, s.id, obs, false, Some(seen.as_ref())).await?;
            let print = fingerprint(*kind, changes);
            if known(tx, ctx, s.id, &print).await? {
                derive_user_task(tx, profiles, actor, s.id).await?;
                return Ok(());
            }
            resolve_findings(tx, ctx, s.id).await?;
            let text = text.unwrap_or_default();
            if let Some(task) = reopen {
                reopen_contradicted(tx, actor, &ctx.evidence(), s.id, *task, &text).await?;
            }
            let task = derive_user_task(tx, profiles, actor, s.id).await?;
            record(
                tx,
                actor,
                ctx,
                s.id,
                "user",
                *kind,
                &print,
                &text,
                json!(changes),
                task,
            )
            .await
        }
        Outcome::Orphan { new } => {
            let account = obs.map(|o| o.account(None, &ctx.profile.default_role));
            observe(tx, ctx, s.id, obs, false, Some(account.as_ref())).await?;
            let print = fingerprint(FindingKind::Orphan, &[]);
            if !new && known(tx, ctx, s.id, &print).await? {
                return Ok(());
            }
            let Some(account) = account else {
                return Ok(());
            };
            sqlx::query("update scim_user set resolution = null where user_id = $1")
                .bind(s.id)
                .execute(&mut *tx)
                .await?;
            resolve_findings(tx, ctx, s.id).await?;
            let task = match s.open.as_ref() {
                Some((id, _)) => *id,
                None => review_task(tx, actor, ctx, s.id, &account).await?,
            };
            let text = text.unwrap_or_default();
            record(
                tx,
                actor,
                ctx,
                s.id,
                "account",
                FindingKind::Orphan,
                &print,
                &text,
                json!([]),
                Some(task),
            )
            .await
        }
        Outcome::Gone => {
            observe(tx, ctx, s.id, None, true, Some(None)).await?;
            resolve_findings(tx, ctx, s.id).await?;
            sqlx::query("update scim_user set resolution = 'gone' where user_id = $1")
                .bind(s.id)
                .execute(&mut *tx)
                .await?;
            if let Some((task, _)) = &s.open {
                close_verified(
                    tx,
                    actor,
                    &ctx.evidence(),
                    s.id,
                    *task,
                    "the account is no longer in the app",
                )
                .await?;
            }
            Ok(())
        }
        Outcome::Kept => observe(tx, ctx, s.id, obs, true, None).await,
    }
}

/// An account of the export that no subject has: a new orphan subject with its review
/// task and finding.
pub(super) async fn new_orphan(
    tx: &mut PgConnection,
    actor: &Actor,
    ctx: &Ctx<'_>,
    obs: &Observed,
    text: String,
) -> Result<()> {
    let account = obs.account(None, &ctx.profile.default_role);
    let id = Uuid::new_v4();
    let emails: Vec<String> = vec![account.email.to_lowercase()];
    let doc = json!({"userName": account.user_name, "emails": [{"value": account.email}]});
    sqlx::query(
        "insert into scim_user (user_id, app_id, user_name, active, emails, doc, subject_kind, \
         deleted_at, confirmed, observed, observed_at, observed_snapshot, drift) \
         values ($1, $2, $3, $4, $5, $6, 'account', now(), $7, $8, $9, $10, true)",
    )
    .bind(id)
    .bind(ctx.app_id)
    .bind(&obs.key)
    .bind(account.active)
    .bind(&emails)
    .bind(&doc)
    .bind(json!(account))
    .bind(json!(obs))
    .bind(ctx.taken_at)
    .bind(ctx.id)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "update snapshot_row set subject_id = $3 where snapshot_id = $1 and match_key = $2",
    )
    .bind(ctx.id)
    .bind(&obs.key)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    let task = review_task(tx, actor, ctx, id, &account).await?;
    let print = fingerprint(FindingKind::Orphan, &[]);
    record(
        tx,
        actor,
        ctx,
        id,
        "account",
        FindingKind::Orphan,
        &print,
        &text,
        json!([]),
        Some(task),
    )
    .await
}

/// Records what the snapshot shows. `confirmed`: Some(new confirmed account) when
/// observed beats what was confirmed, None to leave it (a task is being worked).
async fn observe(
    tx: &mut PgConnection,
    ctx: &Ctx<'_>,
    id: Uuid,
    obs: Option<&Observed>,
    verified: bool,
    confirmed: Option<Option<&Account>>,
) -> Result<()> {
    sqlx::query(
        "update scim_user set observed = $2, observed_at = $3, observed_snapshot = $4, \
         verified_at = case when $5 then $3 else verified_at end, drift = not $5, \
         confirmed = case when $6 then $7 else confirmed end where user_id = $1",
    )
    .bind(id)
    .bind(obs.map(|o| json!(o)))
    .bind(ctx.taken_at)
    .bind(ctx.id)
    .bind(verified)
    .bind(confirmed.is_some())
    .bind(confirmed.flatten().map(|a| json!(a)))
    .execute(tx)
    .await?;
    Ok(())
}

/// Whether this difference is already an open finding whose task is still unfinished
/// (then the snapshot only notes it saw it again).
async fn known(tx: &mut PgConnection, ctx: &Ctx<'_>, subject: Uuid, print: &str) -> Result<bool> {
    let seen = sqlx::query(concat!(
        "update finding f set last_seen = $3 where f.subject_id = $1 and f.fingerprint = $2 \
         and f.resolved_at is null and (f.task_id is null or exists (select 1 from task t \
         where t.task_id = f.task_id and t.state in ",
        unfinished_states!(),
        "))"
    ))
    .bind(subject)
    .bind(print)
    .bind(ctx.id)
    .execute(tx)
    .await?;
    Ok(seen.rows_affected() > 0)
}

/// Resolves the subject's open findings: the app is as wanted, or differs differently.
async fn resolve_findings(tx: &mut PgConnection, ctx: &Ctx<'_>, subject: Uuid) -> Result<()> {
    sqlx::query(
        "update finding set resolved_at = now(), resolved_by = $2 \
         where subject_id = $1 and resolved_at is null",
    )
    .bind(subject)
    .bind(ctx.id)
    .execute(tx)
    .await?;
    Ok(())
}

/// A new finding: its row, its words on the task, and its audit record.
#[allow(clippy::too_many_arguments)]
async fn record(
    tx: &mut PgConnection,
    actor: &Actor,
    ctx: &Ctx<'_>,
    subject: Uuid,
    subject_type: &'static str,
    kind: FindingKind,
    print: &str,
    text: &str,
    changes: Value,
    task: Option<i64>,
) -> Result<()> {
    let id: i64 = sqlx::query_scalar(
        "insert into finding (app_id, subject_id, kind, fingerprint, text, changes, snapshot_id, \
         last_seen, task_id) values ($1, $2, $3, $4, $5, $6, $7, $7, $8) returning finding_id",
    )
    .bind(ctx.app_id)
    .bind(subject)
    .bind(kind.as_str())
    .bind(print)
    .bind(text)
    .bind(&changes)
    .bind(ctx.id)
    .bind(task)
    .fetch_one(&mut *tx)
    .await?;
    if let Some(t) = task {
        sqlx::query(
            "update task set findings = findings || jsonb_build_array(jsonb_build_object(\
             'finding', $2::text, 'snapshot', $3::bigint, 'text', $4::text, 'at', now())), \
             updated_at = now() where task_id = $1",
        )
        .bind(t)
        .bind(kind.as_str())
        .bind(ctx.id)
        .bind(text)
        .execute(&mut *tx)
        .await?;
    }
    audit::write(
        tx,
        actor,
        Entry {
            action: "snapshot.finding",
            subject_type,
            subject_id: subject.to_string(),
            task_id: task,
            outcome: kind.as_str(),
            detail: json!({"snapshot": ctx.id, "finding": id, "text": text, "changes": changes}),
        },
    )
    .await
}

/// Plans the review of an orphan account.
async fn review_task(
    tx: &mut PgConnection,
    actor: &Actor,
    ctx: &Ctx<'_>,
    subject: Uuid,
    account: &Account,
) -> Result<i64> {
    let plan = Plan {
        kind: TaskKind::ReviewAccount,
        base: Some(account.clone()),
        target: None,
        changes: Vec::new(),
    };
    let Inserted {
        task_id: task,
        title,
        due_at,
    } = insert(
        tx,
        ctx.app_id,
        subject,
        &plan,
        ctx.profile,
        &Placement::OPEN,
    )
    .await?;
    let payload = json!({"task_id": task, "user_id": subject, "kind": plan.kind, "title": title,
        "state": "open", "due_at": crate::db::rfc3339(due_at), "batch_id": null});
    emit(tx, ctx.app_id, "task.created", Some(task), payload, PRIMARY).await?;
    audit::write(
        tx,
        actor,
        task_entry(
            "task.create",
            task,
            subject,
            "created",
            json!({"kind": plan.kind, "snapshot": ctx.id}),
        ),
    )
    .await?;
    Ok(task)
}
