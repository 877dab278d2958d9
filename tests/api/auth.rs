use reqwest::Method;
use serde_json::Value;

use crate::helpers::{assert_scim_error, okta_user, TestApp};
use scimbridge::auth::Role;

#[tokio::test]
async fn scim_without_a_token_is_401_with_a_scim_error_and_www_authenticate() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let res = app
        .client
        .get(app.url("/scim/v2/Users"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .split(' ')
            .next(),
        Some("Bearer")
    );
    assert_scim_error(res, 401, None).await;
}

#[tokio::test]
async fn scim_with_an_unknown_token_is_401() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let res = app
        .client
        .get(app.url("/scim/v2/Users"))
        .bearer_auth("sbt_nope")
        .send()
        .await
        .unwrap();
    assert_scim_error(res, 401, None).await;
    let res = app
        .client
        .get(app.url("/scim/v2/Users"))
        .header("authorization", "Basic Zm9vOmJhcg==")
        .send()
        .await
        .unwrap();
    assert_scim_error(res, 401, None).await;
}

#[tokio::test]
async fn agent_and_admin_tokens_cannot_use_scim_and_scim_tokens_cannot_use_the_task_api() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    for (token, says) in [
        (&app.agent_token, "an agent token cannot use the SCIM API"),
        (&app.admin_token, "an admin token cannot use the SCIM API"),
    ] {
        let res = app
            .client
            .get(app.url("/scim/v2/Users"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let body = assert_scim_error(res, 403, None).await;
        assert!(body["detail"].as_str().unwrap().starts_with(says), "{body}");
    }
    let res = app
        .api(Method::GET, "/tasks", &app.scim_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "forbidden_role");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("a scim token cannot use the task API"),
        "{body}"
    );
}

#[tokio::test]
async fn the_task_api_without_a_token_is_401_json() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let res = app
        .client
        .get(app.url("/api/v1/tasks"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.headers().contains_key("www-authenticate"));
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "unauthenticated");
}

#[tokio::test]
async fn a_revoked_token_stops_working() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let tokens = app.store.tokens(Some("peopleai")).await.unwrap();
    let okta = tokens.iter().find(|t| t.name == "okta").unwrap();
    assert!(app.store.revoke_token(okta.token_id).await.unwrap());
    let res = app.scim(Method::GET, "/Users").send().await.unwrap();
    assert_scim_error(res, 401, None).await;
}

#[tokio::test]
async fn tokens_are_stored_hashed() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let stored: Vec<Vec<u8>> = sqlx::query_scalar("select secret_hash from token")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored.len(), 3);
    for h in &stored {
        assert_eq!(h.len(), 32, "SHA-256 digests only");
        assert!(!String::from_utf8_lossy(h).contains("sbt_"));
    }
}

#[tokio::test]
async fn a_token_of_another_app_sees_none_of_this_apps_users_groups_or_tasks() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let user = app.create_user(okta_user("ann@corp.com")).await;
    let id = user["id"].as_str().unwrap();
    app.add_app("sixsense").await;
    let other_scim = app.token("sixsense", Role::Scim, "okta-6s").await;
    let other_agent = app.token("sixsense", Role::Agent, "robot-6s").await;

    let get = |path: String, token: &str| {
        app.client
            .get(app.url(&path))
            .bearer_auth(token.to_owned())
            .send()
    };
    assert_scim_error(
        get(format!("/scim/v2/Users/{id}"), &other_scim)
            .await
            .unwrap(),
        404,
        None,
    )
    .await;
    let list: Value = get(
        "/scim/v2/Users?filter=userName%20eq%20%22ann@corp.com%22".into(),
        &other_scim,
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(list["totalResults"], 0);
    let res = app
        .client
        .delete(app.url(&format!("/scim/v2/Users/{id}")))
        .bearer_auth(&other_scim)
        .send()
        .await
        .unwrap();
    assert_scim_error(res, 404, None).await;

    let tasks: Value = get("/api/v1/tasks".into(), &other_agent)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tasks["tasks"].as_array().unwrap().len(), 0);
    let task_id = app.tasks("").await[0]["id"].clone();
    let res = get(format!("/api/v1/tasks/{task_id}"), &other_agent)
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert!(
        app.api(Method::POST, "/tasks/claim", &other_agent)
            .send()
            .await
            .unwrap()
            .status()
            == 204
    );
    let res = app
        .api(Method::GET, "/tasks?app=peopleai", &other_agent)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403, "naming another app is refused");

    // And the user is untouched.
    let res = app
        .scim(Method::GET, &format!("/Users/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}
