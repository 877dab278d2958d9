//! Sessions and CSRF: the `sb_session` cookie, the [`SignedIn`] extractor every page and
//! action takes, and the constant-time comparison of the per-session form secret.
//!
//! The cookie holds a random 256-bit id; the database holds only its SHA-256 (like tokens),
//! so a leaked table cannot be replayed. The cookie is HttpOnly (no script reads it),
//! SameSite=Strict (no other site's page can make the browser send it, the first line of
//! CSRF defence; the hidden form token is the second), Path=/ui (never sent to the APIs)
//! and Secure when the request came over TLS.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method};

use super::error::Ended;
use super::{Nav, PageError};
use crate::auth::{hash_token, Action, Actor, Role};
use crate::db::sessions::{FoundSession, WebSession};
use crate::http::AppState;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "sb_session";
/// Name of the sign-in form's CSRF cookie (before there is a session to hold the secret).
pub const LOGIN_COOKIE: &str = "sb_login";
/// How long a session lasts, from sign-in (a working day; no sliding renewal, so a
/// stolen cookie is useful for at most this long).
pub const SESSION_HOURS: i64 = 8;

/// The value of a cookie of the request, if sent.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_owned())
}

/// A fresh 256-bit secret from the OS generator, hex-encoded.
pub fn random_secret() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// The stored form of a session id.
pub fn session_hash(secret: &str) -> String {
    hex::encode(hash_token(secret))
}

/// Compares secrets in time independent of where they differ, so response timing does
/// not reveal a CSRF token byte by byte. (The length is not secret: always 64.)
pub fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether the browser reached us over TLS: directly behind a proxy that says so, or a
/// deployment whose public URL is https.
pub fn is_https(state: &AppState, headers: &HeaderMap) -> bool {
    let forwarded = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
    let public = state
        .config
        .public_url
        .as_deref()
        .is_some_and(|u| u.starts_with("https://"));
    forwarded || public
}

/// A `Set-Cookie` value scoped to the UI; `max_age` 0 deletes the cookie.
pub fn set_cookie(name: &str, value: &str, max_age: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let v =
        format!("{name}={value}; Path=/ui; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}");
    // Names and values are hex or constants: always a valid header value.
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A request from a signed-in person: the live session and the request id.
#[derive(Debug, Clone)]
pub struct SignedIn {
    /// The session row (app, token, role, CSRF secret).
    pub session: WebSession,
    /// `X-Request-Id` of the request, for the audit trail.
    pub request_id: Option<String>,
}

impl SignedIn {
    /// The actor of the session's writes: the token it signed in with.
    pub fn actor(&self) -> Actor {
        Actor {
            app_id: self.session.app_id.clone(),
            token_id: self.session.token_id,
            name: self.session.token_name.clone(),
            role: self.session.role,
            request_id: self.request_id.clone(),
        }
    }

    /// The page header for a section of the UI.
    pub fn nav(&self, section: &'static str) -> Nav {
        Nav {
            app_name: self.session.app_name.clone(),
            who: self.session.token_name.clone(),
            role: match self.session.role {
                Role::Admin => "admin",
                Role::Agent => "agent",
                Role::Scim | Role::System => "",
            },
            csrf: self.session.csrf_token.clone(),
            section,
            refresh: 0,
        }
    }

    /// Refuses an action the session's role may not do, by the rule the task API applies
    /// too ([`Role::may`]): the page says who may, and nothing changes.
    pub fn permit(&self, action: Action) -> Result<(), PageError> {
        if self.session.role.may(action) {
            return Ok(());
        }
        let what = match action {
            Action::Read => "see this",
            Action::Work => "work tasks",
            Action::Approve => "approve or reject a task",
            Action::DecideBatch => "release or cancel a held batch",
            Action::Audit => "export the audit trail",
            Action::Deliveries => "manage notifications",
            Action::Reassign => "reassign a task",
            Action::SubmitSnapshot => "upload a snapshot of the app's user list",
            Action::DecideSnapshot => "apply or discard a held snapshot",
            Action::TicketBridge => "configure the ticket bridge",
            Action::ManageTokens => "list, create or revoke tokens",
        };
        Err(PageError::Forbidden(format!(
            "Only {} can {what}, so nothing was changed. Sign in with such a token to do it.",
            action.who()
        )))
    }

    /// Refuses a form whose hidden `csrf` field is not this session's secret.
    pub fn check_csrf(&self, sent: Option<&str>) -> Result<(), PageError> {
        match sent {
            Some(s) if same_secret(s, &self.session.csrf_token) => Ok(()),
            _ => Err(PageError::Forbidden(
                "This form was not sent from a page of this session (its security token is \
                 missing or old), so nothing was changed. Reload the page and try again."
                    .into(),
            )),
        }
    }
}

/// The body of a form whose only field is its CSRF token (approve, revoke, apply, sign out).
#[derive(Debug, serde::Deserialize)]
pub struct CsrfForm {
    pub csrf: Option<String>,
}

/// A form body that could not be parsed: the page's own 400, nothing changed.
pub fn unreadable_form() -> PageError {
    PageError::Rejected {
        status: axum::http::StatusCode::BAD_REQUEST,
        message: "The form could not be read; reload the page and try again.".into(),
    }
}

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = PageError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        // Only a page can be returned to after signing in; a form post cannot be replayed.
        let next = (parts.method == Method::GET).then(|| {
            parts
                .uri
                .path_and_query()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_else(|| parts.uri.path().to_owned())
        });
        let Some(secret) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(PageError::SignIn { next, ended: None });
        };
        let hash = session_hash(&secret);
        let session = match state.store.session(&hash).await? {
            Some(FoundSession::Live(s)) => s,
            Some(FoundSession::Revoked) => {
                return Err(PageError::SignIn {
                    next,
                    ended: Some(Ended::Revoked),
                })
            }
            None => return Err(PageError::SignIn { next, ended: None }),
        };
        if session.expires_at <= chrono::Utc::now() {
            state.store.delete_session(&hash).await?;
            return Err(PageError::SignIn {
                next,
                ended: Some(Ended::Expired),
            });
        }
        let me = SignedIn {
            session,
            request_id: parts
                .headers
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        };
        // Sign-in admits agent and admin tokens only; this keeps any other out regardless.
        me.permit(Action::Read)?;
        Ok(me)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; sb_session=abc ; b=2"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&h, "sb"), None);
    }

    #[test]
    fn secrets_compare_equal_only_when_equal() {
        let s = random_secret();
        assert_eq!(s.len(), 64);
        assert!(same_secret(&s, &s.clone()));
        assert!(!same_secret(&s, &random_secret()));
        assert!(!same_secret(&s, ""));
    }

    #[test]
    fn session_cookies_are_locked_down() {
        let v = set_cookie(SESSION_COOKIE, "x", 60, true);
        let v = v.to_str().unwrap_or_default();
        for part in [
            "HttpOnly",
            "SameSite=Strict",
            "Path=/ui",
            "Secure",
            "Max-Age=60",
        ] {
            assert!(v.contains(part), "{v} lacks {part}");
        }
        let v = set_cookie(SESSION_COOKIE, "x", 60, false);
        assert!(!v.to_str().unwrap_or_default().contains("Secure"));
    }
}
