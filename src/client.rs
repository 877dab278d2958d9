//! A small client of the task API (`/api/v1`), shared by the agent runner
//! (`scimbridge agent`) and the admin CLI (`scimbridge tasks …`, `scimbridge users …`).
//!
//! Both run away from the server (often over HTTPS through a load balancer), so they
//! talk HTTP only and never need a database. Every answer other than 2xx becomes a
//! [`ClientError::Api`] carrying the API's stable `code` and its `message`; a request
//! that could not get an answer names the URL it could not reach.
//!
//! Typed views ([`Task`], [`User`], …) keep the exact JSON the server sent in `raw`,
//! because the agent hands that JSON to handlers verbatim and `--json` prints it: a
//! field the server adds later reaches them even when this client does not know it.

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::reconcile::TaskState;

/// Where the server is and who we are: `--url`/`SCIMBRIDGE_URL`, `--token`/`SCIMBRIDGE_TOKEN`.
#[derive(Debug, Clone, clap::Args)]
pub struct Connection {
    /// Base URL of the scimbridge server (e.g. https://scim.example.com).
    #[arg(long, env = "SCIMBRIDGE_URL", global = true)]
    pub url: Option<String>,
    /// An agent or admin token of the app.
    #[arg(long, env = "SCIMBRIDGE_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
}

impl Connection {
    /// A client for these settings; says which setting is missing.
    pub fn client(&self) -> Result<Client, ClientError> {
        let url = self.url.as_deref().filter(|u| !u.trim().is_empty()).ok_or_else(|| {
            ClientError::Config(
                "no server URL: pass --url or set SCIMBRIDGE_URL (e.g. https://scim.example.com)".into(),
            )
        })?;
        let token = self
            .token
            .as_deref()
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| {
                ClientError::Config(
                    "no token: pass --token or set SCIMBRIDGE_TOKEN (an agent or admin token; \
                 create one with `scimbridge token create --role agent …`)"
                        .into(),
                )
            })?;
        Client::new(url, token)
    }
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error (`{"code", "message"}`).
    #[error("{message} ({code})")]
    Api {
        /// HTTP status.
        status: u16,
        /// The API's stable error code (`not_your_task`, `missing_fields`, …).
        code: String,
        /// The API's explanation.
        message: String,
    },
    /// No answer: connection refused or reset, DNS, TLS, timeout. The request may or
    /// may not have reached the server, so only idempotent requests may be resent.
    #[error("cannot reach {url}: {reason}")]
    Unreachable {
        /// The URL of the request.
        url: String,
        /// The innermost cause (e.g. "Connection refused (os error 111)").
        reason: String,
    },
    /// The server answered 2xx with something this client cannot read.
    #[error("unexpected answer from {url}: {reason}")]
    Protocol {
        /// The URL of the request.
        url: String,
        /// What was wrong with it.
        reason: String,
    },
    /// A local setting is wrong or missing.
    #[error("{0}")]
    Config(String),
}

impl ClientError {
    /// The API error code, if the server answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The HTTP status, if the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether sending the same request again may succeed: no answer at all, or the
    /// server (or a proxy in front of it) was overloaded or failed. 4xx answers are
    /// final: the request itself is wrong and would be refused again.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Unreachable { .. } => true,
            ClientError::Api { status, .. } => matches!(status, 429 | 500 | 502 | 503 | 504),
            ClientError::Protocol { .. } | ClientError::Config(_) => false,
        }
    }
}

/// Result of a client call.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// How long an ordinary request may take; claims add their long-poll wait to it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long establishing a connection may take, so an unreachable server is reported
/// quickly instead of after the request timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A task API client. Cheap to clone (the connection pool is shared).
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    /// `<url>/api/v1`, without a trailing slash.
    api: String,
    token: String,
}

impl Client {
    /// A client of the server at `url` (its root; a trailing `/api/v1` is accepted too).
    pub fn new(url: &str, token: &str) -> Result<Client> {
        let url = url.trim().trim_end_matches('/');
        let url = url.strip_suffix("/api/v1").unwrap_or(url);
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ClientError::Config(format!(
                "the server URL must start with http:// or https://, got {url:?}"
            )));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("scimbridge/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Config(format!("cannot set up the HTTP client: {e}")))?;
        Ok(Client {
            http,
            api: format!("{url}/api/v1"),
            token: token.trim().to_owned(),
        })
    }

