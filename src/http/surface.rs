//! Which surface a path belongs to, and the answer to a request refused outside every
//! surface's handlers (no such route, wrong method, past the deadline): the one place
//! that decides which error format a path gets. Each surface turns a [`Refusal`] into its
//! own error type (`From<Refusal>`), so the wording stays with the surface and the choice
//! stays here.

use axum::response::{IntoResponse, Response};

use super::ratelimit::Scope;

/// Where the SCIM surface is mounted (RFC 7644 §3.13: the base URI of the service).
pub const SCIM_BASE: &str = "/scim/v2";
/// Where the admin web UI is mounted (and the session cookie's `Path`).
pub const UI_BASE: &str = "/ui";
/// Where the OAuth 2.0 token endpoint lives.
pub const OAUTH_BASE: &str = "/oauth";

/// The surfaces, each with its own error format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// `/scim/v2`: RFC 7644 §3.12 error bodies.
    Scim,
    /// `/api/v1`, the health probes and anything unknown: `{"code","message"}`.
    Api,
    /// `/ui`: HTML pages.
    Web,
    /// `/oauth`: RFC 6749 §5.2 error bodies.
    OAuth,
}

impl Surface {
    /// The surface of a request path.
    pub fn of(path: &str) -> Surface {
        let under = |base: &str| {
            path.strip_prefix(base)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        };
        if path.starts_with(SCIM_BASE) {
            // Any `/scim/v2…` path, as SCIM clients may append odd suffixes to the base.
            Surface::Scim
        } else if under(UI_BASE) {
            Surface::Web
        } else if under(OAUTH_BASE) {
            Surface::OAuth
        } else {
            Surface::Api
        }
    }
}

/// Why a request was refused before a handler of its surface answered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No route at this path (404; `/scim/v2/Me` is 501).
    NoRoute {
        /// The request path, named in the answer.
        path: String,
    },
    /// The route exists but not with this method (405).
    MethodNotAllowed,
    /// The request outlived `--request-timeout-secs` (503 with `Retry-After`).
    Timeout {
        /// Its handler goes on to its end (a one-connection store, see `http::detach`):
        /// what it does may still be committed. Otherwise it was dropped and its
        /// transaction rolled back: nothing it did was committed.
        finishing: bool,
    },
    /// The handler failed without an answer (it panicked): 500.
    Fault,
    /// The caller is over a rate limit (429 with `Retry-After`).
    RateLimited(super::ratelimit::Throttled),
    /// The path, query or body holds U+0000 (400; `filter`: it is in a SCIM filter).
    Nul {
        /// The NUL is in a filter (SCIM `invalidFilter`, RFC 7644 §3.12).
        filter: bool,
    },
    /// The `Host` header names a host not in `--allowed-hosts` (421).
    MisdirectedHost,
    /// A body without a length streamed past the largest any route takes (413).
    BodyTooLarge {
        /// That largest, in bytes.
        limit: usize,
    },
}

/// The words of a refusal for a `Host` not in `--allowed-hosts`.
pub const MISDIRECTED: &str =
    "this server does not answer for the host named in the Host header; use its public address";

/// The words of a NUL refusal, shared by the surfaces' messages.
pub const NUL_REFUSED: &str =
    "the request holds the character U+0000 (NUL), which no text may contain";

/// The words of a rate-limit refusal on the API and SCIM surfaces, by the limit.
pub fn rate_limited(scope: Scope) -> &'static str {
    match scope {
        Scope::Credential => "too many requests for this token; retry after the Retry-After delay",
        Scope::Address | Scope::Client => {
            "too many failed authentications from this address; retry after the Retry-After \
             delay (tokens that authenticated lately still work)"
        }
    }
}

/// The answer to a refused request, in the error format of the surface of `path`.
pub fn refuse(path: &str, refusal: Refusal) -> Response {
    match Surface::of(path) {
        Surface::Scim => super::scim::ScimReply::from(refusal).into_response(),
        Surface::Api => super::api::ApiError::from(refusal).into_response(),
        Surface::Web => super::web::PageError::from(refusal).into_response(),
        Surface::OAuth => super::oauth::OAuthError::from(refusal).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_belong_to_their_surface() {
        for (path, want) in [
            ("/scim/v2", Surface::Scim),
            ("/scim/v2/Users/7", Surface::Scim),
            ("/ui", Surface::Web),
            ("/ui/tasks/1/claim", Surface::Web),
            ("/uix", Surface::Api),
            ("/oauth/token", Surface::OAuth),
            ("/api/v1/tasks", Surface::Api),
            ("/healthz", Surface::Api),
            ("/", Surface::Api),
        ] {
            assert_eq!(Surface::of(path), want, "{path}");
        }
    }
}
