//! SCIM filters (RFC 7644 §3.4.2.2) as SQL. Every attribute path is resolved against the
//! published schema first, so an unknown attribute is a 400 invalidFilter rather than a
//! silent empty result; values are always bound parameters.
//!
//! What the IdPs send maps onto indexed expressions: `userName eq` on
//! `lower(user_name)`, `externalId eq`, `id eq`, group `displayName eq` on
//! `lower(display_name)`, and `emails[type eq "work"].value eq` / `emails eq` on the GIN
//! index over the lower-cased `emails` column. Everything else is evaluated on the JSON
//! document within the app's rows.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{Postgres, QueryBuilder};
use uuid::Uuid;

use crate::scim::filter::{AttrPath, CompareOp, Filter};
use crate::scim::list::{Paging, Sort};
use crate::scim::schema::{
    AttrType, Attribute, ResourceSchema, GROUP_RESOURCE, PROVISIONING_SCHEMA, USER_RESOURCE,
};
use crate::scim::{ScimError, ScimType};

/// Which table a filter runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// `scim_user u`
    User,
    /// `scim_group g`
    Group,
}

impl Resource {
    fn alias(self) -> &'static str {
        match self {
            Resource::User => "u",
            Resource::Group => "g",
        }
    }

    fn schema(self) -> &'static ResourceSchema {
        match self {
            Resource::User => &USER_RESOURCE,
            Resource::Group => &GROUP_RESOURCE,
        }
    }
}

type Qb<'a> = QueryBuilder<'a, Postgres>;

fn invalid(detail: impl Into<String>) -> ScimError {
    ScimError::bad_request(ScimType::InvalidFilter, detail)
}

/// Appends `where <app scope> [and (<filter>)]`.
pub fn push_where(
    qb: &mut Qb<'_>,
    app_id: &str,
    filter: Option<&Filter>,
    res: Resource,
) -> Result<(), ScimError> {
    let a = res.alias();
    qb.push(format!(" where {a}.app_id = "))
        .push_bind(app_id.to_owned())
        .push(format!(" and {a}.deleted_at is null"));
    if let Some(f) = filter {
        qb.push(" and (");
        push_filter(qb, f, res)?;
        qb.push(")");
    }
    Ok(())
}

fn push_filter(qb: &mut Qb<'_>, f: &Filter, res: Resource) -> Result<(), ScimError> {
    match f {
        Filter::And(l, r) | Filter::Or(l, r) => {
            let op = if matches!(f, Filter::And(..)) {
                " and "
            } else {
                " or "
            };
            qb.push("(");
            push_filter(qb, l, res)?;
            qb.push(op);
            push_filter(qb, r, res)?;
            qb.push(")");
        }
        Filter::Not(inner) => {
            qb.push("not coalesce((");
            push_filter(qb, inner, res)?;
            qb.push("), false)");
        }
        Filter::Present(path) => push_attr(qb, path, None, res)?,
        Filter::Compare { path, op, value } => push_attr(qb, path, Some((*op, value)), res)?,
        Filter::ValuePath { path, filter } => push_value_path(qb, path, filter, res)?,
    }
    Ok(())
}

/// A resolved attribute: its definition and where its value lives.
struct Target {
    attr: &'static Attribute,
    sub: Option<&'static Attribute>,
    /// SQL of the JSON object holding the attribute (`u.doc` or `u.doc->'urn:…'`).
    container: String,
}

fn resolve(path: &AttrPath, res: Resource) -> Result<Target, ScimError> {
    let r = res
        .schema()
        .resolve(path.schema.as_deref(), &path.attr, path.sub_attr.as_deref())
        .ok_or_else(|| {
            invalid(format!(
                "unknown attribute {:?} in filter",
                display_path(path)
            ))
        })?;
    let a = res.alias();
    let container = if r.schema.is_empty() || r.schema == res.schema().core.id {
        format!("{a}.doc")
    } else {
        format!("{a}.doc->'{}'", r.schema)
    };
    Ok(Target {
        attr: r.attr,
        sub: r.sub,
        container,
    })
}

