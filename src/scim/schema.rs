//! SCIM 2.0 schema definitions served by scimbridge, as static data.
//!
//! Owns the attribute characteristics of RFC 7643 §2 / §7 (type, mutability,
//! returned, uniqueness, caseExact, …) for the three schemas we serve:
//! core User (RFC 7643 §4.1), Enterprise User extension (§4.3) and Group
//! (§4.2), plus the common attributes of §3.1 (`id`, `externalId`, `meta`).
//! The definitions follow the §8.7.1 schema representation, with a few
//! deliberate deviations noted inline.
//!
//! It also owns the resource-type view ([`ResourceSchema`]) that filter
//! evaluation, PATCH and the SQL layer use to resolve attribute names
//! case-insensitively (RFC 7643 §2.1) to their canonical definitions, and the
//! `/Schemas` JSON rendering ([`to_json`], RFC 7643 §7).

use serde_json::{json, Map, Value};

/// Core User schema URN (RFC 7643 §4.1).
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// Core Group schema URN (RFC 7643 §4.2).
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// Enterprise User extension URN (RFC 7643 §4.3).
pub const ENTERPRISE_USER_SCHEMA: &str =
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// Schema URN of the schema representation itself (RFC 7643 §7).
pub const SCHEMA_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";

/// Attribute data type (RFC 7643 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrType {
    String,
    Boolean,
    Decimal,
    Integer,
    DateTime,
    Binary,
    Reference,
    Complex,
}

impl AttrType {
    /// The spelling used in the schema representation (RFC 7643 §7 "type").
    pub const fn as_str(self) -> &'static str {
        match self {
            AttrType::String => "string",
            AttrType::Boolean => "boolean",
            AttrType::Decimal => "decimal",
            AttrType::Integer => "integer",
            AttrType::DateTime => "dateTime",
            AttrType::Binary => "binary",
            AttrType::Reference => "reference",
            AttrType::Complex => "complex",
        }
    }
}

/// Attribute mutability (RFC 7643 §7 "mutability").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutability {
    ReadOnly,
    ReadWrite,
    Immutable,
    WriteOnly,
}

impl Mutability {
    pub const fn as_str(self) -> &'static str {
        match self {
            Mutability::ReadOnly => "readOnly",
            Mutability::ReadWrite => "readWrite",
            Mutability::Immutable => "immutable",
            Mutability::WriteOnly => "writeOnly",
        }
    }
}

/// When an attribute is returned (RFC 7643 §7 "returned").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returned {
    Always,
    Never,
    Default,
    Request,
}

impl Returned {
    pub const fn as_str(self) -> &'static str {
        match self {
            Returned::Always => "always",
            Returned::Never => "never",
            Returned::Default => "default",
            Returned::Request => "request",
        }
    }
}

/// Uniqueness of an attribute's value (RFC 7643 §7 "uniqueness").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uniqueness {
    None,
    Server,
    Global,
}

impl Uniqueness {
    pub const fn as_str(self) -> &'static str {
        match self {
            Uniqueness::None => "none",
            Uniqueness::Server => "server",
            Uniqueness::Global => "global",
        }
    }
}

/// One attribute definition (RFC 7643 §7 "attributes").
#[derive(Debug, PartialEq, Eq)]
pub struct Attribute {
    pub name: &'static str,
    pub kind: AttrType,
    pub multi_valued: bool,
    pub required: bool,
    pub case_exact: bool,
    pub mutability: Mutability,
    pub returned: Returned,
    pub uniqueness: Uniqueness,
    pub canonical_values: &'static [&'static str],
    pub reference_types: &'static [&'static str],
    pub sub_attributes: &'static [Attribute],
    pub description: &'static str,
}

