//! App profiles: what one manual-only app calls its roles, how IdP groups and SCIM
//! `roles` map onto them, and the words of each task. A profile is a TOML file (format in
//! README.md, "Profiles"); People.ai (`profiles/peopleai.toml`) is
//! compiled in, more come from `--profiles-dir`. Roles and texts are data, not code,
//! because every app names them differently and People.ai's custom roles are unknown.
//!
//! Pure: profiles are parsed from text that the caller read ([`crate::profiles`] walks
//! the directory). Everything that can be wrong with a file is found here, at start,
//! and reported with the file, line and reason ([`ProfileError`]); task texts are
//! MiniJinja templates that are compiled *and* rendered against sample tasks before a
//! profile is accepted, so a typo cannot surface later in the middle of a SCIM write.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, LazyLock};

use minijinja::value::{Serde, Value as JinjaValue};
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::snapshot::SnapshotConfig;
use super::Governance;
use super::{Account, Change, Plan, TaskKind};

/// The profiles compiled into the binary: (file name used in messages, contents).
pub const BUILTIN: &[(&str, &str)] = &[(
    "built-in profiles/peopleai.toml",
    include_str!("../../profiles/peopleai.toml"),
)];

/// The texts of `review_account` tasks for a profile that has none (the kind came with
/// snapshots, after profiles were written; a profile may word it its own way).
const DEFAULT_REVIEW_ACCOUNT: &str = r#"
[tasks.review_account]
title = "Review {{ app }} account {{ base.email }}: no IdP user has it"
steps = [
  "Sign in to {{ app }} with an administrator account.",
  "Open the user record of {{ base.email }}{% if base.role %} (role {{ base.role }}){% endif %}.",
  "Find out whose account it is. If it belongs to a person the IdP knows under another name or email, record resolution linked and who (linked_user).",
  "If it is a legitimate account outside the IdP (a service or vendor account), record resolution kept: it is not flagged again.",
  "Otherwise remove the account (or deactivate it if {{ app }} offers no removal) and record resolution removed.",
]

[[tasks.review_account.fields]]
name = "resolution"
label = "What became of the account?"
required = true
choices = ["removed", "linked", "kept"]

[[tasks.review_account.fields]]
name = "linked_user"
label = "The IdP user it belongs to (userName or email), when linked"
required = false

[[tasks.review_account.fields]]
name = "seat_freed"
label = "Was the seat (licence) freed?"
required = false
choices = ["yes", "no", "unknown"]
"#;

/// Why a profile file was refused, and where: `file:line:column: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileError {
    /// The file name as given to the loader.
    pub file: String,
    /// 1-based line in the file, when the problem has a place.
    pub line: Option<usize>,
    /// 1-based column (in characters), when known.
    pub column: Option<usize>,
    /// What is wrong and, where it helps, what would be right.
    pub message: String,
}

impl fmt::Display for ProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The compiler's `file:line:column: message` shape, which editors can jump to.
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "{}:{l}:{c}: {}", self.file, self.message),
            (Some(l), None) => write!(f, "{}:{l}: {}", self.file, self.message),
            _ => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for ProfileError {}

/// A value the worker records when completing a task (the audit evidence).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletionField {
    /// Key in the completion's `fields` object.
    pub name: String,
    /// Question shown to the person.
    pub label: String,
    /// Whether completing as `done` needs it.
    #[serde(default)]
    pub required: bool,
    /// Allowed answers; empty for free text.
    #[serde(default)]
    pub choices: Vec<String>,
}

/// One instruction of a task: a template rendered once, or once per change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// MiniJinja source.
    pub template: String,
    /// Rendered once per entry of `changes`, with `change` bound to it.
    pub per_change: bool,
}

/// The words and completion fields of one task kind.
#[derive(Debug, Clone)]
pub struct TaskText {
    /// Which kind of task these are for.
    pub kind: TaskKind,
    /// MiniJinja source of the title.
    pub title: String,
    /// The instructions, in order; a step that renders empty is left out.
    pub steps: Vec<Step>,
    /// What completing a task of this kind records.
    pub fields: Vec<CompletionField>,
}

