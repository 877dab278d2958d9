//! Bearer tokens, stored as SHA-256 hashes only.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use serde_json::json;

use super::audit::{self, Entry};
use super::Store;
use crate::auth::{Actor, Role};
use crate::error::{Error, Result};

/// A token as listed to operators (never the secret).
#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenInfo {
    /// Token id (for `token revoke`).
    pub token_id: Uuid,
    /// The app it belongs to.
    pub app_id: String,
    /// Its role.
    pub role: Role,
    /// Its name, recorded as the actor of its writes.
    pub name: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A row of [`COLUMNS`].
#[derive(sqlx::FromRow)]
struct TokenRow {
    token_id: Uuid,
    app_id: String,
    role: String,
    name: String,
    created_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
}

impl From<TokenRow> for TokenInfo {
    fn from(r: TokenRow) -> TokenInfo {
        TokenInfo {
            token_id: r.token_id,
            app_id: r.app_id,
            // The enum has no other value; the least-privileged role if one is added.
            role: Role::parse(&r.role).unwrap_or(Role::Scim),
            name: r.name,
            created_at: r.created_at,
            revoked_at: r.revoked_at,
        }
    }
}

/// What a revocation did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Revocation {
    /// The token, as it is now (revoked).
    pub token: TokenInfo,
    /// The tasks it held, returned to the queue.
    pub returned: Vec<i64>,
}

const COLUMNS: &str = "token_id, app_id, role::text as role, name, created_at, revoked_at";

impl Store {
    /// Stores a new token's hash; returns its id.
    pub async fn insert_token(
        &self,
        app_id: &str,
        role: Role,
        name: &str,
        secret_hash: &[u8],
    ) -> Result<Uuid> {
        let id = Uuid::new_v4();
        sqlx::query(
            "insert into token (token_id, app_id, role, name, secret_hash) \
             values ($1, $2, $3::token_role, $4, $5)",
        )
        .bind(id)
        .bind(app_id)
        .bind(role.as_str())
        .bind(name)
        .bind(secret_hash)
        .execute(&self.pool)
        .await?;
        Ok(id)
    }