impl Attribute {
    /// An attribute with the RFC 7643 §2.2 defaults: single-valued, optional,
    /// caseExact false, readWrite, returned default, uniqueness none.
    pub const fn new(name: &'static str, kind: AttrType, description: &'static str) -> Self {
        Attribute {
            name,
            kind,
            multi_valued: false,
            required: false,
            case_exact: false,
            mutability: Mutability::ReadWrite,
            returned: Returned::Default,
            uniqueness: Uniqueness::None,
            canonical_values: &[],
            reference_types: &[],
            sub_attributes: &[],
            description,
        }
    }
    pub const fn multi(self) -> Self {
        Attribute {
            multi_valued: true,
            ..self
        }
    }
    pub const fn required(self) -> Self {
        Attribute {
            required: true,
            ..self
        }
    }
    pub const fn case_exact(self) -> Self {
        Attribute {
            case_exact: true,
            ..self
        }
    }
    pub const fn mutability(self, mutability: Mutability) -> Self {
        Attribute { mutability, ..self }
    }
    pub const fn read_only(self) -> Self {
        self.mutability(Mutability::ReadOnly)
    }
    pub const fn immutable(self) -> Self {
        self.mutability(Mutability::Immutable)
    }
    pub const fn returned(self, returned: Returned) -> Self {
        Attribute { returned, ..self }
    }
    pub const fn uniqueness(self, uniqueness: Uniqueness) -> Self {
        Attribute { uniqueness, ..self }
    }
    pub const fn canonical(self, canonical_values: &'static [&'static str]) -> Self {
        Attribute {
            canonical_values,
            ..self
        }
    }
    pub const fn refs(self, reference_types: &'static [&'static str]) -> Self {
        Attribute {
            reference_types,
            ..self
        }
    }
    pub const fn subs(self, sub_attributes: &'static [Attribute]) -> Self {
        Attribute {
            sub_attributes,
            ..self
        }
    }

    /// Finds a sub-attribute by name, case-insensitively (RFC 7643 §2.1).
    pub fn sub(&self, name: &str) -> Option<&'static Attribute> {
        find_attr(self.sub_attributes, name)
    }
}

/// A schema (RFC 7643 §7).
#[derive(Debug, PartialEq, Eq)]
pub struct Schema {
    pub id: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub attributes: &'static [Attribute],
}

impl Schema {
    /// Finds a top-level attribute of this schema, case-insensitively.
    pub fn attr(&self, name: &str) -> Option<&'static Attribute> {
        find_attr(self.attributes, name)
    }
}

// Short constructors so the definitions below stay readable.
const fn string(name: &'static str, description: &'static str) -> Attribute {
    Attribute::new(name, AttrType::String, description)
}
const fn boolean(name: &'static str, description: &'static str) -> Attribute {
    Attribute::new(name, AttrType::Boolean, description)
}
const fn date_time(name: &'static str, description: &'static str) -> Attribute {
    Attribute::new(name, AttrType::DateTime, description)
}
const fn reference(
    name: &'static str,
    types: &'static [&'static str],
    description: &'static str,
) -> Attribute {
    Attribute::new(name, AttrType::Reference, description).refs(types)
}
const fn complex(
    name: &'static str,
    subs: &'static [Attribute],
    description: &'static str,
) -> Attribute {
    Attribute::new(name, AttrType::Complex, description).subs(subs)
}

/// Sub-attributes shared by the "value/display/type/primary" multi-valued
/// attributes (RFC 7643 §2.4), parameterised by the `type` canonical values.
macro_rules! multi_valued_subs {
    ($value:expr, $types:expr) => {
        &[
            $value,
            string(
                "display",
                "A human-readable name, primarily used for display purposes.",
            ),
            string("type", "A label indicating the attribute's function.").canonical($types),
            boolean(
                "primary",
                "A Boolean value indicating the 'primary' or preferred attribute value.",
            ),
        ]
    };
}

/// Common attributes of every resource (RFC 7643 §3.1). They belong to no
/// schema, so [`Resolved::schema`] is `""` for them.
pub static COMMON: &[Attribute] = &[
    string(
        "id",
        "Unique identifier for the SCIM resource as defined by the service provider.",
    )
    .case_exact()
    .read_only()
    .returned(Returned::Always)
    .uniqueness(Uniqueness::Server),
    string(
        "externalId",
        "Identifier for the resource as defined by the provisioning client.",
    )
    .case_exact(),
    complex(
        "meta",
        &[
            string(
                "resourceType",
                "The name of the resource type of the resource.",
            )
            .case_exact()
            .read_only(),
            date_time(
                "created",
                "The DateTime that the resource was added to the service provider.",
            )
            .read_only(),
            date_time(
                "lastModified",
                "The most recent DateTime that the details of this resource were updated.",
            )
            .read_only(),
            reference(
                "location",
                &["uri"],
                "The URI of the resource being returned.",
            )
            .case_exact()
            .read_only(),
            string("version", "The version of the resource being returned.")
                .case_exact()
                .read_only(),
        ],
        "A complex attribute containing resource metadata.",
    )
    .read_only(),
];

