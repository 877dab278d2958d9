//! Group PATCHes that only add or remove members, recognised so they can be applied as
//! row changes (issue #6: the cost of a request must not grow with the group's size).
//!
//! Okta and Entra push group membership one change at a time:
//!
//! ```text
//! {"op": "add",    "path": "members", "value": [{"value": "<user id>"}]}
//! {"op": "remove", "path": "members[value eq \"<user id>\"]"}        (Okta)
//! {"op": "Remove", "path": "members", "value": [{"value": "<user id>"}]} (Entra)
//! ```
//!
//! Applied through the PATCH engine, each needs the group's whole member list. Here a
//! request whose every operation has one of these shapes becomes a [`MemberDelta`]; any
//! other request (a rename, `replace members`, `remove members` without a value, an
//! element with unknown sub-attributes) yields None and goes through the engine, which
//! also owns its errors. The delta gives the same result as the engine would: an added
//! member already present stays as it is, removing an absent member is a no-op
//! (RFC 7644 §3.5.2.2 removal is idempotent for the IdPs' retries), and operations
//! apply in order (the last one about a member decides).

use serde_json::Value;

use super::filter::{AttrPath, CompareOp, Filter};
use super::patch::{OpKind, PatchOperation};
use super::path::parse_path;
use super::schema::GROUP_SCHEMA;

/// The net member changes of a membership-only PATCH, in first-mention order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberDelta {
    /// Members to add: id as sent, and the `display` sent with it.
    pub add: Vec<(String, Option<String>)>,
    /// Member ids to remove.
    pub remove: Vec<String>,
}

/// The member changes of `ops`, if every operation only adds or removes members by id.
pub fn member_delta(ops: &[PatchOperation]) -> Option<MemberDelta> {
    // id → Some(display) to add, None to remove; the last operation about an id wins.
    let mut changes: Vec<(String, Option<Option<String>>)> = Vec::new();
    let mut set = |id: String, change: Option<Option<String>>| match changes
        .iter_mut()
        .find(|(k, _)| *k == id)
    {
        Some(slot) => slot.1 = change,
        None => changes.push((id, change)),
    };
    for op in ops {
        let path = op.path.as_deref().map(str::trim).filter(|p| !p.is_empty());
        match (OpKind::parse(&op.op)?, path) {
            (OpKind::Add, Some(p)) if is_members(p) => {
                for (id, display) in elements(op.value.as_ref()?)? {
                    set(id, Some(display));
                }
            }
            (OpKind::Add, None) => {
                let obj = op.value.as_ref()?.as_object()?;
                let (key, value) = obj.iter().next().filter(|_| obj.len() == 1)?;
                if !is_members(key) {
                    return None;
                }
                for (id, display) in elements(value)? {
                    set(id, Some(display));
                }
            }
            (OpKind::Remove, Some(p)) if is_members(p) => {
                for (id, _) in elements(op.value.as_ref().filter(|v| !v.is_null())?)? {
                    set(id, None);
                }
            }
            (OpKind::Remove, Some(p)) => set(filtered_member(p)?, None),
            _ => return None,
        }
    }
    let mut delta = MemberDelta::default();
    for (id, change) in changes {
        match change {
            Some(display) => delta.add.push((id, display)),
            None => delta.remove.push(id),
        }
    }
    Some(delta)
}

/// `members`, plain or qualified with the Group schema URN.
fn is_members(path: &str) -> bool {
    let name = match path.len().checked_sub("members".len()) {
        Some(cut) if path.is_char_boundary(cut) => {
            let (prefix, name) = path.split_at(cut);
            let qualified = prefix
                .strip_suffix(':')
                .is_some_and(|urn| urn.eq_ignore_ascii_case(GROUP_SCHEMA));
            if !prefix.is_empty() && !qualified {
                return false;
            }
            name
        }
        _ => return false,
    };
    name.eq_ignore_ascii_case("members")
}

/// `members[value eq "<id>"]` → the id.
fn filtered_member(path: &str) -> Option<String> {
    let pp = parse_path(path).ok()?;
    if pp.sub_attr.is_some() || !plain_members(&pp.attr) {
        return None;
    }
    match pp.value_filter? {
        Filter::Compare {
            path,
            op: CompareOp::Eq,
            value: Value::String(id),
        } if path.schema.is_none()
            && path.sub_attr.is_none()
            && path.attr.eq_ignore_ascii_case("value") =>
        {
            Some(id)
        }
        _ => None,
    }
}

