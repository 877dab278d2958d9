//! The task page (`/ui/tasks/{id}`) and its actions. The page shows the instructions as a
//! checklist, the concrete values with copy buttons, the user's desired and confirmed
//! account side by side and the task's history; the actions are plain forms (claim,
//! complete with the task's completion fields and evidence files, fail, not applicable,
//! release, retry). A refused action re-renders the page with the reason in words.

use askama::Template;
use axum::extract::multipart::MultipartRejection;
use axum::extract::rejection::FormRejection;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Form;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::session::{random_secret, CsrfForm};
use super::view::{
    self, due_badge, kind_label, side_by_side, trail, user_state_label, DueBadge, SideRow, Time,
    TrailRow,
};
use super::{render, see_other, Nav, PageError, SignedIn};
use crate::auth::Action;
use crate::db::lifecycle::{Assignee, Completion, Lease, NewAttachment, Outcome, Reassignment};
use crate::db::tasks::Task;
use crate::error::Error;
use crate::http::attachment::{self, Unfit};
use crate::http::{AppState, Route};
use crate::reconcile::evidence::{check_fields, MAX_ATTACHMENTS, MAX_ATTACHMENT_BYTES};
use crate::reconcile::TaskState;

/// Body limit of a completion form: the largest allowed files plus the text fields.
const COMPLETE_BODY_LIMIT: usize = MAX_ATTACHMENTS * MAX_ATTACHMENT_BYTES + 64 * 1024;

pub(super) fn routes() -> Vec<Route> {
    vec![
        ("/ui/tasks/{id}", Method::GET, get(task_page)),
        (
            "/ui/tasks/{id}/claim",
            Method::POST,
            post(claim_chosen_task),
        ),
        (
            "/ui/tasks/{id}/complete",
            Method::POST,
            post(complete).layer(DefaultBodyLimit::max(COMPLETE_BODY_LIMIT)),
        ),
        ("/ui/tasks/{id}/release", Method::POST, post(release)),
        ("/ui/tasks/{id}/retry", Method::POST, post(retry)),
        ("/ui/tasks/{id}/reassign", Method::POST, post(reassign)),
        ("/ui/tasks/{id}/approve", Method::POST, post(approve)),
        ("/ui/tasks/{id}/reject", Method::POST, post(reject)),
        (
            "/ui/tasks/{id}/attachments/{n}",
            Method::GET,
            get(attachment),
        ),
    ]
}

/// Prefix of completion-field inputs, so a field named like a form control (`note`,
/// `csrf`) cannot collide with it.
const FIELD_PREFIX: &str = "field.";

struct TicketFacts {
    key: String,
    url: Option<String>,
    status: Option<String>,
    pending: Option<String>,
}

struct CopyValue {
    label: &'static str,
    value: String,
    id: String,
}

struct Choice {
    value: String,
    selected: bool,
}

struct FieldInput {
    input_name: String,
    id: String,
    label: String,
    required: bool,
    choices: Vec<Choice>,
    value: String,
}

struct Change {
    field: String,
    from: String,
    to: String,
}

struct AttachmentLink {
    href: String,
    name: String,
    size: String,
}

/// What the person may do with the task now.
#[derive(Default)]
struct Actions {
    /// Open and claimable: the Claim button.
    claim: bool,
    /// In progress with a lapsed lease: Claim takes it over.
    take_over: bool,
    /// Held by this session's token: complete, fail, not applicable, release.
    work: bool,
    /// Failed: Retry.
    retry: bool,
    /// Awaiting approval and the session is an admin's: Approve / Reject.
    approve: bool,
    /// Why nothing can be done now, if so (held by someone else, waiting, finished).
    why_not: Option<String>,
}

