//! OAuth 2.0 client credentials (RFC 6749 §4.4) for IdPs configured with OAuth: `POST
//! /oauth/token` trades a client id and secret for a short-lived JWT (signed and verified
//! by `auth::jwt`) that the SCIM routes accept as a bearer token. Errors are RFC 6749 §5.2
//! bodies (`{"error","error_description"}`), [`OAuthError`], this surface's one mapping.
//! Revoking a client stops new tokens at once; issued ones stop working within the token
//! cache time. Requests are limited per client address and tokens issued per client
//! (`ratelimit`).

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Json;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::auth::jwt::{self, SignError, TOKEN_TTL_SECS};
use super::ratelimit::{ClientAddr, Scope, Throttled};
use super::surface::Refusal;
use super::{origin, AppState, Route};
use crate::auth::hash_token;
use crate::error::Error;

/// `(path, method, handler)` of the token endpoint.
pub(super) fn routes() -> Vec<Route> {
    vec![("/oauth/token", Method::POST, post(token))]
}

/// A failed token request, answered as RFC 6749 §5.2 says.
#[derive(Debug)]
pub struct OAuthError {
    status: StatusCode,
    /// The RFC 6749 §5.2 `error` code (`server_error` and `temporarily_unavailable` are
    /// §4.1.2.1's, the usual answers for a server fault).
    error: &'static str,
    description: String,
    /// `Retry-After` of a 429.
    retry_after: Option<u64>,
}

impl OAuthError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> OAuthError {
        OAuthError {
            status,
            error,
            description: description.into(),
            retry_after: None,
        }
    }

    fn invalid_client(description: &str) -> OAuthError {
        OAuthError::new(StatusCode::UNAUTHORIZED, "invalid_client", description)
    }

    fn internal() -> OAuthError {
        OAuthError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "internal error; quote the X-Request-Id response header when reporting it",
        )
    }
}

impl From<Error> for OAuthError {
    fn from(e: Error) -> Self {
        match e {
            Error::Unavailable(err) => {
                tracing::warn!(error = %err, "database unavailable");
                OAuthError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    "the service is temporarily unavailable; retry later",
                )
            }
            Error::NotFound(_)
            | Error::Uniqueness(_)
            | Error::Scim(_)
            | Error::PreconditionFailed(_)
            | Error::TaskConflict { .. }
            | Error::Invalid { .. }
            | Error::Misconfigured(_)
            | Error::Db(_) => {
                tracing::error!(error = ?e, "internal error");
                OAuthError::internal()
            }
        }
    }
}

impl From<sqlx::Error> for OAuthError {
    fn from(e: sqlx::Error) -> Self {
        Error::from(e).into()
    }
}

impl From<SignError> for OAuthError {
    fn from(e: SignError) -> Self {
        match e {
            SignError::Store(e) => e.into(),
            SignError::Encode(e) => {
                tracing::error!(error = %e, "cannot sign an access token");
                OAuthError::internal()
            }
        }
    }
}

impl From<Refusal> for OAuthError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::NoRoute { path } => OAuthError::new(
                StatusCode::NOT_FOUND,
                "invalid_request",
                format!("no endpoint at {path}; the token endpoint is POST /oauth/token"),
            ),
            Refusal::MethodNotAllowed => OAuthError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid_request",
                "the token endpoint takes POST only (RFC 6749 §3.2)",
            ),
            Refusal::Timeout { .. } => OAuthError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the request took too long; retry later",
            ),
            Refusal::Fault => OAuthError::internal(),
            // RFC 6749 §5.2 has no code for this; §4.1.2.1's is the nearest, and the
            // status and `Retry-After` say the rest.
            Refusal::RateLimited(t) => OAuthError {
                retry_after: Some(t.retry_after),
                ..OAuthError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "temporarily_unavailable",
                    match t.scope {
                        Scope::Client => {
                            "too many token requests for this client; retry after the \
                             Retry-After delay"
                        }
                        Scope::Address | Scope::Credential => {
                            "too many token requests or failed authentications from this \
                             address; retry after the Retry-After delay"
                        }
                    },
                )
            },
            Refusal::Nul { .. } => OAuthError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                crate::http::surface::NUL_REFUSED,
            ),
            Refusal::MisdirectedHost => OAuthError::new(
                StatusCode::MISDIRECTED_REQUEST,
                "invalid_request",
                crate::http::surface::MISDIRECTED,
            ),
            Refusal::BodyTooLarge { limit } => OAuthError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                format!("the request body exceeds {limit} bytes"),
            ),
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let mut res = (
            self.status,
            Json(json!({"error": self.error, "error_description": self.description})),
        )
            .into_response();
        let h = res.headers_mut();
        // RFC 6749 §5.1: token responses are never cached.
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        match self.status {
            StatusCode::UNAUTHORIZED => {
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"scimbridge\""),
                );
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            StatusCode::TOO_MANY_REQUESTS => {
                h.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(self.retry_after.unwrap_or(1)),
                );
            }
            _ => {}
        }
        res
    }
}

/// The form of a token request (RFC 6749 §4.4.2); unknown parameters are ignored.
#[derive(Debug, Deserialize)]
struct TokenRequest {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// Client credentials from HTTP Basic (RFC 6749 §2.3.1), if sent.
fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let (id, secret) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

impl From<Throttled> for OAuthError {
    fn from(t: Throttled) -> Self {
        Refusal::RateLimited(t).into()
    }
}

async fn token(
    State(s): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    form: Result<Form<TokenRequest>, FormRejection>,
) -> Result<Response, OAuthError> {
    // Every request counts against its address, before anything else is done.
    s.limits.token_request(addr)?;
    let Form(req) = form.map_err(|e| {
        let status = match e.status() {
            StatusCode::PAYLOAD_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        OAuthError::new(
            status,
            "invalid_request",
            "send an application/x-www-form-urlencoded body with grant_type=client_credentials",
        )
    })?;
    if req.grant_type.as_deref() != Some("client_credentials") {
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only grant_type=client_credentials is supported",
        ));
    }
    let creds = basic(&headers).or(match (req.client_id, req.client_secret) {
        (Some(id), Some(secret)) => Some((id, secret)),
        _ => None,
    });
    let Some((id, secret)) = creds else {
        return Err(OAuthError::invalid_client(
            "send client_id and client_secret (form fields or HTTP Basic)",
        ));
    };
    // Wrong credentials count as failed authentications of the address, like bad
    // bearer tokens; once over that limit, unproven ones are refused before the lookup.
    let hash = hash_token(&secret);
    s.limits.admit(addr, &hash)?;
    let client = match Uuid::parse_str(&id) {
        Ok(id) => s.store.oauth_client(id, &hash).await?,
        Err(_) => None,
    };
    let Some(client) = client else {
        s.limits.failed(addr, Some(&hash))?;
        return Err(OAuthError::invalid_client(
            "unknown client, wrong secret, or a revoked client",
        ));
    };
    s.limits.succeeded(hash);
    s.limits.token_issued(client.client_id)?;
    let audience = origin::scim_base(&s.config, &headers);
    let jwt = jwt::sign(
        &s.oauth,
        &s.store,
        client.client_id,
        &client.app_id,
        &client.name,
        &audience,
    )
    .await?;
    tracing::info!(client = %client.client_id, app = %client.app_id, "issued an OAuth access token");
    let mut res = Json(json!({
        "access_token": jwt,
        "token_type": "Bearer",
        "expires_in": TOKEN_TTL_SECS,
    }))
    .into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}
