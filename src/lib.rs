//! scimbridge: a SCIM 2.0 façade that makes apps without SCIM provisionable.
//!
//! Okta or Entra ID talk SCIM to scimbridge as if it were the app. scimbridge keeps the
//! desired state, derives one task per subject that closes the difference to what the
//! app has (confirmed state), and lets people and agents work the tasks.
//!
//! # Layout
//! - [`scim`]: the protocol, pure (schemas, filter, PATCH, resources, errors).
//! - [`reconcile`]: task planning, app profiles, task states ([`reconcile::TaskState`])
//!   and completion evidence rules, pure.
//! - [`limits`]: the limits of free-text fields (notes, reasons, search boxes), pure.
//! - [`profiles`]: reading profile files at start (the IO half of `reconcile::profile`).
//! - [`db`]: all SQL; each operation is one transaction (write + task + audit). Every
//!   task transition (claims, leases, completion, release, decisions, reassignment,
//!   snapshot verification, ticket closing, SLA expiry) is in [`db::lifecycle`], each in
//!   a span naming the task's id, app and kind; planning is `db::derive`.
//! - [`queue`]: waking long-polling claims, the SLA sweeper's loop.
//! - [`notify`]: webhook delivery of outbox events.
//! - [`tickets`]: the ticket bridge (Jira, ServiceNow): mirroring tasks as tickets through
//!   the outbox, polling their status, closing tasks from them.
//! - [`secrets`]: sealing the secrets scimbridge must use again (AES-256-GCM).
//! - [`http`]: axum surfaces: SCIM (`/scim/v2`), task API (`/api/v1`), health.
//! - [`auth`]: token roles, hashing and the actor of a request.
//! - [`config`], [`startup`], [`telemetry`], [`cli`]: running the server.
//! - [`client`]: the task API's HTTP client (for the agent and the admin CLI; no database).
//! - [`agent`]: `scimbridge agent`, which works the queue with a handler program.
//! - [`admin`]: the admin CLI, `scimbridge tasks …` and `scimbridge users …`.
//!
//! Dependencies point inward: `http` → `db` → `reconcile`/`scim`.

pub mod admin;
pub mod agent;
pub mod auth;
pub mod cli;
pub mod client;
pub mod config;
pub mod db;
pub mod dump;
pub mod error;
pub mod http;
pub mod limits;
pub mod notify;
pub mod profiles;
pub mod queue;
pub mod reconcile;
pub mod scim;
pub mod secrets;
pub mod server;
pub mod startup;
pub mod telemetry;
pub mod tickets;