static USER_ATTRIBUTES: &[Attribute] = &[
    string("userName", "Unique identifier for the User, typically used by the user to directly authenticate to the service provider.")
        .required()
        .uniqueness(Uniqueness::Server),
    complex(
        "name",
        &[
            string("formatted", "The full name, including all middle names, titles, and suffixes as appropriate, formatted for display."),
            string("familyName", "The family name of the User, or last name in most Western languages."),
            string("givenName", "The given name of the User, or first name in most Western languages."),
            string("middleName", "The middle name(s) of the User."),
            string("honorificPrefix", "The honorific prefix(es) of the User, or title in most Western languages."),
            string("honorificSuffix", "The honorific suffix(es) of the User, or suffix in most Western languages."),
        ],
        "The components of the user's real name.",
    ),
    string("displayName", "The name of the User, suitable for display to end-users."),
    string("nickName", "The casual way to address the user in real life."),
    reference("profileUrl", &["external"], "A fully qualified URL pointing to a page representing the User's online profile."),
    string("title", "The user's title, such as \"Vice President\"."),
    string("userType", "Used to identify the relationship between the organization and the user."),
    string("preferredLanguage", "Indicates the User's preferred written or spoken language."),
    string("locale", "Used to indicate the User's default location for purposes of localizing items such as currency, date time format, or numerical representations."),
    string("timezone", "The User's time zone in the 'Olson' time zone database format, e.g., 'America/Los_Angeles'."),
    boolean("active", "A Boolean value indicating the User's administrative status."),
    string("password", "The User's cleartext password.")
        .mutability(Mutability::WriteOnly)
        .returned(Returned::Never),
    complex(
        "emails",
        multi_valued_subs!(
            string("value", "Email addresses for the user."),
            &["work", "home", "other"]
        ),
        "Email addresses for the user.",
    )
    .multi(),
    complex(
        "phoneNumbers",
        multi_valued_subs!(
            string("value", "Phone number of the User."),
            &["work", "home", "mobile", "fax", "pager", "other"]
        ),
        "Phone numbers for the User.",
    )
    .multi(),
    complex(
        "ims",
        multi_valued_subs!(
            string("value", "Instant messaging address for the User."),
            &["aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo"]
        ),
        "Instant messaging addresses for the User.",
    )
    .multi(),
    complex(
        "photos",
        multi_valued_subs!(
            reference("value", &["external"], "URL of a photo of the User."),
            &["photo", "thumbnail"]
        ),
        "URLs of photos of the User.",
    )
    .multi(),
    complex(
        "addresses",
        &[
            string("formatted", "The full mailing address, formatted for display or use with a mailing label."),
            string("streetAddress", "The full street address component."),
            string("locality", "The city or locality component."),
            string("region", "The state or region component."),
            string("postalCode", "The zip code or postal code component."),
            string("country", "The country name component."),
            string("type", "A label indicating the attribute's function.").canonical(&["work", "home", "other"]),
            boolean("primary", "A Boolean value indicating the 'primary' or preferred attribute value."),
        ],
        "A physical mailing address for this User.",
    )
    .multi(),
    complex(
        "groups",
        &[
            string("value", "The identifier of the User's group.").read_only(),
            reference("$ref", &["User", "Group"], "The URI of the corresponding 'Group' resource to which the user belongs.")
                .read_only(),
            string("display", "A human-readable name, primarily used for display purposes.").read_only(),
            string("type", "A label indicating the attribute's function.")
                .canonical(&["direct", "indirect"])
                .read_only(),
        ],
        "A list of groups to which the user belongs.",
    )
    .multi()
    .read_only(),
    complex(
        "entitlements",
        multi_valued_subs!(string("value", "The value of an entitlement."), &[]),
        "A list of entitlements for the User.",
    )
    .multi(),
    complex(
        "roles",
        multi_valued_subs!(string("value", "The value of a role."), &[]),
        "A list of roles for the User.",
    )
    .multi(),
    complex(
        "x509Certificates",
        multi_valued_subs!(
            Attribute::new("value", AttrType::Binary, "The value of an X.509 certificate."),
            &[]
        ),
        "A list of certificates issued to the User.",
    )
    .multi(),
];

/// Core User schema (RFC 7643 §4.1, §8.7.1).
pub static USER: Schema = Schema {
    id: USER_SCHEMA,
    name: "User",
    description: "User Account",
    attributes: USER_ATTRIBUTES,
};

