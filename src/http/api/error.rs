//! The task API's one error mapping: `{"code": "...", "message": "..."}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::error::Error;
use crate::http::auth::AuthError;
use crate::http::surface::{rate_limited, Refusal, MISDIRECTED, NUL_REFUSED};

/// A failed task API request.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// `Retry-After` of a 429.
    retry_after: Option<u64>,
}

impl ApiError {
    /// An error with a stable machine-readable code.
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            code,
            message: message.into(),
            retry_after: None,
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::NotFound(what) => ApiError::new(404, "not_found", format!("{what} not found")),
            Error::Uniqueness(m) => ApiError::new(409, "conflict", m),
            Error::Scim(e) => ApiError::new(e.status, "invalid_request", e.detail),
            Error::PreconditionFailed(m) => ApiError::new(412, "precondition_failed", m),
            Error::TaskConflict { code, message } => ApiError::new(409, code, message),
            Error::Invalid { code, message } => ApiError::new(400, code, message),
            Error::Misconfigured(m) => {
                tracing::error!(error = %m, "server misconfigured");
                ApiError::new(500, "internal", m)
            }
            Error::Unavailable(err) => {
                tracing::warn!(error = %err, "database unavailable");
                ApiError::new(
                    503,
                    "unavailable",
                    "the service is temporarily unavailable; retry later",
                )
            }
            Error::Db(err) => {
                tracing::error!(error = ?err, "internal error");
                ApiError::new(
                    500,
                    "internal",
                    "internal error; quote the X-Request-Id response header when reporting it",
                )
            }
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Missing => {
                ApiError::new(401, "unauthenticated", "send Authorization: Bearer <token>")
            }
            AuthError::Invalid => ApiError::new(
                401,
                "invalid_token",
                "the bearer token is not valid (unknown or revoked)",
            ),
            AuthError::Store(e) => e.into(),
            AuthError::Throttled(t) => Refusal::RateLimited(t).into(),
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::NoRoute { path } => {
                ApiError::new(404, "no_route", format!("no endpoint at {path}"))
            }
            Refusal::MethodNotAllowed => ApiError::new(
                405,
                "method_not_allowed",
                "this endpoint does not support this method",
            ),
            Refusal::Timeout { finishing: false } => {
                ApiError::new(503, "timeout", "the request took too long; retry later")
            }
            Refusal::Timeout { finishing: true } => ApiError::new(
                503,
                "timeout",
                "the request took too long and is still being completed; read the result \
                 before retrying",
            ),
            Refusal::Fault => ApiError::new(
                500,
                "internal",
                "internal error; quote the X-Request-Id response header when reporting it",
            ),
            Refusal::RateLimited(t) => ApiError {
                retry_after: Some(t.retry_after),
                ..ApiError::new(429, "rate_limited", rate_limited(t.scope))
            },
            Refusal::Nul { .. } => ApiError::new(400, "invalid_character", NUL_REFUSED),
            Refusal::MisdirectedHost => ApiError::new(421, "misdirected_request", MISDIRECTED),
            Refusal::BodyTooLarge { limit } => ApiError::new(
                413,
                "bad_body",
                format!("the request body exceeds {limit} bytes"),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = (
            self.status,
            Json(json!({"code": self.code, "message": self.message})),
        )
            .into_response();
        match self.status {
            StatusCode::UNAUTHORIZED => {
                res.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"scimbridge\""),
                );
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                res.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            StatusCode::TOO_MANY_REQUESTS => {
                res.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(self.retry_after.unwrap_or(1)),
                );
            }
            _ => {}
        }
        res
    }
}
