//! Reports (`/ui/reports`): seats now (accounts the IdP wants active against those the app
//! is known to have, and those its last snapshot showed), what snapshots verified and
//! found (issue #15), pending creations and removals, and how long finished tasks took,
//! drawn as an inline SVG bar chart (no script, no chart library).

use askama::Template;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Form;

use super::session::{unreadable_form, CsrfForm};
use super::view::{duration, kind_label};
use super::{render, Nav, PageError, SignedIn};
use crate::auth::Action;
use crate::db::board::{CompletionTimes, COMPLETION_WINDOW_DAYS};
use crate::http::{AppState, Route};
use crate::reconcile::TaskKind;

pub(super) fn routes() -> Vec<Route> {
    vec![
        ("/ui/reports", Method::GET, get(reports_page)),
        ("/ui/reports/audit.csv", Method::GET, get(audit_csv)),
        (
            "/ui/batches/{id}/release",
            Method::POST,
            post(release_batch),
        ),
        ("/ui/batches/{id}/cancel", Method::POST, post(cancel_batch)),
    ]
}

/// Geometry of the chart, in SVG user units (it scales with the page width).
const CHART_WIDTH: u32 = 640;
const LABEL_WIDTH: u32 = 150;
const BAR_HEIGHT: u32 = 22;
const BAR_GAP: u32 = 12;

struct Pending {
    label: &'static str,
    count: i64,
}

/// One bar: a kind's median completion time.
struct Bar {
    label: &'static str,
    y: u32,
    text_y: u32,
    width: u32,
    value_x: u32,
    median: String,
    max: String,
    count: i64,
}

#[derive(Template)]
#[template(path = "reports.html")]
struct ReportsPage {
    nav: Option<Nav>,
    desired_active: i64,
    confirmed_active: i64,
    seat_gap: i64,
    needs_attention: i64,
    creations: i64,
    removals: i64,
    pending: Vec<Pending>,
    bars: Vec<Bar>,
    chart_width: u32,
    chart_height: u32,
    window_days: i32,
    seat_unconfirmed: i64,
    /// What snapshots of the app's user list verified and found.
    verification: crate::db::reports::Verification,
    /// `verification.verified_pct` as text ("–" before any user).
    verified_pct: String,
    leavers: Vec<crate::db::reports::Leaver>,
    batches: Vec<crate::db::batches::Batch>,
    /// The session may release or cancel held batches.
    decide_batches: bool,
    /// The session may download the audit trail.
    export_audit: bool,
    csrf: String,
}

impl ReportsPage {
    /// A leaver task's kind in words (the store keeps `remove`, `deactivate`).
    fn kind_words(&self, kind: &str) -> String {
        match crate::reconcile::TaskKind::parse(kind) {
            Some(k) => kind_label(k).to_owned(),
            None => kind.to_owned(),
        }
    }

    /// A batch's state in words.
    fn batch_state(&self, state: &str) -> &'static str {
        match state {
            "held" => "held for review",
            "released" => "released to the queue",
            "cancelled" => "cancelled",
            _ => "in an unknown state",
        }
    }
}

/// Bars scaled to the slowest kind's median.
fn bars(times: &[CompletionTimes]) -> Vec<Bar> {
    let longest = times
        .iter()
        .map(|t| t.median_secs)
        .fold(0.0_f64, f64::max)
        .max(1.0);
    let room = f64::from(CHART_WIDTH - LABEL_WIDTH - 90);
    times
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let y = i as u32 * (BAR_HEIGHT + BAR_GAP);
            // At least 2 units, so a kind done in seconds still shows a bar.
            let width = ((t.median_secs / longest) * room).round().max(2.0) as u32;
            Bar {
                label: kind_label(t.kind),
                y,
                text_y: y + BAR_HEIGHT / 2 + 5,
                width,
                value_x: LABEL_WIDTH + width + 6,
                median: duration(t.median_secs),
                max: duration(t.max_secs),
                count: t.count,
            }
        })
        .collect()
}

