//! PATCH engine (RFC 7644 §3.5.2) over a resource's JSON document.
//!
//! Owns request validation ([`validate_request`]) and applying `add`
//! (§3.5.2.1), `remove` (§3.5.2.2) and `replace` (§3.5.2.3) operations to
//! the stored document: core attributes at the top level, extension
//! attributes under their URN key, no `id`/`meta` (the caller adds those).
//! Operations apply in order to a copy; the document is only updated when
//! all succeed (§3.5.2: "the entire request fails").
//!
//! Choices where the RFC is loose, driven by what Okta and Entra ID send:
//! - `op` is case-insensitive (Entra sends `Add`/`Replace`/`Remove`).
//! - Written keys use the schema's spelling; differently-cased duplicates
//!   of the same attribute are folded into it.
//! - In a path: unknown attributes → `invalidPath`, readOnly → `mutability`.
//!   In a path-less value object: unknown and readOnly keys are ignored
//!   (Okta renames groups with `{"id": …, "displayName": …}`), known keys
//!   are applied and type-checked. Keys there may be plain, dotted
//!   (`name.givenName`), URN-qualified, or an extension URN mapping to an
//!   object; `null` clears the attribute (RFC 7643 §2.5).
//! - `add` on a single-valued attribute replaces it; on a multi-valued one
//!   appends values not already present (elements with the same `value`
//!   and `type` — `value` alone for `members` — are merged, not
//!   duplicated); on a complex one merges sub-attributes.
//! - `replace` with a path merges sub-attributes of complex targets
//!   (§3.5.2.3: "sub-attributes that are not specified … are left
//!   unchanged") and replaces multi-valued attributes wholesale; path-less
//!   `replace` replaces each named attribute wholesale. The enterprise
//!   `manager` is always replaced wholesale (a stale `$ref` must not
//!   survive a new `value`), a bare string becomes `{"value": …}`, and a
//!   manager without a non-empty `value` is removed.
//! - A value filter matching nothing is `noTarget` for add/replace, but a
//!   no-op for `remove` (removal is idempotent: IdPs retry).
//! - `remove` on `members` with a `value` list removes only the listed
//!   members (Entra); removing a required attribute is `invalidValue`.
//! - "True"/"False" strings become booleans for boolean attributes; numbers
//!   become strings for string attributes; other mismatches `invalidValue`.
//! - After the operations: `null`, `[]` and `{}` values are dropped, at
//!   most one `primary: true` per multi-valued attribute (the last written
//!   wins, RFC 7643 §2.4), and `schemas` lists exactly the extensions
//!   present.

use serde_json::{Map, Value};

use super::filter::{self, AttrPath, Filter};
use super::path::{parse_path, PatchPath};
use super::schema::{
    AttrType, Attribute, Mutability, ResourceSchema, Schema, ENTERPRISE_USER,
    ENTERPRISE_USER_SCHEMA,
};

/// Message schema of a PATCH request body (RFC 7644 §3.5.2).
pub const PATCH_OP_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// A PATCH request body (RFC 7644 §3.5.2).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct PatchRequest {
    pub schemas: Vec<String>,
    #[serde(rename = "Operations")]
    pub operations: Vec<PatchOperation>,
}

/// One PATCH operation. `value: null` deserialises as `None`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct PatchOperation {
    pub op: String,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub value: Option<Value>,
}

/// Why a PATCH failed; each maps to a SCIM `scimType` (RFC 7644 §3.12).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    #[error("{0}")]
    InvalidSyntax(String),
    #[error("{0}")]
    InvalidPath(String),
    #[error("{0}")]
    NoTarget(String),
    #[error("{0}")]
    InvalidValue(String),
    #[error("{0}")]
    Mutability(String),
}

impl PatchError {
    /// The `scimType` for the error response (RFC 7644 §3.12, Table 9).
    pub fn scim_type(&self) -> &'static str {
        match self {
            PatchError::InvalidSyntax(_) => "invalidSyntax",
            PatchError::InvalidPath(_) => "invalidPath",
            PatchError::NoTarget(_) => "noTarget",
            PatchError::InvalidValue(_) => "invalidValue",
            PatchError::Mutability(_) => "mutability",
        }
    }

    /// Prefixes the detail with the failing operation's index.
    fn in_operation(self, i: usize) -> Self {
        let wrap = |m: String| format!("Operations[{i}]: {m}");
        match self {
            PatchError::InvalidSyntax(m) => PatchError::InvalidSyntax(wrap(m)),
            PatchError::InvalidPath(m) => PatchError::InvalidPath(wrap(m)),
            PatchError::NoTarget(m) => PatchError::NoTarget(wrap(m)),
            PatchError::InvalidValue(m) => PatchError::InvalidValue(wrap(m)),
            PatchError::Mutability(m) => PatchError::Mutability(wrap(m)),
        }
    }
}

/// The three PATCH operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Add,
    Replace,
    Remove,
}

impl OpKind {
    /// Parses `op`, case-insensitively.
    pub fn parse(op: &str) -> Option<Self> {
        let op = op.trim();
        if op.eq_ignore_ascii_case("add") {
            Some(OpKind::Add)
        } else if op.eq_ignore_ascii_case("replace") {
            Some(OpKind::Replace)
        } else if op.eq_ignore_ascii_case("remove") {
            Some(OpKind::Remove)
        } else {
            None
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            OpKind::Add => "add",
            OpKind::Replace => "replace",
            OpKind::Remove => "remove",
        }
    }
}

fn unsupported_op(op: &str) -> PatchError {
    let shown: String = op.chars().take(40).collect();
    PatchError::InvalidSyntax(format!(
        "unsupported op '{shown}': expected 'add', 'replace' or 'remove'"
    ))
}

/// Checks the envelope: the PatchOp schema, at least one operation, and
/// only known `op`s.
pub fn validate_request(req: &PatchRequest) -> Result<(), PatchError> {
    if !req
        .schemas
        .iter()
        .any(|s| s.trim().eq_ignore_ascii_case(PATCH_OP_SCHEMA))
    {
        return Err(PatchError::InvalidSyntax(format!(
            "request 'schemas' must contain \"{PATCH_OP_SCHEMA}\""
        )));
    }
    if req.operations.is_empty() {
        return Err(PatchError::InvalidSyntax(
            "request must contain at least one operation in 'Operations'".into(),
        ));
    }
    for (i, op) in req.operations.iter().enumerate() {
        if OpKind::parse(&op.op).is_none() {
            return Err(unsupported_op(&op.op).in_operation(i));
        }
    }
    Ok(())
}

/// Applies `ops` to `doc` all-or-nothing: on error `doc` is unchanged.
pub fn apply(
    doc: &mut Value,
    ops: &[PatchOperation],
    schema: &ResourceSchema,
) -> Result<(), PatchError> {
    let mut work = doc.clone();
    {
        let obj = work.as_object_mut().ok_or_else(|| {
            PatchError::InvalidSyntax("the resource document is not a JSON object".into())
        })?;
        for (i, op) in ops.iter().enumerate() {
            apply_op(obj, op, schema).map_err(|e| e.in_operation(i))?;
        }
        tidy(obj, schema);
    }
    *doc = work;
    Ok(())
}

fn apply_op(
    obj: &mut Map<String, Value>,
    op: &PatchOperation,
    rs: &ResourceSchema,
) -> Result<(), PatchError> {
    let kind = OpKind::parse(&op.op).ok_or_else(|| unsupported_op(&op.op))?;
    let path = op.path.as_deref().map(str::trim).filter(|p| !p.is_empty());
    if kind == OpKind::Remove {
        let Some(path) = path else {
            return Err(PatchError::NoTarget("'remove' requires a 'path'".into()));
        };
        return remove_path(obj, path, op.value.as_ref(), rs);
    }
    let Some(value) = op.value.clone() else {
        return Err(PatchError::InvalidValue(format!(
            "'{}' requires a non-null 'value'",
            kind.as_str()
        )));
    };
    match path {
        Some(path) => write_path(obj, kind, path, value, rs),
        None => match value {
            Value::Object(map) => write_object(obj, kind, None, map, rs),
            other => Err(PatchError::InvalidValue(format!(
                "'{}' without a 'path' requires an object 'value', got {}",
                kind.as_str(),
                type_name(&other)
            ))),
        },
    }
}

// ---------------------------------------------------------------------------
// Targets
// ---------------------------------------------------------------------------

/// A PATCH path resolved against the resource schema.
struct Target {
    /// Extension schema id when the attribute lives under `doc[urn]`.
    ext: Option<&'static str>,
    attr: &'static Attribute,
    sub: Option<&'static Attribute>,
    filter: Option<Filter>,
    /// Canonical path of `attr`, the parent for value-filter evaluation.
    parent: AttrPath,
}

