//! Snapshots in the browser (`/ui/snapshots`): upload the app's user list (the observed
//! state, issue #15) as a file, see what each snapshot verified and found, and, for
//! admins, apply or discard one the safeguard holds, after reading its preview.
//!
//! The upload is streamed from the multipart body into the store as it arrives (the same
//! path as `POST /api/v1/snapshots`), so a 100k-row export never sits in memory whole.

use askama::Template;
use axum::extract::multipart::{MultipartError, MultipartRejection};
use axum::extract::rejection::FormRejection;
use axum::extract::{DefaultBodyLimit, Multipart, Path, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Form;
use futures_util::StreamExt;
use serde_json::Value;

use super::session::{unreadable_form, CsrfForm};
use super::{render, see_other, Nav, PageError, SignedIn};
use crate::auth::{Action, Actor};
use crate::db::snapshots::{ImportError, NewSnapshot, Snapshot};
use crate::db::Store;
use crate::http::{AppState, Route};
use crate::reconcile::snapshot::Format;

/// Snapshots listed on the page (the API pages through all of them).
const LISTED: i64 = 20;

pub(super) fn routes() -> Vec<Route> {
    vec![
        ("/ui/snapshots", Method::GET, get(snapshots_page)),
        (
            "/ui/snapshots",
            Method::POST,
            // The export is bounded by --snapshot-limit while it streams, not by the
            // request body limit of ordinary forms.
            post(upload).layer(DefaultBodyLimit::disable()),
        ),
        (
            "/ui/snapshots/{id}/apply",
            Method::POST,
            post(apply_snapshot),
        ),
        (
            "/ui/snapshots/{id}/discard",
            Method::POST,
            post(discard_snapshot),
        ),
    ]
}

/// One flagged account of a held snapshot's preview.
struct Flagged {
    key: String,
    text: String,
}

/// One snapshot as the page shows it.
struct Row {
    id: i64,
    state: String,
    held: bool,
    filename: String,
    submitted: String,
    taken: String,
    rows: String,
    sha256: String,
    hold_reason: Option<String>,
    /// "verified 5 · drift 2 · …" of what applying did (or would do, when held).
    counts: String,
    flagged: Vec<Flagged>,
    decided: Option<String>,
}

fn count_line(tally: &Value) -> String {
    [
        ("verified", "verified"),
        ("closes", "tasks closed"),
        ("drift", "drift"),
        ("missing", "missing"),
        ("contradictions", "done tasks contradicted"),
        ("orphans", "orphans"),
        ("in_progress", "left alone while worked"),
        ("stale", "changed since the export"),
    ]
    .iter()
    .filter_map(|(k, label)| {
        tally[*k]
            .as_u64()
            .filter(|n| *n > 0 || *k == "verified")
            .map(|n| format!("{label} {n}"))
    })
    .collect::<Vec<_>>()
    .join(" · ")
}

fn row(s: Snapshot) -> Row {
    let when = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M UTC").to_string();
    let held = s.state == "held";
    let counts = match (&s.summary, &s.preview) {
        (Some(summary), _) => count_line(summary),
        (None, Some(preview)) => format!("would find: {}", count_line(&preview["tally"])),
        (None, None) => String::new(),
    };
    let flagged = if held {
        s.preview
            .as_ref()
            .and_then(|p| p["flagged"].as_array())
            .map(|f| {
                f.iter()
                    .map(|f| Flagged {
                        key: f["key"].as_str().unwrap_or_default().to_owned(),
                        text: f["text"].as_str().unwrap_or_default().to_owned(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    Row {
        id: s.id,
        held,
        filename: s.filename.unwrap_or_else(|| format!("({})", s.format)),
        submitted: format!(
            "{} by {} ({})",
            when(s.created_at),
            s.submitted_by,
            s.submitted_role
        ),
        taken: when(s.taken_at),
        rows: s.rows.map_or_else(|| "–".to_owned(), |n| n.to_string()),
        sha256: s.sha256.unwrap_or_default(),
        hold_reason: s.hold_reason,
        counts,
        flagged,
        decided: s.decided_by.map(|by| match s.decided_at {
            Some(t) => format!("{} by {by} at {}", s.state, when(t)),
            None => format!("{} by {by}", s.state),
        }),
        state: s.state,
    }
}

#[derive(Template)]
#[template(path = "snapshots.html")]
struct SnapshotsPage {
    nav: Option<Nav>,
    csrf: String,
    app_name: String,
    /// The session may upload (agents and admins).
    submit: bool,
    /// The session may apply or discard held snapshots (admins).
    decide: bool,
    /// The profile's CSV columns, for the upload hint.
    columns: String,
    snapshots: Vec<Row>,
}

async fn snapshots_page(State(s): State<AppState>, me: SignedIn) -> Result<Response, PageError> {
    let app = &me.session.app_id;
    let profile = s.store.app_profile(app).await?;
    let (snaps, _) = s.store.snapshots(app, None, LISTED).await?;
    let page = SnapshotsPage {
        nav: Some(me.nav("snapshots")),
        csrf: me.session.csrf_token.clone(),
        app_name: me.session.app_name.clone(),
        submit: me.session.role.may(Action::SubmitSnapshot),
        decide: me.session.role.may(Action::DecideSnapshot),
        columns: profile
            .snapshot
            .columns
            .values()
            .cloned()
            .collect::<Vec<_>>()
            .join(", "),
        snapshots: snaps.into_iter().map(row).collect(),
    };
    Ok(render(StatusCode::OK, &page))
}

/// Why reading the uploaded file stopped.
#[derive(Debug)]
enum UploadError {
    /// Past `--snapshot-limit`.
    TooLarge(u64),
    /// The multipart body broke off or is malformed.
    Body(MultipartError),
}

fn unreadable_upload() -> PageError {
    PageError::Rejected {
        status: StatusCode::BAD_REQUEST,
        message: "The upload could not be read. Choose the file again on the snapshots page and \
                  send it."
            .into(),
    }
}

fn too_large(limit: u64) -> PageError {
    PageError::Rejected {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        message: format!(
            "The file is larger than the snapshot limit of {} MiB, so nothing was imported. \
             Whoever runs the server can raise it (--snapshot-limit).",
            limit / (1024 * 1024)
        ),
    }
}

/// Reconciles in a task of its own, so a closed browser tab does not stop it half-way
/// (each batch commits on its own; an admin can apply again to finish).
async fn reconcile(
    store: &Store,
    actor: &Actor,
    id: i64,
    confirmed: bool,
) -> Result<Snapshot, PageError> {
    let (store, actor) = (store.clone(), actor.clone());
    match tokio::spawn(async move { store.reconcile_snapshot(&actor, id, confirmed).await }).await {
        Ok(r) => Ok(r?),
        Err(e) => {
            tracing::error!(error = %e, snapshot = id, "applying a snapshot stopped");
            Err(PageError::Internal)
        }
    }
}

/// `POST /ui/snapshots`: the form's `csrf` field first, then the `file` (the page's
/// form puts them in that order, and browsers send fields in document order), so the
/// session is checked before a byte of the file is stored.
async fn upload(
    State(s): State<AppState>,
    me: SignedIn,
    mp: Result<Multipart, MultipartRejection>,
) -> Result<Response, PageError> {
    let mut mp = mp.map_err(|e| PageError::Rejected {
        status: e.status(),
        message: "Upload the file with the form on the snapshots page.".into(),
    })?;
    let mut csrf = None;
    let field = loop {
        let Some(field) = mp.next_field().await.map_err(|_| unreadable_upload())? else {
            // No file at all: still a CSRF check first, so a forged post learns nothing.
            me.check_csrf(csrf.as_deref())?;
            return Err(PageError::Rejected {
                status: StatusCode::BAD_REQUEST,
                message: "Choose the export file to upload.".into(),
            });
        };
        match field.name() {
            Some("csrf") => csrf = Some(field.text().await.map_err(|_| unreadable_upload())?),
            Some("file") => break field,
            _ => {}
        }
    };
    me.check_csrf(csrf.as_deref())?;
    me.permit(Action::SubmitSnapshot)?;
    let filename = field
        .file_name()
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(str::to_owned);
    let Some(filename) = filename else {
        return Err(PageError::Rejected {
            status: StatusCode::BAD_REQUEST,
            message: "Choose the export file to upload.".into(),
        });
    };
    // JSON rows by their extension or type; anything else is read as the CSV the
    // profile describes (exports often come as text/plain or octet-stream).
    let json = filename.to_ascii_lowercase().ends_with(".json")
        || field
            .content_type()
            .and_then(Format::from_content_type)
            .is_some_and(|f| f == Format::Json);
    let new = NewSnapshot {
        format: if json { Format::Json } else { Format::Csv },
        filename: Some(filename),
        taken_at: None,
    };
    let limit = s.config.snapshot_limit;
    let mut seen: u64 = 0;
    let chunks = field.map(move |c| {
        let c = c.map_err(UploadError::Body)?;
        seen += c.len() as u64;
        if seen > limit {
            return Err(UploadError::TooLarge(limit));
        }
        Ok(c)
    });
    let actor = me.actor();
    let id = match s.store.import_snapshot(&actor, new, Box::pin(chunks)).await {
        Ok(id) => id,
        Err(ImportError::Input(e)) => {
            return Err(PageError::Rejected {
                status: StatusCode::BAD_REQUEST,
                message: format!(
                    "The file was not imported and nothing changed: {}",
                    e.message
                ),
            })
        }
        Err(ImportError::Stream(UploadError::TooLarge(limit))) => return Err(too_large(limit)),
        Err(ImportError::Stream(UploadError::Body(e))) => {
            return Err(if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large(limit)
            } else {
                unreadable_upload()
            })
        }
        Err(ImportError::Store(e)) => return Err(e.into()),
    };
    reconcile(&s.store, &actor, id, false).await?;
    Ok(see_other(&format!("/ui/snapshots#snapshot-{id}")))
}

async fn decide(
    s: &AppState,
    me: &SignedIn,
    id: &str,
    form: Result<Form<CsrfForm>, FormRejection>,
    apply: bool,
) -> Result<Response, PageError> {
    let Form(f) = form.map_err(|_| unreadable_form())?;
    me.check_csrf(f.csrf.as_deref())?;
    me.permit(Action::DecideSnapshot)?;
    let id: i64 = id
        .parse()
        .map_err(|_| PageError::NotFound("There is no such snapshot in this app.".into()))?;
    let actor = me.actor();
    s.store.decide_snapshot(&actor, id, apply).await?;
    if apply {
        reconcile(&s.store, &actor, id, true).await?;
    }
    Ok(see_other(&format!("/ui/snapshots#snapshot-{id}")))
}

async fn apply_snapshot(
    State(s): State<AppState>,
    me: SignedIn,
    Path(id): Path<String>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, PageError> {
    decide(&s, &me, &id, form, true).await
}

async fn discard_snapshot(
    State(s): State<AppState>,
    me: SignedIn,
    Path(id): Path<String>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, PageError> {
    decide(&s, &me, &id, form, false).await
}
