//! The shape /Users and /Groups share (RFC 7644 §3.3–§3.6, §3.4.3): the seven handlers
//! (list, create, search, get, replace, patch, delete) are written once here, generic
//! over [`Resource`], which says what differs between the two resource types: the
//! store calls behind each write and read, how a record renders, and how a projection
//! applies to it. `users.rs` and `groups.rs` implement it; bulk and root search use it.

use std::future::Future;

use axum::extract::{Path, State};
use axum::http::Method;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post, put};
use serde_json::Value;
use uuid::Uuid;

use super::extract::{parse_id, IfMatch};
use super::work::document_work;
use super::{
    list_reply, not_modified, reply, written, BaseUrl, ListParams, Projection, ScimActor, ScimJson,
    ScimReply,
};
use crate::auth::Actor;
use crate::http::{AppState, Route};
use crate::scim::list::ListRequest;
use crate::scim::patch::{self, PatchRequest};
use crate::scim::resource::etag;
use crate::scim::{ScimError, ScimType};

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

/// A page of a list: the total matches, the resources rendered and projected, and the
/// cursor of the next page (cursor paging only).
pub(super) struct Listed {
    /// `totalResults`.
    pub total: i64,
    /// The page.
    pub resources: Vec<Value>,
    /// Where the next page starts.
    pub next: Option<i64>,
}

/// A written resource rendered (not projected), with what its response headers need.
pub(super) struct Rendered {
    /// Its id.
    pub id: Uuid,
    /// Its version (the `ETag`).
    pub version: i64,
    /// The resource as RFC 7643 shows it.
    pub body: Value,
}

/// A page of records as the store reads it: total matches, records, next cursor.
pub(super) type RecordPage<T> = (i64, Vec<T>, Option<i64>);

/// What differs between the SCIM resource types; the handlers are generic over it.
pub(super) trait Resource: Send + Sync + 'static {
    /// The resource type (`User`), in messages about malformed ids.
    const NAME: &'static str;
    /// The collection endpoint (`/scim/v2/Users`).
    const ENDPOINT: &'static str;
    /// One resource (`/scim/v2/Users/{id}`).
    const ONE: &'static str;
    /// The search endpoint (`/scim/v2/Users/.search`).
    const SEARCH: &'static str;
    /// An attribute costly to read that a request may leave out (`excludedAttributes`),
    /// so the store skips reading it: a group's members.
    const COSTLY: Option<&'static str>;

    /// The stored record.
    type Record: Send + 'static;

    /// The record's id and version.
    fn identity(rec: &Self::Record) -> (Uuid, i64);

    /// The record's size in JSON values, as [`document_work`] weighs it.
    fn size(rec: &Self::Record) -> usize;

    /// The resource a client reads (before projection).
    fn render(base: &str, rec: Self::Record) -> Value;

    /// Applies `attributes`/`excludedAttributes` (RFC 7644 §3.4.2.5).
    fn project(body: Value, attributes: &[String], excluded: &[String]) -> Value;

    /// Reads one resource of the caller's app; `full` false skips [`Resource::COSTLY`].
    fn read(
        s: &AppState,
        actor: &Actor,
        id: Uuid,
        full: bool,
    ) -> impl Future<Output = Result<Self::Record, ScimReply>> + Send;

    /// Performs a write: one transaction with its derived tasks and audit record. None
    /// after a delete. `full` false lets the answer skip [`Resource::COSTLY`].
    fn write(
        s: &AppState,
        actor: &Actor,
        w: Write,
        if_match: Option<&[i64]>,
        full: bool,
    ) -> impl Future<Output = Result<Option<Self::Record>, ScimReply>> + Send;

    /// One page of the list: total, records, next cursor.
    fn list_records(
        s: &AppState,
        actor: &Actor,
        req: &ListRequest,
        full: bool,
    ) -> impl Future<Output = Result<RecordPage<Self::Record>, ScimReply>> + Send;
}

