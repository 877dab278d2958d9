//! Turning store records into what templates print: labels in words, times, accounts side
//! by side, audit records as sentences. Pure functions, so templates stay free of logic
//! and everything they show is computed (and tested) here.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::db::audit::Record;
use crate::reconcile::{TaskKind, TaskState};

/// Percent-encodes a URL query value (everything but RFC 3986 unreserved characters).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A query string from pairs, leaving out empty values: `?a=1&b=x%20y`.
pub fn query(pairs: &[(&str, Option<&str>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| {
            v.filter(|v| !v.is_empty())
                .map(|v| format!("{k}={}", encode(v)))
        })
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// A point in time as pages show it: machine-readable and in words.
#[derive(Debug, Clone)]
pub struct Time {
    /// RFC 3339, for `<time datetime>`.
    pub iso: String,
    /// `2026-11-28 10:42 UTC`.
    pub text: String,
    /// `3 h ago`, `in 12 min`.
    pub relative: String,
}

impl Time {
    /// Formats `t` relative to now.
    pub fn of(t: DateTime<Utc>) -> Time {
        Time::relative_to(t, Utc::now())
    }

    fn relative_to(t: DateTime<Utc>, now: DateTime<Utc>) -> Time {
        let secs = (now - t).num_seconds();
        let span = duration(secs.unsigned_abs() as f64);
        let relative = if secs.abs() < 60 {
            "just now".to_owned()
        } else if secs > 0 {
            format!("{span} ago")
        } else {
            format!("in {span}")
        };
        Time {
            iso: crate::db::rfc3339(t),
            text: t.format("%Y-%m-%d %H:%M UTC").to_string(),
            relative,
        }
    }

    /// Only the clock time, `10:42 UTC` (for leases, which last minutes).
    pub fn clock(t: DateTime<Utc>) -> String {
        t.format("%H:%M UTC").to_string()
    }
}

/// A duration in the largest unit that fits: `45 s`, `12 min`, `3.5 h`, `2.0 d`.
pub fn duration(secs: f64) -> String {
    if secs < 60.0 {
        format!("{secs:.0} s")
    } else if secs < 3600.0 {
        format!("{:.0} min", secs / 60.0)
    } else if secs < 86_400.0 {
        format!("{:.1} h", secs / 3600.0)
    } else {
        format!("{:.1} d", secs / 86_400.0)
    }
}

/// What a task kind asks, in words.
pub fn kind_label(k: TaskKind) -> &'static str {
    match k {
        TaskKind::CreateAccount => "Create account",
        TaskKind::UpdateAttributes => "Update details",
        TaskKind::ChangeRole => "Change role",
        TaskKind::Deactivate => "Deactivate",
        TaskKind::Reactivate => "Reactivate",
        TaskKind::Remove => "Remove",
        TaskKind::ReviewAccount => "Review account",
    }
}

/// Leavers (removals, deactivations) go first and are marked as such.
pub fn is_leaver(k: TaskKind) -> bool {
    match k {
        TaskKind::Remove | TaskKind::Deactivate => true,
        TaskKind::CreateAccount
        | TaskKind::UpdateAttributes
        | TaskKind::ChangeRole
        | TaskKind::Reactivate
        | TaskKind::ReviewAccount => false,
    }
}

/// A user's provisioning state (`pending`, `synced`, `failed`, `rejected`) in words;
/// task states have theirs in [`TaskState::label`].
pub fn user_state_label(s: &str) -> &str {
    match s {
        "pending" => "Pending",
        "synced" => "Synced",
        "failed" => "Failed",
        "rejected" => "Rejected",
        // The store computes the word; a new one shows as itself rather than as a guess.
        other => other,
    }
}

/// A due-date badge: `overdue` or `due-soon` (CSS classes), with the due time.
#[derive(Debug, Clone)]
pub struct DueBadge {
    /// CSS class.
    pub class: &'static str,
    /// What it says.
    pub label: String,
}

/// The badge of a task still waiting for someone, from the SLA sweeper's mark (a past
/// due date counts as overdue even before the next sweep). None when on time, finished
/// or without a due date.
pub fn due_badge(
    state: TaskState,
    sla_state: &str,
    due_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<DueBadge> {
    let due = due_at?;
    if !state.is_in(&TaskState::UNFINISHED) {
        return None;
    }
    let when = due.format("%Y-%m-%d %H:%M UTC");
    if due <= now || sla_state == "overdue" {
        Some(DueBadge {
            class: "overdue",
            label: format!("Overdue since {when}"),
        })
    } else if sla_state == "due_soon" {
        Some(DueBadge {
            class: "due-soon",
            label: format!("Due {when}"),
        })
    } else {
        None
    }
}

/// One attribute of an account, as the app should have it and as it has it.
#[derive(Debug, Clone)]
pub struct SideRow {
    /// Attribute in words.
    pub label: &'static str,
    /// The value the IdP wants (`—` for none).
    pub desired: String,
    /// The value the app is known to have.
    pub confirmed: String,
    /// Whether the two differ (highlighted).
    pub differs: bool,
    /// What the last snapshot of the app's user list showed (None: no snapshot yet).
    pub observed: Option<String>,
    /// Whether that differs from what the IdP wants (highlighted).
    pub observed_differs: bool,
}

/// Account attributes in the order people read them, with their labels.
pub const ACCOUNT_FIELDS: [(&str, &str); 8] = [
    ("user_name", "userName"),
    ("email", "Email"),
    ("given_name", "Given name"),
    ("family_name", "Family name"),
    ("display_name", "Display name"),
    ("department", "Department"),
    ("role", "Role"),
    ("active", "Active"),
];

/// The label of an account attribute (`given_name` → `Given name`); unknown keys as given.
pub fn field_label(key: &str) -> String {
    ACCOUNT_FIELDS
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, label)| (*label).to_owned())
        .unwrap_or_else(|| key.to_owned())
}

