//! Snapshots of an app's user list (the *observed* state, next to desired and confirmed;
//! docs/snapshots.md), pure: the profile's `[snapshot]` settings, and the incremental
//! readers that turn the bytes of an uploaded CSV export or JSON rows into [`Observed`]
//! accounts.
//!
//! Everything here is sans-IO and streaming: the caller feeds the request body chunk by
//! chunk ([`RowParser::feed`]) and gets rows out as soon as they are complete, so a file
//! of any length is read in memory bounded by the longest row (capped at
//! [`MAX_RECORD_BYTES`]). Comparing an observation with the desired and confirmed state
//! is [`super::verify`].

mod csv;
mod json;
mod rows;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Account;

pub use rows::{Format, RowParser, Rows};

/// The longest row (one CSV record or one JSON object) a snapshot may have; a longer
/// one is refused rather than buffered without bound.
pub const MAX_RECORD_BYTES: usize = 64 * 1024;

/// The most columns (CSV) or keys (JSON) one row may have.
pub const MAX_COLUMNS: usize = 256;

/// An account field a snapshot column can carry (the names of [`Account`]'s fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    /// The account's email (People.ai's match key).
    Email,
    /// The sign-in name, where the app shows one.
    UserName,
    /// First name.
    GivenName,
    /// Last name.
    FamilyName,
    /// Display name.
    DisplayName,
    /// Department or team.
    Department,
    /// The app role (mapped onto the profile's roles through `[snapshot.roles]`).
    Role,
}

impl Field {
    /// Every field, in a stable order.
    pub const ALL: [Field; 7] = [
        Field::Email,
        Field::UserName,
        Field::GivenName,
        Field::FamilyName,
        Field::DisplayName,
        Field::Department,
        Field::Role,
    ];

    /// The profile's and the API's name (`email`, `given_name`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Field::Email => "email",
            Field::UserName => "user_name",
            Field::GivenName => "given_name",
            Field::FamilyName => "family_name",
            Field::DisplayName => "display_name",
            Field::Department => "department",
            Field::Role => "role",
        }
    }

    /// Parses a field name; `None` for anything else.
    pub fn parse(s: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.as_str() == s)
    }
}

/// The `[snapshot]` table of a profile: how the app's user export looks and how strict
/// the safeguard is. Every key is optional; the defaults fit an export with the columns
/// Email, First Name, Last Name, Role and Status.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SnapshotConfig {
    /// The field that identifies an account in both worlds: `email` or `user_name`,
    /// compared ignoring case.
    pub match_key: String,
    /// A snapshot whose findings (drift, missing, contradicted, orphan) exceed this share
    /// of its matched accounts is held for an admin's confirmation (0.2: 20 %).
    pub threshold: f64,
    /// Account field (or `status`) -> column header of the export. Headers are compared
    /// ignoring case, spaces and punctuation, and a column named like the field itself
    /// (`given_name`, `email`) is always recognised.
    pub columns: BTreeMap<String, String>,
    /// Which values of the status column mean an active (may sign in) or inactive account.
    pub status: StatusValues,
    /// Role values of the export -> the profile's roles; a value equal to a role name
    /// (any case) needs no entry. Other values are kept as the app shows them.
    pub roles: BTreeMap<String, String>,
}

/// The values of the status column, compared ignoring case and surrounding spaces.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatusValues {
    /// Values meaning the account may sign in.
    pub active: Vec<String>,
    /// Values meaning the account exists but is switched off.
    pub inactive: Vec<String>,
}

impl Default for StatusValues {
    fn default() -> Self {
        StatusValues {
            active: vec!["active".into(), "enabled".into()],
            inactive: vec![
                "inactive".into(),
                "deactivated".into(),
                "disabled".into(),
                "suspended".into(),
            ],
        }
    }
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        let columns = [
            ("email", "Email"),
            ("given_name", "First Name"),
            ("family_name", "Last Name"),
            ("role", "Role"),
            ("status", "Status"),
        ];
        SnapshotConfig {
            match_key: "email".into(),
            threshold: 0.2,
            columns: columns
                .into_iter()
                .map(|(f, c)| (f.to_owned(), c.to_owned()))
                .collect(),
            status: StatusValues::default(),
            roles: BTreeMap::new(),
        }
    }
}

/// The status pseudo-field of `[snapshot.columns]`.
pub const STATUS: &str = "status";

