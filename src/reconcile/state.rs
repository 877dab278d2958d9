//! Where a task is in its lifecycle, pure: the states of the `task_state` Postgres enum,
//! the words people read for them, and the sets of states the code asks about ("still
//! to do", "waiting to be claimed", ...), each written once.
//!
//! The mapping to the database type lives in `db` (this module imports no sqlx); the
//! transitions between states live in `db::lifecycle`.

use serde::{Deserialize, Serialize};

/// A task's state (the `task_state` enum of migration `init`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Planned and claimable (once the subject's task in progress, if any, is finished).
    Open,
    /// Planned; an admin must approve it before anyone may claim it (profile rules).
    AwaitingApproval,
    /// Planned inside a batch the mass-change guard holds for an admin's review.
    Held,
    /// Claimed: a worker holds it under a lease.
    InProgress,
    /// Done in the app: the confirmed state moved to the task's target.
    Done,
    /// Could not be done: the confirmed state stayed, the subject needs attention.
    Failed,
    /// Nothing to do: the app already was in the target state (moves confirmed state
    /// like `Done`).
    NotApplicable,
    /// Never to be worked: superseded by a newer plan, released, or rejected.
    Cancelled,
}

impl TaskState {
    /// Every state, in the order work flows (the enum's order in the database).
    pub const ALL: [TaskState; 8] = [
        TaskState::Open,
        TaskState::AwaitingApproval,
        TaskState::Held,
        TaskState::InProgress,
        TaskState::Done,
        TaskState::Failed,
        TaskState::NotApplicable,
        TaskState::Cancelled,
    ];

    /// Not finished: waiting for someone (open, awaiting approval, held) or being worked.
    /// A subject with one of these is "pending".
    pub const UNFINISHED: [TaskState; 4] = [
        TaskState::Open,
        TaskState::AwaitingApproval,
        TaskState::Held,
        TaskState::InProgress,
    ];

    /// Planned but not claimed: the one "next" task a subject may have (invariant 2),
    /// which derivation re-plans.
    pub const UNCLAIMED: [TaskState; 3] = [
        TaskState::Open,
        TaskState::AwaitingApproval,
        TaskState::Held,
    ];

    /// In the workers' queue: claimable now or being worked (not waiting for an approval
    /// or a held batch). The board orders these as claims take them.
    pub const QUEUED: [TaskState; 2] = [TaskState::Open, TaskState::InProgress];

    /// Finished by a worker's completion (a retried completion answers with the task
    /// as it is).
    pub const COMPLETED: [TaskState; 3] =
        [TaskState::Done, TaskState::Failed, TaskState::NotApplicable];

    /// Finished with the app in the task's target state: the confirmed state moved.
    pub const CONFIRMED: [TaskState; 2] = [TaskState::Done, TaskState::NotApplicable];

    /// The stored and wire name (`in_progress`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Open => "open",
            TaskState::AwaitingApproval => "awaiting_approval",
            TaskState::Held => "held",
            TaskState::InProgress => "in_progress",
            TaskState::Done => "done",
            TaskState::Failed => "failed",
            TaskState::NotApplicable => "not_applicable",
            TaskState::Cancelled => "cancelled",
        }
    }

    /// Parses a wire name; `None` for anything else.
    pub fn parse(s: &str) -> Option<TaskState> {
        TaskState::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The state in words, as people read it ("Awaiting approval").
    pub fn label(self) -> &'static str {
        match self {
            TaskState::Open => "Open",
            TaskState::AwaitingApproval => "Awaiting approval",
            TaskState::Held => "Held",
            TaskState::InProgress => "In progress",
            TaskState::Done => "Done",
            TaskState::Failed => "Failed",
            TaskState::NotApplicable => "Not applicable",
            TaskState::Cancelled => "Cancelled",
        }
    }

    /// Whether the state is one of `set` (one of the constants above).
    pub fn is_in(self, set: &[TaskState]) -> bool {
        set.contains(&self)
    }
}

impl std::fmt::Display for TaskState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_serde_agrees() {
        for s in TaskState::ALL {
            assert_eq!(TaskState::parse(s.as_str()), Some(s));
            assert_eq!(
                serde_json::to_value(s).ok(),
                Some(serde_json::Value::String(s.as_str().into()))
            );
        }
        assert_eq!(TaskState::parse("Open"), None);
    }

    #[test]
    fn labels_are_words() {
        assert_eq!(TaskState::AwaitingApproval.label(), "Awaiting approval");
        assert_eq!(TaskState::InProgress.label(), "In progress");
        for s in TaskState::ALL {
            assert!(!s.label().contains('_'), "{s}");
        }
    }

    #[test]
    fn sets_nest_as_their_docs_say() {
        for s in TaskState::UNCLAIMED.iter().chain(&TaskState::QUEUED) {
            assert!(s.is_in(&TaskState::UNFINISHED), "{s}");
        }
        for s in TaskState::CONFIRMED {
            assert!(s.is_in(&TaskState::COMPLETED), "{s}");
            assert!(!s.is_in(&TaskState::UNFINISHED), "{s}");
        }
    }
}
