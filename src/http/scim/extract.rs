//! Extractors of the SCIM surface, whose rejections are SCIM errors.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde_json::Value;

use super::ScimReply;
use crate::auth::{Actor, Role};
use crate::http::auth::authenticate;
use crate::http::AppState;
use crate::scim::list::ListRequest;
use crate::scim::{ScimError, ScimType};

/// The caller of a SCIM route: a `scim` token.
#[derive(Debug, Clone)]
pub struct ScimActor(pub Actor);

impl FromRequestParts<AppState> for ScimActor {
    type Rejection = ScimReply;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let actor = authenticate(state, parts).await?;
        if actor.role != Role::Scim {
            return Err(ScimError {
                status: 403,
                scim_type: None,
                detail: format!(
                    "{} cannot use the SCIM API; create a scim token",
                    actor.role.a_token()
                ),
            }
            .into());
        }
        Ok(ScimActor(actor))
    }
}

/// The absolute URL of the SCIM base (`https://host/scim/v2`) for `Location`/`meta`.
#[derive(Debug, Clone)]
pub struct BaseUrl(pub String);

impl FromRequestParts<AppState> for BaseUrl {
    type Rejection = ScimReply;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(BaseUrl(crate::http::origin::scim_base(
            &state.config,
            &parts.headers,
        )))
    }
}

/// A JSON body, accepted as `application/scim+json` or `application/json` (RFC 7644
/// §3.1); malformed JSON is 400 invalidSyntax, an oversized body 413.
#[derive(Debug)]
pub struct ScimJson(pub Value);

impl FromRequest<AppState> for ScimJson {
    type Rejection = ScimReply;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ScimError {
                    status: 413,
                    scim_type: None,
                    detail: format!("the request body exceeds {} bytes", state.config.body_limit),
                }
            } else {
                ScimError::bad_request(
                    ScimType::InvalidSyntax,
                    format!("could not read the request body: {e}"),
                )
            }
        })?;
        let value = serde_json::from_slice(&bytes).map_err(|e| {
            ScimError::bad_request(
                ScimType::InvalidSyntax,
                format!("the request body is not valid JSON: {e}"),
            )
        })?;
        Ok(ScimJson(value))
    }
}

/// Query parameters of a SCIM read (RFC 7644 §3.4.2), names matched case-insensitively.
#[derive(Debug, Default)]
pub struct ListParams(pub ListRequest);

impl FromRequestParts<AppState> for ListParams {
    type Rejection = ScimReply;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Query(pairs) = Query::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|e| {
                ScimError::bad_request(ScimType::InvalidValue, format!("bad query string: {e}"))
            })?;
        let req = ListRequest::parse(|name| {
            pairs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        })?;
        Ok(ListParams(req))
    }
}

/// Parses a resource id from the path; anything that is not one of our ids is a 404.
pub fn parse_id(kind: &str, id: &str) -> Result<uuid::Uuid, ScimReply> {
    uuid::Uuid::parse_str(id)
        .map_err(|_| ScimError::not_found(format!("{kind} {id} not found")).into())
}

/// `If-Match` (RFC 7644 §3.14, RFC 7232 §3.1): the versions the client expects; None
/// when absent or `*`. A tag that is not one of ours matches no version.
#[derive(Debug, Default)]
pub struct IfMatch(pub Option<Vec<i64>>);

/// The versions named by an `If-Match`/`If-None-Match` value; None for `*`.
pub fn etag_versions(value: &str) -> Option<Vec<i64>> {
    if value.trim() == "*" {
        return None;
    }
    Some(
        value
            .split(',')
            .filter_map(|t| {
                let t = t.trim();
                let t = t.strip_prefix("W/").unwrap_or(t);
                t.trim_matches('"').parse::<i64>().ok()
            })
            .collect(),
    )
}

impl FromRequestParts<AppState> for IfMatch {
    type Rejection = ScimReply;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Self::Rejection> {
        Ok(IfMatch(
            parts
                .headers
                .get(header::IF_MATCH)
                .and_then(|v| v.to_str().ok())
                .and_then(etag_versions),
        ))
    }
}

/// `attributes` / `excludedAttributes` of a single-resource read; other list
/// parameters are ignored there (RFC 7644 §3.4.2.5 applies them to any read).
#[derive(Debug, Default)]
pub struct Projection {
    /// `attributes`.
    pub attributes: Vec<String>,
    /// `excludedAttributes`.
    pub excluded: Vec<String>,
}

impl Projection {
    /// Whether the caller left an attribute out entirely.
    pub fn excludes(&self, name: &str) -> bool {
        ListRequest {
            attributes: self.attributes.clone(),
            excluded: self.excluded.clone(),
            ..ListRequest::default()
        }
        .excludes(name)
    }
}

impl FromRequestParts<AppState> for Projection {
    type Rejection = ScimReply;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Query(pairs) = Query::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|e| {
                ScimError::bad_request(ScimType::InvalidValue, format!("bad query string: {e}"))
            })?;
        let list = |name: &str| -> Vec<String> {
            pairs
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                .flat_map(|(_, v)| v.split(',').map(|s| s.trim().to_owned()))
                .filter(|s| !s.is_empty())
                .collect()
        };
        Ok(Projection {
            attributes: list("attributes"),
            excluded: list("excludedAttributes"),
        })
    }
}
