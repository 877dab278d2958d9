//! Rate limits against abuse (#14 item 6): failed authentications per client address
//! (refused before any database lookup once over), OAuth access tokens limited per
//! client rather than per JWT, and the token endpoint limited per address and client.
//! Tests reach the server from other loopback addresses (127.0.0.2, …) to be other
//! clients.

use std::net::{IpAddr, Ipv4Addr};

use reqwest::Client;
use serde_json::{json, Value};

use crate::helpers::{assert_scim_error, TestApp};
use crate::oauth::{create_client, now, sign, token_form, KEY};
use crate::web::Browser;
use scimbridge::auth::generate_token;
use scimbridge::config::{Config, Secret};

/// A client whose requests come from 127.0.0.`n`.
fn from(n: u8) -> Client {
    Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, n)))
        .build()
        .unwrap()
}

async fn scim_users(app: &TestApp, client: &Client, token: &str) -> reqwest::Response {
    client
        .get(app.url("/scim/v2/Users"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

fn retry_after(res: &reqwest::Response) -> u64 {
    res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn bad_tokens_from_one_address_get_429_before_any_lookup_and_valid_tokens_still_work() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let mut config = Config::for_tests();
    config.auth_failures_per_minute = 1.0;
    config.auth_failure_burst = 5;
    let app = TestApp::spawn_with(pool, config).await;
    let here = from(1);
    // The real IdP's token authenticated once from this address.
    assert_eq!(scim_users(&app, &here, &app.scim_token).await.status(), 200);
    for i in 0..5 {
        let res = scim_users(&app, &here, &generate_token()).await;
        assert_eq!(res.status(), 401, "failure {i} is within the burst");
    }
    // Over the limit: SCIM's own 429 (RFC 7644 §3.12) with Retry-After.
    let res = scim_users(&app, &here, &generate_token()).await;
    assert!(retry_after(&res) >= 1);
    let body = assert_scim_error(res, 429, None).await;
    assert!(
        body["detail"].as_str().unwrap().contains("address"),
        "{body}"
    );
    // The task API answers in its own format; the address is throttled there too.
    let res = here
        .get(app.url("/api/v1/tasks"))
        .bearer_auth(generate_token())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    assert!(retry_after(&res) >= 1);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "rate_limited", "{body}");
    // The refusal comes before the lookup: with the token table gone a lookup would
    // fail with 500, yet a random token is still 429.
    sqlx::query("alter table token rename to token_hidden")
        .execute(&app.pool)
        .await
        .unwrap();
    let res = scim_users(&app, &here, &generate_token()).await;
    assert_scim_error(res, 429, None).await;
    sqlx::query("alter table token_hidden rename to token")
        .execute(&app.pool)
        .await
        .unwrap();
    // A token that authenticated lately still works from the throttled address (the
    // attacker's failures do not lock out the IdP behind the same NAT)…
    assert_eq!(scim_users(&app, &here, &app.scim_token).await.status(), 200);
    // …while one never seen before waits out the Retry-After like any unproven token.
    let fresh = app
        .token("peopleai", scimbridge::auth::Role::Scim, "entra")
        .await;
    assert_scim_error(scim_users(&app, &here, &fresh).await, 429, None).await;
    // Another address is not throttled: its bad token is a plain 401, its good one works.
    let there = from(2);
    assert_scim_error(scim_users(&app, &there, &generate_token()).await, 401, None).await;
    assert_eq!(scim_users(&app, &there, &fresh).await.status(), 200);
}

#[tokio::test]
async fn wrong_client_secrets_and_web_sign_ins_count_as_failures_of_the_address() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let mut config = Config::for_tests();
    config.auth_failures_per_minute = 1.0;
    config.auth_failure_burst = 2;
    let app = TestApp::spawn_with(pool.clone(), config).await;
    let (id, _) = create_client(&pool, "peopleai", "okta-oauth").await;
    let wrong = [
        ("grant_type", "client_credentials"),
        ("client_id", id.as_str()),
        ("client_secret", "not-the-secret"),
    ];
    for _ in 0..2 {
        let res = token_form(&app, &wrong).await;
        assert_eq!(res.status(), 401);
    }
    // Over: RFC 6749 JSON with Retry-After, on the token endpoint…
    let res = token_form(&app, &wrong).await;
    assert_eq!(res.status(), 429);
    assert!(retry_after(&res) >= 1);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable", "{body}");
    assert!(body["error_description"].is_string(), "{body}");
    // …and on the web sign-in form, whose wrong token is not looked up either.
    let mut b = Browser::new(&app);
    let res = b.try_login(&generate_token(), false).await;
    assert_eq!(res.status(), 429);
    assert!(retry_after(&res) >= 1);
    assert!(res
        .text()
        .await
        .unwrap()
        .contains("Too many failed sign-ins"));
}

#[tokio::test]
async fn the_jwts_of_one_oauth_client_share_one_bucket() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let mut config = Config::for_tests();
    config.jwt_secret = Some(Secret(KEY.into()));
    config.rate_limit_per_second = 0.01;
    config.rate_limit_burst = 3;
    let app = TestApp::spawn_with(pool.clone(), config).await;
    let (id, _) = create_client(&pool, "peopleai", "okta-oauth").await;
    let aud = format!("{}/scim/v2", app.root);
    // Two distinct access tokens of one client (issued at different times).
    let jwt = |iat: u64| {
        sign(
            &json!({"iss": "scimbridge", "sub": id, "aud": aud, "iat": iat,
                    "exp": now() + 600, "app": "peopleai", "role": "scim",
                    "name": "okta-oauth"}),
            KEY,
        )
    };
    let (first, second) = (jwt(now() - 60), jwt(now()));
    assert_ne!(first, second);
    let client = Client::new();
    for _ in 0..3 {
        assert_eq!(scim_users(&app, &client, &first).await.status(), 200);
    }
    // A new token of the same client is no new bucket.
    let res = scim_users(&app, &client, &second).await;
    assert!(retry_after(&res) >= 1);
    let body = assert_scim_error(res, 429, None).await;
    assert!(body["detail"].as_str().unwrap().contains("token"), "{body}");
    // Another credential has its own bucket.
    assert_eq!(
        scim_users(&app, &client, &app.scim_token).await.status(),
        200
    );
}

