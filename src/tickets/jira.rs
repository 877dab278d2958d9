//! Jira Cloud: issues through the platform REST API v3 (`/rest/api/3`), and Service
//! Management requests (`/rest/servicedeskapi/request`), which are issues too, so their
//! status, comments and transitions use the platform API as well.
//!
//! | what | call |
//! |---|---|
//! | create an issue | `POST /rest/api/3/issue` `{"fields": {project, issuetype, summary, description (ADF), labels, …}}` → 201 `{"id", "key", "self"}` |
//! | create a request | `POST /rest/servicedeskapi/request` `{"serviceDeskId", "requestTypeId", "requestFieldValues": {summary, description, …}}` → 201 `{"issueId", "issueKey", "currentStatus": {"status"}, "_links": {"web"}}` |
//! | find by correlation | `POST /rest/api/3/search/jql` `{"jql", "fields", "maxResults"}` → `{"issues": [{"id", "key", "fields"}]}` |
//! | status and fields | `GET /rest/api/3/issue/{idOrKey}?fields=status,…` → `{"id", "key", "fields": {"status": {"name"}, …}}` |
//! | comment | `POST /rest/api/3/issue/{key}/comment` `{"body": ADF}` → 201 |
//! | transitions | `GET /rest/api/3/issue/{key}/transitions` → `{"transitions": [{"id", "name", "to": {"name"}}]}`; `POST` `{"transition": {"id"}}` → 204 |

use serde_json::{json, Value};

use super::content::{adf, adf_text, text, Content};
use super::{authed, call, plain, Bridge, CallError, Observed, Remote, System};

/// A Jira site as one bridge uses it.
#[derive(Debug, Clone, Copy)]
pub struct Jira<'a> {
    /// The HTTP client (timeouts set).
    pub http: &'a reqwest::Client,
    /// The bridge (site, credentials, settings).
    pub bridge: &'a Bridge,
}

/// What moving a ticket to a status did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Moved {
    /// It was there already.
    Already,
    /// A transition took it there.
    Moved,
    /// No transition from its status leads there; the names of those that exist.
    NoTransition {
        /// Its status now.
        from: String,
        /// Where it can go.
        available: Vec<String>,
    },
}

/// The JQL string literal of a value (quotes and backslashes escaped).
fn jql_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

