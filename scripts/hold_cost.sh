#!/usr/bin/env bash
# What holds cost the claim path: claim.lua on an event with holds (hold_seconds > 0:
# the claim also stamps its deadline on the booking record and the outbox entry)
# against the same claim on an event without, side by side in one run, on a private
# redis-server (no persistence), alternating rounds so drift hits both alike:
#   - redis-benchmark (an outside tool): EVALSHA claim.lua best-available claims of one
#     seat, each from a random user, 50 clients, on two 500k-seat events: its claims/s,
#     and Redis's own run time per call from the slow log (which logs every command
#     here), the figure least disturbed by the rest of the machine;
#   - seatgate's own criterion suite: claim_script/uncontended vs uncontended_held
#     (sequential round trips through RedisStore, the gateway's own client).
#
# Usage: scripts/hold_cost.sh [rounds]      (needs redis-server, redis-cli, redis-benchmark)
set -euo pipefail
rounds=${1:-3}
dir=$(mktemp -d)
sock=$dir/redis.sock
redis-server --port 0 --unixsocket "$sock" --save '' --appendonly no \
  --slowlog-log-slower-than 0 --slowlog-max-len 1000000 \
  --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --dir "$dir"
trap 'redis-cli -s "$sock" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
for _ in $(seq 50); do redis-cli -s "$sock" ping >/dev/null 2>&1 && break; sleep 0.1; done
r() { redis-cli -s "$sock" "$@"; }

sha=$(r -x script load < lua/claim.lua)
seats=500000
# An event on sale as warm leaves it: meta, every seat available, all in avail.
make_event() { # id hold
  r del "{e:$1}:meta" "{e:$1}:seats" "{e:$1}:avail" "{e:$1}:outbox" >/dev/null
  r eval "for i = 1, tonumber(ARGV[1]) do
            local s = string.format('S%06d', i)
            redis.call('HSET', KEYS[2], s, 'available')
            redis.call('ZADD', KEYS[3], i, s)
          end
          redis.call('HSET', KEYS[1], 'on_sale', '1', 'limit', '100', 'hold', ARGV[2],
            'pending', 0, 'booked', 0, 'held', 0)
          return 1" 3 "{e:$1}:meta" "{e:$1}:seats" "{e:$1}:avail" "$seats" "$2" >/dev/null
}
bench() { # id -> "claims/s median-µs-in-Redis"
  local e=$1 now rps
  now=$(date +%s%3N)
  r slowlog reset >/dev/null
  rps=$(redis-benchmark -s "$sock" -c 50 -n 100000 -r 100000000 --csv \
    EVALSHA "$sha" 8 "{e:$e}:meta" "{e:$e}:seats" "{e:$e}:avail" "{e:$e}:user:__rand_int__" \
    "{e:$e}:outbox" "{e:$e}:b:__rand_int__" "{e:$e}:rate:__rand_int__" "{e:$e}:mark" \
    "b__rand_int__" "u__rand_int__" "$now" fp 86400 quantity 1 0 1 "" \
    | awk -F'"' 'NR == 2 { print $4 }')
  echo "$rps $(r --json -2 slowlog get -1 | python3 -c '
import json, statistics, sys
print(statistics.median(e[2] for e in json.load(sys.stdin) if e[3][0].upper() == "EVALSHA"))')"
}

echo "redis-benchmark: claim.lua, best available x1, 50 clients, 100,000 claims per run"
declare -a plain held plain_us held_us
for round in $(seq "$rounds"); do
  make_event plain 0; make_event held 900
  if (( round % 2 )); then
    read -r p pu < <(bench plain); read -r h hu < <(bench held)
  else
    read -r h hu < <(bench held); read -r p pu < <(bench plain)
  fi
  outbox_x=$(r xrevrange "{e:held}:outbox" + - count 1 | grep -c '^x$' || true)
  printf '  round %s: no holds %s claims/s (%s µs in Redis), holds %s claims/s (%s µs) (held entries carry x: %s)\n' \
    "$round" "$p" "$pu" "$h" "$hu" "$outbox_x"
  plain+=("$p"); held+=("$h"); plain_us+=("$pu"); held_us+=("$hu")
done
python3 - "${plain[*]}" "${held[*]}" "${plain_us[*]}" "${held_us[*]}" <<'PY'
import statistics, sys
p, h, pu, hu = ([float(x) for x in a.split()] for a in sys.argv[1:5])
mp, mh = statistics.median(p), statistics.median(h)
up, uh = statistics.median(pu), statistics.median(hu)
print(f"  median: no holds {mp:,.0f}/s, holds {mh:,.0f}/s: holds/no holds = {mh / mp:.3f}")
print(f"  median Redis time per claim: no holds {up:.1f} µs, holds {uh:.1f} µs: {uh / up:.3f}")
PY

echo "criterion (seatgate's own client, one claim at a time):"
SEATGATE_BENCH_REDIS_URL="unix://$sock" cargo bench --bench claim_script -- \
  'claim_script/uncontended' 2>&1 | grep -E '^claim_script|time:' | grep -v '%'
