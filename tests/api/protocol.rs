//! Sorting, cursors, .search, ETags and the provisioning status: the parts of RFC 7644
//! (and RFC 9865) that the public conformance suites do not exercise.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{assert_scim_error, okta_user, TestApp};

const PROVISIONING: &str = "urn:scimbridge:params:scim:schemas:extension:provisioning:1.0:User";

async fn get(app: &TestApp, path: &str) -> Value {
    let res = app.scim(Method::GET, path).send().await.unwrap();
    assert_eq!(res.status(), 200, "{path}: {}", res.text().await.unwrap());
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

async fn seed(app: &TestApp) {
    for (user, family) in [
        ("carol@x.com", "Brown"),
        ("alice@x.com", "Young"),
        ("bob@x.com", "Adams"),
        ("Dave@x.com", "Brown"),
    ] {
        let mut u = okta_user(user);
        u["name"]["familyName"] = json!(family);
        app.create_user(u).await;
    }
}

#[tokio::test]
async fn sort_by_user_name_both_ways_case_insensitively() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    seed(&app).await;
    let asc = names(&get(&app, "/Users?sortBy=userName").await);
    assert_eq!(
        asc,
        ["alice@x.com", "bob@x.com", "carol@x.com", "Dave@x.com"]
    );
    let desc = names(&get(&app, "/Users?sortBy=userName&sortOrder=descending").await);
    assert_eq!(
        desc,
        ["Dave@x.com", "carol@x.com", "bob@x.com", "alice@x.com"]
    );
}

#[tokio::test]
async fn sort_ties_break_in_creation_order_and_pages_stay_stable() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    seed(&app).await;
    let all = names(&get(&app, "/Users?sortBy=name.familyName").await);
    assert_eq!(
        all,
        ["bob@x.com", "carol@x.com", "Dave@x.com", "alice@x.com"],
        "Brown twice: creation order"
    );
    let mut paged = Vec::new();
    for start in [1, 3] {
        paged.extend(names(
            &get(
                &app,
                &format!("/Users?sortBy=name.familyName&startIndex={start}&count=2"),
            )
            .await,
        ));
    }
    assert_eq!(paged, all);
    let by_email = names(&get(&app, "/Users?sortBy=emails.value&sortOrder=ascending").await);
    assert_eq!(
        by_email[0], "alice@x.com",
        "multi-valued attributes sort by their primary value"
    );
}

#[tokio::test]
async fn bad_sort_parameters_are_400() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    for q in [
        "sortBy=nosuch",
        "sortBy=userName&sortOrder=sideways",
        "sortBy=name",
        "sortBy=emails[type eq \"work\"]",
    ] {
        let res = app
            .scim(Method::GET, &format!("/Users?{q}"))
            .send()
            .await
            .unwrap();
        assert_scim_error(res, 400, Some("invalidValue")).await;
    }
}

#[tokio::test]
async fn cursor_paging_walks_every_user_once() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    for i in 0..7 {
        app.create_user(okta_user(&format!("u{i}@x.com"))).await;
    }
    let mut seen = Vec::new();
    let mut cursor = String::new();
    let mut pages = 0;
    loop {
        let page = get(&app, &format!("/Users?count=3&cursor={cursor}")).await;
        pages += 1;
        assert_eq!(page["totalResults"], 7);
        assert!(
            page.get("startIndex").is_none(),
            "cursor pages carry no startIndex (RFC 9865)"
        );
        seen.extend(names(&page));
        match page["nextCursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => break,
        }
    }
    assert_eq!(pages, 3, "3 + 3 + 1, and no empty page at the end");
    let all = names(&get(&app, "/Users?count=100").await);
    assert_eq!(seen, all);
    // Users created during the walk after the cursor still show up.
    let res = app
        .scim(Method::GET, "/Users?cursor=bogus")
        .send()
        .await
        .unwrap();
    assert_scim_error(res, 400, Some("invalidCursor")).await;
    let res = app
        .scim(Method::GET, "/Users?cursor=&startIndex=2")
        .send()
        .await
        .unwrap();
    assert_scim_error(res, 400, Some("invalidValue")).await;
    let res = app
        .scim(Method::GET, "/Users?cursor=&sortBy=userName")
        .send()
        .await
        .unwrap();
    assert_scim_error(res, 400, Some("invalidValue")).await;
}

