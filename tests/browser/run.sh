#!/usr/bin/env bash
# Drives the admin web UI (/ui) in Debian's headless Chromium with playwright-core
# (tests/browser/queue.spec.mjs), against the real server on a fresh database, the way
# .ci/conformance does: create a database, migrate, create tokens with the binary, serve
# on a free port. Installs what it needs (chromium from apt, playwright-core from npm, as
# pinned in package-lock.json). Screenshots go to target/screenshots/.
#
#   bash tests/browser/run.sh        # needs Postgres (DATABASE_URL's server)
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ ! -x /usr/bin/chromium ]; then
  echo "installing chromium (apt)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "installing nodejs and npm (apt)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
# npm ci installs exactly the lock file's versions; skip it when those are already there.
if ! cmp -s tests/browser/package-lock.json tests/browser/node_modules/.installed-lock.json 2>/dev/null; then
  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error &&
    cp package-lock.json node_modules/.installed-lock.json)
fi

ADMIN_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
DB="scimbridge_browser_$$"
DB_URL="${ADMIN_URL%/*}/$DB"
LOGS="${BROWSER_LOGS:-$PWD/target/browser}"
mkdir -p "$LOGS" target/screenshots

cargo build --locked --quiet --bin scimbridge
BIN=target/debug/scimbridge

psql "$ADMIN_URL" -qc "create database $DB" >/dev/null
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  psql "$ADMIN_URL" -qc "drop database if exists $DB with (force)" >/dev/null 2>&1 || true
}
trap cleanup EXIT

export DATABASE_URL="$DB_URL"
"$BIN" migrate >/dev/null
ADMIN_TOKEN=$("$BIN" token create --app peopleai --role admin --name alice 2>/dev/null)
SCIM_TOKEN=$("$BIN" token create --app peopleai --role scim --name okta 2>/dev/null)
psql "$DB_URL" -qc "insert into app (app_id, display_name, profile) values ('other','Other','peopleai')" >/dev/null
OTHER_TOKEN=$("$BIN" token create --app other --role admin --name olga 2>/dev/null)

# A free port: bind 0, read it back, release it (the server binds it right after).
PORT=$(node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
"$BIN" serve --bind "127.0.0.1:$PORT" >"$LOGS/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
  sleep 0.2
done

BASE_URL="http://127.0.0.1:$PORT" ADMIN_TOKEN="$ADMIN_TOKEN" SCIM_TOKEN="$SCIM_TOKEN" \
  OTHER_TOKEN="$OTHER_TOKEN" SCREENSHOTS="$PWD/target/screenshots" \
  node tests/browser/queue.spec.mjs
