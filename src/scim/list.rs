//! List queries and responses (RFC 7644 §3.4.2): paging parameters and the
//! ListResponse envelope.

use serde_json::{json, Value};

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
