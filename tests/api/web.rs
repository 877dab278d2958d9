//! The admin web UI over HTTP, as a browser would use it: cookies, forms, redirects.
//! (tests/browser/ drives the same pages in a real Chromium.)

use reqwest::{header, redirect, Client, Response};
use serde_json::Value;

use crate::helpers::{count, okta_user, TestApp};
use scimbridge::auth::Role;

/// A browser-like client of one person: no automatic redirects (tests check them), the
/// session cookie kept by hand.
pub(crate) struct Browser<'a> {
    app: &'a TestApp,
    pub(crate) client: Client,
    session: Option<String>,
}

/// The `name=value` of a Set-Cookie header for `name`, and the whole header.
fn set_cookie(res: &Response, name: &str) -> Option<(String, String)> {
    res.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| {
            let pair = v.split(';').next().unwrap_or_default();
            let value = pair.split_once('=').map(|x| x.1).unwrap_or_default();
            (value.to_owned(), v.to_owned())
        })
}

/// The value of the hidden input `name` in a page.
pub(crate) fn hidden(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')?;
    Some(html[start..start + end].to_owned())
}

pub(crate) fn location(res: &Response) -> String {
    res.headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

impl<'a> Browser<'a> {
    pub(crate) fn new(app: &'a TestApp) -> Browser<'a> {
        Browser {
            app,
            client: Client::builder()
                .redirect(redirect::Policy::none())
                .build()
                .unwrap(),
            session: None,
        }
    }

    pub(crate) fn cookie_header(&self, extra: Option<&str>) -> String {
        [
            self.session.as_ref().map(|s| format!("sb_session={s}")),
            extra.map(str::to_owned),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("; ")
    }

    pub(crate) async fn get(&self, path: &str) -> Response {
        self.client
            .get(self.app.url(path))
            .header(header::COOKIE, self.cookie_header(None))
            .send()
            .await
            .unwrap()
    }

    pub(crate) async fn page(&self, path: &str) -> String {
        let res = self.get(path).await;
        assert_eq!(res.status(), 200, "GET {path}");
        res.text().await.unwrap()
    }

    pub(crate) async fn post(&self, path: &str, form: &[(&str, &str)]) -> Response {
        self.client
            .post(self.app.url(path))
            .header(header::COOKIE, self.cookie_header(None))
            .form(form)
            .send()
            .await
            .unwrap()
    }

    /// Opens the sign-in page and posts the token with the form's secret.
    pub(crate) async fn try_login(&mut self, token: &str, forwarded_https: bool) -> Response {
        let res = self.get("/ui/login").await;
        assert_eq!(res.status(), 200);
        let (login_cookie, _) = set_cookie(&res, "sb_login").expect("sign-in form cookie");
        let html = res.text().await.unwrap();
        let csrf = hidden(&html, "csrf").expect("csrf field");
        let mut req = self
            .client
            .post(self.app.url("/ui/login"))
            .header(
                header::COOKIE,
                self.cookie_header(Some(&format!("sb_login={login_cookie}"))),
            )
            .form(&[("token", token), ("csrf", &csrf), ("next", "/ui/tasks")]);
        if forwarded_https {
            req = req.header("x-forwarded-proto", "https");
        }
        let res = req.send().await.unwrap();
        if let Some((session, _)) = set_cookie(&res, "sb_session") {
            self.session = Some(session);
        }
        res
    }

    pub(crate) async fn login(&mut self, token: &str) {
        let res = self.try_login(token, false).await;
        assert_eq!(res.status(), 303, "sign-in redirects");
        assert!(self.session.is_some(), "sign-in sets the session cookie");
    }

    /// The session's CSRF secret, read from a page's forms.
    pub(crate) async fn csrf(&self) -> String {
        hidden(&self.page("/ui/tasks").await, "csrf").expect("csrf field")
    }
}

async fn first_task(app: &TestApp) -> Value {
    app.tasks("").await.into_iter().next().expect("a task")
}

#[tokio::test]
async fn signing_in_with_an_admin_token_sets_a_locked_down_session_cookie() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let mut b = Browser::new(&app);
    let res = b.try_login(&app.admin_token, false).await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/ui/tasks");
    let (value, cookie) = set_cookie(&res, "sb_session").expect("session cookie");
    assert_eq!(value.len(), 64, "a 256-bit random id, hex");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age=28800"] {
        assert!(cookie.contains(attr), "{cookie} lacks {attr}");
    }
    assert!(!cookie.contains("Secure"), "plain http: no Secure");
    // Only the hash is stored.
    let stored: Vec<String> = sqlx::query_scalar("select session_id from web_session")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_ne!(stored[0], value, "the session id is stored hashed");
    // Over TLS (behind a proxy that says so) the cookie is Secure.
    let mut b2 = Browser::new(&app);
    let res = b2.try_login(&app.agent_token, true).await;
    let (_, cookie) = set_cookie(&res, "sb_session").expect("session cookie");
    assert!(cookie.contains("Secure"), "{cookie}");
    // The session works and shows who signed in, for which app.
    let html = b.page("/ui/tasks").await;
    assert!(
        html.contains("alice") && html.contains("People.ai"),
        "{html}"
    );
}

#[tokio::test]
async fn wrong_and_scim_tokens_cannot_sign_in() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    for (token, expect) in [
        ("sbt_not_a_token", "not valid"),
        (app.scim_token.as_str(), "scim token"),
    ] {
        let mut b = Browser::new(&app);
        let res = b.try_login(token, false).await;
        assert_eq!(res.status(), 403, "{expect}");
        assert!(set_cookie(&res, "sb_session").is_none(), "no session");
        let html = res.text().await.unwrap();
        assert!(html.contains(expect), "{html}");
        assert!(!html.contains(token), "the token is not echoed back");
    }
    // A revoked token cannot sign in either.
    let id: uuid::Uuid = sqlx::query_scalar("select token_id from token where name = 'robot'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    app.store.revoke_token(id).await.unwrap();
    let res = Browser::new(&app).try_login(&app.agent_token, false).await;
    assert_eq!(res.status(), 403);
    assert_eq!(count(&app.pool, "web_session").await, 0);
}

#[tokio::test]
async fn the_sign_in_form_needs_its_own_csrf_secret() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let b = Browser::new(&app);
    let res = b
        .post("/ui/login", &[("token", &app.admin_token), ("csrf", "x")])
        .await;
    assert_eq!(res.status(), 403);
    assert!(set_cookie(&res, "sb_session").is_none());
}

