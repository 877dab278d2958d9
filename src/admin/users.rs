//! `scimbridge users …`: users with their provisioning state, one user's desired and
//! confirmed account side by side, and a user's whole trail.

use std::fmt::Write as _;

use chrono::Utc;
use serde_json::{json, Value};

use super::render::{age, cut, json as pretty, pad, show, when, Table};
use super::tasks::history_table;
use super::UsersCommand;
use crate::client::{Client, User, UserQuery};

/// Account fields in the order a person compares them; others follow alphabetically.
const FIELDS: [&str; 8] = [
    "user_name",
    "email",
    "given_name",
    "family_name",
    "display_name",
    "department",
    "role",
    "active",
];

pub(super) async fn run(client: &Client, cmd: UsersCommand) -> anyhow::Result<()> {
    match cmd {
        UsersCommand::List {
            state,
            user_name,
            limit,
            cursor,
            json,
        } => {
            let q = UserQuery {
                user_name,
                state,
                cursor,
                limit: None,
            };
            list(client, q, limit, json).await
        }
        UsersCommand::Show { id, json } => {
            let u = client.user(&id).await?;
            if json {
                println!("{}", pretty(&u.raw));
            } else {
                print!("{}", user_view(&u));
            }
            Ok(())
        }
        UsersCommand::History { id, json } => {
            let (h, raw) = client.user_history(&id).await?;
            if json {
                println!("{}", pretty(&raw));
            } else if h.is_empty() {
                eprintln!("no history for user {id}");
            } else {
                print!("{}", history_table(&h, true));
            }
            Ok(())
        }
    }
}

async fn list(client: &Client, mut q: UserQuery, limit: u32, as_json: bool) -> anyhow::Result<()> {
    anyhow::ensure!(limit >= 1, "--limit must be at least 1");
    let mut users: Vec<User> = Vec::new();
    let mut next;
    loop {
        q.limit = Some((limit - users.len() as u32).min(500));
        let page = client.users(&q).await?;
        users.extend(page.users);
        next = page.next_cursor;
        match &next {
            Some(c) if (users.len() as u32) < limit => q.cursor = Some(c.clone()),
            _ => break,
        }
    }
    if as_json {
        let raw: Vec<&Value> = users.iter().map(|u| &u.raw).collect();
        println!("{}", pretty(&json!({"users": raw, "next_cursor": next})));
        return Ok(());
    }
    if users.is_empty() {
        eprintln!("no users");
        return Ok(());
    }
    let now = Utc::now();
    let mut t = Table::new(&[
        "ID",
        "USER",
        "STATE",
        "ACTIVE",
        "OPEN TASK",
        "CONFIRMED",
        "ATTENTION",
    ]);
    for u in &users {
        let active = if u.deleted_at.is_some() {
            "deleted"
        } else if u.active {
            "yes"
        } else {
            "no"
        };
        t.row(vec![
            u.id.clone(),
            cut(&u.user_name, 40),
            u.state.clone(),
            active.into(),
            u.open_task_id
                .map(|t| t.to_string())
                .unwrap_or_else(|| "-".into()),
            if u.confirmed_at.is_some() {
                format!("{} ago", age(u.confirmed_at, now))
            } else {
                "never".into()
            },
            if u.needs_attention {
                "NEEDS ATTENTION".into()
            } else {
                String::new()
            },
        ]);
    }
    print!("{}", t.render());
    if let Some(c) = next {
        eprintln!("more users follow: add --cursor {c}");
    }
    Ok(())
}

/// One user: header, then desired and confirmed accounts in two columns, `*` marking
/// the fields where the app differs from what the IdP wants.
pub(super) fn user_view(u: &User) -> String {
    let now = Utc::now();
    let mut o = String::new();
    let _ = writeln!(o, "User {}  {}", u.user_name, u.id);
    let mut state = u.state.clone();
    if u.needs_attention {
        state.push_str(", NEEDS ATTENTION (a task failed)");
    }
    let _ = writeln!(o, "State:      {state}");
    if let Some(d) = u.deleted_at {
        let _ = writeln!(o, "Deleted:    {} (by the IdP)", when(d, now));
    }
    let _ = writeln!(
        o,
        "Open task:  {}",
        u.open_task_id
            .map(|t| format!("{t} (scimbridge tasks show {t})"))
            .unwrap_or_else(|| "none".into())
    );
    let _ = writeln!(
        o,
        "Confirmed:  {}",
        u.confirmed_at
            .map(|c| when(c, now))
            .unwrap_or_else(|| "never".into())
    );
    let _ = writeln!(o);
    o.push_str(&side_by_side(u.desired.as_ref(), u.confirmed.as_ref()));
    o
}

