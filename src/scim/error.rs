//! The SCIM error model (RFC 7644 §3.12): an HTTP status, an optional `scimType` and a
//! human-readable `detail`. The HTTP surface turns this into the response body.

use serde_json::{json, Value};

/// The `scimType` values of RFC 7644 §3.12 Table 9 that this server emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScimType {
    /// The filter syntax was invalid or the filter cannot be evaluated.
    InvalidFilter,
    /// The request would return more results than the server allows.
    TooMany,
    /// A unique attribute value is already taken.
    Uniqueness,
    /// An attempt to modify an immutable or read-only attribute.
    Mutability,
    /// The request body is not valid JSON or not a valid SCIM message.
    InvalidSyntax,
    /// The PATCH path is malformed or names no attribute.
    InvalidPath,
    /// The PATCH path matched no value (or was required and missing).
    NoTarget,
    /// A value is missing, of the wrong type, or not allowed.
    InvalidValue,
    /// The requested SCIM version is not supported.
    InvalidVers,
    /// A `cursor` this server did not issue (RFC 9865 §2.3).
    InvalidCursor,
}

impl ScimType {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ScimType::InvalidFilter => "invalidFilter",
            ScimType::TooMany => "tooMany",
            ScimType::Uniqueness => "uniqueness",
            ScimType::Mutability => "mutability",
            ScimType::InvalidSyntax => "invalidSyntax",
            ScimType::InvalidPath => "invalidPath",
            ScimType::NoTarget => "noTarget",
            ScimType::InvalidValue => "invalidValue",
            ScimType::InvalidVers => "invalidVers",
            ScimType::InvalidCursor => "invalidCursor",
        }
    }
}

/// A SCIM error ready to be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {detail}")]
pub struct ScimError {
    /// HTTP status code.
    pub status: u16,
    /// RFC 7644 §3.12 error type, for 400 (and 409) responses.
    pub scim_type: Option<ScimType>,
    /// What went wrong, in words the IdP admin can act on.
    pub detail: String,
}

impl ScimError {
    /// A 400 with the given `scimType`.
    pub fn bad_request(scim_type: ScimType, detail: impl Into<String>) -> Self {
        ScimError {
            status: 400,
            scim_type: Some(scim_type),
            detail: detail.into(),
        }
    }

    /// A 404 for a resource id.
    pub fn not_found(detail: impl Into<String>) -> Self {
        ScimError {
            status: 404,
            scim_type: None,
            detail: detail.into(),
        }
    }

    /// A 409 uniqueness conflict (RFC 7644 §3.3).
    pub fn uniqueness(detail: impl Into<String>) -> Self {
        ScimError {
            status: 409,
            scim_type: Some(ScimType::Uniqueness),
            detail: detail.into(),
        }
    }

    /// The RFC 7644 §3.12 body; `status` is a string there.
    pub fn body(&self) -> Value {
        let mut body = json!({
            "schemas": [super::ERROR_SCHEMA],
            "status": self.status.to_string(),
            "detail": self.detail,
        });
        if let (Some(t), Some(obj)) = (self.scim_type, body.as_object_mut()) {
            obj.insert("scimType".into(), Value::String(t.as_str().into()));
        }
        body
    }
}

impl From<super::filter::FilterError> for ScimError {
    fn from(e: super::filter::FilterError) -> Self {
        ScimError::bad_request(ScimType::InvalidFilter, e.to_string())
    }
}

impl From<super::patch::PatchError> for ScimError {
    fn from(e: super::patch::PatchError) -> Self {
        let t = match e.scim_type() {
            "invalidPath" => ScimType::InvalidPath,
            "noTarget" => ScimType::NoTarget,
            "mutability" => ScimType::Mutability,
            "invalidSyntax" => ScimType::InvalidSyntax,
            _ => ScimType::InvalidValue,
        };
        ScimError::bad_request(t, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_follows_rfc7644_3_12() {
        let b = ScimError::uniqueness("userName taken").body();
        assert_eq!(b["status"], "409");
        assert_eq!(b["scimType"], "uniqueness");
        assert_eq!(b["schemas"][0], crate::scim::ERROR_SCHEMA);
        let nf = ScimError::not_found("nope").body();
        assert!(nf.get("scimType").is_none());
    }
}