    /// The base URL of the API (`…/api/v1`).
    pub fn api_url(&self) -> &str {
        &self.api
    }

    /// Sends one request; `Ok(None)` for 204 No Content.
    async fn call(&self, req: Request<'_>) -> Result<Option<Value>> {
        let url = format!("{}{}", self.api, req.path);
        let mut b = self
            .http
            .request(req.method, &url)
            .bearer_auth(&self.token)
            .timeout(req.timeout.unwrap_or(REQUEST_TIMEOUT));
        if let Some(key) = req.idempotency_key {
            b = b.header("Idempotency-Key", key);
        }
        if let Some(body) = req.body {
            b = b.json(body);
        }
        let res = b.send().await.map_err(|e| unreachable(&url, &e))?;
        let status = res.status();
        // A body that breaks off is a lost answer, like a lost connection.
        let bytes = res.bytes().await.map_err(|e| unreachable(&url, &e))?;
        if status == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(api_error(status, &bytes));
        }
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ClientError::Protocol {
                url,
                reason: format!("not JSON ({e})"),
            })
    }

    /// Sends a request that must answer with a body.
    async fn call_json(&self, req: Request<'_>) -> Result<Value> {
        let path = req.path.clone();
        self.call(req).await?.ok_or_else(|| ClientError::Protocol {
            url: format!("{}{path}", self.api),
            reason: "empty answer (204) where a body was expected".into(),
        })
    }

    /// `POST /tasks/claim`: the next task, or `None` when none became claimable within
    /// `wait` seconds.
    pub async fn claim(&self, claim: &Claim) -> Result<Option<Task>> {
        let body = serde_json::to_value(claim).unwrap_or_else(|_| json!({}));
        // The server holds the request up to `wait` seconds before answering 204.
        let timeout = REQUEST_TIMEOUT + Duration::from_secs(claim.wait.unwrap_or(0));
        let got = self
            .call(Request::post("/tasks/claim", &body).timeout(timeout))
            .await?;
        got.map(Task::from_value).transpose()
    }

    /// `POST /tasks/{id}/heartbeat`: extends the lease (by `lease_seconds` from now, or
    /// by the claim's lease length).
    pub async fn heartbeat(
        &self,
        id: i64,
        lease_id: Option<&str>,
        lease_seconds: Option<u64>,
    ) -> Result<Task> {
        let mut body = Map::new();
        if let Some(l) = lease_id {
            body.insert("lease_id".into(), json!(l));
        }
        if let Some(s) = lease_seconds {
            body.insert("lease_seconds".into(), json!(s));
        }
        let body = Value::Object(body);
        Task::from_value(
            self.call_json(Request::post(&format!("/tasks/{id}/heartbeat"), &body))
                .await?,
        )
    }

    /// `POST /tasks/{id}/complete`, once. `idempotency_key` makes a resend answer with
    /// the first result instead of failing or completing twice.
    pub async fn complete(
        &self,
        id: i64,
        c: &Completion,
        idempotency_key: Option<&str>,
    ) -> Result<Task> {
        let body = serde_json::to_value(c)
            .map_err(|e| ClientError::Config(format!("cannot encode the completion: {e}")))?;
        let mut req = Request::post(&format!("/tasks/{id}/complete"), &body);
        req.idempotency_key = idempotency_key;
        Task::from_value(self.call_json(req).await?)
    }

    /// Completes, resending on transient errors (lost connections, 5xx) with
    /// exponential backoff until `retry_for` has passed. Every attempt carries the same
    /// Idempotency-Key, so the completion is recorded exactly once however many
    /// attempts it takes.
    pub async fn complete_with_retry(
        &self,
        id: i64,
        c: &Completion,
        idempotency_key: &str,
        retry_for: Duration,
    ) -> Result<Task> {
        let deadline = Instant::now() + retry_for;
        let mut backoff = Backoff::new();
        loop {
            match self.complete(id, c, Some(idempotency_key)).await {
                Err(e) if e.is_transient() && Instant::now() < deadline => {
                    let nap = backoff.pause();
                    tracing::warn!(task = id, error = %e, retry_in_ms = nap.as_millis() as u64, "completion not recorded yet; retrying");
                    tokio::time::sleep(nap).await;
                }
                other => return other,
            }
        }
    }

    /// `POST /tasks/{id}/release`: gives the task back to the queue.
    pub async fn release(&self, id: i64, lease_id: Option<&str>) -> Result<Task> {
        let body = match lease_id {
            Some(l) => json!({"lease_id": l}),
            None => json!({}),
        };
        Task::from_value(
            self.call_json(Request::post(&format!("/tasks/{id}/release"), &body))
                .await?,
        )
    }

    /// `POST /tasks/{id}/approve` (admins): a task awaiting approval becomes claimable.
    pub async fn approve(&self, id: i64) -> Result<Task> {
        Task::from_value(
            self.call_json(Request::post(&format!("/tasks/{id}/approve"), &json!({})))
                .await?,
        )
    }

    /// `POST /tasks/{id}/reject` (admins): a task awaiting approval is not done.
    pub async fn reject(&self, id: i64, reason: &str) -> Result<Task> {
        Task::from_value(
            self.call_json(Request::post(
                &format!("/tasks/{id}/reject"),
                &json!({"reason": reason}),
            ))
            .await?,
        )
    }

    /// `POST /tasks/{id}/reassign` (admins): to another token (id or name) or `queue`.
    pub async fn reassign(
        &self,
        id: i64,
        to: &str,
        reason: Option<&str>,
        lease_seconds: Option<i64>,
    ) -> Result<Task> {
        let mut body = json!({"to": to});
        if let Some(r) = reason {
            body["reason"] = json!(r);
        }
        if let Some(l) = lease_seconds {
            body["lease_seconds"] = json!(l);
        }
        Task::from_value(
            self.call_json(Request::post(&format!("/tasks/{id}/reassign"), &body))
                .await?,
        )
    }

    /// `GET /tasks`: one page of tasks, oldest first.
    pub async fn tasks(&self, q: &TaskQuery) -> Result<TaskPage> {
        let mut params = Vec::new();
        push(&mut params, "state", q.state.as_deref());
        push(&mut params, "kind", q.kind.as_deref());
        push(&mut params, "subject", q.subject.as_deref());
        push(&mut params, "cursor", q.cursor.as_deref());
        push(
            &mut params,
            "limit",
            q.limit.map(|l| l.to_string()).as_deref(),
        );
        let raw = self
            .call_json(Request::get(&format!("/tasks{}", query(&params))))
            .await?;
        let tasks = raw
            .get("tasks")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(Task::from_value)
            .collect::<Result<Vec<_>>>()?;
        let next_cursor = cursor(&raw);
        Ok(TaskPage {
            tasks,
            next_cursor,
            raw,
        })
    }

    /// `GET /tasks/{id}`: one task with its history.
    pub async fn task(&self, id: i64) -> Result<Task> {
        Task::from_value(
            self.call_json(Request::get(&format!("/tasks/{id}")))
                .await?,
        )
    }

    /// `GET /tasks/counts`: tasks per state and kind.
    pub async fn task_counts(&self) -> Result<Counts> {
        let raw = self.call_json(Request::get("/tasks/counts")).await?;
        let mut counts: Counts = typed(&raw, &self.url("/tasks/counts"))?;
        counts.raw = raw;
        Ok(counts)
    }

    /// `GET /users`: one page of users with their provisioning state.
    pub async fn users(&self, q: &UserQuery) -> Result<UserPage> {
        let mut params = Vec::new();
        push(&mut params, "user_name", q.user_name.as_deref());
        push(&mut params, "state", q.state.as_deref());
        push(&mut params, "cursor", q.cursor.as_deref());
        push(
            &mut params,
            "limit",
            q.limit.map(|l| l.to_string()).as_deref(),
        );
        let path = format!("/users{}", query(&params));
        let raw = self.call_json(Request::get(&path)).await?;
        let users = raw
            .get("users")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|u| User::from_value(u, &self.url(&path)))
            .collect::<Result<Vec<_>>>()?;
        let next_cursor = cursor(&raw);
        Ok(UserPage {
            users,
            next_cursor,
            raw,
        })
    }

    /// `GET /users/{id}`: one user, what the IdP wants next to what the app has.
    pub async fn user(&self, id: &str) -> Result<User> {
        let path = format!("/users/{}", segment(id));
        User::from_value(self.call_json(Request::get(&path)).await?, &self.url(&path))
    }

    /// `GET /users/{id}/history`: everything that happened to the user, oldest first.
    pub async fn user_history(&self, id: &str) -> Result<(Vec<HistoryRecord>, Value)> {
        let path = format!("/users/{}/history", segment(id));
        let raw = self.call_json(Request::get(&path)).await?;
        let history = typed(raw.get("history").unwrap_or(&Value::Null), &self.url(&path))?;
        Ok((history, raw))
    }

    /// `GET /ticket-bridge` (admins): the app's ticket bridge, without secrets.
    pub async fn ticket_bridge(&self) -> Result<Value> {
        self.call_json(Request::get("/ticket-bridge")).await
    }

    /// `PUT /ticket-bridge` (admins): configures the app's ticket bridge.
    pub async fn put_ticket_bridge(&self, body: &Value) -> Result<Value> {
        self.call_json(Request {
            method: Method::PUT,
            ..Request::post("/ticket-bridge", body)
        })
        .await
    }

    /// `DELETE /ticket-bridge` (admins): disables the app's ticket bridge.
    pub async fn disable_ticket_bridge(&self) -> Result<Value> {
        self.call_json(Request {
            method: Method::DELETE,
            ..Request::get("/ticket-bridge")
        })
        .await
    }

    /// `GET /tickets`: one page of the app's tickets, newest task first.
    pub async fn tickets(&self, state: Option<&str>, cursor: Option<&str>) -> Result<Value> {
        let mut params = Vec::new();
        push(&mut params, "state", state);
        push(&mut params, "cursor", cursor);
        self.call_json(Request::get(&format!("/tickets{}", query(&params))))
            .await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.api)
    }

    /// `POST /snapshots`: submits a file of the app's user list (CSV or JSON rows; the
    /// format from `format`, else the file's extension). Waits for it to be applied (or
    /// held) for up to `timeout`. The server streams it; this client sends it from memory.
    pub async fn import_snapshot(
        &self,
        path: &Path,
        format: Option<&str>,
        taken_at: Option<&str>,
        timeout: Duration,
    ) -> Result<Value> {
        let data = tokio::fs::read(path)
            .await
            .map_err(|e| ClientError::Config(format!("cannot read {}: {e}", path.display())))?;
        let format = match format {
            Some(f) => f.to_owned(),
            None => match path
                .extension()
                .and_then(|e| e.to_str())
                .map(str::to_ascii_lowercase)
            {
                Some(e) if e == "json" || e == "ndjson" || e == "jsonl" => "json".into(),
                _ => "csv".into(),
            },
        };
        let content_type = if format == "json" {
            "application/json"
        } else {
            "text/csv"
        };
        let mut params = vec![format!("format={}", encode(&format))];
        push(&mut params, "taken_at", taken_at);
        let name = path.file_name().and_then(|n| n.to_str());
        push(&mut params, "filename", name);
        let url = format!("{}/snapshots{}", self.api, query(&params));
        let res = self
            .http
            .post(&url)
            .bearer_auth(&self.token)
            .header("content-type", content_type)
            .timeout(timeout)
            .body(data)
            .send()
            .await
            .map_err(|e| unreachable(&url, &e))?;
        let status = res.status();
        let bytes = res.bytes().await.map_err(|e| unreachable(&url, &e))?;
        if !status.is_success() {
            return Err(api_error(status, &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol {
            url,
            reason: format!("not JSON ({e})"),
        })
    }

    /// `GET /snapshots`: the newest snapshots (one page of `limit`).
    pub async fn snapshots(&self, limit: u32) -> Result<Value> {
        self.call_json(Request::get(&format!("/snapshots?limit={limit}")))
            .await
    }

    /// `GET /snapshots/{id}`.
    pub async fn snapshot(&self, id: i64) -> Result<Value> {
        self.call_json(Request::get(&format!("/snapshots/{id}")))
            .await
    }

    /// `POST /snapshots/{id}/apply` (`apply`) or `/discard`: an admin's decision on a
    /// held snapshot.
    pub async fn decide_snapshot(&self, id: i64, apply: bool, timeout: Duration) -> Result<Value> {
        let verb = if apply { "apply" } else { "discard" };
        let body = json!({});
        self.call_json(Request::post(&format!("/snapshots/{id}/{verb}"), &body).timeout(timeout))
            .await
    }

    /// `GET /findings`.
    pub async fn findings(&self, kind: Option<&str>, state: &str, limit: u32) -> Result<Value> {
        let mut params = vec![format!("state={}", encode(state)), format!("limit={limit}")];
        push(&mut params, "kind", kind);
        self.call_json(Request::get(&format!("/findings{}", query(&params))))
            .await
    }
}

/// One request to send.
struct Request<'a> {
    method: Method,
    path: String,
    body: Option<&'a Value>,
    idempotency_key: Option<&'a str>,
    timeout: Option<Duration>,
}

