//! One regression test per documented Okta / Entra quirk, named after it. Each sends the
//! request shape the IdP really sends and checks the server does what the IdP meant.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{okta_user, TestApp};

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

async fn user(app: &TestApp, name: &str) -> String {
    app.create_user(okta_user(name)).await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn read(app: &TestApp, path: &str) -> Value {
    let res = app.scim(Method::GET, path).send().await.unwrap();
    assert_eq!(res.status(), 200, "{path}");
    res.json().await.unwrap()
}

async fn patched(app: &TestApp, path: &str, ops: Value) -> Value {
    let res = app.patch(path, ops.clone()).await;
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, 200, "{ops}: {body}");
    body
}

fn member_ids(group: &Value) -> Vec<String> {
    let mut ids: Vec<String> = group["members"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .map(|m| m["value"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

fn sorted(ids: &[&String]) -> Vec<String> {
    let mut v: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

async fn group_with(app: &TestApp, name: &str, members: &[&String]) -> String {
    let ms: Vec<Value> = members.iter().map(|m| json!({"value": m})).collect();
    app.create_group(json!({"displayName": name, "members": ms}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn users_query(filter_encoded: &str) -> String {
    format!("/Users?filter={filter_encoded}")
}

#[tokio::test]
async fn entra_capitalised_patch_ops() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let id = user(&app, "ann@x.com").await;
    let u = patched(
        &app,
        &format!("/Users/{id}"),
        json!([
            {"op": "Replace", "path": "displayName", "value": "Ann L."},
            {"op": "Add", "path": "title", "value": "CFO"},
            {"op": "Remove", "path": "locale"}
        ]),
    )
    .await;
    assert_eq!(u["displayName"], "Ann L.");
    assert_eq!(u["title"], "CFO");
    assert!(u.get("locale").is_none());
}

#[tokio::test]
async fn entra_true_false_strings_for_booleans_in_post_put_and_patch() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let mut body = okta_user("ann@x.com");
    body["active"] = json!("True");
    body["emails"][0]["primary"] = json!("True");
    let u = app.create_user(body.clone()).await;
    assert_eq!(u["active"], true);
    assert_eq!(u["emails"][0]["primary"], true);
    let id = u["id"].as_str().unwrap();
    body["active"] = json!("False");
    let res = app
        .scim(Method::PUT, &format!("/Users/{id}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.json::<Value>().await.unwrap()["active"], false);
    let u = patched(
        &app,
        &format!("/Users/{id}"),
        json!([{"op": "Replace", "path": "active", "value": "True"}]),
    )
    .await;
    assert_eq!(u["active"], true);
    let u = patched(
        &app,
        &format!("/Users/{id}"),
        json!([{"op": "Replace", "value": {"active": "False"}}]),
    )
    .await;
    assert_eq!(u["active"], false);
}

#[tokio::test]
async fn entra_pathless_replace_with_attribute_path_keys() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let id = user(&app, "ann@x.com").await;
    let u = patched(
        &app,
        &format!("/Users/{id}"),
        json!([{"op": "replace", "value": {
            "name.givenName": "Annie",
            "name.familyName": "Lee-Smith",
            format!("{ENTERPRISE}:department"): "Sales",
            format!("{ENTERPRISE}:employeeNumber"): "42"
        }}]),
    )
    .await;
    assert_eq!(u["name"]["givenName"], "Annie");
    assert_eq!(u["name"]["familyName"], "Lee-Smith");
    assert_eq!(u[ENTERPRISE]["department"], "Sales");
    assert_eq!(u[ENTERPRISE]["employeeNumber"], "42");
    assert!(u["schemas"]
        .as_array()
        .unwrap()
        .contains(&json!(ENTERPRISE)));
}

#[tokio::test]
async fn entra_one_operation_per_attribute() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let id = user(&app, "ann@x.com").await;
    let u = patched(
        &app,
        &format!("/Users/{id}"),
        json!([
            {"op": "Replace", "path": "userName", "value": "ann.lee@x.com"},
            {"op": "Replace", "path": "name.givenName", "value": "Annie"},
            {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "ann.lee@x.com"},
            {"op": "Replace", "path": format!("{ENTERPRISE}:department"), "value": "Ops"},
            {"op": "Replace", "path": "active", "value": "True"}
        ]),
    )
    .await;
    assert_eq!(u["userName"], "ann.lee@x.com");
    assert_eq!(u["name"]["givenName"], "Annie");
    assert_eq!(u["emails"][0]["value"], "ann.lee@x.com");
    assert_eq!(u[ENTERPRISE]["department"], "Ops");
    // The app sees one create task with all of it, not five tasks.
    let open = app.tasks("?state=open").await;
    assert_eq!(open.len(), 1);
    assert_eq!(open[0]["target"]["email"], "ann.lee@x.com");
    assert_eq!(open[0]["target"]["department"], "Ops");
}

#[tokio::test]
async fn okta_add_on_a_single_valued_attribute_replaces_it() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let id = user(&app, "ann@x.com").await;
    let u = patched(
        &app,
        &format!("/Users/{id}"),
        json!([{"op": "add", "path": "displayName", "value": "Ann Added"}]),
    )
    .await;
    assert_eq!(u["displayName"], "Ann Added");
    let u = patched(
        &app,
        &format!("/Users/{id}"),
        json!([{"op": "add", "value": {"nickName": "Annie", "displayName": "Ann Again"}}]),
    )
    .await;
    assert_eq!(u["displayName"], "Ann Again");
    assert_eq!(u["nickName"], "Annie");
}

#[tokio::test]
async fn entra_remove_members_with_a_value_list_removes_only_those() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let (a, b, c) = (
        user(&app, "a@x.com").await,
        user(&app, "b@x.com").await,
        user(&app, "c@x.com").await,
    );
    let g = group_with(&app, "Sales", &[&a, &b, &c]).await;
    let body = patched(
        &app,
        &format!("/Groups/{g}"),
        json!([{"op": "Remove", "path": "members", "value": [{"value": a}, {"value": c}]}]),
    )
    .await;
    assert_eq!(member_ids(&body), sorted(&[&b]));
}

#[tokio::test]
async fn entra_remove_members_with_ref_null_removes_only_those() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let (a, b) = (user(&app, "a@x.com").await, user(&app, "b@x.com").await);
    let g = group_with(&app, "Sales", &[&a, &b]).await;
    let body = patched(
        &app,
        &format!("/Groups/{g}"),
        json!([{"op": "Remove", "path": "members", "value": [{"$ref": null, "value": b}]}]),
    )
    .await;
    assert_eq!(member_ids(&body), sorted(&[&a]));
}

#[tokio::test]
async fn okta_remove_member_by_value_filter_removes_only_that_one() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let (a, b) = (user(&app, "a@x.com").await, user(&app, "b@x.com").await);
    let g = group_with(&app, "Sales", &[&a, &b]).await;
    let body = patched(
        &app,
        &format!("/Groups/{g}"),
        json!([{"op": "remove", "path": format!("members[value eq \"{a}\"]")}]),
    )
    .await;
    assert_eq!(member_ids(&body), sorted(&[&b]));
}

#[tokio::test]
async fn remove_members_without_a_filter_clears_all() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let (a, b) = (user(&app, "a@x.com").await, user(&app, "b@x.com").await);
    let g = group_with(&app, "Sales", &[&a, &b]).await;
    let body = patched(
        &app,
        &format!("/Groups/{g}"),
        json!([{"op": "remove", "path": "members"}]),
    )
    .await;
    assert!(member_ids(&body).is_empty());
    assert!(member_ids(&read(&app, &format!("/Groups/{g}")).await).is_empty());
}

#[tokio::test]
async fn okta_pathless_group_rename_whose_value_carries_the_read_only_id() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let a = user(&app, "a@x.com").await;
    let g = group_with(&app, "Sales", &[&a]).await;
    let body = patched(
        &app,
        &format!("/Groups/{g}"),
        json!([{"op": "replace", "value": {"id": g, "displayName": "Sales EMEA"}}]),
    )
    .await;
    assert_eq!(body["displayName"], "Sales EMEA");
    assert_eq!(body["id"], g.as_str());
    assert_eq!(
        member_ids(&body),
        sorted(&[&a]),
        "a rename keeps the members"
    );
}

