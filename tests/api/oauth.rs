//! OAuth 2.0 client credentials: `scimbridge oauth-client create`, `POST /oauth/token`,
//! and the SCIM routes accepting (and refusing) the JWTs.

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::{assert_scim_error, okta_user, TestApp};
use crate::ops::database_url;
use scimbridge::config::{Config, Secret};

pub(crate) const KEY: &str = "test-jwt-secret-0123456789abcdef0123456789";

/// Creates a client with the real CLI; returns (client_id, client_secret). On the embedded
/// store, which a second process cannot open while the test runs, through the store call
/// the CLI makes (the CLI itself is covered by the run against a Postgres server).
pub(crate) async fn create_client(pool: &PgPool, app: &str, name: &str) -> (String, String) {
    if !crate::db::on_server() {
        let secret = scimbridge::auth::generate_token();
        let id = scimbridge::db::Store::new(pool.clone())
            .insert_oauth_client(app, name, &scimbridge::auth::hash_token(&secret))
            .await
            .unwrap();
        return (id.to_string(), secret);
    }
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_scimbridge"))
        .args(["oauth-client", "create", "--app", app, "--name", name])
        .env("DATABASE_URL", database_url(pool))
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |k: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k}: ")))
            .unwrap_or_else(|| panic!("{k} in {stdout}"))
            .to_owned()
    };
    (field("client_id"), field("client_secret"))
}

pub(crate) async fn token_form(app: &TestApp, form: &[(&str, &str)]) -> reqwest::Response {
    app.client
        .post(app.url("/oauth/token"))
        .form(form)
        .send()
        .await
        .unwrap()
}

async fn users_with(app: &TestApp, jwt: &str) -> reqwest::Response {
    app.client
        .get(app.url("/scim/v2/Users"))
        .bearer_auth(jwt)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_client_trades_its_credentials_for_a_jwt_the_scim_routes_accept() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    // No --jwt-secret: the key is generated once and kept in the database.
    let app = TestApp::spawn(pool.clone()).await;
    let (id, secret) = create_client(&pool, "peopleai", "okta-oauth").await;
    let res = token_form(
        &app,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", &secret),
        ],
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    let jwt = body["access_token"].as_str().unwrap().to_owned();
    // The claims say who, for which app, for which audience.
    let payload = jwt.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["sub"], json!(id));
    assert_eq!(claims["app"], "peopleai");
    assert_eq!(claims["role"], "scim");
    assert_eq!(claims["aud"], json!(format!("{}/scim/v2", app.root)));
    let ttl = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
    assert_eq!(ttl, 3600);

    assert_eq!(users_with(&app, &jwt).await.status(), 200);
    let res = app
        .client
        .post(app.url("/scim/v2/Users"))
        .bearer_auth(&jwt)
        .json(&okta_user("ann@corp.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    // A scim token is not an agent or admin token.
    let res = app
        .client
        .get(app.url("/api/v1/tasks"))
        .bearer_auth(&jwt)
        .send()
        .await
        .unwrap();
    assert!(
        matches!(res.status().as_u16(), 401 | 403),
        "{}",
        res.status()
    );

    // HTTP Basic works too (RFC 6749 §2.3.1).
    let res = app
        .client
        .post(app.url("/oauth/token"))
        .basic_auth(&id, Some(&secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn the_token_endpoint_refuses_bad_credentials_and_grants() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool.clone()).await;
    let (id, secret) = create_client(&pool, "peopleai", "okta-oauth").await;
    for (form, status, error) in [
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", id.as_str()),
                ("client_secret", "sbt_wrong"),
            ],
            401,
            "invalid_client",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", "not-a-client"),
                ("client_secret", secret.as_str()),
            ],
            401,
            "invalid_client",
        ),
        (
            vec![("grant_type", "client_credentials")],
            401,
            "invalid_client",
        ),
        (
            vec![
                ("grant_type", "password"),
                ("client_id", id.as_str()),
                ("client_secret", secret.as_str()),
            ],
            400,
            "unsupported_grant_type",
        ),
    ] {
        let res = token_form(&app, &form).await;
        assert_eq!(res.status().as_u16(), status, "{form:?}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"], error, "{form:?}: {body}");
    }
}

pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub(crate) fn sign(claims: &Value, key: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(key.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn forged_expired_and_misaddressed_jwts_are_401_with_a_scim_error() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let mut config = Config::for_tests();
    config.jwt_secret = Some(Secret(KEY.into()));
    let app = TestApp::spawn_with(pool.clone(), config).await;
    let (id, _) = create_client(&pool, "peopleai", "okta-oauth").await;
    let claims = |aud: String, exp: u64| {
        json!({"iss": "scimbridge", "sub": id, "aud": aud, "iat": now(), "exp": exp,
               "app": "peopleai", "role": "scim", "name": "okta-oauth"})
    };
    let aud = format!("{}/scim/v2", app.root);
    // The baseline: a well-formed token signed with the server's key works, so each
    // refusal below is for the one thing changed.
    let good = sign(&claims(aud.clone(), now() + 600), KEY);
    assert_eq!(users_with(&app, &good).await.status(), 200);

    let b64 = |v: &Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    };
    let unsigned = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&claims(aud.clone(), now() + 600))
    );
    let hs512 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS512),
        &claims(aud.clone(), now() + 600),
        &EncodingKey::from_secret(KEY.as_bytes()),
    )
    .unwrap();
    let mut admin_claims = claims(aud.clone(), now() + 600);
    admin_claims["role"] = json!("admin");
    for (what, jwt) in [
        ("alg: none", unsigned),
        ("another algorithm", hs512),
        (
            "a wrong key",
            sign(
                &claims(aud.clone(), now() + 600),
                "some-other-key-0123456789abcdef0123",
            ),
        ),
        ("expired", sign(&claims(aud.clone(), now() - 3600), KEY)),
        (
            "a wrong audience",
            sign(
                &claims("https://other.example/scim/v2".into(), now() + 600),
                KEY,
            ),
        ),
        ("a role other than scim", sign(&admin_claims, KEY)),
    ] {
        let res = users_with(&app, &jwt).await;
        assert_eq!(res.status(), 401, "{what}");
        assert_scim_error(res, 401, None).await;
    }
    // And with a tampered payload (app B's claims under A's signature).
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    let mut other = claims(aud, now() + 600);
    other["app"] = json!("sixsense");
    parts[1] = b64(&other);
    let res = users_with(&app, &parts.join(".")).await;
    assert_scim_error(res, 401, None).await;
    let res = app.scim(Method::GET, "/Users").send().await.unwrap();
    assert_eq!(res.status(), 200, "static tokens still work");
}

#[tokio::test]
async fn every_answer_under_oauth_is_an_rfc_6749_error() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let mut config = Config::for_tests();
    config.body_limit = 1024;
    let app = TestApp::spawn_with(pool, config).await;
    let checks = [
        (
            app.client.get(app.url("/oauth/token")),
            405,
            "invalid_request",
        ),
        (
            app.client.post(app.url("/oauth/elsewhere")),
            404,
            "invalid_request",
        ),
        (
            app.client.post(app.url("/oauth/token")).form(&[
                ("grant_type", "client_credentials"),
                ("pad", &"x".repeat(4096)),
            ]),
            413,
            "invalid_request",
        ),
    ];
    for (req, status, error) in checks {
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), status);
        assert_eq!(res.headers()["cache-control"], "no-store");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"], error, "{body}");
        assert!(body["error_description"].is_string(), "{body}");
    }
}

#[tokio::test]
async fn a_jwt_not_valid_yet_is_401() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let mut config = Config::for_tests();
    config.jwt_secret = Some(Secret(KEY.into()));
    let app = TestApp::spawn_with(pool.clone(), config).await;
    let (id, _) = create_client(&pool, "peopleai", "okta-oauth").await;
    let aud = format!("{}/scim/v2", app.root);
    let claims = |nbf: u64| {
        json!({"iss": "scimbridge", "sub": id, "aud": aud, "iat": now(), "nbf": nbf,
               "exp": now() + 3600, "app": "peopleai", "role": "scim", "name": "okta-oauth"})
    };
    assert_eq!(
        users_with(&app, &sign(&claims(now()), KEY)).await.status(),
        200
    );
    let res = users_with(&app, &sign(&claims(now() + 600), KEY)).await;
    assert_scim_error(res, 401, None).await;
}

#[tokio::test]
async fn a_revoked_clients_jwts_are_refused_within_the_token_cache_time() {
    let db = crate::db::test_db().await;
    crate::needs_server!(
        db,
        "revokes with the CLI, a second process on the test database"
    );
    let pool = db.pool();
    let mut config = Config::for_tests();
    config.token_cache_secs = 1;
    let app = TestApp::spawn_with(pool.clone(), config).await;
    let (id, secret) = create_client(&pool, "peopleai", "okta-oauth").await;
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", id.as_str()),
        ("client_secret", secret.as_str()),
    ];
    let body: Value = token_form(&app, &form).await.json().await.unwrap();
    let jwt = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(users_with(&app, &jwt).await.status(), 200);
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_scimbridge"))
        .args(["oauth-client", "revoke", &id])
        .env("DATABASE_URL", database_url(&pool))
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // The secret is refused at once; the issued JWT once the cache time has passed.
    let res = token_form(&app, &form).await;
    assert_eq!(res.status(), 401);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let res = users_with(&app, &jwt).await;
    assert_scim_error(res, 401, None).await;
    // Revoking again (or an unknown client) fails loudly.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_scimbridge"))
        .args(["oauth-client", "revoke", &id])
        .env("DATABASE_URL", database_url(&pool))
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
}

