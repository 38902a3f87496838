#!/usr/bin/env bash
# What a crowd reading the public seat map costs the drop, before and after the
# shared seat map snapshot: claim latency with and without 500 concurrent readers of
# a 100,000-seat event's map (wrk, an outside tool), against a `seatgate serve` of the
# old main (b78a52b, which read the whole map from Redis for every request) and of
# this checkout (one read per event per 200 ms, whatever the number of readers).
#
# Usage: scripts/seat-readers.sh OLD_BINARY NEW_BINARY [TOOLS_BINARY]
# The claims come from the load generator of this checkout (`seatgate-tools drop --url`,
# TOOLS_BINARY, default target/release/seatgate-tools), on an event
# of their own; the readers read the big event's map. Each gateway is a separate
# process with a database and a Redis namespace of its own, deleted at the end.
# Environment: READERS (500), READ_SECONDS (20), OUT (target/seat-readers).
set -euo pipefail
cd "$(dirname "$0")/.."

[ $# -eq 2 ] || [ $# -eq 3 ] || { echo "usage: $0 OLD_BINARY NEW_BINARY [TOOLS_BINARY]" >&2; exit 2; }
old=$(realpath "$1") new=$(realpath "$2") tools=$(realpath "${3:-target/release/seatgate-tools}")
readers=${READERS:-500}
read_secs=${READ_SECONDS:-20}
out=${OUT:-target/seat-readers}
mkdir -p "$out"
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install -y wrk)" >&2; exit 1; }

mysql_cli=$(command -v mariadb || command -v mysql)
admin=$(openssl rand -hex 16)
jwt=$(openssl rand -hex 32)
pids=()
dbs=()
namespaces=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for db in "${dbs[@]}"; do "$mysql_cli" -h 127.0.0.1 -uroot -e "DROP DATABASE IF EXISTS \`$db\`" || true; done
  for ns in "${namespaces[@]}"; do
    redis-cli --scan --pattern "${ns}*" | xargs -r -n 500 redis-cli del >/dev/null || true
  done
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The big event's body: 100,000 seats.
python3 -c 'import json; print(json.dumps({"id": "map", "name": "Big map", "seats": ["S%06d" % i for i in range(100000)]}))' \
  > "$out/map-event.json"

# run LABEL BINARY: one gateway; claims alone, then claims under readers.
run() {
  local label=$1 bin=$2 port db ns base
  port=$(free_port)
  db="sg_readers_${label}_$RANDOM"
  ns="sgreaders${label}$RANDOM:"
  dbs+=("$db")
  namespaces+=("$ns")
  base="http://127.0.0.1:$port"
  SEATGATE_HTTP_ADDR=127.0.0.1:$port SEATGATE_ADMIN_TOKEN=$admin SEATGATE_JWT_SECRET=$jwt \
    SEATGATE_DATABASE_URL="mysql://root@127.0.0.1:3306/$db" SEATGATE_REDIS_NAMESPACE=$ns \
    SEATGATE_USER_RATE=0 RUST_LOG=warn "$bin" serve >"$out/$label-serve.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do curl -fs "$base/readyz" >/dev/null && break; sleep 0.2; done
  curl -fs -X POST "$base/v1/admin/events" -H "Authorization: Bearer $admin" \
    -H 'Content-Type: application/json' --data-binary @"$out/map-event.json" >/dev/null
  curl -fs -X POST "$base/v1/admin/events/map/warm" -H "Authorization: Bearer $admin" >/dev/null
  local drop=("$tools" drop --url "$base" --admin-token "$admin" --jwt-secret "$jwt"
    --database-url "mysql://root@127.0.0.1:3306/$db" --redis-namespace "$ns"
    --seats 1000 --claims-per-seat 20 --concurrency 200 --no-progress)
  "${drop[@]}" --json "$out/$label-alone.json" >"$out/$label-alone.txt"
  wrk -t1 -c"$readers" -d"${read_secs}s" --timeout 30s "$base/v1/events/map/seats" \
    >"$out/$label-wrk.txt" 2>&1 &
  local wrk_pid=$!
  sleep 2
  # Under readers the old gateway may fail the drop altogether (503s once its Redis
  # calls pass their bound): that is a result, reported as such.
  rm -f "$out/$label-readers.json"
  "${drop[@]}" --json "$out/$label-readers.json" >"$out/$label-readers.txt" 2>&1 || true
  wait "$wrk_pid" || true
  kill "${pids[-1]}" 2>/dev/null || true
}

run old "$old"
run new "$new"

python3 - "$out" "$readers" <<'EOF'
import json, re, sys
out, readers = sys.argv[1], sys.argv[2]
def lat(label, kind):
    l = json.load(open(f"{out}/{label}-{kind}.json"))["latency_us"]
    return None, l["p50"] / 1000, l["p99"] / 1000
def reads(label):
    text = open(f"{out}/{label}-wrk.txt").read()
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    total = re.search(r"(\d+) requests in", text)
    rate = float(m.group(1)) if m else float("nan")
    return f"{rate:.0f} ({bad.group(1) if bad else 0} of {total.group(1) if total else '?'} not 200)"
print(f"| gateway | claims alone p50 / p99 | claims with {readers} map readers p50 / p99 | p99 ratio | map reads/s (wrk), failed |")
print("|---|---|---|---|---|")
import os
for label in ("old", "new"):
    _, a50, a99 = lat(label, "alone")
    if os.path.exists(f"{out}/{label}-readers.json"):
        _, r50, r99 = lat(label, "readers")
        under, ratio = f"{r50:.1f} / {r99:.1f} ms", f"{r99 / a99:.2f}x"
    else:
        lines = [l for l in open(f"{out}/{label}-readers.txt").read().splitlines() if l.strip()]
        under, ratio = "drop failed: " + (lines[-1][:120] if lines else "?"), "-"
    print(f"| {label} | {a50:.1f} / {a99:.1f} ms | {under} | {ratio} | {reads(label)} |")
EOF
