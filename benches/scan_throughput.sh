#!/usr/bin/env bash
# Scanning throughput: `keygate scan` against `grep -rE` with the token
# regex, over the same generated tree, in the same run.
#
#   benches/scan_throughput.sh [SIZE_MB] [ROUNDS]      (default: 1024 MB, 3 rounds)
#
# KEYGATE=path/to/keygate picks the binary (default: target/release/keygate,
# built with `cargo build --release --bin keygate` when missing).
#
# The tree: SIZE_MB files of 1 MiB (32 per directory) of deterministic text
# lines, with look-alikes the regex matches but the checksum refuses (one
# every 64 lines) and PLANTED real tokens. grep prints the lines it matches
# (into a pipe), keygate the findings. Both tools read the same files
# from the page cache (one warm-up read first); grep runs with LC_ALL=C, its
# fastest. keygate must report exactly the planted tokens, or the run fails.
# The generated data is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

SIZE_MB=${1:-1024}
ROUNDS=${2:-3}
PLANTED=5
KEYGATE=${KEYGATE:-target/release/keygate}
REGEX='kg_(live|test)_[0-9A-Za-z]{54}'

if [[ ! -x $KEYGATE ]]; then
  cargo build --release --bin keygate
fi

DATA=$(mktemp -d "${TMPDIR:-/tmp}/keygate-scan-bench.XXXXXX")
trap 'rm -rf "$DATA"' EXIT

echo "== generating $SIZE_MB MiB in $DATA"
python3 - "$DATA" "$SIZE_MB" "$PLANTED" <<'PY'
import os, random, sys, zlib
root, size_mb, planted = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
rng = random.Random(17)
def b62(n, k):
    out = []
    while n:
        n, r = divmod(n, 62)
        out.append(B62[r])
    return "".join(reversed(out)).rjust(k, "0")
def token(env="live"):
    head = "kg_%s_%s" % (env, "".join(rng.choice(B62) for _ in range(48)))
    return head + b62(zlib.crc32(head.encode()), 6)
def broken():
    t = token("test")
    return t[:-1] + ("1" if t[-1] == "0" else "0")
words = ["config", "value", "request", "handler", "return", "async", "token_id",
         "let", "fn", "kg", "key", "live", "test", "user", "=", "{", "}", "->"]
lines, total, n = [], 0, 0
while total < (1 << 20) - 200:
    if n % 64 == 63:
        line = "    fixture = \"%s\"  # not a real key" % broken()
    else:
        line = " ".join(rng.choice(words) for _ in range(rng.randint(4, 14)))
    lines.append(line)
    total += len(line) + 1
    n += 1
template = ("\n".join(lines) + "\n").encode()
plant_at = set(rng.sample(range(size_mb), min(planted, size_mb)))
for i in range(size_mb):
    d = os.path.join(root, "d%03d" % (i // 32))
    os.makedirs(d, exist_ok=True)
    body = template
    if i in plant_at:
        body = template[:4096] + ("\nAPI_KEY=%s\n" % token()).encode() + template[4096:]
    with open(os.path.join(d, "f%04d.txt" % i), "wb") as f:
        f.write(body[: 1 << 20])
PY
BYTES=$(du -sb "$DATA" | cut -f1)
MB=$(awk -v b="$BYTES" 'BEGIN { printf "%.1f", b / 1e6 }')
echo "$MB MB in $(find "$DATA" -type f | wc -l) files"

# Warm the page cache, and check what keygate finds.
cat "$DATA"/*/* >/dev/null
found=$("$KEYGATE" scan "$DATA" --json 2>/dev/null | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["findings"]))' || true)
if [[ $found != "$PLANTED" ]]; then
  echo "keygate scan found $found tokens, $PLANTED were planted" >&2
  exit 1
fi
matched=$(LC_ALL=C grep -rEo "$REGEX" "$DATA" | wc -l)
echo "keygate scan: $found tokens (the planted ones); grep -rE: $matched matches (checksums unchecked)"

now() { date +%s.%N; }
keygate_best=0
grep_best=0
for round in $(seq 1 "$ROUNDS"); do
  start=$(now)
  "$KEYGATE" scan "$DATA" >/dev/null 2>&1 || [[ $? -eq 1 ]]
  k=$(awk -v s="$start" -v e="$(now)" -v mb="$MB" 'BEGIN { printf "%.0f", mb / (e - s) }')
  start=$(now)
  # Through a pipe: with stdout on /dev/null, GNU grep stops at a file's
  # first match (as -q does) and would not read the whole tree.
  { LC_ALL=C grep -rE "$REGEX" "$DATA" || true; } | cat >/dev/null
  g=$(awk -v s="$start" -v e="$(now)" -v mb="$MB" 'BEGIN { printf "%.0f", mb / (e - s) }')
  echo "round $round: keygate scan $k MB/s, grep -rE $g MB/s"
  (( k > keygate_best )) && keygate_best=$k
  (( g > grep_best )) && grep_best=$g
done
ratio=$(awk -v k="$keygate_best" -v g="$grep_best" 'BEGIN { printf "%.2f", k / g }')
echo "best of $ROUNDS: keygate scan $keygate_best MB/s, grep -rE $grep_best MB/s, ratio $ratio"