fn display_path(p: &AttrPath) -> String {
    let mut s = String::new();
    if let Some(urn) = &p.schema {
        s.push_str(urn);
        s.push(':');
    }
    s.push_str(&p.attr);
    if let Some(sub) = &p.sub_attr {
        s.push('.');
        s.push_str(sub);
    }
    s
}

/// `pr` when `cmp` is None, a comparison otherwise.
fn push_attr(
    qb: &mut Qb<'_>,
    path: &AttrPath,
    cmp: Option<(CompareOp, &Value)>,
    res: Resource,
) -> Result<(), ScimError> {
    if path.schema.is_none() && path.attr.eq_ignore_ascii_case("schemas") && path.sub_attr.is_none()
    {
        let a = res.alias();
        let expr = format!(
            "(select string_agg(s, ' ') from jsonb_array_elements_text({a}.doc->'schemas') s)"
        );
        return push_text(qb, &expr, false, cmp);
    }
    let t = resolve(path, res)?;
    let a = res.alias();
    let name = t.attr.name;
    let sub = t.sub.map(|s| s.name);
    // The provisioning extension is computed from tasks, not stored in the document.
    if res == Resource::User
        && path
            .schema
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case(PROVISIONING_SCHEMA))
    {
        return match name {
            "state" => push_text(qb, &format!("({})", super::users::STATE), true, cmp),
            "needsAttention" => push_bool(qb, "u.needs_attention", cmp),
            "drift" => match cmp {
                None => {
                    qb.push("u.observed_snapshot is not null");
                    Ok(())
                }
                Some(_) => push_bool(qb, "u.drift", cmp),
            },
            "lastVerified" => match cmp {
                None => {
                    qb.push("u.verified_at is not null");
                    Ok(())
                }
                Some(_) => push_time(qb, "u.verified_at", cmp),
            },
            "lastConfirmed" => match cmp {
                None => {
                    qb.push("u.confirmed_at is not null");
                    Ok(())
                }
                Some(_) => push_time(qb, "u.confirmed_at", cmp),
            },
            _ => push_text(qb, "u.open_task_id::text", false, cmp),
        };
    }
    // Columns that mirror the document, indexed for the IdPs' lookups.
    match (res, name, sub) {
        (_, "id", None) => return push_uuid(qb, &format!("{a}.{}", id_column(res)), cmp),
        (Resource::User, "userName", None) => return push_text(qb, "u.user_name", true, cmp),
        (Resource::Group, "displayName", None) => {
            return push_text(qb, "g.display_name", true, cmp)
        }
        (_, "externalId", None) => return push_text(qb, &format!("{a}.external_id"), false, cmp),
        (Resource::User, "active", None) => return push_bool(qb, "u.active", cmp),
        (_, "meta", Some("created")) => return push_time(qb, &format!("{a}.created_at"), cmp),
        (_, "meta", Some("lastModified")) => return push_time(qb, &format!("{a}.updated_at"), cmp),
        (_, "meta", _) => {
            return Err(invalid(format!(
                "filtering on meta.{} is not supported",
                sub.unwrap_or("")
            )))
        }
        (Resource::User, "emails", None | Some("value")) => {
            if let Some((CompareOp::Eq, Value::String(s))) = cmp {
                qb.push("u.emails @> array[")
                    .push_bind(s.to_lowercase())
                    .push("]::text[]");
                return Ok(());
            }
        }
        (Resource::Group, "members", _) => return push_members(qb, sub, cmp, None),
        _ => {}
    }
    if t.attr.multi_valued {
        qb.push(format!(
            "exists (select 1 from jsonb_array_elements({}) as e(v) where ",
            array_of(&t.container, name)
        ));
        push_leaf(qb, "e.v", t.attr, t.sub, cmp)?;
        qb.push(")");
        return Ok(());
    }
    push_leaf(
        qb,
        &format!("{}->'{name}'", t.container),
        t.attr,
        t.sub,
        cmp,
    )
}

fn id_column(res: Resource) -> &'static str {
    match res {
        Resource::User => "user_id",
        Resource::Group => "group_id",
    }
}

