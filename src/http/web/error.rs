//! The web UI's one error mapping: every failure becomes an HTML page in words a person
//! understands (or, for a missing session, a redirect to the sign-in page). Internals are
//! logged, never shown.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::{html_response, see_other, view::encode};
use crate::error::Error;
use crate::http::surface::Refusal;

/// Why a session ended without its person signing out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Sessions last a fixed time.
    Expired,
    /// The token it was started with was revoked.
    Revoked,
}

impl Ended {
    /// The sign-in page's query parameter that says so.
    fn query(self) -> &'static str {
        match self {
            Ended::Expired => "expired=1",
            Ended::Revoked => "revoked=1",
        }
    }
}

/// A failed UI request.
#[derive(Debug)]
pub enum PageError {
    /// No live session: back to the sign-in page, then on to `next`.
    SignIn {
        /// The page to return to after signing in (GET requests only).
        next: Option<String>,
        /// Why a session ended, when it did (the sign-in page says so).
        ended: Option<Ended>,
    },
    /// The request itself was unusable (a malformed form, an unsupported body): its status.
    Rejected {
        /// 4xx status.
        status: StatusCode,
        /// What to do instead.
        message: String,
    },
    /// A form without the right CSRF token, or a token that may not sign in.
    Forbidden(String),
    /// Nothing by that id in the session's app.
    NotFound(String),
    /// The action does not fit the current state (shown on the page it came from when
    /// possible; this is the fallback).
    Conflict(String),
    /// The server is set up wrong; the message says what whoever runs it must fix.
    Misconfigured(String),
    /// The database is unreachable; retry.
    Unavailable,
    /// A bug; logged with the request.
    Internal,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    nav: Option<super::Nav>,
    status: u16,
    heading: &'static str,
    message: String,
}

impl PageError {
    fn status(&self) -> StatusCode {
        match self {
            PageError::SignIn { .. } => StatusCode::SEE_OTHER,
            PageError::Rejected { status, .. } => *status,
            PageError::Forbidden(_) => StatusCode::FORBIDDEN,
            PageError::NotFound(_) => StatusCode::NOT_FOUND,
            PageError::Conflict(_) => StatusCode::CONFLICT,
            PageError::Misconfigured(_) => StatusCode::INTERNAL_SERVER_ERROR,
            PageError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            PageError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<Error> for PageError {
    fn from(e: Error) -> Self {
        match e {
            Error::NotFound(what) => PageError::NotFound(format!(
                "There is no {what} in this app. It may belong to another app, or the link is wrong."
            )),
            Error::Uniqueness(m) | Error::PreconditionFailed(m) => PageError::Conflict(m),
            Error::Scim(e) => PageError::Rejected {
                status: StatusCode::BAD_REQUEST,
                message: e.detail,
            },
            // Store messages are sentences already; pages that know the task word
            // these better before they get here (see `task::explain`).
            Error::TaskConflict { message, .. } => PageError::Conflict(message),
            Error::Invalid { message, .. } => PageError::Rejected {
                status: StatusCode::BAD_REQUEST,
                message,
            },
            Error::Misconfigured(m) => {
                tracing::error!(error = %m, "server misconfigured");
                PageError::Misconfigured(m)
            }
            Error::Unavailable(err) => {
                tracing::warn!(error = %err, "database unavailable");
                PageError::Unavailable
            }
            Error::Db(err) => {
                tracing::error!(error = ?err, "internal error");
                PageError::Internal
            }
        }
    }
}

impl From<Refusal> for PageError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::NoRoute { path } => {
                PageError::NotFound(format!("There is no page at {path}."))
            }
            Refusal::MethodNotAllowed => PageError::Rejected {
                status: StatusCode::METHOD_NOT_ALLOWED,
                message: "This page cannot be used that way. Go back and use its buttons.".into(),
            },
            Refusal::Timeout { finishing: false } => PageError::Rejected {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message: "That took too long, so nothing was changed. Try again in a moment."
                    .into(),
            },
            Refusal::Timeout { finishing: true } => PageError::Rejected {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message: "That is taking too long; it may still be done in a moment. Reload \
                          the page to see before you try again."
                    .into(),
            },
            Refusal::Fault => PageError::Internal,
            Refusal::RateLimited(_) => PageError::Rejected {
                status: StatusCode::TOO_MANY_REQUESTS,
                message: "Too many requests in a short time, so nothing was changed. Wait a \
                          moment and try again."
                    .into(),
            },
            Refusal::Nul { .. } => PageError::Rejected {
                status: StatusCode::BAD_REQUEST,
                message: "The text holds the character U+0000 (NUL), which cannot be stored, \
                          so nothing was changed. Remove it and try again."
                    .into(),
            },
            Refusal::MisdirectedHost => PageError::Rejected {
                status: StatusCode::MISDIRECTED_REQUEST,
                message: "This server does not answer for the address you used. Use its \
                          public address."
                    .into(),
            },
            Refusal::BodyTooLarge { limit } => PageError::Rejected {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                message: format!("The form is larger than {limit} bytes, so nothing was changed."),
            },
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = self.status();
        let (heading, message) = match self {
            PageError::SignIn { next, ended } => {
                let mut to = String::from("/ui/login");
                let mut sep = '?';
                if let Some(e) = ended {
                    to.push('?');
                    to.push_str(e.query());
                    sep = '&';
                }
                if let Some(next) = next {
                    to.push(sep);
                    to.push_str("next=");
                    to.push_str(&encode(&next));
                }
                return see_other(&to);
            }
            PageError::Rejected { message, .. } => ("That did not work", message),
            PageError::Forbidden(m) => ("Not allowed", m),
            PageError::NotFound(m) => ("Not found", m),
            PageError::Conflict(m) => ("That cannot be done now", m),
            PageError::Misconfigured(m) => ("The server is set up wrong", m),
            PageError::Unavailable => (
                "Temporarily unavailable",
                "The database cannot be reached right now. Wait a minute and try again.".into(),
            ),
            PageError::Internal => (
                "Something went wrong",
                "Something went wrong on our side and it was logged. Try again; if it keeps \
                 happening, tell whoever runs scimbridge the time it happened."
                    .into(),
            ),
        };
        let page = ErrorPage {
            nav: None,
            status: status.as_u16(),
            heading,
            message,
        };
        match page.render() {
            Ok(html) => html_response(status, html),
            // Never recurse into the error page: plain text is the last resort.
            Err(e) => {
                tracing::error!(error = %e, "rendering the error page failed");
                (status, "error").into_response()
            }
        }
    }
}