    /// The live (not revoked) token with this hash.
    pub async fn token_by_hash(&self, secret_hash: &[u8]) -> Result<Option<TokenInfo>> {
        let row: Option<TokenRow> = sqlx::query_as(&format!(
            "select {COLUMNS} from token where secret_hash = $1 and revoked_at is null"
        ))
        .bind(secret_hash)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(TokenInfo::from))
    }

    /// All tokens, optionally of one app, oldest first.
    pub async fn tokens(&self, app_id: Option<&str>) -> Result<Vec<TokenInfo>> {
        let rows: Vec<TokenRow> = sqlx::query_as(&format!(
            "select {COLUMNS} from token where ($1::text is null or app_id = $1) \
             order by app_id, created_at"
        ))
        .bind(app_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(TokenInfo::from).collect())
    }

    /// Revokes a token; false when no live token has this id. The tasks it holds return
    /// to the queue in the same transaction (recorded as done by scimbridge itself);
    /// [`Store::revoke_token_by`] records who revoked it.
    pub async fn revoke_token(&self, token_id: Uuid) -> Result<bool> {
        Ok(self.revoke_token_by(token_id, None).await?.is_some())
    }

    /// Revokes a token and, in the same transaction, returns every task it holds to the
    /// queue (each audited as `task.release` by `by`, or by scimbridge itself when `by`
    /// is None, naming the revoked token). None when no live token has this id. Every
    /// revocation path (CLI, API, web UI) goes through here, so a revoked person's claims
    /// never wait for their leases to lapse.
    pub async fn revoke_token_by(
        &self,
        token_id: Uuid,
        by: Option<&Actor>,
    ) -> Result<Option<Revocation>> {
        self.revoke(token_id, None, by).await
    }

    /// An admin revokes a token of their own app (task API, web UI): as
    /// [`Store::revoke_token_by`], plus a `token.revoke` audit record in the same
    /// transaction. A token of another app, or one already revoked, is not found.
    pub async fn revoke_app_token(&self, by: &Actor, token_id: Uuid) -> Result<Revocation> {
        self.revoke(token_id, Some(&by.app_id), Some(by))
            .await?
            .ok_or_else(|| Error::NotFound(format!("live token {token_id}")))
    }

    async fn revoke(
        &self,
        token_id: Uuid,
        app_id: Option<&str>,
        by: Option<&Actor>,
    ) -> Result<Option<Revocation>> {
        let mut tx = self.pool.begin().await?;
        // The row lock taken here makes claims in flight by this token finish first
        // (claims take it `for share`), so their tasks are found below.
        let row: Option<TokenRow> = sqlx::query_as(&format!(
            "update token set revoked_at = now() where token_id = $1 and revoked_at is null \
             and ($2::text is null or app_id = $2) returning {COLUMNS}"
        ))
        .bind(token_id)
        .bind(app_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(token) = row.map(TokenInfo::from) else {
            return Ok(None);
        };
        let system = Actor::system(&token.app_id);
        let by = match by {
            Some(a) if a.app_id == token.app_id => a,
            _ => &system,
        };
        let returned =
            super::lifecycle::return_claims_of(&mut tx, &self.profiles, by, &token).await?;
        if app_id.is_some() {
            audit::write(
                &mut tx,
                by,
                Entry {
                    action: "token.revoke",
                    subject_type: "token",
                    subject_id: token.token_id.to_string(),
                    task_id: None,
                    outcome: "revoked",
                    detail: json!({
                        "name": token.name,
                        "role": token.role.as_str(),
                        "returned_tasks": returned,
                    }),
                },
            )
            .await?;
        }
        tx.commit().await?;
        Ok(Some(Revocation { token, returned }))
    }

    /// An admin creates a token of their own app (task API, web UI), with a
    /// `token.create` audit record in the same transaction. The caller keeps the secret
    /// (shown once); only its hash is stored.
    pub async fn create_app_token(
        &self,
        by: &Actor,
        role: Role,
        name: &str,
        secret_hash: &[u8],
    ) -> Result<TokenInfo> {
        let mut tx = self.pool.begin().await?;
        // Reassignment and the audit trail name tokens by name: two live tokens of one
        // app with the same name would make both ambiguous.
        let taken: bool = sqlx::query_scalar(
            "select exists (select 1 from token where app_id = $1 and lower(name) = lower($2) \
             and revoked_at is null)",
        )
        .bind(&by.app_id)
        .bind(name)
        .fetch_one(&mut *tx)
        .await?;
        if taken {
            return Err(Error::TaskConflict {
                code: "token_name_taken",
                message: format!(
                    "a live token of this app is already named {name:?}; choose another name \
                     or revoke that token first"
                ),
            });
        }
        let row: TokenRow = sqlx::query_as(&format!(
            "insert into token (token_id, app_id, role, name, secret_hash) \
             values ($1, $2, $3::token_role, $4, $5) returning {COLUMNS}"
        ))
        .bind(Uuid::new_v4())
        .bind(&by.app_id)
        .bind(role.as_str())
        .bind(name)
        .bind(secret_hash)
        .fetch_one(&mut *tx)
        .await?;
        let token = TokenInfo::from(row);
        audit::write(
            &mut tx,
            by,
            Entry {
                action: "token.create",
                subject_type: "token",
                subject_id: token.token_id.to_string(),
                task_id: None,
                outcome: "created",
                detail: json!({"name": token.name, "role": token.role.as_str()}),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(token)
    }

    /// Number of live admin tokens (to guide a first start).
    pub async fn admin_token_count(&self) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "select count(*) from token where role = 'admin' and revoked_at is null",
        )
        .fetch_one(&self.pool)
        .await?)
    }
}