#[tokio::test]
async fn an_admin_lists_and_revokes_an_oauth_client_over_the_api_and_its_jwts_stop() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    // A long token cache: the revoked client's JWT must stop at once on this server all
    // the same (other replicas within their cache time).
    let mut config = Config::for_tests();
    config.token_cache_secs = 300;
    let app = TestApp::spawn_with(pool.clone(), config).await;
    app.add_app("sixsense").await;
    let (id, secret) = create_client(&pool, "peopleai", "okta-oauth").await;
    let (other, _) = create_client(&pool, "sixsense", "okta-b").await;
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", id.as_str()),
        ("client_secret", secret.as_str()),
    ];
    let body: Value = token_form(&app, &form).await.json().await.unwrap();
    let jwt = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(users_with(&app, &jwt).await.status(), 200);

    // The list: the app's clients only, never a secret.
    let res = app
        .api(Method::GET, "/oauth-clients", &app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let list: Value = res.json().await.unwrap();
    assert_eq!(list["app"], "peopleai");
    let clients = list["clients"].as_array().unwrap();
    assert_eq!(clients.len(), 1, "{list}");
    assert_eq!(clients[0]["client_id"], id.as_str());
    assert_eq!(clients[0]["name"], "okta-oauth");
    assert!(clients[0]["revoked_at"].is_null());
    assert!(!list.to_string().contains(&secret));

    // Agents may not manage credentials (the tokens rule).
    for path in [
        "/oauth-clients".to_owned(),
        format!("/oauth-clients/{id}/revoke"),
    ] {
        let method = if path.ends_with("revoke") {
            Method::POST
        } else {
            Method::GET
        };
        let res = app
            .api(method, &path, &app.agent_token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403, "{path}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["code"], "forbidden_role");
    }
    // Another app's client, or garbage, is not found (and stays live).
    for target in [other.as_str(), "not-a-uuid"] {
        let res = app
            .api(
                Method::POST,
                &format!("/oauth-clients/{target}/revoke"),
                &app.admin_token,
            )
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 404, "{target}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["code"], "oauth_client_not_found");
    }

    let res = app
        .api(
            Method::POST,
            &format!("/oauth-clients/{id}/revoke"),
            &app.admin_token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let done: Value = res.json().await.unwrap();
    assert_eq!(done["client"]["client_id"], id.as_str());
    assert!(done["client"]["revoked_at"].is_string(), "{done}");
    // Its JWT is refused at once here, its secret too.
    assert_scim_error(users_with(&app, &jwt).await, 401, None).await;
    assert_eq!(token_form(&app, &form).await.status(), 401);
    // Audited, by the admin who did it.
    let (actor, subject): (String, String) =
        sqlx::query_as("select actor, subject_id from audit where action = 'oauth_client.revoke'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((actor.as_str(), subject.as_str()), ("alice", id.as_str()));
    // A second revoke is 404; the other app's client is untouched.
    let res = app
        .api(
            Method::POST,
            &format!("/oauth-clients/{id}/revoke"),
            &app.admin_token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let live: bool = sqlx::query_scalar(
        "select revoked_at is null from oauth_client where client_id = $1::uuid",
    )
    .bind(&other)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(live);
}

#[tokio::test]
async fn an_admin_sees_and_revokes_an_oauth_client_in_the_web_ui_and_its_jwts_stop() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    // A long token cache: the JWT must stop at once on this server all the same.
    let mut config = Config::for_tests();
    config.token_cache_secs = 300;
    let app = TestApp::spawn_with(pool.clone(), config).await;
    let (id, secret) = create_client(&pool, "peopleai", "okta-oauth").await;
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", id.as_str()),
        ("client_secret", secret.as_str()),
    ];
    let body: Value = token_form(&app, &form).await.json().await.unwrap();
    let jwt = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(users_with(&app, &jwt).await.status(), 200);

    let mut b = crate::web::Browser::new(&app);
    b.login(&app.admin_token).await;
    let page = b.get("/ui/tokens").await.text().await.unwrap();
    assert!(page.contains("okta-oauth") && page.contains(&id), "{page}");
    assert!(page.contains(&format!("/ui/oauth-clients/{id}/revoke")));
    // Without the CSRF token nothing happens.
    let res = b.post(&format!("/ui/oauth-clients/{id}/revoke"), &[]).await;
    assert_eq!(res.status(), 403);
    assert_eq!(users_with(&app, &jwt).await.status(), 200);
    let csrf = b.csrf().await;
    let res = b
        .post(
            &format!("/ui/oauth-clients/{id}/revoke"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(res.status(), 303);
    let to = res.headers()["location"].to_str().unwrap().to_owned();
    assert_scim_error(users_with(&app, &jwt).await, 401, None).await;
    assert_eq!(token_form(&app, &form).await.status(), 401);
    let (actor, subject): (String, String) =
        sqlx::query_as("select actor, subject_id from audit where action = 'oauth_client.revoke'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(subject, id);
    assert!(actor.contains("alice"), "{actor}");
    let page = b.get(&to).await.text().await.unwrap();
    assert!(page.contains("OAuth client revoked"), "{page}");
    assert!(!page.contains(&format!("/ui/oauth-clients/{id}/revoke")));
    // Revoking it again: 404.
    let res = b
        .post(
            &format!("/ui/oauth-clients/{id}/revoke"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(res.status(), 404);
}