/// The JSON array at `container->name`, or `[]` when it is absent or not an array.
fn array_of(container: &str, name: &str) -> String {
    format!("case when jsonb_typeof({container}->'{name}') = 'array' then {container}->'{name}' else '[]'::jsonb end")
}

/// Compares one JSON value (`json` is SQL yielding jsonb) of `attr` (or its `sub`).
fn push_leaf(
    qb: &mut Qb<'_>,
    json: &str,
    attr: &'static Attribute,
    sub: Option<&'static Attribute>,
    cmp: Option<(CompareOp, &Value)>,
) -> Result<(), ScimError> {
    let (json, leaf) = match (attr.kind, sub) {
        (AttrType::Complex, Some(s)) => (format!("{json}->'{}'", s.name), s),
        (AttrType::Complex, None) if cmp.is_none() => {
            qb.push(format!(
                "({json} is not null and {json} <> 'null'::jsonb and {json} <> '{{}}'::jsonb)"
            ));
            return Ok(());
        }
        // `emails co "x"` means the `value` sub-attribute (RFC 7644 §3.4.2.2 examples).
        (AttrType::Complex, None) => match attr.sub_attributes.iter().find(|s| s.name == "value") {
            Some(v) => (format!("{json}->'value'"), v),
            None => {
                return Err(invalid(format!(
                    "{} is complex: name a sub-attribute",
                    attr.name
                )))
            }
        },
        _ => (json.to_string(), attr),
    };
    let text = format!("({json}#>>'{{}}')");
    match leaf.kind {
        AttrType::Boolean => push_bool(qb, &format!("({json})::text::boolean"), cmp),
        AttrType::Complex => Err(invalid(format!(
            "{} is complex: name a sub-attribute",
            leaf.name
        ))),
        _ => push_text(qb, &text, !leaf.case_exact, cmp),
    }
}

/// Text comparison; `ci` compares case-insensitively (caseExact=false, RFC 7643 §2.2).
fn push_text(
    qb: &mut Qb<'_>,
    expr: &str,
    ci: bool,
    cmp: Option<(CompareOp, &Value)>,
) -> Result<(), ScimError> {
    let Some((op, value)) = cmp else {
        qb.push(format!("({expr} is not null and {expr} <> '')"));
        return Ok(());
    };
    let s = match value {
        Value::String(s) => s.clone(),
        Value::Null => {
            return match op {
                CompareOp::Eq => {
                    qb.push(format!("{expr} is null"));
                    Ok(())
                }
                CompareOp::Ne => {
                    qb.push(format!("{expr} is not null"));
                    Ok(())
                }
                _ => Err(invalid("null can only be compared with eq or ne")),
            };
        }
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(_) | Value::Object(_) => {
            return Err(invalid(
                "filter values must be strings, numbers, booleans or null",
            ))
        }
    };
    let lhs = if ci {
        format!("lower({expr})")
    } else {
        expr.to_string()
    };
    let rhs = |qb: &mut Qb<'_>| {
        if ci {
            qb.push("lower(").push_bind(s.clone()).push(")");
        } else {
            qb.push_bind(s.clone());
        }
    };
    match op {
        CompareOp::Eq => {
            qb.push(format!("{lhs} = "));
            rhs(qb);
        }
        CompareOp::Ne => {
            qb.push(format!("({expr} is null or {lhs} <> "));
            rhs(qb);
            qb.push(")");
        }
        CompareOp::Co => {
            qb.push(format!("strpos({lhs}, "));
            rhs(qb);
            qb.push(") > 0");
        }
        CompareOp::Sw => {
            qb.push(format!("starts_with({lhs}, "));
            rhs(qb);
            qb.push(")");
        }
        CompareOp::Ew => {
            qb.push(format!("right({lhs}, char_length("));
            rhs(qb);
            qb.push(")) = ");
            rhs(qb);
        }
        CompareOp::Gt | CompareOp::Ge | CompareOp::Lt | CompareOp::Le => {
            qb.push(format!("{lhs} {} ", order_sql(op)));
            rhs(qb);
        }
    }
    Ok(())
}

