//! Comparing what the app shows (a snapshot row, or its absence) with what the IdP wants
//! and what scimbridge believes, pure: the verdict per subject, the finding's words, and
//! the safeguard's rule (observed beats confirmed: the app's own list outranks what
//! whoever completed a task said; docs/snapshots.md).
//!
//! "Matches" uses the planning rule itself: the app has what the IdP wants exactly when
//! [`super::plan`] from the observed account to the desired one plans nothing. So a
//! switched-off account with an old name matches a deactivated user (planning waits for
//! a reactivation too), and fields the export has no column for never differ (the
//! observed account takes them from the desired one).

use serde::{Deserialize, Serialize};

use super::{plan, Account, Change};

/// What kind of difference a snapshot found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// The app differs from what the IdP wants (a leaver still active, a wrong role).
    Drift,
    /// The IdP wants an account the app does not have ("not found in app").
    Missing,
    /// A task completed as done is contradicted by the app: a verification failure.
    Contradiction,
    /// An account in the app that no IdP user owns.
    Orphan,
}

impl FindingKind {
    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::Drift => "drift",
            FindingKind::Missing => "missing",
            FindingKind::Contradiction => "contradiction",
            FindingKind::Orphan => "orphan",
        }
    }
}

/// A task of the subject, as far as verification needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskRef<'a> {
    /// Task id.
    pub id: i64,
    /// The account the app has once the task is done (None: no account).
    pub target: Option<&'a Account>,
}

/// Everything known about one subject when a snapshot is applied.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// What the IdP wants (None: deleted in the IdP).
    pub desired: Option<&'a Account>,
    /// What the app has per the snapshot (None: not in the export).
    pub observed: Option<&'a Account>,
    /// The unclaimed task (open, awaiting approval or held), if any.
    pub open: Option<TaskRef<'a>>,
    /// Whether someone is working a task of the subject right now.
    pub in_progress: bool,
    /// The subject's last finished task, when it was completed as done or not applicable
    /// (before the snapshot was taken) and no newer task exists.
    pub last_done: Option<TaskRef<'a>>,
}

/// What applying the snapshot does to one subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A task is being worked: the observation is recorded, tasks are left to the worker.
    InProgress {
        /// Whether the app already has what the IdP wants.
        matches: bool,
    },
    /// The app has what the IdP wants.
    Verified {
        /// The open task whose target the app already meets: closed as done.
        close: Option<i64>,
    },
    /// The app differs from what the IdP wants.
    Finding {
        /// Drift, missing or contradiction.
        kind: FindingKind,
        /// What would turn the observed account into the desired one.
        changes: Vec<Change>,
        /// The task completed as done that the app contradicts: reopened.
        reopen: Option<i64>,
    },
}

/// Decides what a snapshot means for one subject.
pub fn decide(s: &Subject<'_>) -> Verdict {
    let needed = plan(s.desired, s.observed);
    if s.in_progress {
        return Verdict::InProgress {
            matches: needed.is_none(),
        };
    }
    let Some(needed) = needed else {
        // The open task is closed only if the app meets its target; one that asks for
        // something else is re-planned by the caller (it is then nothing to do).
        let close = s
            .open
            .filter(|t| plan(t.target, s.observed).is_none())
            .map(|t| t.id);
        return Verdict::Verified { close };
    };
    let reopen = match (s.open, s.last_done) {
        (None, Some(done)) if plan(done.target, s.observed).is_some() => Some(done.id),
        _ => None,
    };
    let kind = match (reopen, s.observed) {
        (Some(_), _) => FindingKind::Contradiction,
        (None, None) => FindingKind::Missing,
        (None, Some(_)) => FindingKind::Drift,
    };
    Verdict::Finding {
        kind,
        changes: needed.changes,
        reopen,
    }
}

/// What identifies a finding across snapshots: the difference itself (the same
/// difference seen again is the same finding, whichever snapshot shows it).
pub fn fingerprint(kind: FindingKind, changes: &[Change]) -> String {
    let kind = match kind {
        // A reopened task's difference, seen again while the task is open, is the same
        // finding as when it was first found.
        FindingKind::Contradiction | FindingKind::Drift => "drift",
        other => other.as_str(),
    };
    format!(
        "{kind}:{}",
        serde_json::to_string(changes).unwrap_or_default()
    )
}

/// Where and when a snapshot saw something, for the words of a finding.
#[derive(Debug, Clone, Copy)]
pub struct Seen<'a> {
    /// The app's name (`People.ai`).
    pub app: &'a str,
    /// The snapshot's id.
    pub snapshot: i64,
    /// The day the export was taken (`2026-12-05`).
    pub date: &'a str,
}

