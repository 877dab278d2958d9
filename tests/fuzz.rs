//! Fuzzing of the pure SCIM parsers and the PATCH engine on stable Rust (issue #7).
//!
//! cargo-fuzz needs a nightly toolchain and a sanitizer-instrumented build of the whole
//! crate; this machine and CI have stable Rust only, so the targets run under a seeded
//! random harness instead: grammar-aware generation (tokens of the filter/path language,
//! deep nesting, long inputs) plus mutation of valid seeds. Each target checks:
//! - no panic (caught and reported with the input and the seed);
//! - bounded time per input;
//! - the length and depth limits give their clear errors (`TooLong`, `TooDeep`);
//! - PATCH is all-or-nothing: on error the document is unchanged.
//!
//! `cargo test --test fuzz` runs each target for `FUZZ_SECONDS` (default 2) seconds;
//! `scripts/fuzz.sh` runs them longer in release mode. Inputs that failed are written to
//! `FUZZ_SAVE_DIR/<target>/` (scripts/fuzz.sh: fuzz/regressions/) and every file under
//! fuzz/regressions/<target>/ is replayed by `regressions_replay`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use scimbridge::scim::filter::{parse_filter, FilterError, MAX_DEPTH, MAX_INPUT_LEN};
use scimbridge::scim::patch::{apply, PatchOperation};
use scimbridge::scim::path::parse_path;
use scimbridge::scim::schema::USER_RESOURCE;

/// Longest one input may take (debug build, shared CPU).
const PER_INPUT: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, Debug)]
enum Target {
    Filter,
    Path,
    Patch,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Filter => "filter",
            Target::Path => "path",
            Target::Patch => "patch",
        }
    }

    /// Runs one input; Err says what property failed.
    fn check(self, input: &str) -> Result<(), String> {
        let started = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| match self {
            Target::Filter => check_parser(input, true, |s| parse_filter(s).map(|_| ())),
            Target::Path => check_parser(input, false, |s| parse_path(s).map(|_| ())),
            Target::Patch => check_patch(input),
        }));
        let took = started.elapsed();
        match outcome {
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                Err(format!("panicked: {msg}"))
            }
            Ok(Err(e)) => Err(e),
            Ok(Ok(())) if took > PER_INPUT => Err(format!("took {took:?}")),
            Ok(Ok(())) => Ok(()),
        }
    }
}

/// `filter`: the input is a filter, where leading parentheses are grouping (a path
/// rejects them as not an attribute path, before any nesting).
fn check_parser(
    input: &str,
    filter: bool,
    parse: impl Fn(&str) -> Result<(), FilterError>,
) -> Result<(), String> {
    let res = parse(input);
    if input.len() > MAX_INPUT_LEN {
        return match res {
            Err(FilterError::TooLong { len, max })
                if len == input.len() && max == MAX_INPUT_LEN =>
            {
                Ok(())
            }
            other => Err(format!(
                "{} bytes: expected TooLong, got {other:?}",
                input.len()
            )),
        };
    }
    if let Err(e) = &res {
        if e.to_string().is_empty() {
            return Err("an error without a message".into());
        }
    }
    // Pure nesting beyond the limit (a prefix of openers only) must fail on depth.
    let openers: String = input
        .chars()
        .take_while(|c| matches!(c, '(' | ' '))
        .collect();
    if filter
        && openers.matches('(').count() > MAX_DEPTH + 1
        && !matches!(res, Err(FilterError::TooDeep { .. }))
    {
        return Err(format!(
            "{} open parentheses: expected TooDeep, got {res:?}",
            openers.matches('(').count()
        ));
    }
    Ok(())
}

/// The fixed User document the PATCH target works on.
fn user_doc() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
        "id": "2819c223-7f76-453a-919d-413861904646",
        "userName": "bjensen@example.com",
        "externalId": "701984",
        "active": true,
        "displayName": "Babs Jensen",
        "title": "Tour Guide",
        "name": {"givenName": "Barbara", "familyName": "Jensen", "formatted": "Ms. Barbara J Jensen III"},
        "emails": [
            {"value": "bjensen@example.com", "type": "work", "primary": true},
            {"value": "babs@jensen.org", "type": "home"}
        ],
        "phoneNumbers": [{"value": "555-555-8377", "type": "work"}],
        "roles": [{"value": "Standard"}],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
            "employeeNumber": "701984",
            "manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d"}
        }
    })
}

