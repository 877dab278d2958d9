use reqwest::Method;
use serde_json::Value;

use crate::helpers::{assert_scim_error, TestApp};

#[tokio::test]
async fn service_provider_config_says_what_the_server_does() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let res = app
        .scim(Method::GET, "/ServiceProviderConfig")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/scim+json");
    let spc: Value = res.json().await.unwrap();
    assert_eq!(spc["patch"]["supported"], true);
    assert_eq!(spc["filter"]["supported"], true);
    assert_eq!(spc["filter"]["maxResults"], 500);
    assert_eq!(spc["bulk"]["supported"], true);
    assert_eq!(spc["bulk"]["maxOperations"], 1000);
    assert_eq!(spc["bulk"]["maxPayloadSize"], 1024 * 1024);
    assert_eq!(spc["sort"]["supported"], true);
    assert_eq!(spc["etag"]["supported"], true);
    assert_eq!(spc["pagination"]["cursor"], true);
    assert_eq!(spc["authenticationSchemes"][0]["type"], "oauthbearertoken");
}

#[tokio::test]
async fn resource_types_and_schemas_are_listed_and_addressable() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let rts: Value = app.scim_get("/ResourceTypes").await;
    assert_eq!(rts["totalResults"], 2);
    let user: Value = app.scim_get("/ResourceTypes/User").await;
    assert_eq!(user["endpoint"], "/Users");
    assert_eq!(
        user["schemaExtensions"][0]["schema"],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
    );

    let schemas: Value = app.scim_get("/Schemas").await;
    assert_eq!(schemas["totalResults"], 4);
    let s: Value = app
        .scim(
            Method::GET,
            "/Schemas/urn:ietf:params:scim:schemas:core:2.0:User",
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let user_name = s["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "userName")
        .unwrap();
    assert_eq!(user_name["uniqueness"], "server");
    assert_eq!(user_name["caseExact"], false);

    assert_scim_error(
        app.scim(Method::GET, "/Schemas/urn:nope")
            .send()
            .await
            .unwrap(),
        404,
        None,
    )
    .await;
    assert_scim_error(
        app.scim(Method::GET, "/ResourceTypes/Nope")
            .send()
            .await
            .unwrap(),
        404,
        None,
    )
    .await;
}

#[tokio::test]
async fn writes_to_discovery_endpoints_are_405() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    for path in [
        "/ServiceProviderConfig",
        "/ResourceTypes",
        "/Schemas",
        "/Schemas/urn:ietf:params:scim:schemas:core:2.0:User",
    ] {
        for m in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            let res = app
                .scim(m.clone(), path)
                .json(&serde_json::json!({}))
                .send()
                .await
                .unwrap();
            assert_scim_error(res, 405, None).await;
        }
    }
}

#[tokio::test]
async fn unknown_scim_paths_are_a_scim_404_and_me_is_501() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    assert_scim_error(
        app.scim(Method::GET, "/Nope").send().await.unwrap(),
        404,
        None,
    )
    .await;
    assert_scim_error(
        app.scim(Method::GET, "/Me").send().await.unwrap(),
        501,
        None,
    )
    .await;
}
