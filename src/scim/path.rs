//! PATCH attribute paths (RFC 7644 §3.5.2):
//!
//! ```text
//! PATH = attrPath / valuePath [subAttr]
//! ```
//!
//! e.g. `userName`, `name.givenName`, `emails[type eq "work"].value`,
//! `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value`.
//! Parsing reuses the filter parser (`super::filter::Parser`), so the same
//! lexical rules, length limit and nesting limit apply, and errors are
//! [`FilterError`]s. Resolving the path against a schema is the PATCH
//! engine's job (`super::patch`).

use std::fmt;

use super::filter::{AttrPath, Filter, FilterError, Parser};

/// A parsed PATCH path. For `a.b` without a filter, `b` is in
/// `attr.sub_attr`; for `a[filter].b`, `b` is in `sub_attr`.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    pub attr: AttrPath,
    pub value_filter: Option<Filter>,
    pub sub_attr: Option<String>,
}

impl PatchPath {
    /// The sub-attribute addressed, wherever it was written
    /// (`name.givenName` or `emails[…].value`).
    pub fn target_sub_attr(&self) -> Option<&str> {
        self.sub_attr.as_deref().or(self.attr.sub_attr.as_deref())
    }
}

/// Parses a PATCH `path` (RFC 7644 §3.5.2). Surrounding whitespace is
/// tolerated.
pub fn parse_path(input: &str) -> Result<PatchPath, FilterError> {
    let mut p = Parser::new(input)?;
    let attr = p.parse_attr_path()?;
    p.skip_ws();
    let mut value_filter = None;
    let mut sub_attr = None;
    if p.peek() == Some('[') {
        if attr.sub_attr.is_some() {
            return Err(FilterError::InvalidAttrPath {
                pos: 0,
                path: attr.to_string(),
                reason: "a value filter cannot follow a sub-attribute",
            });
        }
        value_filter = Some(p.parse_bracket_filter()?);
        if p.eat('.') {
            sub_attr = Some(p.parse_attr_name()?);
        }
    }
    p.expect_end("end of path")?;
    Ok(PatchPath {
        attr,
        value_filter,
        sub_attr,
    })
}

impl fmt::Display for PatchPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.attr)?;
        if let Some(filter) = &self.value_filter {
            write!(f, "[{filter}]")?;
        }
        if let Some(sub) = &self.sub_attr {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::super::filter::{CompareOp, MAX_DEPTH, MAX_INPUT_LEN};
    use super::super::schema::ENTERPRISE_USER_SCHEMA;
    use super::*;
    use serde_json::json;

    fn ap(schema: Option<&str>, attr: &str, sub: Option<&str>) -> AttrPath {
        AttrPath {
            schema: schema.map(String::from),
            attr: attr.into(),
            sub_attr: sub.map(String::from),
        }
    }

    fn eq(attr: &str, v: serde_json::Value) -> Filter {
        Filter::Compare {
            path: AttrPath::simple(attr),
            op: CompareOp::Eq,
            value: v,
        }
    }

    fn roundtrip(s: &str) -> PatchPath {
        let pp = parse_path(s).unwrap();
        assert_eq!(parse_path(&pp.to_string()).unwrap(), pp, "{s}");
        pp
    }

    #[test]
    fn simple_and_sub_attribute() {
        let pp = roundtrip("userName");
        assert_eq!(pp.attr, ap(None, "userName", None));
        assert!(pp.value_filter.is_none() && pp.sub_attr.is_none());

        let pp = roundtrip("name.givenName");
        assert_eq!(pp.attr, ap(None, "name", Some("givenName")));
        assert_eq!(pp.sub_attr, None);
        assert_eq!(pp.target_sub_attr(), Some("givenName"));

        let pp = roundtrip("  members  ");
        assert_eq!(pp.attr, ap(None, "members", None));
    }

    #[test]
    fn value_paths() {
        let pp = roundtrip("emails[type eq \"work\"]");
        assert_eq!(pp.attr, ap(None, "emails", None));
        assert_eq!(pp.value_filter, Some(eq("type", json!("work"))));
        assert_eq!(pp.sub_attr, None);

        let pp = roundtrip("emails[type eq \"work\"].value");
        assert_eq!(pp.value_filter, Some(eq("type", json!("work"))));
        assert_eq!(pp.sub_attr.as_deref(), Some("value"));
        assert_eq!(pp.target_sub_attr(), Some("value"));

        let pp = roundtrip("members[value eq \"2819c223-7f76-453a-919d-413861904646\"]");
        assert_eq!(
            pp.value_filter,
            Some(eq("value", json!("2819c223-7f76-453a-919d-413861904646")))
        );

        let pp = roundtrip("addresses[type eq \"work\" and primary eq true].streetAddress");
        assert!(matches!(pp.value_filter, Some(Filter::And(..))));
        assert_eq!(pp.sub_attr.as_deref(), Some("streetAddress"));
    }

    #[test]
    fn urn_qualified() {
        let pp = roundtrip("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager");
        assert_eq!(pp.attr, ap(Some(ENTERPRISE_USER_SCHEMA), "manager", None));

        let pp =
            roundtrip("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value");
        assert_eq!(
            pp.attr,
            ap(Some(ENTERPRISE_USER_SCHEMA), "manager", Some("value"))
        );

        let pp = roundtrip("urn:ietf:params:scim:schemas:core:2.0:User:name.familyName");
        assert_eq!(
            pp.attr,
            ap(
                Some("urn:ietf:params:scim:schemas:core:2.0:User"),
                "name",
                Some("familyName")
            )
        );
    }

    #[test]
    fn errors() {
        let err = |s: &str| parse_path(s).unwrap_err();
        assert_eq!(err(""), FilterError::Empty);
        assert!(matches!(err("a.b.c"), FilterError::InvalidAttrPath { .. }));
        assert!(matches!(
            err("name.givenName[type eq 1]"),
            FilterError::InvalidAttrPath { .. }
        ));
        assert!(matches!(
            err("emails[type eq \"work\""),
            FilterError::UnexpectedEnd { .. }
        ));
        assert!(matches!(
            err("emails[type eq \"work\"]."),
            FilterError::UnexpectedEnd { .. }
        ));
        assert!(matches!(
            err("emails[type eq \"work\"].value.x"),
            FilterError::Unexpected { .. }
        ));
        assert!(matches!(
            err("emails[type[x eq 1]]"),
            FilterError::NestedValuePath { .. }
        ));
        assert!(matches!(
            err("userName eq \"x\""),
            FilterError::Unexpected { .. }
        ));
        assert!(matches!(err("emails[]"), FilterError::Unexpected { .. }));
        assert!(matches!(err("(userName)"), FilterError::Unexpected { .. }));
        assert!(matches!(err("ü"), FilterError::Unexpected { .. }));
        assert!(matches!(
            err(ENTERPRISE_USER_SCHEMA),
            FilterError::InvalidAttrPath { .. }
        ));
        let deep = format!(
            "emails[{}a pr{}]",
            "(".repeat(MAX_DEPTH),
            ")".repeat(MAX_DEPTH)
        );
        assert!(matches!(err(&deep), FilterError::TooDeep { .. }));
        let long = "a".repeat(MAX_INPUT_LEN + 1);
        assert!(matches!(err(&long), FilterError::TooLong { .. }));
    }

    #[test]
    fn garbage_never_panics() {
        for s in [
            "[",
            "]",
            ".",
            "..",
            "a[",
            "a]",
            "a[b eq \"\\",
            "\u{0}",
            "😀[",
            "a[b pr].😀",
            ":",
            "urn:",
        ] {
            let _ = parse_path(s);
        }
    }
}
