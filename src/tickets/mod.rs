//! The ticket bridge: mirrors an app's tasks to Jira (Cloud REST API v3 issues, or Jira
//! Service Management requests) or ServiceNow (Table API records such as `sc_task` or
//! `incident`), and closes a task when its ticket reaches a closing status.
//!
//! Layout:
//! - this file: what a bridge is (system, settings and their defaults and checks), how a
//!   ticket's status and fields map to a completion (pure);
//! - `content`: the ticket's words from a task, as Atlassian Document Format or text (pure);
//! - `hooks`: reading the Jira and ServiceNow webhook payloads, and checking their shared
//!   secret (pure);
//! - `jira`, `servicenow`: the HTTP calls, answering in one [`CallError`] shape;
//! - `sync`: the work itself: delivering the outbox's ticket events (create, update,
//!   close, note), polling ticket statuses with backoff, and applying a status to the
//!   task, on top of `db` (all SQL stays there).
//!
//! Nothing here imports axum: the inbound webhook's route is in `http::api::tickets`.

pub mod content;
pub mod hooks;
pub mod jira;
pub mod servicenow;
pub mod sync;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::db::lifecycle::Outcome;
use crate::reconcile::{CompletionField, TaskKind};

/// The ticket system a bridge talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum System {
    /// Jira Cloud issues (`POST /rest/api/3/issue`).
    Jira,
    /// Jira Service Management requests (`POST /rest/servicedeskapi/request`).
    JiraServiceManagement,
    /// ServiceNow Table API records (`POST /api/now/table/{table}`).
    Servicenow,
}

impl System {
    /// Every system.
    pub const ALL: [System; 3] = [
        System::Jira,
        System::JiraServiceManagement,
        System::Servicenow,
    ];

    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            System::Jira => "jira",
            System::JiraServiceManagement => "jira_service_management",
            System::Servicenow => "servicenow",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<System> {
        System::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// The name people know ("closed by Jira ABC-123").
    pub fn label(self) -> &'static str {
        match self {
            System::Jira | System::JiraServiceManagement => "Jira",
            System::Servicenow => "ServiceNow",
        }
    }
}

/// A bridge's settings that are not secrets (stored as JSON; shown by the API).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Jira: the project key issues are created in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// Jira: the issue type's name (default `Task`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issue_type: Option<String>,
    /// Service Management: the service desk id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_desk_id: Option<String>,
    /// Service Management: the request type id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_type_id: Option<String>,
    /// ServiceNow: the table (`sc_task`, `incident`, or another task table).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// More fields set on every created ticket, as the system takes them (Jira `fields`,
    /// Service Management `requestFieldValues`, ServiceNow columns), e.g. a component,
    /// a priority or an assignment group.
    #[serde(default)]
    pub fields: Map<String, Value>,
    /// Ticket status (Jira status name; ServiceNow `state` value) → the outcome the task
    /// is closed with when the ticket reaches it. Compared case-insensitively.
    #[serde(default)]
    pub statuses: BTreeMap<String, Outcome>,
    /// Where a ticket goes when its task is done in scimbridge: a Jira status name
    /// reached by a transition, a ServiceNow `state` value. None: a comment only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub close_status: Option<String>,
    /// Where a ticket goes when its task is cancelled in scimbridge (the IdP undid the
    /// change). None: a comment only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_status: Option<String>,
    /// Where a ticket goes when its finished task is reopened (a snapshot of the app
    /// contradicts its completion). None: a comment only, and the closing status the
    /// ticket shows then no longer closes the task until the ticket shows another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reopen_status: Option<String>,
    /// ServiceNow: more columns set when closing (an incident needs `close_code`).
    #[serde(default)]
    pub close_fields: Map<String, Value>,
    /// Completion field (e.g. `seat_freed`) → the ticket field that supplies it when the
    /// ticket closes the task (Jira field id such as `customfield_10050`; ServiceNow
    /// column such as `u_seat_freed`).
    #[serde(default)]
    pub completion_fields: BTreeMap<String, String>,
}

