//! POST /Bulk (RFC 7644 §3.7): many writes in one request. Each operation is performed
//! exactly like the single call (its own transaction, derived task and audit record);
//! `bulkId:` references are resolved across operations in whatever order makes them
//! resolvable (§3.7.2), and `failOnErrors` stops processing after that many errors.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::routing::post;
use serde_json::{json, Map, Value};

use super::extract::etag_versions;
use super::groups::Groups;
use super::resources::{write_rendered, Rendered, Write};
use super::users::Users;
use super::{reply, BaseUrl, ScimActor, ScimJson, ScimReply};
use crate::http::{AppState, Route};
use crate::scim::resource::etag;
use crate::scim::{ScimError, ScimType, MAX_BULK_OPERATIONS};

/// `schemas` of a bulk request and response.
const BULK_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
const BULK_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:BulkResponse";

pub(super) fn routes() -> Vec<Route> {
    vec![("/scim/v2/Bulk", Method::POST, post(bulk))]
}

/// One operation of the request, as sent.
struct Op {
    method: String,
    bulk_id: Option<String>,
    path: String,
    data: Option<Value>,
    version: Option<String>,
}

fn parse(body: &Value) -> Result<(Vec<Op>, Option<usize>), ScimError> {
    let syntax = |d: &str| ScimError::bad_request(ScimType::InvalidSyntax, d.to_string());
    let obj = body
        .as_object()
        .ok_or_else(|| syntax("a BulkRequest must be a JSON object"))?;
    let get = |k: &str| {
        obj.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v)
    };
    let schemas_ok = get("schemas").and_then(Value::as_array).is_some_and(|s| {
        s.iter().any(|u| {
            u.as_str()
                .is_some_and(|u| u.eq_ignore_ascii_case(BULK_REQUEST))
        })
    });
    if !schemas_ok {
        return Err(syntax(&format!("schemas must contain {BULK_REQUEST}")));
    }
    let fail_on_errors = match get("failOnErrors") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_u64().filter(|n| *n >= 1).ok_or_else(|| {
            ScimError::bad_request(
                ScimType::InvalidValue,
                "failOnErrors must be a positive integer",
            )
        })? as usize),
    };
    let ops = get("Operations")
        .and_then(Value::as_array)
        .ok_or_else(|| syntax("Operations must be an array"))?;
    if ops.len() > MAX_BULK_OPERATIONS {
        return Err(ScimError {
            status: 413,
            scim_type: None,
            detail: format!(
                "{} operations exceed maxOperations ({MAX_BULK_OPERATIONS})",
                ops.len()
            ),
        });
    }
    let mut out = Vec::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        let field = |k: &str| {
            op.as_object().and_then(|o| {
                o.iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(k))
                    .map(|(_, v)| v)
            })
        };
        let text = |k: &str| field(k).and_then(Value::as_str).map(str::to_owned);
        let method =
            text("method").ok_or_else(|| syntax(&format!("Operations[{i}].method is required")))?;
        let path =
            text("path").ok_or_else(|| syntax(&format!("Operations[{i}].path is required")))?;
        let bulk_id = text("bulkId");
        if method.eq_ignore_ascii_case("POST") && bulk_id.is_none() {
            return Err(syntax(&format!(
                "Operations[{i}].bulkId is required for POST (RFC 7644 §3.7)"
            )));
        }
        out.push(Op {
            method: method.to_ascii_uppercase(),
            bulk_id,
            path,
            data: field("data").cloned(),
            version: text("version"),
        });
    }
    let mut ids: Vec<&str> = out.iter().filter_map(|o| o.bulk_id.as_deref()).collect();
    ids.sort_unstable();
    if ids.windows(2).any(|w| w[0] == w[1]) {
        return Err(ScimError::bad_request(
            ScimType::InvalidValue,
            "bulkId values must be unique within a request",
        ));
    }
    Ok((out, fail_on_errors))
}

/// The `bulkId:` references in a value (strings exactly `bulkId:<id>`).
fn references(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => {
            if let Some(id) = s.strip_prefix("bulkId:") {
                out.push(id.to_owned());
            }
        }
        Value::Array(a) => a.iter().for_each(|x| references(x, out)),
        Value::Object(m) => m.values().for_each(|x| references(x, out)),
        _ => {}
    }
}

