#!/usr/bin/env bash
# Gateway load benchmark (issue 18, items 2 and 3): keygate's forward auth
# and proxy against nginx on the same machine, in the same run, with 1 key
# and with many keys (requests spread over all of them); cold start and
# memory per cached key. Everything on 127.0.0.1, on free ports, torn down
# at exit. Prints a markdown report on stdout (progress on stderr).
#
#   benches/gateway_load.sh                        # 5 s x 3 rounds, 1 and 100 000 keys
#   benches/gateway_load.sh --seconds 10 --rounds 5
#   benches/gateway_load.sh --smoke                # < 60 s, 1 000 keys; for CI
#
# The pairs, each measured with wrk (`-t1 -c32 --latency` by default),
# alternating A,B / B,A round by round:
#   forward auth  GET /v1/forward-auth on `keygate serve --forward-auth nginx`
#                 (X-Original-Method, X-Original-URI and the Bearer token, as
#                 nginx's auth_request sends them; loopback is a trusted
#                 proxy by default) vs nginx `location / { return 200; }`
#                 receiving the very same requests.
#   proxy         keygate's proxy listener (`--upstream`), authenticating
#                 every request, vs nginx `proxy_pass` without auth (an
#                 upstream keepalive pool of 64, HTTP/1.1); both to the SAME
#                 upstream, a second nginx (own process) answering `200 ok`.
# Rules (benches/gateway/rules.toml): GET /bench/** needs bench:read; the
# keys are created with that scope through POST /v1/keys (pipelined, over
# 4 keep-alive connections), 100 keys per owner (until bccd226 creating a
# key read all of its owner's current keys, so one owner's 100 000 keys took
# quadratic time: 26 611 keys in ~3.7 min, slowing; now the name check uses
# an (owner, name) index). Every request goes through the HMAC check as in
# production; nothing is skipped.
#
# Per variant: requests/s, RPS per core (requests per CPU-second of the
# server process: utime + stime from /proc/PID/stat over the round; for
# nginx, master + workers), p50/p95/p99 (wrk's lua `done()`), keygate's
# cache-miss share; ratios keygate/nginx per round and their median.
# Any non-200 answer (wrk's non-2xx/3xx count, a socket error, or a refusal
# counted by keygate's /metrics) stops the run with exit status 1.
#
# serve's cache holds 100 000 keys (the default capacity; serve has no
# flag for it) for 30 s from each load, a hit not extending it: with many
# keys in turn every key is read again from SQLite every 30 s, and keys
# loaded together expire together, so the cache-miss share is shown per
# round.
#
# Cold start: launch of `keygate serve` on an existing SQLite database
# holding the bootstrap admin key and one bench key -> first 200 of a
# forward-auth request with the bench key, median of 5. Memory per cached
# key: VmRSS of a fresh `serve` after every key went once through forward
# auth, minus VmRSS after one key, divided by keys - 1.
#
# Options:
#   --seconds N       wrk duration of a measured round (default 5)
#   --rounds N        rounds per pair (default 3)
#   --warmup N        seconds of wrk per variant before the rounds (default 1)
#   --threads N       wrk threads (default 1)
#   --connections N   wrk connections (default 32)
#   --keys N          the many-keys set (default 100000)
#   --nginx-workers N worker_processes of the compared nginx (default 2:
#                     keygate's runtime has one worker thread per core)
#   --no-logs         keygate with RUST_LOG=warn (no access log) and nginx
#                     with `access_log off`; default: both log every request
#                     to a file, as shipped
#   --bin PATH        keygate binary (default target/release/keygate, built
#                     with `cargo build --release --bin keygate` if missing)
#   --smoke           --seconds 1 --rounds 2 --warmup 0 --keys 1000 (memory
#                     per key then measured over 1 000 keys): under a minute
#   --keep DIR        copy the raw wrk outputs and JSON results into DIR
#
# Needs nginx, wrk, python3 and curl (nginx and wrk are installed with
# apt-get when missing and running as root).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

seconds=5
rounds=3
warmup=1
threads=1
connections=32
keys=100000
nginx_workers=2
logs=on
bin=""
smoke=0
keep=""
given=("$@")
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
while [[ $# -gt 0 ]]; do
    case $1 in
        --seconds) seconds=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        --warmup) warmup=$2; shift 2 ;;
        --threads) threads=$2; shift 2 ;;
        --connections) connections=$2; shift 2 ;;
        --keys) keys=$2; shift 2 ;;
        --nginx-workers) nginx_workers=$2; shift 2 ;;
        --no-logs) logs=off; shift ;;
        --bin) bin=$2; shift 2 ;;
        --smoke) smoke=1; shift ;;
        --keep) keep=$2; shift 2 ;;
        -h | --help) usage ;;
        *) echo "unknown option: $1" >&2; usage ;;
    esac