/// A JSON value as people read it: strings bare, booleans yes/no, nothing as `—`.
pub fn show(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "—".into(),
        Some(Value::String(s)) if s.is_empty() => "—".into(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(true)) => "yes".into(),
        Some(Value::Bool(false)) => "no".into(),
        Some(other) => other.to_string(),
    }
}

/// Desired and confirmed account side by side (either may be absent: no account).
pub fn side_by_side(desired: Option<&Value>, confirmed: Option<&Value>) -> Vec<SideRow> {
    let get = |acc: Option<&Value>, key: &str| -> String {
        match acc {
            None | Some(Value::Null) => "(no account)".into(),
            Some(a) => show(a.get(key)),
        }
    };
    ACCOUNT_FIELDS
        .iter()
        .map(|(key, label)| {
            let d = get(desired, key);
            let c = get(confirmed, key);
            SideRow {
                label,
                differs: d != c,
                desired: d,
                confirmed: c,
                observed: None,
                observed_differs: false,
            }
        })
        .collect()
}

/// Adds what the last snapshot showed (`observed`: `{"key", "active", "fields"}`, None
/// when the account was not in it) to desired and confirmed. Fields the export has no
/// column for read "not in export": a snapshot says nothing about them.
pub fn with_observed(mut rows: Vec<SideRow>, observed: Option<&Value>) -> Vec<SideRow> {
    for (row, (key, _)) in rows.iter_mut().zip(ACCOUNT_FIELDS.iter()) {
        let (text, compared) = match observed {
            None | Some(Value::Null) => ("(not in the app)".to_owned(), true),
            Some(o) if *key == "active" => (show(o.get("active")), true),
            Some(o) => match o.get("fields").and_then(|f| f.get(*key)) {
                Some(v) => (show(Some(v)), true),
                None => ("(not in export)".to_owned(), false),
            },
        };
        let same = text.eq_ignore_ascii_case(&row.desired)
            || (row.desired == "(no account)" && text == "(not in the app)");
        row.observed_differs = compared && !same;
        row.observed = Some(text);
    }
    rows
}

/// One audit record as a line of a trail.
#[derive(Debug, Clone)]
pub struct TrailRow {
    /// When.
    pub at: Time,
    /// Who (token name and role).
    pub who: String,
    /// What happened, in words.
    pub what: String,
    /// Details worth reading (note, recorded fields, reason).
    pub detail: String,
    /// The task concerned, for a link.
    pub task_id: Option<i64>,
    /// The request id, for matching logs.
    pub request_id: String,
}

