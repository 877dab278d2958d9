//! The queue page (`/ui`, `/ui/tasks`): tabs by state with counts, a kind filter, search
//! by userName or email, and cursor paging. Work still to do is listed in claim order
//! (leavers first), finished work newest first. The page reloads itself every
//! [`REFRESH_SECS`] seconds unless the person is typing in a form.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;

use super::view::{self, due_badge, kind_label, query, DueBadge, Time};
use super::{render, Nav, PageError, SignedIn};
use crate::db::board::{BoardCursor, BoardOrder, BoardQuery, BoardRow};
use crate::http::{AppState, Route};
use crate::reconcile::{TaskKind, TaskState};

pub(super) fn routes() -> Vec<Route> {
    vec![
        ("/ui", Method::GET, get(queue_page)),
        ("/ui/tasks", Method::GET, get(queue_page)),
    ]
}

/// Seconds between automatic reloads of the queue.
pub const REFRESH_SECS: u32 = 20;
/// Rows per page.
const PAGE_SIZE: i64 = 25;

/// The tabs, in the order work flows; the last (`all`) shows every state.
const TABS: [Option<TaskState>; 9] = [
    Some(TaskState::Open),
    Some(TaskState::AwaitingApproval),
    Some(TaskState::Held),
    Some(TaskState::InProgress),
    Some(TaskState::Failed),
    Some(TaskState::Done),
    Some(TaskState::NotApplicable),
    Some(TaskState::Cancelled),
    None,
];

/// A tab's name in links (`state=`): the state's, or `all`.
fn tab_name(tab: Option<TaskState>) -> &'static str {
    tab.map_or("all", TaskState::as_str)
}

#[derive(Debug, Deserialize)]
struct QueueQuery {
    state: Option<String>,
    kind: Option<String>,
    q: Option<String>,
    cursor: Option<String>,
    completed: Option<i64>,
}

struct Tab {
    label: &'static str,
    href: String,
    count: i64,
    current: bool,
}

struct KindOption {
    value: &'static str,
    label: &'static str,
    selected: bool,
}

struct Row {
    id: i64,
    href: String,
    kind: &'static str,
    kind_label: &'static str,
    leaver: bool,
    state: TaskState,
    state_label: &'static str,
    title: String,
    user_name: String,
    user_href: String,
    email: String,
    created: Time,
    holder: Option<String>,
    blocked_by: Option<i64>,
    finished: Option<Time>,
    due: Option<DueBadge>,
}

#[derive(Template)]
#[template(path = "queue.html")]
struct QueuePage {
    nav: Option<Nav>,
    tabs: Vec<Tab>,
    kinds: Vec<KindOption>,
    state: String,
    q: String,
    rows: Vec<Row>,
    next_href: Option<String>,
    first_href: Option<String>,
    claim_order: bool,
    notice: Option<String>,
}

fn row(r: BoardRow) -> Row {
    let holder = match (&r.claimed_by, r.lease_expires_at) {
        (Some(who), Some(until)) if r.state == TaskState::InProgress => {
            if until > chrono::Utc::now() {
                Some(format!("{who}, lease until {}", Time::clock(until)))
            } else {
                Some(format!("{who}, lease lapsed"))
            }
        }
        _ => None,
    };
    let due = due_badge(r.state, &r.sla_state, r.due_at, chrono::Utc::now());
    Row {
        id: r.id,
        href: format!("/ui/tasks/{}", r.id),
        kind: r.kind.as_str(),
        kind_label: kind_label(r.kind),
        leaver: view::is_leaver(r.kind),
        state_label: r.state.label(),
        state: r.state,
        title: r.title,
        user_href: format!("/ui/users/{}", r.user_id),
        user_name: r.user_name,
        email: r.email.unwrap_or_default(),
        created: Time::of(r.created_at),
        holder,
        blocked_by: r.blocked_by,
        finished: r.finished_at.map(Time::of),
        due,
    }
}

