//! Clients that hang up mid-request (an IdP's own timeout, an agent stopping): the
//! request's work is dropped or finished, never left half-way, and the store goes on
//! serving. On the embedded store a query dropped half-way used to kill its only
//! connection for good (every later request waited 30 s and got 503); `http::detach`.

use std::time::{Duration, Instant};

use reqwest::{Client, Method};
use serde_json::json;

use crate::helpers::{okta_user, TestApp};

/// A client that gives up after `micros`: its requests are cut at every stage, from
/// before the server reads them to the middle of their queries.
fn impatient(micros: u64) -> Client {
    Client::builder()
        .timeout(Duration::from_micros(micros))
        .build()
        .unwrap()
}

#[tokio::test]
async fn requests_cut_off_at_any_point_leave_the_store_serving() {
    let db = crate::db::test_db().await;
    let app = TestApp::spawn(db.pool()).await;
    for i in 0..10 {
        app.create_user(okta_user(&format!("seed{i}@x.com"))).await;
    }
    for i in 0..60u64 {
        let c = impatient(200 + (i * 37) % 4000);
        let _ = c
            .get(app.url("/api/v1/tasks?limit=500"))
            .bearer_auth(&app.agent_token)
            .send()
            .await;
        let _ = c
            .post(app.url("/scim/v2/Users"))
            .bearer_auth(&app.scim_token)
            .json(&okta_user(&format!("cut{i}@x.com")))
            .send()
            .await;
        let _ = c
            .get(app.url("/scim/v2/Users?filter=userName%20eq%20%22seed1%40x.com%22"))
            .bearer_auth(&app.scim_token)
            .send()
            .await;
        // Right after: a patient request is answered at once.
        let started = Instant::now();
        let res = app
            .api(Method::GET, "/tasks/counts", &app.agent_token)
            .timeout(Duration::from_secs(20))
            .send()
            .await
            .unwrap_or_else(|e| panic!("round {i}: {e}"));
        let status = res.status();
        assert_eq!(status, 200, "round {i}: {}", res.text().await.unwrap());
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "round {i}: {:?}",
            started.elapsed()
        );
    }
    // Every cut create either happened whole (a user and its task) or not at all.
    let users = app.scim_get("/Users?count=500").await;
    let n = users["totalResults"].as_u64().unwrap();
    assert!((10..=70).contains(&n), "{n}");
    assert_eq!(app.tasks("?limit=500").await.len() as u64, n);
}

#[tokio::test]
async fn a_long_poll_whose_client_left_claims_nothing() {
    let db = crate::db::test_db().await;
    let app = TestApp::spawn(db.pool()).await;
    let res = Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap()
        .post(app.url("/api/v1/tasks/claim"))
        .bearer_auth(&app.agent_token)
        .json(&json!({"wait": 20}))
        .send()
        .await;
    assert!(res.is_err(), "the poll was still waiting: {res:?}");
    app.create_user(okta_user("ann@x.com")).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let tasks = app.tasks("").await;
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0]["state"], "open", "{tasks:#?}");
}
