//! OAuth 2.0 client credentials (RFC 6749 §4.4) for IdPs configured with OAuth: `POST
//! /oauth/token` trades a client id and secret for a short-lived JWT (HS256, RFC 7519)
//! that the SCIM routes accept as a bearer token.
//!
//! The signing key is `--jwt-secret` when set, else a random key generated once per
//! database (table `server_key`), so every replica signs and verifies alike. Tokens say
//! `aud` = the SCIM base URL, `sub` = the client id, and carry the app and the role
//! (always `scim`); they live [`TOKEN_TTL_SECS`]. Verifying one costs no database round
//! trip; revoking a client stops new tokens, and issued ones expire within the hour.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Json;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::api::ApiError;
use super::{AppState, Route};
use crate::auth::{hash_token, Actor, Role};
use crate::config::Config;
use crate::error::Error;

/// Lifetime of an issued access token.
pub const TOKEN_TTL_SECS: u64 = 3600;
const ISSUER: &str = "scimbridge";

/// The JWT signing key: configured, or loaded (created) from the database once.
#[derive(Debug)]
pub struct Keys {
    configured: Option<Vec<u8>>,
    loaded: tokio::sync::OnceCell<Vec<u8>>,
}

impl Keys {
    /// Keys from `--jwt-secret`, if set.
    pub fn new(configured: Option<&str>) -> Keys {
        Keys {
            configured: configured.map(|s| s.as_bytes().to_vec()),
            loaded: tokio::sync::OnceCell::new(),
        }
    }

    async fn secret(&self, state: &AppState) -> Result<&[u8], Error> {
        if let Some(k) = &self.configured {
            return Ok(k);
        }
        let key = self
            .loaded
            .get_or_try_init(|| async {
                let fresh: [u8; 32] = rand::random();
                state.store.server_key("jwt_hs256", &fresh).await
            })
            .await?;
        Ok(key)
    }
}

/// What an access token says.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: String,
    iat: u64,
    exp: u64,
    /// The app the client belongs to.
    app: String,
    /// Always `scim`.
    role: String,
    /// The client's name, "who" in the audit trail.
    name: String,
}

/// `(path, method, handler)` of the token endpoint.
pub(super) fn routes() -> Vec<Route> {
    vec![("/oauth/token", Method::POST, post(token))]
}

/// The absolute SCIM base URL, the `aud` of tokens: `--public-url` or the Host header
/// (the same rule as `Location` headers).
pub fn scim_base(config: &Config, headers: &HeaderMap) -> String {
    let root = match &config.public_url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("localhost");
            format!("http://{host}")
        }
    };
    format!("{root}{}", super::scim::BASE)
}

/// Whether a bearer token is a JWT (three base64url parts) rather than a scimbridge token.
pub fn is_jwt(token: &str) -> bool {
    token.starts_with("eyJ") && token.matches('.').count() == 2
}

/// Verifies an access token: signature (HS256 only; `alg: none` and every other
/// algorithm are refused), issuer, audience and expiry. `None` when it does not verify.
pub async fn verify(
    state: &AppState,
    headers: &HeaderMap,
    token: &str,
) -> Result<Option<Actor>, Error> {
    let key = state.oauth.secret(state).await?;
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_audience(&[scim_base(&state.config, headers)]);
    validation.set_issuer(&[ISSUER]);
    validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
    validation.leeway = 5;
    let Ok(data) =
        jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(key), &validation)
    else {
        return Ok(None);
    };
    let c = data.claims;
    let (Ok(client_id), "scim") = (Uuid::parse_str(&c.sub), c.role.as_str()) else {
        return Ok(None);
    };
    Ok(Some(Actor {
        app_id: c.app,
        token_id: client_id,
        name: c.name,
        role: Role::Scim,
        request_id: headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    }))
}

/// The form of a token request (RFC 6749 §4.4.2); unknown parameters are ignored.
#[derive(Debug, Deserialize)]
struct TokenRequest {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// An error in RFC 6749 §5.2 form.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut res = (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response();
    let h = res.headers_mut();
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    if status == StatusCode::UNAUTHORIZED {
        h.insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"scimbridge\""),
        );
    }
    res
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

async fn token(
    State(s): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<TokenRequest>, FormRejection>,
) -> Result<Response, ApiError> {
    let Ok(Form(req)) = form else {
        return Ok(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "send an application/x-www-form-urlencoded body with grant_type=client_credentials",
        ));
    };
    if req.grant_type.as_deref() != Some("client_credentials") {
        return Ok(oauth_error(
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
        return Ok(oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "send client_id and client_secret (form fields or HTTP Basic)",
        ));
    };
    let client = match Uuid::parse_str(&id) {
        Ok(id) => s
            .store
            .oauth_client(id, &hash_token(&secret))
            .await
            .map_err(Error::from)?,
        Err(_) => None,
    };
    let Some(client) = client else {
        return Ok(oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown client, wrong secret, or a revoked client",
        ));
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let claims = Claims {
        iss: ISSUER.into(),
        sub: client.client_id.to_string(),
        aud: scim_base(&s.config, &headers),
        iat: now,
        exp: now + TOKEN_TTL_SECS,
        app: client.app_id,
        role: "scim".into(),
        name: client.name,
    };
    let key = s.oauth.secret(&s).await?;
    let jwt = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(key),
    )
    .map_err(|e| {
        tracing::error!(error = %e, "cannot sign an access token");
        ApiError::new(500, "internal", "internal error")
    })?;
    tracing::info!(client = %claims.sub, app = %claims.app, "issued an OAuth access token");
    let mut res = Json(json!({
        "access_token": jwt,
        "token_type": "Bearer",
        "expires_in": TOKEN_TTL_SECS,
    }))
    .into_response();
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    Ok(res)
}
