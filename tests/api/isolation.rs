//! Per-app isolation (a token belongs to one app and sees nothing else): a token of app A
//! sees nothing of app B on any route. The routes come from
//! `scimbridge::http::route_table()`, so a route added later is checked too; a route with a
//! path parameter this file does not know how to fill with one of B's ids fails the test
//! until it is taught.

use base64::Engine;
use reqwest::{header, redirect, Client, Method, Response};
use serde_json::{json, Value};

use crate::helpers::{okta_user, TestApp};
use scimbridge::auth::Role;

const B_APP: &str = "sixsense";
const B_USER_NAME: &str = "zed.secret@bcorp.example";
const B_EXTERNAL_ID: &str = "ext-bcorp-zed-7731";
const B_GROUP: &str = "BCorp Hidden Admins";

/// What app B owns, as B's own tokens created it.
struct AppB {
    scim: String,
    agent: String,
    admin: String,
    user_id: String,
    group_id: String,
    /// A task with an attachment (`/attachments/1`).
    task_id: String,
    /// A task held in a batch (approve/reject target).
    held_task_id: String,
    batch_id: String,
    /// A snapshot of B's user list the safeguard holds (apply/discard target).
    snapshot_id: String,
    /// B's ticket bridge (its inbound webhook's path).
    bridge_id: String,
    /// B's agent token (revoke target).
    token_id: String,
    /// B's OAuth client (revoke target).
    oauth_client_id: String,
}

impl AppB {
    /// Strings that must never appear in a response to app A.
    fn markers(&self) -> Vec<String> {
        vec![
            B_USER_NAME.into(),
            B_EXTERNAL_ID.into(),
            B_GROUP.into(),
            self.user_id.clone(),
            self.group_id.clone(),
            self.token_id.clone(),
            self.oauth_client_id.clone(),
            "robot-b".into(),
            "entra-oauth-b".into(),
        ]
    }
}

async fn b_request(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
) -> reqwest::RequestBuilder {
    app.client.request(method, app.url(path)).bearer_auth(token)
}

