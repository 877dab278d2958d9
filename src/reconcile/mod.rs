//! Task planning, pure: given what the IdP wants (desired) and what the app has or will
//! have (the basis), decide the one task that closes the difference, or none.
//!
//! This module owns the rules of DESIGN.md's model ("tasks are derived, not appended")
//! and the app profiles that turn a SCIM user into an app account and a task into
//! instructions. It does no IO and imports neither axum nor sqlx.

pub mod account;
pub mod evidence;
pub mod governance;
pub mod plan;
pub mod profile;
pub mod snapshot;
pub mod state;
pub mod verify;

pub use account::Account;
pub use governance::Governance;
pub use plan::{plan, Change, Plan, TaskKind};
pub use profile::{CompletionField, Profile, ProfileError, Profiles, Step, TaskText};
pub use state::TaskState;
