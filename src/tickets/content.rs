//! What a ticket says, from its task (pure): the summary, and a body of paragraphs and
//! lists rendered as Atlassian Document Format (Jira Cloud REST API v3 takes rich text
//! only as ADF) or as plain text (Service Management request fields, ServiceNow).

use serde_json::{json, Value};

use super::{Settings, System};
use crate::db::tasks::Task;

/// Jira's summary limit (characters).
const SUMMARY_MAX: usize = 255;

/// One block of a ticket body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Block {
    /// A paragraph.
    Para(String),
    /// A numbered list (the task's steps).
    Numbered(Vec<String>),
    /// A bulleted list.
    Bullets(Vec<String>),
}

/// A ticket's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    /// One line.
    pub summary: String,
    /// The description.
    pub body: Vec<Block>,
}

/// Where the task can be opened, for the ticket's readers.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The app's display name (`People.ai`).
    pub app_name: &'a str,
    /// The server's public URL, when configured (`--public-url`).
    pub public_url: Option<&'a str>,
}

fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn shown(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "(none)".into(),
        Some(Value::String(s)) => format!("\"{s}\""),
        Some(other) => other.to_string(),
    }
}

/// The ticket of a task. A Service Management request carries its correlation tag at the
/// end of the summary (its create call cannot set labels), so a retry can find it.
pub fn ticket(
    task: &Task,
    system: System,
    settings: &Settings,
    correlation: &str,
    ctx: Context<'_>,
) -> Content {
    let summary = match system {
        System::JiraServiceManagement => {
            let tag = format!(" [{correlation}]");
            format!(
                "{}{tag}",
                cut(&task.title, SUMMARY_MAX - tag.chars().count())
            )
        }
        System::Jira | System::Servicenow => cut(&task.title, SUMMARY_MAX),
    };
    let mut body = vec![Block::Para(format!(
        "scimbridge task #{} for {} ({}), about {}.",
        task.id,
        ctx.app_name,
        task.kind.as_str(),
        task.subject.user_name
    ))];
    let steps: Vec<String> = task
        .instructions
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if !steps.is_empty() {
        body.push(Block::Para("Steps:".into()));
        body.push(Block::Numbered(steps));
    }
    let changes: Vec<String> = task
        .changes
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| {
                    format!(
                        "{}: {} → {}",
                        c.get("field").and_then(Value::as_str).unwrap_or("?"),
                        shown(c.get("from")),
                        shown(c.get("to"))
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    if !changes.is_empty() {
        body.push(Block::Para("Changes:".into()));
        body.push(Block::Bullets(changes));
    }
    if let Some(due) = task.due_at {
        body.push(Block::Para(format!("Due: {}.", crate::db::rfc3339(due))));
    }
    let closing: Vec<&str> = settings.statuses.keys().map(String::as_str).collect();
    let mut how = format!(
        "When it is done, move this ticket to {}: the task is then closed in scimbridge.",
        closing.join(" or ")
    );
    let needed: Vec<String> = task
        .completion_fields
        .iter()
        .filter(|f| f.required)
        .map(|f| match settings.completion_fields.get(&f.name) {
            Some(field) => format!("{} (ticket field {field})", f.label),
            None => format!("{} (record it in scimbridge)", f.label),
        })
        .collect();
    if !needed.is_empty() {
        how.push_str(&format!(" It needs: {}.", needed.join("; ")));
    }
    body.push(Block::Para(how));
    if let Some(root) = ctx.public_url {
        body.push(Block::Para(format!(
            "The task in scimbridge: {}/ui/tasks/{}",
            root.trim_end_matches('/'),
            task.id
        )));
    }
    Content { summary, body }
}

fn text_node(s: &str) -> Value {
    json!({"type": "text", "text": s})
}

fn para(s: &str) -> Value {
    // ADF text nodes must not be empty.
    if s.is_empty() {
        json!({"type": "paragraph", "content": []})
    } else {
        json!({"type": "paragraph", "content": [text_node(s)]})
    }
}

fn list(kind: &str, items: &[String]) -> Value {
    let items: Vec<Value> = items
        .iter()
        .map(|i| json!({"type": "listItem", "content": [para(i)]}))
        .collect();
    json!({"type": kind, "content": items})
}

/// The body as an Atlassian Document Format document (version 1).
pub fn adf(body: &[Block]) -> Value {
    let content: Vec<Value> = body
        .iter()
        .map(|b| match b {
            Block::Para(s) => para(s),
            Block::Numbered(items) => list("orderedList", items),
            Block::Bullets(items) => list("bulletList", items),
        })
        .collect();
    json!({"type": "doc", "version": 1, "content": content})
}

/// A one-paragraph ADF document (comments).
pub fn adf_text(s: &str) -> Value {
    adf(&[Block::Para(s.to_owned())])
}

/// The body as plain text.
pub fn text(body: &[Block]) -> String {
    let mut out = Vec::new();
    for b in body {
        match b {
            Block::Para(s) => out.push(s.clone()),
            Block::Numbered(items) => out.extend(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, s)| format!("{}. {s}", i + 1)),
            ),
            Block::Bullets(items) => out.extend(items.iter().map(|s| format!("- {s}"))),
        }
    }
    out.join("\n")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn adf_is_a_version_1_doc_of_paragraphs_and_lists() {
        let body = vec![
            Block::Para("Hello".into()),
            Block::Numbered(vec!["one".into(), "two".into()]),
            Block::Bullets(vec!["x".into()]),
        ];
        let doc = adf(&body);
        assert_eq!(doc["type"], "doc");
        assert_eq!(doc["version"], 1);
        assert_eq!(doc["content"][0]["content"][0]["text"], "Hello");
        assert_eq!(doc["content"][1]["type"], "orderedList");
        assert_eq!(
            doc["content"][1]["content"][1]["content"][0]["content"][0]["text"],
            "two"
        );
        assert_eq!(doc["content"][2]["type"], "bulletList");
        assert_eq!(text(&body), "Hello\n1. one\n2. two\n- x");
        assert_eq!(adf_text("")["content"][0]["content"], json!([]));
    }

    #[test]
    fn long_summaries_are_cut_to_jiras_limit() {
        let long = "x".repeat(400);
        let s = cut(&long, SUMMARY_MAX);
        assert_eq!(s.chars().count(), SUMMARY_MAX);
        assert!(s.ends_with('…'));
        assert_eq!(cut("short", SUMMARY_MAX), "short");
    }
}
