//! Tokens (`/ui/tokens`, admins): the app's tokens, creating one (its secret shown once,
//! on the answer to the form, never in a URL) and revoking one. The same store calls and
//! role rule ([`Action::ManageTokens`]) as `/api/v1/tokens`, audited alike. The app's
//! OAuth clients are listed there too and can be revoked, as over
//! `/api/v1/oauth-clients` (`oauth_client.revoke` in the audit trail).

use askama::Template;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Form;
use uuid::Uuid;

use super::session::{unreadable_form, CsrfForm};
use super::{render, see_other, Nav, PageError, SignedIn};
use crate::auth::{check_new_token, generate_token, hash_token, Action, Role};
use crate::error::Error;
use crate::http::{AppState, Route};

pub(super) fn routes() -> Vec<Route> {
    vec![
        ("/ui/tokens", Method::GET, get(tokens_page)),
        ("/ui/tokens", Method::POST, post(create_token)),
        ("/ui/tokens/{id}/revoke", Method::POST, post(revoke_token)),
        (
            "/ui/oauth-clients/{id}/revoke",
            Method::POST,
            post(revoke_client),
        ),
    ]
}

/// One row of the list.
struct Row {
    id: Uuid,
    name: String,
    role: &'static str,
    created: String,
    revoked: Option<String>,
    /// The token this session signed in with (it cannot revoke itself).
    current: bool,
}

/// One OAuth client of the app (created with `scimbridge oauth-client create`).
struct ClientRow {
    id: Uuid,
    name: String,
    created: String,
    revoked: Option<String>,
}

/// A token just created: its secret, shown once.
struct Created {
    name: String,
    role: &'static str,
    secret: String,
    use_for: &'static str,
}

#[derive(Template)]
#[template(path = "tokens.html")]
struct TokensPage {
    nav: Option<Nav>,
    app_name: String,
    tokens: Vec<Row>,
    clients: Vec<ClientRow>,
    created: Option<Created>,
    notice: Option<String>,
    error: Option<String>,
    form_role: String,
    form_name: String,
    cache_secs: u64,
    csrf: String,
}

/// What to show besides the list.
#[derive(Default)]
struct Extra {
    created: Option<Created>,
    notice: Option<String>,
    error: Option<String>,
    form_role: String,
    form_name: String,
}

async fn page(
    s: &AppState,
    me: &SignedIn,
    status: StatusCode,
    extra: Extra,
) -> Result<Response, PageError> {
    let tokens = s
        .store
        .tokens(Some(&me.session.app_id))
        .await?
        .into_iter()
        .map(|t| Row {
            id: t.token_id,
            current: t.token_id == me.session.token_id,
            name: t.name,
            role: t.role.as_str(),
            created: t.created_at.format("%Y-%m-%d %H:%M UTC").to_string(),
            revoked: t
                .revoked_at
                .map(|r| r.format("%Y-%m-%d %H:%M UTC").to_string()),
        })
        .collect();
    let clients = s
        .store
        .oauth_clients(&me.session.app_id)
        .await?
        .into_iter()
        .map(|c| ClientRow {
            id: c.client_id,
            name: c.name,
            created: c.created_at.format("%Y-%m-%d %H:%M UTC").to_string(),
            revoked: c
                .revoked_at
                .map(|r| r.format("%Y-%m-%d %H:%M UTC").to_string()),
        })
        .collect();
    let p = TokensPage {
        nav: Some(me.nav("tokens")),
        app_name: me.session.app_name.clone(),
        tokens,
        clients,
        created: extra.created,
        notice: extra.notice,
        error: extra.error,
        form_role: if extra.form_role.is_empty() {
            "agent".into()
        } else {
            extra.form_role
        },
        form_name: extra.form_name,
        cache_secs: s.config.token_cache_secs,
        csrf: me.session.csrf_token.clone(),
    };
    Ok(render(status, &p))
}

#[derive(Debug, serde::Deserialize)]
struct PageQuery {
    /// Set after a revocation: how many tasks the token held went back to the queue.
    revoked: Option<usize>,
    /// Set after an OAuth client's revocation.
    client_revoked: Option<u8>,
}

