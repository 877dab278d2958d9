//! Applying a snapshot (the *observed* state, which beats what was confirmed when a task
//! was completed: see docs/snapshots.md): every row is matched to its
//! subject, compared with what the IdP wants ([`crate::reconcile::verify`]), and the
//! result recorded, in batches of [`BATCH`] subjects with one transaction each.
//!
//! Two passes over the same code: a dry one counts what applying would do (the preview
//! the safeguard judges), and, unless the snapshot is held, the real one. The real pass
//! locks each batch's subjects in id order (the order every write uses) and decides
//! again under the locks, so what it does is right even if the preview went stale.
//!
//! A subject the snapshot already reached (`observed_snapshot`), or whose state changed
//! after the export was taken (a task confirmed, a newer snapshot), is skipped: applying
//! again after an interruption finishes the job, and an old export cannot undo newer
//! knowledge.

mod act;
mod load;

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::PgConnection;
use uuid::Uuid;

use super::audit;
use super::snapshots::{snapshot_entry, Snapshot};
use super::Store;
use crate::auth::Actor;
use crate::error::Result;

/// One staged row of a snapshot, as the reconcile pass reads it back in line order.
#[derive(sqlx::FromRow)]
struct StagedRow {
    match_key: String,
    line: i64,
    observed: Value,
    /// The IdP user the row was matched to, once matched.
    subject_id: Option<Uuid>,
}
use crate::reconcile::snapshot::{Field, Observed};
use crate::reconcile::verify::{decide, finding_text, FindingKind, Seen, Tally, TaskRef, Verdict};
use crate::reconcile::{Account, Profile};
use load::Loaded;

/// Subjects per transaction.
const BATCH: i64 = 500;

/// Flagged accounts listed in a preview (the counts cover all).
const PREVIEW_LIST: usize = 200;

/// What every batch of one snapshot needs.
struct Ctx<'a> {
    id: i64,
    app_id: &'a str,
    profile: &'a Profile,
    taken_at: DateTime<Utc>,
    date: String,
    key: Field,
}

impl Ctx<'_> {
    fn seen(&self) -> Seen<'_> {
        Seen {
            app: &self.profile.display_name,
            snapshot: self.id,
            date: &self.date,
        }
    }

    /// The snapshot as evidence of a lifecycle transition.
    fn evidence(&self) -> crate::db::lifecycle::SnapshotEvidence<'_> {
        crate::db::lifecycle::SnapshotEvidence {
            app_id: self.app_id,
            profile: self.profile,
            snapshot: self.id,
            taken_at: self.taken_at,
        }
    }

    /// The match key of an account (lower case).
    fn key_of(&self, a: &Account) -> String {
        match self.key {
            Field::UserName => a.user_name.to_lowercase(),
            _ => a.email.to_lowercase(),
        }
    }
}

/// The outcome for one subject, with what is needed to act on it.
#[derive(Debug)]
enum Outcome {
    /// Already reached by this snapshot (an earlier, interrupted application).
    Done,
    /// Changed after the export was taken.
    Stale,
    /// An IdP user (or a deleted one) compared with the app.
    User(Verdict),
    /// An account no IdP user owns; `new` when it needs a review (again).
    Orphan { new: bool },
    /// An orphan account is no longer in the app.
    Gone,
    /// An orphan account a review decided to keep.
    Kept,
}

/// Counts and the preview list of one pass.
#[derive(Debug, Default)]
struct Pass {
    tally: Tally,
    flagged: Vec<Value>,
}

impl Pass {
    fn note(&mut self, outcome: &Outcome, line: Option<i64>, key: &str, text: Option<String>) {
        let kind = match outcome {
            Outcome::Done => return,
            Outcome::Stale => {
                self.tally.stale += 1;
                return;
            }
            Outcome::User(v) => {
                self.tally.add(v);
                match v {
                    Verdict::Finding { kind, .. } => *kind,
                    _ => return,
                }
            }
            Outcome::Orphan { .. } => {
                self.tally.orphans += 1;
                FindingKind::Orphan
            }
            Outcome::Gone | Outcome::Kept => {
                self.tally.verified += 1;
                return;
            }
        };
        if self.flagged.len() < PREVIEW_LIST {
            self.flagged.push(json!({
                "key": key, "row": line, "finding": kind, "text": text,
            }));
        }
    }
}