impl<'a> Request<'a> {
    fn get(path: &str) -> Request<'a> {
        Request {
            method: Method::GET,
            path: path.to_owned(),
            body: None,
            idempotency_key: None,
            timeout: None,
        }
    }

    fn post(path: &str, body: &'a Value) -> Request<'a> {
        Request {
            method: Method::POST,
            body: Some(body),
            ..Request::get(path)
        }
    }

    fn timeout(mut self, t: Duration) -> Request<'a> {
        self.timeout = Some(t);
        self
    }
}

/// Exponential backoff from 250 ms, doubling, capped at 30 s, with jitter so that many
/// agents that lost the server together do not come back in lockstep.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    /// The first pause is about 250 ms.
    pub fn new() -> Backoff {
        Backoff {
            next: Duration::from_millis(250),
        }
    }

    /// The pause before the next attempt.
    pub fn pause(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(Duration::from_secs(30));
        let jitter = rand::random::<f64>() * 0.25;
        base.mul_f64(1.0 + jitter)
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

/// Reads a reqwest error down to its innermost cause, which is what a person can act on
/// ("Connection refused", "dns error: …", "invalid peer certificate: …").
fn unreachable(url: &str, e: &reqwest::Error) -> ClientError {
    let reason = if e.is_timeout() {
        "no answer in time (timed out)".to_owned()
    } else {
        let mut inner: &dyn std::error::Error = e;
        while let Some(next) = inner.source() {
            inner = next;
        }
        inner.to_string()
    };
    ClientError::Unreachable {
        url: url.to_owned(),
        reason,
    }
}

/// An error answer as `{"code","message"}`; a body in another shape (an HTML page from
/// a proxy) is summarised with its status.
fn api_error(status: StatusCode, body: &[u8]) -> ClientError {
    #[derive(Deserialize)]
    struct Body {
        code: String,
        message: String,
    }
    match serde_json::from_slice::<Body>(body) {
        Ok(b) => ClientError::Api {
            status: status.as_u16(),
            code: b.code,
            message: b.message,
        },
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
            let text: String = text.chars().take(200).collect();
            let reason = status.canonical_reason().unwrap_or("error");
            ClientError::Api {
                status: status.as_u16(),
                code: format!("http_{}", status.as_u16()),
                message: if text.is_empty() {
                    format!("the server answered {} {reason}", status.as_u16())
                } else {
                    format!("the server answered {} {reason}: {text}", status.as_u16())
                },
            }
        }
    }
}