impl SnapshotConfig {
    /// Checks the table against the profile's roles; the message names the key.
    pub fn validate(&self, roles: &[String]) -> Result<(), String> {
        let key = self.key_field()?;
        if !(0.0..=1.0).contains(&self.threshold) {
            return Err("snapshot.threshold must be between 0 and 1 (0.2 is 20 %)".into());
        }
        for (field, header) in &self.columns {
            if field != STATUS && Field::parse(field).is_none() {
                return Err(format!(
                    "snapshot.columns.{field}: unknown field; columns map {} or status",
                    Field::ALL.map(Field::as_str).join(", ")
                ));
            }
            if normalise(header).is_empty() {
                return Err(format!(
                    "snapshot.columns.{field}: the column header must have a letter or digit"
                ));
            }
        }
        let mut seen: Vec<(String, &str)> = Vec::new();
        for (field, header) in &self.columns {
            let n = normalise(header);
            if let Some((_, other)) = seen.iter().find(|(h, _)| *h == n) {
                return Err(format!(
                    "snapshot.columns: {other} and {field} name the same column {header:?}"
                ));
            }
            seen.push((n, field));
        }
        for needed in [key.as_str(), STATUS] {
            if !self.columns.contains_key(needed) {
                return Err(format!(
                    "snapshot.columns must name the {needed} column (the match key and the \
                     status are what a snapshot is compared by)"
                ));
            }
        }
        if self.status.active.is_empty() || self.status.inactive.is_empty() {
            return Err("snapshot.status needs at least one active and one inactive value".into());
        }
        for a in &self.status.active {
            if self
                .status
                .inactive
                .iter()
                .any(|i| i.trim().eq_ignore_ascii_case(a.trim()))
            {
                return Err(format!(
                    "snapshot.status: {a:?} is listed as both active and inactive"
                ));
            }
        }
        for (value, role) in &self.roles {
            if !roles.contains(role) {
                return Err(format!(
                    "snapshot.roles.{value:?} maps to {role:?}, which is not one of the \
                     profile's roles [{}]",
                    roles.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// The match key as a field (`email` or `user_name`).
    pub fn key_field(&self) -> Result<Field, String> {
        match self.match_key.as_str() {
            "email" => Ok(Field::Email),
            "user_name" => Ok(Field::UserName),
            other => Err(format!(
                "snapshot.match_key {other:?}: accounts are matched by email or user_name"
            )),
        }
    }

    /// What a status value means: `Some(true)` active, `Some(false)` inactive.
    pub fn status_of(&self, value: &str) -> Option<bool> {
        let v = value.trim();
        let is = |list: &[String]| list.iter().any(|s| s.trim().eq_ignore_ascii_case(v));
        if is(&self.status.active) {
            Some(true)
        } else if is(&self.status.inactive) {
            Some(false)
        } else {
            None
        }
    }

    /// The profile role an exported role value stands for: a `[snapshot.roles]` entry,
    /// else a role of the same name (any case), else the value as the app shows it.
    pub fn role_of(&self, value: &str, roles: &[String]) -> String {
        let v = value.trim();
        if let Some(r) = self
            .roles
            .iter()
            .find(|(k, _)| k.trim().eq_ignore_ascii_case(v))
        {
            return r.1.clone();
        }
        roles
            .iter()
            .find(|r| r.eq_ignore_ascii_case(v))
            .cloned()
            .unwrap_or_else(|| v.to_owned())
    }
}

/// A column header or JSON key as compared: lower case, letters and digits only, so
/// "First Name", "first_name" and "FirstName" are the same column.
pub fn normalise(header: &str) -> String {
    header
        .chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// One account as the app's export shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observed {
    /// Where it is in the file: the CSV row as a spreadsheet numbers it (the header is
    /// row 1), or the JSON row (1-based).
    pub line: u64,
    /// The match key, lower-cased.
    pub key: String,
    /// Whether the account may sign in.
    pub active: bool,
    /// The other columns the export has, by field (None: the cell is empty). A field the
    /// export has no column for is absent: it is not observed, so it cannot differ.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<Field, Option<String>>,
}

impl Observed {
    /// The account the app has, as far as the export shows it: `base` (what scimbridge
    /// wants or believes the account to be) with every observed field replaced by what
    /// the export says. Without a base (an account no IdP user owns), unobserved fields
    /// are empty and the role is `default_role` unless the export has one.
    pub fn account(&self, base: Option<&Account>, default_role: &str) -> Account {
        let mut a = base.cloned().unwrap_or_else(|| Account {
            user_name: self.key.clone(),
            email: self.key.clone(),
            given_name: None,
            family_name: None,
            display_name: None,
            department: None,
            role: default_role.to_owned(),
            active: self.active,
        });
        a.active = self.active;
        for (field, value) in &self.fields {
            match field {
                // The match key and the role always have a value; an empty cell leaves
                // what the base says.
                // Emails and sign-in names are compared ignoring case (as the match key
                // is): "ANN@CORP.COM" in an export is the same account, not a difference.
                Field::Email => {
                    if let Some(v) = value.as_ref().filter(|v| !v.eq_ignore_ascii_case(&a.email)) {
                        a.email = v.clone();
                    }
                }
                Field::UserName => {
                    if let Some(v) = value
                        .as_ref()
                        .filter(|v| !v.eq_ignore_ascii_case(&a.user_name))
                    {
                        a.user_name = v.clone();
                    }
                }
                Field::Role => {
                    if let Some(v) = value {
                        a.role = v.clone();
                    }
                }
                Field::GivenName => a.given_name = value.clone(),
                Field::FamilyName => a.family_name = value.clone(),
                Field::DisplayName => a.display_name = value.clone(),
                Field::Department => a.department = value.clone(),
            }
        }
        a
    }
}

/// Why a snapshot file cannot be read at all (the request is refused, nothing changes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SnapshotError {
    /// Stable code for the API (`invalid_csv`, `missing_column`, `invalid_status`, ...).
    pub code: &'static str,
    /// What is wrong, with the line where there is one.
    pub message: String,
}

impl SnapshotError {
    pub(crate) fn new(code: &'static str, message: impl Into<String>) -> SnapshotError {
        SnapshotError {
            code,
            message: message.into(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
