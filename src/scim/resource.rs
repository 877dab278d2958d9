//! Resource documents: turning a client's POST/PUT body into the stored document and a
//! stored document back into the resource a client reads (RFC 7643 §3, RFC 7644 §3.3,
//! §3.5.1). The stored document holds what the IdP sent, in the schema's spelling,
//! without `id`, `meta`, read-only attributes or attributes no schema defines.

use serde_json::{Map, Value};

use super::schema::{AttrType, Attribute, Mutability, ResourceSchema, Returned};
use super::{ScimError, ScimType};

/// Metadata the server owns (RFC 7643 §3.1 `meta`).
#[derive(Debug, Clone)]
pub struct Meta<'a> {
    /// `User` or `Group`.
    pub resource_type: &'a str,
    /// RFC 3339 creation time.
    pub created: String,
    /// RFC 3339 last modification time.
    pub last_modified: String,
    /// Absolute URL of the resource.
    pub location: String,
    /// Version counter, rendered as a weak ETag.
    pub version: i64,
}

/// The number of JSON values in `v` (itself, and everything nested in it), counted up to
/// `limit` at most: a cheap measure of the work rendering or normalising it takes.
pub fn value_count(v: &Value, limit: usize) -> usize {
    fn walk(v: &Value, left: &mut usize) {
        if *left == 0 {
            return;
        }
        *left -= 1;
        match v {
            Value::Array(items) => items.iter().for_each(|i| walk(i, left)),
            Value::Object(map) => map.values().for_each(|i| walk(i, left)),
            _ => {}
        }
    }
    let mut left = limit;
    walk(v, &mut left);
    limit - left
}