impl Target {
    /// Canonical dotted name for messages, e.g. `name.givenName`.
    fn what(&self) -> String {
        match self.sub {
            Some(s) => format!("{}.{}", self.attr.name, s.name),
            None => self.attr.name.to_string(),
        }
    }
}

/// Resolves a parsed path; `default_schema` applies to unqualified names
/// (keys inside an extension object).
fn resolve_target(
    pp: &PatchPath,
    default_schema: Option<&str>,
    rs: &ResourceSchema,
) -> Result<Target, PatchError> {
    let schema_urn = pp.attr.schema.as_deref().or(default_schema);
    if let Some(urn) = schema_urn {
        if !rs.is_core(urn) && rs.extension(urn).is_none() {
            return Err(PatchError::InvalidPath(format!(
                "unknown schema '{urn}' in path '{pp}'"
            )));
        }
    }
    let r = rs
        .resolve(schema_urn, &pp.attr.attr, pp.target_sub_attr())
        .ok_or_else(|| PatchError::InvalidPath(format!("unknown attribute in path '{pp}'")))?;
    if pp.value_filter.is_some() && !r.attr.multi_valued {
        return Err(PatchError::InvalidPath(format!(
            "a value filter needs a multi-valued attribute, but '{}' is single-valued",
            r.attr.name
        )));
    }
    let ext = r.is_extension(rs).then_some(r.schema);
    Ok(Target {
        ext,
        attr: r.attr,
        sub: r.sub,
        filter: pp.value_filter.clone(),
        parent: AttrPath {
            schema: ext.map(str::to_string),
            attr: r.attr.name.to_string(),
            sub_attr: None,
        },
    })
}

/// `members.display` is readOnly in the schema but IdPs send it; we keep
/// it as a cached member name.
fn readonly_sub_accepted(attr: &Attribute, sub: &Attribute) -> bool {
    attr.name == "members" && sub.name == "display"
}

fn is_read_only(attr: &Attribute, sub: Option<&Attribute>) -> bool {
    attr.mutability == Mutability::ReadOnly
        || sub.is_some_and(|s| {
            s.mutability == Mutability::ReadOnly && !readonly_sub_accepted(attr, s)
        })
}

fn check_writable(t: &Target) -> Result<(), PatchError> {
    if is_read_only(t.attr, t.sub) {
        return Err(PatchError::Mutability(format!(
            "attribute '{}' is readOnly",
            t.what()
        )));
    }
    Ok(())
}

/// The enterprise `manager` gets special treatment (bare-string values,
/// wholesale replacement).
fn is_manager(attr: &Attribute) -> bool {
    ENTERPRISE_USER
        .attr("manager")
        .is_some_and(|m| std::ptr::eq(m, attr))
}

// ---------------------------------------------------------------------------
// Document helpers
// ---------------------------------------------------------------------------

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Folds differently-cased spellings of `key` into `key` (the schema's
/// spelling). When both exist, the canonical one wins.
fn canonicalize_key(map: &mut Map<String, Value>, key: &str) {
    let variants: Vec<String> = map
        .keys()
        .filter(|k| k.as_str() != key && k.eq_ignore_ascii_case(key))
        .cloned()
        .collect();
    for v in variants {
        if let Some(val) = map.remove(&v) {
            if !map.contains_key(key) {
                map.insert(key.to_string(), val);
            }
        }
    }
}

/// Removes `key` in any spelling.
fn remove_ci(map: &mut Map<String, Value>, key: &str) {
    map.retain(|k, _| !k.eq_ignore_ascii_case(key));
}

/// The object holding `ext`'s attributes (or the top level), optionally
/// created.
fn container<'a>(
    obj: &'a mut Map<String, Value>,
    ext: Option<&str>,
    create: bool,
) -> Option<&'a mut Map<String, Value>> {
    let Some(urn) = ext else {
        return Some(obj);
    };
    canonicalize_key(obj, urn);
    if create && !obj.get(urn).is_some_and(Value::is_object) {
        obj.insert(urn.to_string(), Value::Object(Map::new()));
    }
    obj.get_mut(urn)?.as_object_mut()
}

/// `map[key]` as an object, created (or overwritten if not an object).
fn object_entry<'a>(
    map: &'a mut Map<String, Value>,
    key: &str,
) -> Result<&'a mut Map<String, Value>, PatchError> {
    let entry = map
        .entry(key.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    // Always an object by now; the error only avoids a panic path.
    entry
        .as_object_mut()
        .ok_or_else(|| PatchError::InvalidValue(format!("'{key}' is not an object")))
}

/// `map[key]` as an array, created (a lone stored value is wrapped).
fn array_entry<'a>(
    map: &'a mut Map<String, Value>,
    key: &str,
) -> Result<&'a mut Vec<Value>, PatchError> {
    let entry = map
        .entry(key.to_string())
        .or_insert_with(|| Value::Array(Vec::new()));
    if !entry.is_array() {
        let old = entry.take();
        *entry = Value::Array(if old.is_null() { Vec::new() } else { vec![old] });
    }
    entry
        .as_array_mut()
        .ok_or_else(|| PatchError::InvalidValue(format!("'{key}' is not an array")))
}

fn str_eq(a: &str, b: &str, case_exact: bool) -> bool {
    if case_exact {
        a == b
    } else {
        a.to_lowercase() == b.to_lowercase()
    }
}

fn scalar_eq(a: &Value, b: &Value, case_exact: bool) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) => str_eq(x, y, case_exact),
        _ => a == b,
    }
}

/// Whether two elements of `attr` are "the same value" for de-duplication:
/// same `value` and same `type` (absent equals absent); `members` by
/// `value` alone. Elements without `value` must be equal as JSON.
fn same_element(attr: &Attribute, a: &Value, b: &Value) -> bool {
    if !(a.is_object() && b.is_object()) {
        return scalar_eq(a, b, attr.case_exact);
    }
    let ce = attr.sub("value").is_some_and(|s| s.case_exact);
    match (filter::get_ci(a, "value"), filter::get_ci(b, "value")) {
        (Some(va), Some(vb)) => {
            if !scalar_eq(va, vb, ce) {
                return false;
            }
            if attr.name == "members" {
                return true;
            }
            match (filter::get_ci(a, "type"), filter::get_ci(b, "type")) {
                (None, None) => true,
                (Some(ta), Some(tb)) => scalar_eq(ta, tb, false),
                _ => false,
            }
        }
        _ => a == b,
    }
}

/// Whether `existing` is selected by an element of a `remove` value list:
/// by `value`, and by `type` only when the probe gives one.
fn probe_matches(attr: &Attribute, existing: &Value, probe: &Value) -> bool {
    if !(existing.is_object() && probe.is_object()) {
        return scalar_eq(existing, probe, attr.case_exact);
    }
    let ce = attr.sub("value").is_some_and(|s| s.case_exact);
    match (
        filter::get_ci(existing, "value"),
        filter::get_ci(probe, "value"),
    ) {
        (Some(ve), Some(vp)) => {
            scalar_eq(ve, vp, ce)
                && (attr.name == "members"
                    || match filter::get_ci(probe, "type") {
                        None | Some(Value::Null) => true,
                        Some(tp) => filter::get_ci(existing, "type")
                            .is_some_and(|te| scalar_eq(te, tp, false)),
                    })
        }
        _ => existing == probe,
    }
}

// ---------------------------------------------------------------------------
// Value coercion
// ---------------------------------------------------------------------------

/// Checks/coerces a value for a simple attribute.
fn coerce_simple(attr: &Attribute, v: Value, what: &str) -> Result<Value, PatchError> {
    let bad = |v: &Value| {
        PatchError::InvalidValue(format!(
            "invalid value for '{what}': expected {}, got {}",
            attr.kind.as_str(),
            type_name(v)
        ))
    };
    match attr.kind {
        AttrType::String | AttrType::Reference | AttrType::DateTime | AttrType::Binary => match v {
            Value::String(_) => Ok(v),
            Value::Number(n) => Ok(Value::String(n.to_string())),
            other => Err(bad(&other)),
        },
        AttrType::Boolean => match &v {
            Value::Bool(_) => Ok(v),
            Value::String(s) if s.trim().eq_ignore_ascii_case("true") => Ok(Value::Bool(true)),
            Value::String(s) if s.trim().eq_ignore_ascii_case("false") => Ok(Value::Bool(false)),
            _ => Err(PatchError::InvalidValue(format!(
                "invalid value for '{what}': expected a boolean (true/false), got {}",
                short(&v)
            ))),
        },
        AttrType::Integer => match &v {
            Value::Number(n) if n.is_i64() || n.is_u64() => Ok(v),
            Value::String(s) => s
                .trim()
                .parse::<i64>()
                .map(Value::from)
                .map_err(|_| bad(&v)),
            _ => Err(bad(&v)),
        },
        AttrType::Decimal => match &v {
            Value::Number(_) => Ok(v),
            Value::String(s) => s
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .ok_or_else(|| bad(&v)),
            _ => Err(bad(&v)),
        },
        AttrType::Complex => Err(bad(&v)),
    }
}

