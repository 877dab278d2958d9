use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{assert_scim_error, count, okta_user, TestApp};

async fn users(app: &TestApp, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let u = app.create_user(okta_user(&format!("u{i}@corp.com"))).await;
        ids.push(u["id"].as_str().unwrap().to_owned());
    }
    ids
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

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

async fn get(app: &TestApp, id: &str) -> Value {
    let res = app
        .scim(Method::GET, &format!("/Groups/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

#[tokio::test]
async fn create_group_with_members_and_read_it_back() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let ids = users(&app, 2).await;
    let res = app
        .scim(Method::POST, "/Groups")
        .json(&json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "Sales",
            "externalId": "00g1",
            "members": [{"value": ids[0]}, {"value": ids[1], "display": "ignored"}]
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert!(res.headers().contains_key("location"));
    let g: Value = res.json().await.unwrap();
    assert_eq!(g["displayName"], "Sales");
    assert_eq!(g["meta"]["resourceType"], "Group");
    assert_eq!(member_ids(&g), sorted(ids.clone()));
    assert_eq!(
        g["members"][1]["display"], "ignored",
        "display is echoed as sent"
    );
    assert!(
        g["members"][0].get("display").is_none(),
        "and absent when not sent"
    );
    assert!(g["members"][0]["$ref"]
        .as_str()
        .unwrap()
        .contains("/scim/v2/Users/"));
    let read = get(&app, g["id"].as_str().unwrap()).await;
    assert_eq!(read, g);
    // Users show their groups (read-only `groups`, RFC 7643 §4.1.2).
    let u: Value = app.scim_get(&format!("/Users/{}", ids[0])).await;
    assert_eq!(u["groups"][0]["value"], g["id"]);
    assert_eq!(u["groups"][0]["display"], "Sales");
}

#[tokio::test]
async fn unknown_member_ids_are_400_invalid_value_and_change_nothing() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let ids = users(&app, 1).await;
    let bad = uuid::Uuid::new_v4().to_string();
    let res = app
        .scim(Method::POST, "/Groups")
        .json(&json!({"displayName": "Sales", "members": [{"value": ids[0]}, {"value": bad}]}))
        .send()
        .await
        .unwrap();
    let err = assert_scim_error(res, 400, Some("invalidValue")).await;
    assert!(err["detail"].as_str().unwrap().contains(&bad));
    assert_eq!(count(&app.pool, "scim_group").await, 0);

    let g = app
        .create_group(json!({"displayName": "Sales", "members": [{"value": ids[0]}]}))
        .await;
    let gid = g["id"].as_str().unwrap();
    let res = app
        .patch(
            &format!("/Groups/{gid}"),
            json!([{"op": "add", "path": "members", "value": [{"value": "nope"}]}]),
        )
        .await;
    assert_scim_error(res, 400, Some("invalidValue")).await;
    assert_eq!(member_ids(&get(&app, gid).await), ids);
}

#[tokio::test]
async fn duplicate_display_name_is_409() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    app.create_group(json!({"displayName": "Sales"})).await;
    let res = app
        .scim(Method::POST, "/Groups")
        .json(&json!({"displayName": "sales"}))
        .send()
        .await
        .unwrap();
    assert_scim_error(res, 409, Some("uniqueness")).await;
    let res = app
        .scim(Method::POST, "/Groups")
        .json(&json!({"members": []}))
        .send()
        .await
        .unwrap();
    assert_scim_error(res, 400, Some("invalidValue")).await;
}

#[tokio::test]
async fn excluded_members_and_display_name_filters() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let ids = users(&app, 1).await;
    let g = app
        .create_group(json!({"displayName": "Sales", "members": [{"value": ids[0]}]}))
        .await;
    app.create_group(json!({"displayName": "Marketing"})).await;
    let gid = g["id"].as_str().unwrap();
    let one: Value = app
        .scim(
            Method::GET,
            &format!("/Groups/{gid}?excludedAttributes=members"),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(one.get("members").is_none());
    assert_eq!(one["displayName"], "Sales");
    let list: Value = app
        .scim(
            Method::GET,
            "/Groups?filter=displayName%20eq%20%22sales%22&excludedAttributes=members",
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["totalResults"], 1);
    assert!(list["Resources"][0].get("members").is_none());
    let by_member: Value = app
        .scim(
            Method::GET,
            &format!("/Groups?filter=members.value%20eq%20%22{}%22", ids[0]),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(by_member["totalResults"], 1);
    let all: Value = app.scim_get("/Groups").await;
    assert_eq!(all["totalResults"], 2);
}

#[tokio::test]
async fn put_and_delete_group() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let ids = users(&app, 2).await;
    let g = app
        .create_group(json!({"displayName": "Sales", "members": [{"value": ids[0]}]}))
        .await;
    let gid = g["id"].as_str().unwrap();
    let res = app
        .scim(Method::PUT, &format!("/Groups/{gid}"))
        .json(&json!({"displayName": "Sales 2", "members": [{"value": ids[1]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let put: Value = res.json().await.unwrap();
    assert_eq!(put["displayName"], "Sales 2");
    assert_eq!(member_ids(&put), vec![ids[1].clone()]);
    assert_eq!(
        app.scim(Method::DELETE, &format!("/Groups/{gid}"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_scim_error(
        app.scim(Method::GET, &format!("/Groups/{gid}"))
            .send()
            .await
            .unwrap(),
        404,
        None,
    )
    .await;
    let u: Value = app.scim_get(&format!("/Users/{}", ids[1])).await;
    assert!(
        u.get("groups").is_none(),
        "a deleted group is no longer listed on its members"
    );
}

/// Group push (members added or removed by id) is applied as row changes, without the
/// whole member list (issue #6); the results must be the PATCH engine's.
#[tokio::test]
async fn membership_patches_change_only_the_named_members() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let ids = users(&app, 3).await;
    let g = app
        .create_group(json!({"displayName": "Sales", "members": [{"value": ids[0]}]}))
        .await;
    let gid = g["id"].as_str().unwrap();
    let version = |g: &Value| g["meta"]["version"].as_str().unwrap().to_owned();

    // Adding a member already there and removing one never added change nothing: no
    // new version, the response is the group as it was.
    let res = app
        .patch(
            &format!("/Groups/{gid}"),
            json!([
                {"op": "add", "path": "members", "value": [{"value": ids[0], "display": "again"}]},
                {"op": "remove", "path": format!("members[value eq \"{}\"]", ids[2])}
            ]),
        )
        .await;
    assert_eq!(res.status(), 200);
    let same: Value = res.json().await.unwrap();
    assert_eq!(version(&same), version(&g));
    assert_eq!(same["members"], g["members"]);

    // Okta's add, then Entra's value-list remove; the last operation about a member wins.
    let res = app
        .patch(
            &format!("/Groups/{gid}"),
            json!([
                {"op": "add", "path": "members", "value": [{"value": ids[1], "display": "b"}, {"value": ids[2]}]},
                {"op": "Remove", "path": "members", "value": [{"value": ids[0]}, {"value": ids[2]}]},
            ]),
        )
        .await;
    assert_eq!(res.status(), 200);
    let changed: Value = res.json().await.unwrap();
    assert_ne!(version(&changed), version(&g));
    assert_eq!(member_ids(&changed), vec![ids[1].clone()]);
    assert_eq!(changed["members"][0]["display"], "b");
    assert_eq!(
        get(&app, gid).await,
        changed,
        "the response is what a read shows"
    );

    // An unknown id fails the whole request: the valid add beside it is not applied.
    let res = app
        .patch(
            &format!("/Groups/{gid}"),
            json!([{"op": "add", "path": "members", "value": [{"value": ids[0]}, {"value": uuid::Uuid::new_v4()}]}]),
        )
        .await;
    assert_scim_error(res, 400, Some("invalidValue")).await;
    assert_eq!(get(&app, gid).await, changed);

    // If-Match still guards it (RFC 7644 §3.14).
    let res = app
        .scim(Method::PATCH, &format!("/Groups/{gid}"))
        .header("If-Match", "W/\"1\"")
        .json(
            &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "add", "path": "members", "value": [{"value": ids[0]}]}]}),
        )
        .send()
        .await
        .unwrap();
    assert_scim_error(res, 412, None).await;

    let audit: Vec<(String,)> =
        sqlx::query_as("select outcome from audit where action = 'group.patch' order by audit_id")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    let outcomes: Vec<&str> = audit.iter().map(|(o,)| o.as_str()).collect();
    assert_eq!(
        outcomes,
        ["unchanged", "updated"],
        "refused requests leave no record"
    );
}

/// Membership of a role-deciding group plans the role change of exactly the members it
/// adds or removes, through the row-change path too.
#[tokio::test]
async fn membership_patch_of_a_role_group_replans_only_the_named_members() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let ids = users(&app, 2).await;
    let g = app
        .create_group(json!({"displayName": "People.ai Admins"}))
        .await;
    let gid = g["id"].as_str().unwrap();
    let res = app
        .patch(
            &format!("/Groups/{gid}"),
            json!([{"op": "add", "path": "members", "value": [{"value": ids[1]}]}]),
        )
        .await;
    assert_eq!(res.status(), 200);
    // u1's creation now asks for Admin, which the People.ai profile has approved first.
    let roles: Vec<(String, Option<String>, String)> = sqlx::query_as(
        "select u.user_name, t.target->>'role', t.state::text from scim_user u \
         join task t on t.user_id = u.user_id \
         where t.state in ('open', 'awaiting_approval') order by u.user_name",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let row = |n: &str, r: &str, s: &str| (n.to_owned(), Some(r.to_owned()), s.to_owned());
    assert_eq!(
        roles,
        [
            row("u0@corp.com", "Standard", "open"),
            row("u1@corp.com", "Admin", "awaiting_approval"),
        ]
    );
}

/// Writes answer "subject to the attributes query parameter" (RFC 7644 §3.5.2): a
/// membership PATCH of a big group can leave the members out of its answer.
#[tokio::test]
async fn write_answers_honour_attributes_and_excluded_attributes() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let ids = users(&app, 2).await;
    let res = app
        .scim(Method::POST, "/Groups?excludedAttributes=members")
        .json(&json!({"displayName": "Sales", "members": [{"value": ids[0]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert!(res.headers().contains_key("location"));
    let g: Value = res.json().await.unwrap();
    assert!(g.get("members").is_none());
    let gid = g["id"].as_str().unwrap();
    let res = app
        .scim(
            Method::PATCH,
            &format!("/Groups/{gid}?excludedAttributes=members"),
        )
        .json(
            &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "add", "path": "members", "value": [{"value": ids[1]}]}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().contains_key("etag"));
    let patched: Value = res.json().await.unwrap();
    assert!(patched.get("members").is_none());
    assert_eq!(patched["displayName"], "Sales");
    assert_eq!(
        member_ids(&get(&app, gid).await),
        sorted(ids.clone()),
        "the add happened"
    );

    let res = app
        .scim(
            Method::PUT,
            &format!("/Groups/{gid}?attributes=displayName"),
        )
        .json(&json!({"displayName": "Sales EU", "members": [{"value": ids[0]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let put: Value = res.json().await.unwrap();
    let mut keys: Vec<&str> = put
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(keys, ["displayName", "id", "schemas"]);
}

/// Reads and writes by id find the group by primary key first and then check its app and
/// liveness (issue #13): a deleted group is a 404 to every verb and changes nothing, a
/// deleted user cannot be added as a member, and a page asked for out of the blue
/// (`startIndex` without a previous page, sorted or not) skips the deleted group and
/// keeps its order.
#[tokio::test]
async fn deleted_groups_and_random_pages() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool.clone()).await;
    let ids = users(&app, 2).await;
    let mut groups = Vec::new();
    // Created in this order; by name the order is E, D, C, B, A.
    for name in ["E", "D", "C", "B", "A"] {
        let g = app
            .create_group(json!({"displayName": name, "members": [{"value": ids[0]}]}))
            .await;
        groups.push(g["id"].as_str().unwrap().to_owned());
    }
    let gone = &groups[1];
    let res = app
        .scim(Method::DELETE, &format!("/Groups/{gone}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let version_of = |id: String| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>("select version from scim_group where group_id = $1")
                .bind(uuid::Uuid::parse_str(&id).unwrap())
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let before = version_of(gone.clone()).await;
    for (method, body) in [
        (Method::GET, None),
        (
            Method::PATCH,
            Some(
                json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                        "Operations": [{"op": "add", "path": "members", "value": [{"value": ids[1]}]}]}),
            ),
        ),
        (Method::PUT, Some(json!({"displayName": "D"}))),
        (Method::DELETE, None),
    ] {
        let mut req = app.scim(method.clone(), &format!("/Groups/{gone}"));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        assert_scim_error(res, 404, None).await;
    }
    assert_eq!(version_of(gone.clone()).await, before, "nothing changed");

    // A deleted user is not a member to add.
    let res = app
        .scim(Method::DELETE, &format!("/Users/{}", ids[1]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let res = app
        .patch(
            &format!("/Groups/{}", groups[0]),
            json!([{"op": "add", "path": "members", "value": [{"value": ids[1]}]}]),
        )
        .await;
    assert_scim_error(res, 400, Some("invalidValue")).await;

    let page = |query: &'static str| {
        let req = app.scim(Method::GET, &format!("/Groups?{query}"));
        async move {
            let list: Value = req.send().await.unwrap().json().await.unwrap();
            let names: Vec<String> = list["Resources"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["displayName"].as_str().unwrap().to_owned())
                .collect();
            (list["totalResults"].as_i64().unwrap(), names)
        }
    };
    assert_eq!(
        page("startIndex=2&count=2").await,
        (4, vec!["C".to_owned(), "B".to_owned()])
    );
    assert_eq!(
        page("sortBy=displayName&startIndex=2&count=2").await,
        (4, vec!["B".to_owned(), "C".to_owned()])
    );
    assert_eq!(
        page("sortBy=displayName&sortOrder=descending&startIndex=3&count=5").await,
        (4, vec!["B".to_owned(), "A".to_owned()])
    );
}