async fn b_json(res: Response, want: u16) -> Value {
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    assert_eq!(status, want, "setting up app B: {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// Builds app B: a user with an email and externalId, a group with that member, a task
/// completed with an attachment, and a held batch of deactivations.
async fn seed_b(app: &TestApp) -> AppB {
    app.add_app(B_APP).await;
    let scim = app.token(B_APP, Role::Scim, "okta-b").await;
    let agent = app.token(B_APP, Role::Agent, "robot-b").await;
    let admin = app.token(B_APP, Role::Admin, "bob-b").await;
    let mut body = okta_user(B_USER_NAME);
    body["externalId"] = json!(B_EXTERNAL_ID);
    let user = b_json(
        b_request(app, Method::POST, "/scim/v2/Users", &scim)
            .await
            .json(&body)
            .send()
            .await
            .unwrap(),
        201,
    )
    .await;
    let user_id = user["id"].as_str().unwrap().to_owned();
    let group = b_json(
        b_request(app, Method::POST, "/scim/v2/Groups", &scim)
            .await
            .json(&json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName": B_GROUP,
                "members": [{"value": user_id}]
            }))
            .send()
            .await
            .unwrap(),
        201,
    )
    .await;
    let group_id = group["id"].as_str().unwrap().to_owned();
    // More users, so a burst of deactivations is held as a batch (People.ai: > 20).
    let mut others = Vec::new();
    for i in 0..22 {
        let u = b_json(
            b_request(app, Method::POST, "/scim/v2/Users", &scim)
                .await
                .json(&okta_user(&format!("b{i}@bcorp.example")))
                .send()
                .await
                .unwrap(),
            201,
        )
        .await;
        others.push(u["id"].as_str().unwrap().to_owned());
    }
    // Work every task; the first one gets an attachment.
    let png = base64::engine::general_purpose::STANDARD.encode(b"\x89PNG secret of B");
    let mut task_id = String::new();
    loop {
        let res = b_request(app, Method::POST, "/api/v1/tasks/claim", &agent)
            .await
            .send()
            .await
            .unwrap();
        if res.status() == 204 {
            break;
        }
        let t = b_json(res, 200).await;
        let mut done = json!({"outcome": "done", "lease_id": t["lease_id"]});
        if task_id.is_empty() {
            task_id = t["id"].to_string().trim_matches('"').to_owned();
            done["attachments"] =
                json!([{"filename": "b.png", "content_type": "image/png", "data": png}]);
        }
        let res = b_request(
            app,
            Method::POST,
            &format!(
                "/api/v1/tasks/{}/complete",
                t["id"].to_string().trim_matches('"')
            ),
            &agent,
        )
        .await
        .json(&done)
        .send()
        .await
        .unwrap();
        b_json(res, 200).await;
    }
    assert!(!task_id.is_empty(), "app B has a task");
    for id in &others {
        let res = b_request(app, Method::PATCH, &format!("/scim/v2/Users/{id}"), &scim)
            .await
            .json(
                &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "path": "active", "value": false}]}),
            )
            .send()
            .await
            .unwrap();
        b_json(res, 200).await;
    }
    let batches = b_json(
        b_request(app, Method::GET, "/api/v1/batches", &admin)
            .await
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    let batch_id = batches["batches"][0]["id"]
        .to_string()
        .trim_matches('"')
        .to_owned();
    assert!(batch_id != "null", "app B has a batch: {batches}");
    let held = b_json(
        b_request(app, Method::GET, "/api/v1/tasks?state=held", &admin)
            .await
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    let held_task_id = held["tasks"][0]["id"]
        .to_string()
        .trim_matches('"')
        .to_owned();
    assert!(held_task_id != "null", "app B has a held task: {held}");
    let snap = b_json(
        b_request(app, Method::POST, "/api/v1/snapshots", &admin)
            .await
            .header("content-type", "text/csv")
            .body(format!("Email,Status\n{B_USER_NAME},Inactive\n"))
            .send()
            .await
            .unwrap(),
        201,
    )
    .await;
    assert_eq!(snap["state"], "held", "app B has a held snapshot: {snap}");
    let snapshot_id = snap["id"].to_string();
    // A ticket bridge (to nowhere: nothing listens on port 9).
    let bridge = b_json(
        b_request(app, Method::PUT, "/api/v1/ticket-bridge", &admin)
            .await
            .json(
                &json!({"system": "servicenow", "base_url": "http://127.0.0.1:9",
                          "auth": {"type": "bearer", "secret": "b-secret"},
                          "settings": {"table": "sc_task"}, "kinds": ["reactivate"]}),
            )
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    let bridge_id = bridge["bridge_id"].as_str().unwrap().to_owned();
    let token_id: uuid::Uuid =
        sqlx::query_scalar("select token_id from token where name = 'robot-b'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    let oauth_client_id = app
        .store
        .insert_oauth_client(
            B_APP,
            "entra-oauth-b",
            &scimbridge::auth::hash_token("b-client-secret"),
        )
        .await
        .unwrap();
    AppB {
        token_id: token_id.to_string(),
        oauth_client_id: oauth_client_id.to_string(),
        snapshot_id,
        scim,
        agent,
        admin,
        user_id,
        group_id,
        task_id,
        held_task_id,
        batch_id,
        bridge_id,
    }
}

/// Fills a route's path parameters with ids of app B; `None` for a parameter this test
/// has not been taught (the test then fails, naming the route).
fn fill(path: &str, b: &AppB) -> Option<String> {
    if !path.contains('{') {
        return Some(path.to_owned());
    }
    if path.starts_with("/scim/v2/ResourceTypes/") {
        return Some(path.replace("{id}", "User"));
    }
    if path.starts_with("/scim/v2/Schemas/") {
        return Some(path.replace("{id}", "urn:ietf:params:scim:schemas:core:2.0:User"));
    }
    let id = if path.starts_with("/scim/v2/Users/")
        || path.starts_with("/api/v1/users/")
        || path.starts_with("/ui/users/")
    {
        &b.user_id
    } else if path.starts_with("/scim/v2/Groups/") {
        &b.group_id
    } else if path.ends_with("/approve") || path.ends_with("/reject") {
        &b.held_task_id
    } else if path.starts_with("/api/v1/tasks/") || path.starts_with("/ui/tasks/") {
        &b.task_id
    } else if path.starts_with("/api/v1/batches/") || path.starts_with("/ui/batches/") {
        &b.batch_id
    } else if path.starts_with("/api/v1/snapshots/") || path.starts_with("/ui/snapshots/") {
        &b.snapshot_id
    } else if path.starts_with("/api/v1/ticket-hooks/") {
        &b.bridge_id
    } else if path.starts_with("/api/v1/tokens/") || path.starts_with("/ui/tokens/") {
        &b.token_id
    } else if path.starts_with("/api/v1/oauth-clients/") || path.starts_with("/ui/oauth-clients/") {
        &b.oauth_client_id
    } else {
        return None;
    };
    let filled = path.replace("{id}", id).replace("{n}", "1");
    (!filled.contains('{')).then_some(filled)
}

/// Routes whose answer does not depend on the app (discovery, health, static assets,
/// signing in and out): still called, but only checked for leaks.
fn app_neutral(path: &str) -> bool {
    [
        "/healthz",
        "/readyz",
        "/scim/v2/ServiceProviderConfig",
        "/scim/v2/ResourceTypes",
        "/scim/v2/Schemas",
        "/ui/assets/",
        "/ui/login",
        "/ui/logout",
    ]
    .iter()
    .any(|p| path.starts_with(p))
}

/// A plausible body for a write, aimed at B's data where the route takes one.
fn body_for(method: &Method, path: &str, b: &AppB) -> Option<Value> {
    let user_schema = "urn:ietf:params:scim:schemas:core:2.0:User";
    let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "displayName", "value": "taken over by A"}]});
    match (method.as_str(), path) {
        ("POST", "/scim/v2/Users") => Some(okta_user("a.new@acorp.example")),
        ("POST", "/scim/v2/Groups") => Some(json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "A group reaching into B",
            "members": [{"value": b.user_id}]
        })),
        ("POST", p) if p.ends_with(".search") => Some(json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
            "filter": format!("userName eq \"{B_USER_NAME}\" or externalId eq \"{B_EXTERNAL_ID}\" or id eq \"{}\" or displayName eq \"{B_GROUP}\"", b.user_id)
        })),
        ("POST", "/scim/v2/Bulk") => Some(json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
            "Operations": [
                {"method": "PUT", "path": format!("/Users/{}", b.user_id),
                 "data": {"schemas": [user_schema], "userName": "hijack@acorp.example"}},
                {"method": "PATCH", "path": format!("/Users/{}", b.user_id), "data": patch},
                {"method": "PATCH", "path": format!("/Groups/{}", b.group_id), "data": patch},
                {"method": "DELETE", "path": format!("/Users/{}", b.user_id)},
                {"method": "DELETE", "path": format!("/Groups/{}", b.group_id)}
            ]
        })),
        ("PUT", p) if p.starts_with("/scim/v2/Users/") => {
            Some(json!({"schemas": [user_schema], "userName": "hijack@acorp.example"}))
        }
        ("PUT", p) if p.starts_with("/scim/v2/Groups/") => Some(json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "hijacked"
        })),
        ("PATCH", _) => Some(patch),
        ("POST", p) if p.ends_with("/complete") => Some(json!({"outcome": "done"})),
        ("POST", p) if p.ends_with("/reject") => Some(json!({"reason": "A says no"})),
        ("POST", p) if p.ends_with("/reassign") => Some(json!({"to": "queue"})),
        ("POST", "/api/v1/tasks/claim") => Some(json!({"app": B_APP})),
        ("POST", p) if p.starts_with("/api/v1/") => Some(json!({})),
        _ => None,
    }
}