fn order_sql(op: CompareOp) -> &'static str {
    match op {
        CompareOp::Gt => ">",
        CompareOp::Ge => ">=",
        CompareOp::Lt => "<",
        CompareOp::Le => "<=",
        CompareOp::Eq => "=",
        CompareOp::Ne => "<>",
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => "=",
    }
}

fn push_bool(
    qb: &mut Qb<'_>,
    expr: &str,
    cmp: Option<(CompareOp, &Value)>,
) -> Result<(), ScimError> {
    let Some((op, value)) = cmp else {
        qb.push(format!("{expr} is not null"));
        return Ok(());
    };
    let b = match value {
        Value::Bool(b) => *b,
        Value::String(s) if s.eq_ignore_ascii_case("true") => true,
        Value::String(s) if s.eq_ignore_ascii_case("false") => false,
        other => return Err(invalid(format!("{other} is not a boolean"))),
    };
    match op {
        CompareOp::Eq => qb.push(format!("{expr} = ")).push_bind(b),
        CompareOp::Ne => qb.push(format!("{expr} is distinct from ")).push_bind(b),
        _ => return Err(invalid("booleans can only be compared with eq or ne")),
    };
    Ok(())
}

fn push_uuid(
    qb: &mut Qb<'_>,
    col: &str,
    cmp: Option<(CompareOp, &Value)>,
) -> Result<(), ScimError> {
    match cmp {
        None => {
            qb.push("true");
        }
        Some((op @ (CompareOp::Eq | CompareOp::Ne), Value::String(s))) => {
            match Uuid::parse_str(s) {
                Ok(id) => {
                    qb.push(format!("{col} {} ", order_sql(op))).push_bind(id);
                }
                // No resource has an id that is not a UUID.
                Err(_) => {
                    qb.push(if op == CompareOp::Eq { "false" } else { "true" });
                }
            }
        }
        Some(_) => push_text(qb, &format!("{col}::text"), true, cmp)?,
    }
    Ok(())
}

fn push_time(
    qb: &mut Qb<'_>,
    col: &str,
    cmp: Option<(CompareOp, &Value)>,
) -> Result<(), ScimError> {
    let Some((op, value)) = cmp else {
        qb.push("true");
        return Ok(());
    };
    let t = value
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| invalid(format!("{value} is not an RFC 3339 dateTime")))?;
    if matches!(op, CompareOp::Co | CompareOp::Sw | CompareOp::Ew) {
        return Err(invalid(
            "dateTime values can only be compared with eq, ne, gt, ge, lt or le",
        ));
    }
    qb.push(format!("{col} {} ", order_sql(op))).push_bind(t);
    Ok(())
}

/// Group membership lives in rows: `members[.value] op x` and `members[...]` filters.
fn push_members(
    qb: &mut Qb<'_>,
    sub: Option<&str>,
    cmp: Option<(CompareOp, &Value)>,
    inner: Option<&Filter>,
) -> Result<(), ScimError> {
    qb.push(
        "exists (select 1 from group_member m join scim_user mu on mu.user_id = m.user_id \
         where m.group_id = g.group_id and mu.deleted_at is null and ",
    );
    match inner {
        Some(f) => push_member_filter(qb, f)?,
        None => push_member_leaf(qb, sub.unwrap_or("value"), cmp)?,
    }
    qb.push(")");
    Ok(())
}

fn push_member_leaf(
    qb: &mut Qb<'_>,
    sub: &str,
    cmp: Option<(CompareOp, &Value)>,
) -> Result<(), ScimError> {
    match sub {
        "value" => push_uuid(qb, "m.user_id", cmp),
        "display" => push_text(
            qb,
            "coalesce(mu.doc->>'displayName', mu.user_name)",
            true,
            cmp,
        ),
        "type" => push_text(qb, "'User'", true, cmp),
        other => Err(invalid(format!(
            "filtering on members.{other} is not supported"
        ))),
    }
}

