//! The SCIM 2.0 protocol, pure (RFC 7643 resources and schemas, RFC 7644 operations):
//! schemas, resource normalisation, the filter grammar, PATCH paths and the PATCH engine,
//! list responses, discovery documents and the error model. No IO, no axum, no sqlx.

pub mod discovery;
pub mod error;
pub mod filter;
pub mod list;
pub mod members;
pub mod patch;
pub mod path;
pub mod resource;
pub mod schema;

pub use error::{ScimError, ScimType};

/// Media type of every SCIM response body (RFC 7644 §3.1 / §8.1).
pub const SCIM_CONTENT_TYPE: &str = "application/scim+json";
/// `schemas` value of a ListResponse (RFC 7644 §3.4.2).
pub const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
/// `schemas` value of an error body (RFC 7644 §3.12).
pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
/// `schemas` value of a PATCH request (RFC 7644 §3.5.2).
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// Page size when the client sends no `count` (RFC 7644 §3.4.2.4 leaves it to us).
pub const DEFAULT_PAGE_SIZE: i64 = 100;
/// Most operations one bulk request may carry (declared as `bulk.maxOperations`).
pub const MAX_BULK_OPERATIONS: usize = 1000;
/// Largest page served; larger `count` values are capped (and declared as
/// `filter.maxResults` in /ServiceProviderConfig).
pub const MAX_PAGE_SIZE: i64 = 500;
