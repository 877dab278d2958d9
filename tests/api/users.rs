use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{assert_scim_error, count, okta_user, TestApp};

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

#[tokio::test]
async fn okta_create_user_answers_201_with_location_etag_and_meta() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let res = app
        .scim(Method::POST, "/Users")
        .json(&okta_user("ann@corp.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["content-type"], "application/scim+json");
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let etag = res.headers()["etag"].to_str().unwrap().to_owned();
    let user: Value = res.json().await.unwrap();
    let id = user["id"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok());
    assert_eq!(location, app.url(&format!("/scim/v2/Users/{id}")));
    assert_eq!(user["meta"]["location"], location);
    assert_eq!(user["meta"]["resourceType"], "User");
    assert_eq!(user["meta"]["version"], etag);
    assert!(user["meta"]["created"].as_str().unwrap().ends_with('Z'));
    assert_eq!(user["userName"], "ann@corp.com");
    assert_eq!(user["name"]["givenName"], "Ann");
    assert_eq!(user["active"], true);
    assert!(
        user.get("password").is_none(),
        "password is never returned (RFC 7643 §4.1.1)"
    );

    let res = app
        .scim(Method::GET, &format!("/Users/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["etag"].to_str().unwrap(), etag);
    let read: Value = res.json().await.unwrap();
    assert_eq!(read, user);
}

#[tokio::test]
async fn create_accepts_plain_application_json() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let res = app
        .scim(Method::POST, "/Users")
        .header("content-type", "application/json")
        .body(okta_user("ann@corp.com").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
}

#[tokio::test]
async fn read_only_attributes_sent_by_clients_are_ignored() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let mut body = okta_user("ann@corp.com");
    body["id"] = json!("i-choose-my-id");
    body["meta"] = json!({"created": "1999-01-01T00:00:00Z"});
    body["groups"] = json!([{"value": "x"}]);
    let user = app.create_user(body).await;
    assert_ne!(user["id"], "i-choose-my-id");
    assert_ne!(user["meta"]["created"], "1999-01-01T00:00:00Z");
    assert!(user.get("groups").is_none());
}

#[tokio::test]
async fn duplicate_user_name_is_409_uniqueness_case_insensitively() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    app.create_user(okta_user("ann@corp.com")).await;
    let res = app
        .scim(Method::POST, "/Users")
        .json(&okta_user("ANN@Corp.com"))
        .send()
        .await
        .unwrap();
    assert_scim_error(res, 409, Some("uniqueness")).await;
    assert_eq!(count(&app.pool, "scim_user").await, 1);
    assert_eq!(count(&app.pool, "task").await, 1);
}

#[tokio::test]
async fn bad_bodies_are_400_and_change_nothing() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "missing userName",
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"]}).to_string(),
            "invalidValue",
        ),
        (
            "empty userName",
            json!({"userName": "  "}).to_string(),
            "invalidValue",
        ),
        (
            "userName of the wrong type",
            json!({"userName": {"a": 1}}).to_string(),
            "invalidValue",
        ),
        (
            "active not a boolean",
            json!({"userName": "a", "active": "perhaps"}).to_string(),
            "invalidValue",
        ),
        ("not JSON", "{\"userName\": ".to_string(), "invalidSyntax"),
        ("not an object", "[1,2]".to_string(), "invalidSyntax"),
    ];
    for (what, body, scim_type) in cases {
        let res = app
            .scim(Method::POST, "/Users")
            .header("content-type", "application/scim+json")
            .body(body)
            .send()
            .await
            .unwrap();
        let err = assert_scim_error(res, 400, Some(scim_type)).await;
        assert!(!err["detail"].as_str().unwrap().is_empty(), "{what}");
    }
    assert_eq!(count(&app.pool, "scim_user").await, 0);
    assert_eq!(count(&app.pool, "task").await, 0);
    assert_eq!(count(&app.pool, "audit").await, 0);
}

#[tokio::test]
async fn an_oversized_body_is_413() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let mut config = scimbridge::config::Config::for_tests();
    config.body_limit = 4096;
    let app = TestApp::spawn_with(pool, config).await;
    let mut body = okta_user("ann@corp.com");
    body["title"] = json!("x".repeat(10_000));
    let res = app
        .scim(Method::POST, "/Users")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_scim_error(res, 413, None).await;
    assert_eq!(count(&app.pool, "scim_user").await, 0);
}