#[derive(Template)]
#[template(path = "task.html")]
struct TaskPage {
    nav: Option<Nav>,
    id: i64,
    title: String,
    kind: &'static str,
    kind_label: &'static str,
    leaver: bool,
    state: TaskState,
    state_label: &'static str,
    user_name: String,
    user_href: String,
    created: Time,
    due: Option<DueBadge>,
    attempts: i32,
    holder: Option<String>,
    finished: Option<String>,
    note: Option<String>,
    cancel_reason: Option<String>,
    /// Its ticket (Jira, ServiceNow): key, link, status, and why it did not close the
    /// task when it could not.
    ticket: Option<TicketFacts>,
    steps: Vec<String>,
    values: Vec<CopyValue>,
    changes: Vec<Change>,
    side: Vec<SideRow>,
    /// What snapshots of the app's user list found about this task, oldest first.
    findings: Vec<String>,
    user_state: String,
    history: Vec<TrailRow>,
    evidence: Vec<(String, String)>,
    attachments: Vec<AttachmentLink>,
    actions: Actions,
    /// Admins only, for a claimed or claimable task: where it can be (re)assigned, as
    /// (form value, label); empty hides the form.
    assignees: Vec<(String, String)>,
    fields: Vec<FieldInput>,
    csrf: String,
    idem: String,
    note_value: String,
    notice: Option<String>,
    error: Option<String>,
    max_files: usize,
    max_mb: usize,
}

/// Values the person typed, put back into the form when a completion is refused.
#[derive(Default)]
struct Prefill {
    fields: Map<String, Value>,
    note: String,
}

fn task_id(id: &str) -> Result<i64, PageError> {
    id.parse()
        .map_err(|_| PageError::NotFound(format!("There is no task {id} in this app.")))
}

/// Why a task cannot be claimed or worked by this person now, in words.
fn explain(t: &Task, mine: bool) -> String {
    match t.state {
        TaskState::InProgress => {
            let who = t.claimed_by.as_deref().unwrap_or("someone");
            match t.lease_expires_at {
                Some(until) if until > chrono::Utc::now() && !mine => format!(
                    "This task is being worked by {who}. Ask them, or wait until their lease \
                     ends at {}.",
                    Time::clock(until)
                ),
                Some(_) if mine => "You hold this task: complete, fail or release it below.".into(),
                _ => {
                    format!("The lease of {who} on this task has lapsed; claim it to take it over.")
                }
            }
        }
        TaskState::Open => match t.blocked_by {
            Some(n) => format!(
                "This task waits for task #{n} of the same user, which is in progress: tasks \
                 of one user are done in order. Finish that one first."
            ),
            None => "Someone is acting on this task right now. Reload the page in a moment.".into(),
        },
        TaskState::Failed => "This task failed. Retry it to plan the user's work afresh.".into(),
        TaskState::Done => "This task is done; there is nothing left to do.".into(),
        TaskState::NotApplicable => {
            "This task was closed as not applicable; there is nothing left to do.".into()
        }
        TaskState::Cancelled => format!(
            "This task was cancelled{}; there is nothing left to do.",
            t.cancel_reason
                .as_deref()
                .map(|r| format!(" ({})", r.trim_end_matches('.')))
                .unwrap_or_default()
        ),
        TaskState::AwaitingApproval => {
            "This task is awaiting approval: an admin must approve it before anyone may claim it."
                .into()
        }
        TaskState::Held => {
            "This task is held in a batch for review: an admin must release the batch first.".into()
        }
    }
}