#[tokio::test]
async fn okta_group_push_remove_and_add_in_one_patch() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let (a, b, c) = (
        user(&app, "a@x.com").await,
        user(&app, "b@x.com").await,
        user(&app, "c@x.com").await,
    );
    let g = group_with(&app, "Sales", &[&a, &b]).await;
    let body = patched(
        &app,
        &format!("/Groups/{g}"),
        json!([
            {"op": "remove", "path": format!("members[value eq \"{a}\"]")},
            {"op": "add", "path": "members", "value": [{"value": c, "display": "c@x.com"}]}
        ]),
    )
    .await;
    assert_eq!(member_ids(&body), sorted(&[&b, &c]));
}

#[tokio::test]
async fn okta_group_push_replace_members() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let (a, b, c) = (
        user(&app, "a@x.com").await,
        user(&app, "b@x.com").await,
        user(&app, "c@x.com").await,
    );
    let g = group_with(&app, "Sales", &[&a, &b]).await;
    let body = patched(
        &app,
        &format!("/Groups/{g}"),
        json!([{"op": "replace", "path": "members", "value": [{"value": b}, {"value": c}]}]),
    )
    .await;
    assert_eq!(member_ids(&body), sorted(&[&b, &c]));
}

#[tokio::test]
async fn entra_manager_as_a_bare_string_id() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let boss = user(&app, "boss@x.com").await;
    let id = user(&app, "ann@x.com").await;
    let u = patched(
        &app,
        &format!("/Users/{id}"),
        json!([{"op": "Add", "path": format!("{ENTERPRISE}:manager"), "value": boss}]),
    )
    .await;
    assert_eq!(u[ENTERPRISE]["manager"]["value"], boss.as_str());
    let u = patched(
        &app,
        &format!("/Users/{id}"),
        json!([{"op": "Replace", "path": format!("{ENTERPRISE}:manager"), "value": ""}]),
    )
    .await;
    assert!(
        u.get(ENTERPRISE).and_then(|e| e.get("manager")).is_none(),
        "an empty manager removes it"
    );
}