impl Jira<'_> {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.bridge.base_url.trim_end_matches('/'))
    }

    fn browse(&self, key: &str) -> String {
        self.url(&format!("/browse/{key}"))
    }

    /// Creates the ticket: an issue labelled `scimbridge` and with the correlation tag,
    /// or a Service Management request whose summary ends with the tag.
    pub async fn create(&self, c: &Content, correlation: &str) -> Result<Remote, CallError> {
        let s = &self.bridge.settings;
        match self.bridge.system {
            System::JiraServiceManagement => {
                let mut values = s.fields.clone();
                values.insert("summary".into(), json!(c.summary));
                values.insert("description".into(), json!(text(&c.body)));
                let body = json!({
                    "serviceDeskId": s.service_desk_id, "requestTypeId": s.request_type_id,
                    "requestFieldValues": values,
                });
                let req = self
                    .http
                    .post(self.url("/rest/servicedeskapi/request"))
                    .json(&body);
                let v = call(
                    "create the Service Management request",
                    authed(req, &self.bridge.auth),
                )
                .await?;
                let (Some(id), Some(key)) = (plain(&v["issueId"]), plain(&v["issueKey"])) else {
                    return Err(lost("the created request's answer has no issueId/issueKey"));
                };
                // The portal link, when it points into the configured site.
                let url = plain(&v["_links"]["web"])
                    .filter(|u| u.starts_with(self.bridge.base_url.trim_end_matches('/')))
                    .unwrap_or_else(|| self.browse(&key));
                Ok(Remote {
                    key,
                    remote_id: id,
                    url,
                    status: plain(&v["currentStatus"]["status"]),
                })
            }
            System::Jira | System::Servicenow => {
                let mut fields = s.fields.clone();
                fields.insert("project".into(), json!({"key": s.project}));
                fields.insert("issuetype".into(), json!({"name": s.issue_type}));
                fields.insert("summary".into(), json!(c.summary));
                fields.insert("description".into(), adf(&c.body));
                let mut labels: Vec<Value> = fields
                    .get("labels")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                labels.extend([json!("scimbridge"), json!(correlation)]);
                fields.insert("labels".into(), Value::Array(labels));
                let req = self
                    .http
                    .post(self.url("/rest/api/3/issue"))
                    .json(&json!({"fields": fields}));
                let v = call("create the Jira issue", authed(req, &self.bridge.auth)).await?;
                let (Some(id), Some(key)) = (plain(&v["id"]), plain(&v["key"])) else {
                    return Err(lost("the created issue's answer has no id/key"));
                };
                Ok(Remote {
                    url: self.browse(&key),
                    key,
                    remote_id: id,
                    status: None,
                })
            }
        }
    }

    /// Finds the ticket created for a correlation tag, if one exists (the oldest, should
    /// there be several). Jira's search index lags writes by seconds, rarely minutes:
    /// the caller waits `--ticket-settle-secs` after an unanswered create before asking.
    pub async fn find(&self, correlation: &str) -> Result<Option<Remote>, CallError> {
        let jql = match self.bridge.system {
            System::JiraServiceManagement => format!(
                "summary ~ {} order by created asc",
                jql_string(&format!("\"{correlation}\""))
            ),
            System::Jira | System::Servicenow => {
                format!("labels = {} order by created asc", jql_string(correlation))
            }
        };
        let body = json!({"jql": jql, "fields": ["summary", "labels", "status"], "maxResults": 10});
        let req = self
            .http
            .post(self.url("/rest/api/3/search/jql"))
            .json(&body);
        let v = call("search Jira", authed(req, &self.bridge.auth)).await?;
        let found = v["issues"].as_array().into_iter().flatten().find(|i| {
            // Text search matches words; keep only exact tags.
            let f = &i["fields"];
            f["labels"]
                .as_array()
                .is_some_and(|l| l.iter().any(|x| x == correlation))
                || f["summary"]
                    .as_str()
                    .is_some_and(|s| s.contains(&format!("[{correlation}]")))
        });
        Ok(found.and_then(|i| {
            let (id, key) = (plain(&i["id"])?, plain(&i["key"])?);
            Some(Remote {
                url: self.browse(&key),
                key,
                remote_id: id,
                status: plain(&i["fields"]["status"]["name"]),
            })
        }))
    }

    /// The ticket's status and the fields the bridge maps to completion fields.
    pub async fn observe(&self, id_or_key: &str) -> Result<Observed, CallError> {
        let mut fields = vec!["status".to_owned()];
        fields.extend(self.bridge.settings.completion_fields.values().cloned());
        let req = self
            .http
            .get(self.url(&format!("/rest/api/3/issue/{id_or_key}")))
            .query(&[("fields", fields.join(","))]);
        let v = call("read the Jira issue", authed(req, &self.bridge.auth)).await?;
        let fields = v["fields"].as_object().cloned().unwrap_or_default();
        Ok(Observed {
            status: plain(&v["fields"]["status"]["name"]),
            fields,
            changed_by: None,
        })
    }

    /// Adds a comment.
    pub async fn comment(&self, key: &str, text: &str) -> Result<(), CallError> {
        let req = self
            .http
            .post(self.url(&format!("/rest/api/3/issue/{key}/comment")))
            .json(&json!({"body": adf_text(text)}));
        call("comment on the Jira issue", authed(req, &self.bridge.auth)).await?;
        Ok(())
    }

    /// Moves the ticket to a status by the transition leading there.
    pub async fn move_to(&self, key: &str, status: &str) -> Result<Moved, CallError> {
        let now = self.observe(key).await?.status.unwrap_or_default();
        if now.eq_ignore_ascii_case(status) {
            return Ok(Moved::Already);
        }
        let req = self
            .http
            .get(self.url(&format!("/rest/api/3/issue/{key}/transitions")));
        let v = call(
            "list the Jira issue's transitions",
            authed(req, &self.bridge.auth),
        )
        .await?;
        let transitions = v["transitions"].as_array().cloned().unwrap_or_default();
        let to = |t: &Value| plain(&t["to"]["name"]).unwrap_or_default();
        let Some(id) = transitions
            .iter()
            .find(|t| to(t).eq_ignore_ascii_case(status))
            .and_then(|t| plain(&t["id"]))
        else {
            return Ok(Moved::NoTransition {
                from: now,
                available: transitions.iter().map(to).collect(),
            });
        };
        let req = self
            .http
            .post(self.url(&format!("/rest/api/3/issue/{key}/transitions")))
            .json(&json!({"transition": {"id": id}}));
        call("transition the Jira issue", authed(req, &self.bridge.auth)).await?;
        Ok(Moved::Moved)
    }
}

fn lost(what: &str) -> CallError {
    CallError {
        certainty: super::Certainty::Unknown,
        status: None,
        message: what.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jql_strings_are_escaped() {
        assert_eq!(jql_string("scimbridge-x-1"), "\"scimbridge-x-1\"");
        assert_eq!(jql_string("a\"b\\c"), "\"a\\\"b\\\\c\"");
    }
}
