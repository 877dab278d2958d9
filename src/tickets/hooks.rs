//! Inbound ticket webhooks, pure: checking the shared secret, and reading which ticket a
//! payload is about and what its status and fields are now.
//!
//! Two ways to present the secret, for what each system can send:
//! - `X-Hub-Signature: sha256=<hex>`: HMAC-SHA256 of the raw body under the secret, as
//!   Jira Cloud signs the deliveries of an admin webhook created with a secret;
//! - `Authorization: Bearer <secret>`: a header set by hand (a ServiceNow REST message
//!   or business rule, a Jira Automation "Send web request" action).
//!
//! Both are compared in constant time.

use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{Observed, System};

/// Whether a request carries the bridge's secret: a valid `X-Hub-Signature` when one is
/// sent (it wins over any Authorization header), else `Authorization: Bearer <secret>`.
pub fn authentic(
    secret: &str,
    authorization: Option<&str>,
    hub_signature: Option<&str>,
    body: &[u8],
) -> bool {
    if let Some(sig) = hub_signature {
        let Some(hex_sig) = sig.trim().strip_prefix("sha256=") else {
            return false;
        };
        let Ok(given) = hex::decode(hex_sig) else {
            return false;
        };
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
            return false;
        };
        mac.update(body);
        // verify_slice compares in constant time.
        return mac.verify_slice(&given).is_ok();
    }
    let Some(token) = authorization.and_then(|v| {
        let (scheme, token) = v.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    }) else {
        return false;
    };
    // Digests first, so the comparison takes the same time whatever the lengths.
    let (a, b) = (
        Sha256::digest(token.as_bytes()),
        Sha256::digest(secret.as_bytes()),
    );
    a.ct_eq(&b).into()
}

/// A webhook payload about one ticket.
#[derive(Debug, Clone, PartialEq)]
pub struct Hook {
    /// The ticket's key or number, if sent.
    pub key: Option<String>,
    /// Jira's issue id or ServiceNow's sys_id, if sent.
    pub remote_id: Option<String>,
    /// Its status and fields now.
    pub observed: Observed,
}

/// Why a payload cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unusable(pub String);

fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(super::plain)
}

/// Reads a payload as the bridge's system sends it.
pub fn parse(system: System, body: &Value) -> Result<Hook, Unusable> {
    match system {
        System::Jira | System::JiraServiceManagement => parse_jira(body),
        System::Servicenow => parse_servicenow(body),
    }
}

/// A Jira webhook (`jira:issue_updated`, `jira:issue_created`) or an Automation web
/// request with the issue data: `{"issue": {"id", "key", "fields": {"status": {"name"}, …}},
/// "user": {"displayName"}}`, or the issue itself (`{"id", "key", "fields"}`).
fn parse_jira(body: &Value) -> Result<Hook, Unusable> {
    // The webhook's shape, or a bare issue (an Automation rule sending the issue itself).
    let bare = body.get("key").is_some() && body.get("fields").is_some_and(Value::is_object);
    let issue = body
        .get("issue")
        .filter(|i| i.is_object())
        .or(bare.then_some(body))
        .ok_or_else(|| {
            Unusable(
            "a Jira webhook payload has an \"issue\" object (issue.key, issue.fields.status.name)"
                .into(),
        )
        })?;
    let key = text(issue.get("key"));
    let remote_id = text(issue.get("id"));
    if key.is_none() && remote_id.is_none() {
        return Err(Unusable("issue.key (or issue.id) is missing".into()));
    }
    let fields: Map<String, Value> = issue
        .get("fields")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let status = text(fields.get("status").and_then(|s| s.get("name")));
    let changed_by = text(body.get("user").and_then(|u| u.get("displayName")));
    Ok(Hook {
        key,
        remote_id,
        observed: Observed {
            status,
            fields,
            changed_by,
        },
    })
}