impl Settings {
    /// Fills what the admin left out with the system's defaults.
    pub fn with_defaults(mut self, system: System) -> Settings {
        let table = self.table.clone().unwrap_or_default();
        let (statuses, close, cancel): (&[(&str, Outcome)], Option<&str>, Option<&str>) =
            match (system, table.as_str()) {
                (System::Jira | System::JiraServiceManagement, _) => {
                    (&[("Done", Outcome::Done)], Some("Done"), None)
                }
                // sc_task: 3 Closed Complete, 4 Closed Incomplete, 7 Closed Skipped.
                (System::Servicenow, "sc_task") => (
                    &[
                        ("3", Outcome::Done),
                        ("4", Outcome::Failed),
                        ("7", Outcome::NotApplicable),
                    ],
                    Some("3"),
                    Some("7"),
                ),
                // incident: 6 Resolved, 7 Closed, 8 Canceled.
                (System::Servicenow, "incident") => (
                    &[
                        ("6", Outcome::Done),
                        ("7", Outcome::Done),
                        ("8", Outcome::Failed),
                    ],
                    Some("6"),
                    Some("8"),
                ),
                (System::Servicenow, _) => (&[], None, None),
            };
        if self.statuses.is_empty() {
            self.statuses = statuses
                .iter()
                .map(|(s, o)| ((*s).to_owned(), *o))
                .collect();
        }
        if self.close_status.is_none() {
            self.close_status = close.map(str::to_owned);
        }
        if self.cancel_status.is_none() {
            self.cancel_status = cancel.map(str::to_owned);
        }
        if system == System::Jira && self.issue_type.is_none() {
            self.issue_type = Some("Task".into());
        }
        if system == System::Servicenow
            && table == "incident"
            && !self.close_fields.contains_key("close_code")
        {
            // Resolving an incident needs a resolution code (and close_notes, which the
            // bridge always sends); the base system's choice for "done as asked".
            self.close_fields.insert(
                "close_code".into(),
                Value::String("Solution provided".into()),
            );
        }
        self
    }

    /// Checks the settings for a system; the message says what to change.
    pub fn check(&self, system: System) -> Result<(), String> {
        let present = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.trim().is_empty());
        match system {
            System::Jira => {
                if !present(&self.project) {
                    return Err("a jira bridge needs project (the project key, e.g. IT)".into());
                }
            }
            System::JiraServiceManagement => {
                let numeric = |v: &Option<String>| {
                    v.as_deref()
                        .is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                };
                if !numeric(&self.service_desk_id) || !numeric(&self.request_type_id) {
                    return Err("a jira_service_management bridge needs service_desk_id and request_type_id (numbers, from GET /rest/servicedeskapi/servicedesk and …/requesttype)".into());
                }
            }
            System::Servicenow => {
                let ok = self.table.as_deref().is_some_and(|t| {
                    t.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
                        && t.bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                });
                if !ok {
                    return Err("a servicenow bridge needs table (sc_task, incident, or another task table's name)".into());
                }
            }
        }
        let foreign: &[(&str, bool)] = &[
            ("project", present(&self.project) && system != System::Jira),
            (
                "issue_type",
                self.issue_type.is_some() && system != System::Jira,
            ),
            (
                "service_desk_id",
                self.service_desk_id.is_some() && system != System::JiraServiceManagement,
            ),
            (
                "request_type_id",
                self.request_type_id.is_some() && system != System::JiraServiceManagement,
            ),
            (
                "table",
                self.table.is_some() && system != System::Servicenow,
            ),
            (
                "close_fields",
                !self.close_fields.is_empty() && system != System::Servicenow,
            ),
        ];
        if let Some((name, _)) = foreign.iter().find(|(_, bad)| *bad) {
            return Err(format!(
                "{name} does not apply to a {} bridge",
                system.as_str()
            ));
        }
        if self.statuses.is_empty() {
            return Err(
                "statuses must name at least one ticket status that closes the task \
                 (e.g. {\"Closed\": \"done\"}); there is no default for this table"
                    .into(),
            );
        }
        if self.statuses.keys().any(|k| k.trim().is_empty()) {
            return Err("statuses cannot map an empty status".into());
        }
        for (name, field) in &self.completion_fields {
            if name.trim().is_empty() || field.trim().is_empty() {
                return Err("completion_fields maps a completion field name to a ticket field id; neither may be empty".into());
            }
        }
        Ok(())
    }

    /// The outcome a ticket status closes the task with, if it is a closing status.
    pub fn outcome_of(&self, status: &str) -> Option<Outcome> {
        self.statuses
            .iter()
            .find(|(s, _)| s.trim().eq_ignore_ascii_case(status.trim()))
            .map(|(_, o)| *o)
    }
}

