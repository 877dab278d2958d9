//! /Groups (RFC 7644 §3.3–§3.6). Members are Users of the same app.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post, put};
use serde_json::{json, Value};

use super::extract::parse_id;
use super::users::{patch_request, Write};
use super::{
    list_reply, not_modified, reply, written, BaseUrl, IfMatch, ListParams, Projection, ScimActor,
    ScimJson, ScimReply,
};
use crate::auth::Actor;
use crate::db::filter::ListQuery;
use crate::db::groups::GroupRecord;
use crate::db::rfc3339;
use crate::http::{AppState, Route};
use crate::scim::list::ListRequest;
use crate::scim::members::member_delta;
use crate::scim::patch;
use crate::scim::resource::{self, etag, Meta};
use crate::scim::schema::GROUP_RESOURCE;

pub(super) fn routes() -> Vec<Route> {
    const GROUPS: &str = "/scim/v2/Groups";
    const GROUP: &str = "/scim/v2/Groups/{id}";
    vec![
        (GROUPS, Method::GET, get(list_groups)),
        (GROUPS, Method::POST, post(create_group)),
        ("/scim/v2/Groups/.search", Method::POST, post(search_groups)),
        (GROUP, Method::GET, get(get_group)),
        (GROUP, Method::PUT, put(replace_group)),
        (GROUP, Method::PATCH, patch(patch_group)),
        (GROUP, Method::DELETE, delete(delete_group)),
    ]
}

pub(super) fn render(base: &str, rec: GroupRecord) -> Value {
    let members = rec.members.map(|ms| {
        Value::Array(
            ms.into_iter()
                .map(|m| {
                    let id = m["value"].as_str().unwrap_or_default().to_owned();
                    let mut member =
                        json!({"value": id, "$ref": format!("{base}/Users/{id}"), "type": "User"});
                    if let Some(d) = m.get("display") {
                        member["display"] = d.clone();
                    }
                    member
                })
                .collect(),
        )
    });
    let meta = Meta {
        resource_type: "Group",
        created: rfc3339(rec.created_at),
        last_modified: rfc3339(rec.updated_at),
        location: format!("{base}/Groups/{}", rec.id),
        version: rec.version,
    };
    resource::render(
        rec.doc,
        &rec.id.to_string(),
        &meta,
        members.map(|m| ("members", m)),
        &GROUP_RESOURCE,
    )
}

/// One group as a response; `rec` is None only after a delete, which never calls this.
fn one(
    status: StatusCode,
    base: &str,
    rec: Option<GroupRecord>,
    with_location: bool,
    p: &Projection,
) -> Response {
    let Some(rec) = rec else {
        return StatusCode::NO_CONTENT.into_response();
    };
    let version = rec.version;
    written(status, render(base, rec), version, with_location, |b| {
        resource::project(b, &p.attributes, &p.excluded)
    })
}

/// Performs a group write: one transaction with the derived tasks of the members whose
/// role it decides, and its audit record. `with_members` false lets a membership PATCH
/// answer without reading the members (the caller excluded them).
pub(super) async fn write_group(
    s: &AppState,
    actor: &Actor,
    w: Write,
    if_match: Option<&[i64]>,
    with_members: bool,
) -> Result<Option<GroupRecord>, ScimReply> {
    Ok(Some(match w {
        Write::Create(body) => {
            s.store
                .create_group(actor, resource::normalize(body, &GROUP_RESOURCE)?)
                .await?
        }
        Write::Replace(id, body) => {
            let doc = resource::normalize(body, &GROUP_RESOURCE)?;
            s.store
                .update_group(actor, id, "group.replace", if_match, |_| Ok(doc))
                .await?
        }
        Write::Patch(id, body) => {
            let req = patch_request(body)?;
            // Group push (members added or removed by id) as row changes: the cost
            // stays flat however large the group is (issue #6).
            if let Some(delta) = member_delta(&req.operations) {
                return Ok(Some(
                    s.store
                        .patch_group_members(actor, id, if_match, &delta, with_members)
                        .await?,
                ));
            }
            s.store
                .update_group(actor, id, "group.patch", if_match, |mut doc| {
                    patch::apply(&mut doc, &req.operations, &GROUP_RESOURCE)?;
                    resource::normalize(doc, &GROUP_RESOURCE)
                })
                .await?
        }
        Write::Delete(id) => {
            s.store.delete_group(actor, id, if_match).await?;
            return Ok(None);
        }
    }))
}

