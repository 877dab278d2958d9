//! SCIM filter expressions (RFC 7644 §3.4.2.2): parser to an AST, canonical
//! re-serialisation (`Display`) and in-memory evaluation against a resource
//! JSON document.
//!
//! The parser is a hand-written recursive-descent parser over `char`s (so
//! positions in error messages are character offsets, 0-based, and no input
//! can split a UTF-8 sequence). It is shared with the PATCH path parser in
//! `super::path` through the crate-private [`Parser`] type.
//!
//! Grammar (RFC 7644 §3.4.2.2, Figure 1), with `and` binding tighter than
//! `or` and both left-associative:
//!
//! ```text
//! FILTER    = attrExp / logExp / valuePath / *1"not" "(" FILTER ")"
//! valuePath = attrPath "[" valFilter "]"
//! attrExp   = (attrPath SP "pr") / (attrPath SP compareOp SP compValue)
//! attrPath  = [URI ":"] ATTRNAME *1subAttr
//! ```
//!
//! Tolerances beyond the RFC, because real IdPs and Microsoft's SCIM
//! validator send them:
//! - operators, `and`/`or`/`not`/`pr` and `true`/`false`/`null` are
//!   case-insensitive, and any amount of whitespace may separate tokens;
//! - unquoted bare-word values (`userType eq Employee`) are strings (or
//!   numbers / booleans / null when they read as such);
//! - Entra ID's `emails[type eq "work"].value eq "a@b.c"`: a value path
//!   followed by `.subAttr op value` (or `.subAttr pr`) is parsed as if the
//!   trailing comparison were inside the brackets:
//!   `emails[type eq "work" and value eq "a@b.c"]`.
//!
//! Bounds (the parser is fuzzed and faces the internet): input is limited to
//! [`MAX_INPUT_LEN`] bytes and nesting of `(`, `not (` and `[` to
//! [`MAX_DEPTH`] levels, so time, memory and stack stay bounded. Nested value
//! paths (`a[b[c eq 1]]`) are rejected as in the RFC grammar.

use std::cmp::Ordering;
use std::fmt;

use serde_json::Value;

use super::schema::{self, AttrType, ResourceSchema};

/// Longest filter or PATCH path accepted, in bytes.
pub const MAX_INPUT_LEN: usize = 4096;
/// Deepest nesting of parentheses, `not (…)` and `[…]` accepted.
pub const MAX_DEPTH: usize = 32;

/// An attribute path as written by the client (not canonicalised; resolve
/// it with [`ResourceSchema::resolve`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrPath {
    /// Schema URN prefix, e.g. `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User`.
    pub schema: Option<String>,
    pub attr: String,
    pub sub_attr: Option<String>,
}

impl AttrPath {
    /// A plain, unqualified path `attr`.
    pub fn simple(attr: &str) -> Self {
        AttrPath {
            schema: None,
            attr: attr.to_string(),
            sub_attr: None,
        }
    }
}

/// Comparison operators (RFC 7644 §3.4.2.2 Table 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

impl CompareOp {
    pub const fn as_str(self) -> &'static str {
        match self {
            CompareOp::Eq => "eq",
            CompareOp::Ne => "ne",
            CompareOp::Co => "co",
            CompareOp::Sw => "sw",
            CompareOp::Ew => "ew",
            CompareOp::Gt => "gt",
            CompareOp::Ge => "ge",
            CompareOp::Lt => "lt",
            CompareOp::Le => "le",
        }
    }

    /// Parses an operator keyword, case-insensitively.
    pub fn parse(word: &str) -> Option<Self> {
        Some(match word.to_ascii_lowercase().as_str() {
            "eq" => CompareOp::Eq,
            "ne" => CompareOp::Ne,
            "co" => CompareOp::Co,
            "sw" => CompareOp::Sw,
            "ew" => CompareOp::Ew,
            "gt" => CompareOp::Gt,
            "ge" => CompareOp::Ge,
            "lt" => CompareOp::Lt,
            "le" => CompareOp::Le,
            _ => return None,
        })
    }
}

/// A parsed filter expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// `attrPath op value`; `value` is a String, Number, Bool or Null.
    Compare {
        path: AttrPath,
        op: CompareOp,
        value: Value,
    },
    /// `attrPath pr`
    Present(AttrPath),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    /// `not (filter)`
    Not(Box<Filter>),
    /// attrPath "[" valFilter "]" — e.g. emails[type eq "work" and value co "@example.com"].
    /// Paths inside `filter` are relative to the elements of `path`.
    ValuePath {
        path: AttrPath,
        filter: Box<Filter>,
    },
}

/// Why a filter (or PATCH path) could not be parsed. Messages are meant for
/// a SCIM error `detail`; positions are 0-based character offsets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("expression is empty")]
    Empty,
    #[error("expression is {len} bytes long; at most {max} bytes are allowed")]
    TooLong { len: usize, max: usize },
    #[error("expression nests deeper than {max} levels at position {pos}")]
    TooDeep { pos: usize, max: usize },
    #[error("unexpected token '{found}' at position {pos}: expected {expected}")]
    Unexpected {
        pos: usize,
        found: String,
        expected: &'static str,
    },
    #[error("unexpected end of expression at position {pos}: expected {expected}")]
    UnexpectedEnd { pos: usize, expected: &'static str },
    #[error("invalid string at position {pos}: {reason}")]
    InvalidString { pos: usize, reason: &'static str },
    #[error("invalid attribute path '{path}' at position {pos}: {reason}")]
    InvalidAttrPath {
        pos: usize,
        path: String,
        reason: &'static str,
    },
    #[error("nested value filters are not allowed (position {pos})")]
    NestedValuePath { pos: usize },
}

/// Parses a filter (the `filter` query parameter, RFC 7644 §3.4.2.2).
pub fn parse_filter(input: &str) -> Result<Filter, FilterError> {
    let mut p = Parser::new(input)?;
    let f = p.parse_or(false)?;
    p.expect_end("'and', 'or' or end of filter")?;
    Ok(f)
}

fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, ':' | '.' | '_' | '-' | '$')
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '$')
}

/// `ATTRNAME = ALPHA *(nameChar)`; `$ref` is allowed too (RFC 7643 §2.3.7).
fn valid_attr_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '$' => chars.all(is_name_char),
        _ => false,
    }
}

/// Recursive-descent parser shared by filters and PATCH paths.
pub(crate) struct Parser {
    chars: Vec<char>,
    pos: usize,
    depth: usize,
}

impl Parser {
    /// Checks the length limit and emptiness before anything else.
    pub(crate) fn new(input: &str) -> Result<Self, FilterError> {
        if input.len() > MAX_INPUT_LEN {
            return Err(FilterError::TooLong {
                len: input.len(),
                max: MAX_INPUT_LEN,
            });
        }
        if input.trim().is_empty() {
            return Err(FilterError::Empty);
        }
        Ok(Parser {
            chars: input.chars().collect(),
            pos: 0,
            depth: 0,
        })
    }

