//! The command line: `serve`, `migrate`, `token create|list|revoke`,
//! `apps list|show|create` and `db export|import|move`.
//!
//! Commands that need a store open Postgres when given a URL, else the embedded trial
//! store in `--data-dir` ([`store`]).
//!
//! `agent`, `tasks`, `users`, `snapshot` and `reports` are clients of a running server's task API
//! (`--url`/`SCIMBRIDGE_URL`, `--token`/`SCIMBRIDGE_TOKEN`) and need no database; their
//! implementations live in [`crate::agent`] and [`crate::admin`].

mod apps;
mod db;
mod governance;
mod oauth;
mod store;

use std::path::PathBuf;
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
    /// Postgres connection URL (production). Without one, the embedded single-process
    /// trial store in --data-dir is used.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,

    /// Directory of the embedded trial store, used when no --database-url is given. One
    /// process at a time may open it.
    #[arg(
        long,
        env = "SCIMBRIDGE_DATA_DIR",
        global = true,
        default_value = "./scimbridge-data"
    )]
    pub data_dir: PathBuf,

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
    /// Move a store to another: export, import, or move a trial to Postgres.
    #[command(subcommand)]
    Db(db::DbCommand),
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
    let url = cli.database_url.as_deref();
    let dir = cli.data_dir.as_path();
    let open = |opener| store::open(url, dir, opener, 2);
    match cli.command {
        Command::Agent(args) => crate::agent::run(args).await,
        Command::Tasks(args) => crate::admin::tasks(args).await,
        Command::Users(args) => crate::admin::users(args).await,
        Command::Snapshot(args) => crate::admin::snapshots::run(args).await,
        Command::Tickets(args) => crate::admin::tickets(args).await,
        Command::Serve(config) => serve(url, dir, config).await,
        Command::Migrate => {
            let opened = open(store::Opener::Migrate).await?;
            opened.close().await;
            println!("migrations applied");
            Ok(())
        }
        Command::Token(cmd) => {
            let opened = open(store::Opener::Command("token")).await?;
            let r = token(&opened.store, cmd).await;
            opened.close().await;
            r
        }
        Command::Apps(args) => {
            let opened = open(store::Opener::Command("apps")).await?;
            let r = apps::run(&opened.store, args).await;
            opened.close().await;
            r
        }
        Command::OauthClient(cmd) => {
            let opened = open(store::Opener::Command("oauth-client")).await?;
            let r = oauth::run(&opened.store, cmd).await;
            opened.close().await;
            r
        }
        Command::Webhooks(cmd) => {
            let opened = open(store::Opener::Command("webhooks")).await?;
            let r = governance::webhooks(&opened.store, cmd).await;
            opened.close().await;
            r
        }
        Command::Audit(AuditCommand::Verify { app }) => {
            let opened = open(store::Opener::Command("audit verify")).await?;
            let r = governance::verify(&opened.store, app).await;
            opened.close().await;
            r
        }
        Command::Db(cmd) => db::run(url, dir, cmd).await,
        Command::Reports(args) => governance::reports(&args.conn, args.command).await,
    }
}

async fn serve(
    database_url: Option<&str>,
    data_dir: &std::path::Path,
    config: Config,
) -> anyhow::Result<()> {
    config.validate()?;
    // Profiles first: a bad file is reported before anything touches the database.
    let profiles = Arc::new(config.profiles.load()?);
    let opened = store::open(
        database_url,
        data_dir,
        store::Opener::Serve,
        config.db_max_connections,
    )
    .await?;
    let result = serve_store(&opened, profiles, config).await;
    opened.close().await;
    result
}

async fn serve_store(
    opened: &store::Opened,
    profiles: Arc<crate::reconcile::Profiles>,
    config: Config,
) -> anyhow::Result<()> {
    let store = Store::with_profiles(opened.store.pool().clone(), profiles);
    crate::profiles::check_apps(&store).await?;
    // A trial must not need the CLI, which cannot open the embedded store while this
    // process holds it: the first run makes the first tokens and shows them once.
    let first_tokens = if opened.is_embedded() && store.tokens(None).await?.is_empty() {
        let mut made = Vec::new();
        for (role, name) in [(Role::Admin, "admin"), (Role::Scim, "idp")] {
            let secret = generate_token();
            store
                .insert_token("peopleai", role, name, &hash_token(&secret))
                .await?;
            made.push((role, secret));
        }
        made
    } else {
        Vec::new()
    };
    if first_tokens.is_empty() && store.admin_token_count().await? == 0 {
        tracing::warn!(
            "no admin token exists yet; create one with: \
             scimbridge token create --app peopleai --role admin --name <your-name> \
             (and one for the IdP with --role scim --name okta)"
        );
    }
    let app = Application::build(config.clone(), store).await?;
    let addr = app.addr()?;
    tracing::info!(addr = %addr, "scimbridge listening; SCIM base path /scim/v2");
    if !first_tokens.is_empty() {
        print_first_tokens(&config, addr, &first_tokens);
    }
    app.run_until_stopped().await?;
    Ok(())
}

/// Shows the first run's tokens once (only their hashes are stored), with where to use
/// them.
fn print_first_tokens(config: &Config, addr: std::net::SocketAddr, tokens: &[(Role, String)]) {
    let base = match &config.public_url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None if addr.ip().is_unspecified() => format!("http://localhost:{}", addr.port()),
        None => format!("http://{addr}"),
    };
    println!("First run of this store: two tokens for app peopleai, shown only this once.");
    for (role, secret) in tokens {
        let use_for = match role {
            Role::Admin => "sign in to the web UI, manage tokens and tasks",
            _ => "give this to the IdP (Okta, Entra ID) as its bearer token",
        };
        println!("  {:<5} token: {secret}   ({use_for})", role.as_str());
    }
    println!("  SCIM base URL: {base}/scim/v2");
    println!("  Web UI:        {base}/ui");
    println!("More tokens (agents, people): the web UI's Tokens page, or POST /api/v1/tokens.");
}

async fn token(store: &Store, cmd: TokenCommand) -> anyhow::Result<()> {
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
