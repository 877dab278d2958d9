//! Local fakes of Jira Cloud and ServiceNow for the ticket bridge's tests: small axum
//! servers on 127.0.0.1:0 that speak the documented JSON of the calls the bridge makes,
//! keep what was created, record every request, and can answer with an error or lose an
//! answer (the ticket is created, then the connection drops mid-answer).
//!
//! Jira Cloud REST API v3: `POST /rest/api/3/issue`, `POST /rest/api/3/search/jql`,
//! `GET /rest/api/3/issue/{idOrKey}`, `GET|POST /rest/api/3/issue/{key}/transitions`,
//! `POST /rest/api/3/issue/{key}/comment`; Service Management
//! `POST /rest/servicedeskapi/request`. Errors are `{"errorMessages": [...], "errors":
//! {...}}` (`{"errorMessage"}` for Service Management).
//! ServiceNow Table API: `POST|GET /api/now/table/{table}`, `GET|PATCH
//! /api/now/table/{table}/{sys_id}`; answers `{"result": …}`, errors `{"error":
//! {"message", "detail"}, "status": "failure"}`.

use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use serde_json::{json, Map, Value};

/// One request as the fake got it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub authorization: Option<String>,
    pub body: Value,
}

/// A ticket the fake holds.
#[derive(Debug, Clone)]
pub struct Ticket {
    pub id: String,
    pub key: String,
    pub status: String,
    /// Jira `fields` / ServiceNow columns.
    pub fields: Map<String, Value>,
    /// Jira comments (ADF bodies) / ServiceNow work notes.
    pub comments: Vec<Value>,
}

#[derive(Debug, Default)]
pub struct Book {
    pub tickets: Vec<Ticket>,
    pub seen: Vec<Seen>,
    /// The next create is carried out, and its answer lost mid-way.
    pub lose_next_create: bool,
    /// The next create is refused with this status and body.
    pub refuse_next_create: Option<(u16, Value)>,
}

/// A fake ticket system.
#[derive(Clone)]
pub struct Fake {
    pub book: Arc<Mutex<Book>>,
    /// What `Authorization` must be.
    pub expect_auth: String,
    pub url: String,
}

pub fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

impl Fake {
    pub fn tickets(&self) -> Vec<Ticket> {
        self.book.lock().unwrap().tickets.clone()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.book.lock().unwrap().seen.clone()
    }

    /// Requests of a method to paths containing `part`.
    pub fn calls(&self, method: Method, part: &str) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.method == method && s.path.contains(part))
            .collect()
    }

    /// A person changes the ticket in the system.
    pub fn set(&self, key: &str, status: &str, fields: Value) {
        let mut book = self.book.lock().unwrap();
        let t = book.tickets.iter_mut().find(|t| t.key == key).unwrap();
        t.status = status.to_owned();
        if let Value::Object(m) = fields {
            t.fields.extend(m);
        }
    }

    pub fn lose_next_create(&self) {
        self.book.lock().unwrap().lose_next_create = true;
    }

    pub fn refuse_next_create(&self, status: u16, body: Value) {
        self.book.lock().unwrap().refuse_next_create = Some((status, body));
    }

    /// Waits (up to 20 s) until `f` holds of the fake.
    pub async fn wait(&self, what: &str, f: impl Fn(&Fake) -> bool) {
        for _ in 0..200 {
            if f(self) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("waited 20 s for {what}; requests: {:#?}", self.seen());
    }
}

/// A success status whose body breaks off: the client sees a lost answer.
fn lost() -> Response {
    let stream = futures_util::stream::iter(vec![
        Ok::<_, std::io::Error>(Bytes::from_static(b"{\"id\":")),
        Err(std::io::Error::other("connection reset")),
    ]);
    (StatusCode::CREATED, Body::from_stream(stream)).into_response()
}

fn record(fake: &Fake, method: Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) {
    let seen = Seen {
        method,
        path: uri.path().to_owned(),
        query: uri.query().unwrap_or_default().to_owned(),
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body: serde_json::from_slice(body).unwrap_or(Value::Null),
    };
    fake.book.lock().unwrap().seen.push(seen);
}

fn authorized(fake: &Fake, headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == fake.expect_auth)
}

/// Binds 127.0.0.1:0 and builds the fake with its URL and the expected credentials.
async fn bind(expect_auth: String) -> (tokio::net::TcpListener, Fake) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let fake = Fake {
        book: Arc::default(),
        expect_auth,
        url,
    };
    (listener, fake)
}

