#!/usr/bin/env bash
# Server-side cost of claim.lua: runs `cargo bench --bench claim_script` against a
# private redis-server (unix socket, no persistence) that logs every command in its
# slow log (slowlog-log-slower-than 0), then prints how long Redis spent executing each
# kind of claim (µs, as the slow log measures it: the script's own run time, without
# the network or the client). Less noisy on a shared machine than round-trip times,
# and comparable between two builds (e.g. before and after a change to lua/claim.lua).
#
# Usage: scripts/claim_cost.sh [label]      (needs redis-server, redis-cli, python3)
set -euo pipefail
label=${1:-claim_cost}
dir=$(mktemp -d)
sock=$dir/redis.sock
redis-server --port 0 --unixsocket "$sock" --save '' --appendonly no \
  --slowlog-log-slower-than 0 --slowlog-max-len 1000000 \
  --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --dir "$dir"
trap 'redis-cli -s "$sock" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
for _ in $(seq 50); do redis-cli -s "$sock" ping >/dev/null 2>&1 && break; sleep 0.1; done

# The sequential benches only: the concurrent ones would add millions of log entries.
SEATGATE_BENCH_REDIS_URL="unix://$sock" cargo bench --bench claim_script -- 'claim_script/' 2>&1 \
  | grep -E '^claim_script|time:|thrpt:' | grep -v '%' | tee "$dir/criterion.txt"

redis-cli -s "$sock" --json -2 slowlog get -1 > "$dir/slowlog.json"
python3 - "$dir/slowlog.json" "$label" <<'PY'
import json, statistics, sys
entries = json.load(open(sys.argv[1]))
kinds = {}
for e in entries:
    # [id, timestamp, duration µs, [command, args...], client, name]
    micros, args = e[2], e[3]
    if not args or args[0].upper() != 'EVALSHA':
        continue
    numkeys = int(args[2])
    keys, argv = args[3:3 + numkeys], args[3 + numkeys:]
    # claim.lua: 8 keys (9 with an idempotency record); ARGV[6] the mode, ARGV[11..]
    # the seats (see its header).
    if numkeys not in (8, 9) or len(argv) < 10 or argv[5] not in ('seats', 'quantity'):
        continue  # not a claim (warm, confirm, ...)
    held = ' held' if '{e:held-' in keys[0] else ''
    if argv[5] == 'quantity':
        kind = f'quantity {argv[6]}'
    elif argv[10:] == ['HOT']:
        kind = 'hot seat (409)'
    else:
        kind = f'seats x{len(argv) - 10}{held} (202)'
    kinds.setdefault(kind, []).append(micros)
print(f'{sys.argv[2]}: Redis time per claim.lua call (slow log, µs)')
for kind, xs in sorted(kinds.items()):
    print(f'  {kind:<18} n={len(xs):>7}  mean {statistics.mean(xs):6.2f}  '
          f'median {statistics.median(xs):5.1f}  p90 {sorted(xs)[int(len(xs) * 0.9)]:4d}')
PY