    pub(crate) fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn bump(&mut self) {
        if self.pos < self.chars.len() {
            self.pos += 1;
        }
    }

    pub(crate) fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    /// Consumes `c` if it is the next character (no whitespace skipping).
    pub(crate) fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn take_while(&mut self, f: impl Fn(char) -> bool) -> String {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
        self.chars[start..self.pos].iter().collect()
    }

    /// The token starting at `pos`, for error messages (bounded length).
    fn token_at(&self, pos: usize) -> String {
        let rest = self.chars.get(pos..).unwrap_or(&[]);
        match rest.first() {
            Some(&c) if is_path_char(c) => rest
                .iter()
                .take_while(|c| is_path_char(**c))
                .take(40)
                .collect(),
            Some('"') => rest
                .iter()
                .skip(1)
                .take_while(|c| **c != '"')
                .take(40)
                .fold(String::from("\""), |mut s, c| {
                    s.push(*c);
                    s
                }),
            Some(&c) => c.to_string(),
            None => String::new(),
        }
    }

    /// An error at the current position: "unexpected token" or "unexpected end".
    pub(crate) fn error_here(&self, expected: &'static str) -> FilterError {
        self.error_at(self.pos, expected)
    }

    fn error_at(&self, pos: usize, expected: &'static str) -> FilterError {
        if pos >= self.chars.len() {
            FilterError::UnexpectedEnd {
                pos: self.chars.len(),
                expected,
            }
        } else {
            FilterError::Unexpected {
                pos,
                found: self.token_at(pos),
                expected,
            }
        }
    }

    /// Skips whitespace and fails unless the input is exhausted.
    pub(crate) fn expect_end(&mut self, expected: &'static str) -> Result<(), FilterError> {
        self.skip_ws();
        if self.pos < self.chars.len() {
            return Err(self.error_here(expected));
        }
        Ok(())
    }

    fn enter(&mut self) -> Result<(), FilterError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(FilterError::TooDeep {
                pos: self.pos,
                max: MAX_DEPTH,
            });
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    /// The alphanumeric word at the current position, without consuming it.
    fn peek_word(&self) -> String {
        self.chars
            .get(self.pos..)
            .unwrap_or(&[])
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric())
            .take(8)
            .collect::<String>()
            .to_ascii_lowercase()
    }

    /// Consumes `kw` (case-insensitive, whole word) if it comes next.
    fn eat_keyword(&mut self, kw: &str) -> bool {
        let word = self.peek_word();
        if word == kw {
            self.pos += kw.chars().count();
            true
        } else {
            false
        }
    }

    /// `attrPath = [URI ":"] ATTRNAME *1subAttr`
    pub(crate) fn parse_attr_path(&mut self) -> Result<AttrPath, FilterError> {
        self.skip_ws();
        let start = self.pos;
        let raw = self.take_while(is_path_char);
        if raw.is_empty() {
            return Err(self.error_here("an attribute path"));
        }
        let invalid = |reason| FilterError::InvalidAttrPath {
            pos: start,
            path: raw.chars().take(80).collect(),
            reason,
        };
        let (urn, rest) = schema::split_urn(&raw);
        if urn.is_some() && rest.is_empty() {
            return Err(invalid("missing attribute name after the schema URN"));
        }
        let mut parts = rest.split('.');
        let attr = parts.next().unwrap_or_default();
        let sub = parts.next();
        if parts.next().is_some() {
            return Err(invalid("at most one sub-attribute is allowed"));
        }
        if !valid_attr_name(attr) || sub.is_some_and(|s| !valid_attr_name(s)) {
            return Err(invalid("not a valid attribute name"));
        }
        Ok(AttrPath {
            schema: urn.map(str::to_string),
            attr: attr.to_string(),
            sub_attr: sub.map(str::to_string),
        })
    }

    /// A bare `ATTRNAME` (used after `].`).
    pub(crate) fn parse_attr_name(&mut self) -> Result<String, FilterError> {
        let start = self.pos;
        let name = self.take_while(is_name_char);
        if name.is_empty() {
            return Err(self.error_here("an attribute name"));
        }
        if !valid_attr_name(&name) {
            return Err(FilterError::InvalidAttrPath {
                pos: start,
                path: name.chars().take(80).collect(),
                reason: "not a valid attribute name",
            });
        }
        Ok(name)
    }

    /// `"[" valFilter "]"`, the current character being `[`.
    pub(crate) fn parse_bracket_filter(&mut self) -> Result<Filter, FilterError> {
        if !self.eat('[') {
            return Err(self.error_here("'['"));
        }
        self.enter()?;
        let f = self.parse_or(true)?;
        self.skip_ws();
        if !self.eat(']') {
            return Err(self.error_here("'and', 'or' or ']'"));
        }
        self.leave();
        Ok(f)
    }

    /// `or` level (lowest precedence), left-associative.
    fn parse_or(&mut self, in_bracket: bool) -> Result<Filter, FilterError> {
        let mut left = self.parse_and(in_bracket)?;
        loop {
            self.skip_ws();
            if !self.eat_keyword("or") {
                return Ok(left);
            }
            let right = self.parse_and(in_bracket)?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
    }

    /// `and` level, left-associative.
    fn parse_and(&mut self, in_bracket: bool) -> Result<Filter, FilterError> {
        let mut left = self.parse_unary(in_bracket)?;
        loop {
            self.skip_ws();
            if !self.eat_keyword("and") {
                return Ok(left);
            }
            let right = self.parse_unary(in_bracket)?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
    }

    /// `"(" FILTER ")"`, `not "(" FILTER ")"` or an attribute expression.
    fn parse_unary(&mut self, in_bracket: bool) -> Result<Filter, FilterError> {
        self.skip_ws();
        match self.peek() {
            None => Err(self.error_here("an attribute path, '(' or 'not'")),
            Some('(') => {
                self.bump();
                self.enter()?;
                let f = self.parse_or(in_bracket)?;
                self.skip_ws();
                if !self.eat(')') {
                    return Err(self.error_here("'and', 'or' or ')'"));
                }
                self.leave();
                Ok(f)
            }
            Some(_) => {
                // "not" is a keyword only when a "(" follows, so attributes
                // named e.g. "notes" or even "not" still parse.
                let save = self.pos;
                if self.eat_keyword("not") {
                    self.skip_ws();
                    if self.eat('(') {
                        self.enter()?;
                        let f = self.parse_or(in_bracket)?;
                        self.skip_ws();
                        if !self.eat(')') {
                            return Err(self.error_here("'and', 'or' or ')'"));
                        }
                        self.leave();
                        return Ok(Filter::Not(Box::new(f)));
                    }
                    self.pos = save;
                }
                self.parse_attr_expr(in_bracket)
            }
        }
    }

    /// `attrPath pr`, `attrPath op value` or `attrPath "[" valFilter "]"`
    /// (plus the Entra `…].sub op value` extension).
    fn parse_attr_expr(&mut self, in_bracket: bool) -> Result<Filter, FilterError> {
        let path = self.parse_attr_path()?;
        self.skip_ws();
        if self.peek() == Some('[') {
            if in_bracket {
                return Err(FilterError::NestedValuePath { pos: self.pos });
            }
            if path.sub_attr.is_some() {
                return Err(FilterError::InvalidAttrPath {
                    pos: self.pos,
                    path: path.to_string(),
                    reason: "a value filter cannot follow a sub-attribute",
                });
            }
            let inner = self.parse_bracket_filter()?;
            if self.eat('.') {
                // Entra: emails[type eq "work"].value eq "x" → the trailing
                // comparison moves inside the brackets.
                let sub = AttrPath::simple(&self.parse_attr_name()?);
                let cmp = self.parse_op_and_value(sub)?;
                return Ok(Filter::ValuePath {
                    path,
                    filter: Box::new(Filter::And(Box::new(inner), Box::new(cmp))),
                });
            }
            return Ok(Filter::ValuePath {
                path,
                filter: Box::new(inner),
            });
        }
        self.parse_op_and_value(path)
    }

    fn parse_op_and_value(&mut self, path: AttrPath) -> Result<Filter, FilterError> {
        self.skip_ws();
        let op_pos = self.pos;
        let word = self.take_while(|c| c.is_ascii_alphanumeric());
        if word.eq_ignore_ascii_case("pr") {
            return Ok(Filter::Present(path));
        }
        let Some(op) = CompareOp::parse(&word) else {
            return Err(self.error_at(op_pos, "a comparison operator"));
        };
        let value = self.parse_value()?;
        Ok(Filter::Compare { path, op, value })
    }

    /// `compValue = false / null / true / number / string`, plus bare words.
    fn parse_value(&mut self) -> Result<Value, FilterError> {
        self.skip_ws();
        match self.peek() {
            None | Some(')') | Some(']') => Err(self.error_here("a value")),
            Some('"') => Ok(Value::String(self.parse_string()?)),
            Some(_) => {
                // Bare word: up to whitespace or a closing bracket.
                let word = self.take_while(|c| !c.is_whitespace() && c != ')' && c != ']');
                Ok(bare_value(word))
            }
        }
    }

    /// A JSON string literal, the current character being `"`.
    fn parse_string(&mut self) -> Result<String, FilterError> {
        let start = self.pos;
        self.bump();
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(FilterError::InvalidString {
                    pos: start,
                    reason: "unterminated string",
                });
            };
            self.bump();
            match c {
                '"' => return Ok(out),
                '\\' => {
                    let esc_pos = self.pos;
                    let Some(e) = self.peek() else {
                        return Err(FilterError::InvalidString {
                            pos: start,
                            reason: "unterminated string",
                        });
                    };
                    self.bump();
                    match e {
                        '"' => out.push('"'),
                        '\\' => out.push('\\'),
                        '/' => out.push('/'),
                        'b' => out.push('\u{8}'),
                        'f' => out.push('\u{c}'),
                        'n' => out.push('\n'),
                        'r' => out.push('\r'),
                        't' => out.push('\t'),
                        'u' => out.push(self.parse_unicode_escape(esc_pos)?),
                        _ => {
                            return Err(FilterError::InvalidString {
                                pos: esc_pos,
                                reason: "invalid escape sequence",
                            })
                        }
                    }
                }
                c => out.push(c),
            }
        }
    }

    fn hex4(&mut self, pos: usize) -> Result<u32, FilterError> {
        let mut v = 0u32;
        for _ in 0..4 {
            let d = self
                .peek()
                .and_then(|c| c.to_digit(16))
                .ok_or(FilterError::InvalidString {
                    pos,
                    reason: "\\u must be followed by four hex digits",
                })?;
            self.bump();
            v = v * 16 + d;
        }
        Ok(v)
    }

    /// After `\u`: four hex digits, combining UTF-16 surrogate pairs.
    fn parse_unicode_escape(&mut self, pos: usize) -> Result<char, FilterError> {
        let bad = FilterError::InvalidString {
            pos,
            reason: "invalid unicode escape (unpaired surrogate)",
        };
        let hi = self.hex4(pos)?;
        let code = if (0xD800..0xDC00).contains(&hi) {
            if !(self.eat('\\') && self.eat('u')) {
                return Err(bad);
            }
            let lo = self.hex4(pos)?;
            if !(0xDC00..0xE000).contains(&lo) {
                return Err(bad);
            }
            0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
        } else {
            hi
        };
        char::from_u32(code).ok_or(bad)
    }
}

