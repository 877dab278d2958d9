//! OAuth clients (client credentials grant) and the database-generated JWT key.

use uuid::Uuid;

use super::Store;

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

impl Store {
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
