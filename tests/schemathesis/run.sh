#!/usr/bin/env bash
# Schemathesis against a real `keygate serve`: every check, on every
# operation of GET /v1/openapi.json, then the stateful phase.
#
#   tests/schemathesis/run.sh [MAX_EXAMPLES]     (default 40)
#
# Needs the keygate binary (built here with `cargo build --bin keygate`)
# and schemathesis (`python3 -m pip install -r tests/schemathesis/requirements.txt`).
# The server runs on a free loopback port with a temporary SQLite database;
# the run acts with the bootstrap admin key of `keygate init`, and the
# hooks keep every request off that key's own id (hooks.py). Exit status:
# schemathesis's, or 1 when the admin key did not survive the run.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
max_examples=${1:-40}

if [[ -z ${KEYGATE_BIN:-} ]]; then
  cargo build --quiet --bin keygate --manifest-path "$root/Cargo.toml"
fi
keygate=${KEYGATE_BIN:-${CARGO_TARGET_DIR:-$root/target}/debug/keygate}

work=$(mktemp -d)
server_pid=
cleanup() {
  if [[ -n $server_pid ]]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

unset KEYGATE_PEPPER KEYGATE_API_URL KEYGATE_TOKEN KEYGATE_CONFIG KEYGATE_DATABASE_URL
db="sqlite://$work/keygate.db"
created=$("$keygate" init --database-url "$db" --json 2>/dev/null)
token=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])' <<<"$created")
admin_id=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["api_key"]["id"])' <<<"$created")

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
"$keygate" serve --database-url "$db" --listen "127.0.0.1:$port" >"$work/serve.log" 2>&1 &
server_pid=$!
# Plain Python for HTTP: CI has no curl for certain.
get() {
  python3 - "$@" <<'PY'
import sys, urllib.request, urllib.error
request = urllib.request.Request(sys.argv[1], headers=dict(h.split(": ", 1) for h in sys.argv[2:]))
try:
    body = urllib.request.urlopen(request, timeout=5).read()
except urllib.error.HTTPError as error:
    body = error.read()
sys.stdout.write(body.decode())
PY
}
for _ in $(seq 1 100); do
  get "$base/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
get "$base/healthz" >/dev/null

export KEYGATE_SCHEMATHESIS_ADMIN_ID=$admin_id
export SCHEMATHESIS_HOOKS=hooks
status=0
(
  cd "$here"
  PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" schemathesis --config-file "$here/schemathesis.toml" \
    run "$base/v1/openapi.json" \
    --max-examples "$max_examples" \
    --seed "${SCHEMATHESIS_SEED:-19}" \
    --workers 1 \
    --generation-database none \
    --header "Authorization: Bearer $token" \
    --generation-with-security-parameters false \
    --no-color \
    --report junit --report-dir "$work/report"
) || status=$?

# The admin key must have come through untouched.
answer=$(get "$base/v1/keys/$admin_id" "Authorization: Bearer $token")
if ! python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin).get("status") == "active" else 1)' <<<"$answer"; then
  echo "the run's admin key is no longer active: $(python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("status"), d.get("error"))' <<<"$answer")" >&2
  echo "its audit trail:" >&2
  "$keygate" audit --database-url "$db" --key "$admin_id" >&2 || true
  status=1
fi
exit "$status"
