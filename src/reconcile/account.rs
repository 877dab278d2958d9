//! The account an app holds for one user: only the attributes the app's admin console
//! needs. Two SCIM documents that project to the same account need no task.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::scim::schema::ENTERPRISE_USER_SCHEMA;

/// What the app knows about one user. Stored as JSON in `scim_user.confirmed` and in a
/// task's `base`/`target`, so field names are part of the stored format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// The IdP's userName (People.ai signs users in by it through SSO).
    pub user_name: String,
    /// The work email the app's console asks for.
    pub email: String,
    /// Given name, when the IdP sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    /// Family name, when the IdP sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    /// Display name, when the IdP sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Department (enterprise extension), shown to the admin for context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    /// The app role, one of the profile's roles.
    pub role: String,
    /// Whether the account may sign in.
    pub active: bool,
}

impl Account {
    /// Projects a stored SCIM user document onto the account the app should hold.
    /// `role` has already been resolved by the profile (group mapping, `roles`).
    pub fn from_user_doc(doc: &Value, role: String) -> Account {
        let user_name = str_at(doc, &["userName"]).unwrap_or_default();
        Account {
            email: work_email(doc).unwrap_or_else(|| user_name.clone()),
            user_name,
            given_name: str_at(doc, &["name", "givenName"]),
            family_name: str_at(doc, &["name", "familyName"]),
            display_name: str_at(doc, &["displayName"]),
            department: str_at(doc, &[ENTERPRISE_USER_SCHEMA, "department"]),
            role,
            active: doc.get("active").and_then(Value::as_bool).unwrap_or(true),
        }
    }

    /// The name a person would use for this account in a task title.
    pub fn label(&self) -> String {
        let full = [self.given_name.as_deref(), self.family_name.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        if !full.is_empty() {
            full
        } else if let Some(d) = &self.display_name {
            d.clone()
        } else {
            self.user_name.clone()
        }
    }
}

fn str_at(doc: &Value, path: &[&str]) -> Option<String> {
    let mut cur = doc;
    for key in path {
        cur = cur.get(*key)?;
    }
    cur.as_str()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// The work email: `emails[type eq "work"]`, else the primary one, else the first.
fn work_email(doc: &Value) -> Option<String> {
    let emails = doc.get("emails")?.as_array()?;
    let value = |e: &Value| e.get("value").and_then(Value::as_str).map(str::to_owned);
    let is = |e: &Value, key: &str, want: &Value| e.get(key) == Some(want);
    emails
        .iter()
        .find(|e| {
            e.get("type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.eq_ignore_ascii_case("work"))
        })
        .or_else(|| emails.iter().find(|e| is(e, "primary", &Value::Bool(true))))
        .or_else(|| emails.first())
        .and_then(value)
        .filter(|v| !v.trim().is_empty())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn work_email_wins_over_primary_and_first() {
        let doc = json!({"userName": "ann", "emails": [
            {"value": "home@x.com", "type": "home", "primary": true},
            {"value": "ann@corp.com", "type": "work"}
        ]});
        assert_eq!(
            Account::from_user_doc(&doc, "Standard".into()).email,
            "ann@corp.com"
        );
    }

    #[test]
    fn user_name_is_the_email_when_none_is_sent() {
        let doc = json!({"userName": "ann@corp.com"});
        let a = Account::from_user_doc(&doc, "Standard".into());
        assert_eq!(a.email, "ann@corp.com");
        assert!(
            a.active,
            "active defaults to true (RFC 7643 leaves it to the provider)"
        );
    }
}