async fn queue_page(
    State(s): State<AppState>,
    me: SignedIn,
    q: Result<Query<QueueQuery>, QueryRejection>,
) -> Result<Response, PageError> {
    let Query(q) = q.map_err(|_| PageError::Rejected {
        status: StatusCode::BAD_REQUEST,
        message: "That queue link is malformed. Open the queue from the menu.".into(),
    })?;
    let state = q.state.clone().unwrap_or_else(|| "open".into());
    let Some(tab) = TABS.into_iter().find(|t| tab_name(*t) == state) else {
        return Err(PageError::Rejected {
            status: StatusCode::BAD_REQUEST,
            message: format!("There is no {state:?} tab. Open the queue from the menu."),
        });
    };
    let kind = match q.kind.as_deref().filter(|k| !k.is_empty()) {
        None => None,
        Some(k) => Some(TaskKind::parse(k).ok_or_else(|| PageError::Rejected {
            status: StatusCode::BAD_REQUEST,
            message: format!("There is no task kind {k:?}."),
        })?),
    };
    let search = q.q.clone().unwrap_or_default().trim().to_owned();
    // Work still in the queue reads in claim order; finished work newest first.
    let order = match tab {
        Some(t) if t.is_in(&TaskState::QUEUED) => BoardOrder::Claim,
        _ => BoardOrder::Newest,
    };
    let after = match q.cursor.as_deref().filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(BoardCursor::decode(c).ok_or_else(|| PageError::Rejected {
            status: StatusCode::BAD_REQUEST,
            message: "That page link is malformed. Start from the first page.".into(),
        })?),
    };
    let app = &me.session.app_id;
    let bq = BoardQuery {
        state: tab,
        kind,
        search: Some(search.clone()).filter(|s| !s.is_empty()),
        order,
        after,
        limit: PAGE_SIZE,
    };
    let (rows, more) = s.store.board(app, &bq).await?;
    let counts = s.store.task_counts(app).await?;
    let mut by_tab: BTreeMap<&str, i64> = TABS.iter().map(|t| (tab_name(*t), 0)).collect();
    for c in &counts {
        if kind.is_some_and(|want| want != c.kind) {
            continue;
        }
        for name in [c.state.as_str(), tab_name(None)] {
            if let Some(n) = by_tab.get_mut(name) {
                *n += c.count;
            }
        }
    }
    let kind_str = kind.map(|k| k.as_str());
    let tabs = TABS
        .into_iter()
        .map(|t| Tab {
            label: t.map_or("All", TaskState::label),
            href: format!(
                "/ui/tasks{}",
                query(&[
                    ("state", Some(tab_name(t))),
                    ("kind", kind_str),
                    ("q", Some(&search))
                ])
            ),
            count: by_tab.get(tab_name(t)).copied().unwrap_or(0),
            current: t == tab,
        })
        .collect();
    let kinds = TaskKind::ALL
        .iter()
        .map(|k| KindOption {
            value: k.as_str(),
            label: kind_label(*k),
            selected: kind == Some(*k),
        })
        .collect();
    let next_href = if more {
        rows.last().map(|r| {
            let c = BoardCursor {
                rank: r.rank,
                id: r.id,
            }
            .encode();
            format!(
                "/ui/tasks{}",
                query(&[
                    ("state", Some(&state)),
                    ("kind", kind_str),
                    ("q", Some(&search)),
                    ("cursor", Some(&c)),
                ])
            )
        })
    } else {
        None
    };
    let first_href = after.map(|_| {
        format!(
            "/ui/tasks{}",
            query(&[
                ("state", Some(&state)),
                ("kind", kind_str),
                ("q", Some(&search)),
            ])
        )
    });
    let mut nav = me.nav("tasks");
    nav.refresh = REFRESH_SECS;
    let page = QueuePage {
        nav: Some(nav),
        tabs,
        kinds,
        claim_order: order == BoardOrder::Claim,
        state,
        q: search,
        rows: rows.into_iter().map(row).collect(),
        next_href,
        first_href,
        notice: q
            .completed
            .map(|id| format!("Task #{id} is recorded and has left the queue.")),
    };
    Ok(render(StatusCode::OK, &page))
}
