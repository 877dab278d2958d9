//! The SCIM surface's one error mapping: every failure becomes an RFC 7644 §3.12 body
//! with `Content-Type: application/scim+json`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::error::Error;
use crate::http::auth::AuthError;
use crate::http::surface::{rate_limited, Refusal, MISDIRECTED, NUL_REFUSED};
use crate::scim::{ScimError, ScimType};

/// A failed SCIM request.
#[derive(Debug)]
pub struct ScimReply(ScimError, Option<u64>);

impl ScimReply {
    /// The SCIM error inside (bulk responses embed it per operation).
    pub fn into_error(self) -> ScimError {
        self.0
    }

    /// The `scimType` of the error, if any.
    pub fn scim_type(&self) -> Option<ScimType> {
        self.0.scim_type
    }
}

impl From<ScimError> for ScimReply {
    fn from(e: ScimError) -> Self {
        ScimReply(e, None)
    }
}

impl From<Error> for ScimReply {
    fn from(e: Error) -> Self {
        let status = |status: u16, scim_type: Option<ScimType>, detail: String| ScimError {
            status,
            scim_type,
            detail,
        };
        ScimReply::from(match e {
            Error::NotFound(what) => ScimError::not_found(format!("{what} not found")),
            Error::Uniqueness(detail) => ScimError::uniqueness(detail),
            Error::Scim(e) => e,
            Error::PreconditionFailed(detail) => status(412, None, detail),
            Error::TaskConflict { message, .. } => status(409, None, message),
            Error::Invalid { message, .. } => status(400, Some(ScimType::InvalidValue), message),
            Error::Misconfigured(detail) => {
                tracing::error!(error = %detail, "server misconfigured");
                status(500, None, detail)
            }
            Error::Unavailable(err) => {
                tracing::warn!(error = %err, "database unavailable");
                status(
                    503,
                    None,
                    "the service is temporarily unavailable; retry later".into(),
                )
            }
            Error::Db(err) => {
                tracing::error!(error = ?err, "internal error");
                status(
                    500,
                    None,
                    "internal error; quote the X-Request-Id response header when reporting it"
                        .into(),
                )
            }
        })
    }
}

impl From<AuthError> for ScimReply {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Missing => ScimReply::from(ScimError {
                status: 401,
                scim_type: None,
                detail: "authentication required: send Authorization: Bearer <token>".into(),
            }),
            AuthError::Invalid => ScimReply::from(ScimError {
                status: 401,
                scim_type: None,
                detail: "the bearer token is not valid (unknown or revoked)".into(),
            }),
            AuthError::Store(e) => e.into(),
            AuthError::Throttled(t) => Refusal::RateLimited(t).into(),
        }
    }
}

impl From<Refusal> for ScimReply {
    fn from(r: Refusal) -> Self {
        let retry_after = match &r {
            Refusal::RateLimited(t) => Some(t.retry_after),
            _ => None,
        };
        let error = match r {
            Refusal::NoRoute { path } if path.trim_end_matches('/').ends_with("/Me") => ScimError {
                status: 501,
                scim_type: None,
                detail: "/Me is not supported: tokens belong to IdPs, not to users".into(),
            },
            Refusal::NoRoute { path } => {
                ScimError::not_found(format!("no SCIM endpoint at {path}"))
            }
            Refusal::MethodNotAllowed => ScimError {
                status: 405,
                scim_type: None,
                detail: "this endpoint does not support this method".into(),
            },
            Refusal::Timeout { finishing: false } => ScimError {
                status: 503,
                scim_type: None,
                detail: "the request took too long; retry later".into(),
            },
            Refusal::Timeout { finishing: true } => ScimError {
                status: 503,
                scim_type: None,
                detail: "the request took too long and is still being completed; read the \
                         resource before retrying"
                    .into(),
            },
            Refusal::Fault => ScimError {
                status: 500,
                scim_type: None,
                detail: "internal error; quote the X-Request-Id response header when reporting it"
                    .into(),
            },
            // RFC 7644 §3.12 has no scimType for 429; the status says it.
            Refusal::RateLimited(t) => ScimError {
                status: 429,
                scim_type: None,
                detail: rate_limited(t.scope).into(),
            },
            Refusal::Nul { filter: true } => ScimError::bad_request(
                ScimType::InvalidFilter,
                format!("{NUL_REFUSED} (in the filter)"),
            ),
            Refusal::Nul { filter: false } => {
                ScimError::bad_request(ScimType::InvalidValue, NUL_REFUSED)
            }
            // RFC 7644 §3.12 has no scimType for it; the status says it.
            Refusal::MisdirectedHost => ScimError {
                status: 421,
                scim_type: None,
                detail: MISDIRECTED.into(),
            },
            Refusal::BodyTooLarge { limit } => ScimError {
                status: 413,
                scim_type: None,
                detail: format!("the request body exceeds {limit} bytes"),
            },
        };
        ScimReply(error, retry_after)
    }
}

impl IntoResponse for ScimReply {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut res = super::reply(status, &self.0.body(), None, None);
        let h = res.headers_mut();
        match status {
            StatusCode::UNAUTHORIZED => {
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"scimbridge\""),
                );
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            StatusCode::TOO_MANY_REQUESTS => {
                h.insert(header::RETRY_AFTER, HeaderValue::from(self.1.unwrap_or(1)));
            }
            _ => {}
        }
        res
    }
}
