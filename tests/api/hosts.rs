//! Issue #14 item 8: with `--allowed-hosts`, a request naming another host is refused
//! (421) in its surface's format before anything else; links follow allowed hosts only.

use reqwest::header::HOST;
use reqwest::Method;
use serde_json::Value;

use crate::helpers::{assert_scim_error, okta_user, TestApp};
use scimbridge::config::Config;

#[tokio::test]
async fn a_host_outside_allowed_hosts_gets_421_on_every_surface_and_changes_nothing() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let config = Config {
        allowed_hosts: vec!["scim.example.com".into(), "127.0.0.1".into()],
        ..Config::for_tests()
    };
    let app = TestApp::spawn_with(pool, config).await;
    let evil = "evil.example";
    let res = app
        .scim(Method::POST, "/Users")
        .header(HOST, evil)
        .json(&okta_user("ann@corp.com"))
        .send()
        .await
        .unwrap();
    assert_scim_error(res, 421, None).await;
    assert_eq!(crate::helpers::count(&app.pool, "scim_user").await, 0);
    let res = app
        .api(Method::GET, "/tasks", &app.agent_token)
        .header(HOST, evil)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 421);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "misdirected_request");
    let res = app
        .client
        .get(app.url("/ui/login"))
        .header(HOST, evil)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 421);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let res = app
        .client
        .post(app.url("/oauth/token"))
        .header(HOST, evil)
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 421);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");
    // Health probes answer whatever the Host (load balancers call them by address).
    let res = app
        .client
        .get(app.url("/healthz"))
        .header(HOST, evil)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // An allowed host (any port) works, and links name it.
    let res = app
        .scim(Method::POST, "/Users")
        .header(HOST, "SCIM.example.com:8443")
        .json(&okta_user("ann@corp.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let location = res.headers()["location"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        location.starts_with("http://scim.example.com:8443/scim/v2/users/"),
        "{location}"
    );
    // The default Host of the test client (127.0.0.1:port) is allowed too.
    let res = app.scim(Method::GET, "/Users").send().await.unwrap();
    assert_eq!(res.status(), 200);
}
