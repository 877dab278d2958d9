//! The command line: `serve`, `migrate`, `token create|list|revoke` and
//! `apps list|show|create`.
//!
//! `agent`, `tasks`, `users`, `snapshot` and `reports` are clients of a running server's task API
//! (`--url`/`SCIMBRIDGE_URL`, `--token`/`SCIMBRIDGE_TOKEN`) and need no database; their
//! implementations live in [`crate::agent`] and [`crate::admin`].

mod apps;
mod governance;
mod oauth;

use std::sync::Arc;

use clap::{Parser, Subcommand};
use uuid::Uuid;

use crate::auth::{generate_token, hash_token, Role};
use crate::config::Config;
use crate::db::Store;
use crate::startup::Application;

/// scimbridge: a SCIM 2.0 façade that turns IdP provisioning into tasks.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// Postgres connection URL.
    #[arg(
        long,
        env = "DATABASE_URL",
        global = true,
        default_value = "postgres://postgres@127.0.0.1:5432/postgres",
        hide_env_values = true
    )]
    pub database_url: String,

    /// Log as JSON lines (for log shippers) instead of text.
    #[arg(long, env = "SCIMBRIDGE_LOG_JSON", global = true)]
    pub log_json: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run migrations, then serve SCIM and the task API.
    Serve(Config),
    /// Apply database migrations and exit.
    Migrate,
    /// Work the task queue with a handler program (an automation agent).
    Agent(crate::agent::AgentArgs),
    /// Work tasks by hand: list, show, claim, done, fail, na, release, reassign, approve,
    /// reject, counts.
    Tasks(crate::admin::TasksArgs),
    /// Users' provisioning state: list, show (desired vs confirmed), history.
    Users(crate::admin::UsersArgs),
    /// The app's own user list: import a snapshot, list, show, apply or discard a held
    /// one, findings.
    Snapshot(crate::admin::snapshots::SnapshotArgs),
    /// The ticket bridge (Jira, ServiceNow): configure, show, disable, list tickets.
    Tickets(crate::admin::TicketsArgs),
    /// Manage bearer tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// List, show and create apps (each served with an app profile).
    Apps(apps::AppsArgs),
    /// OAuth clients for IdPs using the client credentials grant (POST /oauth/token).
    #[command(subcommand)]
    OauthClient(oauth::OAuthClientCommand),
    /// Manage the webhooks that receive notifications.
    #[command(subcommand)]
    Webhooks(governance::WebhooksCommand),
    /// Check the tamper-evident audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Reports from the task API: seats, SLA, leavers, audit CSV.
    Reports(ReportsArgs),
}

/// `audit` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute each app's audit chain; exit non-zero naming the first broken record.
    Verify {
        /// Only this app.
        #[arg(long)]
        app: Option<String>,
    },
}

/// `reports` and its connection.
#[derive(Debug, clap::Args)]
pub struct ReportsArgs {
    /// Server URL and token.
    #[command(flatten)]
    pub conn: crate::client::Connection,
    /// Which report.
    #[command(subcommand)]
    pub command: governance::ReportsCommand,
}