#[tokio::test]
async fn the_token_endpoint_is_limited_per_address_and_per_client() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let mut config = Config::for_tests();
    config.token_endpoint_per_minute = 1.0;
    config.token_endpoint_burst = 3;
    let app = TestApp::spawn_with(pool.clone(), config).await;
    let (id, secret) = create_client(&pool, "peopleai", "okta-oauth").await;
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", id.as_str()),
        ("client_secret", secret.as_str()),
    ];
    // Per address: any request counts, even one that is refused for its grant.
    let here = from(1);
    let junk = || {
        here.post(app.url("/oauth/token"))
            .form(&[("grant_type", "password")])
            .send()
    };
    for _ in 0..3 {
        assert_eq!(junk().await.unwrap().status(), 400);
    }
    let res = junk().await.unwrap();
    assert_eq!(res.status(), 429);
    assert!(retry_after(&res) >= 1);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable", "{body}");
    // Per client: tokens issued to one client, whatever address asks.
    let mut statuses = Vec::new();
    for n in 2..=5 {
        let res = from(n)
            .post(app.url("/oauth/token"))
            .form(&form)
            .send()
            .await
            .unwrap();
        statuses.push(res.status().as_u16());
        if res.status() == 429 {
            assert!(retry_after(&res) >= 1);
            let body: Value = res.json().await.unwrap();
            assert!(
                body["error_description"]
                    .as_str()
                    .unwrap()
                    .contains("this client"),
                "{body}"
            );
        }
    }
    assert_eq!(statuses, [200, 200, 200, 429]);
}