#[tokio::test]
async fn search_by_post_on_users_groups_and_the_root() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    seed(&app).await;
    app.create_group(json!({"displayName": "Sales"})).await;
    let search = |path: &'static str, body: Value| {
        let req = app.scim(Method::POST, path).json(&body);
        async move {
            let res = req.send().await.unwrap();
            assert_eq!(res.status(), 200, "{path}");
            assert_eq!(res.headers()["content-type"], "application/scim+json");
            res.json::<Value>().await.unwrap()
        }
    };
    let sr = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
    let users = search(
        "/Users/.search",
        json!({"schemas": [sr], "filter": "userName sw \"a\"", "attributes": ["userName"]}),
    )
    .await;
    assert_eq!(users["totalResults"], 1);
    assert_eq!(
        users["Resources"][0],
        json!({"id": users["Resources"][0]["id"], "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "alice@x.com"})
    );
    let sorted = search("/Users/.search", json!({"schemas": [sr], "sortBy": "userName", "sortOrder": "descending", "count": 2, "startIndex": 1})).await;
    assert_eq!(names(&sorted), ["Dave@x.com", "carol@x.com"]);
    let groups = search(
        "/Groups/.search",
        json!({"schemas": [sr], "filter": "displayName eq \"sales\""}),
    )
    .await;
    assert_eq!(groups["totalResults"], 1);
    let all = search("/.search", json!({"schemas": [sr], "count": 100})).await;
    assert_eq!(all["totalResults"], 5, "4 users and 1 group");
    let kinds: Vec<&str> = all["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["meta"]["resourceType"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["User", "User", "User", "User", "Group"]);
    let page = search(
        "/.search",
        json!({"schemas": [sr], "startIndex": 4, "count": 2}),
    )
    .await;
    let kinds: Vec<&str> = page["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["meta"]["resourceType"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["User", "Group"], "a page may span both types");
    let only_groups = search(
        "/.search",
        json!({"schemas": [sr], "filter": "displayName eq \"Sales\""}),
    )
    .await;
    assert_eq!(
        only_groups["totalResults"], 1,
        "a group-only attribute matches no user"
    );

    let res = app
        .scim(Method::POST, "/Users/.search")
        .json(&json!({"schemas": ["urn:wrong"]}))
        .send()
        .await
        .unwrap();
    assert_scim_error(res, 400, Some("invalidSyntax")).await;
    let res = app
        .scim(Method::POST, "/.search")
        .json(&json!({"filter": "nosuch eq 1"}))
        .send()
        .await
        .unwrap();
    assert_scim_error(res, 400, Some("invalidFilter")).await;
}

#[tokio::test]
async fn etags_make_reads_conditional_and_writes_safe() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let user = app.create_user(okta_user("ann@x.com")).await;
    let id = user["id"].as_str().unwrap();
    let etag = user["meta"]["version"].as_str().unwrap().to_owned();
    let path = format!("/Users/{id}");

    let res = app
        .scim(Method::GET, &path)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 304);
    assert_eq!(res.headers()["etag"].to_str().unwrap(), etag);
    let res = app
        .scim(Method::GET, &path)
        .header("if-none-match", "W/\"999\"")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "path": "title", "value": "CTO"}]});
    let res = app
        .scim(Method::PATCH, &path)
        .header("if-match", "W/\"999\"")
        .json(&patch)
        .send()
        .await
        .unwrap();
    assert_scim_error(res, 412, None).await;
    assert_eq!(
        get(&app, &path).await["meta"]["version"],
        etag.as_str(),
        "a failed precondition changes nothing"
    );
    let res = app
        .scim(Method::PATCH, &path)
        .header("if-match", &etag)
        .json(&patch)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let new_etag = res.headers()["etag"].to_str().unwrap().to_owned();
    assert_ne!(new_etag, etag);
    let res = app
        .scim(Method::PUT, &path)
        .header("if-match", &etag)
        .json(&okta_user("ann@x.com"))
        .send()
        .await
        .unwrap();
    assert_scim_error(res, 412, None).await;
    let res = app
        .scim(Method::DELETE, &path)
        .header("if-match", &etag)
        .send()
        .await
        .unwrap();
    assert_scim_error(res, 412, None).await;
    let res = app
        .scim(Method::DELETE, &path)
        .header("if-match", "*")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);

    let g = app.create_group(json!({"displayName": "Sales"})).await;
    let gpath = format!("/Groups/{}", g["id"].as_str().unwrap());
    let res = app
        .scim(Method::PUT, &gpath)
        .header("if-match", "W/\"7\"")
        .json(&json!({"displayName": "X"}))
        .send()
        .await
        .unwrap();
    assert_scim_error(res, 412, None).await;
    let res = app
        .scim(Method::GET, &gpath)
        .header("if-none-match", g["meta"]["version"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 304);
}