/// How scimbridge signs in to the ticket system.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// HTTP Basic: Jira Cloud's account email and API token; a ServiceNow user and
    /// password.
    Basic {
        /// The account (Jira: its email).
        username: String,
        /// The API token or password.
        password: String,
    },
    /// A bearer token (an OAuth access token).
    Bearer(String),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Basic { username, .. } => write!(f, "Basic({username}, [redacted])"),
            Auth::Bearer(_) => f.write_str("Bearer([redacted])"),
        }
    }
}

/// A bridge ready to use: settings with defaults, secrets opened.
#[derive(Debug, Clone)]
pub struct Bridge {
    /// Its id (also the inbound webhook's path).
    pub bridge_id: Uuid,
    /// The app whose tasks it mirrors.
    pub app_id: String,
    /// The ticket system.
    pub system: System,
    /// `https://your-domain.atlassian.net`, `https://instance.service-now.com`.
    pub base_url: String,
    /// Target, status mapping, field mapping.
    pub settings: Settings,
    /// Task kinds mirrored.
    pub kinds: Vec<TaskKind>,
    /// Credentials.
    pub auth: Auth,
    /// First poll interval (seconds); 0: webhooks only.
    pub poll_seconds: i32,
}

/// A ticket as the system names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    /// `ABC-123`, `SCTASK0010001`.
    pub key: String,
    /// Jira's issue id, ServiceNow's sys_id.
    pub remote_id: String,
    /// Where a person opens it.
    pub url: String,
    /// Its status when created or found, if the answer said.
    pub status: Option<String>,
}

/// A ticket's status and the values of its fields, from a poll or a webhook.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// Jira status name; ServiceNow `state` value.
    pub status: Option<String>,
    /// Field values by field id, as the system sent them.
    pub fields: Map<String, Value>,
    /// Who changed the ticket, when the system says (a webhook's user).
    pub changed_by: Option<String>,
}

/// How sure a failed call is that nothing happened on the other side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Certainty {
    /// The system refused or never got the request: nothing happened.
    NothingHappened,
    /// The answer was lost (timeout, dropped connection, a 5xx from a proxy): the
    /// request may have taken effect.
    Unknown,
}

/// A failed call to a ticket system.
#[derive(Debug, Clone)]
pub struct CallError {
    /// Whether the request may have taken effect.
    pub certainty: Certainty,
    /// The HTTP status, when there was an answer.
    pub status: Option<u16>,
    /// What happened, with the system's own error text.
    pub message: String,
}

impl CallError {
    /// From a transport error: a connection that was never made is certain to have
    /// done nothing; anything later (timeouts, resets, bodies cut short) is not.
    pub fn transport(what: &str, e: &reqwest::Error) -> CallError {
        let certainty = if e.is_connect() || e.is_builder() {
            Certainty::NothingHappened
        } else {
            Certainty::Unknown
        };
        CallError {
            certainty,
            status: None,
            message: format!("{what}: {e}"),
        }
    }

    /// From an error answer: 4xx are refusals (nothing happened); 5xx may come from a
    /// proxy after the system acted.
    pub fn answer(what: &str, status: u16, detail: &str) -> CallError {
        let certainty = if (400..500).contains(&status) {
            Certainty::NothingHappened
        } else {
            Certainty::Unknown
        };
        CallError {
            certainty,
            status: Some(status),
            message: format!("{what}: the system answered {status}: {detail}"),
        }
    }

    /// The ticket no longer exists (or the account may not see it).
    pub fn is_gone(&self) -> bool {
        self.status == Some(404)
    }
}

