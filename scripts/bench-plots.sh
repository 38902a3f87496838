#!/usr/bin/env bash
# Runs the benchmarks behind the plots of BENCHMARKS.md and renders them as SVG with
# `seatgate-tools plot`:
#
#   docs/plots/latency.svg     closed-loop and open-loop drops (open at half the closed
#                              loop's throughput): latency by percentile
#   docs/plots/throughput.svg  `drop --compare`: redis strategy vs the mysql baseline
#   docs/plots/reconciler.svg  `cargo bench --bench reconciler`: confirmed claims/s by batch
#
# Needs Redis on 127.0.0.1:6379 and MySQL/MariaDB on 127.0.0.1:3306 (root, no password),
# or SEATGATE_REDIS_URL / SEATGATE_DATABASE_URL. Every drop uses its own event and
# cleans up its Redis keys; the reconciler bench uses its own namespace and database.
#
# Sizes (override with the variables): closed loop 200 seats × 250 claims (50,000
# claims, 500 in flight); open loop 200 × 200 (40,000 claims); compare 100 × 200 (20,000
# claims per strategy: the mysql baseline answers about 2,000/s here). On 2 shared
# cores the measuring takes about 1 to 2 minutes; the build before it a few minutes
# when only the crate changed, over 10 the first time. The JSON reports and the bench
# log stay in target/bench-plots/.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-docs/plots}
TARGET=${CARGO_TARGET_DIR:-target}
RUN=${RUN:-$TARGET/bench-plots}
SEATS=${SEATS:-200}
CLOSED_CLAIMS=${CLOSED_CLAIMS:-250}
OPEN_CLAIMS=${OPEN_CLAIMS:-200}
COMPARE_SEATS=${COMPARE_SEATS:-100}
COMPARE_CLAIMS=${COMPARE_CLAIMS:-200}
NOTE=${NOTE:-"$(date -u +%F), $(nproc) cores; load generator, gateway, Redis and MariaDB on one machine"}

# The gateway's request logs would drown the tables.
export RUST_LOG=${RUST_LOG:-warn}

say() { printf '\n[bench-plots] %s\n' "$*"; }
mkdir -p "$OUT" "$RUN"
bin=$TARGET/release/seatgate-tools

say "building (release, and the reconciler bench)"
cargo build --release --quiet -p seatgate-tools
cargo bench --bench reconciler --no-run --quiet
start=$(date +%s)

say "(a) closed loop: $SEATS seats × $CLOSED_CLAIMS claims, 500 in flight"
"$bin" drop --seats "$SEATS" --claims-per-seat "$CLOSED_CLAIMS" --concurrency 500 \
  --no-progress --json "$RUN/closed.json"

# Half the closed loop's throughput, from its report.
rate=$(awk -F': ' '/^  "throughput_per_s"/ { gsub(/[ ,]/, "", $2); printf "%d", $2 / 2 }' "$RUN/closed.json")
[ -n "$rate" ] && [ "$rate" -gt 0 ] || { echo "no throughput in $RUN/closed.json" >&2; exit 1; }

say "(a) open loop at $rate claims/s (half the closed loop's): $SEATS seats × $OPEN_CLAIMS claims"
"$bin" drop --rate "$rate" --seats "$SEATS" --claims-per-seat "$OPEN_CLAIMS" --concurrency 500 \
  --no-progress --json "$RUN/open.json"

say "(b) compare: $COMPARE_SEATS seats × $COMPARE_CLAIMS claims, redis then mysql"
"$bin" drop --compare --seats "$COMPARE_SEATS" --claims-per-seat "$COMPARE_CLAIMS" \
  --concurrency 500 --no-progress --json "$RUN/compare.json"

say "(c) cargo bench --bench reconciler"
cargo bench --bench reconciler 2>&1 | tee "$RUN/reconciler.log"
grep -q '^skipped' "$RUN/reconciler.log" && { echo "the reconciler bench skipped" >&2; exit 1; }

say "rendering into $OUT/"
# Log latency axis: the closed loop's tail is 10 to 100 times the open loop's.
"$bin" plot latency "$RUN/closed.json" "$RUN/open.json" --log-y --note "$NOTE" -o "$OUT/latency.svg"
"$bin" plot compare "$RUN/compare.json" --note "$NOTE" -o "$OUT/throughput.svg"
"$bin" plot reconciler --criterion-dir "$TARGET/criterion" --note "$NOTE" -o "$OUT/reconciler.svg"

say "done in $(( $(date +%s) - start )) s (after the build)"
