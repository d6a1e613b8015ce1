#!/usr/bin/env bash
# Rate-limit accuracy across instances (SPEC §11): 4 `keygate serve` on one
# Redis (a redis-server of its own, on a free port) and one PostgreSQL
# database (created for the run, dropped at exit); one key with LIMIT/1d
# and one with CREDITS credits, each sent REQUESTS forward-auth requests
# spread over the 4 instances by CONCURRENCY client threads. Prints
# admitted vs limit and vs credits, and the credits left in the store after
# every instance stopped gracefully. Exit 1 unless all three are exact.
# Not run in CI.
#
#   benches/limits_accuracy.sh
#
# Environment (all optional):
#   KEYGATE_BENCH_PG_URL  PostgreSQL admin URL (default: $KEYGATE_TEST_POSTGRES_URL,
#                         else postgres://postgres@127.0.0.1:5432/postgres)
#   REQUESTS              default 50000
#   CONCURRENCY           default 64
#   LIMIT                 default 1000 (per day: at most one more unit
#                         refills per 86.4 s of run, printed as "refilled")
#   CREDITS               default 700 (no refill)
#   PROFILE               debug (default) or release
#   KEYGATE_BIN           a built binary (default: cargo build --features postgres)
set -euo pipefail
cd "$(dirname "$0")/.."

REQUESTS=${REQUESTS:-50000}
CONCURRENCY=${CONCURRENCY:-64}
LIMIT=${LIMIT:-1000}
CREDITS=${CREDITS:-700}
PERIOD_SECS=86400
PROFILE=${PROFILE:-debug}
INSTANCES=4
PG_URL=${KEYGATE_BENCH_PG_URL:-${KEYGATE_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}}
REDIS_SERVER=$(command -v redis-server || echo /usr/bin/redis-server)

if [[ -z ${KEYGATE_BIN:-} ]]; then
    if [[ $PROFILE == release ]]; then
        cargo build --quiet --release --features postgres --bin keygate
    else
        cargo build --quiet --features postgres --bin keygate
    fi
    KEYGATE_BIN=target/$PROFILE/keygate
fi

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

work=$(mktemp -d)
DB="keygate_bench_$$_$(date +%s)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    psql "$PG_URL" -qAt -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

# Redis of its own: stopping it disturbs nothing else.
redis_port=$(free_port)
"$REDIS_SERVER" --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
    >"$work/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
    redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
    sleep 0.05
done
redis-cli -p "$redis_port" ping >/dev/null

# A PostgreSQL database of its own.
psql "$PG_URL" -qAt -v ON_ERROR_STOP=1 -c "CREATE DATABASE $DB" >/dev/null
db_url="${PG_URL%/*}/$DB"
export KEYGATE_DATABASE_URL="$db_url"
KEYGATE_PEPPER=$(openssl rand -hex 32)
export KEYGATE_PEPPER
export KEYGATE_REDIS_URL="redis://127.0.0.1:$redis_port"

wait_healthy() {
    local port=$1
    for _ in $(seq 1 400); do
        curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    echo "instance on port $port did not start:" >&2
    cat "$work"/serve-*.err >&2
    exit 1
}

ports=()
serve_pids=()
for i in $(seq 1 $INSTANCES); do
    port=$(free_port)
    "$KEYGATE_BIN" serve --listen "127.0.0.1:$port" --max-connections 4096 \
        >"$work/serve-$i.out" 2>"$work/serve-$i.err" &
    pids+=($!)
    serve_pids+=($!)
    ports+=("$port")
    # The first creates the schema and the bootstrap key; then the others.
    wait_healthy "$port"
done
admin=$(head -n 1 "$work/serve-1.out")

token=$(curl -fsS -X POST "http://127.0.0.1:${ports[0]}/v1/keys" \
    -H "Authorization: Bearer $admin" -H 'Content-Type: application/json' \
    -d "{\"owner\":\"bench\",\"name\":\"accuracy\",\"scopes\":[\"bench:run\"],
         \"rate_limits\":[{\"name\":\"daily\",\"limit\":$LIMIT,\"period\":\"1d\"}]}" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["key"])')

