#!/usr/bin/env python3
"""Helper of benches/gateway_load.sh: creates keys, warms the cache, runs the
interleaved wrk rounds and measures cold start and memory per cached key.
Prints markdown on stdout; progress goes to stderr.

Subcommands (the driver calls them; see its header for the whole run):

  create-keys  POST /v1/keys N times over a few keep-alive connections,
               pipelined; writes the tokens, one a line, to a 0600 file.
  warm         one forward-auth request per token (pipelined): every key
               loaded into the cache once.
  rounds       wrk against pairs of variants (keygate, nginx), interleaved
               A,B / B,A, with the server's CPU time per round read from
               /proc/PID/stat (utime + stime of the process and, for nginx,
               of its workers).
  cold-start   time from launching `keygate serve` on an existing SQLite
               database holding one key to the first 200 of a protected
               request, N times.
  memory       RSS of a fresh `serve` after one cached key, then after every
               key of the tokens file.

No token is ever printed or logged: tokens go to files and request bodies
only, and error messages name statuses and codes, never a request.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def note(message):
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# A small pipelined HTTP/1.1 client (Content-Length bodies only)
# ---------------------------------------------------------------------------


class Pipe:
    """One keep-alive connection sending batches of requests at once."""

    def __init__(self, port, timeout=60.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def close(self):
        self.sock.close()

    def _fill(self):
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buf += chunk

    def _response(self):
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            self._fill()
        head = self.buf[:end].decode("latin-1")
        lines = head.split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value.strip())
            elif name == "transfer-encoding":
                raise ValueError("chunked response: not supported by this client")
        start = end + 4
        while len(self.buf) < start + length:
            self._fill()
        body = self.buf[start : start + length]
        self.buf = self.buf[start + length :]
        return status, body

    def batch(self, requests):
        self.sock.sendall(b"".join(requests))
        return [self._response() for _ in requests]


def pipelined(port, requests, connections=8, batch=64):
    """Sends `requests` (bytes) over `connections` connections in batches of
    `batch`; returns [(status, body)] in the order of `requests`."""
    results = [None] * len(requests)
    errors = []
    slices = [range(i, len(requests), connections) for i in range(connections)]

    def worker(indexes):
        try:
            pipe = Pipe(port)
            indexes = list(indexes)
            for at in range(0, len(indexes), batch):
                chunk = indexes[at : at + batch]
                answers = pipe.batch([requests[i] for i in chunk])
                for i, answer in zip(chunk, answers):
                    results[i] = answer
            pipe.close()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(f"{type(e).__name__}: {e}")

    # Daemon threads: a SIGTERM ends the run without waiting for them.
    threads = [threading.Thread(target=worker, args=(s,), daemon=True) for s in slices if len(s)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError("pipelined client failed: " + "; ".join(errors[:3]))
    return results


def get_request(path, headers):
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def forward_auth_request(token, uri):
    return get_request(
        "/v1/forward-auth",
        {
            "Authorization": "Bearer " + token,
            "X-Original-Method": "GET",
            "X-Original-URI": uri,
        },
    )


def read_tokens(path, limit=None):
    with open(path) as f:
        tokens = [line.strip() for line in f if line.strip()]
    return tokens[:limit] if limit else tokens


def check_statuses(what, answers, expected=200):
    bad = {}
    for status, body in answers:
        if status != expected:
            code = ""
            try:
                code = json.loads(body).get("error", "")
            except (ValueError, AttributeError):
                pass
            bad[(status, code)] = bad.get((status, code), 0) + 1
    if bad:
        shown = ", ".join(f"{n} x {s} {c}".strip() for (s, c), n in sorted(bad.items()))
        raise SystemExit(f"{what}: unexpected answers ({shown}), expected {expected}")


# ---------------------------------------------------------------------------
# create-keys, warm
# ---------------------------------------------------------------------------


def cmd_create_keys(a):
    with open(a.admin_file) as f:
        admin = f.read().strip()
    # Spread over owners: creating a key counts the owner's current keys
    # (name uniqueness and the per-owner limit, one query), so one owner
    # with 100 000 keys makes creation quadratic.
    owners = a.owners or max(1, -(-a.count // a.keys_per_owner))
    requests = []
    for i in range(a.count):
        body = json.dumps(
            {"owner": f"{a.owner}-{i % owners:05d}", "name": f"{a.prefix}-{i:06d}", "scopes": [a.scope]}
        ).encode()
        head = (
            "POST /v1/keys HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {admin}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        requests.append(head + body)
    started = time.monotonic()
    answers = pipelined(a.port, requests, connections=a.connections, batch=a.batch)
    elapsed = time.monotonic() - started
    check_statuses("POST /v1/keys", answers, expected=201)
    fd = os.open(a.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        for _, body in answers:
            f.write(json.loads(body)["key"] + "\n")
    print(
        f"created {a.count} keys ({owners} owners, {-(-a.count // owners)} keys each at most) in {elapsed:.1f} s "
        f"({a.count / elapsed:.0f} keys/s; POST /v1/keys with the bootstrap admin key over {a.connections} "
        f"keep-alive connections, {a.batch} pipelined requests at a time)"
    )


def warm(port, tokens, uri, connections=8, batch=64):
    requests = [forward_auth_request(t, uri) for t in tokens]
    started = time.monotonic()
    answers = pipelined(port, requests, connections=connections, batch=batch)
    elapsed = time.monotonic() - started
    check_statuses("warm-up forward auth", answers)
    return elapsed


def cmd_warm(a):
    tokens = read_tokens(a.tokens, a.limit)
    elapsed = warm(a.port, tokens, a.uri)
    print(f"warmed {len(tokens)} keys in {elapsed:.1f} s")


# ---------------------------------------------------------------------------
# /proc
# ---------------------------------------------------------------------------


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state): utime is field 14, stime field 15.
    return int(fields[11]) + int(fields[12])


def children(pid):
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    out.append(int(entry))
            except OSError:
                pass
    return out


def tree_ticks(pid):
    """CPU ticks of a process and its direct children (nginx's workers)."""
    total = cpu_ticks(pid)
    for child in children(pid):
        try:
            total += cpu_ticks(child)
        except OSError:
            pass
    return total


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def metrics(port):
    pipe = Pipe(port, timeout=10)
    [(status, body)] = pipe.batch([get_request("/metrics", {})])
    pipe.close()
    if status != 200:
        raise SystemExit(f"GET /metrics: {status}")
    values = {}
    for line in body.decode().splitlines():
        m = re.match(r'^(keygate_requests_total|keygate_cache_lookups_total)\{(\w+)="(\w+)"\} (\S+)$', line)
        if m:
            values[(m.group(1), m.group(3))] = float(m.group(4))
    return values


def keygate_counts(port):
    m = metrics(port)
    return {
        "ok": m.get(("keygate_requests_total", "ok"), 0.0),
        "refused": sum(v for (n, o), v in m.items() if n == "keygate_requests_total" and o != "ok"),
        "hit": m.get(("keygate_cache_lookups_total", "hit"), 0.0),
        "miss": m.get(("keygate_cache_lookups_total", "miss"), 0.0),
    }


# ---------------------------------------------------------------------------
# rounds
# ---------------------------------------------------------------------------


def run_wrk(a, url, tokens_file, uri, seconds):
    args = [
        "wrk",
        f"-t{a.threads}",
        f"-c{a.connections}",
        f"-d{seconds}s",
        "--latency",
        "-s",
        a.lua,
        url,
        "--",
        tokens_file,
        str(a.threads),
    ]
    if uri:
        args.append(uri)
    started = time.monotonic()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=seconds + 60)
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"wrk failed ({proc.returncode}): {err.strip()[:500]}")
    line = next((l for l in out.splitlines() if l.startswith("GWRESULT ")), None)
    if line is None:
        raise SystemExit("wrk printed no GWRESULT line: " + err.strip()[:500])
    result = json.loads(line[len("GWRESULT ") :])
    result["wall_s"] = elapsed
    result["raw"] = "\n".join(l for l in out.splitlines() if not l.startswith("GWRESULT "))
    return result