/// `input` is the JSON of the `Operations` array (anything: most inputs are not even
/// operations, which must then fail to deserialise, not panic).
fn check_patch(input: &str) -> Result<(), String> {
    let Ok(ops) = serde_json::from_str::<Vec<PatchOperation>>(input) else {
        return Ok(());
    };
    let before = user_doc();
    let mut doc = before.clone();
    match apply(&mut doc, &ops, &USER_RESOURCE) {
        Ok(()) => {
            if !doc.is_object() {
                return Err("PATCH left a non-object document".into());
            }
            Ok(())
        }
        Err(e) if doc != before => Err(format!("failed ({e}) but changed the document")),
        Err(e) if e.to_string().is_empty() => Err("an error without a message".into()),
        Err(_) => Ok(()),
    }
}

// ---------------------------------------------------------------------------------
// Generation

const ATTRS: &[&str] = &[
    "userName",
    "name",
    "name.givenName",
    "name.familyName",
    "emails",
    "emails.value",
    "emails.type",
    "emails.primary",
    "phoneNumbers",
    "roles",
    "roles.value",
    "active",
    "displayName",
    "title",
    "externalId",
    "id",
    "meta.lastModified",
    "members",
    "members.value",
    "urn:ietf:params:scim:schemas:core:2.0:User:userName",
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber",
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
    "x",
    "$ref",
    "a.b.c.d",
];
const OPS: &[&str] = &[
    "eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le", "pr", "EQ", "Pr", "and", "or", "not",
    "AND", "xx",
];
const VALUES: &[&str] = &[
    "\"x\"",
    "\"\"",
    "\"a\\\"b\"",
    "\"\\u00e9\"",
    "\"\\\\\"",
    "true",
    "false",
    "null",
    "1",
    "-1.5e10",
    "1e999999",
    "\"2011-05-13T04:42:34Z\"",
    "\"unterminated",
    "'single'",
    "é",
    "\u{0}",
    "\u{10FFFF}",
    "0x10",
    "--1",
];
const PUNCT: &[&str] = &[
    "(", ")", "[", "]", ".", " ", "  ", "\t", ":", "\"", "\\", ",", "=", "$",
];

fn pick<'a>(r: &mut StdRng, xs: &[&'a str]) -> &'a str {
    xs[r.gen_range(0..xs.len())]
}

/// A (mostly) well-formed filter of bounded depth.
fn gen_filter(r: &mut StdRng, depth: usize) -> String {
    if depth == 0 || r.gen_ratio(2, 5) {
        return match r.gen_range(0..6) {
            0 => format!("{} pr", pick(r, ATTRS)),
            1 => format!("{} {} {}", pick(r, ATTRS), pick(r, OPS), pick(r, VALUES)),
            _ => format!("{} eq {}", pick(r, ATTRS), pick(r, VALUES)),
        };
    }
    match r.gen_range(0..5) {
        0 => format!(
            "{} and {}",
            gen_filter(r, depth - 1),
            gen_filter(r, depth - 1)
        ),
        1 => format!(
            "{} or {}",
            gen_filter(r, depth - 1),
            gen_filter(r, depth - 1)
        ),
        2 => format!("not ({})", gen_filter(r, depth - 1)),
        3 => format!("({})", gen_filter(r, depth - 1)),
        _ => format!("emails[{}]", gen_filter(r, depth - 1)),
    }
}

fn gen_path(r: &mut StdRng) -> String {
    match r.gen_range(0..4) {
        0 => pick(r, ATTRS).to_string(),
        1 => format!("{}[{}]", pick(r, ATTRS), gen_filter(r, 2)),
        2 => format!(
            "{}[{}].{}",
            pick(r, ATTRS),
            gen_filter(r, 1),
            pick(r, &["value", "type", "display", "x"])
        ),
        _ => token_soup(r, 12),
    }
}

/// Random tokens of the language glued together: mostly invalid, hits error paths.
fn token_soup(r: &mut StdRng, max: usize) -> String {
    let n = r.gen_range(0..=max);
    let mut s = String::new();
    for _ in 0..n {
        let t = match r.gen_range(0..4) {
            0 => pick(r, ATTRS),
            1 => pick(r, OPS),
            2 => pick(r, VALUES),
            _ => pick(r, PUNCT),
        };
        s.push_str(t);
        if r.gen_bool(0.6) {
            s.push(' ');
        }
    }
    s
}