#[tokio::test]
async fn unknown_ids_are_404() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    for id in [uuid::Uuid::new_v4().to_string(), "not-a-uuid".into()] {
        assert_scim_error(
            app.scim(Method::GET, &format!("/Users/{id}"))
                .send()
                .await
                .unwrap(),
            404,
            None,
        )
        .await;
        let res = app
            .scim(Method::PUT, &format!("/Users/{id}"))
            .json(&okta_user("a@b.c"))
            .send()
            .await
            .unwrap();
        assert_scim_error(res, 404, None).await;
        assert_scim_error(
            app.patch(
                &format!("/Users/{id}"),
                json!([{"op": "replace", "path": "active", "value": false}]),
            )
            .await,
            404,
            None,
        )
        .await;
        assert_scim_error(
            app.scim(Method::DELETE, &format!("/Users/{id}"))
                .send()
                .await
                .unwrap(),
            404,
            None,
        )
        .await;
    }
}

#[tokio::test]
async fn an_empty_list_is_a_list_response_not_a_404() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let res = app
        .scim(Method::GET, "/Users?filter=userName%20eq%20%22nobody%22")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let list: Value = res.json().await.unwrap();
    assert_eq!(
        list["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:ListResponse"])
    );
    assert_eq!(list["totalResults"], 0);
    assert_eq!(list["Resources"], json!([]));
    assert_eq!(list["startIndex"], 1);
    assert_eq!(list["itemsPerPage"], 0);
}