def measure(a, variant, tokens_file, seconds):
    """One wrk run against `variant`, with the server's CPU and checks."""
    before_cpu = tree_ticks(variant["pid"])
    before_up = tree_ticks(a.upstream_pid) if variant["upstream"] else 0
    before_kg = keygate_counts(a.keygate_api) if variant["keygate"] else None
    r = run_wrk(a, variant["url"], tokens_file, variant["uri"], seconds)
    r["cpu_s"] = (tree_ticks(variant["pid"]) - before_cpu) / CLK_TCK
    r["upstream_cpu_s"] = (tree_ticks(a.upstream_pid) - before_up) / CLK_TCK if variant["upstream"] else None
    errors = {k: r[k] for k in ("connect", "read", "write", "status", "timeout") if r[k]}
    if errors:
        raise SystemExit(
            f"{variant['name']}: wrk saw errors {errors} in {r['requests']} requests "
            "(status = non-2xx/3xx answers): every answer must be 200"
        )
    if before_kg is not None:
        after = keygate_counts(a.keygate_api)
        refused = after["refused"] - before_kg["refused"]
        ok = after["ok"] - before_kg["ok"]
        if refused:
            raise SystemExit(f"{variant['name']}: keygate refused {refused:.0f} requests during the round")
        if ok < r["requests"]:
            raise SystemExit(
                f"{variant['name']}: keygate counted {ok:.0f} allowed requests, wrk {r['requests']} answers"
            )
        lookups = (after["hit"] - before_kg["hit"]) + (after["miss"] - before_kg["miss"])
        r["miss_fraction"] = (after["miss"] - before_kg["miss"]) / lookups if lookups else 0.0
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    r["per_cpu_s"] = r["requests"] / r["cpu_s"] if r["cpu_s"] > 0 else float("nan")
    return r