/// The two accounts field by field.
fn side_by_side(desired: Option<&Value>, confirmed: Option<&Value>) -> String {
    let obj = |v: Option<&Value>| v.and_then(Value::as_object).cloned();
    let (d, c) = (obj(desired), obj(confirmed));
    let mut names: Vec<String> = FIELDS.iter().map(|f| (*f).to_owned()).collect();
    let mut extra: Vec<String> = d
        .iter()
        .chain(c.iter())
        .flat_map(|m| m.keys().cloned())
        .filter(|k| !FIELDS.contains(&k.as_str()))
        .collect();
    extra.sort();
    extra.dedup();
    names.extend(extra);

    let cell = |m: &Option<serde_json::Map<String, Value>>, k: &str, absent: &str| match m {
        None => absent.to_owned(),
        Some(m) => m.get(k).map(show).unwrap_or_else(|| "(none)".into()),
    };
    let rows: Vec<(bool, String, String, String)> = names
        .iter()
        .map(|k| {
            let dv = d.as_ref().and_then(|m| m.get(k));
            let cv = c.as_ref().and_then(|m| m.get(k));
            let differs = match (&d, &c) {
                (None, None) => false,
                (Some(_), Some(_)) => dv.unwrap_or(&Value::Null) != cv.unwrap_or(&Value::Null),
                // One side has no account at all: every field the other has differs.
                _ => dv.or(cv).is_some_and(|v| !v.is_null()),
            };
            (
                differs,
                k.clone(),
                cut(&cell(&d, k, "-"), 40),
                cut(&cell(&c, k, "-"), 40),
            )
        })
        .filter(|(differs, _, dv, cv)| *differs || dv != "(none)" || cv != "(none)")
        .collect();

    let w_field = rows
        .iter()
        .map(|r| r.1.chars().count())
        .max()
        .unwrap_or(5)
        .max(5);
    let desired_title = if d.is_some() {
        "DESIRED (IdP)"
    } else {
        "DESIRED (IdP): no account"
    };
    let w_desired = rows
        .iter()
        .map(|r| r.2.chars().count())
        .chain([desired_title.chars().count()])
        .max()
        .unwrap_or(0);
    let confirmed_title = if c.is_some() {
        "CONFIRMED (app)"
    } else {
        "CONFIRMED (app): no account"
    };
    let mut o = String::new();
    let _ = writeln!(
        o,
        "  {}  {}  {confirmed_title}",
        pad("FIELD", w_field),
        pad(desired_title, w_desired)
    );
    for (differs, k, dv, cv) in &rows {
        let mark = if *differs { '*' } else { ' ' };
        let _ = writeln!(
            o,
            "{mark} {}  {}  {cv}",
            pad(k, w_field),
            pad(dv, w_desired)
        );
    }
    if rows.iter().any(|r| r.0) {
        let _ = writeln!(
            o,
            "\n* the app differs from what the IdP wants; the open task closes the difference"
        );
    } else if d.is_some() || c.is_some() {
        let _ = writeln!(o, "\nin sync: the app has what the IdP wants");
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_are_marked() {
        let d = json!({"user_name": "ann@x.com", "email": "ann@x.com", "role": "Admin", "active": true});
        let c = json!({"user_name": "ann@x.com", "email": "ann@x.com", "role": "Standard", "active": true});
        let s = side_by_side(Some(&d), Some(&c));
        let lines: Vec<&str> = s.lines().collect();
        assert!(lines[0].starts_with("  FIELD"), "{s}");
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("* role") && l.contains("Admin") && l.ends_with("Standard")),
            "{s}"
        );
        assert!(lines.iter().any(|l| l.starts_with("  email")), "{s}");
        assert!(
            !s.contains("given_name"),
            "fields absent on both sides are left out: {s}"
        );
    }

    #[test]
    fn a_missing_account_marks_every_field() {
        let d = json!({"user_name": "ann@x.com", "role": "Standard", "active": true});
        let s = side_by_side(Some(&d), None);
        assert!(s.contains("CONFIRMED (app): no account"), "{s}");
        assert!(
            s.lines()
                .any(|l| l.starts_with("* user_name") && l.ends_with("-")),
            "{s}"
        );
    }
}