/// Interprets an unquoted value: keywords, then numbers, else a string.
fn bare_value(word: String) -> Value {
    match word.to_ascii_lowercase().as_str() {
        "true" => return Value::Bool(true),
        "false" => return Value::Bool(false),
        "null" => return Value::Null,
        _ => {}
    }
    if word.starts_with(|c: char| c.is_ascii_digit() || c == '-') {
        if let Ok(n) = serde_json::from_str::<serde_json::Number>(&word) {
            return Value::Number(n);
        }
    }
    Value::String(word)
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(s) = &self.schema {
            write!(f, "{s}:")?;
        }
        f.write_str(&self.attr)?;
        if let Some(s) = &self.sub_attr {
            write!(f, ".{s}")?;
        }
        Ok(())
    }
}

impl fmt::Display for CompareOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Filter {
    /// Binding strength, for parenthesising in `Display`.
    fn precedence(&self) -> u8 {
        match self {
            Filter::Or(..) => 1,
            Filter::And(..) => 2,
            _ => 3,
        }
    }
}

/// Writes `f`, parenthesised when its precedence is below `min`.
fn write_operand(out: &mut fmt::Formatter<'_>, f: &Filter, min: u8) -> fmt::Result {
    if f.precedence() < min {
        write!(out, "({f})")
    } else {
        write!(out, "{f}")
    }
}

/// Canonical form: lowercase keywords, quoted JSON strings, single spaces
/// and only the parentheses needed, so `parse_filter(&f.to_string()) == f`.
impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Filter::Compare { path, op, value } => {
                let v = serde_json::to_string(value).map_err(|_| fmt::Error)?;
                write!(f, "{path} {op} {v}")
            }
            Filter::Present(path) => write!(f, "{path} pr"),
            // Both are left-associative: a right operand of equal
            // precedence needs parentheses to keep its shape.
            Filter::And(l, r) => {
                write_operand(f, l, 2)?;
                f.write_str(" and ")?;
                write_operand(f, r, 3)
            }
            Filter::Or(l, r) => {
                write_operand(f, l, 1)?;
                f.write_str(" or ")?;
                write_operand(f, r, 2)
            }
            Filter::Not(inner) => write!(f, "not ({inner})"),
            Filter::ValuePath { path, filter } => write!(f, "{path}[{filter}]"),
        }
    }
}

// ---------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------

