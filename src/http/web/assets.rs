//! The UI's stylesheet and script, compiled into the binary (no build step, nothing to
//! deploy beside it). Pages link them with `?v=<content hash>`, so a versioned URL may be
//! cached for a year: a new binary with other contents links a new URL.

use std::sync::LazyLock;

use axum::extract::Query;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use crate::http::Route;

const CSS: &str = include_str!("../../../templates/assets/app.css");
const JS: &str = include_str!("../../../templates/assets/app.js");

/// First 12 hex digits of the SHA-256 of an asset: its version.
fn version(body: &str) -> String {
    hex::encode(crate::auth::hash_token(body))[..12].to_owned()
}

static CSS_VERSION: LazyLock<String> = LazyLock::new(|| version(CSS));
static JS_VERSION: LazyLock<String> = LazyLock::new(|| version(JS));
static CSS_URL: LazyLock<String> =
    LazyLock::new(|| format!("/ui/assets/app.css?v={}", *CSS_VERSION));
static JS_URL: LazyLock<String> = LazyLock::new(|| format!("/ui/assets/app.js?v={}", *JS_VERSION));

/// The stylesheet's versioned URL (called by `templates/base.html`).
pub fn css_url() -> &'static str {
    CSS_URL.as_str()
}

/// The script's versioned URL (called by `templates/base.html`).
pub fn js_url() -> &'static str {
    JS_URL.as_str()
}

pub(super) fn routes() -> Vec<Route> {
    vec![
        ("/ui/assets/app.css", Method::GET, get(css)),
        ("/ui/assets/app.js", Method::GET, get(js)),
    ]
}

#[derive(Debug, Deserialize)]
struct AssetQuery {
    v: Option<String>,
}

async fn css(Query(q): Query<AssetQuery>, headers: HeaderMap) -> Response {
    asset(CSS, &CSS_VERSION, "text/css; charset=utf-8", q, &headers)
}

async fn js(Query(q): Query<AssetQuery>, headers: HeaderMap) -> Response {
    asset(
        JS,
        &JS_VERSION,
        "text/javascript; charset=utf-8",
        q,
        &headers,
    )
}

fn asset(
    body: &'static str,
    version: &str,
    content_type: &'static str,
    q: AssetQuery,
    headers: &HeaderMap,
) -> Response {
    let etag = format!("\"{version}\"");
    // The versioned URL never changes content; an unversioned one is revalidated hourly.
    let cache = if q.v.as_deref() == Some(version) {
        "public, max-age=31536000, immutable"
    } else {
        "public, max-age=3600"
    };
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut res = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, content_type)], body).into_response()
    };
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    res
}
