//! Sessions of the admin web UI: created at sign-in from an agent or admin token, found by
//! the hash of the cookie's random id, deleted at sign-out. A session is only as alive as
//! its token: every lookup joins the token row, so a revoked token ends its sessions at
//! once (no cache in between, unlike bearer tokens), and the page can say why.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::tokens::TokenInfo;
use super::Store;
use crate::auth::Role;
use crate::error::Result;

/// A web session as the UI uses it.
#[derive(Debug, Clone)]
pub struct WebSession {
    /// Hex SHA-256 of the cookie value (the stored key; the cookie value itself is never stored).
    pub session_hash: String,
    /// The app of the token; every page and action is scoped to it.
    pub app_id: String,
    /// The app's display name, shown in the header.
    pub app_name: String,
    /// The token the person signed in with.
    pub token_id: Uuid,
    /// The token's name, recorded as the actor of the session's writes.
    pub token_name: String,
    /// `agent` or `admin`.
    pub role: Role,
    /// The secret every form of this session sends back (CSRF protection).
    pub csrf_token: String,
    /// When the person signed in.
    pub created_at: DateTime<Utc>,
    /// When the session ends regardless of activity.
    pub expires_at: DateTime<Utc>,
}

/// What a session cookie leads to.
#[derive(Debug, Clone)]
pub enum FoundSession {
    /// The session, its token live (it may have expired: see `expires_at`).
    Live(WebSession),
    /// Its token was revoked since sign-in; the session was deleted.
    Revoked,
}

/// A row of [`SELECT`].
#[derive(sqlx::FromRow)]
struct SessionRow {
    session_id: String,
    app_id: String,
    display_name: String,
    token_id: Uuid,
    token_name: String,
    role: String,
    csrf_token: String,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    /// Whether the token was revoked since sign-in.
    revoked: bool,
}

impl From<SessionRow> for WebSession {
    fn from(r: SessionRow) -> WebSession {
        WebSession {
            session_hash: r.session_id,
            app_id: r.app_id,
            app_name: r.display_name,
            token_id: r.token_id,
            token_name: r.token_name,
            // The table's check constraint allows agent and admin only.
            role: Role::parse(&r.role).unwrap_or(Role::Agent),
            csrf_token: r.csrf_token,
            created_at: r.created_at,
            expires_at: r.expires_at,
        }
    }
}

const SELECT: &str = "select s.session_id, s.app_id, a.display_name, s.token_id, s.token_name, \
    s.role::text as role, s.csrf_token, s.created_at, s.expires_at, \
    t.revoked_at is not null as revoked \
    from web_session s join app a using (app_id) join token t using (token_id)";

impl Store {
    /// Starts a session for a verified token, valid for `ttl`. Sessions that ended more
    /// than a day ago are purged on the way, so the table stays small without a sweeper.
    pub async fn create_session(
        &self,
        session_hash: &str,
        token: &TokenInfo,
        csrf_token: &str,
        ttl: chrono::Duration,
    ) -> Result<WebSession> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("delete from web_session where expires_at < now() - interval '1 day'")
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "insert into web_session (session_id, app_id, token_id, token_name, role, csrf_token, expires_at) \
             values ($1, $2, $3, $4, $5::token_role, $6, now() + make_interval(secs => $7))",
        )
        .bind(session_hash)
        .bind(&token.app_id)
        .bind(token.token_id)
        .bind(&token.name)
        .bind(token.role.as_str())
        .bind(csrf_token)
        .bind(ttl.num_seconds() as f64)
        .execute(&mut *tx)
        .await?;
        let row: SessionRow = sqlx::query_as(&format!("{SELECT} where s.session_id = $1"))
            .bind(session_hash)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(row.into())
    }

    /// The session with this hash, expired or not (the caller tells an expired session
    /// apart to say so). None: unknown or signed out.
    pub async fn session(&self, session_hash: &str) -> Result<Option<FoundSession>> {
        let row: Option<SessionRow> = sqlx::query_as(&format!("{SELECT} where s.session_id = $1"))
            .bind(session_hash)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            None => Ok(None),
            // The token was revoked after sign-in: the session is over, and says why.
            Some(r) if r.revoked => {
                self.delete_session(session_hash).await?;
                Ok(Some(FoundSession::Revoked))
            }
            Some(r) => Ok(Some(FoundSession::Live(r.into()))),
        }
    }

    /// Ends a session (sign-out, or found expired).
    pub async fn delete_session(&self, session_hash: &str) -> Result<()> {
        sqlx::query("delete from web_session where session_id = $1")
            .bind(session_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