/// The routes of a resource type.
pub(super) fn routes<R: Resource>() -> Vec<Route> {
    vec![
        (R::ENDPOINT, Method::GET, get(list::<R>)),
        (R::ENDPOINT, Method::POST, post(create::<R>)),
        (R::SEARCH, Method::POST, post(search::<R>)),
        (R::ONE, Method::GET, get(read_one::<R>)),
        (R::ONE, Method::PUT, put(replace::<R>)),
        (R::ONE, Method::PATCH, patch(patch_one::<R>)),
        (R::ONE, Method::DELETE, delete(delete_one::<R>)),
    ]
}

/// Whether a request that leaves out `excluded` attributes still needs the costly one.
fn full<R: Resource>(excludes: impl Fn(&str) -> bool) -> bool {
    R::COSTLY.is_none_or(|a| !excludes(a))
}

/// Performs a write and renders its result (bulk operations answer with this).
pub(super) async fn write_rendered<R: Resource>(
    s: &AppState,
    actor: &Actor,
    base: &str,
    w: Write,
    if_match: Option<&[i64]>,
) -> Result<Option<Rendered>, ScimReply> {
    let Some(rec) = R::write(s, actor, w, if_match, true).await? else {
        return Ok(None);
    };
    let base = base.to_owned();
    let (id, version) = R::identity(&rec);
    let body = document_work(R::size(&rec), move || Ok(R::render(&base, rec))).await?;
    Ok(Some(Rendered { id, version, body }))
}

/// The list behind GET, POST .search and the root search.
pub(super) async fn list_page<R: Resource>(
    s: &AppState,
    actor: &Actor,
    base: &str,
    req: &ListRequest,
) -> Result<Listed, ScimReply> {
    let (total, recs, next) =
        R::list_records(s, actor, req, full::<R>(|a| req.excludes(a))).await?;
    let (base, attributes, excluded) = (
        base.to_owned(),
        req.attributes.clone(),
        req.excluded.clone(),
    );
    // A page of 500 resources (or of large groups) is rendered off the async workers.
    let size = recs.iter().map(R::size).sum();
    let resources = document_work(size, move || {
        Ok(recs
            .into_iter()
            .map(|r| R::project(R::render(&base, r), &attributes, &excluded))
            .collect())
    })
    .await?;
    Ok(Listed {
        total,
        resources,
        next,
    })
}

/// One resource as a write's response, rendered off the async workers when large (a
/// group can have tens of thousands of members); `rec` is None only after a delete, which never
/// calls this.
async fn one<R: Resource>(
    status: StatusCode,
    base: String,
    rec: Option<R::Record>,
    with_location: bool,
    p: Projection,
) -> Result<Response, ScimReply> {
    let Some(rec) = rec else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let (_, version) = R::identity(&rec);
    Ok(document_work(R::size(&rec), move || {
        Ok(written(
            status,
            R::render(&base, rec),
            version,
            with_location,
            |b| R::project(b, &p.attributes, &p.excluded),
        ))
    })
    .await?)
}

/// Parses and checks a PATCH body (RFC 7644 §3.5.2), at most `max_operations` of them.
///
/// Over the limit is 413 without `scimType`: RFC 7644 §3.12 defines 413 for "one or more
/// of the limits for this operation were exceeded" and §3.7.3 answers a bulk request
/// over `maxOperations` the same way; `tooMany` is about filter results (§3.12 Table 9).
pub(super) fn patch_request(body: Value, max_operations: usize) -> Result<PatchRequest, ScimError> {
    let req: PatchRequest = serde_json::from_value(body).map_err(|e| {
        ScimError::bad_request(
            ScimType::InvalidSyntax,
            format!("not a PatchOp message: {e}"),
        )
    })?;
    if req.operations.len() > max_operations {
        return Err(ScimError {
            status: 413,
            scim_type: None,
            detail: format!(
                "{} operations exceed this server's limit of {max_operations} per PATCH (--patch-max-operations); split the PATCH",
                req.operations.len()
            ),
        });
    }
    patch::validate_request(&req)?;
    Ok(req)
}

