//! App profiles: what one manual-only app calls its roles, how IdP groups and SCIM
//! `roles` map onto them, and the words of each task. People.ai (../PEOPLEAI.md) is
//! built in; the roles are data, not code, because People.ai's custom roles are unknown.

use serde::Serialize;

use super::{Account, Plan, TaskKind};

/// One app's configuration.
#[derive(Debug, Clone)]
pub struct Profile {
    /// Stable key stored in `app.profile`.
    pub key: String,
    /// The app's name as people know it.
    pub display_name: String,
    /// The app's roles, most privileged first (used when several sources disagree).
    pub roles: Vec<String>,
    /// Role of a user no mapping applies to.
    pub default_role: String,
    /// IdP group displayName (compared case-insensitively) → role.
    pub group_roles: Vec<(String, String)>,
}

/// A value the worker records when completing a task (the audit evidence).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct CompletionField {
    /// Key in the completion's `fields` object.
    pub name: String,
    /// Question shown to the person.
    pub label: String,
    /// Whether completing as `done` needs it.
    #[serde(default)]
    pub required: bool,
    /// Allowed answers; empty for free text.
    #[serde(default)]
    pub choices: Vec<String>,
}

impl Profile {
    /// The built-in People.ai profile: roles Admin and Standard; members of the IdP
    /// group "People.ai Admins" are Admin.
    pub fn peopleai() -> Profile {
        Profile {
            key: "peopleai".into(),
            display_name: "People.ai".into(),
            roles: vec!["Admin".into(), "Standard".into()],
            default_role: "Standard".into(),
            group_roles: vec![("People.ai Admins".into(), "Admin".into())],
        }
    }

    /// Finds a built-in profile by key.
    pub fn by_key(key: &str) -> Option<Profile> {
        (key == "peopleai").then(Profile::peopleai)
    }

    /// Whether membership of a group with this name decides a role.
    pub fn group_decides_role(&self, group_name: &str) -> bool {
        self.group_roles
            .iter()
            .any(|(g, _)| g.eq_ignore_ascii_case(group_name))
    }

