//! The `Host` check (issue #14 item 8): without `--public-url`, `Location`, `meta.location`
//! and the audience of OAuth access tokens follow the request's `Host` header, so a
//! client naming another host would get links (and tokens) for it. With
//! `--allowed-hosts`, a request naming any other host is refused with 421 Misdirected
//! Request (RFC 9110 §15.5.20: this server will not answer for that authority), in its
//! surface's error format, before anything else looks at it. The health probes are
//! exempt: load balancers and orchestrators call them by address.

use axum::extract::Request;
use axum::http::header::HOST;
use axum::middleware::Next;
use axum::response::Response;

use super::surface::{refuse, Refusal};

/// Whether `host` (a `Host` header value) is one of `allowed`. An entry without a port
/// allows any port; with one, only that port. Case-insensitive (RFC 9110 §4.2.3).
pub fn is_allowed(allowed: &[String], host: &str) -> bool {
    let host = host.trim().to_ascii_lowercase();
    let name = strip_port(&host);
    allowed.iter().any(|a| {
        let a = a.trim().to_ascii_lowercase();
        if strip_port(&a) == a {
            a == name
        } else {
            a == host
        }
    })
}

/// `host:port` → `host`; an IPv6 literal keeps its brackets.
fn strip_port(host: &str) -> &str {
    match host.rfind(':') {
        Some(i) if !host[i..].contains(']') => &host[..i],
        _ => host,
    }
}

/// Refuses a request whose `Host` is not allowed (no check when the list is empty).
pub async fn check_host(
    allowed: std::sync::Arc<Vec<String>>,
    req: Request,
    next: Next,
) -> Response {
    if allowed.is_empty() || matches!(req.uri().path(), "/healthz" | "/readyz") {
        return next.run(req).await;
    }
    let host = req
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_owned()));
    match host {
        Some(h) if is_allowed(&allowed, &h) => next.run(req).await,
        _ => refuse(req.uri().path(), Refusal::MisdirectedHost),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_match_by_name_or_name_and_port() {
        let allowed = vec!["scim.example.com".to_owned(), "10.0.0.5:8080".to_owned()];
        for (host, ok) in [
            ("scim.example.com", true),
            ("SCIM.Example.com:443", true),
            ("10.0.0.5:8080", true),
            ("10.0.0.5:9090", false),
            ("10.0.0.5", false),
            ("evil.example", false),
            ("scim.example.com.evil.example", false),
            ("", false),
        ] {
            assert_eq!(is_allowed(&allowed, host), ok, "{host}");
        }
        assert!(is_allowed(&["[::1]".to_owned()], "[::1]:8080"));
    }
}
