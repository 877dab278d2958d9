//! Evidence files on the HTTP surfaces: the checks a file passes before it is attached to
//! a completion (the task API's base64 files and the web UI's uploads alike) and the one
//! way a stored file is sent back. Each surface words the refusals itself.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

use crate::reconcile::evidence::{MAX_ATTACHMENTS, MAX_ATTACHMENT_BYTES};

/// Longest file name kept, in bytes.
pub const MAX_FILENAME_BYTES: usize = 200;

/// Why a file cannot be attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unfit {
    /// More than [`MAX_ATTACHMENTS`] files.
    TooMany,
    /// Larger than [`MAX_ATTACHMENT_BYTES`]; the size is given.
    TooLarge(usize),
    /// An empty or path-like name (or a longer one than [`MAX_FILENAME_BYTES`]), or a media
    /// type that is not `type/subtype` fit for a header.
    BadNameOrType,
}

/// Checks the number of files of one completion.
pub fn check_count(files: usize) -> Result<(), Unfit> {
    if files > MAX_ATTACHMENTS {
        Err(Unfit::TooMany)
    } else {
        Ok(())
    }
}

/// Checks one file: its size, then its name and media type.
pub fn check_file(filename: &str, content_type: &str, size: usize) -> Result<(), Unfit> {
    if size > MAX_ATTACHMENT_BYTES {
        return Err(Unfit::TooLarge(size));
    }
    let name_ok = !filename.trim().is_empty()
        && filename.len() <= MAX_FILENAME_BYTES
        && !filename.contains(['/', '\\'])
        // Control characters (NUL among them, which Postgres cannot store) are no name.
        && !filename.chars().any(char::is_control);
    let type_ok = content_type
        .split_once('/')
        .is_some_and(|(t, s)| !t.is_empty() && !s.is_empty())
        && HeaderValue::from_str(content_type).is_ok();
    if name_ok && type_ok {
        Ok(())
    } else {
        Err(Unfit::BadNameOrType)
    }
}

/// A stored file as a download. Evidence files are untrusted content: always an
/// attachment (never rendered inline), no type sniffing, sandboxed should a browser
/// render it anyway (no script, no same-origin access), and never cached.
pub fn download(filename: &str, content_type: &str, data: Vec<u8>) -> Response {
    let mut res = data.into_response();
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    let safe: String = filename
        .chars()
        .filter(|c| c.is_ascii_graphic() && *c != '"')
        .collect();
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{safe}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_checked_for_size_then_name_and_type() {
        assert_eq!(check_file("a.png", "image/png", 10), Ok(()));
        assert_eq!(
            check_file("a.png", "image/png", MAX_ATTACHMENT_BYTES + 1),
            Err(Unfit::TooLarge(MAX_ATTACHMENT_BYTES + 1))
        );
        for (name, ty) in [
            (" ", "image/png"),
            ("a/b.png", "image/png"),
            ("a\\b.png", "image/png"),
            ("a.png", "png"),
            ("a.png", "image/"),
            ("a.png", "image/png\n"),
        ] {
            assert_eq!(
                check_file(name, ty, 1),
                Err(Unfit::BadNameOrType),
                "{name:?} {ty:?}"
            );
        }
        assert_eq!(
            check_file(&"x".repeat(MAX_FILENAME_BYTES + 1), "text/plain", 1),
            Err(Unfit::BadNameOrType)
        );
        assert_eq!(check_count(MAX_ATTACHMENTS), Ok(()));
        assert_eq!(check_count(MAX_ATTACHMENTS + 1), Err(Unfit::TooMany));
    }
}