fn push_member_filter(qb: &mut Qb<'_>, f: &Filter) -> Result<(), ScimError> {
    let sub_of = |p: &AttrPath| -> Result<&'static str, ScimError> {
        GROUP_RESOURCE
            .resolve(None, "members", Some(&p.attr))
            .and_then(|r| r.sub)
            .map(|s| s.name)
            .ok_or_else(|| invalid(format!("unknown attribute members.{}", p.attr)))
    };
    match f {
        Filter::And(l, r) | Filter::Or(l, r) => {
            qb.push("(");
            push_member_filter(qb, l)?;
            qb.push(if matches!(f, Filter::And(..)) {
                " and "
            } else {
                " or "
            });
            push_member_filter(qb, r)?;
            qb.push(")");
            Ok(())
        }
        Filter::Not(i) => {
            qb.push("not coalesce((");
            push_member_filter(qb, i)?;
            qb.push("), false)");
            Ok(())
        }
        Filter::Present(p) => push_member_leaf(qb, sub_of(p)?, None),
        Filter::Compare { path, op, value } => {
            push_member_leaf(qb, sub_of(path)?, Some((*op, value)))
        }
        Filter::ValuePath { .. } => Err(invalid("value paths cannot be nested")),
    }
}

/// `attr[filter]`: some element of a multi-valued attribute matches the inner filter.
fn push_value_path(
    qb: &mut Qb<'_>,
    path: &AttrPath,
    inner: &Filter,
    res: Resource,
) -> Result<(), ScimError> {
    let t = resolve(path, res)?;
    if !t.attr.multi_valued || t.attr.kind != AttrType::Complex || t.sub.is_some() {
        return Err(invalid(format!(
            "{} is not a multi-valued complex attribute",
            t.attr.name
        )));
    }
    if res == Resource::Group && t.attr.name == "members" {
        return push_members(qb, None, None, Some(inner));
    }
    // Entra's `emails[type eq "work"].value eq "x"`: narrow with the GIN index first.
    if res == Resource::User && t.attr.name == "emails" {
        for v in eq_values(inner, "value") {
            qb.push("u.emails @> array[")
                .push_bind(v.to_lowercase())
                .push("]::text[] and ");
        }
    }
    qb.push(format!(
        "exists (select 1 from jsonb_array_elements({}) as e(v) where ",
        array_of(&t.container, t.attr.name)
    ));
    push_element_filter(qb, inner, t.attr)?;
    qb.push(")");
    Ok(())
}

/// String values compared with `eq` to `sub` in the top-level `and` chain of `f`.
fn eq_values<'f>(f: &'f Filter, sub: &str) -> Vec<&'f str> {
    match f {
        Filter::And(l, r) => [eq_values(l, sub), eq_values(r, sub)].concat(),
        Filter::Compare {
            path,
            op: CompareOp::Eq,
            value: Value::String(s),
        } if path.attr.eq_ignore_ascii_case(sub)
            && path.sub_attr.is_none()
            && path.schema.is_none() =>
        {
            vec![s.as_str()]
        }
        _ => Vec::new(),
    }
}

fn push_element_filter(
    qb: &mut Qb<'_>,
    f: &Filter,
    parent: &'static Attribute,
) -> Result<(), ScimError> {
    let sub_of = |p: &AttrPath| -> Result<&'static Attribute, ScimError> {
        if p.sub_attr.is_some() {
            return Err(invalid(
                "sub-attributes inside a value filter cannot have sub-attributes",
            ));
        }
        parent
            .sub_attributes
            .iter()
            .find(|s| s.name.eq_ignore_ascii_case(&p.attr))
            .ok_or_else(|| invalid(format!("unknown attribute {}.{}", parent.name, p.attr)))
    };
    match f {
        Filter::And(l, r) | Filter::Or(l, r) => {
            qb.push("(");
            push_element_filter(qb, l, parent)?;
            qb.push(if matches!(f, Filter::And(..)) {
                " and "
            } else {
                " or "
            });
            push_element_filter(qb, r, parent)?;
            qb.push(")");
            Ok(())
        }
        Filter::Not(i) => {
            qb.push("not coalesce((");
            push_element_filter(qb, i, parent)?;
            qb.push("), false)");
            Ok(())
        }
        Filter::Present(p) => push_leaf(qb, "e.v", parent, Some(sub_of(p)?), None),
        Filter::Compare { path, op, value } => {
            push_leaf(qb, "e.v", parent, Some(sub_of(path)?), Some((*op, value)))
        }
        Filter::ValuePath { .. } => Err(invalid("value paths cannot be nested")),
    }
}