/// Checks that no multi-valued attribute of a stored document holds more than `max`
/// values: a user with 20 000 `emails` makes every PATCH value filter walk them all
/// (issue #14). A group's `members` are exempt (groups of 10 000+ are normal and are
/// stored as rows, not in the document). RFC 7644 §3.12: a value not allowed is
/// `invalidValue`.
pub fn check_value_counts(doc: &Value, res: &ResourceSchema, max: usize) -> Result<(), ScimError> {
    let Value::Object(doc) = doc else {
        return Ok(());
    };
    // Core attributes sit at the top level, extension attributes under their URN.
    let scopes = std::iter::once((Some(doc), res.core)).chain(
        res.extensions
            .iter()
            .map(|s| (doc.get(s.id).and_then(Value::as_object), *s)),
    );
    for (values, schema) in scopes {
        let Some(values) = values else {
            continue;
        };
        for attr in schema.attributes {
            if !attr.multi_valued || attr.name == "members" {
                continue;
            }
            if let Some(Value::Array(items)) = values.get(attr.name) {
                if items.len() > max {
                    return Err(ScimError::bad_request(
                        ScimType::InvalidValue,
                        format!(
                            "{} has {} values; at most {max} are allowed",
                            attr.name,
                            items.len()
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The weak entity tag of a version (RFC 7644 §3.14), also `meta.version`.
pub fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

/// Normalises a POST/PUT body into the stored document (RFC 7644 §3.3 and §3.5.1):
/// attribute names take the schema's spelling, "True"/"False" strings become booleans
/// (Entra sends them), read-only attributes (`id`, `meta`, `groups`) and attributes no
/// schema defines are ignored, and `schemas` lists the core schema plus the extensions
/// present. Missing required attributes and values of the wrong type are 400s.
pub fn normalize(body: Value, res: &ResourceSchema) -> Result<Value, ScimError> {
    let Value::Object(body) = body else {
        return Err(ScimError::bad_request(
            ScimType::InvalidSyntax,
            "the request body must be a JSON object",
        ));
    };
    let mut out = Map::new();
    for (key, value) in body {
        if key.eq_ignore_ascii_case("schemas") {
            continue;
        }
        if let Some(ext) = res
            .extensions
            .iter()
            .find(|s| s.id.eq_ignore_ascii_case(&key))
        {
            if let Value::Object(attrs) = value {
                for (name, v) in attrs {
                    put(&mut out, res, Some(ext.id), &name, v)?;
                }
            }
            continue;
        }
        let (urn, name) = super::schema::split_urn(&key);
        put(&mut out, res, urn, name, value)?;
    }
    for attr in res.core.attributes {
        if attr.required && attr.mutability != Mutability::ReadOnly {
            let present = out.get(attr.name).is_some_and(|v| match v {
                Value::String(s) => !s.trim().is_empty(),
                _ => true,
            });
            if !present {
                return Err(ScimError::bad_request(
                    ScimType::InvalidValue,
                    format!("{} is required", attr.name),
                ));
            }
        }
    }
    let mut schemas = vec![Value::String(res.core.id.into())];
    schemas.extend(
        res.extensions
            .iter()
            .filter(|e| out.contains_key(e.id))
            .map(|e| Value::String(e.id.into())),
    );
    out.insert("schemas".into(), Value::Array(schemas));
    Ok(Value::Object(out))
}

/// Stores one attribute (`name` may be dotted: `name.givenName`) under its schema.
fn put(
    out: &mut Map<String, Value>,
    res: &ResourceSchema,
    urn: Option<&str>,
    name: &str,
    value: Value,
) -> Result<(), ScimError> {
    let (attr_name, sub_name) = match name.split_once('.') {
        Some((a, s)) => (a, Some(s)),
        None => (name, None),
    };
    let Some(resolved) = res.resolve(urn, attr_name, sub_name) else {
        // Unknown attributes and unknown schema URNs are ignored (Entra adds its own
        // `…/ADSCIM/2.0/Group` URN; Microsoft's collection sends made-up attributes).
        return Ok(());
    };
    let attr = resolved.attr;
    // Read-only attributes are the server's; write-only ones (`password`) are not kept:
    // apps behind scimbridge sign users in through SSO, so a password has no use here.
    if matches!(
        attr.mutability,
        Mutability::ReadOnly | Mutability::WriteOnly
    ) {
        return Ok(());
    }
    let target = if resolved.schema.is_empty() || resolved.schema == res.core.id {
        &mut *out
    } else {
        let ext = out
            .entry(resolved.schema.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        match ext {
            Value::Object(m) => m,
            _ => return Ok(()),
        }
    };
    match resolved.sub {
        Some(sub) if !attr.multi_valued => {
            let Some(v) = coerce_simple(sub, value, attr.name)? else {
                return Ok(());
            };
            let parent = target
                .entry(attr.name.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(m) = parent {
                m.insert(sub.name.into(), v);
            }
        }
        // A dotted path into a multi-valued attribute has no single home in a body.
        Some(_) => {}
        None => {
            if let Some(v) = coerce(attr, value)? {
                target.insert(attr.name.into(), v);
            }
        }
    }
    Ok(())
}

/// Checks and converts a value for an attribute; `None` means "unassigned" (null or
/// an empty multi-valued list), which RFC 7643 §2.5 treats as absent.
pub fn coerce(attr: &Attribute, value: Value) -> Result<Option<Value>, ScimError> {
    if value.is_null() {
        return Ok(None);
    }
    if attr.multi_valued {
        let items = match value {
            Value::Array(items) => items,
            single => vec![single],
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            if let Some(v) = coerce_one(attr, item)? {
                out.push(v);
            }
        }
        // RFC 7643 §2.4: the primary attribute value "true" MUST appear no more than once.
        if out
            .iter()
            .filter(|v| v.get("primary") == Some(&Value::Bool(true)))
            .count()
            > 1
        {
            return Err(ScimError::bad_request(
                ScimType::InvalidValue,
                format!("at most one of {} may be primary", attr.name),
            ));
        }
        return Ok((!out.is_empty()).then_some(Value::Array(out)));
    }
    coerce_one(attr, value)
}

fn coerce_one(attr: &Attribute, value: Value) -> Result<Option<Value>, ScimError> {
    if attr.kind != AttrType::Complex {
        return coerce_simple(attr, value, "");
    }
    let obj = match value {
        Value::Object(m) => m,
        Value::Null => return Ok(None),
        // A bare value for a complex attribute with a `value` sub-attribute, e.g. Entra's
        // `manager: "<id>"` (enterprise extension, RFC 7643 §4.3).
        simple if attr.sub_attributes.iter().any(|s| s.name == "value") => {
            let mut m = Map::new();
            m.insert("value".into(), simple);
            m
        }
        _ => {
            return Err(ScimError::bad_request(
                ScimType::InvalidValue,
                format!("{} must be an object", attr.name),
            ))
        }
    };
    let mut out = Map::new();
    for (k, v) in obj {
        let Some(sub) = attr
            .sub_attributes
            .iter()
            .find(|s| s.name.eq_ignore_ascii_case(&k))
        else {
            continue;
        };
        if sub.mutability == Mutability::ReadOnly {
            continue;
        }
        if let Some(v) = coerce_simple(sub, v, attr.name)? {
            out.insert(sub.name.into(), v);
        }
    }
    Ok((!out.is_empty()).then_some(Value::Object(out)))
}

fn coerce_simple(attr: &Attribute, value: Value, parent: &str) -> Result<Option<Value>, ScimError> {
    let full = if parent.is_empty() {
        attr.name.to_string()
    } else {
        format!("{parent}.{}", attr.name)
    };
    let wrong = |want: &str| {
        ScimError::bad_request(ScimType::InvalidValue, format!("{full} must be {want}"))
    };
    Ok(Some(match (attr.kind, value) {
        (_, Value::Null) => return Ok(None),
        (AttrType::Boolean, Value::Bool(b)) => Value::Bool(b),
        (AttrType::Boolean, Value::String(s)) if s.eq_ignore_ascii_case("true") => {
            Value::Bool(true)
        }
        (AttrType::Boolean, Value::String(s)) if s.eq_ignore_ascii_case("false") => {
            Value::Bool(false)
        }
        (AttrType::Boolean, _) => return Err(wrong("a boolean")),
        (AttrType::Integer | AttrType::Decimal, Value::Number(n)) => Value::Number(n),
        (AttrType::Integer | AttrType::Decimal, Value::String(s)) => {
            serde_json::from_str::<serde_json::Number>(s.trim())
                .map(Value::Number)
                .map_err(|_| wrong("a number"))?
        }
        (AttrType::Integer | AttrType::Decimal, _) => return Err(wrong("a number")),
        (AttrType::Complex, _) => return Err(wrong("an object")),
        // Declared canonical values (RFC 7643 §7 canonicalValues) are enforced, compared
        // case-insensitively and stored in the schema's spelling.
        (_, Value::String(s)) if !attr.canonical_values.is_empty() => match attr
            .canonical_values
            .iter()
            .find(|c| c.eq_ignore_ascii_case(&s))
        {
            Some(c) => Value::String((*c).to_string()),
            None => {
                return Err(wrong(&format!(
                    "one of {}",
                    attr.canonical_values.join(", ")
                )))
            }
        },
        (_, Value::String(s)) => Value::String(s),
        (_, Value::Number(n)) => Value::String(n.to_string()),
        (_, Value::Bool(b)) => Value::String(b.to_string()),
        (_, Value::Array(_) | Value::Object(_)) => return Err(wrong("a string")),
    }))
}

/// Builds the resource a client reads: the stored document plus `id`, `meta` and any
/// server-computed attributes (`groups` of a user, `members` of a group). Attributes
/// whose `returned` is `never` (e.g. `password`, RFC 7643 §4.1.1) are never included.
pub fn render(
    mut doc: Value,
    id: &str,
    meta: &Meta<'_>,
    computed: impl IntoIterator<Item = (&'static str, Value)>,
    res: &ResourceSchema,
) -> Value {
    if let Value::Object(m) = &mut doc {
        for attr in res.core.attributes {
            if attr.returned == Returned::Never {
                m.remove(attr.name);
            }
        }
        m.insert("id".into(), Value::String(id.into()));
        for (k, v) in computed {
            // A computed extension is listed in `schemas` like any other (RFC 7643 §3).
            if k.starts_with("urn:") {
                if let Some(Value::Array(schemas)) = m.get_mut("schemas") {
                    if !schemas.iter().any(|s| s == k) {
                        schemas.push(Value::String(k.into()));
                    }
                }
            }
            m.insert(k.into(), v);
        }
        m.insert(
            "meta".into(),
            serde_json::json!({
                "resourceType": meta.resource_type,
                "created": meta.created,
                "lastModified": meta.last_modified,
                "location": meta.location,
                "version": etag(meta.version),
            }),
        );
    }
    doc
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::scim::schema::{ENTERPRISE_USER_SCHEMA, GROUP_RESOURCE, USER_RESOURCE};
    use serde_json::json;

    #[test]
    fn value_count_counts_every_nested_value_up_to_the_limit() {
        let v = json!({"a": 1, "b": [1, 2, {"c": null}], "d": "x"});
        assert_eq!(value_count(&v, 100), 8);
        assert_eq!(value_count(&v, 3), 3);
        assert_eq!(value_count(&json!(null), 100), 1);
    }

    #[test]
    fn value_counts_are_bounded_except_group_members() {
        let emails: Vec<_> = (0..3).map(|i| json!({"value": format!("{i}@x")})).collect();
        let user = json!({"userName": "a", "emails": emails});
        assert!(check_value_counts(&user, &USER_RESOURCE, 3).is_ok());
        let e = check_value_counts(&user, &USER_RESOURCE, 2).unwrap_err();
        assert_eq!(e.scim_type, Some(ScimType::InvalidValue));
        assert!(e.detail.contains("emails"), "{}", e.detail);
        let group = json!({"displayName": "g", "members": emails});
        assert!(check_value_counts(&group, &GROUP_RESOURCE, 1).is_ok());
    }

    #[test]
    fn user_body_is_canonicalised_and_read_only_dropped() {
        let doc = normalize(
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:made:up"],
                "id": "client-chosen", "meta": {"x": 1}, "groups": [{"value": "g"}],
                "UserName": "ann", "active": "False", "nonsense": 1,
                "name": {"GivenName": "Ann"},
                ENTERPRISE_USER_SCHEMA: {"manager": "boss-id", "department": "Sales"},
            }),
            &USER_RESOURCE,
        )
        .unwrap();
        assert_eq!(doc["userName"], "ann");
        assert_eq!(doc["active"], false);
        assert_eq!(doc["name"]["givenName"], "Ann");
        assert!(
            doc.get("id").is_none() && doc.get("meta").is_none() && doc.get("groups").is_none()
        );
        assert!(doc.get("nonsense").is_none());
        assert_eq!(doc[ENTERPRISE_USER_SCHEMA]["manager"]["value"], "boss-id");
        assert_eq!(
            doc["schemas"],
            json!([
                "urn:ietf:params:scim:schemas:core:2.0:User",
                ENTERPRISE_USER_SCHEMA
            ])
        );
    }

    #[test]
    fn missing_user_name_and_bad_boolean_are_invalid_value() {
        let e = normalize(json!({"active": true}), &USER_RESOURCE).unwrap_err();
        assert_eq!(e.scim_type, Some(ScimType::InvalidValue));
        let e = normalize(json!({"userName": "a", "active": "maybe"}), &USER_RESOURCE).unwrap_err();
        assert_eq!(e.scim_type, Some(ScimType::InvalidValue));
        let e = normalize(json!({"members": []}), &GROUP_RESOURCE).unwrap_err();
        assert!(e.detail.contains("displayName"));
        let e = normalize(json!([1]), &USER_RESOURCE).unwrap_err();
        assert_eq!(e.scim_type, Some(ScimType::InvalidSyntax));
    }
}

/// `attributes` / `excludedAttributes` (RFC 7644 §3.4.2.5) applied to a rendered
/// resource. Names may be dotted (`name.givenName`) or URN-qualified; `id` and `schemas`
/// are always returned (`returned: always`).
pub fn project(mut doc: Value, attributes: &[String], excluded: &[String]) -> Value {
    let Value::Object(map) = &mut doc else {
        return doc;
    };
    // Microsoft's test collection sends `attributes=emails[type eq "work"]`, which RFC 7644
    // §3.4.2.5 does not define; read it as the attribute it names.
    let strip = |names: &[String]| -> Vec<String> {
        names
            .iter()
            .map(|a| match (a.find('['), a.rfind(']')) {
                (Some(open), Some(close)) if open < close => {
                    format!("{}{}", &a[..open], &a[close + 1..])
                }
                _ => a.clone(),
            })
            .collect()
    };
    let (attributes, excluded) = (strip(attributes), strip(excluded));
    let always = |k: &str| k == "id" || k == "schemas";
    if !attributes.is_empty() {
        let mut kept = Map::new();
        for (key, value) in std::mem::take(map) {
            if always(&key) {
                kept.insert(key, value);
                continue;
            }
            let wanted: Vec<Option<&str>> = attributes
                .iter()
                .filter_map(|a| match_key(a, &key))
                .collect();
            if wanted.is_empty() {
                continue;
            }
            if wanted.iter().any(Option::is_none) {
                kept.insert(key, value);
            } else {
                let subs: Vec<&str> = wanted.into_iter().flatten().collect();
                kept.insert(key, keep_subs(value, &subs));
            }
        }
        *map = kept;
    }
    for a in &excluded {
        let keys: Vec<(String, Option<String>)> = map
            .keys()
            .filter(|k| !always(k))
            .filter_map(|k| match_key(a, k).map(|s| (k.clone(), s.map(str::to_owned))))
            .collect();
        for (key, sub) in keys {
            match sub {
                None => {
                    map.remove(&key);
                }
                Some(sub) => drop_sub(map.get_mut(&key), &sub),
            }
        }
    }
    doc
}

/// Whether the requested name `a` addresses document key `key`; Some(sub) when it names
/// a sub-attribute of it. Attribute names are case-insensitive (RFC 7643 §2.1).
fn match_key<'a>(a: &'a str, key: &str) -> Option<Option<&'a str>> {
    let a = a.trim();
    // Extension URN itself, or an attribute under it (`urn:…:User:department`).
    // `get`, not slicing: `a` is client text and may have a multi-byte character across
    // `key.len()` (found by schemathesis).
    if a.get(..key.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(key))
        && a.as_bytes().get(key.len()) == Some(&b':')
    {
        return Some(Some(&a[key.len() + 1..]));
    }
    let (_, rest) = super::schema::split_urn(a);
    let (head, sub) = match rest.split_once('.') {
        Some((h, s)) => (h, Some(s)),
        None => (rest, None),
    };
    if a.eq_ignore_ascii_case(key) || head.eq_ignore_ascii_case(key) {
        Some(if a.eq_ignore_ascii_case(key) {
            None
        } else {
            sub
        })
    } else {
        None
    }
}

fn keep_subs(value: Value, subs: &[&str]) -> Value {
    let keep = |v: Value| match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(k, _)| subs.iter().any(|s| s.eq_ignore_ascii_case(k)))
                .collect(),
        ),
        other => other,
    };
    match value {
        Value::Array(items) => Value::Array(items.into_iter().map(keep).collect()),
        other => keep(other),
    }
}

fn drop_sub(value: Option<&mut Value>, sub: &str) {
    let strip = |v: &mut Value| {
        if let Value::Object(m) = v {
            let key = m.keys().find(|k| k.eq_ignore_ascii_case(sub)).cloned();
            if let Some(k) = key {
                m.remove(&k);
            }
        }
    };
    match value {
        Some(Value::Array(items)) => items.iter_mut().for_each(strip),
        Some(v) => strip(v),
        None => {}
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod projection_tests {
    use super::project;
    use serde_json::json;

    #[test]
    fn attributes_keep_listed_and_always_returned() {
        let doc = json!({"id": "1", "schemas": [], "userName": "a", "name": {"givenName": "A", "familyName": "B"}, "title": "x"});
        let p = project(
            doc.clone(),
            &["userName".into(), "name.givenName".into()],
            &[],
        );
        assert_eq!(
            p,
            json!({"id": "1", "schemas": [], "userName": "a", "name": {"givenName": "A"}})
        );
        let e = project(
            doc,
            &[],
            &["title".into(), "name.familyName".into(), "id".into()],
        );
        assert_eq!(
            e,
            json!({"id": "1", "schemas": [], "userName": "a", "name": {"givenName": "A"}})
        );
    }

    #[test]
    fn urn_qualified_names_work() {
        let ext = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
        let doc = json!({"id": "1", "userName": "a", ext: {"department": "S", "costCenter": "c"}});
        let p = project(
            doc,
            &[
                format!("{ext}:department"),
                "urn:ietf:params:scim:schemas:core:2.0:User:userName".into(),
            ],
            &[],
        );
        assert_eq!(
            p,
            json!({"id": "1", "userName": "a", ext: {"department": "S"}})
        );
    }
}