async fn tokens_page(
    State(s): State<AppState>,
    me: SignedIn,
    q: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, PageError> {
    me.permit(Action::ManageTokens)?;
    let q = q.ok().map(|Query(q)| q);
    let client_revoked = q.as_ref().is_some_and(|q| q.client_revoked.is_some());
    let notice = q.and_then(|q| q.revoked).map(|n| match n {
        0 => "Token revoked.".to_owned(),
        1 => "Token revoked; the task it held went back to the queue.".to_owned(),
        n => format!("Token revoked; the {n} tasks it held went back to the queue."),
    });
    let notice = notice.or_else(|| {
        client_revoked.then(|| {
            "OAuth client revoked: its secret and its access tokens no longer work.".to_owned()
        })
    });
    page(
        &s,
        &me,
        StatusCode::OK,
        Extra {
            notice,
            ..Extra::default()
        },
    )
    .await
}

#[derive(Debug, serde::Deserialize)]
struct CreateForm {
    csrf: Option<String>,
    role: Option<String>,
    name: Option<String>,
}

/// Creates a token and answers the page with its secret (200, `no-store` like every
/// page): a redirect would have to carry the secret in a URL.
async fn create_token(
    State(s): State<AppState>,
    me: SignedIn,
    form: Result<Form<CreateForm>, FormRejection>,
) -> Result<Response, PageError> {
    let Form(f) = form.map_err(|_| unreadable_form())?;
    me.check_csrf(f.csrf.as_deref())?;
    me.permit(Action::ManageTokens)?;
    let (role_in, name_in) = (f.role.unwrap_or_default(), f.name.unwrap_or_default());
    let refuse = |message: String| Extra {
        error: Some(message),
        form_role: role_in.clone(),
        form_name: name_in.clone(),
        ..Extra::default()
    };
    let (role, name) = match check_new_token(&role_in, &name_in) {
        Ok(ok) => ok,
        Err((_, message)) => {
            let message = format!("Nothing was created: {message}.");
            return page(&s, &me, StatusCode::BAD_REQUEST, refuse(message)).await;
        }
    };
    let secret = generate_token();
    let token = match s
        .store
        .create_app_token(&me.actor(), role, &name, &hash_token(&secret))
        .await
    {
        Ok(t) => t,
        Err(Error::TaskConflict { message, .. }) => {
            let message = format!("Nothing was created: {message}.");
            return page(&s, &me, StatusCode::CONFLICT, refuse(message)).await;
        }
        Err(e) => return Err(e.into()),
    };
    let use_for = match role {
        Role::Scim => {
            "Give it to the IdP as its bearer token (Okta: HTTP Header; Entra: Secret Token)."
        }
        Role::Agent => "Give it to scimbridge agent (SCIMBRIDGE_TOKEN) or another automation.",
        Role::Admin | Role::System => {
            "Its holder signs in here with it, or uses it with the CLI and the task API."
        }
    };
    let created = Created {
        name: token.name,
        role: token.role.as_str(),
        secret,
        use_for,
    };
    page(
        &s,
        &me,
        StatusCode::OK,
        Extra {
            created: Some(created),
            ..Extra::default()
        },
    )
    .await
}

async fn revoke_token(
    State(s): State<AppState>,
    me: SignedIn,
    Path(id): Path<String>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, PageError> {
    let Form(f) = form.map_err(|_| unreadable_form())?;
    me.check_csrf(f.csrf.as_deref())?;
    me.permit(Action::ManageTokens)?;
    let not_found = || PageError::NotFound("There is no such live token in this app.".into());
    let token_id = Uuid::parse_str(&id).map_err(|_| not_found())?;
    if token_id == me.session.token_id {
        return Err(PageError::Conflict(
            "This session signed in with that token, so it cannot revoke it. Sign in with \
             another admin token to revoke it."
                .into(),
        ));
    }
    let done = match s.store.revoke_app_token(&me.actor(), token_id).await {
        Ok(d) => d,
        Err(Error::NotFound(_)) => return Err(not_found()),
        Err(e) => return Err(e.into()),
    };
    s.tokens.forget(token_id);
    Ok(see_other(&format!(
        "/ui/tokens?revoked={}",
        done.returned.len()
    )))
}

/// Revokes an OAuth client of the app: the same store call as
/// `POST /api/v1/oauth-clients/{id}/revoke` (audited as `oauth_client.revoke`), and its
/// access tokens stop at once on this server.
async fn revoke_client(
    State(s): State<AppState>,
    me: SignedIn,
    Path(id): Path<String>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, PageError> {
    let Form(f) = form.map_err(|_| unreadable_form())?;
    me.check_csrf(f.csrf.as_deref())?;
    me.permit(Action::ManageTokens)?;
    let not_found =
        || PageError::NotFound("There is no such live OAuth client in this app.".into());
    let client_id = Uuid::parse_str(&id).map_err(|_| not_found())?;
    match s
        .store
        .revoke_app_oauth_client(&me.actor(), client_id)
        .await
    {
        Ok(_) => {}
        Err(Error::NotFound(_)) => return Err(not_found()),
        Err(e) => return Err(e.into()),
    }
    s.tokens.forget(client_id);
    Ok(see_other("/ui/tokens?client_revoked=1"))
}