/// A value for messages: strings quoted and cut short, else the type.
fn short(v: &Value) -> String {
    match v {
        Value::String(s) => format!("\"{}\"", s.chars().take(40).collect::<String>()),
        other => type_name(other).to_string(),
    }
}

/// Sub-attributes of a complex value under canonical names. Unknown and
/// readOnly sub-attributes are dropped (lenient, like path-less keys);
/// `null`s are kept to mean "clear" when merging. A bare string for
/// `manager` is its `value` (Entra).
fn coerce_complex(
    attr: &'static Attribute,
    v: Value,
    what: &str,
) -> Result<Map<String, Value>, PatchError> {
    let obj = match v {
        Value::Object(m) => m,
        Value::String(s) if is_manager(attr) => {
            let mut m = Map::new();
            m.insert("value".into(), Value::String(s));
            m
        }
        other => {
            return Err(PatchError::InvalidValue(format!(
                "invalid value for '{what}': expected an object, got {}",
                type_name(&other)
            )))
        }
    };
    let mut out = Map::new();
    for (k, val) in obj {
        let Some(sub) = attr.sub(&k) else {
            continue;
        };
        if sub.mutability == Mutability::ReadOnly && !readonly_sub_accepted(attr, sub) {
            continue;
        }
        let val = if val.is_null() {
            Value::Null
        } else {
            coerce_simple(sub, val, &format!("{what}.{}", sub.name))?
        };
        out.insert(sub.name.to_string(), val);
    }
    Ok(out)
}

/// Elements for a multi-valued attribute; a lone value is one element.
/// Null and empty elements are skipped.
fn coerce_elements(
    attr: &'static Attribute,
    v: Value,
    what: &str,
) -> Result<Vec<Value>, PatchError> {
    let items = match v {
        Value::Array(items) => items,
        other => vec![other],
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        if item.is_null() {
            continue;
        }
        if attr.kind == AttrType::Complex {
            let mut m = coerce_complex(attr, item, what)?;
            m.retain(|_, v| !v.is_null());
            if !m.is_empty() {
                out.push(Value::Object(m));
            }
        } else {
            out.push(coerce_simple(attr, item, what)?);
        }
    }
    Ok(out)
}

/// Fails when an immutable (sub-)attribute already has a different value.
fn check_immutable(
    def: &Attribute,
    existing: Option<&Value>,
    new: &Value,
    what: &str,
) -> Result<(), PatchError> {
    if def.mutability == Mutability::Immutable {
        if let Some(old) = existing.filter(|o| !o.is_null()) {
            if !scalar_eq(old, new, def.case_exact) {
                return Err(PatchError::Mutability(format!(
                    "attribute '{what}' is immutable"
                )));
            }
        }
    }
    Ok(())
}

/// Merges coerced sub-attributes into an element (null clears).
fn merge_into(
    attr: &Attribute,
    target: &mut Map<String, Value>,
    subs: &Map<String, Value>,
    what: &str,
) -> Result<(), PatchError> {
    for (k, v) in subs {
        canonicalize_key(target, k);
        if v.is_null() {
            target.remove(k);
            continue;
        }
        if let Some(def) = attr.sub(k) {
            check_immutable(def, target.get(k), v, &format!("{what}.{k}"))?;
        }
        target.insert(k.clone(), v.clone());
    }
    Ok(())
}

/// Keeps at most one `primary: true` (RFC 7643 §2.4): the last written.
fn enforce_primary(attr: &Attribute, arr: &mut [Value], written: &[usize]) {
    if attr.sub("primary").is_none() {
        return;
    }
    let is_primary = |v: &Value| filter::get_ci(v, "primary") == Some(&Value::Bool(true));
    let Some(&winner) = written
        .iter()
        .rev()
        .find(|&&i| arr.get(i).is_some_and(is_primary))
    else {
        return;
    };
    for (i, e) in arr.iter_mut().enumerate() {
        if i != winner && is_primary(e) {
            if let Some(o) = e.as_object_mut() {
                canonicalize_key(o, "primary");
                o.insert("primary".into(), Value::Bool(false));
            }
        }
    }
}

// ---------------------------------------------------------------------------
// add / replace
// ---------------------------------------------------------------------------

/// add/replace with a `path`.
fn write_path(
    obj: &mut Map<String, Value>,
    kind: OpKind,
    path: &str,
    value: Value,
    rs: &ResourceSchema,
) -> Result<(), PatchError> {
    // The path is a whole extension: its value is an object of attributes.
    if let Some(ext) = rs.extension(path) {
        return match value {
            Value::Object(map) => write_object(obj, kind, Some(ext), map, rs),
            other => Err(PatchError::InvalidValue(format!(
                "the value for extension '{}' must be an object, got {}",
                ext.id,
                type_name(&other)
            ))),
        };
    }
    let pp = parse_path(path)
        .map_err(|e| PatchError::InvalidPath(format!("invalid path '{}': {e}", clip(path))))?;
    let t = resolve_target(&pp, None, rs)?;
    check_writable(&t)?;
    // With a path, complex values merge (RFC 7644 §3.5.2.3: sub-attributes
    // not specified are left unchanged), for add and replace alike.
    write_target(obj, kind, &t, value, true, rs)
}

fn clip(s: &str) -> String {
    s.chars().take(200).collect()
}

/// Path-less add/replace: each key of `map` is an attribute path relative
/// to the resource (or to `ext` for an extension object). Unknown and
/// readOnly keys are ignored.
fn write_object(
    obj: &mut Map<String, Value>,
    kind: OpKind,
    ext: Option<&'static Schema>,
    map: Map<String, Value>,
    rs: &ResourceSchema,
) -> Result<(), PatchError> {
    for (key, v) in map {
        if ext.is_none() {
            if key.eq_ignore_ascii_case("schemas") {
                // We keep `schemas` consistent ourselves (see `tidy`).
                continue;
            }
            if rs.is_core(&key) {
                // Core attributes wrapped under the core URN: same as top level.
                if let Value::Object(m) = v {
                    write_object(obj, kind, None, m, rs)?;
                }
                continue;
            }
            if let Some(e) = rs.extension(&key) {
                match v {
                    Value::Object(m) => write_object(obj, kind, Some(e), m, rs)?,
                    Value::Null => {
                        canonicalize_key(obj, e.id);
                        obj.remove(e.id);
                    }
                    other => {
                        return Err(PatchError::InvalidValue(format!(
                            "the value for extension '{}' must be an object, got {}",
                            e.id,
                            type_name(&other)
                        )))
                    }
                }
                continue;
            }
        }
        let Ok(pp) = parse_path(&key) else {
            continue;
        };
        let Ok(t) = resolve_target(&pp, ext.map(|e| e.id), rs) else {
            continue;
        };
        if check_writable(&t).is_err() {
            continue;
        }
        if v.is_null() {
            // RFC 7643 §2.5: null means unassigned.
            remove_target(obj, &t, None, rs)?;
            continue;
        }
        write_target(obj, kind, &t, v, kind == OpKind::Add, rs)?;
    }
    Ok(())
}

/// Writes `value` at a resolved target. `merge_complex`: merge into an
/// existing complex value rather than replacing it.
fn write_target(
    obj: &mut Map<String, Value>,
    kind: OpKind,
    t: &Target,
    value: Value,
    merge_complex: bool,
    rs: &ResourceSchema,
) -> Result<(), PatchError> {
    let what = t.what();
    let Some(c) = container(obj, t.ext, true) else {
        return Err(PatchError::InvalidValue(format!(
            "cannot write '{what}': its extension is not an object"
        )));
    };
    canonicalize_key(c, t.attr.name);
    if let Some(f) = &t.filter {
        return write_filtered(c, t, f, value, rs);
    }
    if let Some(sub) = t.sub {
        return write_sub(c, t.attr, sub, value, &what);
    }
    write_attr(
        c,
        t.attr,
        kind,
        value,
        merge_complex && !is_manager(t.attr),
        &what,
    )
}