#[tokio::test]
async fn pages_need_a_session_and_return_to_the_page_after_sign_in() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let b = Browser::new(&app);
    for path in [
        "/ui",
        "/ui/tasks",
        "/ui/tasks/1",
        "/ui/users",
        "/ui/reports",
    ] {
        let res = b.get(path).await;
        assert_eq!(res.status(), 303, "{path}");
        assert!(location(&res).starts_with("/ui/login?next="), "{path}");
    }
    let res = b.post("/ui/tasks/1/claim", &[("csrf", "x")]).await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/ui/login");
    let html = b.page("/ui/login?next=%2Fui%2Fusers").await;
    assert_eq!(hidden(&html, "next").as_deref(), Some("/ui/users"));
}

#[tokio::test]
async fn the_queue_and_task_pages_show_a_task_created_over_scim() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    app.create_user(okta_user("ann.lee@example.com")).await;
    let task = first_task(&app).await;
    let mut b = Browser::new(&app);
    b.login(&app.admin_token).await;
    let html = b.page("/ui").await;
    assert!(html.contains("ann.lee@example.com"), "{html}");
    assert!(html.contains(&format!("/ui/tasks/{}", task["id"])));
    assert!(html.contains("lang=\"en\""));
    let html = b.page(&format!("/ui/tasks/{}", task["id"])).await;
    assert!(html.contains(task["title"].as_str().unwrap().split(' ').next().unwrap()));
    assert!(
        html.contains("data-copy=\"ann.lee@example.com\""),
        "copy button"
    );
    assert!(html.contains("Claim this task"));
    assert!(html.contains("Wanted (IdP)"));
    // Search finds it by email, and not by something else.
    assert!(b.page("/ui/tasks?q=ANN.LEE").await.contains("#"));
    let none = b.page("/ui/tasks?q=nobody").await;
    assert!(none.contains("No tasks here"), "{none}");
    // The user list and page, and the reports page.
    let users = b.page("/ui/users?q=ann").await;
    assert!(users.contains("ann.lee@example.com"));
    let user_id = sqlx::query_scalar::<_, uuid::Uuid>("select user_id from scim_user")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let page = b.page(&format!("/ui/users/{user_id}")).await;
    assert!(page.contains("Created by the IdP"), "{page}");
    let reports = b.page("/ui/reports").await;
    assert!(reports.contains("Seats now"));
}

