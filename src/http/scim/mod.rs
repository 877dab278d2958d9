//! The SCIM surface (RFC 7644 §3.2 endpoint table):
//!
//! | endpoint                 | methods                          | module      |
//! |--------------------------|----------------------------------|-------------|
//! | /Users, /Users/{id}      | GET POST / GET PUT PATCH DELETE  | `resources` over `users`  |
//! | /Groups, /Groups/{id}    | GET POST / GET PUT PATCH DELETE  | `resources` over `groups` |
//! | /ServiceProviderConfig   | GET (others 405)                 | `discovery` |
//! | /ResourceTypes[/{id}]    | GET (others 405)                 | `discovery` |
//! | /Schemas[/{id}]          | GET (others 405)                 | `discovery` |
//!
//! Only `scim` tokens reach it, and only their own app's resources.

mod bulk;
mod discovery;
mod error;
mod extract;
mod groups;
mod resources;
mod search;
mod users;
mod work;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

pub use error::ScimReply;
pub use extract::{BaseUrl, IfMatch, ListParams, Projection, ScimActor, ScimJson};

use super::Route;
use crate::scim::list::{cursor_response, list_response, Paging};
use crate::scim::SCIM_CONTENT_TYPE;

/// Where the SCIM surface is mounted.
pub const BASE: &str = super::surface::SCIM_BASE;

pub(super) fn routes() -> Vec<Route> {
    [
        resources::routes::<users::Users>(),
        resources::routes::<groups::Groups>(),
        search::routes(),
        bulk::routes(),
        discovery::routes(),
    ]
    .concat()
}

/// The ListResponse of an index or cursor page.
pub fn list_reply(
    paging: &Paging,
    total: i64,
    next: Option<i64>,
    resources: Vec<Value>,
) -> Response {
    let body = match paging {
        Paging::Index(page) => list_response(total, *page, resources),
        Paging::Cursor { .. } => cursor_response(total, next, resources),
    };
    reply(StatusCode::OK, &body, None, None)
}

/// `If-None-Match` on a read (RFC 7644 §3.14): 304 when the client has this version.
pub fn not_modified(headers: &axum::http::HeaderMap, etag: &str) -> Option<Response> {
    let value = headers.get(header::IF_NONE_MATCH)?.to_str().ok()?;
    let current = etag
        .trim_start_matches("W/")
        .trim_matches('"')
        .parse::<i64>()
        .ok()?;
    let hit = match extract::etag_versions(value) {
        None => true,
        Some(versions) => versions.contains(&current),
    };
    hit.then(|| {
        let mut res = StatusCode::NOT_MODIFIED.into_response();
        if let Ok(v) = HeaderValue::from_str(etag) {
            res.headers_mut().insert(header::ETAG, v);
        }
        res
    })
}

/// A written resource as the response (RFC 7644 §3.3, §3.5.1, §3.5.2): the rendered
/// resource projected (`project`: the resource type's `attributes`/`excludedAttributes`
/// rules; the answer is "subject to the attributes query parameter"), its `ETag`, and for
/// a create its `Location` (taken before projection: it must not depend on `meta` being
/// asked for).
pub(super) fn written(
    status: StatusCode,
    body: Value,
    version: i64,
    with_location: bool,
    project: impl FnOnce(Value) -> Value,
) -> Response {
    let location = with_location.then(|| {
        body["meta"]["location"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    });
    let body = project(body);
    let tag = crate::scim::resource::etag(version);
    reply(status, &body, location.as_deref(), Some(&tag))
}

/// A SCIM JSON response with optional `Location` and `ETag` headers.
pub fn reply(
    status: StatusCode,
    body: &Value,
    location: Option<&str>,
    etag: Option<&str>,
) -> Response {
    let mut res = (status, body.to_string()).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(SCIM_CONTENT_TYPE),
    );
    for (name, value) in [(header::LOCATION, location), (header::ETAG, etag)] {
        if let Some(v) = value.and_then(|v| HeaderValue::from_str(v).ok()) {
            h.insert(name, v);
        }
    }
    res
}