/// Writes a whole attribute.
fn write_attr(
    c: &mut Map<String, Value>,
    attr: &'static Attribute,
    kind: OpKind,
    value: Value,
    merge_complex: bool,
    what: &str,
) -> Result<(), PatchError> {
    if attr.multi_valued {
        let new = coerce_elements(attr, value, what)?;
        let arr = array_entry(c, attr.name)?;
        let mut written = Vec::with_capacity(new.len());
        if kind == OpKind::Replace {
            *arr = Vec::with_capacity(new.len());
        }
        for n in new {
            match arr.iter().position(|e| same_element(attr, e, &n)) {
                Some(i) => {
                    if let (Some(existing), Value::Object(subs)) = (arr[i].as_object_mut(), &n) {
                        // Re-adding a known element updates it; immutable
                        // sub-attributes it already has are kept.
                        for (k, v) in subs {
                            canonicalize_key(existing, k);
                            let immutable = attr
                                .sub(k)
                                .is_some_and(|d| d.mutability == Mutability::Immutable);
                            if !(immutable && existing.contains_key(k)) {
                                existing.insert(k.clone(), v.clone());
                            }
                        }
                    } else {
                        arr[i] = n;
                    }
                    written.push(i);
                }
                None => {
                    arr.push(n);
                    written.push(arr.len() - 1);
                }
            }
        }
        enforce_primary(attr, arr, &written);
        return Ok(());
    }
    if value.is_array() {
        return Err(PatchError::InvalidValue(format!(
            "'{what}' is single-valued; an array is not allowed"
        )));
    }
    if attr.kind == AttrType::Complex {
        let subs = coerce_complex(attr, value, what)?;
        let target = object_entry(c, attr.name)?;
        if !merge_complex {
            target.clear();
        }
        return merge_into(attr, target, &subs, what);
    }
    let v = coerce_simple(attr, value, what)?;
    if attr.required && v.as_str().is_some_and(|s| s.trim().is_empty()) {
        return Err(PatchError::InvalidValue(format!(
            "'{what}' is required and cannot be empty"
        )));
    }
    check_immutable(attr, c.get(attr.name), &v, what)?;
    c.insert(attr.name.to_string(), v);
    Ok(())
}

/// Writes `attr.sub` (no filter): into the single complex value, or into
/// every element of a multi-valued attribute (creating one if none).
fn write_sub(
    c: &mut Map<String, Value>,
    attr: &'static Attribute,
    sub: &'static Attribute,
    value: Value,
    what: &str,
) -> Result<(), PatchError> {
    if value.is_array() {
        return Err(PatchError::InvalidValue(format!(
            "'{what}' is single-valued; an array is not allowed"
        )));
    }
    let v = coerce_simple(sub, value, what)?;
    let mut subs = Map::new();
    subs.insert(sub.name.to_string(), v);
    if !attr.multi_valued {
        return merge_into(attr, object_entry(c, attr.name)?, &subs, attr.name);
    }
    let arr = array_entry(c, attr.name)?;
    if arr.is_empty() {
        arr.push(Value::Object(Map::new()));
    }
    let mut written = Vec::with_capacity(arr.len());
    for (i, e) in arr.iter_mut().enumerate() {
        if let Some(o) = e.as_object_mut() {
            merge_into(attr, o, &subs, attr.name)?;
            written.push(i);
        }
    }
    enforce_primary(attr, arr, &written);
    Ok(())
}

/// Writes through a value filter: merges into (or sets `.sub` of) every
/// matching element; no match is `noTarget`.
fn write_filtered(
    c: &mut Map<String, Value>,
    t: &Target,
    f: &Filter,
    value: Value,
    rs: &ResourceSchema,
) -> Result<(), PatchError> {
    let attr = t.attr;
    let what = t.what();
    let matched: Vec<usize> = match c.get(attr.name) {
        Some(Value::Array(arr)) => arr
            .iter()
            .enumerate()
            .filter(|(_, e)| filter::matches_element(f, e, &t.parent, rs))
            .map(|(i, _)| i)
            .collect(),
        _ => Vec::new(),
    };
    if matched.is_empty() {
        return Err(PatchError::NoTarget(format!(
            "no value of '{}' matches the filter [{f}]",
            attr.name
        )));
    }
    let subs = match t.sub {
        Some(sub) => {
            if value.is_array() {
                return Err(PatchError::InvalidValue(format!(
                    "'{what}' is single-valued; an array is not allowed"
                )));
            }
            let mut m = Map::new();
            m.insert(sub.name.to_string(), coerce_simple(sub, value, &what)?);
            m
        }
        None => {
            // Lenient: a one-element array for one element.
            let value = match value {
                Value::Array(mut a) if a.len() == 1 => a.pop().unwrap_or(Value::Null),
                other => other,
            };
            coerce_complex(attr, value, &what)?
        }
    };
    let arr = array_entry(c, attr.name)?;
    for &i in &matched {
        if let Some(o) = arr.get_mut(i).and_then(Value::as_object_mut) {
            merge_into(attr, o, &subs, attr.name)?;
        }
    }
    enforce_primary(attr, arr, &matched);
    Ok(())
}

// ---------------------------------------------------------------------------
// remove
// ---------------------------------------------------------------------------

fn remove_path(
    obj: &mut Map<String, Value>,
    path: &str,
    value: Option<&Value>,
    rs: &ResourceSchema,
) -> Result<(), PatchError> {
    if let Some(ext) = rs.extension(path) {
        canonicalize_key(obj, ext.id);
        obj.remove(ext.id);
        return Ok(());
    }
    let pp = parse_path(path)
        .map_err(|e| PatchError::InvalidPath(format!("invalid path '{}': {e}", clip(path))))?;
    let t = resolve_target(&pp, None, rs)?;
    check_writable(&t)?;
    remove_target(obj, &t, value, rs)
}