fn str_of(v: &Value, key: &str) -> Option<String> {
    v.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Renders the task page, with an optional notice (after a successful action) or error
/// (a refused one) and the values to put back into the completion form.
async fn show(
    s: &AppState,
    me: &SignedIn,
    id: i64,
    status: StatusCode,
    notice: Option<String>,
    error: Option<String>,
    prefill: Prefill,
) -> Result<Response, PageError> {
    let app = &me.session.app_id;
    let (t, history) = s.store.task_with_history(app, id).await?;
    let user = s.store.user_view(app, t.subject.id).await?;
    let holder = s.store.task_holder(app, id).await?;
    let now = chrono::Utc::now();
    let mine = holder == Some(me.session.token_id);
    let lapsed = t.lease_expires_at.is_some_and(|l| l <= now);
    let mut actions = Actions::default();
    match t.state {
        TaskState::Open => actions.claim = t.blocked_by.is_none(),
        TaskState::InProgress => {
            actions.work = mine;
            actions.take_over = !mine && lapsed;
        }
        TaskState::Failed => actions.retry = true,
        TaskState::AwaitingApproval => actions.approve = me.session.role.may(Action::Approve),
        TaskState::Held | TaskState::Done | TaskState::NotApplicable | TaskState::Cancelled => {}
    }
    if !(actions.claim || actions.work || actions.take_over) {
        actions.why_not = Some(explain(&t, mine));
    }
    let assignable = match t.state {
        TaskState::InProgress => true,
        TaskState::Open => t.blocked_by.is_none(),
        TaskState::AwaitingApproval
        | TaskState::Held
        | TaskState::Done
        | TaskState::Failed
        | TaskState::NotApplicable
        | TaskState::Cancelled => false,
    };
    let assignees = if assignable && me.session.role.may(Action::Reassign) {
        let current = holder.filter(|_| t.state == TaskState::InProgress);
        let mut to: Vec<(String, String)> = s
            .store
            .assignees(app)
            .await?
            .into_iter()
            .filter(|a| Some(a.token_id) != current)
            .map(|a| {
                let label = format!("{} ({})", a.name, a.role.as_str());
                (a.token_id.to_string(), label)
            })
            .collect();
        if t.state == TaskState::InProgress {
            to.insert(0, ("queue".into(), "Back to the queue".into()));
        }
        to
    } else {
        Vec::new()
    };
    let account = if t.target.is_null() {
        &t.base
    } else {
        &t.target
    };
    let values = [
        ("user_name", "userName"),
        ("email", "Email"),
        ("role", "Role"),
        ("given_name", "Given name"),
        ("family_name", "Family name"),
        ("display_name", "Display name"),
        ("department", "Department"),
    ]
    .into_iter()
    .filter_map(|(key, label)| {
        str_of(account, key).map(|value| CopyValue {
            label,
            value,
            id: format!("v-{key}"),
        })
    })
    .collect();
    let steps = t
        .instructions
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let changes = t
        .changes
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| Change {
                    field: view::field_label(&view::show(c.get("field"))),
                    from: view::show(c.get("from")),
                    to: view::show(c.get("to")),
                })
                .collect()
        })
        .unwrap_or_default();
    let fields = t
        .completion_fields
        .iter()
        .map(|f| {
            let value = prefill
                .fields
                .get(&f.name)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            FieldInput {
                input_name: format!("{FIELD_PREFIX}{}", f.name),
                id: format!("f-{}", f.name),
                label: f.label.clone(),
                required: f.required,
                choices: f
                    .choices
                    .iter()
                    .map(|c| Choice {
                        selected: *c == value,
                        value: c.clone(),
                    })
                    .collect(),
                value,
            }
        })
        .collect();
    let evidence = match &t.evidence {
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| (k.clone(), view::show(Some(v))))
            .collect(),
        _ => Vec::new(),
    };
    let attachments = t
        .attachments
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| AttachmentLink {
                    href: format!("/ui/tasks/{id}/attachments/{}", view::show(f.get("n"))),
                    name: view::show(f.get("filename")),
                    size: format!(
                        "{:.1} KiB",
                        f.get("size").and_then(Value::as_f64).unwrap_or(0.0) / 1024.0
                    ),
                })
                .collect()
        })
        .unwrap_or_default();
    let holder_text = match (&t.claimed_by, t.lease_expires_at) {
        (Some(who), Some(until)) if t.state == TaskState::InProgress => Some(if until > now {
            format!("{who}, lease until {}", Time::clock(until))
        } else {
            format!("{who}, lease lapsed at {}", Time::clock(until))
        }),
        _ => None,
    };
    let page = TaskPage {
        nav: Some(me.nav("tasks")),
        id,
        title: t.title.clone(),
        kind: t.kind.as_str(),
        kind_label: kind_label(t.kind),
        leaver: view::is_leaver(t.kind),
        state_label: t.state.label(),
        state: t.state,
        user_name: t.subject.user_name.clone(),
        user_href: format!("/ui/users/{}", t.subject.id),
        created: Time::of(t.created_at),
        due: due_badge(t.state, &t.sla_state, t.due_at, now),
        attempts: t.attempts,
        holder: holder_text,
        finished: t.finished_at.map(|f| {
            format!(
                "{} by {}",
                Time::of(f).text,
                t.finished_by.as_deref().unwrap_or("—")
            )
        }),
        note: t.note.clone().filter(|n| !n.is_empty()),
        cancel_reason: t.cancel_reason.clone(),
        ticket: t.ticket.as_ref().map(|k| TicketFacts {
            key: k.key.clone().unwrap_or_else(|| "not created yet".into()),
            url: k.url.clone(),
            status: k.status.clone(),
            pending: k.pending.clone(),
        }),
        steps,
        values,
        changes,
        side: match user.observed_snapshot {
            Some(_) => view::with_observed(
                side_by_side(user.desired.as_ref(), user.confirmed.as_ref()),
                user.observed.as_ref(),
            ),
            None => side_by_side(user.desired.as_ref(), user.confirmed.as_ref()),
        },
        findings: t
            .findings
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f.get("text").and_then(Value::as_str).map(str::to_owned))
            .collect(),
        user_state: user_state_label(&user.state).to_owned(),
        history: trail(&history),
        evidence,
        attachments,
        actions,
        assignees,
        fields,
        csrf: me.session.csrf_token.clone(),
        idem: random_secret(),
        note_value: prefill.note,
        notice,
        error,
        max_files: MAX_ATTACHMENTS,
        max_mb: MAX_ATTACHMENT_BYTES / (1024 * 1024),
    };
    Ok(render(status, &page))
}