/// Signs in to the web UI with a token; returns the cookie header and the CSRF secret.
async fn ui_session(app: &TestApp, token: &str) -> (String, String) {
    let client = Client::builder()
        .redirect(redirect::Policy::none())
        .build()
        .unwrap();
    let res = client.get(app.url("/ui/login")).send().await.unwrap();
    let login = cookie(&res, "sb_login");
    let html = res.text().await.unwrap();
    let csrf = hidden(&html, "csrf");
    let res = client
        .post(app.url("/ui/login"))
        .header(header::COOKIE, format!("sb_login={login}"))
        .form(&[("token", token), ("csrf", &csrf), ("next", "/ui/tasks")])
        .send()
        .await
        .unwrap();
    let session = format!("sb_session={}", cookie(&res, "sb_session"));
    let page = client
        .get(app.url("/ui/tasks"))
        .header(header::COOKIE, &session)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    (session, hidden(&page, "csrf"))
}

fn cookie(res: &Response, name: &str) -> String {
    res.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .and_then(|v| v.split(';').next())
        .and_then(|p| p.split_once('='))
        .map(|p| p.1.to_owned())
        .unwrap_or_else(|| panic!("cookie {name}"))
}

fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).expect("hidden field") + marker.len();
    let end = html[start..].find('"').expect("closing quote");
    html[start..start + end].to_owned()
}

