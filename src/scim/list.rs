//! List queries and responses (RFC 7644 §3.4.2): paging parameters and the
//! ListResponse envelope.

use serde_json::{json, Value};

use super::filter::{parse_filter, AttrPath, Filter};
use super::path::parse_path;
use super::{ScimError, ScimType, DEFAULT_PAGE_SIZE, LIST_RESPONSE, MAX_PAGE_SIZE};

/// A validated page request (RFC 7644 §3.4.2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// 1-based index of the first result.
    pub start_index: i64,
    /// Number of results wanted (0: only `totalResults`).
    pub count: i64,
}

impl Default for Page {
    fn default() -> Self {
        Page {
            start_index: 1,
            count: DEFAULT_PAGE_SIZE,
        }
    }
}

impl Page {
    /// Parses `startIndex`/`count` as sent. RFC 7644 §3.4.2.4: a startIndex below 1 is
    /// read as 1 and a negative count as 0; counts above our maximum are capped.
    /// Non-integers are a 400 invalidValue rather than a guess.
    pub fn parse(start_index: Option<&str>, count: Option<&str>) -> Result<Page, ScimError> {
        let int = |name: &str, v: Option<&str>, default: i64| -> Result<i64, ScimError> {
            match v.map(str::trim) {
                None | Some("") => Ok(default),
                Some(s) => s.parse::<i64>().map_err(|_| {
                    ScimError::bad_request(
                        ScimType::InvalidValue,
                        format!("{name} must be an integer, got {s:?}"),
                    )
                }),
            }
        };
        Ok(Page {
            start_index: int("startIndex", start_index, 1)?.max(1),
            count: int("count", count, DEFAULT_PAGE_SIZE)?.clamp(0, MAX_PAGE_SIZE),
        })
    }

    /// Rows to skip.
    pub fn offset(&self) -> i64 {
        self.start_index - 1
    }
}