async fn create_group(
    State(s): State<AppState>,
    ScimActor(actor): ScimActor,
    BaseUrl(base): BaseUrl,
    params: Projection,
    ScimJson(body): ScimJson,
) -> Result<Response, ScimReply> {
    let rec = write_group(&s, &actor, Write::Create(body), None, true).await?;
    Ok(one(StatusCode::CREATED, &base, rec, true, &params))
}

async fn get_group(
    State(s): State<AppState>,
    ScimActor(actor): ScimActor,
    BaseUrl(base): BaseUrl,
    Path(id): Path<String>,
    headers: HeaderMap,
    params: Projection,
) -> Result<Response, ScimReply> {
    let id = parse_id("Group", &id)?;
    let rec = s
        .store
        .group(&actor.app_id, id, !params.excludes("members"))
        .await?;
    let tag = etag(rec.version);
    if let Some(res) = not_modified(&headers, &tag) {
        return Ok(res);
    }
    let body = resource::project(render(&base, rec), &params.attributes, &params.excluded);
    Ok(reply(StatusCode::OK, &body, None, Some(&tag)))
}

/// The list behind GET /Groups, POST /Groups/.search and the root search.
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
    let (total, recs, next) = s
        .store
        .list_groups(&actor.app_id, q, !req.excludes("members"))
        .await?;
    let resources = recs
        .into_iter()
        .map(|r| resource::project(render(base, r), &req.attributes, &req.excluded))
        .collect();
    Ok((total, resources, next))
}

async fn list_groups(
    State(s): State<AppState>,
    ScimActor(actor): ScimActor,
    BaseUrl(base): BaseUrl,
    ListParams(req): ListParams,
) -> Result<Response, ScimReply> {
    let (total, resources, next) = list(&s, &actor, &base, &req).await?;
    Ok(list_reply(&req.paging, total, next, resources))
}

async fn search_groups(
    State(s): State<AppState>,
    ScimActor(actor): ScimActor,
    BaseUrl(base): BaseUrl,
    ScimJson(body): ScimJson,
) -> Result<Response, ScimReply> {
    let req = ListRequest::from_search_body(&body)?;
    let (total, resources, next) = list(&s, &actor, &base, &req).await?;
    Ok(list_reply(&req.paging, total, next, resources))
}

async fn replace_group(
    State(s): State<AppState>,
    ScimActor(actor): ScimActor,
    BaseUrl(base): BaseUrl,
    Path(id): Path<String>,
    if_match: IfMatch,
    params: Projection,
    ScimJson(body): ScimJson,
) -> Result<Response, ScimReply> {
    let w = Write::Replace(parse_id("Group", &id)?, body);
    let rec = write_group(&s, &actor, w, if_match.0.as_deref(), true).await?;
    Ok(one(StatusCode::OK, &base, rec, false, &params))
}

async fn patch_group(
    State(s): State<AppState>,
    ScimActor(actor): ScimActor,
    BaseUrl(base): BaseUrl,
    Path(id): Path<String>,
    if_match: IfMatch,
    params: Projection,
    ScimJson(body): ScimJson,
) -> Result<Response, ScimReply> {
    let w = Write::Patch(parse_id("Group", &id)?, body);
    let with_members = !params.excludes("members");
    let rec = write_group(&s, &actor, w, if_match.0.as_deref(), with_members).await?;
    Ok(one(StatusCode::OK, &base, rec, false, &params))
}

async fn delete_group(
    State(s): State<AppState>,
    ScimActor(actor): ScimActor,
    Path(id): Path<String>,
    if_match: IfMatch,
) -> Result<StatusCode, ScimReply> {
    write_group(
        &s,
        &actor,
        Write::Delete(parse_id("Group", &id)?),
        if_match.0.as_deref(),
        false,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
