//! Task planning, pure: given what the IdP wants (desired) and what the app has or will
//! have (the basis), decide the one task that closes the difference, or none.
//!
//! This module owns the rules of the model (tasks are derived, not appended: after every
//! change, the one open task per subject is recomputed from desired state and the state the
//! subject will have once its task in progress is done, so re-sent profiles plan nothing
//! and create-then-deactivate cancels the create) and the app profiles that turn a SCIM
//! user into an app account and a task into instructions. It does no IO and imports neither
//! axum nor sqlx.

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
