//! Abuse hardening (issue #14): NUL characters refused at the edge of every surface,
//! limits on free-text fields.

use reqwest::{header, Method, Response};
use serde_json::{json, Value};

use crate::helpers::{assert_scim_error, count, okta_user, TestApp};
use crate::web::{hidden, Browser};
use scimbridge::limits::{MAX_NOTE_CHARS, MAX_REASON_CHARS, MAX_SEARCH_CHARS};

/// Asserts a task API error and returns its code.
async fn api_error(res: Response, status: u16) -> String {
    assert_eq!(res.status().as_u16(), status);
    let body: Value = res.json().await.unwrap();
    body["code"].as_str().unwrap_or_default().to_owned()
}

/// Asserts a web UI error page.
async fn page_error(res: Response, status: u16) -> String {
    assert_eq!(res.status().as_u16(), status);
    assert!(res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html")));
    res.text().await.unwrap()
}

async fn task_state(app: &TestApp, id: &Value) -> Value {
    app.api(Method::GET, &format!("/tasks/{id}"), &app.admin_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn nul_in_scim_bodies_filters_and_parameters_is_400_and_changes_nothing() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let user = app.create_user(okta_user("ann@corp.com")).await;
    let id = user["id"].as_str().unwrap();
    let users = count(&app.pool, "scim_user").await;
    for field in ["userName", "displayName", "externalId"] {
        let mut body = okta_user("bob@corp.com");
        body[field] = json!("bo\u{0}b");
        let res = app
            .scim(Method::POST, "/Users")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_scim_error(res, 400, Some("invalidValue")).await;
    }
    let res = app
        .patch(
            &format!("/Users/{id}"),
            json!([{"op": "replace", "path": "displayName", "value": "A\u{0}"}]),
        )
        .await;
    assert_scim_error(res, 400, Some("invalidValue")).await;
    let res = app
        .patch(
            &format!("/Users/{id}"),
            json!([{"op": "add", "value": {"emails": [{"value": "x\u{0}@corp.com"}]}}]),
        )
        .await;
    assert_scim_error(res, 400, Some("invalidValue")).await;
    let group = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": "Sales\u{0}"});
    let res = app
        .scim(Method::POST, "/Groups")
        .json(&group)
        .send()
        .await
        .unwrap();
    assert_scim_error(res, 400, Some("invalidValue")).await;
    // In a filter, as a query parameter and in a POST .search body: invalidFilter.
    let res = app
        .scim(Method::GET, "/Users?filter=userName%20eq%20%22a%00%22")
        .send()
        .await
        .unwrap();
    assert_scim_error(res, 400, Some("invalidFilter")).await;
    let res = app
        .scim(Method::POST, "/Users/.search")
        .json(
            &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
            "filter": "userName eq \"a\u{0}\""}),
        )
        .send()
        .await
        .unwrap();
    assert_scim_error(res, 400, Some("invalidFilter")).await;
    // Elsewhere in the query string: invalidValue.
    let res = app
        .scim(Method::GET, &format!("/Users/{id}?attributes=userName%00"))
        .send()
        .await
        .unwrap();
    assert_scim_error(res, 400, Some("invalidValue")).await;
    // An escaped backslash before "u0000" is ordinary text, not a NUL.
    let res = app
        .patch(
            &format!("/Users/{id}"),
            json!([{"op": "replace", "path": "displayName", "value": "A\\u0000"}]),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(count(&app.pool, "scim_user").await, users);
    let now: Value = app.scim_get(&format!("/Users/{id}")).await;
    assert_eq!(now["displayName"], "A\\u0000");
}

#[tokio::test]
async fn nul_in_task_api_json_queries_oauth_and_the_ticket_hook_is_400() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    app.create_user(okta_user("ann@corp.com")).await;
    let t = app.claim(&app.agent_token).await.unwrap();
    for body in [
        json!({"outcome": "done", "note": "x\u{0}"}),
        json!({"outcome": "done", "fields": {"app_account_id": "\u{0}"}}),
        json!({"outcome": "done", "attachments": [{"filename": "a\u{0}.png",
            "content_type": "image/png", "data": "cG5n"}]}),
    ] {
        let code = api_error(app.complete(&t, body).await, 400).await;
        assert_eq!(code, "invalid_character");
    }
    assert_eq!(task_state(&app, &t["id"]).await["state"], "in_progress");
    let res = app
        .api(Method::GET, "/users?user_name=a%00", &app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(api_error(res, 400).await, "invalid_character");
    let res = app
        .client
        .post(app.url("/api/v1/ticket-hooks/1"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(r#"{"issue": {"key": "OPS-\u0000"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(api_error(res, 400).await, "invalid_character");
    let res = app
        .client
        .post(app.url("/oauth/token"))
        .form(&[("grant_type", "client_credentials"), ("client_id", "a\0")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");
}

#[tokio::test]
async fn nul_in_web_forms_search_boxes_and_the_completion_form_is_a_400_page() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    app.create_user(okta_user("ann@corp.com")).await;
    let mut b = Browser::new(&app);
    b.login(&app.admin_token).await;
    for path in ["/ui/tasks?q=ann%00", "/ui/users?q=%00"] {
        let html = page_error(b.get(path).await, 400).await;
        assert!(html.contains("U+0000"), "{html}");
    }
    let t = app.claim(&app.admin_token).await.unwrap();
    let id = t["id"].as_i64().unwrap();
    let csrf = b.csrf().await;
    let res = b
        .post(
            &format!("/ui/tasks/{id}/reassign"),
            &[("csrf", &csrf), ("to", "queue"), ("reason", "r\0")],
        )
        .await;
    page_error(res, 400).await;
    let form = reqwest::multipart::Form::new()
        .text("csrf", csrf.clone())
        .text("outcome", "done")
        .text("note", "a\0b");
    let res = b
        .client
        .post(app.url(&format!("/ui/tasks/{id}/complete")))
        .header(header::COOKIE, b.cookie_header(None))
        .multipart(form)
        .send()
        .await
        .unwrap();
    page_error(res, 400).await;
    let now = task_state(&app, &t["id"]).await;
    assert_eq!(now["state"], "in_progress");
    assert_eq!(now["claimed_by"], "alice");
}

#[tokio::test]
async fn free_text_over_its_limit_is_400_on_each_surface_and_changes_nothing() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    app.create_user(okta_user("ann@corp.com")).await;
    let t = app.claim(&app.agent_token).await.unwrap();
    let note = "n".repeat(MAX_NOTE_CHARS + 1);
    let res = app
        .complete(&t, json!({"outcome": "done", "note": note}))
        .await;
    assert_eq!(api_error(res, 400).await, "too_long");
    let res = app
        .complete(
            &t,
            json!({"outcome": "done", "fields": {"app_account_id": "v".repeat(2_001)}}),
        )
        .await;
    assert_eq!(api_error(res, 400).await, "too_long");
    let many: serde_json::Map<String, Value> =
        (0..51).map(|i| (format!("f{i}"), json!("v"))).collect();
    let res = app
        .complete(&t, json!({"outcome": "done", "fields": many}))
        .await;
    assert_eq!(api_error(res, 400).await, "too_many_fields");
    assert_eq!(task_state(&app, &t["id"]).await["state"], "in_progress");
    // At the limit it is accepted.
    let note = "n".repeat(MAX_NOTE_CHARS);
    let res = app
        .complete(&t, json!({"outcome": "failed", "note": note}))
        .await;
    assert_eq!(res.status(), 200);

    // A reason (reassignment) and a search box of the task API.
    app.create_user(okta_user("bob@corp.com")).await;
    let t2 = app.claim(&app.agent_token).await.unwrap();
    let res = app
        .api(
            Method::POST,
            &format!("/tasks/{}/reassign", t2["id"]),
            &app.admin_token,
        )
        .json(&json!({"to": "queue", "reason": "r".repeat(MAX_REASON_CHARS + 1)}))
        .send()
        .await
        .unwrap();
    assert_eq!(api_error(res, 400).await, "too_long");
    assert_eq!(task_state(&app, &t2["id"]).await["claimed_by"], "robot");
    let long = "a".repeat(MAX_SEARCH_CHARS + 1);
    let res = app
        .api(
            Method::GET,
            &format!("/users?user_name={long}"),
            &app.admin_token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(api_error(res, 400).await, "too_long");

    // The web UI: search boxes, and a completion note that is not echoed back.
    let mut b = Browser::new(&app);
    b.login(&app.admin_token).await;
    for path in [format!("/ui/tasks?q={long}"), format!("/ui/users?q={long}")] {
        let html = page_error(b.get(&path).await, 400).await;
        assert!(html.contains("256 characters"), "{html}");
    }
    let res = app
        .api(
            Method::POST,
            &format!("/tasks/{}/reassign", t2["id"]),
            &app.admin_token,
        )
        .json(&json!({"to": "alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let id = t2["id"].as_i64().unwrap();
    let page = b.page(&format!("/ui/tasks/{id}")).await;
    let csrf = hidden(&page, "csrf").unwrap();
    let marker = "Z".repeat(MAX_NOTE_CHARS + 1);
    let form = reqwest::multipart::Form::new()
        .text("csrf", csrf)
        .text("outcome", "failed")
        .text("note", marker.clone());
    let res = b
        .client
        .post(app.url(&format!("/ui/tasks/{id}/complete")))
        .header(header::COOKIE, b.cookie_header(None))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let html = page_error(res, 400).await;
    assert!(html.contains("longer than 10000 characters"), "{html}");
    assert!(
        !html.contains(&marker),
        "the oversized note is not echoed back"
    );
    assert_eq!(task_state(&app, &t2["id"]).await["state"], "in_progress");
}
