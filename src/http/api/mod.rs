//! The task API (`/api/v1`) for agents and admins: list, read, claim, complete and
//! release tasks of the token's app. Errors are `{"code": …, "message": …}` with stable
//! codes.

mod audit;
mod error;
mod governance;
mod oauth_clients;
pub(crate) mod snapshots;
mod tasks;
mod tickets;
mod tokens;
mod users;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

pub use error::ApiError;

/// The largest body any task API route takes (a completion with its attachments).
pub(crate) const LARGEST_BODY: usize = tasks::COMPLETE_BODY_LIMIT;

use super::auth::authenticate;
use super::{AppState, Route};
use crate::auth::{Action, Actor};

pub(super) fn routes() -> Vec<Route> {
    [
        tasks::routes(),
        users::routes(),
        audit::routes(),
        governance::routes(),
        snapshots::routes(),
        tickets::routes(),
        tokens::routes(),
        oauth_clients::routes(),
    ]
    .concat()
}

/// The caller of a task API route: an `agent` or `admin` token.
#[derive(Debug, Clone)]
pub struct ApiActor(pub Actor);

impl FromRequestParts<AppState> for ApiActor {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let actor = authenticate(state, parts).await?;
        if actor.role.may(Action::Read) {
            Ok(ApiActor(actor))
        } else {
            Err(ApiError::new(
                403,
                "forbidden_role",
                format!(
                    "{} cannot use the task API; use an agent or admin token",
                    actor.role.a_token()
                ),
            ))
        }
    }
}

/// Refuses an action the caller's role may not do (403 `forbidden_role`), by the rule the
/// web UI applies too ([`Role::may`](crate::auth::Role::may)).
pub(super) fn permit(actor: &Actor, action: Action) -> Result<(), ApiError> {
    if actor.role.may(action) {
        Ok(())
    } else {
        Err(ApiError::new(
            403,
            "forbidden_role",
            format!("this needs {} token", action.who()),
        ))
    }
}

/// A JSON body whose rejections are API errors. An empty body reads as `{}` so that
/// `curl -X POST` works for requests whose fields are all optional.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::new(e.status().as_u16(), "bad_body", e.body_text()))?;
        let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        serde_json::from_slice(bytes)
            .map(ApiJson)
            .map_err(|e| ApiError::new(400, "invalid_json", format!("invalid request body: {e}")))
    }
}