/// Adds the bridge's credentials to a request.
fn authed(req: reqwest::RequestBuilder, auth: &Auth) -> reqwest::RequestBuilder {
    match auth {
        Auth::Basic { username, password } => req.basic_auth(username, Some(password)),
        Auth::Bearer(token) => req.bearer_auth(token),
    }
}

/// The error text of an error answer, in the shapes the systems use: Jira's
/// `{"errorMessages": [...], "errors": {field: message}}`, Service Management's
/// `{"errorMessage": "..."}`, ServiceNow's `{"error": {"message", "detail"}}`; else the
/// start of the body.
fn error_text(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let mut parts: Vec<String> = Vec::new();
    if let Some(list) = v.get("errorMessages").and_then(Value::as_array) {
        parts.extend(list.iter().filter_map(plain));
    }
    if let Some(map) = v.get("errors").and_then(Value::as_object) {
        parts.extend(
            map.iter()
                .filter_map(|(k, m)| plain(m).map(|m| format!("{k}: {m}"))),
        );
    }
    if let Some(m) = v.get("errorMessage").and_then(plain) {
        parts.push(m);
    }
    if let Some(e) = v.get("error").filter(|e| e.is_object()) {
        parts.extend(
            ["message", "detail"]
                .iter()
                .filter_map(|k| e.get(*k).and_then(plain)),
        );
    }
    if parts.is_empty() {
        let start: String = body.chars().take(300).collect();
        if start.trim().is_empty() {
            "(no body)".into()
        } else {
            start
        }
    } else {
        parts.join("; ")
    }
}

/// Sends a request and reads its JSON answer (null for an empty body); error answers and
/// lost answers become [`CallError`]s that say whether the request may have acted.
async fn call(what: &str, req: reqwest::RequestBuilder) -> Result<Value, CallError> {
    let res = req
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|e| CallError::transport(what, &e))?;
    let status = res.status().as_u16();
    // A body cut short after a success status is a lost answer, not a refusal.
    let body = res
        .text()
        .await
        .map_err(|e| CallError::transport(what, &e))?;
    if !(200..300).contains(&status) {
        return Err(CallError::answer(what, status, &error_text(&body)));
    }
    if body.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&body).map_err(|e| CallError {
        certainty: Certainty::Unknown,
        status: Some(status),
        message: format!("{what}: the answer is not JSON: {e}"),
    })
}

/// The values a closing ticket supplies for a task's completion fields, through the
/// bridge's `completion_fields` mapping. Values are read as people see them (a Jira
/// select option's `value`, a ServiceNow choice's value) and matched to a field's
/// choices case-insensitively ("Yes" answers "yes").
pub fn completion_values(
    asked: &[CompletionField],
    mapping: &BTreeMap<String, String>,
    observed: &Map<String, Value>,
) -> Map<String, Value> {
    let mut out = Map::new();
    for f in asked {
        let Some(field) = mapping.get(&f.name) else {
            continue;
        };
        let Some(text) = observed.get(field).and_then(plain) else {
            continue;
        };
        let value = f
            .choices
            .iter()
            .find(|c| c.eq_ignore_ascii_case(&text))
            .cloned()
            .unwrap_or(text);
        out.insert(f.name.clone(), Value::String(value));
    }
    out
}