def median(values):
    return statistics.median(values) if values else float("nan")


def thou(n):
    """A whole number with spaces between thousands: 12 345."""
    return f"{n:,.0f}".replace(",", " ")


def fmt_us(us):
    return f"{us / 1000:.2f} ms" if us >= 1000 else f"{us:.0f} µs"


def cmd_rounds(a):
    pairs = {
        "forward_auth": [
            {
                "name": "keygate forward auth",
                "url": f"http://127.0.0.1:{a.keygate_api}/v1/forward-auth",
                "uri": a.uri,
                "pid": a.keygate_pid,
                "keygate": True,
                "upstream": False,
            },
            {
                "name": "nginx return 200",
                "url": f"http://127.0.0.1:{a.nginx_return}/v1/forward-auth",
                "uri": a.uri,
                "pid": a.nginx_pid,
                "keygate": False,
                "upstream": False,
            },
        ],
        "proxy": [
            {
                "name": "keygate proxy (auth)",
                "url": f"http://127.0.0.1:{a.keygate_proxy}{a.uri}",
                "uri": None,
                "pid": a.keygate_pid,
                "keygate": True,
                "upstream": True,
            },
            {
                "name": "nginx proxy_pass (no auth)",
                "url": f"http://127.0.0.1:{a.nginx_proxy}{a.uri}",
                "uri": None,
                "pid": a.nginx_pid,
                "keygate": False,
                "upstream": True,
            },
        ],
    }
    all_tokens = read_tokens(a.tokens)
    keysets = [int(k) for k in a.keysets.split(",")]
    results = {}
    for keys in keysets:
        if keys > len(all_tokens):
            raise SystemExit(f"{keys} keys asked, {len(all_tokens)} in the tokens file")
        tokens_file = os.path.join(a.workdir, f"tokens-{keys}.txt")
        fd = os.open(tokens_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(all_tokens[:keys]) + "\n")
        elapsed = warm(a.keygate_api, all_tokens[:keys], a.uri)
        note(f"[{keys} keys] cache warmed: one forward-auth request per key in {elapsed:.1f} s")
        for pair_name, variants in pairs.items():
            if a.warmup > 0:
                for v in variants:
                    measure(a, v, tokens_file, a.warmup)
            runs = {v["name"]: [] for v in variants}
            for rnd in range(a.rounds):
                order = variants if rnd % 2 == 0 else list(reversed(variants))
                for v in order:
                    r = measure(a, v, tokens_file, a.seconds)
                    r["round"] = rnd + 1
                    r["position"] = order.index(v) + 1
                    runs[v["name"]].append(r)
                    note(
                        f"[{keys} keys] {pair_name} round {rnd + 1} {v['name']}: {r['rps']:.0f} req/s, "
                        f"{r['per_cpu_s']:.0f} req per server CPU-s, p99 {fmt_us(r['p99_us'])}"
                    )
            results[(keys, pair_name)] = (variants, runs)
    report(a, keysets, pairs, results)
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump(
                {
                    f"{k}/{p}": {n: [{x: y for x, y in r.items() if x != "raw"} for r in rs] for n, rs in runs.items()}
                    for (k, p), (_, runs) in results.items()
                },
                f,
                indent=1,
            )
    if a.raw_out:
        with open(a.raw_out, "w") as f:
            for (k, p), (_, runs) in results.items():
                for n, rs in runs.items():
                    for r in rs:
                        f.write(f"### {k} keys, {n}, round {r['round']}\n\n```text\n{r['raw']}\n```\n\n")


