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
use crate::scim::filter::{parse_filter, Filter};
use crate::scim::list::Page;
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
        let actor = authenticate(state, &parts.headers).await?;
        if actor.role != Role::Scim {
            return Err(ScimError {
                status: 403,
                scim_type: None,
                detail: format!(
                    "a {} token cannot use the SCIM API; create a scim token",
                    actor.role.as_str()
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
        let root = match &state.config.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => {
                let host = parts
                    .headers
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or("localhost");
                format!("http://{host}")
            }
        };
        Ok(BaseUrl(format!("{root}{}", super::BASE)))
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
pub struct ListParams {
    /// Parsed `filter`.
    pub filter: Option<Filter>,
    /// `startIndex`/`count`.
    pub page: Page,
    /// `attributes`, split on commas.
    pub attributes: Vec<String>,
    /// `excludedAttributes`, split on commas.
    pub excluded: Vec<String>,
}

impl ListParams {
    /// Whether the caller excluded an attribute (e.g. `members`) entirely.
    pub fn excludes(&self, name: &str) -> bool {
        self.excluded
            .iter()
            .any(|a| a.trim().eq_ignore_ascii_case(name))
            || (!self.attributes.is_empty()
                && !self.attributes.iter().any(|a| {
                    let a = a.trim();
                    a.eq_ignore_ascii_case(name)
                        || a.to_ascii_lowercase()
                            .starts_with(&format!("{}.", name.to_ascii_lowercase()))
                }))
    }
}

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
        let get = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        let list = |name: &str| {
            get(name)
                .map(|v| {
                    v.split(',')
                        .map(|s| s.trim().to_owned())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default()
        };
        let filter = match get("filter").map(str::trim) {
            None | Some("") => None,
            Some(f) => Some(parse_filter(f).map_err(ScimError::from)?),
        };
        Ok(ListParams {
            filter,
            page: Page::parse(get("startIndex"), get("count"))?,
            attributes: list("attributes"),
            excluded: list("excludedAttributes"),
        })
    }
}

/// Parses a resource id from the path; anything that is not one of our ids is a 404.
pub fn parse_id(kind: &str, id: &str) -> Result<uuid::Uuid, ScimReply> {
    uuid::Uuid::parse_str(id)
        .map_err(|_| ScimError::not_found(format!("{kind} {id} not found")).into())
}