/// A field value as text: strings as they are, select options by their `value` (Jira) or
/// `value`/`display_value` pair (ServiceNow), names of named things, numbers and booleans
/// as written, lists joined with ", "; None for null and empty values.
pub fn plain(v: &Value) -> Option<String> {
    let s = match v {
        Value::Null => return None,
        Value::String(s) => s.trim().to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(items) => items
            .iter()
            .filter_map(plain)
            .collect::<Vec<_>>()
            .join(", "),
        Value::Object(m) => {
            return ["value", "name", "displayName", "display_value"]
                .iter()
                .find_map(|k| m.get(*k).and_then(plain))
        }
    };
    (!s.is_empty()).then_some(s)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_follow_the_system_and_table() {
        let jira = Settings::default().with_defaults(System::Jira);
        assert_eq!(jira.outcome_of("done"), Some(Outcome::Done));
        assert_eq!(jira.issue_type.as_deref(), Some("Task"));
        assert_eq!(jira.close_status.as_deref(), Some("Done"));
        let sc = Settings {
            table: Some("sc_task".into()),
            ..Settings::default()
        }
        .with_defaults(System::Servicenow);
        assert_eq!(sc.outcome_of("3"), Some(Outcome::Done));
        assert_eq!(sc.outcome_of("4"), Some(Outcome::Failed));
        assert_eq!(sc.outcome_of("7"), Some(Outcome::NotApplicable));
        assert_eq!(sc.outcome_of("2"), None);
        let inc = Settings {
            table: Some("incident".into()),
            ..Settings::default()
        }
        .with_defaults(System::Servicenow);
        assert_eq!(inc.close_status.as_deref(), Some("6"));
        assert_eq!(inc.close_fields["close_code"], "Solution provided");
        let custom = Settings {
            table: Some("u_access".into()),
            ..Settings::default()
        }
        .with_defaults(System::Servicenow);
        assert!(custom
            .check(System::Servicenow)
            .unwrap_err()
            .contains("statuses"));
        // Given statuses replace the defaults.
        let mine = Settings {
            statuses: [("Resolved".to_owned(), Outcome::Done)].into(),
            ..Settings::default()
        }
        .with_defaults(System::Jira);
        assert_eq!(mine.outcome_of("Done"), None);
    }

    #[test]
    fn settings_are_checked_per_system() {
        let jira = |s: Settings| s.with_defaults(System::Jira).check(System::Jira);
        assert!(jira(Settings::default()).unwrap_err().contains("project"));
        assert!(jira(Settings {
            project: Some("IT".into()),
            ..Settings::default()
        })
        .is_ok());
        assert!(jira(Settings {
            project: Some("IT".into()),
            table: Some("incident".into()),
            ..Settings::default()
        })
        .unwrap_err()
        .contains("table does not apply"));
        let jsm = Settings {
            service_desk_id: Some("1".into()),
            request_type_id: Some("x".into()),
            ..Settings::default()
        };
        assert!(jsm
            .with_defaults(System::JiraServiceManagement)
            .check(System::JiraServiceManagement)
            .is_err());
        let sn = Settings {
            table: Some("Incident; drop".into()),
            ..Settings::default()
        };
        assert!(sn
            .with_defaults(System::Servicenow)
            .check(System::Servicenow)
            .unwrap_err()
            .contains("table"));
    }

    #[test]
    fn closing_tickets_supply_completion_fields_through_the_mapping() {
        let asked = vec![CompletionField {
            name: "seat_freed".into(),
            label: "Seat freed?".into(),
            required: true,
            choices: vec!["yes".into(), "no".into(), "unknown".into()],
        }];
        let mapping: BTreeMap<String, String> =
            [("seat_freed".to_owned(), "customfield_10050".to_owned())].into();
        let jira = json!({"customfield_10050": {"self": "x", "value": "Yes", "id": "10021"}});
        let got = completion_values(&asked, &mapping, jira.as_object().unwrap());
        assert_eq!(got["seat_freed"], "yes");
        let none = json!({"customfield_10050": null});
        assert!(completion_values(&asked, &mapping, none.as_object().unwrap()).is_empty());
        let unmapped = completion_values(&asked, &BTreeMap::new(), jira.as_object().unwrap());
        assert!(unmapped.is_empty());
        assert_eq!(plain(&json!(["a", {"name": "b"}])).as_deref(), Some("a, b"));
        assert_eq!(
            plain(&json!({"value": "3", "display_value": "Closed"})).as_deref(),
            Some("3")
        );
    }

    #[test]
    fn call_errors_say_whether_something_may_have_happened() {
        assert_eq!(
            CallError::answer("create", 400, "bad").certainty,
            Certainty::NothingHappened
        );
        assert_eq!(
            CallError::answer("create", 502, "gateway").certainty,
            Certainty::Unknown
        );
        assert!(CallError::answer("status", 404, "gone").is_gone());
    }
}