impl Store {
    /// Compares a received (or confirmed) snapshot with the app's subjects: counts first,
    /// then holds it for an admin (unless `confirmed`, an admin's decision) or applies it.
    pub async fn reconcile_snapshot(
        &self,
        actor: &Actor,
        id: i64,
        confirmed: bool,
    ) -> Result<Snapshot> {
        let profile = self.app_profile(&actor.app_id).await?;
        let (taken_at, unknown): (DateTime<Utc>, Vec<String>) =
            sqlx::query_as("select taken_at, unknown_columns from snapshot where snapshot_id = $1")
                .bind(id)
                .fetch_one(&self.pool)
                .await?;
        let key = profile.snapshot.key_field().unwrap_or(Field::Email);
        let ctx = Ctx {
            id,
            app_id: &actor.app_id,
            profile: &profile,
            taken_at,
            date: taken_at.format("%Y-%m-%d").to_string(),
            key,
        };
        let preview = self.pass(actor, &ctx, false).await?;
        let mut tally = preview.tally.clone();
        let (rows,): (i64,) =
            sqlx::query_as("select coalesce(row_count, 0) from snapshot where snapshot_id = $1")
                .bind(id)
                .fetch_one(&self.pool)
                .await?;
        tally.rows = rows as u64;
        let preview_doc = json!({"tally": tally, "flagged": preview.flagged});
        let hold = if confirmed {
            None
        } else {
            tally.hold_reason(profile.snapshot.threshold, &unknown)
        };
        if let Some(reason) = hold {
            let mut tx = self.pool.begin().await?;
            sqlx::query(
                "update snapshot set state = 'held', hold_reason = $2, preview = $3 where snapshot_id = $1",
            )
            .bind(id)
            .bind(&reason)
            .bind(&preview_doc)
            .execute(&mut *tx)
            .await?;
            super::outbox::emit(
                &mut tx,
                &actor.app_id,
                "snapshot.held",
                None,
                json!({"snapshot_id": id, "reason": reason, "tally": tally}),
                super::outbox::PRIMARY,
            )
            .await?;
            audit::write(
                &mut tx,
                actor,
                snapshot_entry(
                    "snapshot.held",
                    id,
                    "held",
                    json!({"reason": reason, "tally": tally}),
                ),
            )
            .await?;
            tx.commit().await?;
            return self.snapshot(&actor.app_id, id).await;
        }
        sqlx::query("update snapshot set state = 'applying', preview = $2, progress_at = now() where snapshot_id = $1")
            .bind(id)
            .bind(&preview_doc)
            .execute(&self.pool)
            .await?;
        let applied = self.pass(actor, &ctx, true).await?;
        let mut summary = applied.tally;
        summary.rows = rows as u64;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "update snapshot set state = 'applied', summary = $2, applied_at = now(), progress_at = now() \
             where snapshot_id = $1",
        )
        .bind(id)
        .bind(json!(summary))
        .execute(&mut *tx)
        .await?;
        super::outbox::emit(
            &mut tx,
            &actor.app_id,
            "snapshot.applied",
            None,
            json!({"snapshot_id": id, "summary": summary}),
            super::outbox::PRIMARY,
        )
        .await?;
        audit::write(
            &mut tx,
            actor,
            snapshot_entry("snapshot.apply", id, "applied", json!({"summary": summary})),
        )
        .await?;
        tx.commit().await?;
        self.snapshot(&actor.app_id, id).await
    }

    /// One pass over the snapshot's rows, then over the subjects it has no row for.
    async fn pass(&self, actor: &Actor, ctx: &Ctx<'_>, apply: bool) -> Result<Pass> {
        let mut pass = Pass::default();
        let mut after: i64 = 0;
        loop {
            let rows: Vec<StagedRow> = sqlx::query_as(
                "select match_key, line, observed, subject_id from snapshot_row \
                 where snapshot_id = $1 and line > $2 order by line limit $3",
            )
            .bind(ctx.id)
            .bind(after)
            .bind(BATCH)
            .fetch_all(&self.pool)
            .await?;
            let Some(last) = rows.last() else { break };
            after = last.line;
            let mut tx = self.pool.begin().await?;
            self.rows_batch(&mut tx, actor, ctx, rows, apply, &mut pass)
                .await?;
            if apply {
                progress(&mut tx, ctx.id).await?;
                tx.commit().await?;
            } else {
                // The dry pass keeps only the matches it made (for the real pass and
                // for finding the subjects the file has no row for).
                tx.commit().await?;
            }
        }
        let mut after = Uuid::nil();
        loop {
            let ids: Vec<Uuid> = sqlx::query_scalar(
                "select u.user_id from scim_user u \
                 where u.app_id = $1 and u.user_id > $2 \
                   and (u.deleted_at is null \
                        or (u.subject_kind = 'user' and u.confirmed is not null) \
                        or (u.subject_kind = 'account' and (u.resolution is null or u.resolution = 'kept'))) \
                   and not exists (select 1 from snapshot_row r where r.snapshot_id = $3 and r.subject_id = u.user_id) \
                 order by u.user_id limit $4",
            )
            .bind(ctx.app_id)
            .bind(after)
            .bind(ctx.id)
            .bind(BATCH)
            .fetch_all(&self.pool)
            .await?;
            let Some(last) = ids.last() else { break };
            after = *last;
            let mut tx = self.pool.begin().await?;
            if apply {
                lock(&mut tx, &ids).await?;
            }
            let subjects = load::subjects(&mut tx, ctx, &ids).await?;
            for s in &subjects {
                let outcome = absent(ctx, s);
                let text = outcome_text(ctx, s, None, &outcome);
                pass.note(&outcome, None, &s.key_hint(ctx), text.clone());
                if apply {
                    act::act(&mut tx, &self.profiles, actor, ctx, s, None, &outcome, text).await?;
                }
            }
            if apply {
                progress(&mut tx, ctx.id).await?;
            }
            tx.commit().await?;
        }
        Ok(pass)
    }

    async fn rows_batch(
        &self,
        tx: &mut PgConnection,
        actor: &Actor,
        ctx: &Ctx<'_>,
        rows: Vec<StagedRow>,
        apply: bool,
        pass: &mut Pass,
    ) -> Result<()> {
        let unmatched: Vec<String> = rows
            .iter()
            .filter(|r| r.subject_id.is_none())
            .map(|r| r.match_key.clone())
            .collect();
        let mut matched: HashMap<String, Uuid> = rows
            .iter()
            .filter_map(|r| r.subject_id.map(|s| (r.match_key.clone(), s)))
            .collect();
        if !unmatched.is_empty() {
            let found = self.match_keys(tx, ctx, &unmatched).await?;
            let keys: Vec<&String> = found.keys().collect();
            let ids: Vec<Uuid> = keys.iter().map(|k| found[*k]).collect();
            sqlx::query(
                "update snapshot_row r set subject_id = x.s from unnest($2::text[], $3::uuid[]) as x(k, s) \
                 where r.snapshot_id = $1 and r.match_key = x.k",
            )
            .bind(ctx.id)
            .bind(&keys)
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
            matched.extend(found);
        }
        let mut ids: Vec<Uuid> = matched.values().copied().collect();
        ids.sort();
        if apply {
            lock(tx, &ids).await?;
        }
        let subjects: HashMap<Uuid, Loaded> = load::subjects(tx, ctx, &ids)
            .await?
            .into_iter()
            .map(|s| (s.id, s))
            .collect();
        for StagedRow {
            match_key: key,
            line,
            observed,
            ..
        } in &rows
        {
            let Ok(obs) = serde_json::from_value::<Observed>(observed.clone()) else {
                continue;
            };
            let subject = matched.get(key).and_then(|id| subjects.get(id));
            if subject.is_some_and(|s| !s.orphan) {
                pass.tally.matched += 1;
            }
            let outcome = match subject {
                Some(s) => present(ctx, s, &obs),
                None => Outcome::Orphan { new: true },
            };
            let text = match subject {
                Some(s) => outcome_text(ctx, s, Some(&obs), &outcome),
                None => Some(orphan_text(ctx, &obs)),
            };
            pass.note(&outcome, Some(*line), key, text.clone());
            if apply {
                match subject {
                    Some(s) => {
                        act::act(
                            tx,
                            &self.profiles,
                            actor,
                            ctx,
                            s,
                            Some(&obs),
                            &outcome,
                            text,
                        )
                        .await?
                    }
                    None => act::new_orphan(tx, actor, ctx, &obs, text.unwrap_or_default()).await?,
                }
            }
        }
        Ok(())
    }

    /// The subject each key belongs to: a live user whose app account has the key, else
    /// a live user who should have it, else a deleted user whose account had it, else
    /// an orphan account seen before. A subject matched by an earlier row is not matched
    /// again (the later row is an account of its own).
    async fn match_keys(
        &self,
        tx: &mut PgConnection,
        ctx: &Ctx<'_>,
        keys: &[String],
    ) -> Result<HashMap<String, Uuid>> {
        let field = match ctx.key {
            Field::UserName => "user_name",
            _ => "email",
        };
        let candidates: Vec<Uuid> = sqlx::query_scalar(&format!(
            "select user_id from scim_user where app_id = $1 and deleted_at is null and lower(user_name) = any($2) \
             union select user_id from scim_user where app_id = $1 and deleted_at is null and emails && $2 \
             union select user_id from scim_user where app_id = $1 and lower(confirmed->>'{field}') = any($2) \
             union select user_id from scim_user where app_id = $1 and subject_kind = 'account' and lower(user_name) = any($2)"
        ))
        .bind(ctx.app_id)
        .bind(keys)
        .fetch_all(&mut *tx)
        .await?;
        let taken: HashSet<Uuid> = sqlx::query_scalar(
            "select subject_id from snapshot_row where snapshot_id = $1 and subject_id = any($2)",
        )
        .bind(ctx.id)
        .bind(&candidates)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();
        let loaded = load::subjects(tx, ctx, &candidates).await?;
        let mut taken = taken;
        let mut out = HashMap::new();
        for k in keys {
            let confirmed_key =
                |s: &Loaded| s.confirmed.as_ref().is_some_and(|a| ctx.key_of(a) == *k);
            let desired_key = |s: &Loaded| s.desired.as_ref().is_some_and(|a| ctx.key_of(a) == *k);
            let free = |s: &&Loaded| !taken.contains(&s.id);
            let pick = loaded
                .iter()
                .filter(free)
                .find(|s| !s.orphan && !s.deleted && confirmed_key(s))
                .or_else(|| {
                    loaded
                        .iter()
                        .filter(free)
                        .find(|s| !s.orphan && !s.deleted && desired_key(s))
                })
                .or_else(|| {
                    loaded
                        .iter()
                        .filter(free)
                        .find(|s| !s.orphan && s.deleted && confirmed_key(s))
                })
                .or_else(|| {
                    loaded
                        .iter()
                        .filter(free)
                        .find(|s| s.orphan && s.user_name.to_lowercase() == *k)
                });
            if let Some(s) = pick {
                taken.insert(s.id);
                out.insert(k.clone(), s.id);
            }
        }
        Ok(out)
    }
}

