//! The PATCH engine on a fixed User document with arbitrary `Operations` JSON: no panic,
//! and all-or-nothing (an error leaves the document unchanged).
#![no_main]
use libfuzzer_sys::fuzz_target;
use scimbridge::scim::patch::{apply, PatchOperation};
use scimbridge::scim::schema::USER_RESOURCE;
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let Ok(ops) = serde_json::from_slice::<Vec<PatchOperation>>(data) else {
        return;
    };
    let before = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "id": "2819c223-7f76-453a-919d-413861904646",
        "userName": "bjensen@example.com",
        "active": true,
        "title": "Tour Guide",
        "name": {"givenName": "Barbara", "familyName": "Jensen"},
        "emails": [{"value": "bjensen@example.com", "type": "work", "primary": true}],
        "roles": [{"value": "Standard"}]
    });
    let mut doc = before.clone();
    if apply(&mut doc, &ops, &USER_RESOURCE).is_err() {
        assert_eq!(doc, before, "a failed PATCH changed the document");
    }
});
