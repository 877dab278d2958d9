//! OAuth access tokens (RFC 7519 JWTs, HS256): signing for the token endpoint and
//! verification for every bearer-authenticated request.
//!
//! The signing key is `--jwt-secret` when set, else a random key generated once per
//! database (table `server_key`), so every replica signs and verifies alike. Tokens say
//! `aud` = the SCIM base URL, `sub` = the client id, and carry the app and the role
//! (always `scim`); they live [`TOKEN_TTL_SECS`]. Verifying one costs no database round
//! trip for the signature.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::db::Store;
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

    async fn secret(&self, store: &Store) -> Result<&[u8], Error> {
        if let Some(k) = &self.configured {
            return Ok(k);
        }
        let key = self
            .loaded
            .get_or_try_init(|| async {
                let fresh: [u8; 32] = rand::random();
                store.server_key("jwt_hs256", &fresh).await
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

/// Who a verified access token speaks for.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The OAuth client (`sub`).
    pub client_id: Uuid,
    /// The client's app.
    pub app_id: String,
    /// The client's name.
    pub name: String,
}

/// Whether a bearer token is a JWT (three base64url parts) rather than a scimbridge token.
pub fn is_jwt(token: &str) -> bool {
    token.starts_with("eyJ") && token.matches('.').count() == 2
}

/// Signs an access token of `client_id` (of `app_id`, named `name`) for `audience`.
pub async fn sign(
    keys: &Keys,
    store: &Store,
    client_id: Uuid,
    app_id: &str,
    name: &str,
    audience: &str,
) -> Result<String, SignError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let claims = Claims {
        iss: ISSUER.into(),
        sub: client_id.to_string(),
        aud: audience.to_owned(),
        iat: now,
        exp: now + TOKEN_TTL_SECS,
        app: app_id.to_owned(),
        role: "scim".into(),
        name: name.to_owned(),
    };
    let key = keys.secret(store).await.map_err(SignError::Store)?;
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(key),
    )
    .map_err(SignError::Encode)
}

/// Why a token could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The key could not be loaded from the database.
    #[error("{0}")]
    Store(Error),
    /// The JWT library refused (a bug).
    #[error("cannot sign an access token: {0}")]
    Encode(jsonwebtoken::errors::Error),
}

/// Verifies an access token: signature (HS256 only; `alg: none` and every other
/// algorithm are refused), issuer, audience, expiry and not-before. `None` when it does not verify.
pub async fn verify(
    keys: &Keys,
    store: &Store,
    audience: &str,
    token: &str,
) -> Result<Option<Verified>, Error> {
    let key = keys.secret(store).await?;
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_audience(&[audience]);
    validation.set_issuer(&[ISSUER]);
    validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
    validation.leeway = 5;
    // A token not valid yet (RFC 7519 §4.1.5) is refused, not taken as valid now.
    validation.validate_nbf = true;
    let Ok(data) =
        jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(key), &validation)
    else {
        return Ok(None);
    };
    let c = data.claims;
    let (Ok(client_id), "scim") = (Uuid::parse_str(&c.sub), c.role.as_str()) else {
        return Ok(None);
    };
    Ok(Some(Verified {
        client_id,
        app_id: c.app,
        name: c.name,
    }))
}
