//! The user pages: the list (`/ui/users`, searchable, deleted users included so leavers
//! can be audited) and one user (`/ui/users/{id}`): desired vs confirmed account,
//! provisioning state, the open task and the full audit trail.

use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use uuid::Uuid;

use super::view::{
    query, side_by_side, trail, user_state_label, with_observed, SideRow, Time, TrailRow,
};
use super::{render, Nav, PageError, SignedIn};
use crate::http::{AppState, Route};

pub(super) fn routes() -> Vec<Route> {
    vec![
        ("/ui/users", Method::GET, get(users_page)),
        ("/ui/users/{id}", Method::GET, get(user_page)),
    ]
}

const PAGE_SIZE: i64 = 50;
const STATES: [&str; 3] = ["pending", "synced", "failed"];

#[derive(Debug, Deserialize)]
struct UsersQuery {
    q: Option<String>,
    state: Option<String>,
    cursor: Option<String>,
}

struct StateOption {
    value: &'static str,
    label: &'static str,
    selected: bool,
}

struct Row {
    href: String,
    user_name: String,
    display_name: String,
    email: String,
    status: &'static str,
    deleted: bool,
    state: String,
    state_label: String,
    open_task: Option<i64>,
    confirmed: String,
}

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    nav: Option<Nav>,
    q: String,
    states: Vec<StateOption>,
    rows: Vec<Row>,
    next_href: Option<String>,
    first_href: Option<String>,
}

fn rejected(message: &str) -> PageError {
    PageError::Rejected {
        status: StatusCode::BAD_REQUEST,
        message: message.into(),
    }
}

async fn users_page(
    State(s): State<AppState>,
    me: SignedIn,
    q: Result<Query<UsersQuery>, QueryRejection>,
) -> Result<Response, PageError> {
    let Query(q) = q.map_err(|_| rejected("That link is malformed. Open Users from the menu."))?;
    let state = q.state.clone().filter(|s| !s.is_empty());
    if let Some(st) = &state {
        if !STATES.contains(&st.as_str()) {
            return Err(rejected("There is no such provisioning state."));
        }
    }
    let after = match q.cursor.as_deref().filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(
            c.parse::<i64>()
                .map_err(|_| rejected("That page link is malformed."))?,
        ),
    };
    let search = q.q.clone().unwrap_or_default().trim().to_owned();
    let (rows, more) = s
        .store
        .user_rows(
            &me.session.app_id,
            Some(&search).filter(|s| !s.is_empty()).map(String::as_str),
            state.as_deref(),
            after,
            PAGE_SIZE,
        )
        .await?;
    let next_href = if more {
        rows.last().map(|r| {
            format!(
                "/ui/users{}",
                query(&[
                    ("q", Some(&search)),
                    ("state", state.as_deref()),
                    ("cursor", Some(&r.seq.to_string())),
                ])
            )
        })
    } else {
        None
    };
    let first_href = after.map(|_| {
        format!(
            "/ui/users{}",
            query(&[("q", Some(&search)), ("state", state.as_deref())])
        )
    });
    let page = UsersPage {
        nav: Some(me.nav("users")),
        states: STATES
            .iter()
            .map(|st| StateOption {
                value: st,
                label: user_state_label(st),
                selected: state.as_deref() == Some(*st),
            })
            .collect(),
        q: search,
        rows: rows
            .into_iter()
            .map(|r| Row {
                href: format!("/ui/users/{}", r.id),
                user_name: r.user_name,
                display_name: r.display_name.unwrap_or_default(),
                email: r.email.unwrap_or_default(),
                status: match (r.deleted_at.is_some(), r.active) {
                    (true, _) => "deleted",
                    (false, true) => "active",
                    (false, false) => "inactive",
                },
                deleted: r.deleted_at.is_some(),
                state_label: user_state_label(&r.state).to_owned(),
                state: r.state,
                open_task: r.open_task_id,
                confirmed: r
                    .confirmed_at
                    .map(|t| Time::of(t).text)
                    .unwrap_or_else(|| "never".into()),
            })
            .collect(),
        next_href,
        first_href,
    };
    Ok(render(StatusCode::OK, &page))
}

#[derive(Template)]
#[template(path = "user.html")]
struct UserPage {
    nav: Option<Nav>,
    user_name: String,
    state: String,
    state_label: String,
    needs_attention: bool,
    status: String,
    open_task: Option<i64>,
    confirmed_at: String,
    /// When a snapshot last showed the account as wanted, and which snapshot saw it.
    verified: Option<String>,
    observed: Option<String>,
    drift: bool,
    side: Vec<SideRow>,
    history: Vec<TrailRow>,
    /// For the admin's CSV download of this user's trail.
    export: Option<String>,
}

async fn user_page(
    State(s): State<AppState>,
    me: SignedIn,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let id = Uuid::parse_str(&id)
        .map_err(|_| PageError::NotFound(format!("There is no user {id} in this app.")))?;
    let app = &me.session.app_id;
    let u = s.store.user_view(app, id).await?;
    let history = s.store.subject_history(app, &id.to_string()).await?;
    let status = match (u.deleted_at, u.active) {
        (Some(_), _) if u.kind == "account" => {
            "An account in the app that no IdP user owns (found by a snapshot)".into()
        }
        (Some(at), _) => format!("Deleted by the IdP on {}", Time::of(at).text),
        (None, true) => "Active in the IdP".into(),
        (None, false) => "Deactivated in the IdP".into(),
    };
    let page = UserPage {
        nav: Some(me.nav("users")),
        user_name: u.user_name,
        state_label: user_state_label(&u.state).to_owned(),
        state: u.state,
        needs_attention: u.needs_attention,
        status,
        open_task: u.open_task_id,
        confirmed_at: u
            .confirmed_at
            .map(|t| Time::of(t).text)
            .unwrap_or_else(|| "never".into()),
        verified: u.last_verified.map(|t| Time::of(t).text),
        observed: u.observed_snapshot.map(|n| {
            format!(
                "snapshot #{n}{}",
                u.observed_at
                    .map(|t| format!(" (export of {})", Time::of(t).text))
                    .unwrap_or_default()
            )
        }),
        drift: u.drift && u.observed_snapshot.is_some(),
        side: match u.observed_snapshot {
            Some(_) => with_observed(
                side_by_side(u.desired.as_ref(), u.confirmed.as_ref()),
                u.observed.as_ref(),
            ),
            None => side_by_side(u.desired.as_ref(), u.confirmed.as_ref()),
        },
        history: trail(&history),
        export: (me.session.role.may(crate::auth::Action::Audit))
            .then(|| format!("/ui/reports/audit.csv?subject={}", u.id)),
    };
    Ok(render(StatusCode::OK, &page))
}