#[tokio::test]
async fn text_from_the_idp_is_escaped() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let mut u = okta_user("x@example.com");
    u["displayName"] = "<script>alert(1)</script>".into();
    u["name"]["givenName"] = "<img src=x onerror=alert(1)>".into();
    app.create_user(u).await;
    let task = first_task(&app).await;
    let mut b = Browser::new(&app);
    b.login(&app.admin_token).await;
    for path in [
        "/ui/tasks".to_owned(),
        format!("/ui/tasks/{}", task["id"]),
        "/ui/users".to_owned(),
    ] {
        let html = b.page(&path).await;
        assert!(!html.contains("<script>alert"), "{path}");
        assert!(!html.contains("<img src=x"), "{path}");
    }
}

#[tokio::test]
async fn claiming_and_completing_through_the_forms_syncs_the_user() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let user = app.create_user(okta_user("bo@example.com")).await;
    let task = first_task(&app).await;
    let id = task["id"].as_i64().unwrap();
    let mut b = Browser::new(&app);
    b.login(&app.admin_token).await;
    let csrf = b.csrf().await;
    let res = b
        .post(&format!("/ui/tasks/{id}/claim"), &[("csrf", &csrf)])
        .await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), format!("/ui/tasks/{id}?notice=claimed"));
    let html = b.page(&format!("/ui/tasks/{id}?notice=claimed")).await;
    assert!(html.contains("Mark as done"), "{html}");
    // Another person sees who holds it, in words.
    let mut other = Browser::new(&app);
    other.login(&app.agent_token).await;
    let csrf2 = other.csrf().await;
    let res = other
        .post(&format!("/ui/tasks/{id}/claim"), &[("csrf", &csrf2)])
        .await;
    assert_eq!(res.status(), 409);
    let html = res.text().await.unwrap();
    assert!(
        html.contains("being worked by alice") && html.contains("lease ends at"),
        "{html}"
    );
    // Complete with a field, a note and a file.
    let form = reqwest::multipart::Form::new()
        .text("csrf", csrf.clone())
        .text("outcome", "done")
        .text("idem", "k1")
        .text("field.app_account_id", "pa-1")
        .text("note", "added")
        .part(
            "files",
            reqwest::multipart::Part::bytes(b"png".to_vec())
                .file_name("shot.png")
                .mime_str("image/png")
                .unwrap(),
        )
        .part(
            "files",
            reqwest::multipart::Part::bytes(Vec::new())
                .file_name("")
                .mime_str("application/octet-stream")
                .unwrap(),
        );
    let res = b
        .client
        .post(app.url(&format!("/ui/tasks/{id}/complete")))
        .header(header::COOKIE, b.cookie_header(None))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "{}", res.text().await.unwrap());
    assert_eq!(location(&res), format!("/ui/tasks?completed={id}"));
    let done: (String, Value, i64) = sqlx::query_as(
        "select state::text, evidence, (select count(*) from task_attachment where task_id = $1) from task where task_id = $1",
    )
    .bind(id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(done.0, "done");
    assert_eq!(done.1["app_account_id"], "pa-1");
    assert_eq!(done.2, 1, "the empty file input is skipped");
    let state = app
        .scim(
            reqwest::Method::GET,
            &format!(
                "/Users/{}?attributes=urn:scimbridge:params:scim:schemas:extension:provisioning:1.0:User",
                user["id"].as_str().unwrap()
            ),
        )
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(
        state["urn:scimbridge:params:scim:schemas:extension:provisioning:1.0:User"]["state"],
        "synced"
    );
    // It left the open queue; its page shows the evidence and a download link.
    let open = b.page("/ui/tasks").await;
    assert!(!open.contains(&format!("data-task=\"{id}\"")));
    let html = b.page(&format!("/ui/tasks/{id}")).await;
    assert!(html.contains("pa-1") && html.contains("shot.png"));
    let file = b.get(&format!("/ui/tasks/{id}/attachments/1")).await;
    assert_eq!(file.status(), 200);
    assert!(file
        .headers()
        .get(header::CONTENT_DISPOSITION)
        .is_some_and(|v| v.to_str().unwrap().starts_with("attachment")));
    assert_eq!(file.headers()["content-security-policy"], "sandbox");
    assert_eq!(file.headers()["cache-control"], "no-store");
}

