#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time each.
#
#   scripts/fuzz.sh [seconds-per-target]     (default 30)
#   FUZZ_TARGETS="claim_body seat_csv" scripts/fuzz.sh 10
#
# Installs cargo-fuzz if it is missing. Builds without a sanitizer: the code under test
# is safe Rust, what we look for is panics (debug assertions and overflow checks are
# on), and so the stable toolchain does it: only `-s address` and the like pass rustc
# `-Z` flags (stable takes them with RUSTC_BOOTSTRAP=1, at the cost of a full rebuild).
# Each target starts from its committed seeds in fuzz/corpus/<target>/seed-*; what
# libFuzzer adds there is git-ignored.
#
# Exits non-zero if any target crashes, after running the others, and prints the path
# of each crashing input (fuzz/artifacts/<target>/crash-*). Reproduce one with
#   cargo fuzz run -s none -a <target> <path>   (from the repo root)
# and turn it into a #[test] next to the parser it broke.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-30}
[[ $secs =~ ^[0-9]+$ && $secs -gt 0 ]] || { echo "usage: $0 [seconds-per-target]" >&2; exit 2; }

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "[fuzz] installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

# The fuzz build (all of seatgate's dependencies, instrumented) takes minutes from
# nothing, so it lives outside the clone, where the next run (CI's next clean clone on
# this machine included) finds it and only rebuilds what changed.
target_dir=${SEATGATE_FUZZ_TARGET_DIR:-$HOME/.cache/seatgate/fuzz-target}
mkdir -p "$target_dir"
flags=(--sanitizer none --debug-assertions --target-dir "$target_dir")
targets=${FUZZ_TARGETS:-$(cargo fuzz list)}

echo "[fuzz] building: ${targets//$'\n'/ }"
if [ -z "${FUZZ_TARGETS:-}" ]; then
  cargo fuzz build "${flags[@]}"   # every target in one cargo build
else
  # shellcheck disable=SC2086 # one word per target
  for t in $targets; do cargo fuzz build "${flags[@]}" "$t"; done
fi

failed=()
for t in $targets; do
  # Not in fuzz/artifacts/: cargo-fuzz lists every file there as a failing input.
  mkdir -p fuzz/target/logs
  log="fuzz/target/logs/$t.log"
  echo "[fuzz] $t for ${secs}s"
  # -rss_limit_mb: inputs are at most 4 KiB (libFuzzer's default -max_len), so a parser
  # that needs more than this has a bug worth a report.
  if cargo fuzz run "${flags[@]}" "$t" -- -max_total_time="$secs" -rss_limit_mb=1024 \
      -print_final_stats=1 >"$log" 2>&1; then
    grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::average_exec_per_sec|stat::new_units_added|stat::peak_rss_mb)' "$log" \
      | sed "s/^/[fuzz] $t: /" || true
  else
    tail -n 40 "$log" >&2
    crash=$(grep -oE '[^ ]*fuzz/artifacts/[^ ]+/(crash|oom|timeout|leak)-[0-9a-f]+' "$log" | tail -n 1 || true)
    echo "[fuzz] $t FAILED; input: ${crash:-see $log}" >&2
    failed+=("$t${crash:+ ($crash)}")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  printf '[fuzz] crashed: %s\n' "${failed[@]}" >&2
  exit 1
fi
echo "[fuzz] all targets ran ${secs}s without a crash"
