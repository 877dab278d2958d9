//! /Users (RFC 7644 §3.3–§3.6) and /Users/.search (§3.4.3).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post, put};
use serde_json::{json, Value};
use uuid::Uuid;

use super::extract::{parse_id, IfMatch};
use super::{
    list_reply, not_modified, reply, written, BaseUrl, ListParams, Projection, ScimActor, ScimJson,
    ScimReply,
};
use crate::auth::Actor;
use crate::db::filter::ListQuery;
use crate::db::rfc3339;
use crate::db::users::UserRecord;
use crate::http::{AppState, Route};
use crate::scim::list::ListRequest;
use crate::scim::patch::{self, PatchRequest};
use crate::scim::resource::{self, etag, Meta};
use crate::scim::schema::{PROVISIONING_SCHEMA, USER_RESOURCE};
use crate::scim::{ScimError, ScimType};

pub(super) fn routes() -> Vec<Route> {
    const USERS: &str = "/scim/v2/Users";
    const USER: &str = "/scim/v2/Users/{id}";
    vec![
        (USERS, Method::GET, get(list_users)),
        (USERS, Method::POST, post(create_user)),
        ("/scim/v2/Users/.search", Method::POST, post(search_users)),
        (USER, Method::GET, get(get_user)),
        (USER, Method::PUT, put(replace_user)),
        (USER, Method::PATCH, patch(patch_user)),
        (USER, Method::DELETE, delete(delete_user)),
    ]
}

/// The resource a client reads.
pub(super) fn render(base: &str, rec: UserRecord) -> Value {
    let location = format!("{base}/Users/{}", rec.id);
    let groups: Vec<Value> = rec
        .groups
        .into_iter()
        .map(|g| {
            let id = g["value"].as_str().unwrap_or_default().to_owned();
            json!({"value": id, "display": g["display"], "$ref": format!("{base}/Groups/{id}"), "type": "direct"})
        })
        .collect();
    let mut computed = vec![(PROVISIONING_SCHEMA, rec.provisioning)];
    if !groups.is_empty() {
        computed.push(("groups", Value::Array(groups)));
    }
    let meta = Meta {
        resource_type: "User",
        created: rfc3339(rec.created_at),
        last_modified: rfc3339(rec.updated_at),
        location,
        version: rec.version,
    };
    resource::render(
        rec.doc,
        &rec.id.to_string(),
        &meta,
        computed,
        &USER_RESOURCE,
    )
}

/// Applies `attributes`/`excludedAttributes`; the provisioning extension is
/// `returned: request`, so it stays only when the caller names it.
fn project(body: Value, attributes: &[String], excluded: &[String]) -> Value {
    let mut body = resource::project(body, attributes, excluded);
    let asked = attributes.iter().any(|a| {
        // `get`, not slicing: client text may have a multi-byte character at the cut.
        a.get(..PROVISIONING_SCHEMA.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(PROVISIONING_SCHEMA))
    });
    if !asked {
        if let Value::Object(m) = &mut body {
            m.remove(PROVISIONING_SCHEMA);
            if let Some(Value::Array(schemas)) = m.get_mut("schemas") {
                schemas.retain(|s| s != PROVISIONING_SCHEMA);
            }
        }
    }
    body
}

/// One user as a response; `rec` is None only after a delete, which never calls this.
fn one(
    status: StatusCode,
    base: &str,
    rec: Option<UserRecord>,
    with_location: bool,
    p: &Projection,
) -> Response {
    let Some(rec) = rec else {
        return StatusCode::NO_CONTENT.into_response();
    };
    let version = rec.version;
    written(status, render(base, rec), version, with_location, |b| {
        project(b, &p.attributes, &p.excluded)
    })
}

/// A write to one resource, as a single call or one operation of a bulk request.
#[derive(Debug)]
pub(super) enum Write {
    /// POST (RFC 7644 §3.3).
    Create(Value),
    /// PUT (§3.5.1).
    Replace(Uuid, Value),
    /// PATCH (§3.5.2).
    Patch(Uuid, Value),
    /// DELETE (§3.6).
    Delete(Uuid),
}

/// Performs a user write: one transaction with its derived task and audit record.
pub(super) async fn write_user(
    s: &AppState,
    actor: &Actor,
    w: Write,
    if_match: Option<&[i64]>,
) -> Result<Option<UserRecord>, ScimReply> {
    Ok(Some(match w {
        Write::Create(body) => {
            s.store
                .create_user(actor, resource::normalize(body, &USER_RESOURCE)?)
                .await?
        }
        Write::Replace(id, body) => {
            let doc = resource::normalize(body, &USER_RESOURCE)?;
            s.store
                .update_user(actor, id, "user.replace", if_match, |_| Ok(doc))
                .await?
        }
        Write::Patch(id, body) => {
            let req = patch_request(body)?;
            s.store
                .update_user(actor, id, "user.patch", if_match, |mut doc| {
                    patch::apply(&mut doc, &req.operations, &USER_RESOURCE)?;
                    resource::normalize(doc, &USER_RESOURCE)
                })
                .await?
        }
        Write::Delete(id) => {
            s.store.delete_user(actor, id, if_match).await?;
            return Ok(None);
        }
    }))
}

