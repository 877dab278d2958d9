//! OAuth clients (client credentials grant) and the database-generated JWT key.

use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use super::audit::{self, Entry};
use super::Store;
use crate::auth::Actor;
use crate::error::{Error, Result};

/// A client as the token endpoint needs it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OAuthClient {
    /// The client id (`client_id`).
    pub client_id: Uuid,
    /// The app its tokens act for.
    pub app_id: String,
    /// A name recorded as "who" in the audit trail (e.g. okta).
    pub name: String,
}

/// A client as listed to admins (never the secret).
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct OAuthClientInfo {
    /// The client id (`client_id`).
    pub client_id: Uuid,
    /// The app its tokens act for.
    pub app_id: String,
    /// Its name (e.g. okta).
    pub name: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

const INFO_COLUMNS: &str = "client_id, app_id, name, created_at, revoked_at";

impl Store {
    /// The OAuth clients of an app, live and revoked, oldest first.
    pub async fn oauth_clients(&self, app_id: &str) -> Result<Vec<OAuthClientInfo>> {
        Ok(sqlx::query_as(&format!(
            "select {INFO_COLUMNS} from oauth_client where app_id = $1 \
             order by created_at, client_id"
        ))
        .bind(app_id)
        .fetch_all(self.pool())
        .await?)
    }

    /// An admin revokes an OAuth client of their own app (task API, web UI), with an
    /// `oauth_client.revoke` audit record in the same transaction: the token endpoint
    /// refuses its secret at once, its access tokens stop verifying within
    /// `--token-cache-secs`. `NotFound` for an unknown, revoked or other app's client.
    pub async fn revoke_app_oauth_client(
        &self,
        by: &Actor,
        client_id: Uuid,
    ) -> Result<OAuthClientInfo> {
        let mut tx = self.pool().begin().await?;
        let client: Option<OAuthClientInfo> = sqlx::query_as(&format!(
            "update oauth_client set revoked_at = now() \
             where client_id = $1 and app_id = $2 and revoked_at is null \
             returning {INFO_COLUMNS}"
        ))
        .bind(client_id)
        .bind(&by.app_id)
        .fetch_optional(&mut *tx)
        .await?;
        let client =
            client.ok_or_else(|| Error::NotFound(format!("live OAuth client {client_id}")))?;
        audit::write(
            &mut tx,
            by,
            Entry {
                action: "oauth_client.revoke",
                subject_type: "oauth_client",
                subject_id: client.client_id.to_string(),
                task_id: None,
                outcome: "revoked",
                detail: json!({"name": client.name}),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(client)
    }

    /// Stores a new client of `app_id` with the hash of its secret.
    pub async fn insert_oauth_client(
        &self,
        app_id: &str,
        name: &str,
        secret_hash: &[u8; 32],
    ) -> Result<Uuid, sqlx::Error> {
        let id = Uuid::new_v4();
        sqlx::query(
            "insert into oauth_client (client_id, app_id, name, secret_hash) values ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(app_id)
        .bind(name)
        .bind(&secret_hash[..])
        .execute(self.pool())
        .await?;
        Ok(id)
    }

    /// The unrevoked client with this id and secret hash, if any.
    pub async fn oauth_client(
        &self,
        client_id: Uuid,
        secret_hash: &[u8; 32],
    ) -> Result<Option<OAuthClient>, sqlx::Error> {
        sqlx::query_as::<_, OAuthClient>(
            "select client_id, app_id, name from oauth_client \
             where client_id = $1 and secret_hash = $2 and revoked_at is null",
        )
        .bind(client_id)
        .bind(&secret_hash[..])
        .fetch_optional(self.pool())
        .await
    }

    /// Whether the client exists and is not revoked (its access tokens then verify).
    pub async fn oauth_client_live(&self, client_id: Uuid) -> Result<bool, sqlx::Error> {
        sqlx::query_scalar(
            "select exists (select 1 from oauth_client where client_id = $1 and revoked_at is null)",
        )
        .bind(client_id)
        .fetch_one(self.pool())
        .await
    }

    /// Revokes a client: the token endpoint refuses its secret at once, and its access
    /// tokens stop verifying within `--token-cache-secs`. False when there was no live
    /// client by that id.
    pub async fn revoke_oauth_client(&self, client_id: Uuid) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "update oauth_client set revoked_at = now() where client_id = $1 and revoked_at is null",
        )
        .bind(client_id)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The server key `name`, created from `fresh` the first time (every replica then
    /// reads the same one).
    pub async fn server_key(&self, name: &str, fresh: &[u8]) -> Result<Vec<u8>, sqlx::Error> {
        sqlx::query("insert into server_key (name, secret) values ($1, $2) on conflict do nothing")
            .bind(name)
            .bind(fresh)
            .execute(self.pool())
            .await?;
        sqlx::query_scalar("select secret from server_key where name = $1")
            .bind(name)
            .fetch_one(self.pool())
            .await
    }
}