/// A list query against one resource table: filter, order and page window.
#[derive(Debug, Clone, Copy)]
pub struct ListQuery<'a> {
    /// `filter`.
    pub filter: Option<&'a Filter>,
    /// `sortBy` / `sortOrder`; creation order when None.
    pub sort: Option<&'a Sort>,
    /// Index or cursor paging.
    pub paging: &'a Paging,
}

/// A row of a list's select: read as a typed struct, with its creation-order position
/// (paging continues after it).
pub trait ListRow: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin {
    /// The row's `seq`.
    fn seq(&self) -> i64;
}

/// One page of rows and what the response needs around it.
pub struct PageOf<T> {
    /// Matching rows in the app, whatever the page.
    pub total: i64,
    /// The page.
    pub rows: Vec<T>,
    /// Cursor position after this page, when more rows follow (cursor paging only).
    pub next: Option<i64>,
}

/// Whether the filter is an equality on the name a unique index covers
/// (`scim_user_name_uq`, `scim_group_name_uq`: case-insensitive, live rows only).
fn unique_name_eq(f: &Filter, res: Resource) -> bool {
    let Filter::Compare {
        path,
        op: CompareOp::Eq,
        value: Value::String(_),
    } = f
    else {
        return false;
    };
    resolve(path, res).is_ok_and(|t| {
        t.sub.is_none()
            && matches!(
                (res, t.attr.name),
                (Resource::User, "userName") | (Resource::Group, "displayName")
            )
    })
}

/// Where startIndex walks of an app's unfiltered, unsorted list left off: the `seq` of
/// the last row served before a start index. Okta imports with `startIndex`/`count`,
/// page after page; OFFSET skips k rows to serve page k, so a whole walk reads O(N²)
/// index entries. When a request asks for exactly the position after a page this
/// process served, the page continues after that page's last row instead (keyset, O(1)
/// per page). RFC 7644 §3.4.2.4 promises no repeatable results across index pages; the
/// two differ only when users were deleted (or a create committed out of order) since
/// the previous page, and then the continuation is the one that neither skips nor
/// repeats a user. Bounded in size and age; per process, so a walk spread over replicas
/// falls back to OFFSET, which is always correct.
#[derive(Debug, Default)]
pub struct WalkHints {
    next: Mutex<HashMap<(String, i64), (i64, Instant)>>,
}

impl WalkHints {
    /// Hints older than this are ignored (a walk pauses between pages for seconds).
    const TTL: Duration = Duration::from_secs(600);
    /// Walks remembered at most; past it, expired hints go first, then all.
    const MAX: usize = 4096;

    fn take(&self, app_id: &str, start_index: i64) -> Option<i64> {
        let mut next = self.next.lock().ok()?;
        let (seq, at) = next.remove(&(app_id.to_owned(), start_index))?;
        (at.elapsed() < Self::TTL).then_some(seq)
    }

    fn put(&self, app_id: &str, start_index: i64, seq: i64) {
        let Ok(mut next) = self.next.lock() else {
            return;
        };
        if next.len() >= Self::MAX {
            next.retain(|_, (_, at)| at.elapsed() < Self::TTL);
            if next.len() >= Self::MAX {
                next.clear();
            }
        }
        next.insert((app_id.to_owned(), start_index), (seq, Instant::now()));
    }
}