/// The finding in words, e.g. "still active in People.ai on 2026-12-05 per snapshot #3".
pub fn finding_text(
    kind: FindingKind,
    observed: Option<&Account>,
    desired: Option<&Account>,
    changes: &[Change],
    seen: Seen<'_>,
    reopened: Option<i64>,
) -> String {
    let Seen {
        app,
        snapshot,
        date,
    } = seen;
    let per = format!("in {app} on {date} per snapshot #{snapshot}");
    let what = match (observed, desired) {
        (None, _) => format!("not found {per}"),
        (Some(o), None) if o.active => format!("still active {per} (deleted in the IdP)"),
        (Some(_), None) => format!("still present (inactive) {per} (deleted in the IdP)"),
        (Some(o), Some(d)) if o.active && !d.active => format!("still active {per}"),
        (Some(o), Some(d)) if !o.active && d.active => format!("inactive {per}"),
        (Some(_), Some(_)) => {
            let parts: Vec<String> = changes
                .iter()
                .filter(|c| c.field != "active")
                .map(|c| {
                    format!(
                        "{} is {} (the IdP wants {})",
                        c.field,
                        show(&c.from),
                        show(&c.to)
                    )
                })
                .collect();
            format!("{} {per}", parts.join(", "))
        }
    };
    match (kind, reopened) {
        (FindingKind::Orphan, _) => format!("{what}: no IdP user has this account"),
        (FindingKind::Contradiction, Some(t)) => {
            format!("Verification failed: {what}, although task #{t} was completed as done")
        }
        _ => what,
    }
}

fn show(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "(none)".into(),
        serde_json::Value::String(s) => format!("\"{s}\""),
        other => other.to_string(),
    }
}

/// What a snapshot would do, counted before anything is applied (the preview).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// Rows of the export.
    pub rows: u64,
    /// Rows that belong to an IdP user.
    pub matched: u64,
    /// Subjects whose account is as the IdP wants.
    pub verified: u64,
    /// Open tasks the app already meets (closed as done).
    pub closes: u64,
    /// Accounts that differ from what the IdP wants.
    pub drift: u64,
    /// Accounts the IdP wants that the app does not have.
    pub missing: u64,
    /// Tasks done that the app contradicts (reopened).
    pub contradictions: u64,
    /// Accounts no IdP user owns.
    pub orphans: u64,
    /// Subjects left alone because a task of theirs is being worked.
    pub in_progress: u64,
    /// Subjects left alone because they changed after the export was taken.
    pub stale: u64,
}

impl Tally {
    /// Counts one verdict.
    pub fn add(&mut self, v: &Verdict) {
        match v {
            Verdict::InProgress { .. } => self.in_progress += 1,
            Verdict::Verified { close } => {
                self.verified += 1;
                self.closes += u64::from(close.is_some());
            }
            Verdict::Finding { kind, .. } => match kind {
                FindingKind::Drift => self.drift += 1,
                FindingKind::Missing => self.missing += 1,
                FindingKind::Contradiction => self.contradictions += 1,
                FindingKind::Orphan => self.orphans += 1,
            },
        }
    }

    /// Everything the snapshot would flag: the accounts it would mark as different,
    /// missing, contradicted or unowned.
    pub fn flagged(&self) -> u64 {
        self.drift + self.missing + self.contradictions + self.orphans
    }

    /// Why the safeguard holds this snapshot for an admin, or None to apply it: it is
    /// empty, has columns the profile does not name, or would flag more than
    /// `threshold` of its matched accounts.
    pub fn hold_reason(&self, threshold: f64, unknown_columns: &[String]) -> Option<String> {
        if self.rows == 0 {
            return Some(
                "the snapshot is empty: applying it would mark every account as missing".into(),
            );
        }
        if !unknown_columns.is_empty() {
            return Some(format!(
                "the export has columns the profile does not name ({}): has its format changed?",
                unknown_columns.join(", ")
            ));
        }
        let limit = threshold * self.matched.max(1) as f64;
        if self.flagged() as f64 > limit {
            return Some(format!(
                "it would flag {} accounts ({} drift, {} missing, {} contradicted, {} orphans), \
                 more than {:.0} % of the {} matched",
                self.flagged(),
                self.drift,
                self.missing,
                self.contradictions,
                self.orphans,
                threshold * 100.0,
                self.matched
            ));
        }
        None
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