/// Removes a target. A `value` list on a whole multi-valued attribute
/// removes only the listed elements (Entra's member removal).
fn remove_target(
    obj: &mut Map<String, Value>,
    t: &Target,
    value: Option<&Value>,
    rs: &ResourceSchema,
) -> Result<(), PatchError> {
    if t.attr.required && t.sub.is_none() && t.filter.is_none() {
        return Err(PatchError::InvalidValue(format!(
            "attribute '{}' is required and cannot be removed",
            t.attr.name
        )));
    }
    let Some(c) = container(obj, t.ext, false) else {
        return Ok(());
    };
    canonicalize_key(c, t.attr.name);
    let name = t.attr.name;
    match (&t.filter, t.sub) {
        (None, None) => match value.filter(|v| !v.is_null()) {
            Some(probes) if t.attr.multi_valued => {
                let probes: Vec<&Value> = match probes {
                    Value::Array(a) => a.iter().collect(),
                    other => vec![other],
                };
                if let Some(Value::Array(arr)) = c.get_mut(name) {
                    arr.retain(|e| !probes.iter().any(|p| probe_matches(t.attr, e, p)));
                }
            }
            _ => {
                c.remove(name);
            }
        },
        (None, Some(sub)) => match c.get_mut(name) {
            Some(Value::Array(arr)) => {
                for e in arr.iter_mut().filter_map(Value::as_object_mut) {
                    remove_ci(e, sub.name);
                }
            }
            Some(Value::Object(o)) => remove_ci(o, sub.name),
            _ => {}
        },
        (Some(f), sub) => {
            if let Some(Value::Array(arr)) = c.get_mut(name) {
                match sub {
                    None => arr.retain(|e| !filter::matches_element(f, e, &t.parent, rs)),
                    Some(sub) => {
                        for e in arr.iter_mut() {
                            if filter::matches_element(f, e, &t.parent, rs) {
                                if let Some(o) = e.as_object_mut() {
                                    remove_ci(o, sub.name);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Final clean-up
// ---------------------------------------------------------------------------

fn is_empty_value(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// Drops null/empty values and empty elements inside multi-valued ones.
fn tidy_container(c: &mut Map<String, Value>) {
    for v in c.values_mut() {
        if let Value::Array(arr) = v {
            arr.retain(|e| !is_empty_value(e));
        }
    }
    c.retain(|k, v| k == "schemas" || !is_empty_value(v));
}

/// Post-processing after all operations: clean empties, drop a manager
/// without `value`, and keep `schemas` in line with the extensions present.
fn tidy(obj: &mut Map<String, Value>, rs: &ResourceSchema) {
    tidy_container(obj);
    let mut present = Vec::new();
    for ext in rs.extensions {
        canonicalize_key(obj, ext.id);
        if let Some(Value::Object(c)) = obj.get_mut(ext.id) {
            if ext.id == ENTERPRISE_USER_SCHEMA {
                canonicalize_key(c, "manager");
                let has_value = c
                    .get("manager")
                    .and_then(|m| filter::get_ci(m, "value"))
                    .and_then(Value::as_str)
                    .is_some_and(|s| !s.trim().is_empty());
                if !has_value {
                    c.remove("manager");
                }
            }
            tidy_container(c);
        }
        match obj.get(ext.id) {
            Some(v) if !is_empty_value(v) => present.push(ext.id),
            Some(_) => {
                obj.remove(ext.id);
            }
            None => {}
        }
    }
    if rs.extensions.is_empty() {
        return;
    }
    canonicalize_key(obj, "schemas");
    match obj.get_mut("schemas") {
        Some(Value::Array(schemas)) => {
            for ext in rs.extensions {
                let listed = |s: &Value| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(ext.id));
                let want = present.contains(&ext.id);
                if want && !schemas.iter().any(listed) {
                    schemas.push(Value::String(ext.id.to_string()));
                } else if !want {
                    schemas.retain(|s| !listed(s));
                }
            }
        }
        _ if !present.is_empty() => {
            let mut schemas = vec![Value::String(rs.core.id.to_string())];
            schemas.extend(present.iter().map(|id| Value::String(id.to_string())));
            obj.insert("schemas".into(), Value::Array(schemas));
        }
        _ => {}
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::super::schema::{GROUP_RESOURCE, USER_RESOURCE, USER_SCHEMA};
    use super::*;
    use serde_json::json;

    const ENT: &str = ENTERPRISE_USER_SCHEMA;
    const MEMBER1: &str = "2819c223-7f76-453a-919d-413861904646";
    const MEMBER2: &str = "902c246b-6245-4190-8e05-00816be7344a";
    const MANAGER: &str = "26118915-6090-4610-87e4-49d8ca9f808d";

    fn ops(v: Value) -> Vec<PatchOperation> {
        let req: PatchRequest = serde_json::from_value(json!({
            "schemas": [PATCH_OP_SCHEMA],
            "Operations": v,
        }))
        .unwrap();
        validate_request(&req).unwrap();
        req.operations
    }

    fn patch(doc: &Value, rs: &ResourceSchema, v: Value) -> Result<Value, PatchError> {
        let mut d = doc.clone();
        apply(&mut d, &ops(v), rs)?;
        Ok(d)
    }

    fn user_ok(doc: &Value, v: Value) -> Value {
        patch(doc, &USER_RESOURCE, v).unwrap()
    }

    fn group_ok(doc: &Value, v: Value) -> Value {
        patch(doc, &GROUP_RESOURCE, v).unwrap()
    }

    fn user_err(doc: &Value, v: Value) -> PatchError {
        let mut d = doc.clone();
        let e = apply(&mut d, &ops(v), &USER_RESOURCE).unwrap_err();
        assert_eq!(&d, doc, "document must be untouched on error");
        e
    }

    fn group_err(doc: &Value, v: Value) -> PatchError {
        let mut d = doc.clone();
        let e = apply(&mut d, &ops(v), &GROUP_RESOURCE).unwrap_err();
        assert_eq!(&d, doc, "document must be untouched on error");
        e
    }

    fn user() -> Value {
        json!({
            "schemas": [USER_SCHEMA],
            "userName": "bjensen@example.com",
            "name": {"familyName": "Jensen", "givenName": "Barbara"},
            "active": true,
            "emails": [
                {"value": "bjensen@example.com", "type": "work", "primary": true},
                {"value": "babs@jensen.org", "type": "home"}
            ],
            "addresses": [
                {"type": "work", "streetAddress": "100 Universal City Plaza", "locality": "Hollywood",
                 "region": "CA", "postalCode": "91608", "country": "USA", "primary": true},
                {"type": "home", "streetAddress": "456 Hollywood Blvd", "locality": "Hollywood"}
            ]
        })
    }

    fn group() -> Value {
        json!({
            "displayName": "Tour Guides",
            "members": [
                {"value": MEMBER1, "display": "Babs Jensen"},
                {"value": MEMBER2, "display": "Mandy Pepperidge"}
            ]
        })
    }

    fn member_ids(doc: &Value) -> Vec<&str> {
        doc["members"]
            .as_array()
            .map(|a| a.iter().map(|m| m["value"].as_str().unwrap()).collect())
            .unwrap_or_default()
    }

    // --- RFC 7644 §3.5.2 examples ----------------------------------------

    #[test]
    fn rfc_add_member() {
        let g = json!({"displayName": "Tour Guides", "members": [{"value": MEMBER1}]});
        let out = group_ok(
            &g,
            json!([{
                "op": "add", "path": "members",
                "value": [{"display": "Babs Jensen",
                           "$ref": format!("https://example.com/v2/Users/{MEMBER2}"),
                           "value": MEMBER2}]
            }]),
        );
        assert_eq!(member_ids(&out), [MEMBER1, MEMBER2]);
        assert_eq!(out["members"][1]["display"], "Babs Jensen");
        assert_eq!(
            out["members"][1]["$ref"],
            format!("https://example.com/v2/Users/{MEMBER2}")
        );
    }

    #[test]
    fn rfc_add_emails_and_nickname_without_path() {
        let out = user_ok(
            &user(),
            json!([{
                "op": "add",
                "value": {"emails": [{"value": "babs@jensen.org", "type": "home"},
                                     {"value": "barbara@example.org", "type": "other"}],
                          "nickname": "Babs"}
            }]),
        );
        // Existing home email not duplicated; the new one appended.
        assert_eq!(out["emails"].as_array().unwrap().len(), 3);
        assert_eq!(out["emails"][2]["value"], "barbara@example.org");
        // Canonical key spelling, not the client's "nickname".
        assert_eq!(out["nickName"], "Babs");
        assert!(out.get("nickname").is_none());
    }

    #[test]
    fn rfc_remove_member_by_filter() {
        let out = group_ok(
            &group(),
            json!([{
                "op": "remove", "path": format!("members[value eq \"{MEMBER1}\"]")
            }]),
        );
        assert_eq!(member_ids(&out), [MEMBER2]);
    }

    #[test]
    fn rfc_remove_all_members() {
        let out = group_ok(&group(), json!([{"op": "remove", "path": "members"}]));
        // An empty multi-valued attribute is left out of the document.
        assert_eq!(out, json!({"displayName": "Tour Guides"}));
    }

    #[test]
    fn rfc_remove_then_add_to_replace_members() {
        // The RFC's own example has no space between `eq` and the quote.
        let out = group_ok(
            &group(),
            json!([
                {"op": "remove", "path": format!("members[value eq\"{MEMBER1}\"]")},
                {"op": "add", "path": "members", "value": [{"display": "James Smith", "value": "08e1d05d"}]}
            ]),
        );
        assert_eq!(member_ids(&out), [MEMBER2, "08e1d05d"]);
    }

    #[test]
    fn rfc_replace_members() {
        let out = group_ok(
            &group(),
            json!([{
                "op": "replace", "path": "members",
                "value": [{"display": "Babs Jensen", "value": MEMBER1},
                          {"display": "James Smith", "value": "08e1d05d"}]
            }]),
        );
        assert_eq!(member_ids(&out), [MEMBER1, "08e1d05d"]);
    }

    #[test]
    fn rfc_replace_address_by_filter() {
        let out = user_ok(
            &user(),
            json!([{
                "op": "replace", "path": "addresses[type eq \"work\"]",
                "value": {"type": "work", "streetAddress": "911 Universal City Plaza",
                          "locality": "Hollywood", "region": "CA", "postalCode": "91608",
                          "country": "US", "formatted": "911 Universal City Plaza\nHollywood, CA 91608 US",
                          "primary": true}
            }]),
        );
        let work = &out["addresses"][0];
        assert_eq!(work["streetAddress"], "911 Universal City Plaza");
        assert_eq!(work["country"], "US");
        assert_eq!(
            work["formatted"],
            "911 Universal City Plaza\nHollywood, CA 91608 US"
        );
        assert_eq!(out["addresses"][1]["streetAddress"], "456 Hollywood Blvd");
    }

    #[test]
    fn rfc_replace_address_sub_attribute_by_filter() {
        let out = user_ok(
            &user(),
            json!([{
                "op": "replace", "path": "addresses[type eq \"work\"].streetAddress",
                "value": "1010 Broadway Ave"
            }]),
        );
        assert_eq!(out["addresses"][0]["streetAddress"], "1010 Broadway Ave");
        assert_eq!(out["addresses"][0]["locality"], "Hollywood");
        assert_eq!(out["addresses"][1]["streetAddress"], "456 Hollywood Blvd");
    }

    #[test]
    fn rfc_replace_without_path_replaces_multi_valued_wholesale() {
        let out = user_ok(
            &user(),
            json!([{
                "op": "replace",
                "value": {"emails": [{"value": "bjensen@example.com", "type": "work", "primary": true},
                                     {"value": "babs@jensen.org", "type": "home"}],
                          "nickName": "Babs"}
            }]),
        );
        assert_eq!(out["emails"].as_array().unwrap().len(), 2);
        assert_eq!(out["nickName"], "Babs");
        let out = user_ok(
            &user(),
            json!([{
                "op": "replace", "value": {"emails": [{"value": "only@example.com", "type": "work"}]}
            }]),
        );
        assert_eq!(
            out["emails"],
            json!([{"value": "only@example.com", "type": "work"}])
        );
    }

    #[test]
    fn rfc_enterprise_manager_add() {
        let out = user_ok(
            &user(),
            json!([{
                "op": "add", "path": format!("{ENT}:manager"),
                "value": {"value": MANAGER, "$ref": format!("../Users/{MANAGER}"), "displayName": "John Smith"}
            }]),
        );
        // displayName is readOnly: dropped.
        assert_eq!(
            out[ENT]["manager"],
            json!({"value": MANAGER, "$ref": format!("../Users/{MANAGER}")})
        );
        assert_eq!(out["schemas"], json!([USER_SCHEMA, ENT]));
    }

    #[test]
    fn rfc_remove_sub_attribute_of_filtered_elements() {
        let out = user_ok(
            &user(),
            json!([{"op": "remove", "path": "emails[type eq \"work\"].value"}]),
        );
        assert_eq!(out["emails"][0], json!({"type": "work", "primary": true}));
        assert_eq!(out["emails"][1]["value"], "babs@jensen.org");
    }

    #[test]
    fn rfc_remove_single_attribute_and_sub_attribute() {
        let out = user_ok(
            &user(),
            json!([
                {"op": "remove", "path": "name.givenName"},
                {"op": "remove", "path": "active"}
            ]),
        );
        assert_eq!(out["name"], json!({"familyName": "Jensen"}));
        assert!(out.get("active").is_none());
        // Removing the last sub-attribute drops the empty complex value.
        let out = user_ok(&out, json!([{"op": "remove", "path": "name.familyName"}]));
        assert!(out.get("name").is_none());
    }

    // --- Okta ------------------------------------------------------------

    #[test]
    fn okta_group_rename_with_readonly_id_in_value() {
        let out = group_ok(
            &group(),
            json!([{
                "op": "replace",
                "value": {"id": "abf4dd94-a4c0-4f67-89c9-76b03340cb9b", "displayName": "Test SCIMv2"}
            }]),
        );
        assert_eq!(out["displayName"], "Test SCIMv2");
        assert!(out.get("id").is_none());
        assert_eq!(member_ids(&out), [MEMBER1, MEMBER2]);
    }

    #[test]
    fn okta_deactivate_user_pathless_replace() {
        let out = user_ok(
            &user(),
            json!([{"op": "replace", "value": {"active": false}}]),
        );
        assert_eq!(out["active"], false);
    }

    #[test]
    fn okta_add_members_skips_existing() {
        let out = group_ok(
            &group(),
            json!([{
                "op": "add", "path": "members",
                "value": [{"value": MEMBER1, "display": "Babs J."}, {"value": "00u1", "display": "New"}]
            }]),
        );
        assert_eq!(member_ids(&out), [MEMBER1, MEMBER2, "00u1"]);
        // The re-added member's display is refreshed, not duplicated.
        assert_eq!(out["members"][0]["display"], "Babs J.");
    }

    #[test]
    fn okta_remove_member_by_filter_is_idempotent() {
        let once = group_ok(
            &group(),
            json!([{"op": "remove", "path": format!("members[value eq \"{MEMBER2}\"]")}]),
        );
        let twice = group_ok(
            &once,
            json!([{"op": "remove", "path": format!("members[value eq \"{MEMBER2}\"]")}]),
        );
        assert_eq!(once, twice);
        assert_eq!(member_ids(&twice), [MEMBER1]);
    }

    #[test]
    fn okta_pathless_replace_of_profile_with_meta_and_schemas() {
        let out = user_ok(
            &user(),
            json!([{
                "op": "replace",
                "value": {"schemas": ["bogus"], "meta": {"created": "x"}, "groups": [{"value": "g"}],
                          "name": {"givenName": "Babs"}, "title": "Boss", "unknownThing": 1}
            }]),
        );
        // Path-less replace of a complex attribute replaces it wholesale.
        assert_eq!(out["name"], json!({"givenName": "Babs"}));
        assert_eq!(out["title"], "Boss");
        assert_eq!(out["schemas"], json!([USER_SCHEMA]));
        assert!(
            out.get("meta").is_none()
                && out.get("groups").is_none()
                && out.get("unknownThing").is_none()
        );
    }

    // --- Entra ID --------------------------------------------------------

    #[test]
    fn entra_remove_members_with_value_list_removes_only_listed() {
        let g = json!({"displayName": "G", "members": [{"value": "id1"}, {"value": "id2"}, {"value": "id3"}]});
        let out = group_ok(
            &g,
            json!([{
                "op": "Remove", "path": "members",
                "value": [{"value": "id1"}, {"value": "id2", "$ref": null}]
            }]),
        );
        assert_eq!(member_ids(&out), ["id3"]);
    }

    #[test]
    fn entra_capitalised_ops() {
        let out = group_ok(
            &group(),
            json!([
                {"op": "Add", "path": "members", "value": [{"value": "id9"}]},
                {"op": "Replace", "path": "displayName", "value": "Renamed"},
                {"op": "Remove", "path": format!("members[value eq \"{MEMBER1}\"]")}
            ]),
        );
        assert_eq!(member_ids(&out), [MEMBER2, "id9"]);
        assert_eq!(out["displayName"], "Renamed");
    }

    #[test]
    fn entra_replace_active_with_string_false() {
        let out = user_ok(
            &user(),
            json!([{"op": "Replace", "path": "active", "value": "False"}]),
        );
        assert_eq!(out["active"], false);
        let out = user_ok(
            &out,
            json!([{"op": "Replace", "value": {"active": "True"}}]),
        );
        assert_eq!(out["active"], true);
    }

    #[test]
    fn entra_add_manager_bare_string() {
        let out = user_ok(
            &user(),
            json!([{"op": "Add", "path": format!("{ENT}:manager"), "value": MANAGER}]),
        );
        assert_eq!(out[ENT]["manager"], json!({"value": MANAGER}));
        assert_eq!(out["schemas"], json!([USER_SCHEMA, ENT]));
        // Replacing replaces wholesale: a stale $ref must not survive.
        let with_ref = user_ok(
            &user(),
            json!([{"op": "Add", "path": format!("{ENT}:manager"),
            "value": {"value": "old", "$ref": "../Users/old"}}]),
        );
        let out = user_ok(
            &with_ref,
            json!([{"op": "Replace", "path": format!("{ENT}:manager"), "value": MANAGER}]),
        );
        assert_eq!(out[ENT]["manager"], json!({"value": MANAGER}));
    }

    #[test]
    fn entra_replace_manager_empty_string_removes_it() {
        let u = user_ok(
            &user(),
            json!([{"op": "Add", "path": format!("{ENT}:manager"), "value": MANAGER}]),
        );
        let out = user_ok(
            &u,
            json!([{"op": "Replace", "path": format!("{ENT}:manager"), "value": ""}]),
        );
        assert!(out.get(ENT).is_none());
        assert_eq!(out["schemas"], json!([USER_SCHEMA]));
        // Path-less, URN-qualified key with an empty string too.
        let out = user_ok(
            &u,
            json!([{"op": "Replace", "value": {format!("{ENT}:manager"): ""}}]),
        );
        assert!(out.get(ENT).is_none());
    }

    #[test]
    fn entra_manager_value_path_and_remove() {
        let u = user_ok(
            &user(),
            json!([{"op": "Add", "path": format!("{ENT}:manager.value"), "value": MANAGER}]),
        );
        assert_eq!(u[ENT]["manager"], json!({"value": MANAGER}));
        let out = user_ok(
            &u,
            json!([{"op": "Remove", "path": format!("{ENT}:manager")}]),
        );
        assert!(out.get(ENT).is_none());
        assert_eq!(out["schemas"], json!([USER_SCHEMA]));
    }

    #[test]
    fn entra_pathless_dotted_and_urn_keys() {
        let out = user_ok(
            &user(),
            json!([{
                "op": "Add",
                "value": {
                    "name.givenName": "Ann",
                    "name.familyName": "Lee",
                    format!("{ENT}:employeeNumber"): "42",
                    format!("{ENT}:manager"): MANAGER,
                    "displayName": "Ann Lee"
                }
            }]),
        );
        assert_eq!(
            out["name"],
            json!({"givenName": "Ann", "familyName": "Lee"})
        );
        assert_eq!(out[ENT]["employeeNumber"], "42");
        assert_eq!(out[ENT]["manager"], json!({"value": MANAGER}));
        assert_eq!(out["displayName"], "Ann Lee");
        assert_eq!(out["schemas"], json!([USER_SCHEMA, ENT]));
    }

    #[test]
    fn entra_extension_object_key() {
        let out = user_ok(
            &user(),
            json!([{
                "op": "add",
                "value": {ENT: {"department": "Tour Operations", "manager": {"value": MANAGER, "displayName": "x"}}}
            }]),
        );
        assert_eq!(
            out[ENT],
            json!({"department": "Tour Operations", "manager": {"value": MANAGER}})
        );
        // Path = the extension URN itself.
        let out = user_ok(
            &out,
            json!([{"op": "replace", "path": ENT, "value": {"department": "Ops"}}]),
        );
        assert_eq!(out[ENT]["department"], "Ops");
        let out = user_ok(&out, json!([{"op": "remove", "path": ENT}]));
        assert!(out.get(ENT).is_none());
        assert_eq!(out["schemas"], json!([USER_SCHEMA]));
    }

    #[test]
    fn entra_replace_email_value_by_filter() {
        let out = user_ok(
            &user(),
            json!([{
                "op": "Replace", "path": "emails[type eq \"work\"].value", "value": "new@example.com"
            }]),
        );
        assert_eq!(out["emails"][0]["value"], "new@example.com");
        assert_eq!(out["emails"][0]["primary"], true);
        assert_eq!(out["emails"][1]["value"], "babs@jensen.org");
    }

    #[test]
    fn entra_add_on_single_valued_attribute_replaces() {
        let out = user_ok(
            &user(),
            json!([{"op": "Add", "path": "displayName", "value": "A"},
                                          {"op": "Add", "path": "displayName", "value": "B"}]),
        );
        assert_eq!(out["displayName"], "B");
        let out = user_ok(
            &user(),
            json!([{"op": "Add", "path": "userName", "value": "new@example.com"}]),
        );
        assert_eq!(out["userName"], "new@example.com");
    }

    #[test]
    fn entra_add_with_filter_that_matches_nothing_is_no_target() {
        let e = user_err(
            &user(),
            json!([{
                "op": "Add", "path": "phoneNumbers[type eq \"work\"].value", "value": "555-0100"
            }]),
        );
        assert_eq!(e.scim_type(), "noTarget");
        let e = user_err(
            &user(),
            json!([{
                "op": "Replace", "path": "emails[type eq \"other\"].value", "value": "x@y.z"
            }]),
        );
        assert_eq!(e.scim_type(), "noTarget");
    }

    // --- Canonical names, types, mutability -------------------------------

    #[test]
    fn canonical_key_spelling_replaces_differently_cased_keys() {
        let u = json!({"schemas": [USER_SCHEMA], "USERNAME": "old", "Name": {"GIVENNAME": "x"}});
        let out = user_ok(
            &u,
            json!([
                {"op": "replace", "path": "UserName", "value": "new"},
                {"op": "replace", "path": "NAME.GIVENNAME", "value": "Ann"}
            ]),
        );
        assert_eq!(
            out,
            json!({"schemas": [USER_SCHEMA], "userName": "new", "name": {"givenName": "Ann"}})
        );
    }

    #[test]
    fn boolean_strings_inside_elements_and_type_errors() {
        let out = user_ok(
            &user(),
            json!([{
                "op": "add", "path": "phoneNumbers", "value": [{"value": "555-0100", "type": "Work", "Primary": "TRUE"}]
            }]),
        );
        assert_eq!(
            out["phoneNumbers"],
            json!([{"value": "555-0100", "type": "Work", "primary": true}])
        );

        let e = user_err(
            &user(),
            json!([{"op": "replace", "path": "active", "value": "abc"}]),
        );
        assert_eq!(e.scim_type(), "invalidValue");
        assert!(e.to_string().contains("active"), "{e}");
        let e = user_err(
            &user(),
            json!([{"op": "replace", "path": "userName", "value": {"a": 1}}]),
        );
        assert_eq!(e.scim_type(), "invalidValue");
        let e = user_err(
            &user(),
            json!([{"op": "replace", "value": {"userName": {"a": 1}}}]),
        );
        assert_eq!(e.scim_type(), "invalidValue");
        let e = user_err(
            &user(),
            json!([{"op": "replace", "path": "userName", "value": ["a"]}]),
        );
        assert_eq!(e.scim_type(), "invalidValue");
        let e = user_err(
            &user(),
            json!([{"op": "replace", "path": "name", "value": "x"}]),
        );
        assert_eq!(e.scim_type(), "invalidValue");
        let e = user_err(
            &user(),
            json!([{"op": "replace", "path": "userName", "value": ""}]),
        );
        assert_eq!(e.scim_type(), "invalidValue");
        // Numbers become strings for string attributes.
        let out = user_ok(
            &user(),
            json!([{"op": "add", "path": format!("{ENT}:employeeNumber"), "value": 42}]),
        );
        assert_eq!(out[ENT]["employeeNumber"], "42");
    }

    #[test]
    fn readonly_and_immutable_in_paths() {
        for path in [
            "id",
            "meta",
            "meta.created",
            "groups",
            format!("{ENT}:manager.displayName").as_str(),
        ] {
            let e = user_err(
                &user(),
                json!([{"op": "replace", "path": path, "value": "x"}]),
            );
            assert_eq!(e.scim_type(), "mutability", "{path}");
        }
        let e = user_err(&user(), json!([{"op": "remove", "path": "groups"}]));
        assert_eq!(e.scim_type(), "mutability");
        let e = group_err(
            &group(),
            json!([{
                "op": "replace", "path": format!("members[value eq \"{MEMBER1}\"].value"), "value": "other"
            }]),
        );
        assert_eq!(e.scim_type(), "mutability");
        // members.display is accepted.
        let out = group_ok(
            &group(),
            json!([{
                "op": "replace", "path": format!("members[value eq \"{MEMBER1}\"].display"), "value": "B. Jensen"
            }]),
        );
        assert_eq!(out["members"][0]["display"], "B. Jensen");
    }

    #[test]
    fn unknown_attributes() {
        let e = user_err(
            &user(),
            json!([{"op": "add", "path": "favouriteColour", "value": "x"}]),
        );
        assert_eq!(e.scim_type(), "invalidPath");
        assert!(e.to_string().contains("unknown attribute"), "{e}");
        let e = user_err(&user(), json!([{"op": "remove", "path": "name.nope"}]));
        assert_eq!(e.scim_type(), "invalidPath");
        let e = user_err(
            &user(),
            json!([{"op": "add", "path": "urn:example:ext:1.0:Thing:x", "value": "x"}]),
        );
        assert_eq!(e.scim_type(), "invalidPath");
        // Extension attributes must be URN-qualified in a path.
        let e = user_err(
            &user(),
            json!([{"op": "add", "path": "employeeNumber", "value": "1"}]),
        );
        assert_eq!(e.scim_type(), "invalidPath");
        let e = group_err(
            &group(),
            json!([{"op": "add", "path": "userName", "value": "x"}]),
        );
        assert_eq!(e.scim_type(), "invalidPath");
        // Unparseable path.
        let e = user_err(
            &user(),
            json!([{"op": "add", "path": "emails[type eq", "value": "x"}]),
        );
        assert_eq!(e.scim_type(), "invalidPath");
        // Filter on a single-valued attribute.
        let e = user_err(
            &user(),
            json!([{"op": "add", "path": "name[givenName eq \"x\"]", "value": {}}]),
        );
        assert_eq!(e.scim_type(), "invalidPath");
        // Path-less: unknown keys ignored, known ones applied.
        let out = user_ok(
            &user(),
            json!([{"op": "add", "value": {"favouriteColour": "x", "title": "T", "a.b.c": 1, "": 2}}]),
        );
        assert_eq!(out["title"], "T");
        assert!(out.get("favouriteColour").is_none());
    }

    #[test]
    fn required_attributes_cannot_be_removed() {
        let e = user_err(&user(), json!([{"op": "remove", "path": "userName"}]));
        assert_eq!(e.scim_type(), "invalidValue");
        assert!(e.to_string().contains("required"), "{e}");
        let e = group_err(&group(), json!([{"op": "remove", "path": "displayName"}]));
        assert_eq!(e.scim_type(), "invalidValue");
        let e = group_err(
            &group(),
            json!([{"op": "replace", "value": {"displayName": null}}]),
        );
        assert_eq!(e.scim_type(), "invalidValue");
    }

    #[test]
    fn remove_absent_is_noop_and_pathless_null_clears() {
        let out = user_ok(
            &user(),
            json!([
                {"op": "remove", "path": "nickName"},
                {"op": "remove", "path": format!("{ENT}:department")},
                {"op": "remove", "path": "phoneNumbers[type eq \"work\"]"},
                {"op": "remove", "path": "x509Certificates.value"}
            ]),
        );
        assert_eq!(out, user());
        let out = user_ok(
            &user(),
            json!([{"op": "replace", "value": {"name": null, "emails": null}}]),
        );
        assert!(out.get("name").is_none() && out.get("emails").is_none());
    }

    #[test]
    fn primary_is_unique_newest_wins() {
        let out = user_ok(
            &user(),
            json!([{
                "op": "add", "path": "emails", "value": [{"value": "new@example.com", "type": "other", "primary": true}]
            }]),
        );
        let emails = out["emails"].as_array().unwrap();
        assert_eq!(emails[0]["primary"], false);
        assert_eq!(emails[2]["primary"], true);
        let out = user_ok(
            &user(),
            json!([{
                "op": "replace", "path": "emails[type eq \"home\"].primary", "value": true
            }]),
        );
        assert_eq!(out["emails"][0]["primary"], false);
        assert_eq!(out["emails"][1]["primary"], true);
        let out = user_ok(
            &user(),
            json!([{
                "op": "replace", "path": "emails",
                "value": [{"value": "a@x", "primary": true}, {"value": "b@x", "primary": true}]
            }]),
        );
        assert_eq!(out["emails"][0]["primary"], false);
        assert_eq!(out["emails"][1]["primary"], true);
    }

    #[test]
    fn sub_attribute_of_multi_valued_without_filter() {
        let out = user_ok(
            &user(),
            json!([{"op": "replace", "path": "addresses.country", "value": "NL"}]),
        );
        assert_eq!(out["addresses"][0]["country"], "NL");
        assert_eq!(out["addresses"][1]["country"], "NL");
        let out = user_ok(
            &user(),
            json!([{"op": "add", "path": "phoneNumbers.value", "value": "555"}]),
        );
        assert_eq!(out["phoneNumbers"], json!([{"value": "555"}]));
        let out = user_ok(
            &user(),
            json!([{"op": "remove", "path": "addresses.locality"}]),
        );
        assert!(out["addresses"][0].get("locality").is_none());
    }

    #[test]
    fn add_complex_with_path_merges() {
        let out = user_ok(
            &user(),
            json!([{"op": "add", "path": "name", "value": {"middleName": "Q", "givenName": "Babs"}}]),
        );
        assert_eq!(
            out["name"],
            json!({"familyName": "Jensen", "givenName": "Babs", "middleName": "Q"})
        );
        let out = user_ok(
            &user(),
            json!([{"op": "replace", "path": "name", "value": {"givenName": "B"}}]),
        );
        assert_eq!(
            out["name"],
            json!({"familyName": "Jensen", "givenName": "B"})
        );
        let out = user_ok(
            &user(),
            json!([{"op": "add", "value": {"name": {"middleName": "Q"}}}]),
        );
        assert_eq!(out["name"]["givenName"], "Barbara");
        assert_eq!(out["name"]["middleName"], "Q");
    }

    #[test]
    fn filtered_add_merges_into_matching_elements() {
        let out = user_ok(
            &user(),
            json!([{"op": "add", "path": "emails[type eq \"home\"]", "value": {"display": "Home"}}]),
        );
        assert_eq!(
            out["emails"][1],
            json!({"value": "babs@jensen.org", "type": "home", "display": "Home"})
        );
    }

    #[test]
    fn all_or_nothing_on_error() {
        let e = group_err(
            &group(),
            json!([
                {"op": "replace", "path": "displayName", "value": "Renamed"},
                {"op": "remove", "path": "members"},
                {"op": "add", "path": "nope", "value": 1}
            ]),
        );
        assert_eq!(e.scim_type(), "invalidPath");
        assert!(e.to_string().starts_with("Operations[2]: "), "{e}");
    }

    #[test]
    fn operation_shape_errors() {
        let mut g = group();
        let bad_op = vec![PatchOperation {
            op: "move".into(),
            path: Some("displayName".into()),
            value: None,
        }];
        let e = apply(&mut g, &bad_op, &GROUP_RESOURCE).unwrap_err();
        assert_eq!(e.scim_type(), "invalidSyntax");
        assert_eq!(g, group());

        let e = group_err(&group(), json!([{"op": "remove"}]));
        assert_eq!(e.scim_type(), "noTarget");
        let e = group_err(&group(), json!([{"op": "add", "path": "displayName"}]));
        assert_eq!(e.scim_type(), "invalidValue");
        let e = group_err(
            &group(),
            json!([{"op": "replace", "path": "displayName", "value": null}]),
        );
        assert_eq!(e.scim_type(), "invalidValue");
        let e = group_err(&group(), json!([{"op": "add", "value": "x"}]));
        assert_eq!(e.scim_type(), "invalidValue");
        let e = user_err(&user(), json!([{"op": "add", "value": {ENT: "x"}}]));
        assert_eq!(e.scim_type(), "invalidValue");

        let mut not_object = json!([1]);
        let e = apply(
            &mut not_object,
            &ops(json!([{"op": "remove", "path": "x"}])),
            &USER_RESOURCE,
        )
        .unwrap_err();
        assert_eq!(e.scim_type(), "invalidSyntax");
    }

    #[test]
    fn validate_request_envelope() {
        let req = |v: Value| serde_json::from_value::<PatchRequest>(v).unwrap();
        assert!(validate_request(&req(
            json!({"schemas": [PATCH_OP_SCHEMA], "Operations": [{"op": "Add", "value": {}}]})
        ))
        .is_ok());
        let e = validate_request(&req(
            json!({"schemas": ["urn:x"], "Operations": [{"op": "add"}]}),
        ))
        .unwrap_err();
        assert_eq!(e.scim_type(), "invalidSyntax");
        let e = validate_request(&req(
            json!({"schemas": [PATCH_OP_SCHEMA], "Operations": []}),
        ))
        .unwrap_err();
        assert_eq!(e.scim_type(), "invalidSyntax");
        let e = validate_request(&req(
            json!({"schemas": [PATCH_OP_SCHEMA], "Operations": [{"op": "copy"}]}),
        ))
        .unwrap_err();
        assert_eq!(e.scim_type(), "invalidSyntax");
        assert!(e.to_string().contains("copy"));
        // `value: null` reads as missing.
        let r = req(
            json!({"schemas": [PATCH_OP_SCHEMA], "Operations": [{"op": "add", "path": "x", "value": null}]}),
        );
        assert!(r.operations[0].value.is_none());
    }

    #[test]
    fn scim_types() {
        assert_eq!(
            PatchError::InvalidSyntax(String::new()).scim_type(),
            "invalidSyntax"
        );
        assert_eq!(
            PatchError::InvalidPath(String::new()).scim_type(),
            "invalidPath"
        );
        assert_eq!(PatchError::NoTarget(String::new()).scim_type(), "noTarget");
        assert_eq!(
            PatchError::InvalidValue(String::new()).scim_type(),
            "invalidValue"
        );
        assert_eq!(
            PatchError::Mutability(String::new()).scim_type(),
            "mutability"
        );
    }

    #[test]
    fn schemas_created_when_missing_and_untouched_for_groups() {
        let out = user_ok(
            &json!({"userName": "u"}),
            json!([{"op": "add", "path": format!("{ENT}:division"), "value": "D"}]),
        );
        assert_eq!(out["schemas"], json!([USER_SCHEMA, ENT]));
        let out = group_ok(
            &group(),
            json!([{"op": "replace", "path": "displayName", "value": "x"}]),
        );
        assert!(out.get("schemas").is_none());
    }

    #[test]
    fn fuzzish_operations_never_panic() {
        let values = [
            json!(null),
            json!(""),
            json!("x"),
            json!(true),
            json!(1),
            json!([]),
            json!([1, {"value": "a"}]),
            json!({}),
            json!({"value": "a", "primary": "true"}),
            json!({ENT: {"manager": 1}}),
        ];
        let paths = [
            None,
            Some("members"),
            Some("emails[type eq \"work\"].value"),
            Some("name"),
            Some("name.givenName"),
            Some(ENT),
            Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager"),
            Some("emails"),
            Some("active"),
            Some("]["),
            Some("emails[value pr]"),
            Some("externalId"),
        ];
        for op in ["add", "replace", "remove"] {
            for p in paths {
                for v in &values {
                    let o = PatchOperation {
                        op: op.into(),
                        path: p.map(String::from),
                        value: Some(v.clone()),
                    };
                    for rs in [&USER_RESOURCE, &GROUP_RESOURCE] {
                        let mut d = user();
                        let _ = apply(&mut d, std::slice::from_ref(&o), rs);
                        let mut d = group();
                        let _ = apply(&mut d, std::slice::from_ref(&o), rs);
                    }
                }
            }
        }
    }
}