fn typed<T: DeserializeOwned>(v: &Value, url: &str) -> Result<T> {
    T::deserialize(v).map_err(|e| ClientError::Protocol {
        url: url.to_owned(),
        reason: e.to_string(),
    })
}

fn cursor(raw: &Value) -> Option<String> {
    match raw.get("next_cursor") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

fn push(params: &mut Vec<String>, name: &str, value: Option<&str>) {
    if let Some(v) = value {
        params.push(format!("{name}={}", encode(v)));
    }
}

fn query(params: &[String]) -> String {
    if params.is_empty() {
        String::new()
    } else {
        format!("?{}", params.join("&"))
    }
}

/// Percent-encodes a query value or path segment (RFC 3986 unreserved characters stay).
fn encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn segment(id: &str) -> String {
    encode(id.trim())
}

/// A claim request.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Claim {
    /// Lease length in seconds (10–86400); the server's default when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_seconds: Option<u64>,
    /// Seconds to wait for a task when none is claimable now (at most 60).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait: Option<u64>,
    /// Only these task kinds (`create_account`, `remove`, …); all when empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<String>,
}

/// How a task ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Done in the app.
    Done,
    /// Could not be done; the user needs a person.
    Failed,
    /// Nothing to do: the app already is as the task wants it.
    NotApplicable,
}

