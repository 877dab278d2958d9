//! /Users (RFC 7644 §3.3–§3.6).

use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::routing::{delete, get, patch, post, put};
use serde_json::{json, Value};

use super::extract::parse_id;
use super::{reply, BaseUrl, ListParams, ScimActor, ScimJson, ScimReply, BASE};
use crate::db::rfc3339;
use crate::db::users::UserRecord;
use crate::http::{AppState, Route};
use crate::scim::list::list_response;
use crate::scim::patch::{self, PatchRequest};
use crate::scim::resource::{self, etag, Meta};
use crate::scim::schema::USER_RESOURCE;
use crate::scim::{ScimError, ScimType};

pub(super) fn routes() -> Vec<Route> {
    const USERS: &str = "/scim/v2/Users";
    const USER: &str = "/scim/v2/Users/{id}";
    debug_assert!(USERS.starts_with(BASE));
    vec![
        (USERS, Method::GET, get(list_users)),
        (USERS, Method::POST, post(create_user)),
        (USER, Method::GET, get(get_user)),
        (USER, Method::PUT, put(replace_user)),
        (USER, Method::PATCH, patch(patch_user)),
        (USER, Method::DELETE, delete(delete_user)),
    ]
}

/// The resource a client reads.
fn render(base: &str, rec: UserRecord) -> Value {
    let location = format!("{base}/Users/{}", rec.id);
    let groups: Vec<Value> = rec
        .groups
        .into_iter()
        .map(|g| {
            let id = g["value"].as_str().unwrap_or_default().to_owned();
            json!({"value": id, "display": g["display"], "$ref": format!("{base}/Groups/{id}"), "type": "direct"})
        })
        .collect();
    let computed = (!groups.is_empty()).then_some(("groups", Value::Array(groups)));
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

fn one(status: StatusCode, base: &str, rec: UserRecord, with_location: bool) -> Response {
    let tag = etag(rec.version);
    let body = render(base, rec);
    let location = with_location.then(|| {
        body["meta"]["location"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    });
    reply(status, &body, location.as_deref(), Some(&tag))
}

async fn create_user(
    State(s): State<AppState>,
    ScimActor(actor): ScimActor,
    BaseUrl(base): BaseUrl,
    ScimJson(body): ScimJson,
) -> Result<Response, ScimReply> {
    let doc = resource::normalize(body, &USER_RESOURCE)?;
    let rec = s.store.create_user(&actor, doc).await?;
    Ok(one(StatusCode::CREATED, &base, rec, true))
}

async fn get_user(
    State(s): State<AppState>,
    ScimActor(actor): ScimActor,
    BaseUrl(base): BaseUrl,
    Path(id): Path<String>,
    params: ListParams,
) -> Result<Response, ScimReply> {
    let rec = s.store.user(&actor.app_id, parse_id("User", &id)?).await?;
    let tag = etag(rec.version);
    let body = resource::project(render(&base, rec), &params.attributes, &params.excluded);
    Ok(reply(StatusCode::OK, &body, None, Some(&tag)))
}

async fn list_users(
    State(s): State<AppState>,
    ScimActor(actor): ScimActor,
    BaseUrl(base): BaseUrl,
    params: ListParams,
) -> Result<Response, ScimReply> {
    let (total, recs) = s
        .store
        .list_users(&actor.app_id, params.filter.as_ref(), params.page)
        .await?;
    let resources = recs
        .into_iter()
        .map(|r| resource::project(render(&base, r), &params.attributes, &params.excluded))
        .collect();
    Ok(reply(
        StatusCode::OK,
        &list_response(total, params.page, resources),
        None,
        None,
    ))
}

async fn replace_user(
    State(s): State<AppState>,
    ScimActor(actor): ScimActor,
    BaseUrl(base): BaseUrl,
    Path(id): Path<String>,
    ScimJson(body): ScimJson,
) -> Result<Response, ScimReply> {
    let id = parse_id("User", &id)?;
    let doc = resource::normalize(body, &USER_RESOURCE)?;
    let rec = s.store.replace_user(&actor, id, doc).await?;
    Ok(one(StatusCode::OK, &base, rec, false))
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
    ScimJson(body): ScimJson,
) -> Result<Response, ScimReply> {
    let id = parse_id("User", &id)?;
    let req = patch_request(body)?;
    let rec = s
        .store
        .update_user(&actor, id, "user.patch", |mut doc| {
            patch::apply(&mut doc, &req.operations, &USER_RESOURCE)?;
            resource::normalize(doc, &USER_RESOURCE)
        })
        .await?;
    // RFC 7644 §3.5.2: 200 with the resource (or 204); we return the resource so the
    // IdP sees the result without a second GET.
    Ok(one(StatusCode::OK, &base, rec, false))
}

async fn delete_user(
    State(s): State<AppState>,
    ScimActor(actor): ScimActor,
    Path(id): Path<String>,
) -> Result<StatusCode, ScimReply> {
    s.store.delete_user(&actor, parse_id("User", &id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}