/// Byte-level mutation, kept valid UTF-8 (the parsers take `&str`).
fn mutate(r: &mut StdRng, s: &str) -> String {
    let mut chars: Vec<char> = s.chars().collect();
    for _ in 0..r.gen_range(1..=4) {
        let at = if chars.is_empty() {
            0
        } else {
            r.gen_range(0..=chars.len())
        };
        match r.gen_range(0..4) {
            0 if at < chars.len() => {
                chars.remove(at);
            }
            1 => {
                let c = char::from_u32(r.gen_range(0..0x300)).unwrap_or('?');
                chars.insert(at, c);
            }
            2 => {
                let t: Vec<char> = pick(r, PUNCT).chars().collect();
                for (k, c) in t.into_iter().enumerate() {
                    chars.insert(at + k, c);
                }
            }
            _ if at < chars.len() => {
                let c = chars[r.gen_range(0..chars.len())];
                chars[at] = c;
            }
            _ => {}
        }
    }
    chars.into_iter().collect()
}

/// Deep nesting and long inputs: the limits must answer, quickly.
fn gen_extreme(r: &mut StdRng) -> String {
    let n = r.gen_range(1..=4 * MAX_DEPTH);
    match r.gen_range(0..7) {
        0 => "(".repeat(n),
        1 => format!("{}userName eq \"x\"{}", "(".repeat(n), ")".repeat(n)),
        2 => format!("{}userName pr{}", "not (".repeat(n), ")".repeat(n)),
        3 => format!("{}{}", "emails[".repeat(n), "value pr"),
        4 => {
            let len = r.gen_range(MAX_INPUT_LEN - 8..MAX_INPUT_LEN + 64);
            "a".repeat(len)
        }
        5 => {
            let mut s = String::from("userName eq \"");
            s.push_str(&"x".repeat(r.gen_range(MAX_INPUT_LEN - 20..MAX_INPUT_LEN + 20)));
            s.push('"');
            s
        }
        _ => vec!["userName pr"; r.gen_range(1..600)].join(" and "),
    }
}

fn gen_json_value(r: &mut StdRng, depth: usize) -> Value {
    if depth == 0 || r.gen_ratio(1, 2) {
        return match r.gen_range(0..7) {
            0 => Value::Null,
            1 => json!(r.gen_bool(0.5)),
            2 => json!(r.gen_range(-5..1000)),
            3 => json!(1.5),
            4 => json!(pick(
                r,
                &["x", "", "Admin", "work", "bjensen@example.com", "True", "é"]
            )),
            5 => json!([]),
            _ => json!({}),
        };
    }
    if r.gen_bool(0.5) {
        Value::Array(
            (0..r.gen_range(0..4))
                .map(|_| gen_json_value(r, depth - 1))
                .collect(),
        )
    } else {
        let mut m = serde_json::Map::new();
        for _ in 0..r.gen_range(0..4) {
            let k = match r.gen_range(0..3) {
                0 => pick(r, ATTRS).to_string(),
                1 => pick(
                    r,
                    &["value", "type", "primary", "display", "givenName", "$ref"],
                )
                .to_string(),
                _ => token_soup(r, 2),
            };
            m.insert(k, gen_json_value(r, depth - 1));
        }
        Value::Object(m)
    }
}

fn gen_ops(r: &mut StdRng) -> String {
    let ops: Vec<Value> = (0..r.gen_range(0..5))
        .map(|_| {
            let mut m = serde_json::Map::new();
            m.insert(
                "op".into(),
                json!(pick(
                    r,
                    &["add", "replace", "remove", "Add", "REPLACE", "move", ""]
                )),
            );
            if r.gen_ratio(4, 5) {
                m.insert("path".into(), json!(gen_path(r)));
            }
            if r.gen_ratio(4, 5) {
                m.insert("value".into(), gen_json_value(r, 4));
            }
            Value::Object(m)
        })
        .collect();
    let s = Value::Array(ops).to_string();
    if r.gen_ratio(1, 10) {
        mutate(r, &s)
    } else {
        s
    }
}

fn generate(target: Target, r: &mut StdRng) -> String {
    match target {
        Target::Filter => match r.gen_range(0..10) {
            0..=3 => gen_filter(r, 4),
            4..=5 => {
                let f = gen_filter(r, 3);
                mutate(r, &f)
            }
            6..=7 => token_soup(r, 30),
            _ => gen_extreme(r),
        },
        Target::Path => match r.gen_range(0..10) {
            0..=4 => gen_path(r),
            5..=6 => {
                let p = gen_path(r);
                mutate(r, &p)
            }
            7 => token_soup(r, 20),
            _ => gen_extreme(r),
        },
        Target::Patch => gen_ops(r),
    }
}

