//! /ServiceProviderConfig, /ResourceTypes and /Schemas (RFC 7644 §4). Read-only: other
//! methods get 405 from the router's method fallback.

use axum::extract::Path;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::routing::get;
use serde_json::Value;

use super::{reply, BaseUrl, ScimActor, ScimReply};
use axum::extract::State;

use crate::http::{AppState, Route};
use crate::scim::discovery;
use crate::scim::list::{list_response, Page};
use crate::scim::ScimError;

pub(super) fn routes() -> Vec<Route> {
    vec![
        (
            "/scim/v2/ServiceProviderConfig",
            Method::GET,
            get(service_provider_config),
        ),
        ("/scim/v2/ResourceTypes", Method::GET, get(resource_types)),
        (
            "/scim/v2/ResourceTypes/{id}",
            Method::GET,
            get(resource_type),
        ),
        ("/scim/v2/Schemas", Method::GET, get(schemas)),
        ("/scim/v2/Schemas/{id}", Method::GET, get(schema)),
    ]
}

async fn service_provider_config(
    State(s): State<AppState>,
    _: ScimActor,
    BaseUrl(base): BaseUrl,
) -> Response {
    reply(
        StatusCode::OK,
        &discovery::service_provider_config(
            &base,
            discovery::Declared {
                max_payload: s.config.body_limit,
            },
        ),
        None,
        None,
    )
}

fn all(items: Vec<Value>) -> Response {
    let page = Page {
        start_index: 1,
        count: items.len() as i64,
    };
    let total = items.len() as i64;
    reply(
        StatusCode::OK,
        &list_response(total, page, items),
        None,
        None,
    )
}

fn by_id(items: Vec<Value>, id: &str, what: &str) -> Result<Response, ScimReply> {
    items
        .into_iter()
        .find(|i| i["id"].as_str().is_some_and(|x| x.eq_ignore_ascii_case(id)))
        .map(|i| reply(StatusCode::OK, &i, None, None))
        .ok_or_else(|| ScimError::not_found(format!("{what} {id} not found")).into())
}

async fn resource_types(_: ScimActor, BaseUrl(base): BaseUrl) -> Response {
    all(discovery::resource_types(&base))
}

async fn resource_type(
    _: ScimActor,
    BaseUrl(base): BaseUrl,
    Path(id): Path<String>,
) -> Result<Response, ScimReply> {
    by_id(discovery::resource_types(&base), &id, "ResourceType")
}

async fn schemas(_: ScimActor, BaseUrl(base): BaseUrl) -> Response {
    all(discovery::schemas(&base))
}

async fn schema(
    _: ScimActor,
    BaseUrl(base): BaseUrl,
    Path(id): Path<String>,
) -> Result<Response, ScimReply> {
    by_id(discovery::schemas(&base), &id, "Schema")
}