    /// The user's role: the most privileged of the roles given by their groups and by
    /// the SCIM `roles` values that name a profile role; the default role otherwise.
    pub fn resolve_role<'a>(
        &self,
        group_names: impl IntoIterator<Item = &'a str>,
        scim_roles: impl IntoIterator<Item = &'a str>,
    ) -> String {
        let groups: Vec<&str> = group_names.into_iter().collect();
        let asked: Vec<&str> = scim_roles.into_iter().collect();
        let by_group = |role: &str| {
            self.group_roles.iter().any(|(g, r)| {
                r.eq_ignore_ascii_case(role) && groups.iter().any(|n| n.eq_ignore_ascii_case(g))
            })
        };
        self.roles
            .iter()
            .find(|r| by_group(r) || asked.iter().any(|a| a.eq_ignore_ascii_case(r)))
            .unwrap_or(&self.default_role)
            .clone()
    }

    /// What the worker must record when completing a task of this kind.
    pub fn completion_fields(&self, kind: TaskKind) -> Vec<CompletionField> {
        let field = |name: &str, label: &str, required: bool, choices: &[&str]| CompletionField {
            name: name.into(),
            label: label.into(),
            required,
            choices: choices.iter().map(|c| c.to_string()).collect(),
        };
        match kind {
            TaskKind::CreateAccount => vec![field(
                "app_account_id",
                "The account's id in the app (if it shows one)",
                false,
                &[],
            )],
            TaskKind::Deactivate | TaskKind::Remove => vec![
                field("seat_freed", "Was the seat (licence) freed?", true, &["yes", "no", "unknown"]),
                field(
                    "ownership_moved_to",
                    "Who now owns the user's connectors and CRM-linked records?",
                    false,
                    &[],
                ),
            ],
            TaskKind::UpdateAttributes | TaskKind::ChangeRole | TaskKind::Reactivate => Vec::new(),
        }
    }

    /// The task's title and step-by-step instructions, with the concrete values.
    pub fn render(&self, plan: &Plan) -> (String, Vec<String>) {
        let app = &self.display_name;
        let who = plan
            .target
            .as_ref()
            .or(plan.base.as_ref())
            .map(Account::label)
            .unwrap_or_default();
        let sign_in = format!("Sign in to {app} with an administrative account.");
        let open_area = "Open the administrative user-management area.".to_string();
        let open_record = |a: Option<&Account>| {
            format!(
                "Open the user record of {}.",
                a.map(|a| a.email.as_str()).unwrap_or("the user")
            )
        };
        let changes: Vec<String> = plan
            .changes
            .iter()
            .map(|c| {
                format!(
                    "Change {} from {} to {}.",
                    c.field,
                    show(&c.from),
                    show(&c.to)
                )
            })
            .collect();
        let ownership = "Review connector ownership and CRM-linked responsibilities \
            (email, calendar and CRM connectors the user owns) and move them to another owner."
            .to_string();
        let record = "Record in this task whether the seat (licence) was freed and who now \
            owns the user's connectors and records."
            .to_string();
        match (plan.kind, plan.target.as_ref()) {
            (TaskKind::CreateAccount, Some(t)) => (
                format!("Create {app} account for {who} ({}) as {}", t.email, t.role),
                vec![
                    sign_in,
                    open_area,
                    format!(
                        "Add the user by work email {} with role {}{}.",
                        t.email,
                        t.role,
                        name_clause(t)
                    ),
                    format!(
                        "If enterprise SSO is on, make sure {} is assigned to the {app} app \
                         in the IdP before their first login.",
                        t.user_name
                    ),
                    "Complete this task; record the account's id in the app if it shows one."
                        .into(),
                ],
            ),
            (TaskKind::ChangeRole, Some(t)) => (
                format!("Change {app} role of {who} ({}) to {}", t.email, t.role),
                [vec![sign_in, open_record(plan.base.as_ref())], changes].concat(),
            ),
            (TaskKind::UpdateAttributes, _) => (
                format!("Update {app} account of {who}"),
                [vec![sign_in, open_record(plan.base.as_ref())], changes].concat(),
            ),
            (TaskKind::Reactivate, _) => (
                format!("Reactivate {app} account of {who}"),
                [
                    vec![
                        sign_in,
                        open_record(plan.base.as_ref()),
                        "Restore the user's platform access.".into(),
                    ],
                    changes,
                ]
                .concat(),
            ),
            (TaskKind::Deactivate, _) => (
                format!("Deactivate {app} account of {who} (leaver)"),
                vec![
                    sign_in,
                    open_record(plan.base.as_ref()),
                    ownership,
                    "Deactivate the user or revoke platform access.".into(),
                    record,
                ],
            ),
            (TaskKind::Remove, _) => (
                format!("Remove {app} account of {who} (leaver)"),
                vec![
                    sign_in,
                    open_record(plan.base.as_ref()),
                    ownership,
                    "Remove the user (or deactivate them if the app offers no removal).".into(),
                    record,
                ],
            ),
            // A create or role change always has a target; keep a readable fallback.
            (TaskKind::CreateAccount | TaskKind::ChangeRole, None) => {
                (format!("Review {app} account of {who}"), changes)
            }
        }
    }
}

fn name_clause(a: &Account) -> String {
    match (&a.given_name, &a.family_name) {
        (Some(g), Some(f)) => format!(" (name: {g} {f})"),
        (Some(n), None) | (None, Some(n)) => format!(" (name: {n})"),
        (None, None) => String::new(),
    }
}

fn show(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "(none)".into(),
        serde_json::Value::String(s) => format!("\"{s}\""),
        other => other.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::reconcile::plan;

    #[test]
    fn admins_group_or_roles_value_grant_admin() {
        let p = Profile::peopleai();
        assert_eq!(p.resolve_role(["Sales"], []), "Standard");
        assert_eq!(p.resolve_role(["people.ai admins"], []), "Admin");
        assert_eq!(p.resolve_role([], ["admin"]), "Admin");
        assert_eq!(p.resolve_role([], ["Unknown"]), "Standard");
    }

    #[test]
    fn create_task_carries_email_role_and_sso_caveat() {
        let p = Profile::peopleai();
        let a = Account {
            user_name: "ann@corp.com".into(),
            email: "ann@corp.com".into(),
            given_name: Some("Ann".into()),
            family_name: Some("Lee".into()),
            display_name: None,
            department: None,
            role: "Admin".into(),
            active: true,
        };
        let (title, steps) = p.render(&plan(Some(&a), None).unwrap());
        assert!(
            title.contains("ann@corp.com") && title.contains("Admin"),
            "{title}"
        );
        assert!(steps
            .iter()
            .any(|s| s.contains("work email ann@corp.com with role Admin")));
        assert!(steps.iter().any(|s| s.contains("SSO")));
        let (_, leave) = p.render(&plan(None, Some(&a)).unwrap());
        assert!(leave.iter().any(|s| s.contains("connector")));
        assert!(leave.iter().any(|s| s.contains("seat")));
    }
}