/// Locks subjects in id order (the order every write takes them).
async fn lock(tx: &mut PgConnection, ids: &[Uuid]) -> Result<()> {
    sqlx::query("select 1 from scim_user where user_id = any($1) order by user_id for update")
        .bind(ids)
        .execute(tx)
        .await?;
    Ok(())
}

async fn progress(tx: &mut PgConnection, id: i64) -> Result<()> {
    sqlx::query("update snapshot set progress_at = now() where snapshot_id = $1")
        .bind(id)
        .execute(tx)
        .await?;
    Ok(())
}

/// Whether the snapshot must leave the subject alone.
fn skip(ctx: &Ctx<'_>, s: &Loaded) -> Option<Outcome> {
    if s.observed_snapshot == Some(ctx.id) {
        return Some(Outcome::Done);
    }
    let newer = |t: Option<DateTime<Utc>>| t.is_some_and(|t| t > ctx.taken_at);
    (newer(s.confirmed_at) || newer(s.observed_at)).then_some(Outcome::Stale)
}

/// A subject the export has a row for.
fn present(ctx: &Ctx<'_>, s: &Loaded, obs: &Observed) -> Outcome {
    if let Some(o) = skip(ctx, s) {
        return o;
    }
    if s.orphan {
        return match s.resolution.as_deref() {
            Some("kept") => Outcome::Kept,
            None if s.open.is_some() || s.in_progress => Outcome::Orphan { new: false },
            _ => Outcome::Orphan { new: true },
        };
    }
    let seen = s.compared(ctx, Some(obs));
    Outcome::User(decide(&s.verify_subject(seen.as_ref())))
}

