//! `GET /`: a small page for whoever opens the server's address in a browser, pointing to
//! the admin web UI, the SCIM base URL an IdP is given and where the setup guides are. It
//! carries no data and needs no token, like the health probes.

use axum::http::{header, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::Route;

pub(super) fn routes() -> Vec<Route> {
    vec![("/", Method::GET, get(home))]
}

/// The page. Static text: nothing from the request is echoed into it.
const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>scimbridge</title>
<link rel="stylesheet" href="/ui/assets/app.css">
</head>
<body>
<main>
<h1>scimbridge is running</h1>
<p>A SCIM 2.0 façade for apps without SCIM: your IdP provisions the app here, and people
or agents work the resulting tasks.</p>
<ul>
<li><a href="/ui">Admin web UI</a> (<code>/ui</code>): the task queue, users and reports.
Sign in with an <strong>admin</strong> or <strong>agent</strong> token.</li>
<li>SCIM base URL for Okta or Microsoft Entra ID: this server's address followed by
<code>/scim/v2</code> (for example <code>https://scim.example.com/scim/v2</code>), with a
<strong>scim</strong> token as the bearer token. Everything under <code>/scim/v2</code>
needs that token.</li>
<li>Task API for agents and scripts: <code>/api/v1</code> (agent or admin token),
described in <code>openapi.yaml</code>.</li>
<li>Health: <a href="/healthz">/healthz</a> (process up), <a href="/readyz">/readyz</a>
(database reachable).</li>
</ul>
<p>Setup guides come with scimbridge: <code>README.md</code> (running it, tokens,
approvals), <code>docs/okta.md</code> and <code>docs/entra.md</code> (connecting the IdP,
screen by screen) and <code>docs/operations.md</code>.</p>
</main>
</body>
</html>
"#;

/// Renders [`PAGE`] with the UI's headers: a strict Content-Security-Policy (our own
/// stylesheet only) and no framing.
async fn home() -> Response {
    let mut res = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'self'; frame-ancestors 'none'"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    res
}