/// The ListResponse envelope. `itemsPerPage` is the number of resources returned.
pub fn list_response(total: i64, page: Page, resources: Vec<Value>) -> Value {
    json!({
        "schemas": [LIST_RESPONSE],
        "totalResults": total,
        "startIndex": page.start_index,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn paging_follows_rfc7644_3_4_2_4() {
        assert_eq!(
            Page::parse(None, None).unwrap(),
            Page {
                start_index: 1,
                count: DEFAULT_PAGE_SIZE
            }
        );
        assert_eq!(
            Page::parse(Some("0"), Some("-5")).unwrap(),
            Page {
                start_index: 1,
                count: 0
            }
        );
        assert_eq!(
            Page::parse(Some("3"), Some("100000")).unwrap().count,
            MAX_PAGE_SIZE
        );
        assert!(Page::parse(Some("x"), None).is_err());
        assert!(Page::parse(None, Some("1.5")).is_err());
    }
}

/// `sortBy` / `sortOrder` (RFC 7644 §3.4.2.3).
#[derive(Debug, Clone, PartialEq)]
pub struct Sort {
    /// The attribute to sort by.
    pub path: AttrPath,
    /// `sortOrder=descending`.
    pub descending: bool,
}

/// How a list is paged: by index (RFC 7644 §3.4.2.4) or by cursor (RFC 9865).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Paging {
    /// `startIndex` / `count`.
    Index(Page),
    /// `cursor` / `count`: `after` is None for the first page.
    Cursor {
        /// Position after which the page starts (decoded cursor).
        after: Option<i64>,
        /// Page size.
        count: i64,
    },
}

/// A parsed list or search request, from query parameters (GET) or a SearchRequest
/// body (POST /.search, RFC 7644 §3.4.3).
#[derive(Debug, Clone, PartialEq)]
pub struct ListRequest {
    /// `filter`.
    pub filter: Option<Filter>,
    /// Index or cursor paging.
    pub paging: Paging,
    /// `sortBy` / `sortOrder`.
    pub sort: Option<Sort>,
    /// `attributes`.
    pub attributes: Vec<String>,
    /// `excludedAttributes`.
    pub excluded: Vec<String>,
}

impl Default for ListRequest {
    fn default() -> Self {
        ListRequest {
            filter: None,
            paging: Paging::Index(Page::default()),
            sort: None,
            attributes: Vec::new(),
            excluded: Vec::new(),
        }
    }
}

/// `schemas` value of a search request body (RFC 7644 §3.4.3).
pub const SEARCH_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";

/// The cursor handed out for a position. Opaque to clients (RFC 9865 §2); a position
/// in creation order, so walking all users costs one index range scan per page.
pub fn encode_cursor(position: i64) -> String {
    format!("c{position}")
}

fn decode_cursor(cursor: &str) -> Result<i64, ScimError> {
    cursor
        .strip_prefix('c')
        .and_then(|n| n.parse::<i64>().ok())
        .filter(|n| *n >= 0)
        .ok_or_else(|| {
            ScimError::bad_request(
                ScimType::InvalidCursor,
                format!("{cursor:?} is not a cursor this server issued"),
            )
        })
}

impl ListRequest {
    /// Parses parameters by name (names are matched case-insensitively by `get`).
    pub fn parse(get: impl Fn(&str) -> Option<String>) -> Result<ListRequest, ScimError> {
        let list = |name: &str| -> Vec<String> {
            get(name)
                .map(|v| {
                    v.split(',')
                        .map(|s| s.trim().to_owned())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default()
        };
        let filter = match get("filter").as_deref().map(str::trim) {
            None | Some("") => None,
            Some(f) => Some(parse_filter(f)?),
        };
        let sort = match get("sortBy").as_deref().map(str::trim) {
            None | Some("") => None,
            Some(by) => {
                let p = parse_path(by).map_err(|e| {
                    ScimError::bad_request(ScimType::InvalidValue, format!("sortBy: {e}"))
                })?;
                if p.value_filter.is_some() || p.sub_attr.is_some() {
                    return Err(ScimError::bad_request(
                        ScimType::InvalidValue,
                        "sortBy must name an attribute, not a value filter",
                    ));
                }
                let descending = match get("sortOrder").as_deref().map(str::trim) {
                    None | Some("") => false,
                    Some(o) if o.eq_ignore_ascii_case("ascending") => false,
                    Some(o) if o.eq_ignore_ascii_case("descending") => true,
                    Some(o) => {
                        return Err(ScimError::bad_request(
                            ScimType::InvalidValue,
                            format!("sortOrder must be ascending or descending, got {o:?}"),
                        ))
                    }
                };
                Some(Sort {
                    path: p.attr,
                    descending,
                })
            }
        };
        let paging = match get("cursor") {
            Some(c) => {
                if get("startIndex").is_some() {
                    return Err(ScimError::bad_request(
                        ScimType::InvalidValue,
                        "use either cursor or startIndex, not both (RFC 9865)",
                    ));
                }
                let count = Page::parse(None, get("count").as_deref())?.count;
                let after = match c.trim() {
                    "" => None,
                    c => Some(decode_cursor(c)?),
                };
                Paging::Cursor { after, count }
            }
            None => Paging::Index(Page::parse(
                get("startIndex").as_deref(),
                get("count").as_deref(),
            )?),
        };
        Ok(ListRequest {
            filter,
            paging,
            sort,
            attributes: list("attributes"),
            excluded: list("excludedAttributes"),
        })
    }

    /// Parses a SearchRequest body (RFC 7644 §3.4.3): the same parameters as JSON members.
    pub fn from_search_body(body: &Value) -> Result<ListRequest, ScimError> {
        let Value::Object(map) = body else {
            return Err(ScimError::bad_request(
                ScimType::InvalidSyntax,
                "a SearchRequest must be a JSON object",
            ));
        };
        if let Some(schemas) = map.get("schemas") {
            let ok = schemas.as_array().is_some_and(|s| {
                s.iter().any(|u| {
                    u.as_str()
                        .is_some_and(|u| u.eq_ignore_ascii_case(SEARCH_REQUEST))
                })
            });
            if !ok {
                return Err(ScimError::bad_request(
                    ScimType::InvalidSyntax,
                    format!("schemas must contain {SEARCH_REQUEST}"),
                ));
            }
        }
        ListRequest::parse(|name| {
            let v = map
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)?;
            match v {
                Value::Null => None,
                Value::String(s) => Some(s.clone()),
                Value::Array(items) => Some(
                    items
                        .iter()
                        .filter_map(|i| i.as_str().map(str::to_owned))
                        .collect::<Vec<_>>()
                        .join(","),
                ),
                other => Some(other.to_string()),
            }
        })
    }

    /// Whether the caller excluded an attribute (e.g. `members`) entirely, so the server
    /// need not load it.
    pub fn excludes(&self, name: &str) -> bool {
        let named = |a: &String| {
            let a = a.trim();
            a.eq_ignore_ascii_case(name)
                // `get`, not slicing: `a` is client text and may have a multi-byte
                // character across `name.len()` (found by schemathesis).
                || a.get(..name.len()).is_some_and(|p| p.eq_ignore_ascii_case(name))
                    && a.as_bytes().get(name.len()) == Some(&b'.')
        };
        self.excluded
            .iter()
            .any(|a| a.trim().eq_ignore_ascii_case(name))
            || (!self.attributes.is_empty() && !self.attributes.iter().any(named))
    }
}

/// The ListResponse of a cursor page (RFC 9865 §2.2): `nextCursor` when more follow.
pub fn cursor_response(total: i64, next: Option<i64>, resources: Vec<Value>) -> Value {
    let mut body = json!({
        "schemas": [LIST_RESPONSE],
        "totalResults": total,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    });
    if let (Some(n), Some(m)) = (next, body.as_object_mut()) {
        m.insert("nextCursor".into(), Value::String(encode_cursor(n)));
    }
    body
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod request_tests {
    use super::*;

    fn q<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn sort_and_cursor_parse() {
        let r = ListRequest::parse(q(&[
            ("sortBy", "name.familyName"),
            ("sortOrder", "Descending"),
            ("cursor", ""),
            ("count", "5"),
        ]))
        .unwrap();
        assert_eq!(
            r.sort.as_ref().unwrap().path.sub_attr.as_deref(),
            Some("familyName")
        );
        assert!(r.sort.unwrap().descending);
        assert_eq!(
            r.paging,
            Paging::Cursor {
                after: None,
                count: 5
            }
        );
        let r = ListRequest::parse(q(&[("cursor", &encode_cursor(42))])).unwrap();
        assert_eq!(
            r.paging,
            Paging::Cursor {
                after: Some(42),
                count: DEFAULT_PAGE_SIZE
            }
        );
        let e = ListRequest::parse(q(&[("cursor", "zzz")])).unwrap_err();
        assert_eq!(e.scim_type, Some(ScimType::InvalidCursor));
        assert!(ListRequest::parse(q(&[("sortOrder", "x"), ("sortBy", "userName")])).is_err());
    }

    #[test]
    fn search_body_takes_arrays_and_numbers() {
        let body = json!({"schemas": [SEARCH_REQUEST], "attributes": ["userName", "name"], "startIndex": 2, "count": 10, "filter": "userName sw \"a\""});
        let r = ListRequest::from_search_body(&body).unwrap();
        assert_eq!(r.attributes, ["userName", "name"]);
        assert_eq!(
            r.paging,
            Paging::Index(Page {
                start_index: 2,
                count: 10
            })
        );
        assert!(r.filter.is_some());
        assert!(ListRequest::from_search_body(&json!({"schemas": ["urn:x"]})).is_err());
    }
}
