//! Placeholder: filled by the OpenAPI check.
