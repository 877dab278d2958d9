#!/usr/bin/env bash
# Reliability tests of issue #7 against the real binary on fresh databases (127.0.0.1
# only; needs Postgres at DATABASE_URL's server and python3, standard library only):
#   crash.py     kill -9 in the middle of 1,000 concurrent SCIM writes, then restart
#   outage.py    the database cut off (TCP proxy) and restored, no server restart
#   replicas.py  two servers on one database: claims, completions, webhooks exactly once
#   bash tests/reliability/run.sh [crash|outage|replicas ...]
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v python3 >/dev/null; then
  echo "installing python3 (apt)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 >/dev/null
fi
cargo build --locked --quiet --bin scimbridge
tests=("$@")
[ ${#tests[@]} -eq 0 ] && tests=(crash outage replicas)
for t in "${tests[@]}"; do
  [ -f "tests/reliability/$t.py" ] || { echo "no such test: $t" >&2; exit 2; }
  printf '\n-- reliability: %s\n' "$t"
  timeout 600 python3 "tests/reliability/$t.py"
done
