//! Completion evidence, pure: the fields a task asks for, and attached files.

use serde_json::{Map, Value};

use super::{CompletionField, TaskKind};

/// Most files one completion may carry.
pub const MAX_ATTACHMENTS: usize = 5;
/// Largest attached file, in bytes (after base64 decoding).
pub const MAX_ATTACHMENT_BYTES: usize = 2 * 1024 * 1024;

/// What is wrong with a completion's fields: a stable code and a message naming them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// `missing_fields` or `invalid_field`.
    pub code: &'static str,
    /// Names the fields and what they need.
    pub message: String,
}

/// Checks the values given for a task's completion fields. Required fields must be
/// present and non-empty when the work was done; fields with choices take one of them.
pub fn check_fields(
    kind: TaskKind,
    asked: &[CompletionField],
    given: &Map<String, Value>,
    done: bool,
) -> Result<(), FieldError> {
    let present = |name: &str| given.get(name).is_some_and(|v| !v.is_null() && v != "");
    let missing: Vec<&str> = asked
        .iter()
        .filter(|f| done && f.required && !present(&f.name))
        .map(|f| f.name.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(FieldError {
            code: "missing_fields",
            message: format!(
                "completing a {} task as done needs: {}",
                kind.as_str(),
                missing.join(", ")
            ),
        });
    }
    for f in asked
        .iter()
        .filter(|f| !f.choices.is_empty() && present(&f.name))
    {
        let ok = given
            .get(&f.name)
            .and_then(Value::as_str)
            .is_some_and(|s| f.choices.iter().any(|c| c == s));
        if !ok {
            return Err(FieldError {
                code: "invalid_field",
                message: format!("{} must be one of {}", f.name, f.choices.join(", ")),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn seat() -> Vec<CompletionField> {
        vec![CompletionField {
            name: "seat_freed".into(),
            label: "Seat freed?".into(),
            required: true,
            choices: vec!["yes".into(), "no".into(), "unknown".into()],
        }]
    }

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn required_fields_are_named_when_missing() {
        let e = check_fields(TaskKind::Remove, &seat(), &map(json!({})), true).unwrap_err();
        assert_eq!(e.code, "missing_fields");
        assert!(e.message.contains("seat_freed"));
        assert!(
            check_fields(TaskKind::Remove, &seat(), &map(json!({})), false).is_ok(),
            "not needed when failed"
        );
    }

    #[test]
    fn choices_are_enforced() {
        let e = check_fields(
            TaskKind::Remove,
            &seat(),
            &map(json!({"seat_freed": "maybe"})),
            true,
        )
        .unwrap_err();
        assert_eq!(e.code, "invalid_field");
        assert!(check_fields(
            TaskKind::Remove,
            &seat(),
            &map(json!({"seat_freed": "yes"})),
            true
        )
        .is_ok());
    }
}