#[derive(Debug, Deserialize)]
struct NoticeQuery {
    notice: Option<String>,
}

async fn task_page(
    State(s): State<AppState>,
    me: SignedIn,
    Path(id): Path<String>,
    Query(q): Query<NoticeQuery>,
) -> Result<Response, PageError> {
    let id = task_id(&id)?;
    let notice = match q.notice.as_deref() {
        Some("claimed") => Some(
            "You claimed this task. Work through the checklist, then record the outcome below."
                .to_owned(),
        ),
        Some("released") => Some("You gave this task back to the queue.".to_owned()),
        Some("retried") => Some("A new task was planned for this user.".to_owned()),
        Some("reassigned") => Some(
            "Reassigned: the new holder can work it now; the previous holder's lease no longer \
             works."
                .to_owned(),
        ),
        Some("requeued") => Some("The task is back in the queue.".to_owned()),
        Some("approved") => Some("Approved: the task is in the queue now.".to_owned()),
        Some("rejected") => Some(
            "Rejected: the task is cancelled and the app stays as it was until the IdP changes \
             this user again."
                .to_owned(),
        ),
        Some("failed") => Some(
            "Recorded as failed. The user is flagged as needing attention; retry when the app \
             can be changed."
                .to_owned(),
        ),
        _ => None,
    };
    show(
        &s,
        &me,
        id,
        StatusCode::OK,
        notice,
        None,
        Prefill::default(),
    )
    .await
}

fn form_rejected(e: FormRejection) -> PageError {
    PageError::Rejected {
        status: e.status(),
        message: "Use the buttons on the task page.".into(),
    }
}

/// A refused action: the task page again, with the reason in words.
async fn refused(s: &AppState, me: &SignedIn, id: i64, e: Error) -> Result<Response, PageError> {
    let message = match &e {
        Error::TaskConflict { code, message } => match *code {
            "task_not_in_progress" | "not_your_task" | "lease_mismatch" | "task_not_failed" => {
                let t = s.store.task(&me.session.app_id, id).await?;
                let holder = s.store.task_holder(&me.session.app_id, id).await?;
                explain(&t, holder == Some(me.session.token_id))
            }
            "already_retried" => format!("{message}. Open that task instead."),
            "nothing_to_do" => {
                "The app already has what the IdP wants, so there is nothing to retry.".into()
            }
            _ => message.clone(),
        },
        Error::Invalid { message, .. } => message.clone(),
        Error::NotFound(_)
        | Error::Uniqueness(_)
        | Error::Scim(_)
        | Error::PreconditionFailed(_)
        | Error::Misconfigured(_)
        | Error::Unavailable(_)
        | Error::Db(_) => return Err(e.into()),
    };
    let status = match e {
        Error::Invalid { .. } => StatusCode::BAD_REQUEST,
        _ => StatusCode::CONFLICT,
    };
    show(s, me, id, status, None, Some(message), Prefill::default()).await
}