/// Enterprise User extension (RFC 7643 §4.3, §8.7.1).
pub static ENTERPRISE_USER: Schema = Schema {
    id: ENTERPRISE_USER_SCHEMA,
    name: "EnterpriseUser",
    description: "Enterprise User",
    attributes: &[
        string("employeeNumber", "Numeric or alphanumeric identifier assigned to a person, typically based on order of hire or association with an organization."),
        string("costCenter", "Identifies the name of a cost center."),
        string("organization", "Identifies the name of an organization."),
        string("division", "Identifies the name of a division."),
        string("department", "Identifies the name of a department."),
        complex(
            "manager",
            &[
                string("value", "The id of the SCIM resource representing the User's manager."),
                reference("$ref", &["User"], "The URI of the SCIM resource representing the User's manager."),
                string("displayName", "The displayName of the User's manager.").read_only(),
            ],
            "The User's manager.",
        ),
    ],
};

/// Core Group schema (RFC 7643 §4.2, §8.7.1).
pub static GROUP: Schema = Schema {
    id: GROUP_SCHEMA,
    name: "Group",
    description: "Group",
    attributes: &[
        // RFC 7643 §8.7.1 says uniqueness "none"; we enforce unique group
        // names server-side, so we advertise "server".
        string("displayName", "A human-readable name for the Group.")
            .required()
            .uniqueness(Uniqueness::Server),
        complex(
            "members",
            &[
                string("value", "Identifier of the member of this Group.").immutable(),
                reference(
                    "$ref",
                    &["User", "Group"],
                    "The URI corresponding to a SCIM resource that is a member of this Group.",
                )
                .immutable(),
                // Not in §8.7.1 but sent by every IdP; kept as sent and echoed
                // back (scim2-tester and Microsoft's collection expect that).
                string("display", "A human-readable name for the member."),
                string(
                    "type",
                    "A label indicating the type of resource, e.g., 'User' or 'Group'.",
                )
                .canonical(&["User", "Group"])
                .immutable(),
            ],
            "A list of members of the Group.",
        )
        .multi(),
    ],
};

/// Schema URN of scimbridge's read-only provisioning status extension on Users.
pub const PROVISIONING_SCHEMA: &str =
    "urn:scimbridge:params:scim:schemas:extension:provisioning:1.0:User";

/// Whether the app has caught up with the IdP for this user: computed by the server,
/// read-only, filterable (`urn:…:provisioning:1.0:User:state eq "pending"`).
pub static PROVISIONING: Schema = Schema {
    id: PROVISIONING_SCHEMA,
    name: "Provisioning",
    description: "Whether the app behind scimbridge has caught up with this user",
    attributes: &[
        string(
            "state",
            "pending: a task is planned or in progress; synced: the app has what the IdP wants; \
             failed: the last task failed and the user needs attention; rejected: an admin \
             rejected the change, the app stays as it was.",
        )
        .canonical(&["pending", "synced", "failed", "rejected"])
        .read_only()
        .returned(Returned::Request),
        string(
            "openTaskId",
            "The id of the user's open or in-progress task, if any.",
        )
        .read_only()
        .returned(Returned::Request),
        date_time(
            "lastConfirmed",
            "When the app last confirmed this user's account.",
        )
        .read_only()
        .returned(Returned::Request),
        boolean(
            "needsAttention",
            "A task for this user failed and no later task succeeded.",
        )
        .read_only()
        .returned(Returned::Request),
        date_time(
            "lastVerified",
            "When the export of a snapshot of the app's user list last showed this user's \
             account as the IdP wants it (absent: never).",
        )
        .read_only()
        .returned(Returned::Request),
        boolean(
            "drift",
            "The last applied snapshot of the app's user list showed this user's account \
             differing from what the IdP wants (absent: no snapshot has been applied).",
        )
        .read_only()
        .returned(Returned::Request),
    ],
};

/// All schemas this server knows, in `/Schemas` listing order.
pub static ALL_SCHEMAS: &[&Schema] = &[&USER, &GROUP, &ENTERPRISE_USER, &PROVISIONING];

/// Finds an attribute in a list by name, case-insensitively (RFC 7643 §2.1).
pub fn find_attr(attrs: &'static [Attribute], name: &str) -> Option<&'static Attribute> {
    attrs.iter().find(|a| a.name.eq_ignore_ascii_case(name))
}

/// Finds a known schema by URN, case-insensitively.
pub fn find_schema(urn: &str) -> Option<&'static Schema> {
    ALL_SCHEMAS
        .iter()
        .copied()
        .find(|s| s.id.eq_ignore_ascii_case(urn))
}