#[tokio::test]
async fn entra_unknown_schema_urns_in_a_create_are_ignored() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let g = app
        .create_group(json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group", "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"],
            "displayName": "Engineering",
            "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
            "members": []
        }))
        .await;
    assert_eq!(
        g["schemas"],
        json!(["urn:ietf:params:scim:schemas:core:2.0:Group"])
    );
    let mut u = okta_user("ann@x.com");
    u["schemas"] = json!([
        "urn:ietf:params:scim:schemas:core:2.0:User",
        "urn:ietf:params:scim:schemas:extension:vendor:2.0:User"
    ]);
    u["urn:ietf:params:scim:schemas:extension:vendor:2.0:User"] = json!({"costCentre": 7});
    let created = app.create_user(u).await;
    assert!(created
        .get("urn:ietf:params:scim:schemas:extension:vendor:2.0:User")
        .is_none());
}

#[tokio::test]
async fn read_only_attributes_in_requests_are_ignored() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let mut body = okta_user("ann@x.com");
    body["id"] = json!("mine");
    body["meta"] = json!({"version": "W/\"99\""});
    body["groups"] = json!([{"value": "g"}]);
    let u = app.create_user(body.clone()).await;
    assert_ne!(u["id"], "mine");
    assert_eq!(u["meta"]["version"], "W/\"1\"");
    let id = u["id"].as_str().unwrap();
    let res = app
        .scim(Method::PUT, &format!("/Users/{id}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["id"], id);
}

#[tokio::test]
async fn plus_and_percent20_in_filters() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    user(&app, "ann@x.com").await;
    for q in [
        "userName+eq+%22ann@x.com%22",
        "userName%20eq%20%22ann@x.com%22",
        "userName%20eq+%22ann@x.com%22",
    ] {
        assert_eq!(read(&app, &users_query(q)).await["totalResults"], 1, "{q}");
    }
}

#[tokio::test]
async fn okta_user_name_filter_is_case_insensitive() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    user(&app, "Ann.Lee@X.com").await;
    let l = read(&app, &users_query("userName%20eq%20%22ann.lee@x.COM%22")).await;
    assert_eq!(l["totalResults"], 1);
    assert_eq!(
        l["Resources"][0]["userName"], "Ann.Lee@X.com",
        "stored as sent"
    );
}

#[tokio::test]
async fn entra_filter_on_external_id() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let mut u = okta_user("ann@x.com");
    u["externalId"] = json!("58342554-38d6-4ec8-948c-50044d0a33fd");
    app.create_user(u).await;
    let l = read(
        &app,
        &users_query("externalId%20eq%20%2258342554-38d6-4ec8-948c-50044d0a33fd%22"),
    )
    .await;
    assert_eq!(l["totalResults"], 1);
    let none = read(&app, &users_query("externalId%20eq%20%22nope%22")).await;
    assert_eq!(none["totalResults"], 0);
    assert_eq!(none["Resources"], json!([]));
}

#[tokio::test]
async fn excluded_attributes_members_on_group_reads() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let a = user(&app, "a@x.com").await;
    let g = group_with(&app, "Sales", &[&a]).await;
    let one = read(&app, &format!("/Groups/{g}?excludedAttributes=members")).await;
    assert!(one.get("members").is_none());
    assert_eq!(one["displayName"], "Sales");
    let list = read(
        &app,
        "/Groups?excludedAttributes=members&filter=displayName%20eq%20%22Sales%22",
    )
    .await;
    assert!(list["Resources"][0].get("members").is_none());
}

#[tokio::test]
async fn okta_inactive_users_are_still_returned_by_get_and_filters() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let id = user(&app, "ann@x.com").await;
    patched(
        &app,
        &format!("/Users/{id}"),
        json!([{"op": "replace", "value": {"active": false}}]),
    )
    .await;
    assert_eq!(read(&app, &format!("/Users/{id}")).await["active"], false);
    let l = read(&app, &users_query("userName%20eq%20%22ann@x.com%22")).await;
    assert_eq!(l["totalResults"], 1);
    assert_eq!(l["Resources"][0]["active"], false);
}

#[tokio::test]
async fn okta_paging_is_stable_across_page_sizes() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    for i in 0..10 {
        user(&app, &format!("u{i:02}@x.com")).await;
    }
    let all: Vec<String> = read(&app, "/Users?count=100").await["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_owned())
        .collect();
    for count in [1, 3, 4, 7] {
        // Okta adds `count` to `startIndex` whatever came back.
        let mut walked = Vec::new();
        let mut start = 1;
        while start <= 10 {
            let page = read(&app, &format!("/Users?startIndex={start}&count={count}")).await;
            walked.extend(
                page["Resources"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|u| u["id"].as_str().unwrap().to_owned()),
            );
            start += count;
        }
        assert_eq!(walked, all, "count={count}");
    }
}