impl Outcome {
    /// The wire name (and the task state it leads to).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::Failed => "failed",
            Outcome::NotApplicable => "not_applicable",
        }
    }
}

/// A completion request.
#[derive(Debug, Clone, Serialize)]
pub struct Completion {
    /// Done, failed or not applicable.
    pub outcome: Outcome,
    /// The lease from the claim; without it the task must be held by this token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_id: Option<String>,
    /// Free text for the audit trail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Values of the task's completion fields.
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub fields: Map<String, Value>,
    /// Evidence files.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
}

impl Completion {
    /// A completion with this outcome and nothing else.
    pub fn new(outcome: Outcome) -> Completion {
        Completion {
            outcome,
            lease_id: None,
            note: None,
            fields: Map::new(),
            attachments: Vec::new(),
        }
    }
}

/// An evidence file of a completion, base64-encoded as the API takes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attachment {
    /// Plain file name (no directories).
    pub filename: String,
    /// Media type, e.g. `image/png`.
    pub content_type: String,
    /// The bytes, base64 (standard alphabet).
    pub data: String,
}

impl Attachment {
    /// Reads a file, encodes it and guesses its media type from the extension.
    pub fn from_file(path: &Path) -> std::io::Result<Attachment> {
        let data = std::fs::read(path)?;
        let filename = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "attachment".into());
        Ok(Attachment {
            content_type: content_type_of(&filename).to_owned(),
            filename,
            data: base64::engine::general_purpose::STANDARD.encode(data),
        })
    }
}

