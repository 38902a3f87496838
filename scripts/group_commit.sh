#!/usr/bin/env bash
# Replication group commit, what it costs: the same drops against a private Redis
# primary with one replica, with SEATGATE_REDIS_MIN_REPLICAS 0 and 1, alternating in
# one run (the machine is noisy: ratios within a run are the figures to trust).
#
# Usage: scripts/group_commit.sh
# Environment:
#   GC_ROUNDS=2                 runs per setting and workload, alternating 0 and 1
#   GC_TOOLS=target/release/seatgate-tools (built in release when missing)
#   SEATGATE_DATABASE_URL       MySQL of the in-process gateways (default
#                               mysql://root@127.0.0.1:3306/seatgate)
#   GC_OUT=target/group-commit  where the reports and the servers' logs go
#
# Workloads: a drop (200 seats × 100 claims, closed loop, 500 in flight: 200 claims
# win and wait for the replica, the rest are 409s), every claim a win (20,000 seats ×
# 1, closed loop: the worst case, every answer waits), and every claim a win at a
# fixed 3,000 claims/s (open loop: latency without queueing).
#
# The two redis-servers are this script's own (temporary directory, free ports) and are
# killed by pid at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${GC_ROUNDS:-2}
tools=${GC_TOOLS:-target/release/seatgate-tools}
out=${GC_OUT:-target/group-commit}
mkdir -p "$out"
[ -x "$tools" ] || cargo build --release -p seatgate-tools -j 2 >&2

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
dir=$(mktemp -d)
primary=$(free_port)
replica=$(free_port)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT

start_redis() { # port dir [args...]
  local port=$1 d=$2; shift 2
  mkdir -p "$d"
  redis-server --port "$port" --bind 127.0.0.1 --dir "$d" --save "" --appendonly no \
    --repl-diskless-sync-delay 0 --logfile "$d/redis.log" "$@" &
  pids+=($!)
  for _ in $(seq 1 100); do redis-cli -p "$port" PING >/dev/null 2>&1 && return; sleep 0.05; done
  echo "redis-server on $port did not start" >&2; exit 1
}
start_redis "$primary" "$dir/primary"
start_redis "$replica" "$dir/replica" --replicaof 127.0.0.1 "$primary"
for _ in $(seq 1 100); do
  redis-cli -p "$replica" INFO replication | grep -q 'master_link_status:up' && break
  sleep 0.05
done
echo "primary :$primary, replica :$replica ($(redis-server --version | cut -d' ' -f3))"

drop() { # min_replicas name args...
  local min=$1 name=$2; shift 2
  local log="$out/$name-min$min-$(date +%s%N).txt"
  SEATGATE_REDIS_URL="redis://127.0.0.1:$primary" \
    "$tools" drop --no-progress --redis-min-replicas "$min" "$@" >"$log" 2>"$log.stderr"
  printf '%-10s min %s  %s | %s\n' "$name" "$min" \
    "$(grep -E '^  sent' "$log" | sed -E 's/ +/ /g; s/^ sent //')" \
    "$(grep -E '^  latency' "$log" | sed -E 's/ +/ /g; s/^ //')"
}

for round in $(seq 1 "$rounds"); do
  for min in 0 1; do
    drop "$min" drop --seats 200 --claims-per-seat 100 --concurrency 500
    drop "$min" all-win --seats 20000 --claims-per-seat 1 --concurrency 500
    drop "$min" open-3k --seats 20000 --claims-per-seat 1 --rate 3000
  done
done

