//! Who is calling: token roles and the actor recorded with every write. A token belongs
//! to one app and one role and sees nothing else, so a leaked token exposes one app's
//! users to one kind of work, never the whole server.

use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The IdP: SCIM routes of its app only.
    Scim,
    /// An automation agent: the task API of its app.
    Agent,
    /// A person administering the app: the task API of its app.
    Admin,
    /// scimbridge itself (lease expiry, sweepers); never a token.
    #[value(skip)]
    System,
}

impl Role {
    /// Stored spelling (Postgres enum `token_role`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Scim => "scim",
            Role::Agent => "agent",
            Role::Admin => "admin",
            Role::System => "system",
        }
    }

    /// The role as messages name a token of it: "a scim token", "an agent token".
    pub fn a_token(self) -> &'static str {
        match self {
            Role::Scim => "a scim token",
            Role::Agent => "an agent token",
            Role::Admin => "an admin token",
            Role::System => "scimbridge itself",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "scim" => Some(Role::Scim),
            "agent" => Some(Role::Agent),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// What a caller asks to do on the task surfaces (the task API and the web UI). Both
/// surfaces ask [`Role::may`], so a person in the browser can do exactly what their token
/// can do over the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Read tasks, users, batches, reports and evidence files.
    Read,
    /// Claim, extend, complete, release or retry a task.
    Work,
    /// Approve or reject a task awaiting approval.
    Approve,
    /// Release or cancel a held batch.
    DecideBatch,
    /// Verify or export the audit trail.
    Audit,
    /// See webhooks and deliveries, requeue failed deliveries.
    Deliveries,
    /// Hand a task to another token or take it back to the queue.
    Reassign,
    /// Submit a snapshot of the app's user list (an agent may read the admin console).
    SubmitSnapshot,
    /// Apply or discard a snapshot the safeguard held.
    DecideSnapshot,
    /// Configure the app's ticket bridge (Jira, ServiceNow).
    TicketBridge,
    /// List, create and revoke the app's tokens (scim, agent, admin).
    ManageTokens,
}

impl Action {
    /// Who may do it, in words for refusals ("an admin", "an agent or admin").
    pub fn who(self) -> &'static str {
        match self {
            Action::Read | Action::Work | Action::SubmitSnapshot => "an agent or admin",
            Action::Approve
            | Action::DecideBatch
            | Action::Audit
            | Action::Deliveries
            | Action::Reassign
            | Action::DecideSnapshot
            | Action::TicketBridge
            | Action::ManageTokens => "an admin",
        }
    }
}

impl Role {
    /// Whether a caller with this role may do `action` (the one rule of both task
    /// surfaces; governance decisions are for people administering the app, not for the
    /// agents that carry tasks out, so an automation never approves its own work).
    pub fn may(self, action: Action) -> bool {
        match (self, action) {
            (Role::Agent | Role::Admin, Action::Read | Action::Work | Action::SubmitSnapshot) => {
                true
            }
            (
                Role::Admin,
                Action::Approve
                | Action::DecideBatch
                | Action::Audit
                | Action::Deliveries
                | Action::Reassign
                | Action::DecideSnapshot
                | Action::TicketBridge
                | Action::ManageTokens,
            ) => true,
            (
                Role::Agent,
                Action::Approve
                | Action::DecideBatch
                | Action::Audit
                | Action::Deliveries
                | Action::Reassign
                | Action::DecideSnapshot
                | Action::TicketBridge
                | Action::ManageTokens,
            ) => false,
            // A scim token speaks SCIM only; the system is never a caller of these surfaces.
            (Role::Scim | Role::System, _) => false,
        }
    }
}

/// The authenticated caller of one request, recorded in the audit trail.
#[derive(Debug, Clone)]
pub struct Actor {
    /// The app the token belongs to; every query is scoped to it.
    pub app_id: String,
    /// The token's id.
    pub token_id: Uuid,
    /// The token's name (`okta`, `alice`), shown in audit records as "who".
    pub name: String,
    /// The token's role.
    pub role: Role,
    /// The request id (`X-Request-Id`) of the call, for the audit record.
    pub request_id: Option<String>,
}

impl Actor {
    /// scimbridge acting on its own (expiring leases), recorded as such in the audit trail.
    pub fn system(app_id: &str) -> Actor {
        Actor {
            app_id: app_id.to_owned(),
            token_id: Uuid::nil(),
            name: "scimbridge".into(),
            role: Role::System,
            request_id: None,
        }
    }
}

/// A token an admin asks for (task API, web UI), checked: the role and a trimmed name.
/// Err is `(code, message)` for the surface to word in its own format.
pub fn check_new_token(role: &str, name: &str) -> Result<(Role, String), (&'static str, String)> {
    let role = match Role::parse(role.trim()) {
        Some(r) => r,
        None => {
            return Err((
                "invalid_role",
                format!("role must be scim, agent or admin, not {:?}", role.trim()),
            ))
        }
    };
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err((
            "invalid_name",
            "name must be 1 to 200 characters (who or what uses the token, e.g. okta, alice)"
                .into(),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err((
            "invalid_name",
            "name must not contain control characters".into(),
        ));
    }
    Ok((role, name.to_owned()))
}

/// Prefix that makes scimbridge tokens recognisable (e.g. by secret scanners).
pub const TOKEN_PREFIX: &str = "sbt_";

/// A new random token: 256 bits from the OS generator, hex-encoded.
pub fn generate_token() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{TOKEN_PREFIX}{}", hex::encode(bytes))
}

/// The stored form of a token. SHA-256 suffices: the secret has 256 bits of entropy,
/// so there is no dictionary to protect against (unlike passwords).
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_tokens_need_a_known_role_and_a_plain_name() {
        assert_eq!(
            check_new_token(" agent ", "  robot "),
            Ok((Role::Agent, "robot".to_owned()))
        );
        for (role, name, code) in [
            ("system", "x", "invalid_role"),
            ("owner", "x", "invalid_role"),
            ("admin", "   ", "invalid_name"),
            ("admin", "a\nb", "invalid_name"),
        ] {
            assert_eq!(check_new_token(role, name).map_err(|e| e.0), Err(code));
        }
        assert!(check_new_token("scim", &"x".repeat(201)).is_err());
        assert!(check_new_token("scim", &"é".repeat(200)).is_ok());
    }

    #[test]
    fn only_admins_decide_and_only_agents_and_admins_work() {
        use Action::*;
        for a in [
            Read,
            Work,
            Approve,
            DecideBatch,
            Audit,
            Deliveries,
            Reassign,
            SubmitSnapshot,
            DecideSnapshot,
            TicketBridge,
            ManageTokens,
        ] {
            assert!(Role::Admin.may(a), "{a:?}");
            assert!(!Role::Scim.may(a), "{a:?}");
            assert!(!Role::System.may(a), "{a:?}");
            assert_eq!(
                Role::Agent.may(a),
                matches!(a, Read | Work | SubmitSnapshot),
                "{a:?}"
            );
        }
    }

    #[test]
    fn tokens_are_unique_prefixed_and_hashed() {
        let (a, b) = (generate_token(), generate_token());
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() == TOKEN_PREFIX.len() + 64);
        assert_eq!(hash_token(&a), hash_token(&a));
        assert_ne!(hash_token(&a), hash_token(&b));
    }
}
