//! The planning rule: one task closes the difference between the account the app will
//! have (its confirmed state, or the target of the task in progress) and the account
//! the IdP wants. No difference, no task.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Account;

/// What a task asks a person or agent to do in the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// Add the account (joiner).
    CreateAccount,
    /// Change name/email/department of an existing active account (mover).
    UpdateAttributes,
    /// Change only the role of an existing active account.
    ChangeRole,
    /// Turn off sign-in for the account (leaver, reversible).
    Deactivate,
    /// Turn sign-in back on (and apply any changes made meanwhile).
    Reactivate,
    /// Remove the account (leaver, the IdP deleted the user).
    Remove,
    /// Decide about an account the app has that no IdP user owns (an orphan a snapshot
    /// found): remove it, link it to the IdP user it belongs to, or keep it. Never planned
    /// by [`plan`]; made by applying a snapshot.
    ReviewAccount,
}

impl TaskKind {
    /// Every kind, in a stable order (used for validation messages and docs).
    pub const ALL: [TaskKind; 7] = [
        TaskKind::CreateAccount,
        TaskKind::UpdateAttributes,
        TaskKind::ChangeRole,
        TaskKind::Deactivate,
        TaskKind::Reactivate,
        TaskKind::Remove,
        TaskKind::ReviewAccount,
    ];

    /// The stored and wire name (`create_account`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::CreateAccount => "create_account",
            TaskKind::UpdateAttributes => "update_attributes",
            TaskKind::ChangeRole => "change_role",
            TaskKind::Deactivate => "deactivate",
            TaskKind::Reactivate => "reactivate",
            TaskKind::Remove => "remove",
            TaskKind::ReviewAccount => "review_account",
        }
    }

    /// Parses a wire name; `None` for anything else.
    pub fn parse(s: &str) -> Option<TaskKind> {
        TaskKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Leavers first: access removal is the security-relevant work (lower runs sooner).
    pub fn priority(self) -> i32 {
        match self {
            TaskKind::Remove | TaskKind::Deactivate => 0,
            TaskKind::ChangeRole => 1,
            // As stored (migration 20261128000004: kinds it does not name rank 2).
            TaskKind::UpdateAttributes | TaskKind::Reactivate | TaskKind::ReviewAccount => 2,
            TaskKind::CreateAccount => 3,
        }
    }
}

/// One attribute that the task changes, for people to read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// Account field name (`email`, `role`, ...).
    pub field: String,
    /// Value in the app before the task (null: none).
    pub from: Value,
    /// Value in the app after the task (null: none).
    pub to: Value,
}

/// The task that closes a difference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// What kind of work it is.
    pub kind: TaskKind,
    /// What the app has when the task starts (None: no account).
    pub base: Option<Account>,
    /// What the app has once the task is done (None: no account).
    pub target: Option<Account>,
    /// Field-by-field differences between base and target.
    pub changes: Vec<Change>,
}

/// Decides the task that turns `basis` into `desired`.
///
/// `desired` is None when the IdP deleted the user; `basis` is None when the app has
/// (or will have) no account. An inactive desired user that the app never had needs no
/// account at all, which is what makes create-then-deactivate cancel the create.
pub fn plan(desired: Option<&Account>, basis: Option<&Account>) -> Option<Plan> {
    let kind = match (desired, basis) {
        (None, None) => return None,
        (None, Some(_)) => TaskKind::Remove,
        (Some(d), None) if !d.active => return None,
        (Some(_), None) => TaskKind::CreateAccount,
        (Some(d), Some(b)) => match (b.active, d.active) {
            (true, false) => TaskKind::Deactivate,
            (false, true) => TaskKind::Reactivate,
            // Attribute edits of a switched-off account wait until it is reactivated:
            // the reactivate task then carries them.
            (false, false) => return None,
            (true, true) if d == b => return None,
            (true, true) if same_but_role(d, b) => TaskKind::ChangeRole,
            (true, true) => TaskKind::UpdateAttributes,
        },
    };
    Some(Plan {
        kind,
        base: basis.cloned(),
        target: desired.cloned(),
        changes: diff(basis, desired),
    })
}

fn same_but_role(a: &Account, b: &Account) -> bool {
    Account {
        role: b.role.clone(),
        ..a.clone()
    } == *b
}

fn diff(from: Option<&Account>, to: Option<&Account>) -> Vec<Change> {
    let as_map = |a: Option<&Account>| match a.map(serde_json::to_value) {
        Some(Ok(Value::Object(m))) => m,
        _ => serde_json::Map::new(),
    };
    let (from, to) = (as_map(from), as_map(to));
    let mut fields: Vec<&String> = from.keys().chain(to.keys()).collect();
    fields.sort();
    fields.dedup();
    fields
        .into_iter()
        .filter_map(|f| {
            let (a, b) = (from.get(f), to.get(f));
            (a != b).then(|| Change {
                field: f.clone(),
                from: a.cloned().unwrap_or(Value::Null),
                to: b.cloned().unwrap_or(Value::Null),
            })
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn acct(email: &str, role: &str, active: bool) -> Account {
        Account {
            user_name: email.into(),
            email: email.into(),
            given_name: Some("Ann".into()),
            family_name: None,
            display_name: None,
            department: None,
            role: role.into(),
            active,
        }
    }

    #[test]
    fn same_account_needs_no_task() {
        let a = acct("a@x.com", "Standard", true);
        assert_eq!(plan(Some(&a), Some(&a)), None);
    }

    #[test]
    fn new_active_user_is_a_create_and_inactive_one_is_nothing() {
        let a = acct("a@x.com", "Standard", true);
        assert_eq!(plan(Some(&a), None).unwrap().kind, TaskKind::CreateAccount);
        let off = acct("a@x.com", "Standard", false);
        assert_eq!(plan(Some(&off), None), None);
    }

    #[test]
    fn role_only_is_change_role_and_more_is_update() {
        let a = acct("a@x.com", "Standard", true);
        let admin = acct("a@x.com", "Admin", true);
        let p = plan(Some(&admin), Some(&a)).unwrap();
        assert_eq!(p.kind, TaskKind::ChangeRole);
        assert_eq!(p.changes.len(), 1);
        assert_eq!(p.changes[0].field, "role");
        let moved = acct("b@x.com", "Admin", true);
        assert_eq!(
            plan(Some(&moved), Some(&a)).unwrap().kind,
            TaskKind::UpdateAttributes
        );
    }

    #[test]
    fn leavers() {
        let a = acct("a@x.com", "Standard", true);
        let off = acct("a@x.com", "Standard", false);
        assert_eq!(
            plan(Some(&off), Some(&a)).unwrap().kind,
            TaskKind::Deactivate
        );
        assert_eq!(plan(None, Some(&a)).unwrap().kind, TaskKind::Remove);
        assert_eq!(plan(None, Some(&off)).unwrap().kind, TaskKind::Remove);
        assert_eq!(plan(None, None), None);
        assert_eq!(
            plan(Some(&a), Some(&off)).unwrap().kind,
            TaskKind::Reactivate
        );
    }

    #[test]
    fn kinds_round_trip_and_leavers_come_first() {
        for k in TaskKind::ALL {
            assert_eq!(TaskKind::parse(k.as_str()), Some(k));
        }
        assert!(TaskKind::Remove.priority() < TaskKind::CreateAccount.priority());
    }
}