#[tokio::test]
async fn a_removal_asks_for_its_required_fields_in_words() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let user = app.create_user(okta_user("cy@example.com")).await;
    let t = app.claim(&app.agent_token).await.unwrap();
    app.complete(&t, serde_json::json!({"outcome": "done"}))
        .await;
    app.scim(
        reqwest::Method::DELETE,
        &format!("/Users/{}", user["id"].as_str().unwrap()),
    )
    .send()
    .await
    .unwrap();
    let mut b = Browser::new(&app);
    b.login(&app.admin_token).await;
    let task = app.tasks("?state=open").await.remove(0);
    let id = task["id"].as_i64().unwrap();
    let csrf = b.csrf().await;
    b.post(&format!("/ui/tasks/{id}/claim"), &[("csrf", &csrf)])
        .await;
    let html = b.page(&format!("/ui/tasks/{id}")).await;
    assert!(html.contains("<select id=\"f-seat_freed\""), "{html}");
    let form = reqwest::multipart::Form::new()
        .text("csrf", csrf.clone())
        .text("outcome", "done")
        .text("note", "kept text");
    let res = b
        .client
        .post(app.url(&format!("/ui/tasks/{id}/complete")))
        .header(header::COOKIE, b.cookie_header(None))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let html = res.text().await.unwrap();
    // The label is a question: quoted, so no "?." double punctuation.
    assert!(
        html.contains("Fill in “Was the seat (licence) freed?”."),
        "{html}"
    );
    assert!(html.contains("kept text"), "the note is kept");
    let state: String = sqlx::query_scalar("select state::text from task where task_id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(state, "in_progress");
}

#[tokio::test]
async fn a_form_post_without_the_csrf_token_is_refused_and_changes_nothing() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    app.create_user(okta_user("dee@example.com")).await;
    let task = first_task(&app).await;
    let mut b = Browser::new(&app);
    b.login(&app.admin_token).await;
    let audits = count(&app.pool, "audit").await;
    for form in [vec![], vec![("csrf", "0".repeat(64))]] {
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let res = b
            .post(&format!("/ui/tasks/{}/claim", task["id"]), &form)
            .await;
        assert_eq!(res.status(), 403);
        assert!(res.text().await.unwrap().contains("nothing was changed"));
    }
    let res = b.post("/ui/logout", &[]).await;
    assert_eq!(res.status(), 403, "sign-out is a form too");
    assert_eq!(count(&app.pool, "audit").await, audits);
    assert_eq!(app.tasks("?state=open").await.len(), 1, "still open");
    assert_eq!(count(&app.pool, "web_session").await, 1, "still signed in");
}

#[tokio::test]
async fn a_token_of_another_app_sees_nothing() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    app.create_user(okta_user("eve@example.com")).await;
    let task = first_task(&app).await;
    app.add_app("other").await;
    let other_token = app.token("other", Role::Admin, "olga").await;
    let mut b = Browser::new(&app);
    b.login(&other_token).await;
    let html = b.page("/ui/tasks").await;
    assert!(!html.contains("eve@example.com"));
    assert!(html.contains("No tasks here"));
    assert!(
        html.contains(">other<"),
        "the session's app is named: {html}"
    );
    assert_eq!(
        b.get(&format!("/ui/tasks/{}", task["id"])).await.status(),
        404
    );
    let user_id = task["subject"]["id"].as_str().unwrap();
    assert_eq!(b.get(&format!("/ui/users/{user_id}")).await.status(), 404);
    assert!(!b.page("/ui/users").await.contains("eve@example.com"));
    let csrf = b.csrf().await;
    let res = b
        .post(
            &format!("/ui/tasks/{}/claim", task["id"]),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(res.status(), 404);
    assert_eq!(app.tasks("?state=open").await.len(), 1);
}