/// B's data as B sees it, to show that nothing A did changed it.
async fn snapshot(app: &TestApp, b: &AppB) -> Value {
    let mut out = Vec::new();
    for (path, token) in [
        (format!("/scim/v2/Users/{}", b.user_id), &b.scim),
        (format!("/scim/v2/Groups/{}", b.group_id), &b.scim),
        (format!("/api/v1/tasks/{}", b.task_id), &b.agent),
        (format!("/api/v1/tasks/{}", b.held_task_id), &b.admin),
        (format!("/api/v1/batches/{}", b.batch_id), &b.admin),
        (format!("/api/v1/snapshots/{}", b.snapshot_id), &b.admin),
        ("/api/v1/tasks/counts".to_owned(), &b.admin),
        ("/api/v1/tokens".to_owned(), &b.admin),
        ("/api/v1/oauth-clients".to_owned(), &b.admin),
    ] {
        let res = b_request(app, Method::GET, &path, token)
            .await
            .send()
            .await
            .unwrap();
        out.push(b_json(res, 200).await);
    }
    Value::Array(out)
}

#[tokio::test]
async fn a_token_of_one_app_sees_nothing_of_another_app_on_any_route() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let b = seed_b(&app).await;
    let before = snapshot(&app, &b).await;
    let (ui_cookie, ui_csrf) = ui_session(&app, &app.admin_token).await;
    let markers = b.markers();
    let mut failures = Vec::new();
    let mut checked = 0;
    for (method, path) in scimbridge::http::route_table() {
        let Some(url_path) = fill(&path, &b) else {
            failures.push(format!("{method} {path}: no id of app B known for this route; teach tests/api/isolation.rs::fill"));
            continue;
        };
        if path == "/ui/logout" {
            // Would end the session the later /ui checks use; it touches no app data.
            continue;
        }
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        // Every credential app A has that the route's surface accepts.
        let callers: Vec<(&str, String)> = if path.starts_with("/scim/") {
            vec![("scim", app.scim_token.clone())]
        } else if path.starts_with("/api/") {
            vec![
                ("agent", app.agent_token.clone()),
                ("admin", app.admin_token.clone()),
            ]
        } else {
            vec![("ui", String::new())]
        };
        for (who, token) in callers {
            let client = Client::builder()
                .redirect(redirect::Policy::none())
                .build()
                .unwrap();
            let mut req = client.request(method.clone(), app.url(&url_path));
            if who == "ui" {
                req = req.header(header::COOKIE, &ui_cookie);
                if path.ends_with("/complete") {
                    req = req.multipart(
                        reqwest::multipart::Form::new()
                            .text("csrf", ui_csrf.clone())
                            .text("outcome", "done"),
                    );
                } else if method == Method::POST {
                    req = req.form(&[
                        ("csrf", ui_csrf.as_str()),
                        ("outcome", "done"),
                        ("reason", "A"),
                    ]);
                }
            } else {
                req = req.bearer_auth(&token);
                if let Some(body) = body_for(&method, &path, &b) {
                    req = req.json(&body);
                }
            }
            let sent = format!(
                "{url_path} {}",
                body_for(&method, &path, &b).unwrap_or_default()
            );
            let res = req.send().await.unwrap();
            let status = res.status().as_u16();
            let location = res
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let text = res.text().await.unwrap_or_default();
            checked += 1;
            let what = format!("{method} {url_path} as A's {who}");
            if status >= 500 {
                failures.push(format!("{what}: {status} {text}"));
            }
            // An id A itself sent may be echoed back ("User <id> not found"); anything
            // else of B's must not appear.
            if let Some(m) = markers
                .iter()
                .find(|m| text.contains(m.as_str()) && !sent.contains(m.as_str()))
            {
                failures.push(format!("{what}: answer shows B's {m:?}: {status} {text}"));
            }
            // The ticket hook takes no token but its bridge's secret: A's tokens are not it.
            let refused = match path.as_str() {
                "/api/v1/ticket-hooks/{id}" => matches!(status, 401 | 403 | 404),
                _ => matches!(status, 403 | 404),
            };
            if path.contains('{') && !app_neutral(&path) && !refused {
                failures.push(format!(
                    "{what}: {status} {location}, want 404 or 403: {text}"
                ));
            }
            if path == "/scim/v2/Bulk" && status == 200 {
                let body: Value = serde_json::from_str(&text).unwrap_or_default();
                for op in body["Operations"].as_array().into_iter().flatten() {
                    if !matches!(op["status"].as_str(), Some("404" | "403")) {
                        failures.push(format!("{what}: bulk op on B's id answered {op}"));
                    }
                }
            }
        }
    }
    // Filters that name B's data find nothing.
    for (path, filter) in [
        ("/Users", format!("id eq \"{}\"", b.user_id)),
        ("/Users", format!("userName eq \"{B_USER_NAME}\"")),
        ("/Users", format!("externalId eq \"{B_EXTERNAL_ID}\"")),
        ("/Users", format!("emails.value eq \"{B_USER_NAME}\"")),
        ("/Groups", format!("id eq \"{}\"", b.group_id)),
        ("/Groups", format!("displayName eq \"{B_GROUP}\"")),
        ("/Groups", format!("members.value eq \"{}\"", b.user_id)),
    ] {
        let res = app
            .scim(Method::GET, path)
            .query(&[("filter", &filter)])
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let body: Value = res.json().await.unwrap_or_default();
        checked += 1;
        if !(status == 400 || (status == 200 && body["totalResults"] == 0)) {
            failures.push(format!("GET {path}?filter={filter}: {status} {body}"));
        }
    }
    for query in [format!("?user={}", b.user_id), format!("?q={B_USER_NAME}")] {
        for path in ["/tasks", "/users"] {
            let res = app
                .api(Method::GET, &format!("{path}{query}"), &app.admin_token)
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            let text = res.text().await.unwrap_or_default();
            checked += 1;
            if status >= 500 || markers.iter().any(|m| text.contains(m.as_str())) {
                failures.push(format!("GET /api/v1{path}{query}: {status} {text}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} isolation checks failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked > 80, "only {checked} checks ran");
    assert_eq!(
        snapshot(&app, &b).await,
        before,
        "app A changed app B's data"
    );
}