async fn reports_page(State(s): State<AppState>, me: SignedIn) -> Result<Response, PageError> {
    let app = &me.session.app_id;
    let seats = s.store.seat_report(app).await?;
    let times = s.store.completion_times(app).await?;
    let count = |kinds: &[TaskKind]| -> i64 {
        seats
            .pending
            .iter()
            .filter(|(k, _)| kinds.contains(k))
            .map(|(_, n)| n)
            .sum()
    };
    let bars = bars(&times);
    let seat_unconfirmed = s.store.seats(app).await?.removals_seat_unconfirmed;
    let leavers = s.store.leavers(app, 50).await?;
    let batches = s.store.batches(app).await?;
    let verification = s.store.verification(app).await?;
    let page = ReportsPage {
        verified_pct: verification
            .verified_pct
            .map_or_else(|| "–".to_owned(), |p| format!("{p:.1} %")),
        verification,
        seat_unconfirmed,
        leavers,
        batches,
        decide_batches: me.session.role.may(Action::DecideBatch),
        export_audit: me.session.role.may(Action::Audit),
        csrf: me.session.csrf_token.clone(),
        nav: Some(me.nav("reports")),
        desired_active: seats.desired_active,
        confirmed_active: seats.confirmed_active,
        seat_gap: seats.desired_active - seats.confirmed_active,
        needs_attention: seats.needs_attention,
        creations: count(&[TaskKind::CreateAccount, TaskKind::Reactivate]),
        removals: count(&[TaskKind::Remove, TaskKind::Deactivate]),
        pending: seats
            .pending
            .iter()
            .map(|(k, n)| Pending {
                label: kind_label(*k),
                count: *n,
            })
            .collect(),
        chart_width: CHART_WIDTH,
        chart_height: (bars.len() as u32 * (BAR_HEIGHT + BAR_GAP)).max(BAR_HEIGHT),
        bars,
        window_days: COMPLETION_WINDOW_DAYS,
    };
    Ok(render(StatusCode::OK, &page))
}

#[derive(Debug, serde::Deserialize)]
struct ExportQuery {
    subject: Option<String>,
}

/// The audit trail as CSV (admins): the whole app, or one subject.
async fn audit_csv(
    State(s): State<AppState>,
    me: SignedIn,
    Query(q): Query<ExportQuery>,
) -> Result<Response, PageError> {
    me.permit(Action::Audit)?;
    let subject = q
        .subject
        .as_deref()
        .map(str::trim)
        .filter(|x| !x.is_empty());
    let csv = s
        .store
        .audit_csv(&me.session.app_id, subject, None, None)
        .await?;
    let mut res = csv.into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"audit.csv\""),
    );
    Ok(res)
}

async fn decide(
    s: &AppState,
    me: &SignedIn,
    id: &str,
    form: Result<Form<CsrfForm>, FormRejection>,
    release: bool,
) -> Result<Response, PageError> {
    let Form(f) = form.map_err(|_| unreadable_form())?;
    me.check_csrf(f.csrf.as_deref())?;
    me.permit(Action::DecideBatch)?;
    let id: i64 = id
        .parse()
        .map_err(|_| PageError::NotFound("There is no such batch in this app.".into()))?;
    if release {
        s.store.release_batch(&me.actor(), id).await?;
    } else {
        s.store.cancel_batch(&me.actor(), id).await?;
    }
    Ok(super::see_other("/ui/reports#batches"))
}

async fn release_batch(
    State(s): State<AppState>,
    me: SignedIn,
    Path(id): Path<String>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, PageError> {
    decide(&s, &me, &id, form, true).await
}

async fn cancel_batch(
    State(s): State<AppState>,
    me: SignedIn,
    Path(id): Path<String>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, PageError> {
    decide(&s, &me, &id, form, false).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_slowest_kind() {
        let t = |kind, median_secs| CompletionTimes {
            kind,
            count: 1,
            median_secs,
            max_secs: median_secs,
        };
        let b = bars(&[t(TaskKind::CreateAccount, 3600.0), t(TaskKind::Remove, 1.0)]);
        assert_eq!(b[0].width, CHART_WIDTH - LABEL_WIDTH - 90);
        assert_eq!(b[1].width, 2);
        assert_eq!(b[1].y, BAR_HEIGHT + BAR_GAP);
    }
}