/// Renders one attribute definition as in RFC 7643 §7.
fn attribute_json(a: &Attribute) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), json!(a.name));
    m.insert("type".into(), json!(a.kind.as_str()));
    m.insert("multiValued".into(), json!(a.multi_valued));
    m.insert("description".into(), json!(a.description));
    m.insert("required".into(), json!(a.required));
    m.insert("caseExact".into(), json!(a.case_exact));
    m.insert("mutability".into(), json!(a.mutability.as_str()));
    m.insert("returned".into(), json!(a.returned.as_str()));
    m.insert("uniqueness".into(), json!(a.uniqueness.as_str()));
    if !a.canonical_values.is_empty() {
        m.insert("canonicalValues".into(), json!(a.canonical_values));
    }
    if a.kind == AttrType::Reference {
        m.insert("referenceTypes".into(), json!(a.reference_types));
    }
    if a.kind == AttrType::Complex {
        let subs: Vec<Value> = a.sub_attributes.iter().map(attribute_json).collect();
        m.insert("subAttributes".into(), Value::Array(subs));
    }
    Value::Object(m)
}

/// Renders a schema resource (RFC 7643 §7) for `GET /Schemas/{id}`.
/// `location_base` is the service base URL without a trailing slash.
pub fn to_json(schema: &Schema, location_base: &str) -> Value {
    let base = location_base.trim_end_matches('/');
    let attributes: Vec<Value> = schema.attributes.iter().map(attribute_json).collect();
    json!({
        "schemas": [SCHEMA_SCHEMA],
        "id": schema.id,
        "name": schema.name,
        "description": schema.description,
        "attributes": attributes,
        "meta": {
            "resourceType": "Schema",
            "location": format!("{base}/Schemas/{}", schema.id),
        },
    })
}

/// A resolved attribute reference: which schema it lives in and its
/// canonical definitions (whose `name`s give the schema spelling).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved {
    /// Schema id the attribute belongs to; `""` for common attributes.
    pub schema: &'static str,
    pub attr: &'static Attribute,
    pub sub: Option<&'static Attribute>,
}

impl Resolved {
    /// True when the attribute lives in an extension object
    /// (`doc["urn:…"][attr]`) rather than at the top level.
    pub fn is_extension(&self, rs: &ResourceSchema) -> bool {
        rs.extensions.iter().any(|e| e.id == self.schema)
    }
}

/// A resource type's schemas (RFC 7643 §6): one core schema plus extensions.
#[derive(Debug)]
pub struct ResourceSchema {
    pub core: &'static Schema,
    pub extensions: &'static [&'static Schema],
}

/// Users: core User plus the Enterprise User extension.
pub static USER_RESOURCE: ResourceSchema = ResourceSchema {
    core: &USER,
    extensions: &[&ENTERPRISE_USER, &PROVISIONING],
};

/// Groups: core Group, no extensions.
pub static GROUP_RESOURCE: ResourceSchema = ResourceSchema {
    core: &GROUP,
    extensions: &[],
};

impl ResourceSchema {
    /// Finds the extension with this URN (case-insensitive).
    pub fn extension(&self, urn: &str) -> Option<&'static Schema> {
        self.extensions
            .iter()
            .copied()
            .find(|s| s.id.eq_ignore_ascii_case(urn))
    }

    /// True when `urn` names this resource type's core schema.
    pub fn is_core(&self, urn: &str) -> bool {
        self.core.id.eq_ignore_ascii_case(urn)
    }

    /// Resolves `[urn:]attr[.sub]` case-insensitively (RFC 7643 §2.1).
    ///
    /// Without a URN, the common attributes (§3.1) and the core schema are
    /// searched (extension attributes must be URN-qualified, RFC 7644
    /// §3.10). With the core URN, common attributes are found too. Returns
    /// `None` for unknown schemas/attributes, or a sub-attribute of a
    /// non-complex attribute.
    pub fn resolve(
        &self,
        schema_urn: Option<&str>,
        attr: &str,
        sub_attr: Option<&str>,
    ) -> Option<Resolved> {
        let (schema_id, found) = match schema_urn {
            Some(urn) if !self.is_core(urn) => {
                let ext = self.extension(urn)?;
                (ext.id, ext.attr(attr)?)
            }
            _ => match find_attr(COMMON, attr) {
                Some(a) => ("", a),
                None => (self.core.id, self.core.attr(attr)?),
            },
        };
        let sub = match sub_attr {
            Some(s) => Some(found.sub(s)?),
            None => None,
        };
        Some(Resolved {
            schema: schema_id,
            attr: found,
            sub,
        })
    }
}

