//! Limits on free text a person or agent sends (notes, reasons, completion fields,
//! search boxes), pure. A request body is bounded as a whole (`--body-limit`, 413); these
//! bound each field inside it, so that one field cannot fill the database and every page
//! that shows it (issue #14: a 10 MB note made the task page 21 MB). Every surface checks
//! the same rule and answers 400 in its own format. Documented in docs/operations.md.

use serde_json::{Map, Value};

/// Longest completion note, in characters.
pub const MAX_NOTE_CHARS: usize = 10_000;
/// Most completion fields one completion may carry.
pub const MAX_FIELDS: usize = 50;
/// Longest completion field name, in characters.
pub const MAX_FIELD_NAME_CHARS: usize = 100;
/// Longest completion field value, in characters (a non-string value: its JSON text).
pub const MAX_FIELD_VALUE_CHARS: usize = 2_000;
/// Longest reason (rejection, reassignment, batch decision), in characters.
pub const MAX_REASON_CHARS: usize = 1_000;
/// Longest search box or filter text of the task API and the web UI, in characters.
pub const MAX_SEARCH_CHARS: usize = 256;

/// A field over its limit: which one and the limit, for the surface's 400.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooLong {
    /// Stable machine-readable code: `too_long` or `too_many_fields`.
    pub code: &'static str,
    /// Names the field and its limit.
    pub message: String,
}

/// Checks one text against its limit (`what` names it in the message).
pub fn check_text(what: &str, text: &str, max: usize) -> Result<(), TooLong> {
    // Count characters only as far as needed: a huge text is refused without a full walk.
    if text.len() > max && text.chars().nth(max).is_some() {
        return Err(TooLong {
            code: "too_long",
            message: format!("{what} is longer than {max} characters"),
        });
    }
    Ok(())
}

/// Checks an optional text against its limit.
pub fn check_opt(what: &str, text: Option<&str>, max: usize) -> Result<(), TooLong> {
    text.map_or(Ok(()), |t| check_text(what, t, max))
}

/// Checks a completion's note and fields.
pub fn check_completion(note: Option<&str>, fields: &Map<String, Value>) -> Result<(), TooLong> {
    check_opt("note", note, MAX_NOTE_CHARS)?;
    if fields.len() > MAX_FIELDS {
        return Err(TooLong {
            code: "too_many_fields",
            message: format!("at most {MAX_FIELDS} completion fields"),
        });
    }
    for (name, value) in fields {
        check_text("a completion field name", name, MAX_FIELD_NAME_CHARS)?;
        let what = format!("completion field {name:?}");
        match value {
            Value::String(s) => check_text(&what, s, MAX_FIELD_VALUE_CHARS)?,
            other => check_text(&what, &other.to_string(), MAX_FIELD_VALUE_CHARS)?,
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn limits_count_characters_not_bytes() {
        let at = "é".repeat(MAX_NOTE_CHARS);
        assert!(check_text("note", &at, MAX_NOTE_CHARS).is_ok());
        let over = format!("{at}x");
        let e = check_text("note", &over, MAX_NOTE_CHARS).unwrap_err();
        assert_eq!(e.code, "too_long");
        assert!(e.message.contains("note"), "{}", e.message);
    }

    #[test]
    fn completion_fields_are_bounded_in_number_name_and_value() {
        let ok = json!({"account_id": "a".repeat(MAX_FIELD_VALUE_CHARS)});
        assert!(check_completion(None, ok.as_object().unwrap()).is_ok());
        let long = json!({"account_id": "a".repeat(MAX_FIELD_VALUE_CHARS + 1)});
        assert!(check_completion(None, long.as_object().unwrap()).is_err());
        let nested = json!({"x": ["a".repeat(MAX_FIELD_VALUE_CHARS)]});
        assert!(check_completion(None, nested.as_object().unwrap()).is_err());
        let name = json!({"n".repeat(MAX_FIELD_NAME_CHARS + 1): "v"});
        assert!(check_completion(None, name.as_object().unwrap()).is_err());
        let many: Map<String, Value> = (0..=MAX_FIELDS)
            .map(|i| (format!("f{i}"), json!("v")))
            .collect();
        assert_eq!(
            check_completion(None, &many).unwrap_err().code,
            "too_many_fields"
        );
    }
}