/// One app's configuration, validated.
#[derive(Debug, Clone)]
pub struct Profile {
    /// Stable key stored in `app.profile`.
    pub key: String,
    /// The app's name as people know it (`app` in templates).
    pub display_name: String,
    /// The app's roles, most privileged first (used when several sources disagree).
    pub roles: Vec<String>,
    /// Role of a user no mapping applies to.
    pub default_role: String,
    /// IdP group displayName (compared case-insensitively) → role.
    pub group_roles: Vec<(String, String)>,
    /// Extra SCIM `roles` values (compared case-insensitively) → role; a value equal to
    /// a role name matches that role without being listed.
    pub scim_roles: Vec<(String, String)>,
    /// The file the profile came from (for messages and `apps show`).
    pub source: String,
    /// SLAs, approvals and the mass-change guard (`[governance]`, defaults when absent).
    pub governance: Governance,
    /// How the app's user export looks and the snapshot safeguard (`[snapshot]`).
    pub snapshot: SnapshotConfig,
    /// One entry per task kind, in [`TaskKind::ALL`] order.
    tasks: Vec<TaskText>,
    /// The compiled templates, named by [`template_name`].
    env: Environment<'static>,
    /// Line of `key = ...`, to point at a duplicate key.
    key_line: usize,
}

impl Profile {
    /// Parses and validates one profile file. `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Profile, ProfileError> {
        let src = Source { file, text };
        let raw: RawProfile = toml::from_str(text).map_err(|e| match e.span() {
            Some(span) => src.at(span, e.message().trim_end()),
            None => src.err(e.message().trim_end()),
        })?;
        build(&src, raw)
    }

    /// Whether membership of a group with this name decides a role.
    pub fn group_decides_role(&self, group_name: &str) -> bool {
        self.group_roles
            .iter()
            .any(|(g, _)| g.eq_ignore_ascii_case(group_name))
    }

    /// The user's role: the most privileged of the roles given by their groups and by
    /// their SCIM `roles` values (a role's own name or a `scim_roles` alias); the
    /// default role otherwise.
    pub fn resolve_role<'a>(
        &self,
        group_names: impl IntoIterator<Item = &'a str>,
        scim_roles: impl IntoIterator<Item = &'a str>,
    ) -> String {
        let groups: Vec<&str> = group_names.into_iter().collect();
        let asked: Vec<&str> = scim_roles.into_iter().collect();
        let by_group = |role: &str| {
            self.group_roles
                .iter()
                .any(|(g, r)| r == role && groups.iter().any(|n| n.eq_ignore_ascii_case(g)))
        };
        let by_scim = |role: &str| {
            asked.iter().any(|a| {
                a.eq_ignore_ascii_case(role)
                    || self
                        .scim_roles
                        .iter()
                        .any(|(alias, r)| r == role && alias.eq_ignore_ascii_case(a))
            })
        };
        self.roles
            .iter()
            .find(|r| by_group(r) || by_scim(r))
            .unwrap_or(&self.default_role)
            .clone()
    }

    /// The texts of every task kind, in [`TaskKind::ALL`] order.
    pub fn tasks(&self) -> &[TaskText] {
        &self.tasks
    }

    /// The texts of one task kind (every kind is present once validated).
    pub fn task(&self, kind: TaskKind) -> Option<&TaskText> {
        self.tasks.iter().find(|t| t.kind == kind)
    }

    /// What the worker must record when completing a task of this kind.
    pub fn completion_fields(&self, kind: TaskKind) -> Vec<CompletionField> {
        self.task(kind)
            .map(|t| t.fields.clone())
            .unwrap_or_default()
    }

    /// The task's title and step-by-step instructions, with the concrete values.
    ///
    /// Never fails: templates were rendered against sample tasks at start, so an error
    /// here is an edge no sample covered. The task is still made (a SCIM write must not
    /// fail over wording), with the raw changes and the error for the person to see.
    pub fn render(&self, plan: &Plan) -> (String, Vec<String>) {
        self.try_render(plan)
            .unwrap_or_else(|e| self.fallback(plan, &e))
    }

    fn try_render(&self, plan: &Plan) -> Result<(String, Vec<String>), minijinja::Error> {
        let task = self.task(plan.kind).ok_or_else(|| {
            minijinja::Error::new(
                minijinja::ErrorKind::TemplateNotFound,
                format!("the profile has no texts for {}", plan.kind.as_str()),
            )
        })?;
        let ctx = Context::new(self, plan);
        let title = self.render_one(&template_name(plan.kind, None), &ctx)?;
        let mut steps = Vec::with_capacity(task.steps.len() + plan.changes.len());
        for (i, step) in task.steps.iter().enumerate() {
            let name = template_name(plan.kind, Some(i));
            if step.per_change {
                for change in &plan.changes {
                    let ctx = Context {
                        change: Some(change),
                        ..ctx.clone()
                    };
                    steps.push(self.render_one(&name, &ctx)?);
                }
            } else {
                steps.push(self.render_one(&name, &ctx)?);
            }
        }
        steps.retain(|s| !s.is_empty());
        Ok((title, steps))
    }

    fn render_one(&self, name: &str, ctx: &Context<'_>) -> Result<String, minijinja::Error> {
        let out = self
            .env
            .get_template(name)?
            .render(JinjaValue::from(Serde(ctx)))?;
        Ok(out.trim().to_owned())
    }

    fn fallback(&self, plan: &Plan, e: &minijinja::Error) -> (String, Vec<String>) {
        let who = Context::new(self, plan).who;
        let title = format!(
            "Review {} account of {who} ({})",
            self.display_name,
            plan.kind.as_str()
        );
        let mut steps = vec![format!(
            "The {} profile's instructions could not be rendered ({e}); make the changes \
             below by hand and tell whoever maintains profile {}.",
            self.display_name, self.key
        )];
        steps.extend(plan.changes.iter().map(|c| {
            format!(
                "Change {} from {} to {}.",
                c.field,
                show_json(&c.from),
                show_json(&c.to)
            )
        }));
        (title, steps)
    }
}