#[tokio::test]
async fn signing_out_ends_the_session() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let mut b = Browser::new(&app);
    b.login(&app.admin_token).await;
    let csrf = b.csrf().await;
    let res = b.post("/ui/logout", &[("csrf", &csrf)]).await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/ui/login?signed_out=1");
    let (_, cleared) = set_cookie(&res, "sb_session").expect("cookie cleared");
    assert!(cleared.contains("Max-Age=0"));
    assert_eq!(count(&app.pool, "web_session").await, 0);
    // The old cookie no longer works.
    let res = b.get("/ui/tasks").await;
    assert_eq!(res.status(), 303);
    assert!(location(&res).starts_with("/ui/login"));
}

#[tokio::test]
async fn an_expired_session_goes_back_to_sign_in_with_a_message() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let mut b = Browser::new(&app);
    b.login(&app.admin_token).await;
    sqlx::query("update web_session set expires_at = now() - interval '1 second'")
        .execute(&app.pool)
        .await
        .unwrap();
    let res = b.get("/ui/tasks").await;
    assert_eq!(res.status(), 303);
    let to = location(&res);
    assert!(to.starts_with("/ui/login?expired=1"), "{to}");
    assert_eq!(count(&app.pool, "web_session").await, 0, "deleted");
    let html = b.page(&to).await;
    assert!(html.contains("Your session ended"), "{html}");
}

#[tokio::test]
async fn revoking_the_token_ends_its_sessions() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let mut b = Browser::new(&app);
    b.login(&app.agent_token).await;
    assert_eq!(b.get("/ui/tasks").await.status(), 200);
    let id: uuid::Uuid = sqlx::query_scalar("select token_id from token where name = 'robot'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    app.store.revoke_token(id).await.unwrap();
    let res = b.get("/ui/tasks").await;
    assert_eq!(res.status(), 303);
    let to = location(&res);
    assert!(to.starts_with("/ui/login?revoked=1"), "{to}");
    assert_eq!(count(&app.pool, "web_session").await, 0, "deleted");
    let html = b.page(&to).await;
    assert!(
        html.contains("Your session ended: the token you signed in with was revoked."),
        "the sign-in page says why: {html}"
    );
}

#[tokio::test]
async fn the_queue_lists_tasks_in_claim_order_leavers_first() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let leaver = app.create_user(okta_user("leaver@example.com")).await;
    let t = app.claim(&app.agent_token).await.unwrap();
    app.complete(&t, serde_json::json!({"outcome": "done"}))
        .await;
    app.create_user(okta_user("joiner@example.com")).await;
    app.patch(
        &format!("/Users/{}", leaver["id"].as_str().unwrap()),
        serde_json::json!([{"op": "replace", "path": "active", "value": false}]),
    )
    .await;
    let mut b = Browser::new(&app);
    b.login(&app.admin_token).await;
    let html = b.page("/ui/tasks").await;
    let l = html.find("leaver@example.com").unwrap();
    let j = html.find("joiner@example.com").unwrap();
    assert!(l < j, "the deactivation is listed first");
    let first = app.claim(&app.agent_token).await.unwrap();
    assert_eq!(first["kind"], "deactivate", "as claims take them");
}