/// The media type of a file name by its extension; `application/octet-stream` when
/// unknown (the server stores evidence as given and serves it only as a download).
pub fn content_type_of(filename: &str) -> &'static str {
    let ext = filename
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        "pdf" => "application/pdf",
        "txt" | "log" => "text/plain",
        "md" => "text/markdown",
        "csv" => "text/csv",
        "html" | "htm" => "text/html",
        "json" => "application/json",
        "xml" => "application/xml",
        "eml" => "message/rfc822",
        "zip" => "application/zip",
        "gz" => "application/gzip",
        _ => "application/octet-stream",
    }
}

/// Filters of the task list.
#[derive(Debug, Clone, Default)]
pub struct TaskQuery {
    /// A task state's wire name (`open`, `in_progress`, ...); the server checks it.
    pub state: Option<String>,
    /// A task kind.
    pub kind: Option<String>,
    /// A user id.
    pub subject: Option<String>,
    /// The previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Page size (1–500).
    pub limit: Option<u32>,
}

/// Filters of the user list.
#[derive(Debug, Clone, Default)]
pub struct UserQuery {
    /// userName prefix, case-insensitive.
    pub user_name: Option<String>,
    /// `pending`, `synced` or `failed`.
    pub state: Option<String>,
    /// The previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Page size (1–500).
    pub limit: Option<u32>,
}

/// Who a task is about.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Subject {
    /// The user's id.
    #[serde(default)]
    pub id: String,
    /// The user's userName.
    #[serde(default)]
    pub user_name: String,
}

