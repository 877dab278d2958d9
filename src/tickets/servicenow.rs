//! ServiceNow: records of a task table (`sc_task`, `incident`, …) through the Table API.
//!
//! | what | call |
//! |---|---|
//! | create | `POST /api/now/table/{table}` `{short_description, description, correlation_id, correlation_display, …}` → 201 `{"result": {"sys_id", "number", "state"}}` |
//! | find by correlation | `GET /api/now/table/{table}?sysparm_query=correlation_id=…` → `{"result": [...]}` |
//! | state and fields | `GET /api/now/table/{table}/{sys_id}?sysparm_fields=…` → `{"result": {…}}` |
//! | comment, close | `PATCH /api/now/table/{table}/{sys_id}` `{work_notes}` / `{state, close_notes, work_notes, …}` → 200 |
//!
//! Values are read and written as values (`sysparm_display_value=false`, the default):
//! `state` is `"3"`, not "Closed Complete".

use serde_json::{json, Value};

use super::content::{text, Content};
use super::{authed, call, plain, Bridge, CallError, Observed, Remote};

/// A ServiceNow instance as one bridge uses it.
#[derive(Debug, Clone, Copy)]
pub struct ServiceNow<'a> {
    /// The HTTP client (timeouts set).
    pub http: &'a reqwest::Client,
    /// The bridge (instance, credentials, settings).
    pub bridge: &'a Bridge,
}

/// Fields every answer about a record carries.
const FIELDS: &str = "sys_id,number,state";

/// The value of a query parameter inside `nav_to.do?uri=…` (RFC 3986 unreserved kept).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl ServiceNow<'_> {
    fn table(&self) -> &str {
        self.bridge.settings.table.as_deref().unwrap_or("sc_task")
    }

    fn url(&self, rest: &str) -> String {
        format!(
            "{}/api/now/table/{}{rest}",
            self.bridge.base_url.trim_end_matches('/'),
            self.table()
        )
    }

    fn remote(&self, record: &Value) -> Option<Remote> {
        let (sys_id, number) = (plain(&record["sys_id"])?, plain(&record["number"])?);
        let url = format!(
            "{}/nav_to.do?uri={}",
            self.bridge.base_url.trim_end_matches('/'),
            encode(&format!("{}.do?sys_id={sys_id}", self.table()))
        );
        Some(Remote {
            key: number,
            remote_id: sys_id,
            url,
            status: plain(&record["state"]),
        })
    }

    /// Creates the record, with the correlation tag in `correlation_id` (a task-table
    /// column meant for exactly this: the id of the record in the other system).
    pub async fn create(&self, c: &Content, correlation: &str) -> Result<Remote, CallError> {
        let mut body = self.bridge.settings.fields.clone();
        body.insert("short_description".into(), json!(c.summary));
        body.insert("description".into(), json!(text(&c.body)));
        body.insert("correlation_id".into(), json!(correlation));
        body.insert("correlation_display".into(), json!("scimbridge"));
        let req = self
            .http
            .post(self.url(""))
            .query(&[
                ("sysparm_fields", FIELDS),
                ("sysparm_exclude_reference_link", "true"),
            ])
            .json(&body);
        let v = call(
            "create the ServiceNow record",
            authed(req, &self.bridge.auth),
        )
        .await?;
        self.remote(&v["result"]).ok_or_else(|| CallError {
            certainty: super::Certainty::Unknown,
            status: None,
            message: "the created record's answer has no sys_id/number".into(),
        })
    }

    /// Finds the record created for a correlation tag (the oldest, should there be
    /// several). The Table API reads the database, so a record created a moment ago is
    /// found.
    pub async fn find(&self, correlation: &str) -> Result<Option<Remote>, CallError> {
        let query = format!("correlation_id={correlation}^ORDERBYsys_created_on");
        let req = self.http.get(self.url("")).query(&[
            ("sysparm_query", query.as_str()),
            ("sysparm_fields", FIELDS),
            ("sysparm_limit", "5"),
        ]);
        let v = call("search ServiceNow", authed(req, &self.bridge.auth)).await?;
        Ok(v["result"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|r| self.remote(r)))
    }

    /// The record's state and the columns the bridge maps to completion fields.
    pub async fn observe(&self, sys_id: &str) -> Result<Observed, CallError> {
        let mut fields = vec![FIELDS.to_owned()];
        fields.extend(self.bridge.settings.completion_fields.values().cloned());
        let req = self
            .http
            .get(self.url(&format!("/{sys_id}")))
            .query(&[("sysparm_fields", fields.join(","))]);
        let v = call("read the ServiceNow record", authed(req, &self.bridge.auth)).await?;
        let record = v["result"].as_object().cloned().unwrap_or_default();
        Ok(Observed {
            status: record.get("state").and_then(plain),
            fields: record,
            changed_by: None,
        })
    }

    /// Updates columns of the record (a work note, a state).
    pub async fn update(&self, sys_id: &str, columns: Value) -> Result<(), CallError> {
        let req = self
            .http
            .patch(self.url(&format!("/{sys_id}")))
            .query(&[("sysparm_fields", FIELDS)])
            .json(&columns);
        call(
            "update the ServiceNow record",
            authed(req, &self.bridge.auth),
        )
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_encode_the_record_uri() {
        assert_eq!(
            encode("sc_task.do?sys_id=ab12"),
            "sc_task.do%3Fsys_id%3Dab12"
        );
    }
}