async fn list(app: &TestApp, query: &str) -> Value {
    let res = app
        .scim(Method::GET, &format!("/Users{query}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{query}: {}", res.text().await.unwrap());
    res.json().await.unwrap()
}

fn names(list: &Value) -> Vec<String> {
    list["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["userName"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn filters_the_idps_send_are_answered() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let mut ann = okta_user("ann@corp.com");
    ann["externalId"] = json!("ext-ann");
    ann["emails"] = json!([{"value": "Ann.Lee@Corp.com", "type": "work"}, {"value": "ann@home.net", "type": "home"}]);
    let ann = app.create_user(ann).await;
    let mut bob = okta_user("bob@corp.com");
    bob["externalId"] = json!("ext-bob");
    bob[ENTERPRISE] = json!({"department": "Sales", "employeeNumber": "42"});
    app.create_user(bob).await;

    let id = ann["id"].as_str().unwrap();
    let cases: Vec<(String, Vec<&str>)> = vec![
        ("externalId eq \"ext-bob\"".into(), vec!["bob@corp.com"]),
        ("externalId eq \"EXT-BOB\"".into(), vec![]),
        (format!("id eq \"{id}\""), vec!["ann@corp.com"]),
        ("id eq \"not-a-uuid\"".into(), vec![]),
        (
            "emails[type eq \"work\"].value eq \"ann.lee@corp.com\"".into(),
            vec!["ann@corp.com"],
        ),
        (
            "emails[type eq \"home\"].value eq \"ann.lee@corp.com\"".into(),
            vec![],
        ),
        ("emails eq \"ann@home.net\"".into(), vec!["ann@corp.com"]),
        (
            "userName eq \"ann@corp.com\" and externalId eq \"ext-ann\"".into(),
            vec!["ann@corp.com"],
        ),
        (
            "userName eq \"ann@corp.com\" and externalId eq \"ext-bob\"".into(),
            vec![],
        ),
        (
            "userName sw \"b\" or externalId eq \"ext-ann\"".into(),
            vec!["ann@corp.com", "bob@corp.com"],
        ),
        ("not (userName sw \"b\")".into(), vec!["ann@corp.com"]),
        (
            "userName co \"CORP\"".into(),
            vec!["ann@corp.com", "bob@corp.com"],
        ),
        (
            "userName ew \"@corp.com\"".into(),
            vec!["ann@corp.com", "bob@corp.com"],
        ),
        (
            "active eq true".into(),
            vec!["ann@corp.com", "bob@corp.com"],
        ),
        (
            format!("{ENTERPRISE}:department eq \"sales\""),
            vec!["bob@corp.com"],
        ),
        (
            format!("{ENTERPRISE}:employeeNumber pr"),
            vec!["bob@corp.com"],
        ),
        (
            "name.givenName eq \"ann\"".into(),
            vec!["ann@corp.com", "bob@corp.com"],
        ),
        (
            "meta.created gt \"2000-01-01T00:00:00Z\"".into(),
            vec!["ann@corp.com", "bob@corp.com"],
        ),
        (
            "meta.lastModified lt \"2000-01-01T00:00:00Z\"".into(),
            vec![],
        ),
        ("USERNAME EQ \"bob@corp.com\"".into(), vec!["bob@corp.com"]),
    ];
    for (filter, want) in cases {
        let q = format!("?filter={}", urlencode(&filter));
        let l = list(&app, &q).await;
        assert_eq!(names(&l), want, "filter {filter}");
        assert_eq!(l["totalResults"], want.len(), "filter {filter}");
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn bad_or_unknown_filters_are_400_invalid_filter() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    for filter in [
        "userName eq",
        "userName xx \"a\"",
        "(userName eq \"a\"",
        "nosuchattribute eq \"a\"",
        "name.nosuch eq \"a\"",
        "active gt true",
        "meta.created gt \"yesterday\"",
        "emails[type eq \"work\"",
    ] {
        let res = app
            .scim(Method::GET, &format!("/Users?filter={}", urlencode(filter)))
            .send()
            .await
            .unwrap();
        assert_scim_error(res, 400, Some("invalidFilter")).await;
    }
}

#[tokio::test]
async fn paging_is_1_based_stable_and_count_0_gives_the_total_only() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    for i in 0..7 {
        app.create_user(okta_user(&format!("u{i}@corp.com"))).await;
    }
    let all = names(&list(&app, "?count=100").await);
    assert_eq!(all.len(), 7);
    // Okta adds `count` to `startIndex` whatever came back: walk with pages of 3.
    let mut walked = Vec::new();
    let mut start = 1;
    loop {
        let l = list(&app, &format!("?startIndex={start}&count=3")).await;
        assert_eq!(l["totalResults"], 7);
        assert_eq!(l["startIndex"], start);
        let page = names(&l);
        assert_eq!(l["itemsPerPage"], page.len());
        if page.is_empty() {
            break;
        }
        walked.extend(page);
        start += 3;
    }
    assert_eq!(
        walked, all,
        "pages cover every user once, in a stable order"
    );
    let l = list(&app, "?count=0").await;
    assert_eq!(l["totalResults"], 7);
    assert_eq!(l["Resources"], json!([]));
    let l = list(&app, "?startIndex=0&count=-1").await;
    assert_eq!(l["startIndex"], 1);
    assert_eq!(l["Resources"], json!([]));
    let res = app
        .scim(Method::GET, "/Users?count=ten")
        .send()
        .await
        .unwrap();
    assert_scim_error(res, 400, Some("invalidValue")).await;
}

#[tokio::test]
async fn okta_put_replaces_the_user() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let user = app.create_user(okta_user("ann@corp.com")).await;
    let id = user["id"].as_str().unwrap();
    let mut body = okta_user("ann@corp.com");
    body["id"] = json!(id);
    body["name"] = json!({"givenName": "Anna", "familyName": "Lee"});
    body.as_object_mut().unwrap().remove("locale");
    let res = app
        .scim(Method::PUT, &format!("/Users/{id}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let put: Value = res.json().await.unwrap();
    assert_eq!(put["name"]["givenName"], "Anna");
    assert!(
        put.get("locale").is_none(),
        "PUT replaces: attributes left out are removed"
    );
    assert_ne!(put["meta"]["version"], user["meta"]["version"]);
    assert_eq!(put["meta"]["created"], user["meta"]["created"]);
}

#[tokio::test]
async fn entra_patch_replace_active_false_as_a_string_deactivates() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let user = app.create_user(okta_user("ann@corp.com")).await;
    let id = user["id"].as_str().unwrap();
    let res = app
        .patch(
            &format!("/Users/{id}"),
            json!([{"op": "Replace", "path": "active", "value": "False"}]),
        )
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["active"], false);
}

#[tokio::test]
async fn bad_patches_are_400_with_the_right_scim_type_and_change_nothing() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let user = app.create_user(okta_user("ann@corp.com")).await;
    let id = user["id"].as_str().unwrap();
    let path = format!("/Users/{id}");
    let cases = vec![
        (
            json!([{"op": "replace", "path": "nosuch", "value": 1}]),
            "invalidPath",
        ),
        (
            json!([{"op": "replace", "path": "emails[type eq \"pager\"].value", "value": "x"}]),
            "noTarget",
        ),
        (json!([{"op": "remove"}]), "noTarget"),
        (
            json!([{"op": "explode", "path": "userName", "value": "x"}]),
            "invalidSyntax",
        ),
        (
            json!([{"op": "replace", "path": "active", "value": "maybe"}]),
            "invalidValue",
        ),
        (
            json!([{"op": "replace", "path": "id", "value": "x"}]),
            "mutability",
        ),
        (
            json!([{"op": "replace", "path": "displayName", "value": "ok"}, {"op": "replace", "path": "emails[", "value": "x"}]),
            "invalidPath",
        ),
    ];
    let audits = count(&app.pool, "audit").await;
    for (ops, scim_type) in cases {
        let res = app.patch(&path, ops.clone()).await;
        let status = res.status();
        let body: Value = res.json().await.unwrap();
        assert_eq!(status, 400, "{ops}: {body}");
        assert_eq!(body["scimType"], scim_type, "{ops}: {body}");
    }
    let res = app
        .scim(Method::PATCH, &path)
        .json(&json!({"Operations": []}))
        .send()
        .await
        .unwrap();
    assert_scim_error(res, 400, Some("invalidSyntax")).await;
    let now: Value = app.scim_get(&path).await;
    assert_eq!(now, user, "nothing changed");
    assert_eq!(count(&app.pool, "audit").await, audits);
}

