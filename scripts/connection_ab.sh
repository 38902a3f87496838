#!/usr/bin/env bash
# The Redis connection, before and after: the claim path and a Redis read through
# redis-rs's ConnectionManager (OLD, main before issue 11) and through
# claims::Primary (NEW: Sentinel-aware, every claim checked against the fence), each a
# separate `seatgate serve` on the shared Redis and MySQL, alternating old and new in
# one run (the machine is noisy: ratios within a run are the figures to trust).
#
# Usage: scripts/connection_ab.sh OLD_BINARY NEW_BINARY
# Environment:
#   AB_ROUNDS=2                rounds, each old then new
#   AB_TOOLS=target/release/seatgate-tools   the load generator (our own tool)
#   AB_WRK_SECONDS=8           length of each wrk run (the outside tool)
#   AB_OUT=target/connection-ab   where the reports and logs go
#   SEATGATE_REDIS_URL, AB_MYSQL (default mysql://root@127.0.0.1:3306): the shared
#   servers; each gateway gets a database and a Redis namespace of its own, both
#   deleted at the end.
#
# Per gateway: `seatgate-tools drop --url` (200 seats × 100 claims, 500 in flight:
# claims/s and latency), then wrk on `GET /v1/events/{id}` (one Redis pipeline per
# request through the same connection), 200 connections.
set -euo pipefail
cd "$(dirname "$0")/.."

[ $# -ge 2 ] || { sed -n '2,20p' "$0"; exit 2; }
old_bin=$(realpath "$1")
new_bin=$(realpath "$2")
rounds=${AB_ROUNDS:-2}
tools=$(realpath "${AB_TOOLS:-target/release/seatgate-tools}")
wrk_secs=${AB_WRK_SECONDS:-8}
out=${AB_OUT:-target/connection-ab}
mysql_base=${AB_MYSQL:-mysql://root@127.0.0.1:3306}
redis_url=${SEATGATE_REDIS_URL:-redis://127.0.0.1:6379}
mkdir -p "$out"
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install -y wrk)" >&2; exit 1; }

run_id=$$
gw_name=ab_$run_id
# shellcheck source=lib/gateways.sh
. "$(dirname "$0")/lib/gateways.sh"
export SEATGATE_USER_RATE=0

port=$((19000 + run_id % 1000 * 10))
echo "connection A/B run $run_id: $rounds round(s), load $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq "$rounds"); do
  for label in old new; do
    bin=$old_bin
    [ "$label" = new ] && bin=$new_bin
    port=$((port + 1))
    start_gateway "$bin" "$label" "$port"
    base=http://127.0.0.1:$port
    report="$out/drop-$label-$round.txt"
    "$tools" drop --url "$base" --no-progress \
      --database-url "$mysql_base/ab_${run_id}_$label" \
      --seats 200 --claims-per-seat 100 --concurrency 500 >"$report" 2>"$report.stderr" || {
        echo "the drop against $label failed; see $report.stderr" >&2; exit 1; }
    event="wrk-$round"
    seats=$(python3 -c 'import json; print(json.dumps(["S%04d" % i for i in range(100)]))')
    curl -sf -X POST "$base/v1/admin/events" -H "Authorization: Bearer $SEATGATE_ADMIN_TOKEN" \
      -H 'Content-Type: application/json' \
      -d "{\"id\":\"$event\",\"name\":\"wrk\",\"seats\":$seats}" >/dev/null
    curl -sf -X POST "$base/v1/admin/events/$event/warm" \
      -H "Authorization: Bearer $SEATGATE_ADMIN_TOKEN" >/dev/null
    wrk_rps=$(wrk -t2 -c200 -d"${wrk_secs}s" "$base/v1/events/$event" | awk '/Requests\/sec/ { print $2 }')
    printf 'round %s %-3s drop: %s | %s || wrk GET /v1/events/{id}: %s req/s\n' "$round" "$label" \
      "$(grep -E '^  sent' "$report" | sed -E 's/ +/ /g; s/^ sent //')" \
      "$(grep -E '^  latency' "$report" | sed -E 's/ +/ /g; s/^ //')" "$wrk_rps"
    stop_gateway
  done
done