def report(a, keysets, pairs, results):
    print(
        f"wrk -t{a.threads} -c{a.connections} -d{a.seconds}s --latency, {a.rounds} rounds per pair, "
        f"interleaved (odd rounds keygate first, even rounds nginx first), {a.warmup} s warm-up per variant "
        "not counted. Requests spread over the keys in turn.\n"
    )
    print(
        "**RPS per core** = requests ÷ the server's CPU seconds (utime + stime from /proc/PID/stat "
        "over the round; nginx: master + workers; the upstream nginx of the proxy rows not included, "
        "shown apart). Figures are medians over the rounds.\n"
    )
    print("### Summary\n")
    print(
        "| keys | variant | req/s | RPS per core (req per server CPU-s) | p50 | p95 | p99 | "
        "server CPU | cache misses |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for keys in keysets:
        for pair_name in pairs:
            variants, runs = results[(keys, pair_name)]
            for v in variants:
                rs = runs[v["name"]]
                miss = (
                    f"{100 * median([r['miss_fraction'] for r in rs]):.1f} %" if v["keygate"] else "—"
                )
                cpu = median([r["cpu_s"] / (r["duration_us"] / 1e6) for r in rs])
                print(
                    f"| {thou(keys)} | {v['name']} | {thou(median([r['rps'] for r in rs]))} | "
                    f"{thou(median([r['per_cpu_s'] for r in rs]))} | "
                    f"{fmt_us(median([r['p50_us'] for r in rs]))} | {fmt_us(median([r['p95_us'] for r in rs]))} | "
                    f"{fmt_us(median([r['p99_us'] for r in rs]))} | {cpu:.2f} cores | {miss} |"
                )
    print("\n### Ratios keygate ÷ nginx, per round (same run)\n")
    print("| keys | pair | throughput per round | median | RPS per core per round | median | target |")
    print("|---:|---|---|---:|---|---:|---|")
    for keys in keysets:
        for pair_name in pairs:
            variants, runs = results[(keys, pair_name)]
            kg, ng = runs[variants[0]["name"]], runs[variants[1]["name"]]
            thr = [k["rps"] / n["rps"] for k, n in zip(kg, ng)]
            per = [k["per_cpu_s"] / n["per_cpu_s"] for k, n in zip(kg, ng)]
            target = "≥ 0.8× " + ("nginx `return 200`" if pair_name == "forward_auth" else "nginx `proxy_pass`")
            met = "met" if median(thr) >= 0.8 else "**missed**"
            print(
                f"| {thou(keys)} | {variants[0]['name']} ÷ {variants[1]['name']} | "
                f"{', '.join(f'{x:.3f}' for x in thr)} | **{median(thr):.3f}** | "
                f"{', '.join(f'{x:.3f}' for x in per)} | {median(per):.3f} | {target}: {met} |"
            )
    print("\n### Every round\n")
    print(
        "| keys | variant | round (position) | requests | req/s | server CPU-s | req per CPU-s | "
        "upstream CPU-s | mean | p50 | p75 | p90 | p95 | p99 | max | cache misses |"
    )
    print("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for keys in keysets:
        for pair_name in pairs:
            variants, runs = results[(keys, pair_name)]
            for v in variants:
                for r in runs[v["name"]]:
                    up = f"{r['upstream_cpu_s']:.2f}" if r["upstream_cpu_s"] is not None else "—"
                    miss = f"{100 * r['miss_fraction']:.1f} %" if "miss_fraction" in r else "—"
                    print(
                        f"| {keys} | {v['name']} | {r['round']} ({r['position']}) | {r['requests']} | "
                        f"{r['rps']:.0f} | {r['cpu_s']:.2f} | {r['per_cpu_s']:.0f} | {up} | "
                        f"{fmt_us(r['mean_us'])} | {fmt_us(r['p50_us'])} | {fmt_us(r['p75_us'])} | "
                        f"{fmt_us(r['p90_us'])} | {fmt_us(r['p95_us'])} | {fmt_us(r['p99_us'])} | "
                        f"{fmt_us(r['max_us'])} | {miss} |"
                    )
    print("\nEvery answer of every round was checked: wrk counted 0 non-2xx/3xx answers and 0 socket errors, "
          "and keygate's `keygate_requests_total` counted no refusal and at least as many allowed requests as wrk answers.")


# ---------------------------------------------------------------------------
# serve processes of their own: cold start, memory
# ---------------------------------------------------------------------------

SPAWNED = []


def clean_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYGATE_") and k != "RUST_LOG"}
    env["RUST_LOG"] = os.environ.get("GW_RUST_LOG", "info")
    return env


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def spawn_serve(a, db_dir, port, log_name):
    args = [
        a.bin,
        "--database-url",
        f"sqlite://{db_dir}/keygate.db",
        "serve",
        "--listen",
        f"127.0.0.1:{port}",
        "--forward-auth",
        "nginx",
        "--rules",
        a.rules,
        "--metrics-public",
    ]
    out = open(os.path.join(db_dir, log_name + ".out"), "ab")
    err = open(os.path.join(db_dir, log_name + ".err"), "ab")
    proc = subprocess.Popen(args, stdout=out, stderr=err, env=clean_env())
    SPAWNED.append(proc)
    return proc


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc in SPAWNED:
        SPAWNED.remove(proc)


def wait_healthy(port, proc, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"serve exited with {proc.returncode} before answering")
        try:
            pipe = Pipe(port, timeout=5)
            [(status, _)] = pipe.batch([get_request("/healthz", {})])
            pipe.close()
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.01)
    raise SystemExit("serve did not answer /healthz in time")


def first_200(port, request, proc, timeout=60):
    """Polls until `request` gets a 200; returns when it did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"serve exited with {proc.returncode} before answering")
        try:
            pipe = Pipe(port, timeout=10)
        except OSError:
            time.sleep(0.001)
            continue
        try:
            [(status, _)] = pipe.batch([request])
        except (OSError, ConnectionError):
            status = None
        finally:
            pipe.close()
        if status == 200:
            return
        if status is not None and status not in (503,):
            raise SystemExit(f"cold start: protected request answered {status}")
        time.sleep(0.001)
    raise SystemExit("cold start: no 200 in time")


def cmd_cold_start(a):
    db_dir = tempfile.mkdtemp(prefix="gw-cold-", dir=a.workdir)
    port = free_port()
    # Set up the database: bootstrap admin key, then one bench key.
    proc = spawn_serve(a, db_dir, port, "setup")
    wait_healthy(port, proc)
    admin_file = os.path.join(db_dir, "admin")
    for _ in range(100):
        with open(os.path.join(db_dir, "setup.out")) as f:
            admin = f.read().strip().splitlines()
        if admin:
            break
        time.sleep(0.05)
    fd = os.open(admin_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(admin[0] + "\n")
    body = json.dumps({"owner": "bench", "name": "cold", "scopes": ["bench:read"]}).encode()
    pipe = Pipe(port)
    [(status, answer)] = pipe.batch(
        [
            (
                "POST /v1/keys HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: Bearer {admin[0]}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            + body
        ]
    )
    pipe.close()
    if status != 201:
        raise SystemExit(f"cold start: POST /v1/keys answered {status}")
    token = json.loads(answer)["key"]
    stop(proc)
    request = forward_auth_request(token, a.uri)
    times = []
    for i in range(a.times):
        port = free_port()
        started = time.monotonic()
        proc = spawn_serve(a, db_dir, port, f"cold-{i}")
        first_200(port, request, proc)
        times.append(time.monotonic() - started)
        stop(proc)
    print(
        f"cold start (launch of `keygate serve` on an SQLite database holding the bootstrap admin key and "
        f"one bench key -> first 200 of GET /v1/forward-auth with the bench key), {a.times} starts: "
        + ", ".join(f"{t * 1000:.0f} ms" for t in times)
        + f"; **median {statistics.median(times) * 1000:.0f} ms**"
    )
    shutil.rmtree(db_dir, ignore_errors=True)


def cmd_memory(a):
    tokens = read_tokens(a.tokens)
    port = free_port()
    proc = spawn_serve(a, a.db_dir, port, "memory")
    wait_healthy(port, proc)
    base = rss_kib(proc.pid)
    warm(port, tokens[:1], a.uri, connections=1, batch=1)
    time.sleep(a.settle)
    one = rss_kib(proc.pid)
    before = keygate_counts(port)
    elapsed = warm(port, tokens, a.uri)
    time.sleep(a.settle)
    full = rss_kib(proc.pid)
    after = keygate_counts(port)
    misses = after["miss"] - before["miss"]
    # A second pass: how many of the keys the cache still holds.
    before2 = keygate_counts(port)
    warm(port, tokens, a.uri)
    after2 = keygate_counts(port)
    held = len(tokens) - (after2["miss"] - before2["miss"])
    stop(proc)
    n = len(tokens)
    per_key = (full - one) * 1024 / (n - 1)
    print(
        f"memory (fresh `serve`, VmRSS): at start {base / 1024:.1f} MiB; after 1 cached key {one / 1024:.1f} MiB; "
        f"after {n} keys ({misses:.0f} cache misses, warmed in {elapsed:.1f} s) {full / 1024:.1f} MiB; "
        f"**{per_key:.0f} B per cached key** (({full} − {one}) KiB ÷ {n - 1}); "
        f"a second pass right after found {held:.0f} of {n} keys still cached"
    )


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    c = sub.add_parser("create-keys")
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--admin-file", required=True)
    c.add_argument("--count", type=int, required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--owner", default="bench")
    c.add_argument("--owners", type=int, help="default: one per --keys-per-owner keys")
    c.add_argument("--keys-per-owner", type=int, default=100)
    c.add_argument("--prefix", default="k")
    c.add_argument("--scope", default="bench:read")
    c.add_argument("--connections", type=int, default=4)
    c.add_argument("--batch", type=int, default=32)

    w = sub.add_parser("warm")
    w.add_argument("--port", type=int, required=True)
    w.add_argument("--tokens", required=True)
    w.add_argument("--limit", type=int)
    w.add_argument("--uri", default="/bench/item")

    r = sub.add_parser("rounds")
    r.add_argument("--keygate-api", type=int, required=True)
    r.add_argument("--keygate-proxy", type=int, required=True)
    r.add_argument("--nginx-return", type=int, required=True)
    r.add_argument("--nginx-proxy", type=int, required=True)
    r.add_argument("--keygate-pid", type=int, required=True)
    r.add_argument("--nginx-pid", type=int, required=True)
    r.add_argument("--upstream-pid", type=int, required=True)
    r.add_argument("--tokens", required=True)
    r.add_argument("--keysets", required=True)
    r.add_argument("--lua", required=True)
    r.add_argument("--workdir", required=True)
    r.add_argument("--uri", default="/bench/item")
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--connections", type=int, default=32)
    r.add_argument("--seconds", type=int, default=5)
    r.add_argument("--rounds", type=int, default=3)
    r.add_argument("--warmup", type=int, default=1)
    r.add_argument("--json-out")
    r.add_argument("--raw-out")

    s = sub.add_parser("cold-start")
    s.add_argument("--bin", required=True)
    s.add_argument("--rules", required=True)
    s.add_argument("--workdir", required=True)
    s.add_argument("--uri", default="/bench/item")
    s.add_argument("--times", type=int, default=5)

    m = sub.add_parser("memory")
    m.add_argument("--bin", required=True)
    m.add_argument("--rules", required=True)
    m.add_argument("--db-dir", required=True)
    m.add_argument("--tokens", required=True)
    m.add_argument("--uri", default="/bench/item")
    m.add_argument("--settle", type=float, default=1.0)

    a = p.parse_args()

    def on_term(signum, _frame):
        for proc in list(SPAWNED):
            stop(proc)
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    try:
        {
            "create-keys": cmd_create_keys,
            "warm": cmd_warm,
            "rounds": cmd_rounds,
            "cold-start": cmd_cold_start,
            "memory": cmd_memory,
        }[a.cmd](a)
    finally:
        for proc in list(SPAWNED):
            stop(proc)


if __name__ == "__main__":
    main()
