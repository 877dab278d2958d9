//! openapi.yaml describes exactly the routes the router serves, and every documented
//! route really answers: no 405 and no 404 from the router's fallback.

use std::collections::{BTreeMap, BTreeSet};

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::TestApp;

/// Fields of an OpenAPI Path Item that are not operations (besides `x-` extensions).
const PATH_ITEM_FIELDS: [&str; 5] = ["$ref", "summary", "description", "servers", "parameters"];

/// Every operation under `paths` in openapi.yaml: `(METHOD, path)` and the keys of its
/// `responses` (status codes, or `default`).
fn documented_operations() -> BTreeMap<(String, String), Vec<String>> {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml");
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("reading {file}: {e}"));
    let doc: serde_yaml::Value =
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("parsing {file}: {e}"));
    let paths = doc
        .get("paths")
        .and_then(serde_yaml::Value::as_mapping)
        .expect("openapi.yaml has a `paths` mapping");
    let mut operations = BTreeMap::new();
    for (path, item) in paths {
        let path = path.as_str().expect("path keys are strings");
        let item = item
            .as_mapping()
            .unwrap_or_else(|| panic!("path item {path} is a mapping"));
        for (key, operation) in item {
            let key = key.as_str().expect("path item keys are strings");
            // Anything else counts as an operation, so a misspelt method shows up as a
            // route the router lacks instead of being skipped.
            if PATH_ITEM_FIELDS.contains(&key) || key.starts_with("x-") {
                continue;
            }
            let statuses: Vec<String> = operation
                .get("responses")
                .and_then(serde_yaml::Value::as_mapping)
                .map(|r| {
                    r.keys()
                        .filter_map(|k| match k {
                            serde_yaml::Value::String(s) => Some(s.clone()),
                            serde_yaml::Value::Number(n) => Some(n.to_string()),
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default();
            let route = (key.to_ascii_uppercase(), path.to_owned());
            let fresh = operations.insert(route, statuses).is_none();
            assert!(fresh, "{key} {path} is documented twice");
        }
    }
    operations
}

/// `(METHOD, path)` of every documented operation.
fn documented_routes() -> BTreeSet<(String, String)> {
    documented_operations().into_keys().collect()
}

fn show(routes: &[&(String, String)]) -> String {
    if routes.is_empty() {
        return "none".into();
    }
    routes
        .iter()
        .map(|(m, p)| format!("\n    {m} {p}"))
        .collect()
}

#[test]
fn openapi_describes_exactly_the_routes_of_the_router() {
    let table = scimbridge::http::route_table();
    let routed: BTreeSet<(String, String)> = table.iter().cloned().collect();
    assert_eq!(
        routed.len(),
        table.len(),
        "route_table() lists a (method, path) twice: {table:?}"
    );
    let documented = documented_routes();
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        undocumented.is_empty() && unrouted.is_empty(),
        "openapi.yaml and the router disagree\n  routes of the router missing from openapi.yaml: {}\n  routes in openapi.yaml the router does not serve: {}",
        show(&undocumented),
        show(&unrouted),
    );
}

#[tokio::test]
async fn every_documented_route_answers_and_is_not_a_router_404() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    let operations = documented_operations();
    assert!(!operations.is_empty(), "openapi.yaml documents no route");
    // Redirects are answers to check (the UI's 303 to its sign-in page), not to follow.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut wrong = Vec::new();
    for ((method, path), statuses) in &operations {
        let id = if path.starts_with("/api/v1/tasks") {
            "1".to_owned()
        } else {
            uuid::Uuid::new_v4().to_string()
        };
        let concrete = path.replace("{id}", &id).replace("{n}", "1");
        assert!(
            !concrete.contains('{'),
            "{method} {path}: a path parameter other than {{id}} and {{n}} needs a value here"
        );
        let verb = Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = client.request(verb.clone(), app.url(&concrete));
        if path.starts_with("/scim/v2/") {
            req = req.bearer_auth(&app.scim_token);
        } else if path.starts_with("/api/v1/") {
            req = req.bearer_auth(&app.admin_token);
        }
        if matches!(verb, Method::POST | Method::PUT | Method::PATCH) {
            req = req.json(&json!({}));
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let has_request_id = res.headers().contains_key("x-request-id");
        let body: Value = res.json().await.unwrap_or(Value::Null);
        let fallback = status == 404
            && (body["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with("no SCIM endpoint at"))
                || body["code"] == "no_route");
        let problem = if status == 405 {
            Some("method not allowed")
        } else if fallback {
            Some("the router's fallback: no such route")
        } else if status == 401 || status == 403 {
            Some("the token for this surface was refused")
        } else if !has_request_id {
            Some("no X-Request-Id header")
        } else if !statuses
            .iter()
            .any(|s| s == &status.to_string() || s == "default")
        {
            Some("a status openapi.yaml does not document for this operation")
        } else {
            None
        };
        if let Some(problem) = problem {
            wrong.push(format!(
                "{method} {concrete} (documented as {path}) -> {status}, {problem}: {body}"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "documented routes that do not answer as documented:\n  {}",
        wrong.join("\n  ")
    );
}
