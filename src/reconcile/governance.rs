//! Governance rules of an app profile, pure: how long each kind of task may take (SLA),
//! when reminders repeat, which changes need an admin's approval, and when a burst of
//! changes is held for review instead of queued (the mass-change guard).

use std::time::Duration;

use serde::Deserialize;

use super::{Plan, TaskKind};

/// Governance settings (the `[governance]` table of a profile; every key optional).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Governance {
    /// Due times per task kind, e.g. `remove = "4h"` (`s`, `m`, `h`, `d`).
    pub sla: SlaTimes,
    /// Share of a task's time left when it becomes "due soon" (0.25: the last quarter).
    pub due_soon_share: f64,
    /// How often an overdue task is re-announced, e.g. `"1h"`.
    pub reminder_every: String,
    /// Roles whose granting waits for an admin's approval (People.ai: Admin).
    pub approval_roles: Vec<String>,
    /// More than this many removals/deactivations within `mass_window` are held as a
    /// batch for review (0 turns the guard off).
    pub mass_leavers: u32,
    /// The window of the mass-change guard, e.g. `"10m"`.
    pub mass_window: String,
    /// A single group change that would plan more tasks than this is held as a batch.
    pub group_push_max: u32,
}

/// Due times per task kind, as duration strings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlaTimes {
    /// Creating an account (joiner).
    pub create_account: String,
    /// Attribute changes (mover).
    pub update_attributes: String,
    /// Role changes.
    pub change_role: String,
    /// Deactivation (leaver).
    pub deactivate: String,
    /// Reactivation.
    pub reactivate: String,
    /// Removal (leaver).
    pub remove: String,
    /// Reviewing an account no IdP user owns (found by a snapshot).
    pub review_account: String,
}

impl Default for SlaTimes {
    /// People.ai's defaults: leavers 4 h, role changes 24 h, creations 72 h.
    fn default() -> Self {
        SlaTimes {
            create_account: "72h".into(),
            update_attributes: "24h".into(),
            change_role: "24h".into(),
            deactivate: "4h".into(),
            reactivate: "24h".into(),
            remove: "4h".into(),
            review_account: "24h".into(),
        }
    }
}

impl Default for Governance {
    fn default() -> Self {
        Governance {
            sla: SlaTimes::default(),
            due_soon_share: 0.25,
            reminder_every: "1h".into(),
            approval_roles: vec!["Admin".into()],
            mass_leavers: 20,
            mass_window: "10m".into(),
            group_push_max: 50,
        }
    }
}

/// Parses `"90s"`, `"15m"`, `"4h"`, `"3d"`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 90s, 15m, 4h or 3d"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("{s:?} is not a duration like 90s, 15m, 4h or 3d")),
    };
    if secs == 0 {
        return Err(format!("{s:?} must be longer than zero"));
    }
    Ok(Duration::from_secs(secs))
}

impl Governance {
    /// Checks every duration and share; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        for kind in TaskKind::ALL {
            parse_duration(self.sla_text(kind))
                .map_err(|e| format!("governance.sla.{}: {e}", kind.as_str()))?;
        }
        parse_duration(&self.reminder_every)
            .map_err(|e| format!("governance.reminder_every: {e}"))?;
        parse_duration(&self.mass_window).map_err(|e| format!("governance.mass_window: {e}"))?;
        if !(0.0..1.0).contains(&self.due_soon_share) {
            return Err("governance.due_soon_share must be at least 0 and below 1".into());
        }
        Ok(())
    }

    fn sla_text(&self, kind: TaskKind) -> &str {
        match kind {
            TaskKind::CreateAccount => &self.sla.create_account,
            TaskKind::UpdateAttributes => &self.sla.update_attributes,
            TaskKind::ChangeRole => &self.sla.change_role,
            TaskKind::Deactivate => &self.sla.deactivate,
            TaskKind::Reactivate => &self.sla.reactivate,
            TaskKind::Remove => &self.sla.remove,
            TaskKind::ReviewAccount => &self.sla.review_account,
        }
    }

    /// How long a task of this kind may take (validated at load; 24 h if unparsable).
    pub fn sla(&self, kind: TaskKind) -> Duration {
        parse_duration(self.sla_text(kind)).unwrap_or(Duration::from_secs(86_400))
    }

    /// How often an overdue task is re-announced.
    pub fn reminder_every(&self) -> Duration {
        parse_duration(&self.reminder_every).unwrap_or(Duration::from_secs(3600))
    }

    /// The mass-change window.
    pub fn mass_window(&self) -> Duration {
        parse_duration(&self.mass_window).unwrap_or(Duration::from_secs(600))
    }

    /// Whether this change waits for an admin: it grants a role listed in
    /// `approval_roles` that the account does not have yet (including a creation with it).
    pub fn requires_approval(&self, plan: &Plan) -> bool {
        let Some(target) = &plan.target else {
            return false;
        };
        let had = plan.base.as_ref().map(|b| b.role.as_str());
        target.active
            && self
                .approval_roles
                .iter()
                .any(|r| r.eq_ignore_ascii_case(&target.role))
            && !had.is_some_and(|h| h.eq_ignore_ascii_case(&target.role))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::reconcile::{plan, Account};

    fn acct(role: &str) -> Account {
        Account {
            user_name: "a".into(),
            email: "a@x.com".into(),
            given_name: None,
            family_name: None,
            display_name: None,
            department: None,
            role: role.into(),
            active: true,
        }
    }

    #[test]
    fn durations_parse_and_bad_ones_name_the_key() {
        assert_eq!(parse_duration("4h").unwrap(), Duration::from_secs(14_400));
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("4 hours").is_err());
        assert!(parse_duration("0m").is_err());
        let mut g = Governance::default();
        g.sla.remove = "soon".into();
        assert!(g.validate().unwrap_err().contains("governance.sla.remove"));
    }

    #[test]
    fn people_ai_defaults() {
        let g = Governance::default();
        assert_eq!(g.sla(TaskKind::Remove), Duration::from_secs(4 * 3600));
        assert_eq!(
            g.sla(TaskKind::CreateAccount),
            Duration::from_secs(72 * 3600)
        );
        assert_eq!(g.sla(TaskKind::ChangeRole), Duration::from_secs(24 * 3600));
    }

    #[test]
    fn granting_admin_needs_approval_keeping_it_does_not() {
        let g = Governance::default();
        assert!(g.requires_approval(&plan(Some(&acct("Admin")), None).unwrap()));
        assert!(g.requires_approval(&plan(Some(&acct("Admin")), Some(&acct("Standard"))).unwrap()));
        assert!(!g.requires_approval(&plan(Some(&acct("Standard")), Some(&acct("Admin"))).unwrap()));
        assert!(!g.requires_approval(&plan(Some(&acct("Standard")), None).unwrap()));
        let mut moved = acct("Admin");
        moved.email = "b@x.com".into();
        assert!(!g.requires_approval(&plan(Some(&moved), Some(&acct("Admin"))).unwrap()));
    }
}
