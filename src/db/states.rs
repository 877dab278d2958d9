//! [`TaskState`] and [`TaskKind`] in SQL: the sqlx mappings to the `task_state` and
//! `task_kind` Postgres enums, and the state sets of [`TaskState`]'s constants as SQL
//! lists for queries.
//!
//! The lists are literals (macros, so `concat!` can build static query text) rather than
//! bound arrays: partial indexes and the planner's estimates match `state in ('open', …)`
//! only when the states are written in the query. A test checks each list against its
//! constant, so the two cannot drift apart.

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgHasArrayType, PgTypeInfo, PgValueRef};
use sqlx::{Decode, Encode, Postgres, Type};

use crate::reconcile::{TaskKind, TaskState};

/// `TaskState::UNFINISHED` as an SQL list.
macro_rules! unfinished_states {
    () => {
        "('open', 'awaiting_approval', 'held', 'in_progress')"
    };
}

/// `TaskState::UNCLAIMED` as an SQL list.
macro_rules! unclaimed_states {
    () => {
        "('open', 'awaiting_approval', 'held')"
    };
}

/// `TaskState::QUEUED` as an SQL list.
macro_rules! queued_states {
    () => {
        "('open', 'in_progress')"
    };
}

/// `TaskState::CONFIRMED` as an SQL list.
macro_rules! confirmed_states {
    () => {
        "('done', 'not_applicable')"
    };
}

impl Type<Postgres> for TaskState {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_name("task_state")
    }

    /// Also reads `state::text` columns, as older queries select them.
    fn compatible(ty: &PgTypeInfo) -> bool {
        *ty == Self::type_info() || <&str as Type<Postgres>>::compatible(ty)
    }
}

impl PgHasArrayType for TaskState {
    fn array_type_info() -> PgTypeInfo {
        PgTypeInfo::with_name("_task_state")
    }
}

impl<'r> Decode<'r, Postgres> for TaskState {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        let s = <&str as Decode<Postgres>>::decode(value)?;
        TaskState::parse(s).ok_or_else(|| format!("unknown task state {s:?}").into())
    }
}

impl Encode<'_, Postgres> for TaskState {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <&str as Encode<Postgres>>::encode(self.as_str(), buf)
    }
}

impl Type<Postgres> for TaskKind {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_name("task_kind")
    }

    /// Also reads `kind::text` columns.
    fn compatible(ty: &PgTypeInfo) -> bool {
        *ty == Self::type_info() || <&str as Type<Postgres>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Postgres> for TaskKind {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        let s = <&str as Decode<Postgres>>::decode(value)?;
        TaskKind::parse(s).ok_or_else(|| format!("unknown task kind {s:?}").into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sql_list(states: &[TaskState]) -> String {
        let names: Vec<String> = states.iter().map(|s| format!("'{s}'")).collect();
        format!("({})", names.join(", "))
    }

    #[test]
    fn sql_lists_match_their_constants() {
        assert_eq!(unfinished_states!(), sql_list(&TaskState::UNFINISHED));
        assert_eq!(unclaimed_states!(), sql_list(&TaskState::UNCLAIMED));
        assert_eq!(queued_states!(), sql_list(&TaskState::QUEUED));
        assert_eq!(confirmed_states!(), sql_list(&TaskState::CONFIRMED));
    }
}