/// Evaluates `filter` against a resource document (top-level object, with
/// extension attributes under their URN key).
///
/// Semantics (RFC 7644 §3.4.2.2 and our choices):
/// - attribute names match document keys case-insensitively;
/// - a multi-valued attribute matches if any of its values matches; a
///   complex value compared without a sub-attribute compares its `value`
///   sub-attribute (`emails co "example.com"`);
/// - strings compare case-insensitively unless the schema says caseExact;
///   unknown attributes compare case-insensitively;
/// - `gt/ge/lt/le` compare strings lexicographically (ISO 8601 dateTimes
///   sort correctly that way) and numbers numerically; booleans and complex
///   values never match them;
/// - `eq null` matches an absent (or null) attribute; `ne` is exactly
///   `not eq`, so `ne` matches a missing attribute and, for multi-valued
///   attributes, means "no value equals";
/// - `pr` is true when some value is not null, not `""`, not `[]`/`{}`;
/// - a URN prefix of the core schema means the top level; an extension URN
///   looks into `doc["urn:…"]`.
pub fn matches(filter: &Filter, resource: &Value, schema: &ResourceSchema) -> bool {
    eval(filter, resource, schema, None)
}

/// Evaluates a value filter (the part inside `[...]`) against one element of
/// the multi-valued attribute `parent`; paths in `filter` are sub-attributes.
pub fn matches_element(
    filter: &Filter,
    element: &Value,
    parent: &AttrPath,
    schema: &ResourceSchema,
) -> bool {
    eval(filter, element, schema, Some(parent))
}

fn eval(f: &Filter, node: &Value, rs: &ResourceSchema, parent: Option<&AttrPath>) -> bool {
    match f {
        Filter::Compare { path, op, value } => compare(node, path, *op, value, rs, parent),
        Filter::Present(path) => lookup(node, path, rs, parent).into_iter().any(is_present),
        Filter::And(a, b) => eval(a, node, rs, parent) && eval(b, node, rs, parent),
        Filter::Or(a, b) => eval(a, node, rs, parent) || eval(b, node, rs, parent),
        Filter::Not(a) => !eval(a, node, rs, parent),
        Filter::ValuePath { path, filter } => lookup(node, path, rs, parent)
            .into_iter()
            .any(|e| eval(filter, e, rs, Some(path))),
    }
}

/// Object member lookup: exact key first, then case-insensitive.
pub fn get_ci<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    let obj = v.as_object()?;
    obj.get(key).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

fn push_flat<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Null => {}
        Value::Array(items) => out.extend(items.iter().filter(|i| !i.is_null())),
        other => out.push(other),
    }
}

/// All values at `path`, multi-valued attributes flattened, nulls dropped.
fn lookup<'a>(
    node: &'a Value,
    path: &AttrPath,
    rs: &ResourceSchema,
    parent: Option<&AttrPath>,
) -> Vec<&'a Value> {
    let container = match (&path.schema, parent) {
        (Some(urn), None) if !rs.is_core(urn) => get_ci(node, urn),
        _ => Some(node),
    };
    let mut out = Vec::new();
    let Some(v) = container.and_then(|c| get_ci(c, &path.attr)) else {
        return out;
    };
    match &path.sub_attr {
        None => push_flat(v, &mut out),
        Some(sub) => match v {
            Value::Array(items) => {
                for item in items {
                    if let Some(s) = get_ci(item, sub) {
                        push_flat(s, &mut out);
                    }
                }
            }
            other => {
                if let Some(s) = get_ci(other, sub) {
                    push_flat(s, &mut out);
                }
            }
        },
    }
    out
}

/// Whether string comparisons on `path` are case-sensitive, per schema.
fn case_exact(path: &AttrPath, rs: &ResourceSchema, parent: Option<&AttrPath>) -> bool {
    let resolved = match parent {
        Some(p) => rs.resolve(p.schema.as_deref(), &p.attr, Some(&path.attr)),
        None => rs.resolve(path.schema.as_deref(), &path.attr, path.sub_attr.as_deref()),
    };
    let Some(r) = resolved else {
        return false;
    };
    let a = r.sub.unwrap_or(r.attr);
    if a.kind == AttrType::Complex {
        // Compared through its "value" sub-attribute.
        return a.sub("value").is_some_and(|v| v.case_exact);
    }
    a.case_exact
}

fn is_present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

fn compare(
    node: &Value,
    path: &AttrPath,
    op: CompareOp,
    fv: &Value,
    rs: &ResourceSchema,
    parent: Option<&AttrPath>,
) -> bool {
    let ce = case_exact(path, rs, parent);
    let values: Vec<&Value> = lookup(node, path, rs, parent)
        .into_iter()
        .filter_map(|v| {
            if v.is_object() {
                get_ci(v, "value")
            } else {
                Some(v)
            }
        })
        .filter(|v| !v.is_null())
        .collect();
    let eq = || {
        if fv.is_null() {
            values.is_empty()
        } else {
            values.iter().any(|v| values_equal(v, fv, ce))
        }
    };
    match op {
        CompareOp::Eq => eq(),
        CompareOp::Ne => !eq(),
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => {
            let Some(needle) = scalar_string(fv) else {
                return false;
            };
            let needle = fold(&needle, ce);
            values.iter().any(|v| {
                scalar_string(v).is_some_and(|s| {
                    let s = fold(&s, ce);
                    match op {
                        CompareOp::Co => s.contains(&needle),
                        CompareOp::Sw => s.starts_with(&needle),
                        _ => s.ends_with(&needle),
                    }
                })
            })
        }
        CompareOp::Gt | CompareOp::Ge | CompareOp::Lt | CompareOp::Le => values.iter().any(|v| {
            order(v, fv, ce).is_some_and(|o| match op {
                CompareOp::Gt => o == Ordering::Greater,
                CompareOp::Ge => o != Ordering::Less,
                CompareOp::Lt => o == Ordering::Less,
                _ => o != Ordering::Greater,
            })
        }),
    }
}

fn fold(s: &str, case_exact: bool) -> String {
    if case_exact {
        s.to_string()
    } else {
        s.to_lowercase()
    }
}

fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn num_cmp(a: &serde_json::Number, b: &serde_json::Number) -> Option<Ordering> {
    match (a.as_i64(), b.as_i64()) {
        (Some(x), Some(y)) => Some(x.cmp(&y)),
        _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}

/// Equality with light coercion: filters are often written without quotes
/// (`employeeNumber eq 42`) or with quoted booleans (`active eq "true"`).
fn values_equal(v: &Value, fv: &Value, ce: bool) -> bool {
    match (v, fv) {
        (Value::String(a), Value::String(b)) => fold(a, ce) == fold(b, ce),
        (Value::Number(a), Value::Number(b)) => num_cmp(a, b) == Some(Ordering::Equal),
        (Value::Bool(a), Value::Bool(b)) => a == b,
        (Value::Bool(a), Value::String(b)) => {
            b.eq_ignore_ascii_case(if *a { "true" } else { "false" })
        }
        (Value::String(a), Value::Number(b)) => *a == b.to_string(),
        (Value::String(a), Value::Bool(b)) => {
            a.eq_ignore_ascii_case(if *b { "true" } else { "false" })
        }
        (Value::Number(a), Value::String(b)) => b
            .trim()
            .parse::<f64>()
            .ok()
            .zip(a.as_f64())
            .is_some_and(|(x, y)| x == y),
        _ => false,
    }
}

fn order(v: &Value, fv: &Value, ce: bool) -> Option<Ordering> {
    match (v, fv) {
        (Value::String(a), Value::String(b)) => Some(fold(a, ce).cmp(&fold(b, ce))),
        (Value::Number(a), Value::Number(b)) => num_cmp(a, b),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::super::schema::{ENTERPRISE_USER_SCHEMA, GROUP_RESOURCE, USER_RESOURCE};
    use super::*;
    use serde_json::json;

    fn p(s: &str) -> Filter {
        match parse_filter(s) {
            Ok(f) => f,
            Err(e) => panic!("{s:?}: {e}"),
        }
    }

    fn path(s: &str) -> AttrPath {
        let (schema, rest) = schema::split_urn(s);
        let mut parts = rest.splitn(2, '.');
        AttrPath {
            schema: schema.map(String::from),
            attr: parts.next().unwrap().to_string(),
            sub_attr: parts.next().map(String::from),
        }
    }

    fn cmp(a: &str, op: CompareOp, v: Value) -> Filter {
        Filter::Compare {
            path: path(a),
            op,
            value: v,
        }
    }

    fn and(a: Filter, b: Filter) -> Filter {
        Filter::And(Box::new(a), Box::new(b))
    }
    fn or(a: Filter, b: Filter) -> Filter {
        Filter::Or(Box::new(a), Box::new(b))
    }
    fn not(a: Filter) -> Filter {
        Filter::Not(Box::new(a))
    }
    fn vp(a: &str, f: Filter) -> Filter {
        Filter::ValuePath {
            path: path(a),
            filter: Box::new(f),
        }
    }

    fn roundtrip(f: &Filter) {
        let s = f.to_string();
        assert_eq!(&p(&s), f, "display: {s}");
    }

    // --- RFC 7644 §3.4.2.2 example filters -------------------------------

    #[test]
    fn rfc_examples_parse() {
        use CompareOp::*;
        let cases: Vec<(&str, Filter)> = vec![
            ("userName eq \"bjensen\"", cmp("userName", Eq, json!("bjensen"))),
            ("name.familyName co \"O'Malley\"", cmp("name.familyName", Co, json!("O'Malley"))),
            ("userName sw \"J\"", cmp("userName", Sw, json!("J"))),
            (
                "urn:ietf:params:scim:schemas:core:2.0:User:userName sw \"J\"",
                cmp("urn:ietf:params:scim:schemas:core:2.0:User:userName", Sw, json!("J")),
            ),
            ("title pr", Filter::Present(path("title"))),
            (
                "meta.lastModified gt \"2011-05-13T04:42:34Z\"",
                cmp("meta.lastModified", Gt, json!("2011-05-13T04:42:34Z")),
            ),
            (
                "meta.lastModified ge \"2011-05-13T04:42:34Z\"",
                cmp("meta.lastModified", Ge, json!("2011-05-13T04:42:34Z")),
            ),
            (
                "meta.lastModified lt \"2011-05-13T04:42:34Z\"",
                cmp("meta.lastModified", Lt, json!("2011-05-13T04:42:34Z")),
            ),
            (
                "meta.lastModified le \"2011-05-13T04:42:34Z\"",
                cmp("meta.lastModified", Le, json!("2011-05-13T04:42:34Z")),
            ),
            (
                "title pr and userType eq \"Employee\"",
                and(Filter::Present(path("title")), cmp("userType", Eq, json!("Employee"))),
            ),
            (
                "title pr or userType eq \"Intern\"",
                or(Filter::Present(path("title")), cmp("userType", Eq, json!("Intern"))),
            ),
            (
                "schemas eq \"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User\"",
                cmp("schemas", Eq, json!(ENTERPRISE_USER_SCHEMA)),
            ),
            (
                "userType eq \"Employee\" and (emails co \"example.com\" or emails.value co \"example.org\")",
                and(
                    cmp("userType", Eq, json!("Employee")),
                    or(cmp("emails", Co, json!("example.com")), cmp("emails.value", Co, json!("example.org"))),
                ),
            ),
            (
                "userType ne \"Employee\" and not (emails co \"example.com\" or emails.value co \"example.org\")",
                and(
                    cmp("userType", Ne, json!("Employee")),
                    not(or(cmp("emails", Co, json!("example.com")), cmp("emails.value", Co, json!("example.org")))),
                ),
            ),
            (
                "userType eq \"Employee\" and (emails.type eq \"work\")",
                and(cmp("userType", Eq, json!("Employee")), cmp("emails.type", Eq, json!("work"))),
            ),
            (
                "userType eq \"Employee\" and emails[type eq \"work\" and value co \"@example.com\"]",
                and(
                    cmp("userType", Eq, json!("Employee")),
                    vp("emails", and(cmp("type", Eq, json!("work")), cmp("value", Co, json!("@example.com")))),
                ),
            ),
            (
                "emails[type eq \"work\" and value co \"@example.com\"] or ims[type eq \"xmpp\" and value co \"@foo.com\"]",
                or(
                    vp("emails", and(cmp("type", Eq, json!("work")), cmp("value", Co, json!("@example.com")))),
                    vp("ims", and(cmp("type", Eq, json!("xmpp")), cmp("value", Co, json!("@foo.com")))),
                ),
            ),
        ];
        for (s, expected) in cases {
            assert_eq!(p(s), expected, "{s}");
            roundtrip(&expected);
        }
    }

    #[test]
    fn urn_qualified_paths() {
        assert_eq!(
            p("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq \"1\""),
            Filter::Compare {
                path: AttrPath {
                    schema: Some(ENTERPRISE_USER_SCHEMA.into()),
                    attr: "employeeNumber".into(),
                    sub_attr: None
                },
                op: CompareOp::Eq,
                value: json!("1"),
            }
        );
        assert_eq!(
            p("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq \"x\""),
            Filter::Compare {
                path: AttrPath {
                    schema: Some(ENTERPRISE_USER_SCHEMA.into()),
                    attr: "manager".into(),
                    sub_attr: Some("value".into())
                },
                op: CompareOp::Eq,
                value: json!("x"),
            }
        );
        // Unknown URNs split at the last ':'.
        let f = p("urn:example:ext:1.0:Thing:color eq \"red\"");
        let Filter::Compare { path, .. } = f else {
            panic!()
        };
        assert_eq!(path.schema.as_deref(), Some("urn:example:ext:1.0:Thing"));
        assert_eq!(path.attr, "color");
    }

    #[test]
    fn keywords_case_insensitive_and_names_kept_as_written() {
        assert_eq!(
            p("UserName EQ \"x\" And Title PR Or NOT (active Eq TRUE)"),
            or(
                and(
                    cmp("UserName", CompareOp::Eq, json!("x")),
                    Filter::Present(path("Title"))
                ),
                not(cmp("active", CompareOp::Eq, json!(true)))
            )
        );
    }

    #[test]
    fn precedence_and_associativity() {
        let a = || Filter::Present(path("a"));
        let b = || Filter::Present(path("b"));
        let c = || Filter::Present(path("c"));
        assert_eq!(p("a pr or b pr and c pr"), or(a(), and(b(), c())));
        assert_eq!(p("a pr and b pr or c pr"), or(and(a(), b()), c()));
        assert_eq!(p("a pr and b pr and c pr"), and(and(a(), b()), c()));
        assert_eq!(p("a pr and (b pr and c pr)"), and(a(), and(b(), c())));
        assert_eq!(p("(a pr or b pr) and c pr"), and(or(a(), b()), c()));
        assert_eq!(p("((a pr))"), a());
        for f in [
            or(a(), and(b(), c())),
            and(a(), or(b(), c())),
            and(a(), and(b(), c())),
            or(a(), or(b(), c())),
            or(or(a(), b()), c()),
            not(and(a(), not(b()))),
            and(or(a(), b()), c()),
        ] {
            roundtrip(&f);
        }
    }

    #[test]
    fn values() {
        let v = |s: &str| match p(&format!("x eq {s}")) {
            Filter::Compare { value, .. } => value,
            _ => unreachable!(),
        };
        assert_eq!(v("\"a\\\"b\\\\c\""), json!("a\"b\\c"));
        assert_eq!(v("\"\\u00e9\\n\\t\\/\""), json!("é\n\t/"));
        assert_eq!(v("\"\\ud83d\\ude00\""), json!("😀"));
        assert_eq!(v("\"ünïcödé\""), json!("ünïcödé"));
        assert_eq!(v("true"), json!(true));
        assert_eq!(v("False"), json!(false));
        assert_eq!(v("null"), Value::Null);
        assert_eq!(v("42"), json!(42));
        assert_eq!(v("-7"), json!(-7));
        assert_eq!(v("3.25"), json!(3.25));
        assert_eq!(v("-0.5e2"), json!(-50.0));
        // Bare words (Microsoft's validator).
        assert_eq!(v("Employee"), json!("Employee"));
        assert_eq!(v("O"), json!("O"));
        assert_eq!(v("example.com"), json!("example.com"));
        assert_eq!(
            v("26118915-6090-4610-87e4-49d8ca9f808d"),
            json!("26118915-6090-4610-87e4-49d8ca9f808d")
        );
        assert_eq!(v("-"), json!("-"));
        assert_eq!(v("\"\""), json!(""));
    }

    #[test]
    fn microsoft_bare_words_and_whitespace() {
        assert_eq!(
            p("userType eq Employee"),
            cmp("userType", CompareOp::Eq, json!("Employee"))
        );
        assert_eq!(
            p("displayName sw O"),
            cmp("displayName", CompareOp::Sw, json!("O"))
        );
        assert_eq!(
            p("emails co example.com"),
            cmp("emails", CompareOp::Co, json!("example.com"))
        );
        assert_eq!(
            p("  userName   eq\t\"x\"\n and\n\n(title   pr )  "),
            and(
                cmp("userName", CompareOp::Eq, json!("x")),
                Filter::Present(path("title"))
            )
        );
        assert_eq!(
            p("(userType eq Employee)"),
            cmp("userType", CompareOp::Eq, json!("Employee"))
        );
        assert_eq!(
            p("emails[type eq work]"),
            vp("emails", cmp("type", CompareOp::Eq, json!("work")))
        );
    }

    #[test]
    fn entra_value_path_with_trailing_sub_attribute() {
        let expected = vp(
            "emails",
            and(
                cmp("type", CompareOp::Eq, json!("work")),
                cmp("value", CompareOp::Eq, json!("a@b.c")),
            ),
        );
        assert_eq!(p("emails[type eq \"work\"].value eq \"a@b.c\""), expected);
        roundtrip(&expected);
        assert_eq!(
            p("emails[type eq \"work\"].value pr"),
            vp(
                "emails",
                and(
                    cmp("type", CompareOp::Eq, json!("work")),
                    Filter::Present(path("value"))
                )
            )
        );
    }

    #[test]
    fn not_is_a_keyword_only_before_paren() {
        assert_eq!(p("notes pr"), Filter::Present(path("notes")));
        assert_eq!(p("not pr"), Filter::Present(path("not")));
        assert_eq!(p("not(a pr)"), not(Filter::Present(path("a"))));
        assert_eq!(p("order eq 1"), cmp("order", CompareOp::Eq, json!(1)));
        assert_eq!(p("members.$ref pr"), Filter::Present(path("members.$ref")));
    }

    // --- Errors ----------------------------------------------------------

    #[test]
    fn error_messages_name_position() {
        let e = parse_filter("userName xq \"x\"").unwrap_err();
        assert_eq!(
            e.to_string(),
            "unexpected token 'xq' at position 9: expected a comparison operator"
        );
        let e = parse_filter("userName eq").unwrap_err();
        assert_eq!(
            e,
            FilterError::UnexpectedEnd {
                pos: 11,
                expected: "a value"
            }
        );
        assert!(e.to_string().contains("position 11"));
    }

    #[test]
    fn errors() {
        let err = |s: &str| parse_filter(s).unwrap_err();
        assert_eq!(err(""), FilterError::Empty);
        assert_eq!(err("   "), FilterError::Empty);
        assert!(matches!(
            err("(userName eq \"x\""),
            FilterError::UnexpectedEnd { .. }
        ));
        assert!(matches!(
            err("userName eq \"x\")"),
            FilterError::Unexpected { pos: 15, .. }
        ));
        assert!(matches!(err("((a pr)"), FilterError::UnexpectedEnd { .. }));
        assert!(matches!(
            err("userName eq"),
            FilterError::UnexpectedEnd { .. }
        ));
        assert!(matches!(
            err("userName eq )"),
            FilterError::Unexpected { .. }
        ));
        assert!(matches!(err("userName"), FilterError::UnexpectedEnd { .. }));
        assert!(matches!(
            err("userName like \"x\""),
            FilterError::Unexpected { .. }
        ));
        assert!(matches!(
            err("userName eq \"x\" xor a pr"),
            FilterError::Unexpected { .. }
        ));
        assert!(matches!(
            err("userName eq \"x\" and"),
            FilterError::UnexpectedEnd { .. }
        ));
        assert!(matches!(
            err("userName eq \"unterminated"),
            FilterError::InvalidString { .. }
        ));
        assert!(matches!(
            err("userName eq \"bad \\q escape\""),
            FilterError::InvalidString { .. }
        ));
        assert!(matches!(
            err("userName eq \"\\u12\""),
            FilterError::InvalidString { .. }
        ));
        assert!(matches!(
            err("userName eq \"\\ud800\""),
            FilterError::InvalidString { .. }
        ));
        assert!(matches!(
            err("userName eq \"\\udc00\""),
            FilterError::InvalidString { .. }
        ));
        assert!(matches!(
            err("a.b.c pr"),
            FilterError::InvalidAttrPath { .. }
        ));
        assert!(matches!(
            err("1abc pr"),
            FilterError::InvalidAttrPath { .. }
        ));
        assert!(matches!(err("a. pr"), FilterError::InvalidAttrPath { .. }));
        assert!(matches!(
            err("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User pr"),
            FilterError::InvalidAttrPath { .. }
        ));
        assert!(matches!(
            err("a[b[c eq 1]]"),
            FilterError::NestedValuePath { .. }
        ));
        assert!(matches!(err("a[b eq 1"), FilterError::UnexpectedEnd { .. }));
        assert!(matches!(err("a[]"), FilterError::Unexpected { .. }));
        assert!(matches!(
            err("a.b[c eq 1]"),
            FilterError::InvalidAttrPath { .. }
        ));
        assert!(matches!(
            err("not (a pr"),
            FilterError::UnexpectedEnd { .. }
        ));
        assert!(matches!(err("and"), FilterError::UnexpectedEnd { .. }));
        assert!(matches!(
            err("ü eq 1"),
            FilterError::Unexpected { pos: 0, .. }
        ));
        assert!(matches!(
            err("\u{0}\u{1}\u{ff}"),
            FilterError::Unexpected { .. }
        ));
        assert!(matches!(
            err("emails[type eq \"work\"]."),
            FilterError::UnexpectedEnd { .. }
        ));
        assert!(matches!(
            err("emails[type eq \"work\"].value"),
            FilterError::UnexpectedEnd { .. }
        ));
    }

    #[test]
    fn too_deep_and_too_long() {
        let ok = format!("{}a pr{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert_eq!(p(&ok), Filter::Present(path("a")));
        let deep = format!(
            "{}a pr{}",
            "(".repeat(MAX_DEPTH + 1),
            ")".repeat(MAX_DEPTH + 1)
        );
        assert!(matches!(
            parse_filter(&deep),
            Err(FilterError::TooDeep { .. })
        ));
        let nots = format!("{}a pr{}", "not (".repeat(100), ")".repeat(100));
        assert!(matches!(
            parse_filter(&nots),
            Err(FilterError::TooDeep { .. })
        ));
        // Unbalanced deep input fails on depth before anything else.
        assert!(matches!(
            parse_filter(&"(".repeat(4000)),
            Err(FilterError::TooDeep { .. })
        ));
        let long = format!("userName eq \"{}\"", "x".repeat(MAX_INPUT_LEN));
        assert!(matches!(
            parse_filter(&long),
            Err(FilterError::TooLong { .. })
        ));
        // A long flat chain is fine (iterative and/or) and evaluates.
        let chain = vec!["a pr"; 400].join(" and ");
        let f = p(&chain);
        assert!(!matches(&f, &json!({}), &USER_RESOURCE));
        assert!(matches(&f, &json!({"a": 1}), &USER_RESOURCE));
        roundtrip(&f);
    }

    /// Tiny deterministic PRNG so the fuzz-style tests need no crates.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    fn gen_filter(r: &mut Rng, depth: usize, in_bracket: bool) -> Filter {
        let paths = [
            "userName",
            "name.givenName",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
            "urn:ietf:params:scim:schemas:core:2.0:User:title",
            "$ref",
        ];
        let values = [
            json!("x"),
            json!("quote\" back\\ nl\n é 😀"),
            json!(1),
            json!(-2.5),
            json!(true),
            Value::Null,
            json!(""),
        ];
        let ops = [
            CompareOp::Eq,
            CompareOp::Ne,
            CompareOp::Co,
            CompareOp::Sw,
            CompareOp::Ew,
            CompareOp::Gt,
            CompareOp::Ge,
            CompareOp::Lt,
            CompareOp::Le,
        ];
        let leaf = depth == 0 || r.below(3) == 0;
        if leaf {
            let pa = path(paths[r.below(paths.len())]);
            return if r.below(4) == 0 {
                Filter::Present(pa)
            } else {
                Filter::Compare {
                    path: pa,
                    op: ops[r.below(ops.len())],
                    value: values[r.below(values.len())].clone(),
                }
            };
        }
        match r.below(if in_bracket { 3 } else { 4 }) {
            0 => and(
                gen_filter(r, depth - 1, in_bracket),
                gen_filter(r, depth - 1, in_bracket),
            ),
            1 => or(
                gen_filter(r, depth - 1, in_bracket),
                gen_filter(r, depth - 1, in_bracket),
            ),
            2 => not(gen_filter(r, depth - 1, in_bracket)),
            _ => vp("emails", gen_filter(r, depth - 1, true)),
        }
    }

    #[test]
    fn display_parse_roundtrip_property() {
        let mut r = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..2000 {
            let f = gen_filter(&mut r, 5, false);
            roundtrip(&f);
        }
    }

    #[test]
    fn fuzz_no_panics() {
        let seeds = [
            "userName eq \"bjensen\"",
            "emails[type eq \"work\" and value co \"@example.com\"] or ims[type eq \"xmpp\"]",
            "not (a pr) and (b gt 1.5e3 or c eq \"\\u00e9\")",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq x",
            "emails[type eq \"work\"].value eq \"a@b.c\"",
        ];
        let alphabet: Vec<char> = "()[]\"\\.:$ -aeqnotrpu0123456789éü😀\u{0}\t"
            .chars()
            .collect();
        let mut r = Rng(42);
        for _ in 0..20_000 {
            let mut s: Vec<char> = seeds[r.below(seeds.len())].chars().collect();
            for _ in 0..=r.below(6) {
                let i = r.below(s.len() + 1);
                match r.below(3) {
                    0 if i < s.len() => {
                        s.remove(i);
                    }
                    1 if i < s.len() => s[i] = alphabet[r.below(alphabet.len())],
                    _ => s.insert(i, alphabet[r.below(alphabet.len())]),
                }
            }
            let input: String = s.into_iter().collect();
            if let Ok(f) = parse_filter(&input) {
                // Whatever parses must re-serialise to an equivalent filter
                // and evaluate without panicking.
                roundtrip(&f);
                let _ = matches(
                    &f,
                    &json!({"emails": [{"type": "work"}], "a": 1}),
                    &USER_RESOURCE,
                );
            }
        }
        // Random garbage, including non-ASCII.
        for _ in 0..5_000 {
            let n = r.below(40);
            let input: String = (0..n)
                .map(|_| char::from_u32(r.below(0x2FF) as u32).unwrap_or('?'))
                .collect();
            let _ = parse_filter(&input);
        }
    }

    // --- Evaluation ------------------------------------------------------

    fn bjensen() -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE_USER_SCHEMA],
            "id": "2819c223-7f76-453a-919d-413861904646",
            "externalId": "BJensen",
            "userName": "bjensen@example.com",
            "name": {"familyName": "O'Malley", "givenName": "Barbara"},
            "title": "Tour Guide",
            "userType": "Employee",
            "active": true,
            "emails": [
                {"value": "bjensen@example.com", "type": "work", "primary": true},
                {"value": "babs@jensen.org", "type": "home"}
            ],
            "ims": [{"value": "someaimhandle", "type": "aim"}],
            "meta": {"lastModified": "2011-05-13T04:42:34Z", "created": "2010-01-23T04:56:22Z"},
            ENTERPRISE_USER_SCHEMA: {
                "employeeNumber": "701984",
                "manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d"}
            }
        })
    }

    fn m(s: &str) -> bool {
        matches(&p(s), &bjensen(), &USER_RESOURCE)
    }

    #[test]
    fn evaluate_rfc_examples() {
        assert!(m("userName eq \"BJENSEN@example.com\""));
        assert!(m("name.familyName co \"o'malley\""));
        assert!(m("userName sw \"B\""));
        assert!(m(
            "urn:ietf:params:scim:schemas:core:2.0:User:userName sw \"b\""
        ));
        assert!(m("title pr"));
        assert!(!m("nickName pr"));
        assert!(m("meta.lastModified gt \"2011-05-13T04:42:33Z\""));
        assert!(!m("meta.lastModified gt \"2011-05-13T04:42:34Z\""));
        assert!(m("meta.lastModified ge \"2011-05-13T04:42:34Z\""));
        assert!(m("meta.lastModified lt \"2012-01-01T00:00:00Z\""));
        assert!(m("meta.lastModified le \"2011-05-13T04:42:34Z\""));
        assert!(!m("meta.lastModified lt \"2011-05-13T04:42:34Z\""));
        assert!(m("title pr and userType eq \"Employee\""));
        assert!(m("title pr or userType eq \"Intern\""));
        assert!(!m("nickName pr or userType eq \"Intern\""));
        assert!(m(
            "schemas eq \"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User\""
        ));
        assert!(m("userType eq \"Employee\" and (emails co \"example.com\" or emails.value co \"example.org\")"));
        assert!(!m("userType ne \"Employee\" and not (emails co \"example.com\" or emails.value co \"example.org\")"));
        assert!(m("userType eq \"Employee\" and (emails.type eq \"work\")"));
        assert!(m(
            "userType eq \"Employee\" and emails[type eq \"work\" and value co \"@example.com\"]"
        ));
        assert!(!m("emails[type eq \"home\" and value co \"@example.com\"]"));
        assert!(m("emails[type eq \"work\" and value co \"@example.com\"] or ims[type eq \"xmpp\" and value co \"@foo.com\"]"));
        assert!(m("ims[type eq \"aim\"]"));
    }

    #[test]
    fn evaluate_semantics() {
        // caseExact: id and externalId are caseExact, userName is not.
        assert!(!m("externalId eq \"bjensen\""));
        assert!(m("externalId eq \"BJensen\""));
        assert!(m("ID eq \"2819c223-7f76-453a-919d-413861904646\""));
        assert!(!m("id eq \"2819C223-7F76-453A-919D-413861904646\""));
        // Keys match case-insensitively.
        assert!(m("USERNAME eq \"bjensen@example.com\""));
        assert!(m("Name.FamilyName eq \"O'Malley\""));
        // Missing attributes.
        assert!(!m("nickName eq \"x\""));
        assert!(m("nickName ne \"x\""));
        assert!(m("nickName eq null"));
        assert!(!m("title eq null"));
        assert!(m("title ne null"));
        // ne on multi-valued means "no value equals".
        assert!(!m("emails.type ne \"work\""));
        assert!(m("emails.type ne \"other\""));
        // Booleans.
        assert!(m("active eq true"));
        assert!(m("active eq \"True\""));
        assert!(!m("active eq false"));
        assert!(!m("active gt false"));
        assert!(!m("active co \"t\""));
        // Complex compared by value; ordering on complex without value false.
        assert!(m("emails eq \"babs@jensen.org\""));
        assert!(!m("name gt \"a\""));
        assert!(m("emails ew \".ORG\""));
        // Extension attributes.
        assert!(m("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq \"701984\""));
        assert!(m(
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq 701984"
        ));
        assert!(m("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq \"26118915-6090-4610-87e4-49d8ca9f808d\""));
        assert!(m(
            "URN:IETF:params:scim:schemas:extension:enterprise:2.0:User:manager pr"
        ));
        assert!(!m("employeeNumber pr"));
        // Entra's trailing sub-attribute form.
        assert!(m(
            "emails[type eq \"work\"].value eq \"bjensen@example.com\""
        ));
        assert!(!m(
            "emails[type eq \"home\"].value eq \"bjensen@example.com\""
        ));
        // Not.
        assert!(m("not (nickName pr)"));
    }

    #[test]
    fn evaluate_numbers_and_presence() {
        let doc =
            json!({"n": 10, "f": 2.5, "s": "", "arr": [], "obj": {}, "nul": null, "list": [1, 5]});
        let t = |s: &str| matches(&p(s), &doc, &USER_RESOURCE);
        assert!(t("n gt 9"));
        assert!(t("n ge 10"));
        assert!(!t("n lt 10"));
        assert!(t("n le 10.0"));
        assert!(t("f lt 3"));
        assert!(t("n eq 10.0"));
        assert!(t("n eq \"10\""));
        assert!(!t("n gt \"9\""));
        assert!(t("list gt 4"));
        assert!(!t("list gt 5"));
        assert!(!t("s pr"));
        assert!(!t("arr pr"));
        assert!(!t("obj pr"));
        assert!(!t("nul pr"));
        assert!(t("n pr"));
        assert!(!t("missing pr"));
        assert!(t("n co \"1\""));
    }

    #[test]
    fn evaluate_group_members_and_elements() {
        let g = json!({"displayName": "Tour Guides", "members": [{"value": "a1", "display": "A"}, {"value": "b2"}]});
        assert!(matches(&p("members[value eq \"A1\"]"), &g, &GROUP_RESOURCE));
        assert!(matches(&p("members.value eq \"b2\""), &g, &GROUP_RESOURCE));
        assert!(matches(
            &p("displayName eq \"tour guides\""),
            &g,
            &GROUP_RESOURCE
        ));
        assert!(!matches(
            &p("members[value eq \"c3\"]"),
            &g,
            &GROUP_RESOURCE
        ));

        let parent = path("emails");
        let f = p("type eq \"WORK\" and primary eq true");
        assert!(matches_element(
            &f,
            &json!({"type": "work", "primary": true}),
            &parent,
            &USER_RESOURCE
        ));
        assert!(!matches_element(
            &f,
            &json!({"type": "work"}),
            &parent,
            &USER_RESOURCE
        ));
    }
}