/// `token` subcommands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it once (only its hash is stored).
    Create {
        /// The app the token belongs to.
        #[arg(long, default_value = "peopleai")]
        app: String,
        /// scim (for the IdP), agent (automation) or admin (people).
        #[arg(long, value_enum)]
        role: Role,
        /// A name recorded as "who" in the audit trail (e.g. okta, entra, alice).
        #[arg(long)]
        name: String,
    },
    /// List tokens (never their secrets).
    List {
        /// Only tokens of this app.
        #[arg(long)]
        app: Option<String>,
    },
    /// Revoke a token by id.
    Revoke {
        /// The token id shown by `token list`.
        id: Uuid,
    },
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Agent(args) => crate::agent::run(args).await,
        Command::Tasks(args) => crate::admin::tasks(args).await,
        Command::Users(args) => crate::admin::users(args).await,
        Command::Snapshot(args) => crate::admin::snapshots::run(args).await,
        Command::Tickets(args) => crate::admin::tickets(args).await,
        Command::Serve(config) => serve(&cli.database_url, config).await,
        Command::Migrate => {
            let store = Store::connect(&cli.database_url, 2)?;
            store.migrate().await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Token(cmd) => token(&cli.database_url, cmd).await,
        Command::Apps(args) => apps::run(&cli.database_url, args).await,
        Command::OauthClient(cmd) => oauth::run(&cli.database_url, cmd).await,
        Command::Webhooks(cmd) => {
            let store = Store::connect(&cli.database_url, 2)?;
            store.migrate().await?;
            governance::webhooks(&store, cmd).await
        }
        Command::Audit(AuditCommand::Verify { app }) => {
            let store = Store::connect(&cli.database_url, 2)?;
            store.migrate().await?;
            governance::verify(&store, app).await
        }
        Command::Reports(args) => governance::reports(&args.conn, args.command).await,
    }
}

async fn serve(database_url: &str, config: Config) -> anyhow::Result<()> {
    config.validate()?;
    // Profiles first: a bad file is reported before anything touches the database.
    let profiles = Arc::new(config.profiles.load()?);
    let pool = Store::connect(database_url, config.db_max_connections)?
        .pool()
        .clone();
    let store = Store::with_profiles(pool, profiles);
    store.migrate().await.map_err(|e| {
        anyhow::anyhow!("cannot migrate the database (is DATABASE_URL right and Postgres up?): {e}")
    })?;
    crate::profiles::check_apps(&store).await?;
    if store.admin_token_count().await? == 0 {
        tracing::warn!(
            "no admin token exists yet; create one with: \
             scimbridge token create --app peopleai --role admin --name <your-name> \
             (and one for the IdP with --role scim --name okta)"
        );
    }
    let app = Application::build(config, store).await?;
    tracing::info!(addr = %app.addr()?, "scimbridge listening; SCIM base path /scim/v2");
    app.run_until_stopped().await?;
    Ok(())
}

async fn token(database_url: &str, cmd: TokenCommand) -> anyhow::Result<()> {
    let store = Store::connect(database_url, 2)?;
    store.migrate().await?;
    match cmd {
        TokenCommand::Create { app, role, name } => {
            anyhow::ensure!(
                store.app(&app).await?.is_some(),
                "no app {app:?}; the built-in app is \"peopleai\""
            );
            let secret = generate_token();
            let id = store
                .insert_token(&app, role, &name, &hash_token(&secret))
                .await?;
            eprintln!(
                "created {} token {id} for app {app} named {name:?}; it is shown only once:",
                role.as_str()
            );
            println!("{secret}");
        }
        TokenCommand::List { app } => {
            println!(
                "{:<36}  {:<10}  {:<6}  {:<20}  {:<25}  REVOKED",
                "ID", "APP", "ROLE", "NAME", "CREATED"
            );
            for t in store.tokens(app.as_deref()).await? {
                println!(
                    "{:<36}  {:<10}  {:<6}  {:<20}  {:<25}  {}",
                    t.token_id,
                    t.app_id,
                    t.role.as_str(),
                    t.name,
                    crate::db::rfc3339(t.created_at),
                    t.revoked_at
                        .map(crate::db::rfc3339)
                        .unwrap_or_else(|| "-".into())
                );
            }
        }
        TokenCommand::Revoke { id } => {
            let Some(done) = store.revoke_token_by(id, None).await? else {
                anyhow::bail!("no live token with id {id}");
            };
            println!("revoked {id} (servers stop accepting it within their token cache time, 30 s by default)");
            for task in done.returned {
                println!(
                    "returned task #{task} to the queue (it was held by {})",
                    done.token.name
                );
            }
        }
    }
    Ok(())
}
