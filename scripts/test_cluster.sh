#!/usr/bin/env bash
# Runs the API tests whose bodies hold on any Redis topology against a private Redis
# Cluster (3 primaries, 3 replicas, started by `seatgate-tools cluster`): the same test
# bodies as on one node, with SEATGATE_TEST_REDIS_URL set to the cluster's seeds, so each
# test's event lands on whichever shard its id hashes to. The cluster goes when this
# script does (the tool keeps it until its stdin closes).
#
#   scripts/test_cluster.sh                 # the default modules below
#   scripts/test_cluster.sh race:: wait::   # some modules
set -euo pipefail
cd "$(dirname "$0")/.."

modules=("$@")
if [ ${#modules[@]} -eq 0 ]; then
  modules=(race:: idempotency:: bookings:: wait:: live:: lifecycle:: seat_map:: outbox:: reconciler_shards:: rate_limit:: holds:: my_bookings::)
fi

cargo build -q -p seatgate-tools
coproc CLUSTER { exec target/debug/seatgate-tools cluster --primaries 3 --replicas 1 2>/dev/null; }
seeds=""
while read -r -t 120 line <&"${CLUSTER[0]}"; do
  case "$line" in redis://*) seeds=$line; break ;; esac
done
[ -n "$seeds" ] || { echo "the private Redis Cluster did not start" >&2; exit 1; }
echo "private Redis Cluster: $seeds"
SEATGATE_TEST_REDIS_URL=$seeds cargo test --test api -- "${modules[@]}"
