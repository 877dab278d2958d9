//! Discovery documents (RFC 7644 §4, RFC 7643 §5–§7): what this server supports, said
//! exactly. Anything declared here is exercised by tests.

use serde_json::{json, Value};

use super::schema::{self, ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, USER_SCHEMA};
use super::{DEFAULT_PAGE_SIZE, MAX_BULK_OPERATIONS, MAX_PAGE_SIZE};

/// The server's limits that /ServiceProviderConfig declares.
#[derive(Debug, Clone, Copy)]
pub struct Declared {
    /// The request body limit, which bounds bulk requests too.
    pub max_payload: usize,
}

/// RFC 7643 §5, exactly its attributes. It has none for the PATCH operation and
/// attribute value limits (`--patch-max-operations`, `--max-attribute-values`): those are
/// documented and named in their errors' `detail` instead, since strict clients
/// (scim2-models) refuse a ServiceProviderConfig with attributes §5 does not define.
pub fn service_provider_config(base: &str, limits: Declared) -> Value {
    let Declared { max_payload } = limits;
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "documentationUri": "https://github.com/scimbridge/scimbridge#readme",
        "patch": {"supported": true},
        "bulk": {"supported": true, "maxOperations": MAX_BULK_OPERATIONS, "maxPayloadSize": max_payload},
        "filter": {"supported": true, "maxResults": MAX_PAGE_SIZE},
        "changePassword": {"supported": false},
        "sort": {"supported": true},
        "etag": {"supported": true},
        // RFC 9865 §4: both paging methods. Cursors are positions in creation order and
        // never expire; cursorTimeout is the minimum validity promised (a day).
        "pagination": {
            "cursor": true,
            "index": true,
            "defaultPaginationMethod": "index",
            "defaultPageSize": DEFAULT_PAGE_SIZE,
            "maxPageSize": MAX_PAGE_SIZE,
            "cursorTimeout": 86_400
        },
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "Bearer token",
            "description": "A static bearer token created with `scimbridge token create --role scim`, \
                            sent as `Authorization: Bearer <token>`.",
            "primary": true
        }],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": format!("{base}/ServiceProviderConfig")
        }
    })
}

/// RFC 7643 §6: the resource types served.
pub fn resource_types(base: &str) -> Vec<Value> {
    vec![
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
            "id": "User",
            "name": "User",
            "endpoint": "/Users",
            "description": "User Account",
            "schema": USER_SCHEMA,
            // The provisioning status extension (schema::PROVISIONING) is listed in
            // /Schemas but not here: it is computed and read-only, returned on request.
            "schemaExtensions": [{"schema": ENTERPRISE_USER_SCHEMA, "required": false}],
            "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/User")}
        }),
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
            "id": "Group",
            "name": "Group",
            "endpoint": "/Groups",
            "description": "Group",
            "schema": GROUP_SCHEMA,
            "schemaExtensions": [],
            "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/Group")}
        }),
    ]
}

/// RFC 7643 §7: the schemas served.
pub fn schemas(base: &str) -> Vec<Value> {
    schema::ALL_SCHEMAS
        .iter()
        .map(|s| schema::to_json(s, base))
        .collect()
}