async fn create_user(
    State(s): State<AppState>,
    ScimActor(actor): ScimActor,
    BaseUrl(base): BaseUrl,
    params: Projection,
    ScimJson(body): ScimJson,
) -> Result<Response, ScimReply> {
    let rec = write_user(&s, &actor, Write::Create(body), None).await?;
    Ok(one(StatusCode::CREATED, &base, rec, true, &params))
}

async fn get_user(
    State(s): State<AppState>,
    ScimActor(actor): ScimActor,
    BaseUrl(base): BaseUrl,
    Path(id): Path<String>,
    headers: HeaderMap,
    params: Projection,
) -> Result<Response, ScimReply> {
    let rec = s.store.user(&actor.app_id, parse_id("User", &id)?).await?;
    let tag = etag(rec.version);
    if let Some(res) = not_modified(&headers, &tag) {
        return Ok(res);
    }
    let body = project(render(&base, rec), &params.attributes, &params.excluded);
    Ok(reply(StatusCode::OK, &body, None, Some(&tag)))
}

/// The list behind GET /Users, POST /Users/.search and the root search.
pub(super) async fn list(
    s: &AppState,
    actor: &Actor,
    base: &str,
    req: &ListRequest,
) -> Result<(i64, Vec<Value>, Option<i64>), ScimReply> {
    let q = ListQuery {
        filter: req.filter.as_ref(),
        sort: req.sort.as_ref(),
        paging: &req.paging,
    };
    let (total, recs, next) = s.store.list_users(&actor.app_id, q).await?;
    let resources = recs
        .into_iter()
        .map(|r| project(render(base, r), &req.attributes, &req.excluded))
        .collect();
    Ok((total, resources, next))
}

async fn list_users(
    State(s): State<AppState>,
    ScimActor(actor): ScimActor,
    BaseUrl(base): BaseUrl,
    ListParams(req): ListParams,
) -> Result<Response, ScimReply> {
    let (total, resources, next) = list(&s, &actor, &base, &req).await?;
    Ok(list_reply(&req.paging, total, next, resources))
}

async fn search_users(
    State(s): State<AppState>,
    ScimActor(actor): ScimActor,
    BaseUrl(base): BaseUrl,
    ScimJson(body): ScimJson,
) -> Result<Response, ScimReply> {
    let req = ListRequest::from_search_body(&body)?;
    let (total, resources, next) = list(&s, &actor, &base, &req).await?;
    Ok(list_reply(&req.paging, total, next, resources))
}

async fn replace_user(
    State(s): State<AppState>,
    ScimActor(actor): ScimActor,
    BaseUrl(base): BaseUrl,
    Path(id): Path<String>,
    if_match: IfMatch,
    params: Projection,
    ScimJson(body): ScimJson,
) -> Result<Response, ScimReply> {
    let w = Write::Replace(parse_id("User", &id)?, body);
    let rec = write_user(&s, &actor, w, if_match.0.as_deref()).await?;
    Ok(one(StatusCode::OK, &base, rec, false, &params))
}

/// Parses and checks a PATCH body (RFC 7644 §3.5.2).
pub(super) fn patch_request(body: Value) -> Result<PatchRequest, ScimError> {
    let req: PatchRequest = serde_json::from_value(body).map_err(|e| {
        ScimError::bad_request(
            ScimType::InvalidSyntax,
            format!("not a PatchOp message: {e}"),
        )
    })?;
    patch::validate_request(&req)?;
    Ok(req)
}

async fn patch_user(
    State(s): State<AppState>,
    ScimActor(actor): ScimActor,
    BaseUrl(base): BaseUrl,
    Path(id): Path<String>,
    if_match: IfMatch,
    params: Projection,
    ScimJson(body): ScimJson,
) -> Result<Response, ScimReply> {
    let w = Write::Patch(parse_id("User", &id)?, body);
    let rec = write_user(&s, &actor, w, if_match.0.as_deref()).await?;
    // RFC 7644 §3.5.2: 200 with the resource (or 204); we return the resource so the
    // IdP sees the result without a second GET.
    Ok(one(StatusCode::OK, &base, rec, false, &params))
}

async fn delete_user(
    State(s): State<AppState>,
    ScimActor(actor): ScimActor,
    Path(id): Path<String>,
    if_match: IfMatch,
) -> Result<StatusCode, ScimReply> {
    write_user(
        &s,
        &actor,
        Write::Delete(parse_id("User", &id)?),
        if_match.0.as_deref(),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