async fn list<R: Resource>(
    State(s): State<AppState>,
    ScimActor(actor): ScimActor,
    BaseUrl(base): BaseUrl,
    ListParams(req): ListParams,
) -> Result<Response, ScimReply> {
    let page = list_page::<R>(&s, &actor, &base, &req).await?;
    Ok(list_reply(
        &req.paging,
        page.total,
        page.next,
        page.resources,
    ))
}

async fn search<R: Resource>(
    State(s): State<AppState>,
    ScimActor(actor): ScimActor,
    BaseUrl(base): BaseUrl,
    ScimJson(body): ScimJson,
) -> Result<Response, ScimReply> {
    let req = ListRequest::from_search_body(&body)?;
    let page = list_page::<R>(&s, &actor, &base, &req).await?;
    Ok(list_reply(
        &req.paging,
        page.total,
        page.next,
        page.resources,
    ))
}

async fn create<R: Resource>(
    State(s): State<AppState>,
    ScimActor(actor): ScimActor,
    BaseUrl(base): BaseUrl,
    params: Projection,
    ScimJson(body): ScimJson,
) -> Result<Response, ScimReply> {
    let rec = R::write(&s, &actor, Write::Create(body), None, true).await?;
    one::<R>(StatusCode::CREATED, base, rec, true, params).await
}

async fn read_one<R: Resource>(
    State(s): State<AppState>,
    ScimActor(actor): ScimActor,
    BaseUrl(base): BaseUrl,
    Path(id): Path<String>,
    headers: HeaderMap,
    params: Projection,
) -> Result<Response, ScimReply> {
    let id = parse_id(R::NAME, &id)?;
    let rec = R::read(&s, &actor, id, full::<R>(|a| params.excludes(a))).await?;
    let (_, version) = R::identity(&rec);
    let tag = etag(version);
    if let Some(res) = not_modified(&headers, &tag) {
        return Ok(res);
    }
    Ok(document_work(R::size(&rec), move || {
        let body = R::project(R::render(&base, rec), &params.attributes, &params.excluded);
        Ok(reply(StatusCode::OK, &body, None, Some(&tag)))
    })
    .await?)
}

async fn replace<R: Resource>(
    State(s): State<AppState>,
    ScimActor(actor): ScimActor,
    BaseUrl(base): BaseUrl,
    Path(id): Path<String>,
    if_match: IfMatch,
    params: Projection,
    ScimJson(body): ScimJson,
) -> Result<Response, ScimReply> {
    let w = Write::Replace(parse_id(R::NAME, &id)?, body);
    let rec = R::write(&s, &actor, w, if_match.0.as_deref(), true).await?;
    one::<R>(StatusCode::OK, base, rec, false, params).await
}

async fn patch_one<R: Resource>(
    State(s): State<AppState>,
    ScimActor(actor): ScimActor,
    BaseUrl(base): BaseUrl,
    Path(id): Path<String>,
    if_match: IfMatch,
    params: Projection,
    ScimJson(body): ScimJson,
) -> Result<Response, ScimReply> {
    let w = Write::Patch(parse_id(R::NAME, &id)?, body);
    let full = full::<R>(|a| params.excludes(a));
    let rec = R::write(&s, &actor, w, if_match.0.as_deref(), full).await?;
    // RFC 7644 §3.5.2: 200 with the resource (or 204); we return the resource so the
    // IdP sees the result without a second GET.
    one::<R>(StatusCode::OK, base, rec, false, params).await
}

async fn delete_one<R: Resource>(
    State(s): State<AppState>,
    ScimActor(actor): ScimActor,
    Path(id): Path<String>,
    if_match: IfMatch,
) -> Result<StatusCode, ScimReply> {
    let w = Write::Delete(parse_id(R::NAME, &id)?);
    R::write(&s, &actor, w, if_match.0.as_deref(), false).await?;
    Ok(StatusCode::NO_CONTENT)
}