/// A value the worker records when completing a task as done.
#[derive(Debug, Clone, Deserialize)]
pub struct CompletionField {
    /// Key in the completion's `fields`.
    pub name: String,
    /// The question shown to a person.
    #[serde(default)]
    pub label: String,
    /// Whether `done` needs it.
    #[serde(default)]
    pub required: bool,
    /// Allowed answers; empty for free text.
    #[serde(default)]
    pub choices: Vec<String>,
}

/// One audit record of a task's or user's history.
#[derive(Debug, Clone, Deserialize)]
pub struct HistoryRecord {
    /// When.
    pub at: DateTime<Utc>,
    /// Who (token name).
    #[serde(default)]
    pub actor: String,
    /// Their role (`scim`, `agent`, `admin`, `system`).
    #[serde(default)]
    pub actor_role: Option<String>,
    /// What (`task.claim`, `task.complete`, `user.create`, …).
    #[serde(default)]
    pub action: String,
    /// What came of it.
    #[serde(default)]
    pub outcome: String,
    /// The task concerned, if any.
    #[serde(default)]
    pub task_id: Option<i64>,
    /// The request id of the call.
    #[serde(default)]
    pub request_id: Option<String>,
    /// Anything else recorded.
    #[serde(default)]
    pub detail: Value,
}

/// A task as the API shows it. Fields a client does not need are kept in `raw` only.
#[derive(Debug, Clone, Deserialize)]
pub struct Task {
    /// Task id.
    pub id: i64,
    /// The app it belongs to.
    #[serde(default)]
    pub app: String,
    /// `create_account`, `update_attributes`, `change_role`, `deactivate`,
    /// `reactivate` or `remove`.
    pub kind: String,
    /// Where it is in its lifecycle.
    pub state: TaskState,
    /// Who it is about.
    #[serde(default)]
    pub subject: Subject,
    /// One-line summary with the concrete values.
    #[serde(default)]
    pub title: String,
    /// Step-by-step instructions (rendered strings).
    #[serde(default)]
    pub instructions: Vec<Value>,
    /// Field-by-field changes (`[{"field","from","to"}]`).
    #[serde(default)]
    pub changes: Value,
    /// What completing as done must record.
    #[serde(default)]
    pub completion_fields: Vec<CompletionField>,
    /// The in-progress task of the same user this one waits for.
    #[serde(default)]
    pub blocked_by: Option<i64>,
    /// When the task was derived.
    #[serde(default)]
    pub created_at: Option<DateTime<Utc>>,
    /// Who holds (or held) it.
    #[serde(default)]
    pub claimed_by: Option<String>,
    /// The current lease.
    #[serde(default)]
    pub lease_id: Option<String>,
    /// When the lease lapses.
    #[serde(default)]
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// How many times it was claimed.
    #[serde(default)]
    pub attempts: i64,
    /// When it was finished.
    #[serde(default)]
    pub finished_at: Option<DateTime<Utc>>,
    /// Who finished it.
    #[serde(default)]
    pub finished_by: Option<String>,
    /// The worker's note.
    #[serde(default)]
    pub note: Option<String>,
    /// The completion fields recorded.
    #[serde(default)]
    pub evidence: Option<Value>,
    /// Files attached to the completion.
    #[serde(default)]
    pub attachments: Vec<Value>,
    /// Why it was cancelled.
    #[serde(default)]
    pub cancel_reason: Option<String>,
    /// Audit records (only on `GET /tasks/{id}`).
    #[serde(default)]
    pub history: Vec<HistoryRecord>,
    /// The JSON exactly as the server sent it.
    #[serde(skip)]
    pub raw: Value,
}

impl Task {
    /// Reads a task, keeping the JSON in `raw`.
    pub fn from_value(v: Value) -> Result<Task> {
        let mut t: Task = typed(&v, "a task")?;
        t.raw = v;
        Ok(t)
    }
}

/// One page of the task list.
#[derive(Debug, Clone)]
pub struct TaskPage {
    /// The tasks, oldest first.
    pub tasks: Vec<Task>,
    /// Pass as `cursor` for the next page; `None` on the last.
    pub next_cursor: Option<String>,
    /// The JSON exactly as the server sent it.
    pub raw: Value,
}

