//! Bearer-token authentication shared by the surfaces. Tokens are looked up by hash;
//! verified tokens are cached for `--token-cache-secs` so most requests cost no database
//! round trip (a lookup per request would be most of its cost); revocation takes effect
//! within that time. OAuth access tokens (JWTs, [`jwt`]) verify by signature; whether their
//! client is still live is cached the same way, so revoking a client takes effect within
//! that time too. Rate limits ([`super::ratelimit`]) apply here, where the credential is
//! known: failures per client address (checked before the lookup), and the request per
//! token or per OAuth client.

pub mod jwt;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::request::Parts;
use axum::http::HeaderMap;

use super::ratelimit::{client_addr, Throttled};
use super::AppState;
use crate::auth::{hash_token, Actor, Role};
use crate::db::tokens::TokenInfo;
use crate::error::Error;

/// Why a request is not authenticated.
#[derive(Debug)]
pub enum AuthError {
    /// No `Authorization: Bearer …` header.
    Missing,
    /// A token that is unknown or revoked.
    Invalid,
    /// The token store could not be asked.
    Store(Error),
    /// Over a rate limit (429 with `Retry-After`).
    Throttled(Throttled),
}

/// Verified tokens by hash, with the time they were verified.
#[derive(Debug)]
pub struct TokenCache {
    ttl: Duration,
    // std Mutex, not tokio's: it is never held across an .await, so it cannot block the
    // runtime, and an uncontended std lock is cheaper.
    entries: Mutex<HashMap<[u8; 32], (TokenInfo, Instant)>>,
    /// Whether each OAuth client seen lately is live: a JWT verifies by signature, but
    /// its client may have been revoked since it was issued.
    clients: Mutex<HashMap<uuid::Uuid, (bool, Instant)>>,
}

impl TokenCache {
    /// A cache whose entries live `ttl`; zero disables caching.
    pub fn new(ttl: Duration) -> TokenCache {
        TokenCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
            clients: Mutex::new(HashMap::new()),
        }
    }

    fn client_live(&self, id: uuid::Uuid) -> Option<bool> {
        let clients = self.clients.lock().ok()?;
        clients
            .get(&id)
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(live, _)| *live)
    }

    fn put_client(&self, id: uuid::Uuid, live: bool) {
        if self.ttl.is_zero() {
            return;
        }
        if let Ok(mut clients) = self.clients.lock() {
            if clients.len() > 10_000 {
                let ttl = self.ttl;
                clients.retain(|_, (_, at)| at.elapsed() < ttl);
            }
            clients.insert(id, (live, Instant::now()));
        }
    }

    fn get(&self, hash: &[u8; 32]) -> Option<TokenInfo> {
        let entries = self.entries.lock().ok()?;
        entries
            .get(hash)
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(t, _)| t.clone())
    }

    /// Drops a token from this replica's cache at once (it was just revoked here);
    /// other replicas stop accepting it within their cache time.
    pub fn forget(&self, token_id: uuid::Uuid) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.retain(|_, (t, _)| t.token_id != token_id);
        }
        if let Ok(mut clients) = self.clients.lock() {
            clients.remove(&token_id);
        }
    }

    fn put(&self, hash: [u8; 32], token: TokenInfo) {
        if self.ttl.is_zero() {
            return;
        }
        if let Ok(mut entries) = self.entries.lock() {
            // Bounded: drop stale entries when the map grows.
            if entries.len() > 10_000 {
                let ttl = self.ttl;
                entries.retain(|_, (_, at)| at.elapsed() < ttl);
            }
            entries.insert(hash, (token, Instant::now()));
        }
    }
}

/// The bearer token of a request, if any (the scheme is case-insensitive, RFC 7235 §2.1).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Authenticates a request and returns its actor, within the rate limits.
pub async fn authenticate(state: &AppState, parts: &Parts) -> Result<Actor, AuthError> {
    let headers = &parts.headers;
    let token = bearer(headers).ok_or(AuthError::Missing)?;
    let addr = client_addr(&parts.extensions);
    let limits = &state.limits;
    // A failure is 401, or 429 once the address is over its failure limit.
    let failed = |hash: Option<&[u8; 32]>| match limits.failed(addr, hash) {
        Ok(()) => AuthError::Invalid,
        Err(t) => AuthError::Throttled(t),
    };
    let request_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // OAuth access tokens verify by signature, without the store (a forged one costs no
    // lookup, so a valid signature is let through even from a throttled address).
    if jwt::is_jwt(token) {
        let audience = super::origin::scim_base(&state.config, headers);
        let v = jwt::verify(&state.oauth, &state.store, &audience, token)
            .await
            .map_err(AuthError::Store)?
            .ok_or_else(|| failed(None))?;
        // A revoked client's tokens stop working within the cache time, like tokens.
        let live = match state.tokens.client_live(v.client_id) {
            Some(live) => live,
            None => {
                let live = state
                    .store
                    .oauth_client_live(v.client_id)
                    .await
                    .map_err(|e| AuthError::Store(e.into()))?;
                state.tokens.put_client(v.client_id, live);
                live
            }
        };
        if !live {
            return Err(failed(None));
        }
        // All of a client's access tokens share its bucket.
        limits
            .credential(v.client_id)
            .map_err(AuthError::Throttled)?;
        return Ok(Actor {
            app_id: v.app_id,
            token_id: v.client_id,
            name: v.name,
            role: Role::Scim,
            request_id,
        });
    }
    let hash = hash_token(token);
    let info = match state.tokens.get(&hash) {
        Some(t) => t,
        None => {
            limits.admit(addr, &hash).map_err(AuthError::Throttled)?;
            let t = state
                .store
                .token_by_hash(&hash)
                .await
                .map_err(AuthError::Store)?
                .ok_or_else(|| failed(Some(&hash)))?;
            limits.succeeded(hash);
            state.tokens.put(hash, t.clone());
            t
        }
    };
    limits
        .credential(info.token_id)
        .map_err(AuthError::Throttled)?;
    Ok(Actor {
        app_id: info.app_id,
        token_id: info.token_id,
        name: info.name,
        role: info.role,
        request_id,
    })
}
