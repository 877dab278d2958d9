//! The admin CLI: `scimbridge tasks …`, `users …` and `tickets …`, a client of the task
//! API (`SCIMBRIDGE_URL`, `SCIMBRIDGE_TOKEN`) for people working the queue by hand.
//!
//! Reads print readable text (tables, a task as a checklist, a user's desired and
//! confirmed account side by side); `--json` prints the API's JSON unchanged for
//! scripts. Every API error becomes one line `error: <message> (<code>)` on stderr and a
//! non-zero exit (printed by `main`).

mod render;
pub mod snapshots;
mod tasks;
mod tickets;
mod users;

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::client::Connection;

/// `scimbridge tasks …`.
#[derive(Debug, Args)]
pub struct TasksArgs {
    /// Server URL and token.
    #[command(flatten)]
    pub conn: Connection,
    /// What to do.
    #[command(subcommand)]
    pub command: TasksCommand,
}

/// Task subcommands.
#[derive(Debug, Subcommand)]
pub enum TasksCommand {
    /// List tasks, oldest first (id, state, kind, user, title, age).
    List {
        /// open, in_progress, done, failed, not_applicable or cancelled.
        #[arg(long)]
        state: Option<String>,
        /// create_account, update_attributes, change_role, deactivate, reactivate or remove.
        #[arg(long)]
        kind: Option<String>,
        /// Only tasks of this user (id).
        #[arg(long)]
        user: Option<String>,
        /// At most this many tasks (follows pages up to it).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Start after this task id (the cursor printed at the end of a longer list).
        #[arg(long)]
        cursor: Option<String>,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one task: instructions as a checklist, changes, fields, lease and history.
    Show {
        /// Task id.
        id: i64,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Claim the next task and show it with its lease.
    Claim {
        /// Only these kinds (comma-separated).
        #[arg(long, value_delimiter = ',')]
        kinds: Vec<String>,
        /// Wait up to this many seconds for a task to appear (at most 60).
        #[arg(long, default_value_t = 0)]
        wait: u64,
        /// Lease length; the server's default (15 minutes) when absent.
        #[arg(long)]
        lease_seconds: Option<u64>,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Record a task as done, with its completion fields and evidence.
    Done {
        /// Task id.
        id: i64,
        /// A completion field as NAME=VALUE (repeatable), e.g. --field seat_freed=yes.
        #[arg(long = "field", value_name = "NAME=VALUE")]
        fields: Vec<String>,
        /// A note for the audit trail.
        #[arg(long)]
        note: Option<String>,
        /// The lease from the claim (needed when another token claimed the task).
        #[arg(long)]
        lease: Option<String>,
        /// Attach an evidence file (repeatable; at most 5, 2 MiB each).
        #[arg(long = "attach", value_name = "FILE")]
        attach: Vec<PathBuf>,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Record that a task could not be done (the user is flagged for attention).
    Fail {
        /// Task id.
        id: i64,
        /// Why (required: the next person needs it).
        #[arg(long)]
        note: String,
        /// The lease from the claim.
        #[arg(long)]
        lease: Option<String>,
        /// Attach an evidence file (repeatable).
        #[arg(long = "attach", value_name = "FILE")]
        attach: Vec<PathBuf>,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Record that a task needs nothing done (the app already is as wanted).
    Na {
        /// Task id.
        id: i64,
        /// Why nothing was needed.
        #[arg(long)]
        note: Option<String>,
        /// The lease from the claim.
        #[arg(long)]
        lease: Option<String>,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Give a claimed task back to the queue.
    Release {
        /// Task id.
        id: i64,
        /// The lease from the claim.
        #[arg(long)]
        lease: Option<String>,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Admins: hand a claimed task to another person or agent (a token of the app, by
    /// name or id), or give it back to the queue; the old holder's lease stops working.
    Reassign {
        /// Task id.
        id: i64,
        /// `queue`, or the name or id of an agent or admin token of the app.
        #[arg(long)]
        to: String,
        /// Why (recorded in the audit trail and sent with the `task.reassigned` event).
        #[arg(long)]
        reason: Option<String>,
        /// Lease of the new holder in seconds (default: the server's --lease-secs).
        #[arg(long)]
        lease_seconds: Option<i64>,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Admins: approve a task awaiting approval (e.g. a grant of People.ai Admin); it
    /// becomes claimable.
    Approve {
        /// Task id.
        id: i64,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Admins: reject a task awaiting approval; nothing is done in the app, and the
    /// user reads `rejected` over SCIM until the IdP changes them again.
    Reject {
        /// Task id.
        id: i64,
        /// Why (recorded on the task and in the audit trail).
        #[arg(long)]
        reason: String,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// How many tasks there are per state and kind.
    Counts {
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `scimbridge users …`.
#[derive(Debug, Args)]
pub struct UsersArgs {
    /// Server URL and token.
    #[command(flatten)]
    pub conn: Connection,
    /// What to do.
    #[command(subcommand)]
    pub command: UsersCommand,
}

/// User subcommands.
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// List users with their provisioning state.
    List {
        /// pending, synced or failed.
        #[arg(long)]
        state: Option<String>,
        /// userName prefix (case-insensitive).
        #[arg(long)]
        user_name: Option<String>,
        /// At most this many users (follows pages up to it).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Start after this cursor (printed at the end of a longer list).
        #[arg(long)]
        cursor: Option<String>,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one user: the account the IdP wants next to the one the app has.
    Show {
        /// User id.
        id: String,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Everything that happened to a user, oldest first.
    History {
        /// User id.
        id: String,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `scimbridge tickets …`.
#[derive(Debug, Args)]
pub struct TicketsArgs {
    /// Server URL and token (an admin token for configure, show and disable).
    #[command(flatten)]
    pub conn: Connection,
    /// What to do.
    #[command(subcommand)]
    pub command: tickets::TicketsCommand,
}

/// Runs a `tickets` subcommand.
pub async fn tickets(args: TicketsArgs) -> anyhow::Result<()> {
    let client = args.conn.client()?;
    tickets::run(&client, args.command).await
}

/// Runs a `tasks` subcommand.
pub async fn tasks(args: TasksArgs) -> anyhow::Result<()> {
    let client = args.conn.client()?;
    tasks::run(&client, args.command).await
}

/// Runs a `users` subcommand.
pub async fn users(args: UsersArgs) -> anyhow::Result<()> {
    let client = args.conn.client()?;
    users::run(&client, args.command).await
}