// ---------------------------------------------------------------------------------
// Driver

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn regressions_dir(target: Target) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target.name())
}

fn save(target: Target, input: &str) -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("FUZZ_SAVE_DIR")?).join(target.name());
    std::fs::create_dir_all(&dir).ok()?;
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    input.hash(&mut h);
    let path = dir.join(format!("found-{:016x}.txt", h.finish()));
    std::fs::write(&path, input).ok()?;
    Some(path)
}

/// Peak resident memory of this process in KiB (Linux), to bound memory use.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn run(target: Target) {
    // Quiet panics: they are caught and reported with their input.
    std::panic::set_hook(Box::new(|_| {}));
    let seconds = env_u64("FUZZ_SECONDS", 2);
    let seed = env_u64(
        "FUZZ_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(7),
    );
    let mut r = StdRng::seed_from_u64(seed);
    let started = Instant::now();
    let (mut runs, mut found) = (0u64, Vec::new());
    while started.elapsed() < Duration::from_secs(seconds) && runs < 50_000_000 {
        let input = generate(target, &mut r);
        runs += 1;
        if let Err(why) = target.check(&input) {
            let saved = save(target, &input);
            found.push(format!("{why}; input {input:?} (saved: {saved:?})"));
            if found.len() >= 5 {
                break;
            }
        }
    }
    let _ = std::panic::take_hook();
    let rss = peak_rss_kib().unwrap_or(0);
    println!(
        "fuzz {}: {runs} inputs in {:.1}s (seed {seed}), {} failing, peak RSS {} MiB",
        target.name(),
        started.elapsed().as_secs_f64(),
        found.len(),
        rss / 1024
    );
    assert!(
        found.is_empty(),
        "fuzz {} (FUZZ_SEED={seed}):\n{}",
        target.name(),
        found.join("\n")
    );
    assert!(
        rss < 1024 * 1024,
        "peak RSS {rss} KiB: memory is not bounded"
    );
}

#[test]
fn fuzz_filter() {
    run(Target::Filter);
}

#[test]
fn fuzz_path() {
    run(Target::Path);
}

#[test]
fn fuzz_patch() {
    run(Target::Patch);
}

/// Every input kept under fuzz/regressions/<target>/ still passes its target's checks.
#[test]
fn regressions_replay() {
    let mut n = 0;
    for target in [Target::Filter, Target::Path, Target::Patch] {
        let Ok(entries) = std::fs::read_dir(regressions_dir(target)) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            if path.extension().and_then(|e| e.to_str()) != Some("txt") {
                continue;
            }
            let input = std::fs::read_to_string(&path).expect("read regression input");
            if let Err(why) = target.check(&input) {
                panic!("{}: {why}", path.display());
            }
            n += 1;
        }
    }
    assert!(n > 0, "no regression inputs found under fuzz/regressions/");
}

/// The limits answer with their own errors (what the fuzz targets rely on).
#[test]
fn limits_give_clear_errors() {
    let deep = format!(
        "{}userName pr{}",
        "(".repeat(MAX_DEPTH + 1),
        ")".repeat(MAX_DEPTH + 1)
    );
    assert!(
        matches!(parse_filter(&deep), Err(FilterError::TooDeep { .. })),
        "{:?}",
        parse_filter(&deep)
    );
    let very_deep = "(".repeat(MAX_INPUT_LEN);
    assert!(matches!(
        parse_filter(&very_deep),
        Err(FilterError::TooDeep { .. })
    ));
    let long = "a".repeat(MAX_INPUT_LEN + 1);
    assert!(matches!(
        parse_filter(&long),
        Err(FilterError::TooLong { .. })
    ));
    assert!(matches!(
        parse_path(&long),
        Err(FilterError::TooLong { .. })
    ));
    let msg = parse_filter(&long)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(msg.contains("at most 4096 bytes"), "{msg}");
    let deep_path = format!(
        "emails[{}value pr{}]",
        "(".repeat(MAX_DEPTH + 1),
        ")".repeat(MAX_DEPTH + 1)
    );
    assert!(
        matches!(parse_path(&deep_path), Err(FilterError::TooDeep { .. })),
        "{:?}",
        parse_path(&deep_path)
    );
}