/// Audit records in words.
pub fn trail(records: &[Record]) -> Vec<TrailRow> {
    records
        .iter()
        .map(|r| {
            let task = r.task_id.map(|t| format!(" task #{t}")).unwrap_or_default();
            let what = match r.action.as_str() {
                "user.create" => "Created by the IdP".to_owned(),
                "user.replace" | "user.patch" if r.outcome == "unchanged" => {
                    "Sent again by the IdP, unchanged".to_owned()
                }
                "user.replace" | "user.patch" => "Changed by the IdP".to_owned(),
                "user.delete" => "Deleted by the IdP".to_owned(),
                "task.create" => format!("Planned{task}"),
                "task.update" => format!("Re-planned{task}"),
                "task.cancel" => format!("Cancelled{task}"),
                "task.claim" => format!("Claimed{task}"),
                "task.lease_expired" => format!("Lease lapsed on{task}"),
                "task.release" => format!("Released{task}"),
                "task.retry" => format!("Retried{task}"),
                "task.fail" => format!("Failed{task}"),
                "task.complete" if r.outcome == "not_applicable" => {
                    format!("Closed{task} as not applicable")
                }
                "task.complete" => format!("Completed{task}"),
                "task.reassign" if r.outcome == "released" => {
                    format!("Taken back to the queue{task}")
                }
                "task.reassign" => format!("Reassigned{task}"),
                "task.ticket" => format!("Ticket linked to{task}"),
                "task.ticket_done" => format!("Ticket's status did not close{task}"),
                other => format!("{other}{task} ({})", r.outcome),
            };
            TrailRow {
                at: Time::of(r.at),
                who: format!("{} ({})", r.actor, r.actor_role),
                what,
                detail: detail(&r.detail),
                task_id: r.task_id,
                request_id: r.request_id.clone().unwrap_or_default(),
            }
        })
        .collect()
}

/// The readable parts of an audit record's detail: note, reason, recorded fields, files.
fn detail(d: &Value) -> String {
    let mut parts = Vec::new();
    for key in ["note", "reason", "cancel_reason"] {
        if let Some(s) = d.get(key).and_then(Value::as_str).filter(|s| !s.is_empty()) {
            parts.push(s.to_owned());
        }
    }
    if let Some(Value::Object(fields)) = d.get("fields") {
        for (k, v) in fields {
            parts.push(format!("{k}: {}", show(Some(v))));
        }
    }
    if let Some(Value::Array(files)) = d.get("attachments") {
        let names: Vec<String> = files.iter().map(|f| show(Some(f))).collect();
        if !names.is_empty() {
            parts.push(format!("files: {}", names.join(", ")));
        }
    }
    if let Some(n) = d.get("new_task").and_then(Value::as_i64) {
        parts.push(format!("new task #{n}"));
    }
    parts.join(" · ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn query_values_are_encoded_and_empty_ones_left_out() {
        assert_eq!(
            query(&[
                ("q", Some("ann lee&x=1")),
                ("kind", None),
                ("state", Some(""))
            ]),
            "?q=ann%20lee%26x%3D1"
        );
        assert_eq!(query(&[("q", None)]), "");
    }

    #[test]
    fn times_read_relative_to_now() {
        let now = Utc::now();
        let t = Time::relative_to(now - chrono::Duration::minutes(90), now);
        assert_eq!(t.relative, "1.5 h ago");
        let t = Time::relative_to(now + chrono::Duration::minutes(12), now);
        assert_eq!(t.relative, "in 12 min");
    }

    #[test]
    fn accounts_side_by_side_mark_differences() {
        let d = json!({"user_name": "ann", "email": "ann@x", "role": "Admin", "active": true});
        let rows = side_by_side(Some(&d), None);
        assert!(rows.iter().all(|r| r.confirmed == "(no account)"));
        let rows = side_by_side(Some(&d), Some(&d));
        assert!(rows.iter().all(|r| !r.differs));
        assert_eq!(rows[7].desired, "yes");
    }

    #[test]
    fn due_badges_mark_late_and_soon_work_only() {
        let now = Utc::now();
        let past = Some(now - chrono::Duration::hours(1));
        let soon = Some(now + chrono::Duration::hours(1));
        assert_eq!(
            due_badge(TaskState::Open, "ok", past, now).unwrap().class,
            "overdue"
        );
        assert_eq!(
            due_badge(TaskState::Open, "due_soon", soon, now)
                .unwrap()
                .class,
            "due-soon"
        );
        assert!(due_badge(TaskState::Open, "ok", soon, now).is_none());
        assert!(due_badge(TaskState::Done, "overdue", past, now).is_none());
        assert!(due_badge(TaskState::Open, "ok", None, now).is_none());
    }

    #[test]
    fn audit_details_read_as_words() {
        let d = json!({"note": "done", "fields": {"seat_freed": "yes"}, "attachments": ["a.png"]});
        assert_eq!(detail(&d), "done · seat_freed: yes · files: a.png");
    }
}