/// The registry of every profile this process knows, by key.
#[derive(Debug, Clone, Default)]
pub struct Profiles {
    by_key: HashMap<String, Arc<Profile>>,
}

static BUILTIN_PROFILES: LazyLock<Profiles> = LazyLock::new(|| {
    let mut profiles = Profiles::default();
    for (file, text) in BUILTIN {
        // The built-in files are compiled in and parsed by the unit tests, so a failure
        // here is a build defect that cannot reach a release; there is nothing to recover.
        let parsed = Profile::parse(file, text)
            .and_then(|p| profiles.add(p))
            .map_err(|e| e.to_string());
        if let Err(e) = parsed {
            panic!("built-in profile is invalid: {e}");
        }
    }
    profiles
});

impl Profiles {
    /// The built-in profiles only (parsed once per process).
    pub fn builtin() -> Profiles {
        BUILTIN_PROFILES.clone()
    }

    /// The built-in profiles plus one per `(file name, contents)`; the first bad file or
    /// a key defined twice (also against a built-in) is the error.
    pub fn with_files<'a>(
        files: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Profiles, ProfileError> {
        let mut profiles = Profiles::builtin();
        for (file, text) in files {
            profiles.add(Profile::parse(file, text)?)?;
        }
        Ok(profiles)
    }

    fn add(&mut self, profile: Profile) -> Result<(), ProfileError> {
        if let Some(other) = self.by_key.get(&profile.key) {
            return Err(ProfileError {
                file: profile.source.clone(),
                line: Some(profile.key_line),
                column: None,
                message: format!(
                    "profile key {:?} is already defined by {}; every profile needs its own key",
                    profile.key, other.source
                ),
            });
        }
        self.by_key.insert(profile.key.clone(), Arc::new(profile));
        Ok(())
    }

    /// The profile with this key.
    pub fn get(&self, key: &str) -> Option<&Arc<Profile>> {
        self.by_key.get(key)
    }