#[tokio::test]
async fn assets_are_served_with_cache_headers() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let b = Browser::new(&app);
    let html = b.page("/ui/login").await;
    let start = html.find("/ui/assets/app.css?v=").unwrap();
    let end = start + html[start..].find('"').unwrap();
    let res = b.get(&html[start..end]).await;
    assert_eq!(res.status(), 200);
    assert!(res.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/css"));
    assert!(res.headers()[header::CACHE_CONTROL]
        .to_str()
        .unwrap()
        .contains("immutable"));
    let etag = res.headers()[header::ETAG].to_str().unwrap().to_owned();
    let again = b
        .client
        .get(app.url("/ui/assets/app.css"))
        .header(header::IF_NONE_MATCH, etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    let js = b.get("/ui/assets/app.js").await;
    assert_eq!(js.status(), 200);
    assert!(js.headers()[header::CACHE_CONTROL]
        .to_str()
        .unwrap()
        .contains("max-age"));
    // Pages carry a strict CSP and are not cached.
    let login = b.get("/ui/login").await;
    assert!(login.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .contains("script-src 'self'"));
    assert_eq!(login.headers()[header::CACHE_CONTROL], "no-store");
    // Unknown UI paths are HTML pages, not JSON.
    let res = b.get("/ui/nope").await;
    assert_eq!(res.status(), 404);
    assert!(res.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
}

#[tokio::test]
async fn late_tasks_carry_a_due_badge_on_the_queue_and_task_pages() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    app.create_user(okta_user("late@example.com")).await;
    let task = first_task(&app).await;
    let mut b = Browser::new(&app);
    b.login(&app.admin_token).await;
    sqlx::query("update task set due_at = now() + interval '1 day', sla_state = 'ok'")
        .execute(&app.pool)
        .await
        .unwrap();
    assert!(!b
        .page("/ui/tasks")
        .await
        .contains("class=\"badge overdue\""));
    sqlx::query("update task set due_at = now() - interval '1 hour'")
        .execute(&app.pool)
        .await
        .unwrap();
    assert!(b.page("/ui/tasks").await.contains("Overdue since"));
    let html = b.page(&format!("/ui/tasks/{}", task["id"])).await;
    assert!(html.contains("class=\"badge overdue\""), "{html}");
}

#[tokio::test]
async fn admins_approve_or_reject_in_the_browser_and_agents_see_no_buttons() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let mut ann = okta_user("ann@corp.com");
    ann["roles"] = serde_json::json!([{"value": "Admin"}]);
    app.create_user(ann).await;
    let mut bob = okta_user("bob@corp.com");
    bob["roles"] = serde_json::json!([{"value": "Admin"}]);
    app.create_user(bob).await;
    let waiting = app.tasks("?state=awaiting_approval").await;
    assert_eq!(waiting.len(), 2);

    let mut agent = Browser::new(&app);
    agent.login(&app.agent_token).await;
    let page = agent.page(&format!("/ui/tasks/{}", waiting[0]["id"])).await;
    assert!(
        !page.contains("/approve\""),
        "an agent gets no approval buttons"
    );

    let mut admin = Browser::new(&app);
    admin.login(&app.admin_token).await;
    let page = admin.page(&format!("/ui/tasks/{}", waiting[0]["id"])).await;
    assert!(page.contains("Approve") && page.contains("Reject"));
    let csrf = admin.csrf().await;
    let res = admin
        .post(&format!("/ui/tasks/{}/approve", waiting[0]["id"]), &[])
        .await;
    assert_eq!(res.status(), 403, "no CSRF token, no approval");
    let res = admin
        .post(
            &format!("/ui/tasks/{}/approve", waiting[0]["id"]),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(res.status(), 303);
    let res = admin
        .post(
            &format!("/ui/tasks/{}/reject", waiting[1]["id"]),
            &[("csrf", &csrf), ("reason", "not in sales")],
        )
        .await;
    assert_eq!(res.status(), 303);
    let states: Vec<String> = app
        .tasks("")
        .await
        .iter()
        .map(|t| t["state"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(states, ["open", "cancelled"]);
    let res = admin.get("/ui/reports/audit.csv").await;
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("task.approve"));
    assert_eq!(
        agent.get("/ui/reports/audit.csv").await.status(),
        403,
        "the export is for admins"
    );
}

/// A server fault (an app naming a profile this server was not started with) is a 500
/// on every surface, never the caller's fault (400) or an `invalid_request`; and it
/// changes nothing.
#[tokio::test]
async fn a_profile_missing_at_run_time_is_a_server_fault_on_every_surface() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let user = app.create_user(okta_user("bo@example.com")).await;
    let task = first_task(&app).await;
    let id = task["id"].as_i64().unwrap();
    let mut b = Browser::new(&app);
    b.login(&app.admin_token).await;
    let csrf = b.csrf().await;
    let res = b
        .post(&format!("/ui/tasks/{id}/claim"), &[("csrf", &csrf)])
        .await;
    assert_eq!(res.status(), 303);
    // As if the app had been created after start with a profile from another directory.
    sqlx::query("update app set profile = 'gone' where app_id = 'peopleai'")
        .execute(&app.pool)
        .await
        .unwrap();

    let res = b
        .post(&format!("/ui/tasks/{id}/release"), &[("csrf", &csrf)])
        .await;
    assert_eq!(res.status(), 500);
    let html = res.text().await.unwrap();
    assert!(html.contains("--profiles-dir"), "{html}");

    let res = app
        .api(
            reqwest::Method::POST,
            &format!("/tasks/{id}/release"),
            &app.admin_token,
        )
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 500);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "internal", "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("--profiles-dir"),
        "{body}"
    );

    let res = app
        .scim(
            reqwest::Method::PATCH,
            &format!("/Users/{}", user["id"].as_str().unwrap()),
        )
        .json(&serde_json::json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "displayName", "value": "Bo B"}]
        }))
        .send()
        .await
        .unwrap();
    let err = crate::helpers::assert_scim_error(res, 500, None).await;
    assert!(err["detail"].as_str().unwrap().contains("gone"), "{err}");

    // Nothing changed: the task is still held, the user's desired state as it was.
    let t = &app.tasks("").await[0];
    assert_eq!(
        (t["id"].as_i64(), t["state"].as_str()),
        (Some(id), Some("in_progress"))
    );
    let name: String = sqlx::query_scalar("select doc->>'displayName' from scim_user")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_ne!(name, "Bo B");
}