/// Runs a list query: `select` must select from the resource table with its alias and
/// include `<alias>.seq`. Two round trips on one connection: the total, then the page
/// (never one per row; none for the page when nothing matches). One connection, because
/// sqlx pings a connection each time it is taken from and returned to the pool.
/// `walks` continues startIndex walks of unfiltered, unsorted lists (see [`WalkHints`]).
pub async fn list_page<T: ListRow>(
    pool: &sqlx::PgPool,
    res: Resource,
    select: &str,
    app_id: &str,
    q: ListQuery<'_>,
    walks: Option<&WalkHints>,
) -> crate::error::Result<PageOf<T>> {
    let a = res.alias();
    let table = match res {
        Resource::User => "scim_user u",
        Resource::Group => "scim_group g",
    };
    let mut conn = pool.acquire().await?;
    // `userName eq "…"` (and a group's `displayName eq`), the IdPs' lookup before every
    // create: at most one live row, found through the unique index on the lowered name
    // alone. No count and no creation-order paging are needed, and without an `order by`
    // the unique index is the only plan, statistics or not (issue #13: a fresh import
    // walked the creation-order index instead).
    if let (Some(f), None, Paging::Index(p)) = (q.filter, q.sort, q.paging) {
        if unique_name_eq(f, res) {
            let mut one: Qb<'_> = QueryBuilder::new(select);
            push_where(&mut one, app_id, Some(f), res)?;
            let rows = one.build_query_as::<T>().fetch_all(&mut *conn).await?;
            let total = rows.len() as i64;
            let rows = if p.count > 0 && p.start_index <= total {
                rows
            } else {
                Vec::new()
            };
            return Ok(PageOf {
                total,
                rows,
                next: None,
            });
        }
    }
    let total: i64 = match (res, q.filter) {
        // The unfiltered user list is Okta's import walk: counting N rows on each of its
        // N/100 pages made the walk O(N²). The app's counter is its compacted total plus
        // the deltas of the writes since (issue #13: no row every write locks), read in
        // one statement, so one snapshot: exact.
        (Resource::User, None) => {
            sqlx::query_scalar(
                "select coalesce((select live from app_user_count where app_id = $1), 0) \
                      + coalesce((select sum(delta) from app_user_count_delta where app_id = $1), 0)::bigint",
            )
            .bind(app_id)
            .fetch_one(&mut *conn)
            .await?
        }
        _ => {
            let mut count: Qb<'_> = QueryBuilder::new(format!("select count(*) from {table}"));
            push_where(&mut count, app_id, q.filter, res)?;
            count.build_query_scalar().fetch_one(&mut *conn).await?
        }
    };
    let order = match q.sort {
        Some(s) => format!(
            "{} {}, ",
            sort_expr(&s.path, res)?,
            if s.descending { "desc" } else { "asc" }
        ),
        None => String::new(),
    };
    let mut page: Qb<'_> = QueryBuilder::new(select);
    push_where(&mut page, app_id, q.filter, res)?;
    let (rows, next) = match *q.paging {
        Paging::Index(p) => {
            if p.count == 0 || total < p.start_index {
                return Ok(PageOf {
                    total,
                    rows: Vec::new(),
                    next: None,
                });
            }
            let walks = walks.filter(|_| q.filter.is_none() && q.sort.is_none());
            match walks.and_then(|w| w.take(app_id, p.start_index)) {
                Some(after) => {
                    page.push(format!(" and {a}.seq > "))
                        .push_bind(after)
                        .push(format!(" order by {a}.seq limit "))
                        .push_bind(p.count);
                }
                None => {
                    // OFFSET skips rows only after computing them, and the select list
                    // computes groups and provisioning state with subqueries per row:
                    // pick the page's rows first (index-only on the sort order), then
                    // compute only those. `= any(array(…))` runs the pick once, before
                    // the outer scan, which then probes `(app_id, seq)` for those rows;
                    // `in (…)` let the planner, without statistics after a bulk import,
                    // join the pick against a scan of the app's rows (issue #13).
                    page.push(format!(
                        " and {a}.seq = any(array(select {a}.seq from {table}"
                    ));
                    push_where(&mut page, app_id, q.filter, res)?;
                    page.push(format!(" order by {order}{a}.seq limit "))
                        .push_bind(p.count)
                        .push(" offset ")
                        .push_bind(p.offset())
                        .push(format!(")) order by {order}{a}.seq"));
                }
            }
            let rows = page.build_query_as::<T>().fetch_all(&mut *conn).await?;
            if let (Some(w), Some(last)) = (walks, rows.last()) {
                if rows.len() as i64 == p.count {
                    w.put(app_id, p.start_index + p.count, last.seq());
                }
            }
            (rows, None)
        }
        Paging::Cursor { after, count } => {
            if q.sort.is_some() {
                return Err(invalid_value(
                    "cursor paging walks creation order; sortBy cannot be combined with cursor",
                )
                .into());
            }
            if count == 0 {
                return Ok(PageOf {
                    total,
                    rows: Vec::new(),
                    next: after,
                });
            }
            if let Some(after) = after {
                page.push(format!(" and {a}.seq > ")).push_bind(after);
            }
            // One row more than asked tells whether another page follows.
            page.push(format!(" order by {a}.seq limit "))
                .push_bind(count + 1);
            let mut rows = page.build_query_as::<T>().fetch_all(&mut *conn).await?;
            let more = rows.len() as i64 > count;
            rows.truncate(count as usize);
            let next = if more {
                rows.last().map(ListRow::seq)
            } else {
                None
            };
            (rows, next)
        }
    };
    Ok(PageOf { total, rows, next })
}