/// Splits a URN-qualified attribute reference into `(schema URN, rest)`.
///
/// `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value`
/// → `(Some("urn:…:enterprise:2.0:User"), "manager.value")`. Known schema ids
/// are matched case-insensitively first (the returned URN keeps the input's
/// spelling); unknown URNs split at the last `':'` (attribute names cannot
/// contain `':'`). Input equal to a known schema id yields `(Some(id), "")`;
/// input not starting with `urn:` yields `(None, full)`.
pub fn split_urn(full: &str) -> (Option<&str>, &str) {
    let is_urn = full
        .get(..4)
        .is_some_and(|p| p.eq_ignore_ascii_case("urn:"));
    if !is_urn {
        return (None, full);
    }
    for s in ALL_SCHEMAS {
        let n = s.id.len();
        if let Some(prefix) = full.get(..n) {
            if prefix.eq_ignore_ascii_case(s.id) {
                let rest = &full[n..];
                if rest.is_empty() {
                    return (Some(prefix), "");
                }
                if let Some(attr) = rest.strip_prefix(':') {
                    return (Some(prefix), attr);
                }
            }
        }
    }
    match full.rfind(':') {
        Some(i) => (Some(&full[..i]), &full[i + 1..]),
        None => (None, full),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    fn all_attrs(attrs: &'static [Attribute], out: &mut Vec<&'static Attribute>) {
        for a in attrs {
            out.push(a);
            all_attrs(a.sub_attributes, out);
        }
    }

    #[test]
    fn schema_ids() {
        assert_eq!(USER.id, USER_SCHEMA);
        assert_eq!(GROUP.id, GROUP_SCHEMA);
        assert_eq!(ENTERPRISE_USER.id, ENTERPRISE_USER_SCHEMA);
    }

    #[test]
    fn user_core_attributes_follow_rfc() {
        let user_name = USER.attr("username").unwrap();
        assert_eq!(user_name.name, "userName");
        assert!(user_name.required);
        assert!(!user_name.case_exact);
        assert_eq!(user_name.uniqueness, Uniqueness::Server);

        let password = USER.attr("password").unwrap();
        assert_eq!(password.mutability, Mutability::WriteOnly);
        assert_eq!(password.returned, Returned::Never);

        let active = USER.attr("active").unwrap();
        assert_eq!(active.kind, AttrType::Boolean);

        let emails = USER.attr("emails").unwrap();
        assert!(emails.multi_valued);
        assert_eq!(emails.kind, AttrType::Complex);
        assert_eq!(
            emails.sub("type").unwrap().canonical_values,
            &["work", "home", "other"]
        );
        assert_eq!(emails.sub("PRIMARY").unwrap().kind, AttrType::Boolean);

        let groups = USER.attr("groups").unwrap();
        assert_eq!(groups.mutability, Mutability::ReadOnly);
        assert!(groups.sub("$ref").is_some());

        let names: Vec<_> = USER
            .attr("name")
            .unwrap()
            .sub_attributes
            .iter()
            .map(|a| a.name)
            .collect();
        assert_eq!(
            names,
            [
                "formatted",
                "familyName",
                "givenName",
                "middleName",
                "honorificPrefix",
                "honorificSuffix"
            ]
        );
        for n in [
            "displayName",
            "nickName",
            "profileUrl",
            "title",
            "userType",
            "preferredLanguage",
            "locale",
            "timezone",
            "phoneNumbers",
            "ims",
            "photos",
            "addresses",
            "entitlements",
            "roles",
            "x509Certificates",
        ] {
            assert!(USER.attr(n).is_some(), "{n}");
        }
    }

    #[test]
    fn enterprise_and_group_attributes() {
        let manager = ENTERPRISE_USER.attr("manager").unwrap();
        assert_eq!(
            manager.sub("displayName").unwrap().mutability,
            Mutability::ReadOnly
        );
        assert_eq!(
            manager.sub("value").unwrap().mutability,
            Mutability::ReadWrite
        );
        for n in [
            "employeeNumber",
            "costCenter",
            "organization",
            "division",
            "department",
        ] {
            assert!(ENTERPRISE_USER.attr(n).is_some(), "{n}");
        }
        let dn = GROUP.attr("displayName").unwrap();
        assert!(dn.required);
        assert_eq!(dn.uniqueness, Uniqueness::Server);
        let members = GROUP.attr("members").unwrap();
        assert!(members.multi_valued);
        assert_eq!(
            members.sub("value").unwrap().mutability,
            Mutability::Immutable
        );
        assert_eq!(
            members.sub("display").unwrap().mutability,
            Mutability::ReadWrite,
            "echoed as the IdP sent it"
        );
        assert_eq!(
            members.sub("type").unwrap().canonical_values,
            &["User", "Group"]
        );
    }

    #[test]
    fn common_attributes() {
        let id = find_attr(COMMON, "ID").unwrap();
        assert_eq!(id.mutability, Mutability::ReadOnly);
        assert_eq!(id.returned, Returned::Always);
        assert!(id.case_exact);
        let ext = find_attr(COMMON, "externalId").unwrap();
        assert!(ext.case_exact);
        assert_eq!(ext.mutability, Mutability::ReadWrite);
        let meta = find_attr(COMMON, "meta").unwrap();
        assert_eq!(meta.mutability, Mutability::ReadOnly);
        assert_eq!(meta.sub("lastmodified").unwrap().kind, AttrType::DateTime);
    }

    #[test]
    fn definitions_are_consistent() {
        let mut attrs = Vec::new();
        all_attrs(COMMON, &mut attrs);
        for s in ALL_SCHEMAS {
            all_attrs(s.attributes, &mut attrs);
        }
        for a in attrs {
            assert!(!a.description.is_empty(), "{}", a.name);
            assert_eq!(
                a.kind == AttrType::Complex,
                !a.sub_attributes.is_empty(),
                "{}",
                a.name
            );
            assert_eq!(
                a.kind == AttrType::Reference,
                !a.reference_types.is_empty(),
                "{}",
                a.name
            );
        }
    }

    #[test]
    fn to_json_renders_rfc7643_section7() {
        let v = to_json(&USER, "https://example.com/scim/v2/");
        assert_eq!(v["schemas"], json!([SCHEMA_SCHEMA]));
        assert_eq!(v["id"], USER_SCHEMA);
        assert_eq!(v["name"], "User");
        assert_eq!(v["meta"]["resourceType"], "Schema");
        assert_eq!(
            v["meta"]["location"],
            format!("https://example.com/scim/v2/Schemas/{USER_SCHEMA}")
        );
        let attrs = v["attributes"].as_array().unwrap();
        let user_name = attrs.iter().find(|a| a["name"] == "userName").unwrap();
        assert_eq!(user_name["type"], "string");
        assert_eq!(user_name["multiValued"], false);
        assert_eq!(user_name["required"], true);
        assert_eq!(user_name["caseExact"], false);
        assert_eq!(user_name["mutability"], "readWrite");
        assert_eq!(user_name["returned"], "default");
        assert_eq!(user_name["uniqueness"], "server");
        assert!(user_name.get("canonicalValues").is_none());
        assert!(user_name.get("subAttributes").is_none());

        let emails = attrs.iter().find(|a| a["name"] == "emails").unwrap();
        assert_eq!(emails["type"], "complex");
        assert_eq!(emails["multiValued"], true);
        let subs = emails["subAttributes"].as_array().unwrap();
        let ty = subs.iter().find(|a| a["name"] == "type").unwrap();
        assert_eq!(ty["canonicalValues"], json!(["work", "home", "other"]));

        let profile = attrs.iter().find(|a| a["name"] == "profileUrl").unwrap();
        assert_eq!(profile["type"], "reference");
        assert_eq!(profile["referenceTypes"], json!(["external"]));

        let password = attrs.iter().find(|a| a["name"] == "password").unwrap();
        assert_eq!(password["mutability"], "writeOnly");
        assert_eq!(password["returned"], "never");

        let g = to_json(&GROUP, "http://h");
        let members = &g["attributes"][1];
        assert_eq!(members["name"], "members");
        assert_eq!(members["subAttributes"][1]["name"], "$ref");
        assert_eq!(
            members["subAttributes"][1]["referenceTypes"],
            json!(["User", "Group"])
        );
        assert_eq!(members["subAttributes"][0]["mutability"], "immutable");
        let e = to_json(&ENTERPRISE_USER, "http://h");
        assert_eq!(
            e["attributes"][5]["subAttributes"][2]["mutability"],
            "readOnly"
        );
    }

    #[test]
    fn resolve_case_insensitive_core_and_common() {
        let r = USER_RESOURCE.resolve(None, "USERNAME", None).unwrap();
        assert_eq!(r.schema, USER_SCHEMA);
        assert_eq!(r.attr.name, "userName");
        assert!(r.sub.is_none());

        let r = USER_RESOURCE
            .resolve(None, "name", Some("GIVENname"))
            .unwrap();
        assert_eq!(r.attr.name, "name");
        assert_eq!(r.sub.unwrap().name, "givenName");

        let r = USER_RESOURCE.resolve(None, "id", None).unwrap();
        assert_eq!(r.schema, "");
        let r = USER_RESOURCE
            .resolve(None, "meta", Some("lastModified"))
            .unwrap();
        assert_eq!(r.sub.unwrap().kind, AttrType::DateTime);

        let r = USER_RESOURCE
            .resolve(
                Some("URN:ietf:params:scim:schemas:core:2.0:user"),
                "userName",
                None,
            )
            .unwrap();
        assert_eq!(r.attr.name, "userName");

        let r = GROUP_RESOURCE
            .resolve(None, "MEMBERS", Some("value"))
            .unwrap();
        assert_eq!(r.schema, GROUP_SCHEMA);
        assert_eq!(r.sub.unwrap().name, "value");
    }

    #[test]
    fn resolve_extension_and_failures() {
        let r = USER_RESOURCE
            .resolve(Some(ENTERPRISE_USER_SCHEMA), "Manager", Some("VALUE"))
            .unwrap();
        assert_eq!(r.schema, ENTERPRISE_USER_SCHEMA);
        assert_eq!(r.attr.name, "manager");
        assert_eq!(r.sub.unwrap().name, "value");
        assert!(r.is_extension(&USER_RESOURCE));
        let r = USER_RESOURCE
            .resolve(
                Some("urn:ietf:params:scim:schemas:extension:ENTERPRISE:2.0:User"),
                "employeenumber",
                None,
            )
            .unwrap();
        assert_eq!(r.attr.name, "employeeNumber");

        // Extension attributes must be qualified.
        assert!(USER_RESOURCE
            .resolve(None, "employeeNumber", None)
            .is_none());
        assert!(USER_RESOURCE.resolve(None, "nope", None).is_none());
        assert!(USER_RESOURCE.resolve(None, "userName", Some("x")).is_none());
        assert!(USER_RESOURCE.resolve(None, "name", Some("nope")).is_none());
        assert!(USER_RESOURCE
            .resolve(Some("urn:x:y"), "userName", None)
            .is_none());
        assert!(GROUP_RESOURCE
            .resolve(Some(ENTERPRISE_USER_SCHEMA), "manager", None)
            .is_none());
        assert!(GROUP_RESOURCE.resolve(None, "userName", None).is_none());
    }

    #[test]
    fn split_urn_cases() {
        assert_eq!(
            split_urn("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value"),
            (Some(ENTERPRISE_USER_SCHEMA), "manager.value")
        );
        assert_eq!(
            split_urn("URN:ietf:params:scim:schemas:core:2.0:User:name.familyName"),
            (
                Some("URN:ietf:params:scim:schemas:core:2.0:User"),
                "name.familyName"
            )
        );
        assert_eq!(split_urn("userName"), (None, "userName"));
        assert_eq!(
            split_urn("urn:example:ext:1.0:Thing:attr.sub"),
            (Some("urn:example:ext:1.0:Thing"), "attr.sub")
        );
        assert_eq!(
            split_urn(ENTERPRISE_USER_SCHEMA),
            (Some(ENTERPRISE_USER_SCHEMA), "")
        );
        assert_eq!(split_urn(""), (None, ""));
        assert_eq!(split_urn("urn"), (None, "urn"));
        // Non-ASCII must not panic on char boundaries.
        assert_eq!(split_urn("urn:ü"), (Some("urn"), "ü"));
        assert_eq!(split_urn("ürn:x"), (None, "ürn:x"));
        assert_eq!(
            split_urn("urn:ietf:params:scim:schemas:core:2.0:Useü"),
            (Some("urn:ietf:params:scim:schemas:core:2.0"), "Useü")
        );
    }

    #[test]
    fn find_schema_case_insensitive() {
        assert_eq!(
            find_schema(&GROUP_SCHEMA.to_uppercase()).unwrap().id,
            GROUP_SCHEMA
        );
        assert!(find_schema("urn:nope").is_none());
    }
}