done
if [[ $smoke == 1 ]]; then
    seconds=1 rounds=2 warmup=0 keys=1000
fi
for n in "$seconds" "$rounds" "$threads" "$connections" "$keys" "$nginx_workers"; do
    [[ $n =~ ^[1-9][0-9]*$ ]] || { echo "not a positive whole number: $n" >&2; exit 2; }
done
[[ $warmup =~ ^[0-9]+$ ]] || { echo "--warmup: not a whole number: $warmup" >&2; exit 2; }
(( keys >= 2 )) || { echo "--keys must be at least 2" >&2; exit 2; }

log() { echo "gateway_load: $*" >&2; }

# Tools.
missing=()
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
command -v wrk >/dev/null || missing+=(wrk)
if [[ ${#missing[@]} -gt 0 ]]; then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        log "installing ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" >&2
    else
        echo "missing: ${missing[*]} (apt-get install -y ${missing[*]})" >&2
        exit 1
    fi
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
for tool in python3 curl; do
    command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
done

if [[ -z $bin ]]; then
    bin=target/release/keygate
    if [[ ! -x $bin ]]; then
        log "building $bin"
        cargo build --quiet --release --bin keygate
    fi
fi
[[ -x $bin ]] || { echo "no keygate binary at $bin" >&2; exit 1; }
bin_given=$bin

helper="$root/benches/gateway/gwbench.py"
lua="$root/benches/gateway/tokens.lua"
rules="$root/benches/gateway/rules.toml"
uri=/bench/item

work=$(mktemp -d /tmp/gateway-load.XXXXXX)
chmod 700 "$work"
# The run uses a copy: a rebuild of target/release during the run cannot
# change the binary between rounds.
bin_mtime=$(date -u -r "$bin_given" '+%Y-%m-%d %H:%M:%S UTC')
cp "$bin_given" "$work/keygate-bin"
bin="$work/keygate-bin"
bin_sha=$(sha256sum "$bin" | cut -c1-16)
pids=()
cleanup() {
    local status=$?
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_http() { # port path what
    for _ in $(seq 1 600); do
        if curl -fsS -o /dev/null "http://127.0.0.1:$1$2" 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    echo "$3 did not answer on port $1" >&2
    exit 1
}

# nginx as root: the workers keep root's identity, so they can use the
# private prefix (mode 0700); without root the directive is left out.
nginx_user=""
[[ $(id -u) == 0 ]] && nginx_user="user root root;"

start_nginx() { # name template workers access_log key=value...
    local name=$1 template=$2 workers=$3 access=$4
    shift 4
    local prefix="$work/nginx-$name"
    mkdir -p "$prefix"
    local conf
    conf=$(sed -e "s|{{PREFIX}}|$prefix|g" -e "s|{{WORKERS}}|$workers|g" \
        -e "s|{{USER}}|$nginx_user|g" -e "s|{{ACCESS_LOG}}|$access|g" "$template")
    local kv
    for kv in "$@"; do
        conf=${conf//"{{${kv%%=*}}}"/${kv#*=}}
    done
    printf '%s\n' "$conf" >"$prefix/nginx.conf"
    "$NGINX" -t -q -p "$prefix" -c "$prefix/nginx.conf" 2>"$prefix/check.err" || {
        cat "$prefix/check.err" >&2
        exit 1
    }
    "$NGINX" -p "$prefix" -c "$prefix/nginx.conf" >"$prefix/stdout" 2>"$prefix/stderr" &
    pids+=($!)
    eval "${name}_pid=$!"
}

echo "# keygate gateway load: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo
echo "Command: \`benches/gateway_load.sh${given[*]+$(printf ' %q' "${given[@]}")}\`"
echo
echo "- keygate: \`$bin_given\` (built $bin_mtime, sha256 $bin_sha…; HEAD when the run began: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$root" diff --quiet HEAD -- src Cargo.toml 2>/dev/null || echo ', src/ or Cargo.toml differing from it'))"
echo "- $("$NGINX" -v 2>&1), $(wrk -v 2>&1 | head -n 1 | cut -d' ' -f1-2), $(python3 --version)"
echo "- $(nproc) cores, $(uname -sr); logs: $logs"
echo "- before: \`$(uptime)\`"
echo

# The upstream, then the compared nginx.
upstream_port=$(free_port)
start_nginx upstream "$root/benches/gateway/nginx-upstream.conf.template" 1 off \
    "LISTEN=127.0.0.1:$upstream_port"
wait_http "$upstream_port" / "upstream nginx"
nginx_return_port=$(free_port)
nginx_proxy_port=$(free_port)
front_access=off
[[ $logs == on ]] && front_access="$work/nginx-front/access.log"
start_nginx front "$root/benches/gateway/nginx-front.conf.template" "$nginx_workers" "$front_access" \
    "RETURN_LISTEN=127.0.0.1:$nginx_return_port" "PROXY_LISTEN=127.0.0.1:$nginx_proxy_port" \
    "UPSTREAM=127.0.0.1:$upstream_port"
wait_http "$nginx_return_port" / "nginx (return 200)"
wait_http "$nginx_proxy_port" / "nginx (proxy_pass)"

# keygate serve: embedded SQLite in the work directory; API + forward auth
# on one port, the proxy on another.
rust_log=info
[[ $logs == off ]] && rust_log=warn
export GW_RUST_LOG=$rust_log
db_dir="$work/keygate"
mkdir -p "$db_dir"
kg_api_port=$(free_port)
kg_proxy_port=$(free_port)
env -u KEYGATE_PEPPER -u KEYGATE_DATABASE_URL -u KEYGATE_API_URL -u KEYGATE_TOKEN \
    -u KEYGATE_CONFIG RUST_LOG=$rust_log \
    "$bin" --database-url "sqlite://$db_dir/keygate.db" serve \
    --listen "127.0.0.1:$kg_api_port" --forward-auth nginx --rules "$rules" \
    --upstream "http://127.0.0.1:$upstream_port" --proxy-listen "127.0.0.1:$kg_proxy_port" \
    --metrics-public --max-connections 4096 \
    >"$db_dir/serve.out" 2>"$db_dir/serve.err" &
kg_pid=$!
pids+=("$kg_pid")
wait_http "$kg_api_port" /healthz "keygate serve"
# The bootstrap admin key (printed once on stdout) goes to a 0600 file.
(umask 077 && head -n 1 "$db_dir/serve.out" >"$work/admin")
[[ -s $work/admin ]] || { echo "serve printed no bootstrap key" >&2; exit 1; }

log "creating $keys keys"
(umask 077 && python3 "$helper" create-keys --port "$kg_api_port" --admin-file "$work/admin" \
    --count "$keys" --out "$work/tokens.txt") | tee "$work/create.txt"
echo

log "rounds: ${seconds}s x $rounds per pair, 1 and $keys keys"
echo "## Throughput and latency"
echo
python3 "$helper" rounds --keygate-api "$kg_api_port" --keygate-proxy "$kg_proxy_port" \
    --nginx-return "$nginx_return_port" --nginx-proxy "$nginx_proxy_port" \
    --keygate-pid "$kg_pid" --nginx-pid "$front_pid" --upstream-pid "$upstream_pid" \
    --tokens "$work/tokens.txt" --keysets "1,$keys" --lua "$lua" --workdir "$work" --uri "$uri" \
    --threads "$threads" --connections "$connections" --seconds "$seconds" --rounds "$rounds" \
    --warmup "$warmup" --json-out "$work/rounds.json" --raw-out "$work/wrk-raw.md"
echo
echo "keygate: $(grep -c ' WARN ' "$db_dir/serve.err" || true) warnings, $(grep -c ' ERROR ' "$db_dir/serve.err" || true) errors logged during the rounds"
echo

# Memory needs the database alone: stop this serve first (graceful; usage flushed).
kill -TERM "$kg_pid"
wait "$kg_pid" || { echo "keygate serve exited with $? on SIGTERM" >&2; exit 1; }

echo "## Cold start and memory"
echo
log "cold start"
python3 "$helper" cold-start --bin "$bin" --rules "$rules" --workdir "$work" --uri "$uri"
echo
log "memory per cached key ($keys keys)"
python3 "$helper" memory --bin "$bin" --rules "$rules" --db-dir "$db_dir" \
    --tokens "$work/tokens.txt" --uri "$uri"
echo
echo "- after: \`$(uptime)\`"

if [[ -n $keep ]]; then
    mkdir -p "$keep"
    cp "$work/rounds.json" "$work/wrk-raw.md" "$keep/"
fi
