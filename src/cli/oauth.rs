//! `scimbridge oauth-client create|revoke`: OAuth clients for IdPs that authenticate with the
//! client credentials grant (`POST /oauth/token`) instead of a long-lived bearer token.

use clap::Subcommand;

use crate::auth::{generate_token, hash_token};
use crate::db::Store;

/// `oauth-client` subcommands.
#[derive(Debug, Subcommand)]
pub enum OAuthClientCommand {
    /// Create a client and print its id and secret once (only the secret's hash is stored).
    Create {
        /// The app the client's tokens act for.
        #[arg(long, default_value = "peopleai")]
        app: String,
        /// A name recorded as "who" in the audit trail (e.g. okta, entra).
        #[arg(long)]
        name: String,
    },
    /// Revoke a client: its secret is refused at once, its access tokens within the
    /// servers' `--token-cache-secs`.
    Revoke {
        /// The client id printed by `create`.
        client_id: uuid::Uuid,
    },
}

/// Runs an `oauth-client` subcommand against the database.
pub async fn run(store: &Store, cmd: OAuthClientCommand) -> anyhow::Result<()> {
    match cmd {
        OAuthClientCommand::Create { app, name } => {
            anyhow::ensure!(
                store.app(&app).await?.is_some(),
                "unknown app {app:?} (see scimbridge apps list)"
            );
            let secret = generate_token();
            let id = store
                .insert_oauth_client(&app, &name, &hash_token(&secret))
                .await?;
            println!("client_id: {id}");
            println!("client_secret: {secret}");
            eprintln!(
                "OAuth client {name:?} of app {app}: token URL <public URL>/oauth/token \
                 (grant_type=client_credentials). The secret is shown only now."
            );
            Ok(())
        }
        OAuthClientCommand::Revoke { client_id } => {
            anyhow::ensure!(
                store.revoke_oauth_client(client_id).await?,
                "no live OAuth client {client_id}"
            );
            println!("revoked OAuth client {client_id}");
            Ok(())
        }
    }
}