#[tokio::test]
async fn provisioning_status_is_returned_on_request_and_filterable() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let ann = app.create_user(okta_user("ann@x.com")).await;
    app.create_user(okta_user("bob@x.com")).await;
    assert!(ann.get(PROVISIONING).is_none(), "returned: request");
    assert!(!ann["schemas"]
        .as_array()
        .unwrap()
        .contains(&json!(PROVISIONING)));
    let id = ann["id"].as_str().unwrap();
    let read = get(&app, &format!("/Users/{id}?attributes={PROVISIONING}")).await;
    assert_eq!(read[PROVISIONING]["state"], "pending");
    assert!(read[PROVISIONING]["openTaskId"].as_str().is_some());
    assert!(read["schemas"]
        .as_array()
        .unwrap()
        .contains(&json!(PROVISIONING)));

    // Work Ann's task: she becomes synced, with a confirmation time.
    let task = loop {
        let t = app.claim(&app.agent_token).await.unwrap();
        if t["subject"]["id"] == id {
            break t;
        }
    };
    assert_eq!(
        app.complete(&task, json!({"outcome": "done"}))
            .await
            .status(),
        200
    );
    let read = get(
        &app,
        &format!("/Users/{id}?attributes=userName,{PROVISIONING}"),
    )
    .await;
    assert_eq!(read[PROVISIONING]["state"], "synced");
    assert!(read[PROVISIONING]["lastConfirmed"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    assert!(read[PROVISIONING].get("openTaskId").is_none());

    let enc = |s: &str| s.replace(' ', "%20").replace('"', "%22");
    let pending = get(
        &app,
        &format!(
            "/Users?filter={}",
            enc(&format!("{PROVISIONING}:state eq \"pending\""))
        ),
    )
    .await;
    assert_eq!(names(&pending), ["bob@x.com"]);
    let synced = get(
        &app,
        &format!(
            "/Users?filter={}",
            enc(&format!("{PROVISIONING}:state eq \"synced\""))
        ),
    )
    .await;
    assert_eq!(names(&synced), ["ann@x.com"]);

    // Read-only: writing it changes nothing.
    let res = app
        .scim(Method::PUT, &format!("/Users/{id}"))
        .json(&json!({"userName": "ann@x.com", "name": {"givenName": "Ann", "familyName": "Lee"}, "emails": [{"primary": true, "value": "ann@x.com", "type": "work"}], "displayName": "Ann Lee", "locale": "en-US", "externalId": "00u9", "active": true, PROVISIONING: {"state": "synced"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let schemas = get(&app, "/Schemas").await;
    assert!(schemas["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["id"] == PROVISIONING));
}

fn bulk_body(ops: Value) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": ops})
}

async fn bulk(app: &TestApp, body: Value) -> Value {
    let res = app
        .scim(Method::POST, "/Bulk")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:BulkResponse"])
    );
    body
}

#[tokio::test]
async fn bulk_resolves_bulk_ids_across_operations_and_derives_tasks() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    // The group comes first but references users created later in the request.
    let res = bulk(
        &app,
        bulk_body(json!([
            {"method": "POST", "path": "/Groups", "bulkId": "g", "data": {"displayName": "People.ai Admins", "members": [{"value": "bulkId:ann"}]}},
            {"method": "POST", "path": "/Users", "bulkId": "ann", "data": okta_user("ann@x.com")},
            {"method": "POST", "path": "/Users", "bulkId": "bob", "data": okta_user("bob@x.com")},
            {"method": "PATCH", "path": "/Users/bulkId:bob", "data": {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "path": "active", "value": false}]}}
        ])),
    )
    .await;
    let ops = res["Operations"].as_array().unwrap();
    assert_eq!(ops.len(), 4);
    let statuses: Vec<&str> = ops.iter().map(|o| o["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["201", "201", "201", "200"]);
    assert!(ops[0]["location"]
        .as_str()
        .unwrap()
        .contains("/scim/v2/Groups/"));
    assert!(ops[1]["version"].as_str().unwrap().starts_with("W/"));
    let groups = get(&app, "/Groups").await;
    assert_eq!(
        groups["Resources"][0]["members"].as_array().unwrap().len(),
        1
    );
    // Tasks derived like single calls: Ann's create as Admin; Bob created then
    // deactivated before anyone acted leaves nothing.
    let open = app.tasks("?state=awaiting_approval").await;
    assert_eq!(open.len(), 1, "creating an Admin waits for approval");
    assert_eq!(app.tasks("?state=open").await.len(), 0);
    assert_eq!(open[0]["target"]["role"], "Admin");
    assert_eq!(open[0]["subject"]["user_name"], "ann@x.com");
}

#[tokio::test]
async fn bulk_reports_errors_per_operation_and_stops_at_fail_on_errors() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let mut body = bulk_body(json!([
        {"method": "POST", "path": "/Users", "bulkId": "a", "data": {"active": true}},
        {"method": "POST", "path": "/Users", "bulkId": "b", "data": okta_user("b@x.com")},
        {"method": "DELETE", "path": format!("/Users/{}", uuid::Uuid::new_v4())},
        {"method": "POST", "path": "/Users", "bulkId": "c", "data": okta_user("c@x.com")}
    ]));
    body["failOnErrors"] = json!(2);
    let res = bulk(&app, body).await;
    let statuses: Vec<&str> = res["Operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["400", "201", "404"],
        "processing stops after the second error"
    );
    assert_eq!(res["Operations"][0]["response"]["scimType"], "invalidValue");
    assert_eq!(get(&app, "/Users").await["totalResults"], 1);

    let res = bulk(
        &app,
        bulk_body(json!([{"method": "PATCH", "path": "/Users/bulkId:nope", "data": {}}])),
    )
    .await;
    assert_eq!(res["Operations"][0]["status"], "409");
}

#[tokio::test]
async fn bulk_limits_and_syntax_are_enforced() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let many: Vec<Value> = (0..1001)
        .map(|i| json!({"method": "DELETE", "path": format!("/Users/{i}")}))
        .collect();
    let res = app
        .scim(Method::POST, "/Bulk")
        .json(&bulk_body(json!(many)))
        .send()
        .await
        .unwrap();
    assert_scim_error(res, 413, None).await;
    let res = app
        .scim(Method::POST, "/Bulk")
        .json(&json!({"Operations": []}))
        .send()
        .await
        .unwrap();
    assert_scim_error(res, 400, Some("invalidSyntax")).await;
    let res = app
        .scim(Method::POST, "/Bulk")
        .json(&bulk_body(
            json!([{"method": "POST", "path": "/Users", "data": okta_user("x@x.com")}]),
        ))
        .send()
        .await
        .unwrap();
    assert_scim_error(res, 400, Some("invalidSyntax")).await;
    assert_eq!(get(&app, "/Users").await["totalResults"], 0);
}

#[tokio::test]
async fn schema_rules_from_the_published_schemas_are_enforced() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    // Canonical values: compared case-insensitively, stored in the schema's spelling.
    let mut u = okta_user("ann@x.com");
    u["emails"] = json!([{"value": "ann@x.com", "type": "WORK", "primary": true}]);
    let created = app.create_user(u.clone()).await;
    assert_eq!(created["emails"][0]["type"], "work");
    u["userName"] = json!("bob@x.com");
    u["emails"] = json!([{"value": "bob@x.com", "type": "pager"}]);
    let res = app
        .scim(Method::POST, "/Users")
        .json(&u)
        .send()
        .await
        .unwrap();
    let err = assert_scim_error(res, 400, Some("invalidValue")).await;
    assert!(
        err["detail"]
            .as_str()
            .unwrap()
            .contains("work, home, other"),
        "{err}"
    );
    // At most one primary value (RFC 7643 §2.4).
    u["emails"] =
        json!([{"value": "a@x.com", "primary": true}, {"value": "b@x.com", "primary": "True"}]);
    let res = app
        .scim(Method::POST, "/Users")
        .json(&u)
        .send()
        .await
        .unwrap();
    assert_scim_error(res, 400, Some("invalidValue")).await;
    // Immutable sub-attributes cannot change in place.
    let g = app
        .create_group(json!({"displayName": "Sales", "members": [{"value": created["id"]}]}))
        .await;
    let other = app.create_user(okta_user("cid@x.com")).await;
    let res = app
        .patch(
            &format!("/Groups/{}", g["id"].as_str().unwrap()),
            json!([{"op": "replace", "path": format!("members[value eq \"{}\"].value", created["id"].as_str().unwrap()), "value": other["id"]}]),
        )
        .await;
    assert_scim_error(res, 400, Some("mutability")).await;
    // Read-only attributes named by a PATCH path are refused, not silently dropped.
    let res = app
        .patch(
            &format!("/Users/{}", created["id"].as_str().unwrap()),
            json!([{"op": "add", "path": "groups", "value": [{"value": "x"}]}]),
        )
        .await;
    assert_scim_error(res, 400, Some("mutability")).await;
}