/// A ServiceNow business rule's or REST message's body: the record's columns, flat
/// (`{"number", "sys_id", "state", "sys_updated_by", "u_seat_freed", …}`) or wrapped
/// as the Table API answers (`{"result": {…}}`).
fn parse_servicenow(body: &Value) -> Result<Hook, Unusable> {
    let record = body
        .get("result")
        .filter(|r| r.is_object())
        .unwrap_or(body)
        .as_object()
        .ok_or_else(|| {
            Unusable("a ServiceNow payload is a JSON object of the record's columns".into())
        })?;
    let key = text(record.get("number"));
    let remote_id = text(record.get("sys_id"));
    if key.is_none() && remote_id.is_none() {
        return Err(Unusable("number (or sys_id) is missing".into()));
    }
    Ok(Hook {
        key,
        remote_id,
        observed: Observed {
            status: text(record.get("state")),
            fields: record.clone(),
            changed_by: text(record.get("sys_updated_by")),
        },
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sign(secret: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn the_secret_is_a_bearer_token_or_a_body_signature() {
        let body = br#"{"issue":{}}"#;
        assert!(authentic("s3cret", Some("Bearer s3cret"), None, body));
        assert!(authentic("s3cret", Some("bearer  s3cret "), None, body));
        assert!(!authentic("s3cret", Some("Bearer s3cre"), None, body));
        assert!(!authentic("s3cret", Some("Basic s3cret"), None, body));
        assert!(!authentic("s3cret", None, None, body));
        let sig = sign("s3cret", body);
        assert!(authentic("s3cret", None, Some(&sig), body));
        assert!(
            !authentic("s3cret", None, Some(&sig), b"{}"),
            "another body"
        );
        assert!(!authentic("other", None, Some(&sig), body));
        assert!(!authentic("s3cret", None, Some("sha1=00"), body));
        // A wrong signature is not rescued by a right bearer token.
        assert!(!authentic(
            "s3cret",
            Some("Bearer s3cret"),
            Some("sha256=00"),
            body
        ));
    }

    #[test]
    fn jira_payloads_name_the_issue_and_its_status() {
        let hook = parse(
            System::Jira,
            &json!({"webhookEvent": "jira:issue_updated", "user": {"displayName": "Jane Doe"},
                    "issue": {"id": "10002", "key": "IT-7",
                              "fields": {"status": {"name": "Done"}, "customfield_10050": {"value": "Yes"}}}}),
        )
        .unwrap();
        assert_eq!(hook.key.as_deref(), Some("IT-7"));
        assert_eq!(hook.remote_id.as_deref(), Some("10002"));
        assert_eq!(hook.observed.status.as_deref(), Some("Done"));
        assert_eq!(hook.observed.changed_by.as_deref(), Some("Jane Doe"));
        assert_eq!(hook.observed.fields["customfield_10050"]["value"], "Yes");
        assert!(parse(System::Jira, &json!({"key": "IT-7"})).is_err());
        let bare = parse(
            System::Jira,
            &json!({"id": "1", "key": "IT-7", "fields": {"status": {"name": "Done"}}}),
        )
        .unwrap();
        assert_eq!(
            (bare.key.as_deref(), bare.observed.status.as_deref()),
            (Some("IT-7"), Some("Done"))
        );
        assert!(parse(System::Jira, &json!({"issue": {"fields": {}}})).is_err());
    }

    #[test]
    fn servicenow_payloads_are_flat_or_wrapped_records() {
        let flat = json!({"number": "SCTASK0010001", "sys_id": "abc", "state": "3", "sys_updated_by": "fred"});
        let hook = parse(System::Servicenow, &flat).unwrap();
        assert_eq!(hook.key.as_deref(), Some("SCTASK0010001"));
        assert_eq!(hook.observed.status.as_deref(), Some("3"));
        assert_eq!(hook.observed.changed_by.as_deref(), Some("fred"));
        let wrapped = parse(System::Servicenow, &json!({"result": flat})).unwrap();
        assert_eq!(wrapped, hook);
        assert!(parse(System::Servicenow, &json!({"state": "3"})).is_err());
        assert!(parse(System::Servicenow, &json!([1])).is_err());
    }
}