#[tokio::test]
async fn delete_hides_the_user_but_keeps_its_history() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let user = app.create_user(okta_user("ann@corp.com")).await;
    let id = user["id"].as_str().unwrap();
    let res = app
        .scim(Method::DELETE, &format!("/Users/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_scim_error(
        app.scim(Method::GET, &format!("/Users/{id}"))
            .send()
            .await
            .unwrap(),
        404,
        None,
    )
    .await;
    assert_eq!(list(&app, "").await["totalResults"], 0);
    assert_eq!(
        count(&app.pool, "scim_user").await,
        1,
        "the row stays for audit"
    );
    // The userName is free again for a new account.
    app.create_user(okta_user("ann@corp.com")).await;
}

#[tokio::test]
async fn every_write_is_audited_with_actor_and_request_id() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let res = app
        .scim(Method::POST, "/Users")
        .header("x-request-id", "req-42")
        .json(&okta_user("ann@corp.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let rows: Vec<(String, String, Option<String>, String)> =
        sqlx::query_as("select action, actor, request_id, outcome from audit order by audit_id")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert!(
        rows.contains(&(
            "user.create".into(),
            "okta".into(),
            Some("req-42".into()),
            "created".into()
        )),
        "{rows:?}"
    );
    assert!(
        rows.iter()
            .any(|r| r.0 == "task.create" && r.2.as_deref() == Some("req-42")),
        "{rows:?}"
    );
}

#[tokio::test]
async fn a_request_past_the_deadline_is_503_with_retry_after_and_commits_nothing() {
    let db = crate::db::test_db().await;
    crate::needs_server!(
        db,
        "holds row locks in a second connection while the app answers"
    );
    let pool = db.pool();
    let mut config = scimbridge::config::Config::for_tests();
    config.request_timeout_secs = 1;
    let app = TestApp::spawn_with(pool, config).await;
    let user = app.create_user(okta_user("ann@corp.com")).await;
    let id = user["id"].as_str().unwrap();
    // Hold the user's row lock from outside, so the PATCH waits past the deadline.
    let mut blocker = app.pool.begin().await.unwrap();
    sqlx::query("select 1 from scim_user where user_id = $1::uuid for update")
        .bind(id)
        .execute(&mut *blocker)
        .await
        .unwrap();
    let res = app
        .patch(
            &format!("/Users/{id}"),
            json!([{"op": "replace", "path": "title", "value": "CEO"}]),
        )
        .await;
    assert_eq!(res.headers()["retry-after"], "5");
    assert_scim_error(res, 503, None).await;
    blocker.rollback().await.unwrap();
    let now: Value = app.scim_get(&format!("/Users/{id}")).await;
    assert!(
        now.get("title").is_none(),
        "the timed-out write did not commit"
    );
}

/// `totalResults` of the unfiltered list comes from the app's live-user counter (issue
/// #6); it must agree with the rows through creates, deletes, failed creates and Bulk,
/// and stay per app.
#[tokio::test]
async fn unfiltered_total_results_follow_creates_deletes_and_bulk() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    app.add_app("other").await;
    let other = app
        .token("other", scimbridge::auth::Role::Scim, "okta-other")
        .await;
    let total = |token: String| {
        let req = reqwest::Client::new()
            .get(app.url("/scim/v2/Users?count=1"))
            .bearer_auth(token);
        async move {
            let list: Value = req.send().await.unwrap().json().await.unwrap();
            list["totalResults"].as_i64().unwrap()
        }
    };
    let a = app.create_user(okta_user("a@corp.com")).await;
    app.create_user(okta_user("b@corp.com")).await;
    // A refused create (userName taken) counts nothing.
    let res = app
        .scim(Method::POST, "/Users")
        .json(&okta_user("A@corp.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 409);
    let res = app
        .scim(Method::POST, "/Bulk")
        .json(&json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
            "Operations": [
                {"method": "POST", "path": "/Users", "bulkId": "c", "data": okta_user("c@corp.com")},
                {"method": "DELETE", "path": format!("/Users/{}", a["id"].as_str().unwrap())}
            ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(total(app.scim_token.clone()).await, 2);
    assert_eq!(total(other).await, 0);
    let rows: i64 = sqlx::query_scalar(
        "select count(*) from scim_user where app_id = 'peopleai' and deleted_at is null",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(rows, 2);
    // A filtered list still counts its matches.
    let list: Value = app
        .scim_get("/Users?filter=userName%20sw%20%22b%40%22")
        .await;
    assert_eq!(list["totalResults"], 1);
}

/// An Okta-style startIndex walk continues where its previous page ended (issue #6: the
/// walk is linear in N): every user exactly once, even when a user before the current
/// position is deleted mid-walk, where plain OFFSET would skip one (RFC 7644 §3.4.2.4
/// allows either). A page asked for out of the blue is OFFSET's.
#[tokio::test]
async fn index_walks_continue_after_the_previous_page() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let u = app.create_user(okta_user(&format!("w{i}@corp.com"))).await;
        ids.push(u["id"].as_str().unwrap().to_owned());
    }
    let page = |start: usize| {
        let req = app.scim(Method::GET, &format!("/Users?startIndex={start}&count=2"));
        async move {
            let list: Value = req.send().await.unwrap().json().await.unwrap();
            list["Resources"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    let mut walked = Vec::new();
    for start in [1, 3, 5] {
        walked.extend(page(start).await);
    }
    assert_eq!(walked, ids);

    assert_eq!(page(1).await, ids[..2]);
    let res = app
        .scim(Method::DELETE, &format!("/Users/{}", ids[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(
        page(3).await,
        ids[2..4],
        "continues after w1: w2 is not skipped"
    );
    assert_eq!(
        page(3).await,
        ids[3..5],
        "no walk to continue: position 3 is w3"
    );
}

/// POST, PUT and PATCH answers are projected like reads (RFC 7644 §3.5.2); the Location
/// of a create does not depend on `meta` being asked for.
#[tokio::test]
async fn write_answers_are_projected() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let res = app
        .scim(Method::POST, "/Users?attributes=userName")
        .json(&okta_user("p@corp.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let u: Value = res.json().await.unwrap();
    let id = u["id"].as_str().unwrap().to_owned();
    assert!(location.ends_with(&format!("/Users/{id}")));
    let mut keys: Vec<&str> = u.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["id", "schemas", "userName"]);

    let res = app
        .scim(
            Method::PATCH,
            &format!("/Users/{id}?excludedAttributes=emails,name"),
        )
        .json(
            &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "displayName", "value": "P"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let patched: Value = res.json().await.unwrap();
    assert_eq!(patched["displayName"], "P");
    assert!(patched.get("emails").is_none() && patched.get("name").is_none());
    assert!(patched.get("meta").is_some());

    let res = app
        .scim(Method::PUT, &format!("/Users/{id}?attributes=bogus%5B"))
        .json(&okta_user("p@corp.com"))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    assert!(
        status == 200 || status == 400,
        "a bad projection is refused or ignored, never 500: {status}"
    );
}