#[tokio::test]
async fn an_admin_reassigns_a_claimed_task_from_its_page() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    app.token("peopleai", Role::Agent, "bob").await;
    app.create_user(okta_user("ann@x.com")).await;
    let t = app.claim(&app.agent_token).await.unwrap();
    let id = t["id"].clone();
    let bob: uuid::Uuid = sqlx::query_scalar("select token_id from token where name = 'bob'")
        .fetch_one(&app.pool)
        .await
        .unwrap();

    // An agent sees no reassignment form and cannot post one.
    let mut agent = Browser::new(&app);
    agent.login(&app.agent_token).await;
    let page = agent.page(&format!("/ui/tasks/{id}")).await;
    assert!(!page.contains("reassign-form"), "agents do not reassign");
    let csrf = agent.csrf().await;
    let res = agent
        .post(
            &format!("/ui/tasks/{id}/reassign"),
            &[("csrf", &csrf), ("to", "queue")],
        )
        .await;
    assert_eq!(res.status(), 403);

    let mut admin = Browser::new(&app);
    admin.login(&app.admin_token).await;
    let page = admin.page(&format!("/ui/tasks/{id}")).await;
    assert!(page.contains("reassign-form"), "{page}");
    assert!(page.contains("Back to the queue") && page.contains("bob (agent)"));
    assert!(
        !page.contains("robot (agent)</option>"),
        "the holder is not offered"
    );
    let csrf = admin.csrf().await;
    let res = admin
        .post(
            &format!("/ui/tasks/{id}/reassign"),
            &[
                ("to", bob.to_string().as_str()),
                ("reason", "robot is down"),
            ],
        )
        .await;
    assert_eq!(res.status(), 403, "no CSRF token, no reassignment");
    let res = admin
        .post(
            &format!("/ui/tasks/{id}/reassign"),
            &[
                ("csrf", &csrf),
                ("to", bob.to_string().as_str()),
                ("reason", "robot is down"),
            ],
        )
        .await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), format!("/ui/tasks/{id}?notice=reassigned"));
    let page = admin.page(&location(&res)).await;
    assert!(page.contains("Reassigned") && page.contains("bob, lease until"));
    assert!(
        page.contains("robot is down"),
        "the reason is in the history"
    );
    let res = admin
        .post(
            &format!("/ui/tasks/{id}/reassign"),
            &[("csrf", &csrf), ("to", "not-a-token")],
        )
        .await;
    assert_eq!(res.status(), 400);
    let res = admin
        .post(
            &format!("/ui/tasks/{id}/reassign"),
            &[("csrf", &csrf), ("to", "queue")],
        )
        .await;
    assert_eq!(location(&res), format!("/ui/tasks/{id}?notice=requeued"));
    let states: Vec<String> = app
        .tasks("")
        .await
        .iter()
        .map(|t| t["state"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(states, ["open"]);
    // A refused move says why on the page.
    let res = admin
        .post(
            &format!("/ui/tasks/{id}/reassign"),
            &[("csrf", &csrf), ("to", "queue")],
        )
        .await;
    assert_eq!(res.status(), 409);
    assert!(res.text().await.unwrap().contains("in the queue already"));
}