credit_token=$(curl -fsS -X POST "http://127.0.0.1:${ports[0]}/v1/keys" \
    -H "Authorization: Bearer $admin" -H 'Content-Type: application/json' \
    -d "{\"owner\":\"bench\",\"name\":\"credits\",\"scopes\":[\"bench:run\"],
         \"credits\":{\"remaining\":$CREDITS}}" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["key"])')

cat >"$work/drive.py" <<'PY'
import http.client, sys, threading, time, collections

label, token = sys.argv[1], sys.argv[2]
requests, concurrency, limit, period = map(int, sys.argv[3:7])
ports = [int(p) for p in sys.argv[7:]]
counts = collections.Counter()
per_instance = collections.Counter()
lock = threading.Lock()
next_index = iter(range(requests))
index_lock = threading.Lock()
headers = {"Authorization": "Bearer " + token, "X-Original-Method": "GET", "X-Original-URI": "/bench"}

def worker():
    conns = {p: http.client.HTTPConnection("127.0.0.1", p, timeout=30) for p in ports}
    local, local_inst = collections.Counter(), collections.Counter()
    while True:
        with index_lock:
            i = next(next_index, None)
        if i is None:
            break
        port = ports[i % len(ports)]
        for attempt in range(3):
            try:
                conn = conns[port]
                conn.request("GET", "/v1/forward-auth", headers=headers)
                response = conn.getresponse()
                response.read()
                status = response.status
                break
            except (http.client.HTTPException, OSError):
                conns[port].close()
                conns[port] = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        else:
            status = "error"
        local[status] += 1
        if status == 200:
            local_inst[port] += 1
    with lock:
        counts.update(local)
        per_instance.update(local_inst)

start = time.monotonic()
threads = [threading.Thread(target=worker) for _ in range(concurrency)]
for t in threads:
    t.start()
for t in threads:
    t.join()
elapsed = time.monotonic() - start
admitted = counts[200]
refilled = int(elapsed * limit / period) if period else 0
print(f"elapsed: {elapsed:.1f} s ({requests / elapsed:.0f} requests/s)")
print(f"answers: " + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items(), key=str)))
print("admitted per instance: " + ", ".join(str(per_instance[p]) for p in ports))
print(f"{label}: admitted {admitted} of {limit} (+ at most {refilled} refilled during the run)")
verdict = "EXACT" if limit <= admitted <= limit + refilled else "WRONG"
print(f"verdict: {verdict} (over-admitted: {max(0, admitted - limit - refilled)}, under-admitted: {max(0, limit - admitted)})")
sys.exit(0 if verdict == "EXACT" else 1)
PY

echo "keygate limits accuracy: $INSTANCES instances (profile $PROFILE), one Redis, one PostgreSQL database"
echo "rate limit: key with daily=$LIMIT/1d; $REQUESTS forward-auth requests, $CONCURRENCY client threads, round robin over the instances"
status=0
python3 "$work/drive.py" "rate limit" "$token" "$REQUESTS" "$CONCURRENCY" "$LIMIT" "$PERIOD_SECS" "${ports[@]}" || status=1
echo "credits: key with $CREDITS credits (no refill); $REQUESTS forward-auth requests, same clients"
# A balance without a refill never grows: the allowance is 0 (period 0 = none).
python3 "$work/drive.py" "credits" "$credit_token" "$REQUESTS" "$CONCURRENCY" "$CREDITS" 0 "${ports[@]}" || status=1

# Stop every instance gracefully: each returns the credits it held.
for pid in "${serve_pids[@]}"; do kill -TERM "$pid"; done
for pid in "${serve_pids[@]}"; do wait "$pid" || true; done
left=$(psql "$db_url" -qAt -c "SELECT credits_remaining FROM keygate_keys WHERE name = 'credits'")
echo "credits left in the store after a graceful stop of every instance: $left (expected 0)"
[ "$left" = 0 ] || status=1
warnings=$(cat "$work"/serve-*.err | grep -c ' WARN ' || true)
echo "warnings logged by the instances: $warnings"
exit $status
