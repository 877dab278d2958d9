#!/usr/bin/env bash
# Fuzzes the SCIM filter parser, the attribute-path parser and the PATCH engine for a
# bounded time each (tests/fuzz.rs: a seeded, grammar-aware harness on stable Rust;
# cargo-fuzz would need nightly). Inputs that fail are saved to fuzz/regressions/<target>/
# and replayed by `cargo test --test fuzz regressions_replay` from then on.
#   bash scripts/fuzz.sh                 # 60 s per target
#   FUZZ_SECONDS=600 FUZZ_SEED=42 bash scripts/fuzz.sh filter
set -euo pipefail
cd "$(dirname "$0")/.."
export FUZZ_SECONDS="${FUZZ_SECONDS:-60}"
export FUZZ_SAVE_DIR="${FUZZ_SAVE_DIR:-$PWD/fuzz/regressions}"
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(filter path patch)
cargo test --locked --quiet --test fuzz --no-run
status=0
for t in "${targets[@]}"; do
  cargo test --locked --quiet --test fuzz -- --exact "fuzz_$t" --nocapture --test-threads=1 \
    | grep -E '^fuzz |panicked|FUZZ_SEED|input' || status=1
done
cargo test --locked --quiet --test fuzz -- --exact regressions_replay limits_give_clear_errors >/dev/null || status=1
[ $status -eq 0 ] && echo "fuzz: ok (${FUZZ_SECONDS}s per target)" || echo "fuzz: FAILED (see above; new inputs in $FUZZ_SAVE_DIR)"
exit $status