    /// Every profile, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Profile>> {
        let mut all: Vec<&Arc<Profile>> = self.by_key.values().collect();
        all.sort_by(|a, b| a.key.cmp(&b.key));
        all.into_iter()
    }

    /// Every key, sorted (for "known profiles: ..." messages).
    pub fn keys(&self) -> Vec<&str> {
        self.iter().map(|p| p.key.as_str()).collect()
    }
}

/// The template name of a title (`step` None) or of a step, as used in errors:
/// `tasks.create_account.title`, `tasks.remove.steps[2]` (0-based, like the TOML array).
fn template_name(kind: TaskKind, step: Option<usize>) -> String {
    match step {
        None => format!("tasks.{}.title", kind.as_str()),
        Some(i) => format!("tasks.{}.steps[{i}]", kind.as_str()),
    }
}

// ---------------------------------------------------------------------------------------
// Template context

/// What a template sees. Every account field is present (null when absent) so that a
/// misspelt name is an error at start, not an empty string in a task.
#[derive(Debug, Clone, Serialize)]
struct Context<'a> {
    app: &'a str,
    who: String,
    kind: &'static str,
    target: Option<AccountView<'a>>,
    base: Option<AccountView<'a>>,
    changes: &'a [Change],
    /// Only in `per_change` steps, so using it elsewhere fails validation.
    #[serde(skip_serializing_if = "Option::is_none")]
    change: Option<&'a Change>,
}

#[derive(Debug, Clone, Serialize)]
struct AccountView<'a> {
    user_name: &'a str,
    email: &'a str,
    given_name: Option<&'a str>,
    family_name: Option<&'a str>,
    display_name: Option<&'a str>,
    department: Option<&'a str>,
    role: &'a str,
    active: bool,
}

impl<'a> AccountView<'a> {
    fn of(a: &'a Account) -> AccountView<'a> {
        AccountView {
            user_name: &a.user_name,
            email: &a.email,
            given_name: a.given_name.as_deref(),
            family_name: a.family_name.as_deref(),
            display_name: a.display_name.as_deref(),
            department: a.department.as_deref(),
            role: &a.role,
            active: a.active,
        }
    }
}

impl<'a> Context<'a> {
    fn new(profile: &'a Profile, plan: &'a Plan) -> Context<'a> {
        Context {
            app: &profile.display_name,
            who: plan
                .target
                .as_ref()
                .or(plan.base.as_ref())
                .map(Account::label)
                .unwrap_or_default(),
            kind: plan.kind.as_str(),
            target: plan.target.as_ref().map(AccountView::of),
            base: plan.base.as_ref().map(AccountView::of),
            changes: &plan.changes,
            change: None,
        }
    }
}

/// The template engine every profile uses: plain text (no HTML escaping: task texts are
/// not HTML), strict about undefined names (typos fail at start), `none` printed as
/// nothing, and the `show` filter for change values.
fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_formatter(|out, state, value| {
        if value.is_none() {
            Ok(())
        } else if value.kind() == minijinja::value::ValueKind::Bool {
            // JSON's spelling, as the API shows the same values.
            write!(out, "{}", value.is_true()).map_err(|e| {
                minijinja::Error::new(minijinja::ErrorKind::WriteFailure, e.to_string())
            })
        } else {
            minijinja::escape_formatter(out, state, value)
        }
    });
    env.add_filter("show", show_value);
    env
}

/// `show`: a change value for people, as JSON writes it: `(none)`, a quoted string,
/// `true`/`false` (MiniJinja alone would print Python's `True`), or the value itself.
fn show_value(v: JinjaValue) -> String {
    if v.is_none() || v.is_undefined() {
        "(none)".into()
    } else if let Some(s) = v.as_str() {
        format!("\"{s}\"")
    } else if v.kind() == minijinja::value::ValueKind::Bool {
        v.is_true().to_string()
    } else {
        v.to_string()
    }
}