fn invalid_value(detail: &str) -> ScimError {
    ScimError::bad_request(ScimType::InvalidValue, detail)
}

/// The SQL to order by for `sortBy` (RFC 7644 §3.4.2.3). Multi-valued attributes sort
/// by their primary (else first) value; string comparisons follow caseExact.
fn sort_expr(path: &AttrPath, res: Resource) -> Result<String, ScimError> {
    let t = resolve(path, res).map_err(|_| {
        invalid_value(&format!(
            "cannot sort by unknown attribute {:?}",
            display_path(path)
        ))
    })?;
    let a = res.alias();
    let sub = t.sub.map(|s| s.name);
    Ok(match (res, t.attr.name, sub) {
        (_, "id", None) => format!("{a}.{}", id_column(res)),
        (Resource::User, "userName", None) => "lower(u.user_name)".into(),
        (Resource::Group, "displayName", None) => "lower(g.display_name)".into(),
        (_, "externalId", None) => format!("{a}.external_id"),
        (Resource::User, "active", None) => "u.active".into(),
        (_, "meta", Some("created")) => format!("{a}.created_at"),
        (_, "meta", Some("lastModified")) => format!("{a}.updated_at"),
        (_, "meta", _) | (Resource::Group, "members", _) => {
            return Err(invalid_value(&format!(
                "cannot sort by {}",
                display_path(path)
            )))
        }
        _ => {
            let leaf = t.sub.unwrap_or(t.attr);
            let lower = |e: String| {
                if leaf.case_exact {
                    e
                } else {
                    format!("lower({e})")
                }
            };
            if t.attr.multi_valued {
                let field = match (t.attr.kind, t.sub) {
                    (AttrType::Complex, Some(s)) => format!("e.v->>'{}'", s.name),
                    (AttrType::Complex, None) => "e.v->>'value'".to_string(),
                    _ => "e.v#>>'{}'".to_string(),
                };
                format!(
                    "(select {} from jsonb_array_elements({}) with ordinality as e(v, i) \
                     order by (e.v->>'primary') = 'true' desc nulls last, e.i limit 1)",
                    lower(field),
                    array_of(&t.container, t.attr.name)
                )
            } else {
                match (t.attr.kind, t.sub) {
                    (AttrType::Complex, Some(s)) => {
                        lower(format!("{}->'{}'->>'{}'", t.container, t.attr.name, s.name))
                    }
                    (AttrType::Complex, None) => {
                        return Err(invalid_value(&format!(
                            "{} is complex: sort by a sub-attribute",
                            t.attr.name
                        )))
                    }
                    _ => lower(format!("{}->>'{}'", t.container, t.attr.name)),
                }
            }
        }
    })
}