fn substitute(v: &mut Value, created: &HashMap<String, String>) {
    match v {
        Value::String(s) => {
            if let Some(id) = s.strip_prefix("bulkId:").and_then(|b| created.get(b)) {
                *s = id.clone();
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| substitute(x, created)),
        Value::Object(m) => m.values_mut().for_each(|x| substitute(x, created)),
        _ => {}
    }
}

fn op_result(
    op: &Op,
    status: u16,
    location: Option<String>,
    version: Option<String>,
    error: Option<&ScimError>,
) -> Value {
    let mut m = Map::new();
    m.insert("method".into(), json!(op.method));
    if let Some(b) = &op.bulk_id {
        m.insert("bulkId".into(), json!(b));
    }
    if let Some(l) = location {
        m.insert("location".into(), json!(l));
    }
    if let Some(v) = version {
        m.insert("version".into(), json!(v));
    }
    m.insert("status".into(), json!(status.to_string()));
    if let Some(e) = error {
        m.insert("response".into(), e.body());
    }
    Value::Object(m)
}

/// Runs one operation whose references are resolved.
async fn run(
    s: &AppState,
    actor: &crate::auth::Actor,
    base: &str,
    op: &Op,
    path: &str,
    data: Option<Value>,
) -> Result<(u16, Option<String>, Option<String>, Option<String>), ScimError> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (kind, id) = match segments.as_slice() {
        [kind] => (*kind, None),
        [kind, id] => (*kind, Some(*id)),
        _ => {
            return Err(ScimError::bad_request(
                ScimType::InvalidPath,
                format!("{path} is not /Users, /Groups or one of their resources"),
            ))
        }
    };
    let parse_id = |what: &str| -> Result<uuid::Uuid, ScimError> {
        let id = id.ok_or_else(|| {
            ScimError::bad_request(
                ScimType::InvalidPath,
                format!("{} needs a resource id in the path", op.method),
            )
        })?;
        uuid::Uuid::parse_str(id)
            .map_err(|_| ScimError::not_found(format!("{what} {id} not found")))
    };
    let body = || {
        data.clone().ok_or_else(|| {
            ScimError::bad_request(ScimType::InvalidSyntax, format!("{} needs data", op.method))
        })
    };
    let what = match kind {
        "Users" => "User",
        "Groups" => "Group",
        other => {
            return Err(ScimError::bad_request(
                ScimType::InvalidPath,
                format!("unknown resource type /{other}"),
            ))
        }
    };
    let write = match (op.method.as_str(), id) {
        ("POST", None) => Write::Create(body()?),
        ("PUT", Some(_)) => Write::Replace(parse_id(what)?, body()?),
        ("PATCH", Some(_)) => Write::Patch(parse_id(what)?, body()?),
        ("DELETE", Some(_)) => Write::Delete(parse_id(what)?),
        (m, _) => {
            return Err(ScimError::bad_request(ScimType::InvalidSyntax, format!("{m} {path} is not a bulk operation (POST to a type; PUT, PATCH, DELETE to a resource)")))
        }
    };
    let created = matches!(write, Write::Create(_));
    let if_match = op.version.as_deref().and_then(etag_versions);
    let rendered = if what == "User" {
        write_rendered::<Users>(s, actor, base, write, if_match.as_deref()).await
    } else {
        write_rendered::<Groups>(s, actor, base, write, if_match.as_deref()).await
    }
    .map_err(ScimReply::into_error)?;
    Ok(match rendered {
        Some(Rendered { id, version, body }) => (
            if created { 201 } else { 200 },
            body["meta"]["location"].as_str().map(str::to_owned),
            Some(etag(version)),
            Some(id.to_string()),
        ),
        None => (204, None, None, None),
    })
}

async fn bulk(
    State(s): State<AppState>,
    ScimActor(actor): ScimActor,
    BaseUrl(base): BaseUrl,
    ScimJson(body): ScimJson,
) -> Result<Response, ScimReply> {
    let (ops, fail_on_errors) = parse(&body)?;
    let mut results: Vec<Option<Value>> = vec![None; ops.len()];
    let mut created: HashMap<String, String> = HashMap::new();
    let mut errors = 0usize;
    let mut pending: Vec<usize> = (0..ops.len()).collect();
    // Passes: each runs the operations whose references are resolvable now. An
    // operation whose references can never resolve (unknown or circular) fails.
    'passes: while !pending.is_empty() {
        let mut progressed = false;
        let mut still = Vec::new();
        for &i in &pending {
            let op = &ops[i];
            let mut refs = Vec::new();
            for segment in op.path.split('/') {
                references(&Value::String(segment.to_owned()), &mut refs);
            }
            if let Some(d) = &op.data {
                references(d, &mut refs);
            }
            if refs.iter().any(|r| !created.contains_key(r)) {
                still.push(i);
                continue;
            }
            progressed = true;
            let path: Vec<String> = op
                .path
                .split('/')
                .map(|seg| {
                    let mut v = Value::String(seg.to_owned());
                    substitute(&mut v, &created);
                    v.as_str().unwrap_or_default().to_owned()
                })
                .collect();
            let path = path.join("/");
            let mut data = op.data.clone();
            if let Some(d) = &mut data {
                substitute(d, &created);
            }
            results[i] = Some(match run(&s, &actor, &base, op, &path, data).await {
                Ok((status, location, version, id)) => {
                    if let (Some(b), Some(id)) = (&op.bulk_id, id) {
                        created.insert(b.clone(), id);
                    }
                    op_result(op, status, location, version, None)
                }
                Err(e) => {
                    errors += 1;
                    op_result(op, e.status, None, None, Some(&e))
                }
            });
            if fail_on_errors.is_some_and(|limit| errors >= limit) {
                break 'passes;
            }
        }
        if !progressed {
            for &i in &still {
                let e = ScimError {
                    status: 409,
                    scim_type: Some(ScimType::InvalidValue),
                    detail: "a bulkId it references is not created by any operation of this request (or the references are circular)".into(),
                };
                results[i] = Some(op_result(&ops[i], 409, None, None, Some(&e)));
            }
            break;
        }
        pending = still;
    }
    let operations: Vec<Value> = results.into_iter().flatten().collect();
    Ok(reply(
        StatusCode::OK,
        &json!({"schemas": [BULK_RESPONSE], "Operations": operations}),
        None,
        None,
    ))
}
