//! The NUL check at the edge: U+0000 is refused in every request before any handler
//! sees it (issue #14 item 4). Postgres cannot store NUL in `text` or `jsonb`, so a NUL
//! that got through became a 500 deep inside a write; refusing it here, once for every
//! surface, makes it a 400 in the surface's own format (SCIM: RFC 7644 §3.12
//! `invalidFilter` in a filter, `invalidValue` elsewhere) and changes nothing.
//!
//! What is checked: the path and query string (a NUL can only arrive percent-encoded,
//! RFC 3986 §2.1), JSON bodies (only as the escape `\u0000`, RFC 8259 §7: a raw control
//! character is not JSON) and form bodies (`%00`). Multipart forms carry files, which
//! may hold any byte: the web UI's form reader checks their text fields itself
//! ([`has_nul`]). Snapshot uploads stream and are left to their own readers.

use axum::body::Body;
use axum::extract::Request;
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;

use super::surface::{refuse, Refusal, SCIM_BASE};

/// Whether a text holds U+0000.
pub fn has_nul(text: &str) -> bool {
    text.contains('\0')
}

/// Whether percent-encoded text (a path, a query string, a form body) decodes to a NUL.
/// Every `%` starts an escape (RFC 3986 §2.1), so `%00` appears exactly where one
/// decodes to NUL (`%2500` is the text "%00", and holds no `%00`).
fn encoded_has_nul(raw: &[u8]) -> bool {
    raw.contains(&0) || raw.windows(3).any(|w| w == b"%00")
}

/// Whether a JSON text holds a NUL in a string (or raw, which is not JSON anyway). The
/// walk skips each escape whole, so an escaped backslash followed by `u0000` (the text
/// `\u0000`) is not taken for one.
fn json_has_nul(raw: &[u8]) -> bool {
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        match b {
            0 => return true,
            b'\\' => {
                if raw.get(i + 1) == Some(&b'u') && raw.get(i + 2..i + 6) == Some(b"0000") {
                    return true;
                }
                i += 2;
            }
            _ => i += 1,
        }
    }
    false
}

/// Whether a query string's `filter` parameter (matched case-insensitively, RFC 7644
/// §3.4.2) holds a NUL: SCIM names that `invalidFilter` rather than `invalidValue`.
fn nul_in_filter(query: &str) -> bool {
    query.split('&').any(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        k.eq_ignore_ascii_case("filter") && encoded_has_nul(v.as_bytes())
    })
}

/// How a body is checked, by its media type.
enum BodyKind {
    Json,
    Form,
    Unchecked,
}

fn body_kind(req: &Request) -> BodyKind {
    if super::is_snapshot_upload(req.uri().path()) {
        return BodyKind::Unchecked;
    }
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if ct.starts_with("multipart/") {
        BodyKind::Unchecked
    } else if ct.starts_with("application/x-www-form-urlencoded") {
        BodyKind::Form
    } else {
        // JSON, or no type at all (SCIM clients that omit it still send JSON).
        BodyKind::Json
    }
}

/// Refuses a request with a NUL in its path, query or body. `max_body` bounds what is
/// read here: a body announced larger is passed on unread, for its route's own limit to
/// refuse (413); one that streams past it is refused here with the same 413.
pub async fn refuse_nul(max_body: usize, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or_default();
    if encoded_has_nul(path.as_bytes()) || encoded_has_nul(query.as_bytes()) {
        let filter = nul_in_filter(query);
        return refuse(&path, Refusal::Nul { filter });
    }
    let kind = body_kind(&req);
    if matches!(kind, BodyKind::Unchecked) {
        return next.run(req).await;
    }
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if announced.is_some_and(|n| n > max_body) {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, max_body).await {
        Ok(b) => b,
        Err(_) => return refuse(&path, Refusal::BodyTooLarge { limit: max_body }),
    };
    let nul = match kind {
        BodyKind::Json => json_has_nul(&bytes),
        BodyKind::Form => encoded_has_nul(&bytes),
        BodyKind::Unchecked => false,
    };
    if nul {
        // A `.search` body is a query (RFC 7644 §3.4.3): its NUL is in the filter.
        let filter = path.starts_with(SCIM_BASE) && path.ends_with("/.search");
        return refuse(&path, Refusal::Nul { filter });
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_nul_is_the_escape_not_an_escaped_backslash() {
        assert!(json_has_nul(br#"{"a":"x\u0000y"}"#));
        assert!(json_has_nul(b"{\"a\":\"x\0\"}"));
        assert!(!json_has_nul(br#"{"a":"x\\u0000y"}"#));
        assert!(json_has_nul(br#"{"a":"x\\\u0000y"}"#));
        assert!(!json_has_nul(br#"{"a":"\u0001 \n \\ \""}"#));
        assert!(!json_has_nul(br"\"));
    }

    #[test]
    fn encoded_nul_is_percent_zero_zero() {
        assert!(encoded_has_nul(b"q=a%00b"));
        assert!(!encoded_has_nul(b"q=a%2500b"));
        assert!(!encoded_has_nul(b"q=a%20b"));
        assert!(nul_in_filter("count=2&FILTER=userName%20eq%20%22a%00%22"));
        assert!(!nul_in_filter("attributes=%00&filter=x"));
    }
}
