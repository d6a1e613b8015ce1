#!/usr/bin/env bash
# Runs keygate's fuzz targets: fuzz/run.sh TARGET|all SECONDS [libFuzzer args...]
#
# Each target runs for SECONDS in one process (no -jobs, no -fork), on a scratch corpus that starts
# from the committed seeds (fuzz/seeds/TARGET) plus whatever earlier runs
# grew in fuzz/corpus/TARGET (ignored by git). A crash stops the run with
# a non-zero status and leaves its input in fuzz/artifacts/TARGET/.
#
# Needs cargo-fuzz (`cargo install --locked cargo-fuzz`); runs on stable
# through RUSTC_BOOTSTRAP=1. Builds without a sanitizer: the crate forbids
# unsafe code, so libFuzzer's coverage and Rust's own checks (overflow,
# bounds, debug assertions: -a) are what find bugs, at several times the
# speed of an ASan build.
set -euo pipefail
cd "$(dirname "$0")"

targets=(token scope credentials rules forwarded admin_body grpc_check)
if [[ $# -lt 2 ]]; then
  echo "usage: fuzz/run.sh TARGET|all SECONDS [libFuzzer args...]" >&2
  echo "targets: ${targets[*]}" >&2
  exit 2
fi
which=$1
seconds=$2
shift 2
if [[ $which == all ]]; then
  selected=("${targets[@]}")
else
  selected=("$which")
fi

export RUSTC_BOOTSTRAP=1
build=(--sanitizer none --debug-assertions)
# KEYGATE_FUZZ_DEV=1: an unoptimized build (cargo fuzz --dev), in
# fuzz/target/.../debug. Runs are about ten times slower, the build skips
# optimizing every dependency: what CI's smoke uses, which only proves that
# every target builds and runs.
if [[ ${KEYGATE_FUZZ_DEV:-0} == 1 ]]; then
  build+=(--dev)
fi
cargo fuzz build "${build[@]}"
for target in "${selected[@]}"; do
  if [[ ! -d seeds/$target ]]; then
    echo "unknown target $target (targets: ${targets[*]})" >&2
    exit 2
  fi
  mkdir -p "corpus/$target" "artifacts/$target"
  cp -n seeds/"$target"/* "corpus/$target/" 2>/dev/null || true
  echo "== fuzz $target for ${seconds}s"
  cargo fuzz run "${build[@]}" "$target" "corpus/$target" -- \
    -max_total_time="$seconds" -print_final_stats=1 "$@"
done