// ---------------------------------------------------------------- Jira Cloud

fn jira_error(status: StatusCode, messages: &[&str], errors: Value) -> Response {
    (
        status,
        Json(json!({"errorMessages": messages, "errors": errors})),
    )
        .into_response()
}

/// The workflow: To Do → In Progress → Done, and back.
const JIRA_STATUSES: [(&str, &str); 3] = [("11", "To Do"), ("21", "In Progress"), ("31", "Done")];

fn jira_issue_json(t: &Ticket) -> Value {
    let mut fields = t.fields.clone();
    let category = if t.status == "Done" { "done" } else { "new" };
    fields.insert(
        "status".into(),
        json!({"name": t.status, "statusCategory": {"key": category}}),
    );
    json!({"id": t.id, "key": t.key, "fields": fields})
}

async fn jira(
    State(fake): State<Fake>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    record(&fake, method.clone(), &uri, &headers, &body);
    if !authorized(&fake, &headers) {
        return jira_error(
            StatusCode::UNAUTHORIZED,
            &["Client must be authenticated to access this resource."],
            json!({}),
        );
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let path = uri.path().to_owned();
    let mut book = fake.book.lock().unwrap();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method.as_str(), segments.as_slice()) {
        ("POST", ["rest", "api", "3", "issue"]) => {
            if let Some((status, err)) = book.refuse_next_create.take() {
                return (StatusCode::from_u16(status).unwrap(), Json(err)).into_response();
            }
            let f = &body["fields"];
            if f["project"]["key"] != "IT" {
                return jira_error(
                    StatusCode::BAD_REQUEST,
                    &[],
                    json!({"project": "valid project is required"}),
                );
            }
            if f["issuetype"]["name"].as_str().is_none() {
                return jira_error(
                    StatusCode::BAD_REQUEST,
                    &[],
                    json!({"issuetype": "Specify an issue type"}),
                );
            }
            if f["summary"].as_str().is_none_or(str::is_empty) {
                return jira_error(
                    StatusCode::BAD_REQUEST,
                    &[],
                    json!({"summary": "You must specify a summary of the issue."}),
                );
            }
            if f["description"]["type"] != "doc" || f["description"]["version"] != 1 {
                return jira_error(
                    StatusCode::BAD_REQUEST,
                    &[],
                    json!({"description": "Operation value must be an Atlassian Document (see the Atlassian Document Format)"}),
                );
            }
            let n = book.tickets.len() + 1;
            let t = Ticket {
                id: format!("{}", 10000 + n),
                key: format!("IT-{n}"),
                status: "To Do".into(),
                fields: f.as_object().cloned().unwrap_or_default(),
                comments: Vec::new(),
            };
            let answer = json!({"id": t.id, "key": t.key,
                                "self": format!("{}/rest/api/3/issue/{}", fake.url, t.id)});
            book.tickets.push(t);
            if std::mem::take(&mut book.lose_next_create) {
                return lost();
            }
            (StatusCode::CREATED, Json(answer)).into_response()
        }
        ("POST", ["rest", "servicedeskapi", "request"]) => {
            if let Some((status, err)) = book.refuse_next_create.take() {
                return (StatusCode::from_u16(status).unwrap(), Json(err)).into_response();
            }
            if body["serviceDeskId"] != "4" || body["requestTypeId"] != "17" {
                return (
                    StatusCode::BAD_REQUEST,
                    Json(json!({"errorMessage": "The request type you are trying to use does not exist."})),
                )
                    .into_response();
            }
            let values = &body["requestFieldValues"];
            if !values["description"].is_string() || values["summary"].as_str().is_none() {
                return (
                    StatusCode::BAD_REQUEST,
                    Json(json!({"errorMessage": "summary and description are required"})),
                )
                    .into_response();
            }
            let n = book.tickets.len() + 1;
            let t = Ticket {
                id: format!("{}", 20000 + n),
                key: format!("HD-{n}"),
                status: "Waiting for support".into(),
                fields: values.as_object().cloned().unwrap_or_default(),
                comments: Vec::new(),
            };
            let answer = json!({
                "issueId": t.id, "issueKey": t.key, "requestTypeId": "17", "serviceDeskId": "4",
                "currentStatus": {"status": t.status, "statusCategory": "NEW"},
                "_links": {"web": format!("{}/servicedesk/customer/portal/4/{}", fake.url, t.key),
                           "self": format!("{}/rest/servicedeskapi/request/{}", fake.url, t.id)},
            });
            book.tickets.push(t);
            if std::mem::take(&mut book.lose_next_create) {
                return lost();
            }
            (StatusCode::CREATED, Json(answer)).into_response()
        }
        ("POST", ["rest", "api", "3", "search", "jql"]) => {
            let jql = body["jql"].as_str().unwrap_or_default();
            let quoted = |prefix: &str| {
                jql.strip_prefix(prefix)
                    .and_then(|r| r.split(" order by").next())
                    .map(|v| v.replace("\\\"", "").trim().trim_matches('"').to_owned())
            };
            let issues: Vec<Value> = book
                .tickets
                .iter()
                .filter(|t| {
                    if let Some(label) = quoted("labels = ") {
                        t.fields["labels"]
                            .as_array()
                            .is_some_and(|l| l.iter().any(|x| x == label.as_str()))
                    } else if let Some(words) = quoted("summary ~ ") {
                        t.fields["summary"]
                            .as_str()
                            .is_some_and(|s| s.contains(words.as_str()))
                    } else {
                        false
                    }
                })
                .map(jira_issue_json)
                .collect();
            Json(json!({"issues": issues, "isLast": true})).into_response()
        }
        ("GET", ["rest", "api", "3", "issue", id]) => {
            match book.tickets.iter().find(|t| t.id == *id || t.key == *id) {
                Some(t) => Json(jira_issue_json(t)).into_response(),
                None => jira_error(
                    StatusCode::NOT_FOUND,
                    &["Issue does not exist or you do not have permission to see it."],
                    json!({}),
                ),
            }
        }
        ("GET", ["rest", "api", "3", "issue", key, "transitions"]) => {
            let Some(t) = book.tickets.iter().find(|t| t.key == *key || t.id == *key) else {
                return jira_error(StatusCode::NOT_FOUND, &["Issue does not exist"], json!({}));
            };
            let transitions: Vec<Value> = JIRA_STATUSES
                .iter()
                .filter(|(_, name)| *name != t.status)
                .map(|(id, name)| json!({"id": id, "name": name, "to": {"name": name, "id": id}}))
                .collect();
            Json(json!({"expand": "transitions", "transitions": transitions})).into_response()
        }
        ("POST", ["rest", "api", "3", "issue", key, "transitions"]) => {
            let id = body["transition"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let Some(t) = book
                .tickets
                .iter_mut()
                .find(|t| t.key == *key || t.id == *key)
            else {
                return jira_error(StatusCode::NOT_FOUND, &["Issue does not exist"], json!({}));
            };
            match JIRA_STATUSES
                .iter()
                .find(|(i, name)| *i == id && *name != t.status)
            {
                Some((_, name)) => {
                    t.status = (*name).to_owned();
                    StatusCode::NO_CONTENT.into_response()
                }
                None => jira_error(
                    StatusCode::BAD_REQUEST,
                    &[&format!(
                        "Transition id '{id}' is not valid for this issue."
                    )],
                    json!({}),
                ),
            }
        }
        ("POST", ["rest", "api", "3", "issue", key, "comment"]) => {
            if body["body"]["type"] != "doc" {
                return jira_error(
                    StatusCode::BAD_REQUEST,
                    &[],
                    json!({"comment": "Comment body must be an Atlassian Document"}),
                );
            }
            let Some(t) = book
                .tickets
                .iter_mut()
                .find(|t| t.key == *key || t.id == *key)
            else {
                return jira_error(StatusCode::NOT_FOUND, &["Issue does not exist"], json!({}));
            };
            t.comments.push(body["body"].clone());
            (
                StatusCode::CREATED,
                Json(json!({"id": "1", "body": body["body"]})),
            )
                .into_response()
        }
        _ => jira_error(
            StatusCode::NOT_FOUND,
            &["no such resource in the fake"],
            json!({}),
        ),
    }
}

/// A fake Jira Cloud site whose API user is `bot@acme.example` with token `jira-token`.
pub async fn jira_site() -> Fake {
    let (listener, fake) = bind(basic("bot@acme.example", "jira-token")).await;
    let router = Router::new().fallback(jira).with_state(fake.clone());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    fake
}

/// The ADF document's text, flattened.
pub fn adf_text(doc: &Value) -> String {
    match doc {
        Value::Object(m) => {
            let own = m
                .get("text")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let inner: Vec<String> = m
                .get("content")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(adf_text)
                .collect();
            format!("{own}{}", inner.join(" "))
        }
        _ => String::new(),
    }
}

// ---------------------------------------------------------------- ServiceNow

fn sn_error(status: StatusCode, message: &str, detail: &str) -> Response {
    (
        status,
        Json(json!({"error": {"message": message, "detail": detail}, "status": "failure"})),
    )
        .into_response()
}

fn sn_record(t: &Ticket) -> Value {
    let mut r = t.fields.clone();
    r.insert("sys_id".into(), json!(t.id));
    r.insert("number".into(), json!(t.key));
    r.insert("state".into(), json!(t.status));
    Value::Object(r)
}

async fn servicenow(
    State(fake): State<Fake>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(rest): Path<String>,
    Query(q): Query<std::collections::HashMap<String, String>>,
    body: Bytes,
) -> Response {
    record(&fake, method.clone(), &uri, &headers, &body);
    if !authorized(&fake, &headers) {
        return sn_error(
            StatusCode::UNAUTHORIZED,
            "User Not Authenticated",
            "Required to provide Auth information",
        );
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut book = fake.book.lock().unwrap();
    let parts: Vec<&str> = rest.split('/').collect();
    let table = parts[0];
    if table != "sc_task" && table != "incident" {
        return sn_error(
            StatusCode::BAD_REQUEST,
            &format!("Invalid table {table}"),
            "",
        );
    }
    let prefix = if table == "incident" { "INC" } else { "SCTASK" };
    match (method.as_str(), parts.as_slice()) {
        ("POST", [_]) => {
            if let Some((status, err)) = book.refuse_next_create.take() {
                return (StatusCode::from_u16(status).unwrap(), Json(err)).into_response();
            }
            let n = book.tickets.len() + 1;
            let t = Ticket {
                id: format!("{:032x}", 0xab00 + n),
                key: format!("{prefix}{:07}", 10000 + n),
                status: "1".into(),
                fields: body.as_object().cloned().unwrap_or_default(),
                comments: Vec::new(),
            };
            let answer = json!({"result": sn_record(&t)});
            book.tickets.push(t);
            if std::mem::take(&mut book.lose_next_create) {
                return lost();
            }
            (StatusCode::CREATED, Json(answer)).into_response()
        }
        ("GET", [_]) => {
            let query = q.get("sysparm_query").cloned().unwrap_or_default();
            let wanted = query
                .split('^')
                .find_map(|c| c.strip_prefix("correlation_id="))
                .unwrap_or_default()
                .to_owned();
            let result: Vec<Value> = book
                .tickets
                .iter()
                .filter(|t| {
                    t.fields.get("correlation_id").and_then(Value::as_str) == Some(wanted.as_str())
                })
                .map(sn_record)
                .collect();
            Json(json!({"result": result})).into_response()
        }
        ("GET", [_, sys_id]) => match book.tickets.iter().find(|t| t.id == *sys_id) {
            Some(t) => Json(json!({"result": sn_record(t)})).into_response(),
            None => sn_error(
                StatusCode::NOT_FOUND,
                "No Record found",
                "Record doesn't exist or ACL restricts the record retrieval",
            ),
        },
        ("PATCH", [_, sys_id]) => {
            let Some(t) = book.tickets.iter_mut().find(|t| t.id == *sys_id) else {
                return sn_error(
                    StatusCode::NOT_FOUND,
                    "No Record found",
                    "Record doesn't exist or ACL restricts the record retrieval",
                );
            };
            if let Some(m) = body.as_object() {
                for (k, v) in m {
                    match k.as_str() {
                        "state" => t.status = v.as_str().unwrap_or_default().to_owned(),
                        "work_notes" => t.comments.push(v.clone()),
                        _ => {
                            t.fields.insert(k.clone(), v.clone());
                        }
                    }
                }
            }
            Json(json!({"result": sn_record(t)})).into_response()
        }
        _ => sn_error(StatusCode::METHOD_NOT_ALLOWED, "Method not Supported", ""),
    }
}

/// A fake ServiceNow instance whose integration user is `scim.bridge` / `sn-pass`.
pub async fn servicenow_instance() -> Fake {
    let (listener, fake) = bind(basic("scim.bridge", "sn-pass")).await;
    let router = Router::new()
        .route(
            "/api/now/table/{*rest}",
            get(servicenow).post(servicenow).patch(servicenow),
        )
        .with_state(fake.clone());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    fake
}
