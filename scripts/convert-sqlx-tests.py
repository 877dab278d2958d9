#!/usr/bin/env python3
"""Converts `#[sqlx::test] async fn name(pool: PgPool)` tests to the store-agnostic harness
of tests/api/db.rs (a fresh Postgres database with DATABASE_URL, else a temporary
embedded store), and drops `use sqlx::PgPool;` where nothing else uses it. Idempotent;
run it over new tests, then `cargo fmt --all`:

    python3 scripts/convert-sqlx-tests.py && cargo fmt --all
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
TEST = re.compile(
    r"#\[sqlx::test\]\s*\n"
    r"((?:[ \t]*#\[[^\]\n]*\]\s*\n)*)"  # other attributes (#[ignore], ...)
    r"([ \t]*)async fn (\w+)\(\s*(\w+): (?:sqlx::)?PgPool,?\s*\)\s*\{"
)


def convert(text):
    def repl(m):
        attrs, indent, name, var = m.group(1), m.group(2), m.group(3), m.group(4)
        return (
            f"#[tokio::test]\n{attrs}{indent}async fn {name}() {{\n"
            f"{indent}    let db = crate::db::test_db().await;\n"
            f"{indent}    let {var} = db.pool();"
        )

    text, n = TEST.subn(repl, text)
    if n and "use sqlx::PgPool;\n" in text:
        rest = text.replace("use sqlx::PgPool;\n", "", 1)
        if not re.search(r"\bPgPool\b", rest):
            text = rest
    return text, n


def main():
    files = [pathlib.Path(p) for p in sys.argv[1:]] or sorted((ROOT / "tests").rglob("*.rs"))
    total = 0
    for path in files:
        old = path.read_text()
        new, n = convert(old)
        if new != old:
            path.write_text(new)
        total += n
        if n:
            print(f"{path.relative_to(ROOT)}: {n} test(s) converted")
    attr = re.compile(r"^\s*#\[sqlx::test", re.M)
    left = [str(p.relative_to(ROOT)) for p in files if attr.search(p.read_text())]
    print(f"{total} converted")
    if left:
        print("not converted (another signature; convert by hand):", ", ".join(left), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
