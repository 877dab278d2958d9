//! Where clients reach this server: `--public-url`, else `http://` and the request's
//! `Host` header. It is the base of `Location` headers and `meta.location` (RFC 7644
//! §3.1) and the audience of OAuth access tokens.

use axum::http::{header, HeaderMap};

use super::surface::SCIM_BASE;
use crate::config::Config;

/// The public root URL without a trailing slash, e.g. `https://scim.example.com`.
pub fn public_root(config: &Config, headers: &HeaderMap) -> String {
    match &config.public_url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("localhost");
            format!("http://{host}")
        }
    }
}

/// The absolute SCIM base URL, e.g. `https://scim.example.com/scim/v2`.
pub fn scim_base(config: &Config, headers: &HeaderMap) -> String {
    format!("{}{SCIM_BASE}", public_root(config, headers))
}