/// Task counts.
#[derive(Debug, Clone, Deserialize)]
pub struct Counts {
    /// All tasks.
    #[serde(default)]
    pub total: i64,
    /// Per state.
    #[serde(default)]
    pub by_state: std::collections::BTreeMap<String, i64>,
    /// Per kind.
    #[serde(default)]
    pub by_kind: std::collections::BTreeMap<String, i64>,
    /// Per state, then kind.
    #[serde(default)]
    pub by_state_and_kind:
        std::collections::BTreeMap<String, std::collections::BTreeMap<String, i64>>,
    /// The JSON exactly as the server sent it.
    #[serde(skip)]
    pub raw: Value,
}

/// A user as the task API shows it.
#[derive(Debug, Clone, Deserialize)]
pub struct User {
    /// SCIM id.
    pub id: String,
    /// userName.
    pub user_name: String,
    /// Desired `active`.
    #[serde(default)]
    pub active: bool,
    /// When the IdP deleted the user.
    #[serde(default)]
    pub deleted_at: Option<DateTime<Utc>>,
    /// `pending`, `synced` or `failed`.
    #[serde(default)]
    pub state: String,
    /// A task failed and no later one succeeded.
    #[serde(default)]
    pub needs_attention: bool,
    /// The open or in-progress task.
    #[serde(default)]
    pub open_task_id: Option<i64>,
    /// The account the IdP wants (single reads only; null once deleted).
    #[serde(default)]
    pub desired: Option<Value>,
    /// The account the app is known to have (null: none).
    #[serde(default)]
    pub confirmed: Option<Value>,
    /// When the app last confirmed it.
    #[serde(default)]
    pub confirmed_at: Option<DateTime<Utc>>,
    /// The JSON exactly as the server sent it.
    #[serde(skip)]
    pub raw: Value,
}

impl User {
    fn from_value(v: Value, url: &str) -> Result<User> {
        let mut u: User = typed(&v, url)?;
        u.raw = v;
        Ok(u)
    }
}

/// One page of the user list.
#[derive(Debug, Clone)]
pub struct UserPage {
    /// The users, in creation order.
    pub users: Vec<User>,
    /// Pass as `cursor` for the next page; `None` on the last.
    pub next_cursor: Option<String>,
    /// The JSON exactly as the server sent it.
    pub raw: Value,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_normalised_and_checked() {
        assert_eq!(
            Client::new("https://x.example/", "t").unwrap().api_url(),
            "https://x.example/api/v1"
        );
        assert_eq!(
            Client::new("http://h:1/api/v1/", "t").unwrap().api_url(),
            "http://h:1/api/v1"
        );
        assert!(matches!(
            Client::new("x.example", "t"),
            Err(ClientError::Config(_))
        ));
    }

    #[test]
    fn api_errors_keep_code_and_message_and_other_bodies_are_summarised() {
        let e = api_error(
            StatusCode::CONFLICT,
            br#"{"code":"not_your_task","message":"task 7 is held by robot"}"#,
        );
        assert_eq!(e.to_string(), "task 7 is held by robot (not_your_task)");
        assert!(!e.is_transient());
        let e = api_error(
            StatusCode::BAD_GATEWAY,
            b"<html>\n<h1>Bad   gateway</h1></html>",
        );
        assert_eq!(e.code(), Some("http_502"));
        assert!(e.to_string().contains("502 Bad Gateway"), "{e}");
        assert!(e.is_transient());
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(encode("ann+x@corp.com"), "ann%2Bx%40corp.com");
        let mut p = Vec::new();
        push(&mut p, "state", Some("open"));
        push(&mut p, "kind", None);
        assert_eq!(query(&p), "?state=open");
    }

    #[test]
    fn content_types_are_guessed_from_the_extension() {
        assert_eq!(content_type_of("shot.PNG"), "image/png");
        assert_eq!(content_type_of("ticket.pdf"), "application/pdf");
        assert_eq!(content_type_of("README"), "application/octet-stream");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let mut b = Backoff::new();
        let first = b.pause();
        assert!(first >= Duration::from_millis(250) && first < Duration::from_millis(320));
        for _ in 0..20 {
            b.pause();
        }
        assert!(b.pause() <= Duration::from_secs(38));
    }
}