async fn claim_chosen_task(
    State(s): State<AppState>,
    me: SignedIn,
    Path(id): Path<String>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, PageError> {
    let id = task_id(&id)?;
    let Form(f) = form.map_err(form_rejected)?;
    me.check_csrf(f.csrf.as_deref())?;
    me.permit(Action::Work)?;
    let lease = Lease {
        seconds: s.config.lease_secs,
        max_attempts: s.config.max_attempts,
    };
    match s.store.claim_chosen(&me.actor(), lease, id).await? {
        Some(_) => Ok(see_other(&format!("/ui/tasks/{id}?notice=claimed"))),
        None => {
            let t = s.store.task(&me.session.app_id, id).await?;
            let holder = s.store.task_holder(&me.session.app_id, id).await?;
            let why = explain(&t, holder == Some(me.session.token_id));
            show(
                &s,
                &me,
                id,
                StatusCode::CONFLICT,
                None,
                Some(why),
                Prefill::default(),
            )
            .await
        }
    }
}

async fn release(
    State(s): State<AppState>,
    me: SignedIn,
    Path(id): Path<String>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, PageError> {
    let id = task_id(&id)?;
    let Form(f) = form.map_err(form_rejected)?;
    me.check_csrf(f.csrf.as_deref())?;
    me.permit(Action::Work)?;
    match s.store.release(&me.actor(), id, None).await {
        Ok(_) => Ok(see_other(&format!("/ui/tasks/{id}?notice=released"))),
        Err(e) => refused(&s, &me, id, e).await,
    }
}

async fn retry(
    State(s): State<AppState>,
    me: SignedIn,
    Path(id): Path<String>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, PageError> {
    let id = task_id(&id)?;
    let Form(f) = form.map_err(form_rejected)?;
    me.check_csrf(f.csrf.as_deref())?;
    me.permit(Action::Work)?;
    match s.store.retry(&me.actor(), id).await {
        Ok(new) => Ok(see_other(&format!("/ui/tasks/{}?notice=retried", new.id))),
        Err(e) => refused(&s, &me, id, e).await,
    }
}

#[derive(Debug, Deserialize)]
struct RejectForm {
    csrf: Option<String>,
    reason: Option<String>,
}

async fn approve(
    State(s): State<AppState>,
    me: SignedIn,
    Path(id): Path<String>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, PageError> {
    let id = task_id(&id)?;
    let Form(f) = form.map_err(form_rejected)?;
    me.check_csrf(f.csrf.as_deref())?;
    me.permit(Action::Approve)?;
    match s.store.approve(&me.actor(), id).await {
        Ok(_) => Ok(see_other(&format!("/ui/tasks/{id}?notice=approved"))),
        Err(e) => refused(&s, &me, id, e).await,
    }
}

async fn reject(
    State(s): State<AppState>,
    me: SignedIn,
    Path(id): Path<String>,
    form: Result<Form<RejectForm>, FormRejection>,
) -> Result<Response, PageError> {
    let id = task_id(&id)?;
    let Form(f) = form.map_err(form_rejected)?;
    me.check_csrf(f.csrf.as_deref())?;
    me.permit(Action::Approve)?;
    let reason = f.reason.as_deref().map(str::trim).filter(|r| !r.is_empty());
    match s.store.reject(&me.actor(), id, reason).await {
        Ok(_) => Ok(see_other(&format!("/ui/tasks/{id}?notice=rejected"))),
        Err(e) => refused(&s, &me, id, e).await,
    }
}

#[derive(Debug, Deserialize)]
struct ReassignForm {
    csrf: Option<String>,
    to: Option<String>,
    reason: Option<String>,
}

/// Admins: hands the task to another token, or back to the queue.
async fn reassign(
    State(s): State<AppState>,
    me: SignedIn,
    Path(id): Path<String>,
    form: Result<Form<ReassignForm>, FormRejection>,
) -> Result<Response, PageError> {
    let id = task_id(&id)?;
    let Form(f) = form.map_err(form_rejected)?;
    me.check_csrf(f.csrf.as_deref())?;
    me.permit(Action::Reassign)?;
    // Another app's task (or none) is "not found" before the form is looked at.
    s.store.task(&me.session.app_id, id).await?;
    let to = match f.to.as_deref().map(str::trim) {
        Some("queue") => Assignee::Queue,
        Some(t) => match uuid::Uuid::parse_str(t) {
            Ok(token) => Assignee::Token(token),
            Err(_) => {
                return Err(PageError::Rejected {
                    status: StatusCode::BAD_REQUEST,
                    message: "Choose who gets the task from the list on the task page.".into(),
                })
            }
        },
        None => {
            return Err(PageError::Rejected {
                status: StatusCode::BAD_REQUEST,
                message: "Choose who gets the task from the list on the task page.".into(),
            })
        }
    };
    let r = Reassignment {
        to,
        lease_seconds: s.config.lease_secs,
        reason: f.reason,
    };
    match s.store.reassign(&me.actor(), id, r).await {
        Ok(t) if t.state == TaskState::InProgress => {
            Ok(see_other(&format!("/ui/tasks/{id}?notice=reassigned")))
        }
        Ok(_) => Ok(see_other(&format!("/ui/tasks/{id}?notice=requeued"))),
        Err(e) => refused(&s, &me, id, e).await,
    }
}

/// A completion form as sent.
#[derive(Default)]
struct CompleteForm {
    csrf: Option<String>,
    outcome: Option<String>,
    idem: Option<String>,
    note: String,
    fields: Map<String, Value>,
    files: Vec<NewAttachment>,
}

fn too_large() -> PageError {
    PageError::Rejected {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        message: format!(
            "The files are too large: attach at most {MAX_ATTACHMENTS} files of {} MiB each.",
            MAX_ATTACHMENT_BYTES / (1024 * 1024)
        ),
    }
}

fn multipart_failed(e: axum::extract::multipart::MultipartError) -> PageError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        too_large()
    } else {
        PageError::Rejected {
            status: e.status(),
            message: "The form could not be read. Go back to the task page and send it again."
                .into(),
        }
    }
}

/// Reads the completion form, checking file count, sizes, names and types as the task
/// API does (`reconcile::evidence` limits). Empty file inputs (nothing chosen) are skipped.
async fn read_complete(mut mp: Multipart) -> Result<CompleteForm, PageError> {
    let mut f = CompleteForm::default();
    while let Some(field) = mp.next_field().await.map_err(multipart_failed)? {
        let name = field.name().unwrap_or_default().to_owned();
        if name == "files" {
            let filename = field.file_name().unwrap_or_default().trim().to_owned();
            let content_type = field
                .content_type()
                .unwrap_or("application/octet-stream")
                .to_owned();
            let data = field.bytes().await.map_err(multipart_failed)?;
            if filename.is_empty() && data.is_empty() {
                continue;
            }
            let fits = attachment::check_count(f.files.len() + 1)
                .and_then(|()| attachment::check_file(&filename, &content_type, data.len()));
            match fits {
                Ok(()) => {}
                Err(Unfit::TooMany | Unfit::TooLarge(_)) => return Err(too_large()),
                Err(Unfit::BadNameOrType) => {
                    return Err(PageError::Rejected {
                        status: StatusCode::BAD_REQUEST,
                        message: format!(
                            "The file {filename:?} cannot be attached: give it a plain name of at \
                             most 200 characters."
                        ),
                    })
                }
            }
            f.files.push(NewAttachment {
                filename,
                content_type,
                data: data.to_vec(),
            });
            continue;
        }
        let text = field.text().await.map_err(multipart_failed)?;
        // The edge check leaves multipart to this reader (files may hold any byte).
        if crate::http::nul::has_nul(&text) || crate::http::nul::has_nul(&name) {
            return Err(crate::http::surface::Refusal::Nul { filter: false }.into());
        }
        match name.as_str() {
            "csrf" => f.csrf = Some(text),
            "outcome" => f.outcome = Some(text),
            "idem" => f.idem = Some(text),
            "note" => f.note = text.trim().to_owned(),
            other => {
                if let Some(key) = other.strip_prefix(FIELD_PREFIX) {
                    let v = text.trim();
                    // An empty optional input means "not recorded", not "".
                    if !v.is_empty() {
                        f.fields.insert(key.to_owned(), Value::String(v.to_owned()));
                    }
                }
            }
        }
    }
    Ok(f)
}

async fn complete(
    State(s): State<AppState>,
    me: SignedIn,
    Path(id): Path<String>,
    mp: Result<Multipart, MultipartRejection>,
) -> Result<Response, PageError> {
    let id = task_id(&id)?;
    let mp = mp.map_err(|e| PageError::Rejected {
        status: e.status(),
        message: "Record the outcome with the forms on the task page.".into(),
    })?;
    let f = read_complete(mp).await?;
    me.check_csrf(f.csrf.as_deref())?;
    me.permit(Action::Work)?;
    let outcome = match f.outcome.as_deref().unwrap_or("done") {
        "done" => Outcome::Done,
        "failed" => Outcome::Failed,
        "not_applicable" => Outcome::NotApplicable,
        other => {
            return Err(PageError::Rejected {
                status: StatusCode::BAD_REQUEST,
                message: format!("{other:?} is not an outcome: use the task page's buttons."),
            })
        }
    };
    let t = s.store.task(&me.session.app_id, id).await?;
    let prefill = || Prefill {
        fields: f.fields.clone(),
        note: f.note.clone(),
    };
    // A retried form of a finished task is answered by the store (same Idempotency-Key);
    // fields are checked only while the task is being worked, as in the task API.
    if t.state == TaskState::InProgress {
        if let Err(e) = check_fields(
            t.kind,
            &t.completion_fields,
            &f.fields,
            outcome == Outcome::Done,
        ) {
            let labels: Vec<&str> = t
                .completion_fields
                .iter()
                .filter(|c| e.message.contains(c.name.as_str()))
                .map(|c| c.label.as_str())
                .collect();
            // Labels are questions or phrases with their own punctuation ("Seat freed?"):
            // quoted, so the sentence's full stop never doubles theirs.
            let quoted = labels
                .iter()
                .map(|l| format!("“{l}”"))
                .collect::<Vec<_>>()
                .join(", ");
            let message = match e.code {
                "missing_fields" => format!("Fill in {quoted}."),
                _ => format!("Choose one of the offered answers for {quoted}."),
            };
            return show(
                &s,
                &me,
                id,
                StatusCode::BAD_REQUEST,
                None,
                Some(message),
                prefill(),
            )
            .await;
        }
    }
    let c = Completion {
        outcome,
        lease_id: None,
        idempotency_key: f
            .idem
            .clone()
            .filter(|k| !k.is_empty())
            .map(|k| format!("web:{}:{k}", me.session.token_id)),
        note: Some(f.note.clone()).filter(|n| !n.is_empty()),
        fields: f.fields.clone(),
        attachments: f.files,
    };
    match s.store.complete(&me.actor(), id, c).await {
        Ok(done) if done.state == TaskState::Failed => {
            Ok(see_other(&format!("/ui/tasks/{id}?notice=failed")))
        }
        Ok(_) => Ok(see_other(&format!("/ui/tasks?completed={id}"))),
        Err(e @ Error::TaskConflict { .. }) => refused(&s, &me, id, e).await,
        Err(Error::Invalid { code, message }) => {
            // A note or field over its limit is not echoed back into the page.
            let again = match code {
                "too_long" | "too_many_fields" => Prefill::default(),
                _ => prefill(),
            };
            show(
                &s,
                &me,
                id,
                StatusCode::BAD_REQUEST,
                None,
                Some(message),
                again,
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

async fn attachment(
    State(s): State<AppState>,
    me: SignedIn,
    Path((id, n)): Path<(String, String)>,
) -> Result<Response, PageError> {
    let id = task_id(&id)?;
    let n: i32 = n
        .parse()
        .map_err(|_| PageError::NotFound("There is no such attachment.".into()))?;
    let (filename, content_type, data) = s.store.attachment(&me.session.app_id, id, n).await?;
    Ok(attachment::download(&filename, &content_type, data))
}
