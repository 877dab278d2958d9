use crate::helpers::TestApp;

#[tokio::test]
async fn healthz_and_readyz_answer_without_a_token_and_carry_a_request_id() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    for path in ["/healthz", "/readyz"] {
        let res = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        let id = res
            .headers()
            .get("x-request-id")
            .expect("x-request-id on every response");
        assert!(uuid::Uuid::parse_str(id.to_str().unwrap()).is_ok());
    }
}

#[tokio::test]
async fn readyz_is_503_when_the_database_is_gone() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool.clone()).await;
    pool.close().await;
    let res = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 503);
}

#[tokio::test]
async fn a_client_request_id_is_echoed() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let res = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "abc-123");
}

#[tokio::test]
async fn the_root_page_points_to_the_ui_and_the_scim_base_without_a_token() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let res = app.client.get(app.url("/")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["content-type"],
        "text/html; charset=utf-8",
        "a page for browsers"
    );
    assert!(res.headers().contains_key("content-security-policy"));
    let html = res.text().await.unwrap();
    for wanted in [
        r#"<a href="/ui">"#,
        "<code>/scim/v2</code>",
        "<code>/api/v1</code>",
        "docs/okta.md",
        "docs/entra.md",
    ] {
        assert!(html.contains(wanted), "{wanted} missing from: {html}");
    }
    // The UI link really leads to the UI (its sign-in page, without a session).
    let res = app.client.get(app.url("/ui")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.url().path(), "/ui/login");
    // Only GET: another method is refused in the API's JSON error format.
    let res = app.client.post(app.url("/")).send().await.unwrap();
    assert_eq!(res.status(), 405);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["code"], "method_not_allowed", "{body}");
}
