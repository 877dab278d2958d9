//! The admin web UI (`/ui`): server-rendered pages for people working the queue, built
//! from askama templates (`templates/`, HTML auto-escaped) and plain HTML forms. It is its
//! own surface: it signs people in with a cookie session (not a bearer token), renders
//! every error as an HTML page ([`PageError`]) and imports nothing from the other surfaces.
//!
//! | route                                   | what                                          |
//! |-----------------------------------------|-----------------------------------------------|
//! | GET/POST /ui/login, POST /ui/logout     | sign in with an agent/admin token, sign out   |
//! | GET /ui, /ui/tasks                      | the queue: tabs by state, kind, search, pages |
//! | GET /ui/tasks/{id}                      | one task: checklist, values, history, actions |
//! | POST /ui/tasks/{id}/claim|complete|release|retry | the actions, as forms                |
//! | GET /ui/tasks/{id}/attachments/{n}      | download an evidence file                     |
//! | GET /ui/users, /ui/users/{id}           | users, desired vs confirmed, the full trail   |
//! | GET /ui/reports                         | seats now, verification, completion times     |
//! | GET/POST /ui/snapshots                  | the app's user list: upload, what it found    |
//! | POST /ui/snapshots/{id}/apply|discard   | an admin's decision on a held snapshot        |
//! | GET/POST /ui/tokens, POST …/{id}/revoke | admins: the app's tokens, create, revoke      |
//! | GET /ui/assets/app.css, app.js          | the embedded stylesheet and script            |

pub mod assets;
mod error;
mod login;
mod queue;
mod reports;
mod session;
mod snapshots;
mod task;
mod tokens;
mod users;
mod view;

use askama::Template;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

pub use error::PageError;
pub use session::SignedIn;

use super::Route;

/// Path prefix of every UI route (and the session cookie's `Path`).
pub const BASE: &str = super::surface::UI_BASE;

pub(super) fn routes() -> Vec<Route> {
    [
        login::routes(),
        queue::routes(),
        task::routes(),
        users::routes(),
        reports::routes(),
        tokens::routes(),
        snapshots::routes(),
        assets::routes(),
    ]
    .concat()
}

/// The header of every signed-in page: app, who, navigation and the sign-out form.
#[derive(Debug, Clone)]
pub struct Nav {
    /// The app's display name.
    pub app_name: String,
    /// The token name the person signed in with.
    pub who: String,
    /// `agent` or `admin`.
    pub role: &'static str,
    /// The session's CSRF token, for the sign-out form.
    pub csrf: String,
    /// Which menu entry is current: `tasks`, `users`, `snapshots`, `reports` or `tokens`.
    pub section: &'static str,
    /// Seconds between automatic reloads (0: none).
    pub refresh: u32,
}

/// Renders a page with the headers every UI page carries: no caching (pages show live
/// state and a CSRF token) and a strict Content-Security-Policy (only our own script and
/// stylesheet run, so an injected tag in task text could not execute even if escaping
/// ever failed).
pub(crate) fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => html_response(status, html),
        Err(e) => {
            tracing::error!(error = %e, "rendering a page failed");
            PageError::Internal.into_response()
        }
    }
}

pub(super) fn html_response(status: StatusCode, html: String) -> Response {
    let mut res = (status, axum::response::Html(html)).into_response();
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    res
}

/// 303 See Other to a UI path (after a form post, so reloading does not post again).
pub(crate) fn see_other(location: &str) -> Response {
    let mut res = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res
}