/// A subject the export has no row for.
fn absent(ctx: &Ctx<'_>, s: &Loaded) -> Outcome {
    if let Some(o) = skip(ctx, s) {
        return o;
    }
    if s.orphan {
        return Outcome::Gone;
    }
    Outcome::User(decide(&s.verify_subject(None)))
}

/// The finding's words, when the outcome is one.
fn outcome_text(
    ctx: &Ctx<'_>,
    s: &Loaded,
    obs: Option<&Observed>,
    outcome: &Outcome,
) -> Option<String> {
    match outcome {
        Outcome::User(Verdict::Finding {
            kind,
            changes,
            reopen,
        }) => {
            let seen = s.compared(ctx, obs);
            Some(finding_text(
                *kind,
                seen.as_ref(),
                s.desired.as_ref(),
                changes,
                ctx.seen(),
                *reopen,
            ))
        }
        Outcome::Orphan { .. } => obs.map(|o| orphan_text(ctx, o)),
        _ => None,
    }
}

fn orphan_text(ctx: &Ctx<'_>, obs: &Observed) -> String {
    let a = obs.account(None, &ctx.profile.default_role);
    let state = if a.active { "active" } else { "inactive" };
    format!(
        "{} ({state}, role {}) is in {} on {} per snapshot #{}, but no IdP user has it",
        obs.key, a.role, ctx.profile.display_name, ctx.date, ctx.id
    )
}

impl Loaded {
    /// What verification compares: the observed account, with what the export does not
    /// show taken from the desired (else the confirmed) account.
    fn compared(&self, ctx: &Ctx<'_>, obs: Option<&Observed>) -> Option<Account> {
        obs.map(|o| {
            o.account(
                self.desired.as_ref().or(self.confirmed.as_ref()),
                &ctx.profile.default_role,
            )
        })
    }

    fn verify_subject<'a>(
        &'a self,
        observed: Option<&'a Account>,
    ) -> crate::reconcile::verify::Subject<'a> {
        crate::reconcile::verify::Subject {
            desired: self.desired.as_ref(),
            observed,
            open: self.open.as_ref().map(|(id, target)| TaskRef {
                id: *id,
                target: target.as_ref(),
            }),
            in_progress: self.in_progress,
            last_done: self.last_done.as_ref().map(|(id, target)| TaskRef {
                id: *id,
                target: target.as_ref(),
            }),
        }
    }

    fn key_hint(&self, ctx: &Ctx<'_>) -> String {
        self.confirmed
            .as_ref()
            .or(self.desired.as_ref())
            .map(|a| ctx.key_of(a))
            .unwrap_or_else(|| self.user_name.to_lowercase())
    }
}