/// [`show_value`] for a JSON value (the fallback text, which has no template).
fn show_json(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "(none)".into(),
        serde_json::Value::String(s) => format!("\"{s}\""),
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------------------------------
// Parsing and validation

/// The file as written, with the position of everything validation may point at.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    key: Spanned<String>,
    display_name: Spanned<String>,
    roles: Spanned<Vec<Spanned<String>>>,
    default_role: Spanned<String>,
    #[serde(default)]
    group_roles: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    scim_roles: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    tasks: RawTasks,
    #[serde(default)]
    governance: Option<Spanned<Governance>>,
    #[serde(default)]
    snapshot: Option<Spanned<SnapshotConfig>>,
}

/// Only `[tasks]`, for [`DEFAULT_REVIEW_ACCOUNT`].
#[derive(Debug, Deserialize)]
struct RawTasksOnly {
    tasks: RawTasks,
}

/// Named fields, so an unknown task kind is refused by `deny_unknown_fields` at its line.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTasks {
    create_account: Option<RawTask>,
    update_attributes: Option<RawTask>,
    change_role: Option<RawTask>,
    deactivate: Option<RawTask>,
    reactivate: Option<RawTask>,
    remove: Option<RawTask>,
    review_account: Option<RawTask>,
}

impl RawTasks {
    fn get(&self, kind: TaskKind) -> Option<&RawTask> {
        match kind {
            TaskKind::CreateAccount => self.create_account.as_ref(),
            TaskKind::UpdateAttributes => self.update_attributes.as_ref(),
            TaskKind::ChangeRole => self.change_role.as_ref(),
            TaskKind::Deactivate => self.deactivate.as_ref(),
            TaskKind::Reactivate => self.reactivate.as_ref(),
            TaskKind::Remove => self.remove.as_ref(),
            TaskKind::ReviewAccount => self.review_account.as_ref(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTask {
    title: Spanned<String>,
    /// A step is a string or `{ per_change = "..." }`; read as a TOML value so a wrong
    /// shape gets our message instead of serde's "did not match any variant".
    steps: Spanned<Vec<Spanned<toml::Value>>>,
    #[serde(default)]
    fields: Vec<RawField>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    name: Spanned<String>,
    label: Spanned<String>,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    choices: Vec<Spanned<String>>,
}

/// One file being validated: turns byte spans into lines and columns.
struct Source<'a> {
    file: &'a str,
    text: &'a str,
}

impl Source<'_> {
    fn err(&self, message: impl Into<String>) -> ProfileError {
        ProfileError {
            file: self.file.to_owned(),
            line: None,
            column: None,
            message: message.into(),
        }
    }

    fn at(&self, span: Range<usize>, message: impl Into<String>) -> ProfileError {
        let (line, column) = self.line_col(span.start);
        ProfileError {
            line: Some(line),
            column: Some(column),
            ..self.err(message)
        }
    }

    fn line_col(&self, offset: usize) -> (usize, usize) {
        let before = self.text.get(..offset).unwrap_or(self.text);
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
        (line, column)
    }

    /// Where line `template_line` of a template that sits at `span` is in the file. A
    /// multi-line string whose opening quotes end the line starts on the next line.
    fn template_line(&self, span: &Range<usize>, template_line: usize) -> usize {
        let (line, _) = self.line_col(span.start);
        let raw = self.text.get(span.clone()).unwrap_or("");
        let skips_newline = ["\"\"\"\n", "'''\n", "\"\"\"\r\n", "'''\r\n"]
            .iter()
            .any(|p| raw.starts_with(p));
        line + usize::from(skips_newline) + template_line.saturating_sub(1)
    }
}

fn valid_key(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && key.len() <= 63
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

fn valid_field_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn build(src: &Source<'_>, raw: RawProfile) -> Result<Profile, ProfileError> {
    let key = raw.key.get_ref().clone();
    if !valid_key(&key) {
        return Err(src.at(
            raw.key.span(),
            format!(
                "key {key:?} must be 1-63 lowercase letters, digits, '-' or '_', starting \
                 with a letter or digit"
            ),
        ));
    }
    let display_name = raw.display_name.get_ref().trim().to_owned();
    if display_name.is_empty() {
        return Err(src.at(raw.display_name.span(), "display_name must not be empty"));
    }

    let mut roles: Vec<String> = Vec::new();
    for role in raw.roles.get_ref() {
        let name = role.get_ref().trim();
        if name.is_empty() {
            return Err(src.at(role.span(), "a role name must not be empty"));
        }
        if let Some(dup) = roles.iter().find(|r| r.eq_ignore_ascii_case(name)) {
            return Err(src.at(
                role.span(),
                format!("role {name:?} is listed twice (as {dup:?}); role names are compared ignoring case"),
            ));
        }
        roles.push(name.to_owned());
    }
    if roles.is_empty() {
        return Err(src.at(
            raw.roles.span(),
            "roles must list at least one role, most privileged first",
        ));
    }
    let known = |what: &str, role: &Spanned<String>| -> Result<String, ProfileError> {
        let name = role.get_ref();
        if roles.contains(name) {
            return Ok(name.clone());
        }
        let hint = match roles.iter().find(|r| r.eq_ignore_ascii_case(name)) {
            Some(r) => format!(" (did you mean {r:?}? names are exact here)"),
            None => String::new(),
        };
        Err(src.at(
            role.span(),
            format!(
                "{what} {name:?} is not one of the profile's roles [{}]{hint}",
                roles.join(", ")
            ),
        ))
    };
    let default_role = known("default_role", &raw.default_role)?;
    let mut group_roles = Vec::new();
    for (group, role) in &raw.group_roles {
        let role = known(&format!("group_roles.{group:?} maps to role"), role)?;
        group_roles.push((group.clone(), role));
    }
    let mut scim_roles = Vec::new();
    for (alias, role) in &raw.scim_roles {
        let role = known(&format!("scim_roles.{alias:?} maps to role"), role)?;
        scim_roles.push((alias.clone(), role));
    }

    let mut env = environment();
    let mut tasks = Vec::with_capacity(TaskKind::ALL.len());
    // Spans of every template, to place errors found when rendering the samples.
    let mut spans: HashMap<String, Range<usize>> = HashMap::new();
    let default_review: Option<RawTasksOnly> = match raw.tasks.get(TaskKind::ReviewAccount) {
        Some(_) => None,
        None => Some(
            toml::from_str(DEFAULT_REVIEW_ACCOUNT)
                .map_err(|e| src.err(format!("built-in review_account texts: {}", e.message())))?,
        ),
    };
    for kind in TaskKind::ALL {
        if let (TaskKind::ReviewAccount, Some(d)) = (kind, &default_review) {
            let Some(task) = d.tasks.get(kind) else {
                return Err(src.err("built-in review_account texts are missing"));
            };
            let builtin = Source {
                file: "built-in review_account texts",
                text: DEFAULT_REVIEW_ACCOUNT,
            };
            tasks.push(build_task(&builtin, &mut env, &mut spans, kind, task)?);
            continue;
        }
        let Some(task) = raw.tasks.get(kind) else {
            return Err(src.err(format!(
                "[tasks.{}] is missing: every task kind ({}) needs a title and steps",
                kind.as_str(),
                TaskKind::ALL
                    .iter()
                    .filter(|k| **k != TaskKind::ReviewAccount)
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        tasks.push(build_task(src, &mut env, &mut spans, kind, task)?);
    }

    let governance = match raw.governance {
        Some(g) => {
            let span = g.span();
            let g = g.into_inner();
            g.validate().map_err(|e| src.at(span.clone(), e))?;
            for role in &g.approval_roles {
                if !roles.iter().any(|r| r.eq_ignore_ascii_case(role)) {
                    return Err(src.at(
                        span.clone(),
                        format!("governance.approval_roles names {role:?}, which is not a role"),
                    ));
                }
            }
            g
        }
        None => Governance {
            // The default approval rule names People.ai's Admin; keep only roles this
            // app has.
            approval_roles: Governance::default()
                .approval_roles
                .into_iter()
                .filter(|r| roles.iter().any(|x| x.eq_ignore_ascii_case(r)))
                .collect(),
            ..Governance::default()
        },
    };
    let snapshot = match raw.snapshot {
        Some(c) => {
            let span = c.span();
            let c = c.into_inner();
            c.validate(&roles).map_err(|e| src.at(span, e))?;
            c
        }
        None => SnapshotConfig::default(),
    };
    let profile = Profile {
        key,
        snapshot,
        display_name,
        roles,
        default_role,
        group_roles,
        scim_roles,
        governance,
        source: src.file.to_owned(),
        tasks,
        env,
        key_line: src.line_col(raw.key.span().start).0,
    };
    check_samples(src, &profile, &spans)?;
    Ok(profile)
}

fn build_task(
    src: &Source<'_>,
    env: &mut Environment<'static>,
    spans: &mut HashMap<String, Range<usize>>,
    kind: TaskKind,
    raw: &RawTask,
) -> Result<TaskText, ProfileError> {
    let mut compile = |name: String, source: &str, span: Range<usize>| {
        env.add_template_owned(name.clone(), source.to_owned())
            .map_err(|e| template_error(src, &name, &span, &e))?;
        spans.insert(name, span);
        Ok::<(), ProfileError>(())
    };
    let title = raw.title.get_ref().clone();
    if title.trim().is_empty() {
        return Err(src.at(
            raw.title.span(),
            format!("tasks.{}.title must not be empty", kind.as_str()),
        ));
    }
    compile(template_name(kind, None), &title, raw.title.span())?;

    if raw.steps.get_ref().is_empty() {
        return Err(src.at(
            raw.steps.span(),
            format!("tasks.{}.steps must have at least one step", kind.as_str()),
        ));
    }
    let mut steps = Vec::new();
    for (i, step) in raw.steps.get_ref().iter().enumerate() {
        let name = template_name(kind, Some(i));
        let (template, per_change) = match step.get_ref() {
            toml::Value::String(s) => (s.clone(), false),
            toml::Value::Table(t) if t.len() == 1 => match t.get("per_change") {
                Some(toml::Value::String(s)) => (s.clone(), true),
                _ => return Err(shape_error(src, &name, step.span())),
            },
            _ => return Err(shape_error(src, &name, step.span())),
        };
        compile(name, &template, step.span())?;
        steps.push(Step {
            template,
            per_change,
        });
    }

    let mut fields: Vec<CompletionField> = Vec::new();
    for f in &raw.fields {
        let name = f.name.get_ref();
        if !valid_field_name(name) {
            return Err(src.at(
                f.name.span(),
                format!(
                    "tasks.{}.fields: name {name:?} must be lowercase letters, digits and '_', \
                     starting with a letter (it is a JSON key of the completion)",
                    kind.as_str()
                ),
            ));
        }
        if fields.iter().any(|g| &g.name == name) {
            return Err(src.at(
                f.name.span(),
                format!("tasks.{}.fields: {name:?} is defined twice", kind.as_str()),
            ));
        }
        if f.label.get_ref().trim().is_empty() {
            return Err(src.at(
                f.label.span(),
                format!("tasks.{}.fields: {name:?} needs a label", kind.as_str()),
            ));
        }
        let mut choices: Vec<String> = Vec::new();
        for c in &f.choices {
            if c.get_ref().is_empty() || choices.contains(c.get_ref()) {
                return Err(src.at(
                    c.span(),
                    format!(
                        "tasks.{}.fields: choices of {name:?} must be non-empty and distinct",
                        kind.as_str()
                    ),
                ));
            }
            choices.push(c.get_ref().clone());
        }
        fields.push(CompletionField {
            name: name.clone(),
            label: f.label.get_ref().trim().to_owned(),
            required: f.required,
            choices,
        });
    }
    Ok(TaskText {
        kind,
        title,
        steps,
        fields,
    })
}

fn shape_error(src: &Source<'_>, name: &str, span: Range<usize>) -> ProfileError {
    src.at(
        span,
        format!(
            "{name}: a step is a template string or {{ per_change = \"template\" }} (one step \
             per changed field, with `change` = {{field, from, to}})"
        ),
    )
}

/// A template error placed in the file: the template's own line counted from where the
/// string starts (exact for one-line templates and for multi-line strings).
fn template_error(
    src: &Source<'_>,
    name: &str,
    span: &Range<usize>,
    e: &minijinja::Error,
) -> ProfileError {
    let what = match e.detail() {
        Some(d) => format!("{}: {d}", e.kind()),
        None => e.kind().to_string(),
    };
    let hint = match e.kind() {
        minijinja::ErrorKind::UndefinedError => {
            " (variables: app, who, kind, target, base, changes, and change in per_change \
             steps; target is none in remove tasks and base is none in create_account tasks, \
             so guard them with `if`)"
        }
        _ => "",
    };
    ProfileError {
        line: Some(src.template_line(span, e.line().unwrap_or(1))),
        column: None,
        ..src.err(format!("{name}: {what}{hint}"))
    }
}

/// Renders every template against sample tasks of its kind, once with every optional
/// value present and once with none, so that misspelt variables, bad filters and titles
/// that come out empty are found now.
fn check_samples(
    src: &Source<'_>,
    profile: &Profile,
    spans: &HashMap<String, Range<usize>>,
) -> Result<(), ProfileError> {
    let privileged = profile.roles.first().unwrap_or(&profile.default_role);
    let full = Account {
        user_name: "sam.sample@example.com".into(),
        email: "sam.sample@example.com".into(),
        given_name: Some("Sam".into()),
        family_name: Some("Sample".into()),
        display_name: Some("Sam Sample".into()),
        department: Some("Sales".into()),
        role: profile.default_role.clone(),
        active: true,
    };
    let sparse = Account {
        user_name: "sample".into(),
        email: "sample".into(),
        given_name: None,
        family_name: None,
        display_name: None,
        department: None,
        role: profile.default_role.clone(),
        active: true,
    };
    for account in [full, sparse] {
        let moved = Account {
            email: format!("moved.{}", account.email),
            role: privileged.clone(),
            ..account.clone()
        };
        let off = Account {
            active: false,
            ..account.clone()
        };
        for kind in TaskKind::ALL {
            let (base, target) = match kind {
                TaskKind::CreateAccount => (None, Some(&account)),
                TaskKind::UpdateAttributes | TaskKind::ChangeRole => (Some(&account), Some(&moved)),
                TaskKind::Deactivate => (Some(&account), Some(&off)),
                TaskKind::Reactivate => (Some(&off), Some(&moved)),
                TaskKind::Remove | TaskKind::ReviewAccount => (Some(&account), None),
            };
            let changes = super::plan(target, base)
                .map(|p| p.changes)
                .unwrap_or_default();
            let plan = Plan {
                kind,
                base: base.cloned(),
                target: target.cloned(),
                changes,
            };
            check_plan(src, profile, spans, &plan)?;
        }
    }
    Ok(())
}

fn check_plan(
    src: &Source<'_>,
    profile: &Profile,
    spans: &HashMap<String, Range<usize>>,
    plan: &Plan,
) -> Result<(), ProfileError> {
    let fail = |name: &str, e: &minijinja::Error| {
        let span = spans.get(name).cloned().unwrap_or(0..0);
        template_error(src, name, &span, e)
    };
    let ctx = Context::new(profile, plan);
    let title_name = template_name(plan.kind, None);
    let title = profile
        .render_one(&title_name, &ctx)
        .map_err(|e| fail(&title_name, &e))?;
    if title.is_empty() {
        let span = spans.get(&title_name).cloned().unwrap_or(0..0);
        return Err(src.at(span, format!("{title_name} renders to an empty title")));
    }
    let Some(task) = profile.task(plan.kind) else {
        return Ok(());
    };
    for (i, step) in task.steps.iter().enumerate() {
        let name = template_name(plan.kind, Some(i));
        let samples: Vec<Context<'_>> = if step.per_change {
            plan.changes
                .iter()
                .map(|c| Context {
                    change: Some(c),
                    ..ctx.clone()
                })
                .collect()
        } else {
            vec![ctx.clone()]
        };
        for sample in &samples {
            profile
                .render_one(&name, sample)
                .map_err(|e| fail(&name, &e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