fn plain_members(p: &AttrPath) -> bool {
    p.sub_attr.is_none()
        && p.attr.eq_ignore_ascii_case("members")
        && p.schema
            .as_deref()
            .is_none_or(|s| s.eq_ignore_ascii_case(GROUP_SCHEMA))
}

/// The members listed in an operation's value (an array of member objects, or one):
/// each needs a string `value`; `display`, `type` and `$ref` are allowed (the latter two
/// are derived on reads). Anything else is left to the engine's checks.
fn elements(value: &Value) -> Option<Vec<(String, Option<String>)>> {
    let list: Vec<&Value> = match value {
        Value::Array(a) if !a.is_empty() => a.iter().collect(),
        Value::Object(_) => vec![value],
        _ => return None,
    };
    list.into_iter()
        .map(|m| {
            let m = m.as_object()?;
            let mut id = None;
            let mut display = None;
            for (k, v) in m {
                match k.to_ascii_lowercase().as_str() {
                    "value" => id = Some(v.as_str()?.to_owned()),
                    "display" => display = v.as_str().map(str::to_owned),
                    "type" | "$ref" => {}
                    _ => return None,
                }
            }
            Some((id?, display))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ops(v: Value) -> Vec<PatchOperation> {
        serde_json::from_value(v).expect("operations")
    }

    #[test]
    fn okta_add_and_filtered_remove() {
        let d = member_delta(&ops(json!([
            {"op": "add", "path": "members", "value": [{"value": "a", "display": "Ann"}, {"value": "b"}]},
            {"op": "remove", "path": "members[value eq \"c\"]"}
        ])))
        .expect("membership-only");
        assert_eq!(
            d.add,
            vec![("a".into(), Some("Ann".into())), ("b".into(), None)]
        );
        assert_eq!(d.remove, vec!["c".to_string()]);
    }

    #[test]
    fn entra_remove_with_value_list_and_capitalised_ops() {
        let d = member_delta(&ops(json!([
            {"op": "Add", "path": "members", "value": [{"value": "a"}]},
            {"op": "Remove", "path": "members", "value": [{"value": "b"}, {"value": "c"}]}
        ])))
        .expect("membership-only");
        assert_eq!(d.add.len(), 1);
        assert_eq!(d.remove, vec!["b".to_string(), "c".to_string()]);
    }

    #[test]
    fn later_operations_win_per_member() {
        let d = member_delta(&ops(json!([
            {"op": "add", "path": "members", "value": [{"value": "a"}]},
            {"op": "remove", "path": "members[value eq \"a\"]"},
            {"op": "remove", "path": "members[value eq \"b\"]"},
            {"op": "add", "path": "members", "value": {"value": "b"}}
        ])))
        .expect("membership-only");
        assert_eq!(d.add, vec![("b".into(), None)]);
        assert_eq!(d.remove, vec!["a".to_string()]);
    }

    #[test]
    fn qualified_and_pathless_forms() {
        let urn = format!("{GROUP_SCHEMA}:members");
        let d = member_delta(&ops(json!([
            {"op": "add", "path": urn, "value": [{"value": "a", "$ref": "x", "type": "User"}]},
            {"op": "add", "value": {"members": [{"value": "b"}]}}
        ])))
        .expect("membership-only");
        assert_eq!(d.add.len(), 2);
    }

    #[test]
    fn anything_else_goes_through_the_engine() {
        for v in [
            json!([{"op": "replace", "path": "members", "value": [{"value": "a"}]}]),
            json!([{"op": "remove", "path": "members"}]),
            json!([{"op": "add", "path": "members", "value": []}]),
            json!([{"op": "add", "path": "members", "value": [{"value": 7}]}]),
            json!([{"op": "add", "path": "members", "value": [{"value": "a", "displayName": "x"}]}]),
            json!([{"op": "add", "value": {"members": [{"value": "a"}], "displayName": "x"}}]),
            json!([{"op": "replace", "path": "displayName", "value": "x"}]),
            json!([{"op": "remove", "path": "members[display eq \"x\"]"}]),
            json!([{"op": "remove", "path": "members[value eq \"a\"].display"}]),
            json!([{"op": "remove", "path": "members[value co \"a\"]"}]),
            json!([{"op": "add", "path": "xmembers", "value": [{"value": "a"}]}]),
            json!([{"op": "add", "path": "urn:x:members", "value": [{"value": "a"}]}]),
            json!([{"op": "move", "path": "members", "value": [{"value": "a"}]}]),
        ] {
            assert_eq!(member_delta(&ops(v.clone())), None, "{v}");
        }
    }
}
