#!/usr/bin/env bash
# Redis Cluster benchmarks (issue 12), in one run on this machine, three ways side by
# side, alternating round by round (the machine is noisy: compare within a round):
#   (a) single  one hot event on a single private redis-server
#   (b) spread  three events on three shards of a private cluster (one per primary)
#   (c) hot     one hot event on the same cluster (one slot: one shard does it all)
# Every run has the same seats and claims in all (CB_SEATS seats, CB_CLAIMS_PER_SEAT
# claims per seat, CB_CONCURRENCY in flight, one user per claim) and goes through a
# separate `seatgate serve` (release), so that its CPU time can be read from /proc
# apart from the load generator's (`seatgate-tools drop --url`, timed by bash) and
# from Redis's (INFO cpu, INFO commandstats of every primary, reset before each run).
# Then redis-benchmark beside it: EVALSHA of a small claim-like script on one node, and
# with --cluster over the three primaries.
#
# Usage: scripts/cluster_bench.sh
# Environment:
#   CB_ROUNDS=2  CB_SEATS=300  CB_CLAIMS_PER_SEAT=200  CB_CONCURRENCY=500
#   CB_OUT=target/cluster-bench     reports, logs and results.txt
#   SEATGATE_DATABASE_URL base      mysql://root@127.0.0.1:3306 (a database per run,
#                                   dropped at the end)
#
# The redis-server processes (one node, the cluster's six) and the gateways are this
# script's own, on free ports, and are stopped by pid at the end. Needs redis-server,
# redis-cli, redis-benchmark, python3, mysql (the client) and a MariaDB/MySQL.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${CB_ROUNDS:-2}
seats=${CB_SEATS:-300}
cps=${CB_CLAIMS_PER_SEAT:-200}
concurrency=${CB_CONCURRENCY:-500}
out=${CB_OUT:-target/cluster-bench}
mysql_base=${SEATGATE_DATABASE_URL:-mysql://root@127.0.0.1:3306}
mysql_base=${mysql_base%/*}
[ "${mysql_base#mysql://}" != "$mysql_base" ] || mysql_base=mysql://root@127.0.0.1:3306
mkdir -p "$out"
tools=target/release/seatgate-tools
bin=target/release/seatgate
if [ ! -x "$tools" ] || [ ! -x "$bin" ]; then
  cargo build --release -p seatgate-tools -p seatgate -j 2 >&2
fi
results=$out/results.txt
: >"$results"
say() { echo "$*" | tee -a "$results"; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
tick=$(getconf CLK_TCK)
dir=$(mktemp -d)
pids=()
gateway_pid=
cluster_pid=
databases=()
cleanup() {
  [ -n "$gateway_pid" ] && { kill "$gateway_pid" 2>/dev/null || true; wait "$gateway_pid" 2>/dev/null || true; }
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  # The cluster goes when its stdin ends.
  exec 3>&- 2>/dev/null || true
  [ -n "$cluster_pid" ] && wait "$cluster_pid" 2>/dev/null || true
  for db in "${databases[@]}"; do
    mysql -h127.0.0.1 -uroot -e "DROP DATABASE IF EXISTS $db" 2>/dev/null || true
  done
  rm -rf "$dir"
}
trap cleanup EXIT

# (a)'s node: configured as the sandbox configures cluster nodes (no RDB, no AOF).
single=$(free_port)
mkdir -p "$dir/single"
redis-server --port "$single" --bind 127.0.0.1 --dir "$dir/single" --save "" --appendonly no \
  --logfile "$dir/single/redis.log" &
pids+=($!)
for _ in $(seq 1 100); do redis-cli -p "$single" PING >/dev/null 2>&1 && break; sleep 0.05; done

# The cluster: `seatgate-tools cluster` holds it while its stdin (fd 3) is open.
mkfifo "$dir/hold"
"$tools" cluster <"$dir/hold" >"$dir/seeds" 2>"$out/cluster.log" &
cluster_pid=$!
exec 3>"$dir/hold"
for _ in $(seq 1 600); do [ -s "$dir/seeds" ] && break; sleep 0.1; done
seeds=$(head -1 "$dir/seeds")
[ -n "$seeds" ] || { echo "the cluster did not start; see $out/cluster.log" >&2; exit 1; }
seed_port=${seeds%%,*}; seed_port=${seed_port##*:}
primaries=$(redis-cli -p "$seed_port" CLUSTER NODES | awk '$3 ~ /master/ && $3 !~ /fail/ {split($2, a, "[:@]"); print a[2]}' | sort -n | tr '\n' ' ')
replicas=$(redis-cli -p "$seed_port" CLUSTER NODES | awk '$3 ~ /slave/ {split($2, a, "[:@]"); print a[2]}' | sort -n | tr '\n' ' ')
say "$(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); $(redis-server --version | cut -d' ' -f3)"
say "single node :$single; cluster primaries: $primaries, replicas: $replicas (seeds $seeds)"
say "each run: $seats seats in all x $cps claims per seat = $((seats * cps)) claims, $concurrency in flight, one user per claim"

export SEATGATE_ADMIN_TOKEN=$(openssl rand -hex 16)
export SEATGATE_JWT_SECRET=$(openssl rand -hex 32)
export RUST_LOG=${RUST_LOG:-warn}

# INFO fields summed over ports: cpu (user+sys seconds), evalsha calls and usec.
redis_stats() { # ports...
  local p calls=0 usec=0 cpu=0 line
  for p in "$@"; do
    line=$(redis-cli -p "$p" INFO commandstats | tr -d '\r' | grep '^cmdstat_evalsha:' || true)
    if [ -n "$line" ]; then
      calls=$((calls + $(sed -E 's/^cmdstat_evalsha:calls=([0-9]+),.*/\1/' <<<"$line")))
      usec=$((usec + $(sed -E 's/^cmdstat_evalsha:calls=[0-9]+,usec=([0-9]+),.*/\1/' <<<"$line")))
    fi
    cpu=$(python3 -c "import sys; print($cpu + sum(float(l.split(':')[1]) for l in sys.stdin if l.startswith(('used_cpu_sys:', 'used_cpu_user:'))))" \
      < <(redis-cli -p "$p" INFO cpu | tr -d '\r'))
  done
  echo "$calls $usec $cpu"
}
proc_cpu() { awk -v t="$tick" '{print ($14 + $15) / t}' "/proc/$1/stat"; }

run() { # label round redis_url events "primary ports" "replica ports"
  local label=$1 round=$2 url=$3 events=$4
  local ports=($5) reps=($6) port db ns json log
  port=$(free_port)
  db=sgbench_${label}_${round}_$$
  databases+=("$db")
  ns="sgbench-$label-$round-$$:"
  json=$out/$label-r$round.json
  log=$out/$label-r$round.txt
  SEATGATE_HTTP_ADDR=127.0.0.1:$port SEATGATE_REDIS_URL=$url \
    SEATGATE_DATABASE_URL=$mysql_base/$db SEATGATE_REDIS_NAMESPACE=$ns \
    "$bin" serve >>"$out/serve-$label-r$round.log" 2>&1 &
  gateway_pid=$!
  for _ in $(seq 300); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
  for p in "${ports[@]}"; do redis-cli -p "$p" CONFIG RESETSTAT >/dev/null; done
  local before_gw before_redis after_gw after_redis
  before_gw=$(proc_cpu "$gateway_pid")
  before_redis=$(redis_stats "${ports[@]}")
  local before_reps="0 0 0" after_reps="0 0 0"
  [ ${#reps[@]} -eq 0 ] || before_reps=$(redis_stats "${reps[@]}")
  local TIMEFORMAT='%U %S'
  { time SEATGATE_REDIS_URL=$url SEATGATE_REDIS_NAMESPACE=$ns SEATGATE_DATABASE_URL=$mysql_base/$db \
      "$tools" drop --url "http://127.0.0.1:$port" --events "$events" \
      --seats $((seats / events)) --claims-per-seat "$cps" --concurrency "$concurrency" \
      --no-progress --json "$json" >"$log" 2>"$log.stderr" || true; } 2>"$log.time"
  after_gw=$(proc_cpu "$gateway_pid")
  after_redis=$(redis_stats "${ports[@]}")
  [ ${#reps[@]} -eq 0 ] || after_reps=$(redis_stats "${reps[@]}")
  kill "$gateway_pid"; wait "$gateway_pid" 2>/dev/null || true; gateway_pid=
  python3 - "$label" "$round" "$json" "$before_gw" "$after_gw" "$before_redis" "$after_redis" \
    "$(cat "$log.time")" "$before_reps" "$after_reps" <<'PY' | tee -a "$results"
import json, sys
label, rnd, path, gw0, gw1, r0, r1, client, p0, p1 = sys.argv[1:]
replica_cpu = float(p1.split()[2]) - float(p0.split()[2])
j = json.load(open(path))
claims = j["claims"]["sent"]
c0, u0, cpu0 = r0.split(); c1, u1, cpu1 = r1.split()
calls, usec = int(c1) - int(c0), int(u1) - int(u0)
redis_cpu = float(cpu1) - float(cpu0)
gw = float(gw1) - float(gw0)
cu, cs = (float(x) for x in client.split())
shards = ",".join(sorted({(e.get("shard") or "-").split(":")[-1] for e in j.get("events", [])}))
p99 = j["latency_us"]["p99"] / 1000
ok = "ok" if j["verification"]["ok"] else "FAILED"
print(f"{label:<7} r{rnd}  {j['throughput_per_s']:>8,.0f} claims/s  p50 {j['latency_us']['p50']/1000:6.1f} ms  p99 {p99:6.1f} ms  "
      f"shards {shards:<17}  gateway {gw / claims * 1e6:5.1f} us/claim  "
      f"redis {redis_cpu / claims * 1e6:5.1f} us/claim (evalsha {usec / max(calls, 1):4.1f} us x {calls})  "
      f"replicas {replica_cpu / claims * 1e6:4.1f} us/claim  client {(cu + cs) / claims * 1e6:5.1f} us/claim  {ok}")
PY
}

for round in $(seq 1 "$rounds"); do
  run single "$round" "redis://127.0.0.1:$single" 1 "$single" ""
  run spread "$round" "$seeds" 3 "$primaries" "$replicas"
  run hot "$round" "$seeds" 1 "$primaries" "$replicas"
done

# redis-benchmark: a small claim-like script (a seat's state read, a free seat marked
# pending), 50 clients, on one node and over the three primaries (--cluster routes
# each client's {tag} to its node).
script="local s = redis.call('HGET', KEYS[1], ARGV[1]) if not s then redis.call('HSET', KEYS[1], ARGV[1], 'pending') return 1 end return 0"
sha=$(redis-cli -p "$single" SCRIPT LOAD "$script")
# shellcheck disable=SC2086
for p in $primaries; do redis-cli -p "$p" SCRIPT LOAD "$script" >/dev/null; done
for round in $(seq 1 "$rounds"); do
  for mode in single cluster; do
    if [ "$mode" = single ]; then
      args=(-p "$single")
    else
      args=(--cluster -p "$seed_port")
    fi
    rps=$(redis-benchmark "${args[@]}" -c 50 -n 300000 -r 100000 --csv \
      EVALSHA "$sha" 1 "bench:{tag}:seats" "S__rand_int__" 2>/dev/null | tail -1 | cut -d, -f2 | tr -d '"')
    say "redis-benchmark EVALSHA, 50 clients, $mode: $rps/s (r$round)"
  done
done
say "reports in $out"
