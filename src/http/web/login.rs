//! Signing in and out. A person pastes an agent or admin token once; the server checks it
//! (straight against the database, so a just-revoked token is refused) and starts a
//! session. The sign-in form has its own CSRF secret in a short-lived cookie, since there
//! is no session yet to hold one (otherwise another site could sign a browser in to an
//! attacker's account).

use askama::Template;
use axum::extract::rejection::FormRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Form;
use serde::Deserialize;

use super::session::{
    cookie, is_https, random_secret, same_secret, session_hash, set_cookie, CsrfForm, SignedIn,
    LOGIN_COOKIE, SESSION_COOKIE, SESSION_HOURS,
};
use super::{render, see_other, Nav, PageError};
use crate::auth::{hash_token, Role};
use crate::http::ratelimit::{ClientAddr, Throttled};
use crate::http::{AppState, Route};

pub(super) fn routes() -> Vec<Route> {
    vec![
        ("/ui/login", Method::GET, get(login_page)),
        ("/ui/login", Method::POST, post(login)),
        ("/ui/logout", Method::POST, post(logout)),
    ]
}

/// Seconds the sign-in form stays usable.
const LOGIN_FORM_SECS: i64 = 3600;

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    nav: Option<Nav>,
    csrf: String,
    next: String,
    notice: Option<&'static str>,
    error: Option<&'static str>,
}

#[derive(Debug, Deserialize)]
struct LoginQuery {
    next: Option<String>,
    expired: Option<String>,
    revoked: Option<String>,
    signed_out: Option<String>,
}

/// Only a UI path may be returned to after signing in (no open redirect to other sites).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with("/ui")
                && !n.starts_with("/ui/login")
                && !n.contains("//")
                && !n.contains('\\') =>
        {
            n.to_owned()
        }
        _ => "/ui/tasks".to_owned(),
    }
}

/// The sign-in page with a fresh form secret (set as a cookie too).
fn form(
    status: StatusCode,
    next: String,
    notice: Option<&'static str>,
    error: Option<&'static str>,
    secure: bool,
) -> Response {
    let csrf = random_secret();
    let page = LoginPage {
        nav: None,
        csrf: csrf.clone(),
        next,
        notice,
        error,
    };
    let mut res = render(status, &page);
    res.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(LOGIN_COOKIE, &csrf, LOGIN_FORM_SECS, secure),
    );
    res
}

async fn login_page(
    State(s): State<AppState>,
    signed_in: Result<SignedIn, PageError>,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> Response {
    if signed_in.is_ok() {
        return see_other(&safe_next(q.next.as_deref()));
    }
    let notice = if q.expired.is_some() {
        Some("Your session ended: sessions last 8 hours. Sign in again to go on.")
    } else if q.revoked.is_some() {
        Some(
            "Your session ended: the token you signed in with was revoked. Sign in with a \
             valid token to go on.",
        )
    } else if q.signed_out.is_some() {
        Some("You are signed out.")
    } else {
        None
    };
    form(
        StatusCode::OK,
        safe_next(q.next.as_deref()),
        notice,
        None,
        is_https(&s, &headers),
    )
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    token: Option<String>,
    csrf: Option<String>,
    next: Option<String>,
}

async fn login(
    State(s): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    form_data: Result<Form<LoginForm>, FormRejection>,
) -> Result<Response, PageError> {
    let Form(f) = form_data.map_err(|e| PageError::Rejected {
        status: e.status(),
        message: "Sign in with the form on the sign-in page.".into(),
    })?;
    let expected = cookie(&headers, LOGIN_COOKIE);
    let csrf_ok = matches!((&f.csrf, &expected), (Some(a), Some(b)) if same_secret(a, b));
    if !csrf_ok {
        return Err(PageError::Forbidden(
            "This sign-in form is not from this browser session or has expired, so it was \
             refused. Open the sign-in page again and sign in."
                .into(),
        ));
    }
    let secure = is_https(&s, &headers);
    let next = safe_next(f.next.as_deref());
    let token = f.token.as_deref().map(str::trim).unwrap_or_default();
    if token.is_empty() {
        return Ok(form(
            StatusCode::BAD_REQUEST,
            next,
            None,
            Some("Paste your agent or admin token to sign in."),
            secure,
        ));
    }
    // A wrong token counts as a failed authentication of the address, as on the API;
    // once over that limit, unproven tokens are refused before the lookup.
    let hash = hash_token(token);
    let throttled = |t: Throttled| {
        let mut res = form(
            StatusCode::TOO_MANY_REQUESTS,
            next.clone(),
            None,
            Some(
                "Too many failed sign-ins from this address, so this one was not checked. \
                 Wait a moment and try again.",
            ),
            secure,
        );
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(t.retry_after));
        res
    };
    if let Err(t) = s.limits.admit(addr, &hash) {
        return Ok(throttled(t));
    }
    let Some(info) = s.store.token_by_hash(&hash).await? else {
        tracing::info!("web sign-in refused: unknown or revoked token");
        if let Err(t) = s.limits.failed(addr, Some(&hash)) {
            return Ok(throttled(t));
        }
        return Ok(form(
            StatusCode::FORBIDDEN,
            next,
            None,
            Some("That token is not valid: it is unknown or has been revoked."),
            secure,
        ));
    };
    s.limits.succeeded(hash);
    match info.role {
        Role::Agent | Role::Admin => {}
        Role::Scim | Role::System => {
            tracing::info!(app = %info.app_id, "web sign-in refused: scim token");
            return Ok(form(
                StatusCode::FORBIDDEN,
                next,
                None,
                Some(
                    "That is a scim token: it belongs to your identity provider and cannot \
                     sign in here. Use an agent or admin token.",
                ),
                secure,
            ));
        }
    }
    let secret = random_secret();
    let session = s
        .store
        .create_session(
            &session_hash(&secret),
            &info,
            &random_secret(),
            chrono::Duration::hours(SESSION_HOURS),
        )
        .await?;
    tracing::info!(app = %session.app_id, who = %session.token_name, "web sign-in");
    let mut res = see_other(&next);
    let h = res.headers_mut();
    h.append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, &secret, SESSION_HOURS * 3600, secure),
    );
    h.append(header::SET_COOKIE, set_cookie(LOGIN_COOKIE, "", 0, secure));
    Ok(res)
}

async fn logout(
    State(s): State<AppState>,
    me: SignedIn,
    headers: HeaderMap,
    form_data: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, PageError> {
    let Form(f) = form_data.map_err(|e| PageError::Rejected {
        status: e.status(),
        message: "Sign out with the button at the top of the page.".into(),
    })?;
    me.check_csrf(f.csrf.as_deref())?;
    s.store.delete_session(&me.session.session_hash).await?;
    let mut res = see_other("/ui/login?signed_out=1");
    res.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, "", 0, is_https(&s, &headers)),
    );
    Ok(res.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ui_paths_are_returned_to() {
        assert_eq!(safe_next(Some("/ui/tasks/7")), "/ui/tasks/7");
        for bad in [
            "https://evil.example",
            "//evil.example",
            "/ui//evil",
            "/api/v1/tasks",
            "/ui/login",
        ] {
            assert_eq!(safe_next(Some(bad)), "/ui/tasks", "{bad}");
        }
        assert_eq!(safe_next(None), "/ui/tasks");
    }
}
