//! Property tests of the PATCH engine against RFC 7644 §3.5.2 (issue #7): for any value,
//! what an operation does is what reading the document back shows.

use proptest::prelude::*;
use serde_json::{json, Value};

use scimbridge::scim::filter::get_ci;
use scimbridge::scim::patch::{apply, PatchOperation};
use scimbridge::scim::schema::USER_RESOURCE;

fn user() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "id": "2819c223-7f76-453a-919d-413861904646",
        "userName": "bjensen@example.com",
        "active": true,
        "displayName": "Babs Jensen",
        "title": "Tour Guide",
        "name": {"givenName": "Barbara", "familyName": "Jensen"},
        "emails": [{"value": "bjensen@example.com", "type": "work", "primary": true}]
    })
}

fn op(op: &str, path: Option<&str>, value: Option<Value>) -> PatchOperation {
    let mut m = serde_json::Map::new();
    m.insert("op".into(), json!(op));
    if let Some(p) = path {
        m.insert("path".into(), json!(p));
    }
    if let Some(v) = value {
        m.insert("value".into(), v);
    }
    serde_json::from_value(Value::Object(m)).expect("a PatchOperation")
}

/// Simple (singular, string, readWrite) attributes of the core User schema.
fn simple_attr() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "displayName",
        "title",
        "nickName",
        "userType",
        "preferredLanguage",
        "locale",
        "timezone",
        "profileUrl",
    ])
}

fn text() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9 ._@-]{0,30}"
}

fn read<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(doc, |v, k| get_ci(v, k))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// §3.5.2.3 replace / §3.5.2.1 add of a simple attribute: reading it back gives the value.
    #[test]
    fn add_or_replace_simple_then_read(attr in simple_attr(), v in text(), add in any::<bool>()) {
        let mut doc = user();
        let kind = if add { "add" } else { "replace" };
        apply(&mut doc, &[op(kind, Some(attr), Some(json!(v)))], &USER_RESOURCE)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(read(&doc, attr), Some(&json!(v)));
        prop_assert_eq!(read(&doc, "userName"), Some(&json!("bjensen@example.com")));
    }

    /// A sub-attribute of a complex attribute (name.givenName) behaves the same, and its
    /// siblings stay.
    #[test]
    fn replace_sub_attribute_keeps_siblings(v in text()) {
        let mut doc = user();
        apply(&mut doc, &[op("replace", Some("name.givenName"), Some(json!(v)))], &USER_RESOURCE)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(read(&doc, "name.givenName"), Some(&json!(v)));
        prop_assert_eq!(read(&doc, "name.familyName"), Some(&json!("Jensen")));
    }

    /// §3.5.2.1 without a path: the value's attributes are merged in.
    #[test]
    fn add_without_path_merges(attr in simple_attr(), v in text()) {
        let mut doc = user();
        apply(&mut doc, &[op("add", None, Some(json!({ attr: v })))], &USER_RESOURCE)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(read(&doc, attr), Some(&json!(v)));
        prop_assert_eq!(read(&doc, "displayName").is_some(), true);
    }

    /// §3.5.2.2 remove: the attribute is absent afterwards, whatever it held.
    #[test]
    fn set_then_remove_is_absent(attr in simple_attr(), v in text()) {
        let mut doc = user();
        apply(
            &mut doc,
            &[op("replace", Some(attr), Some(json!(v))), op("remove", Some(attr), None)],
            &USER_RESOURCE,
        )
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(read(&doc, attr), None);
    }

    /// §3.5.2.1 add to a multi-valued attribute: the new value is there and the old ones
    /// stay.
    #[test]
    fn add_to_multi_valued_contains_value(local in "[a-z]{1,12}", kind in prop::sample::select(vec!["home", "other"])) {
        let mut doc = user();
        let email = format!("{local}@example.org");
        apply(&mut doc, &[op("add", Some("emails"), Some(json!([{"value": email, "type": kind}])))], &USER_RESOURCE)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let emails = read(&doc, "emails").and_then(Value::as_array).cloned().unwrap_or_default();
        prop_assert!(emails.iter().any(|e| e["value"] == json!(email)), "{:?}", emails);
        prop_assert!(emails.iter().any(|e| e["value"] == json!("bjensen@example.com")), "{:?}", emails);
    }

    /// Replace is idempotent: twice is once.
    #[test]
    fn replace_twice_is_once(attr in simple_attr(), v in text()) {
        let once = {
            let mut d = user();
            apply(&mut d, &[op("replace", Some(attr), Some(json!(v)))], &USER_RESOURCE)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            d
        };
        let mut twice = once.clone();
        apply(&mut twice, &[op("replace", Some(attr), Some(json!(v)))], &USER_RESOURCE)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(once, twice);
    }

    /// §3.5.2: a PATCH is atomic. Valid operations followed by a failing one change nothing.
    #[test]
    fn all_or_nothing_on_error(attr in simple_attr(), v in text(), bad in 0usize..4) {
        let mut doc = user();
        let before = doc.clone();
        let failing = match bad {
            0 => op("remove", None, None),                                  // remove needs a path
            1 => op("replace", Some("emails[type eq"), Some(json!("x"))),   // bad filter
            2 => op("replace", Some("id"), Some(json!("other"))),          // readOnly / unknown
            _ => op("frobnicate", Some(attr), Some(json!(v.clone()))),      // no such op
        };
        let res = apply(
            &mut doc,
            &[op("replace", Some(attr), Some(json!(v))), op("add", Some("title"), Some(json!("t"))), failing],
            &USER_RESOURCE,
        );
        if res.is_err() {
            prop_assert_eq!(doc, before);
        } else {
            // Only `id` may be tolerated (ignored) by lenient servers; then nothing else broke.
            prop_assert_eq!(bad, 2);
        }
    }
}
