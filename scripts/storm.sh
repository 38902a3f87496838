#!/usr/bin/env bash
# Connection storm, before and after: N fresh connections opened at once against a
# `seatgate serve` of the old main (b78a52b, which listened with axum's backlog of 128)
# and of this checkout (SEATGATE_LISTEN_BACKLOG, default 4096), one claim each, at
# 2,000 and 5,000 connections; then the same storm sizes with wrk on /healthz, as an
# outside tool. Prints one table: answers, time to first answer (connect start →
# status line) and the kernel's TcpExt ListenOverflows / ListenDrops deltas.
#
# Usage: scripts/storm.sh [OLD_BINARY NEW_BINARY]
#   Without binaries it builds both in release: the old one in a temporary git
#   worktree of $STORM_OLD_REV (default b78a52b), the new one here. The storm client
#   is `seatgate-tools storm` of this checkout ($STORM_TOOLS, default
#   target/release/seatgate-tools, built in release when missing); each gateway is a
#   separate process.
# Environment:
#   STORM_SIZES="2000 5000"   connections per storm
#   STORM_ROUNDS=1            storms per (binary, size), alternating old and new
#   STORM_WRK=1               0: no wrk runs (wrk must be installed otherwise)
#   STORM_WRK_SECONDS=10      length of each wrk run
#   STORM_OUT=target/storm    where the JSON reports and logs go
#   SEATGATE_REDIS_URL, STORM_MYSQL (default mysql://root@127.0.0.1:3306): the shared
#   servers; each gateway gets a database and a Redis namespace of its own, both
#   deleted at the end.
#
# The ListenOverflows counters are the whole host's: on a shared machine, another
# process's overflows in the same seconds would be counted too. Both sides need an
# open-file limit above the storm size (ulimit -n).
set -euo pipefail
cd "$(dirname "$0")/.."

sizes=${STORM_SIZES:-2000 5000}
rounds=${STORM_ROUNDS:-1}
use_wrk=${STORM_WRK:-1}
wrk_secs=${STORM_WRK_SECONDS:-10}
out=${STORM_OUT:-target/storm}
old_rev=${STORM_OLD_REV:-b78a52b}
mysql_base=${STORM_MYSQL:-mysql://root@127.0.0.1:3306}
redis_url=${SEATGATE_REDIS_URL:-redis://127.0.0.1:6379}
mkdir -p "$out"

largest=$(printf '%s\n' $sizes | sort -n | tail -1)
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -le $((largest + 100)) ]; then
  ulimit -n $((largest * 2 + 1000)) 2>/dev/null || {
    echo "ulimit -n is $(ulimit -n): raise it above $((largest + 100))" >&2
    exit 1
  }
fi
[ "$use_wrk" = 1 ] && ! command -v wrk >/dev/null && {
  echo "wrk is not installed (apt-get install -y wrk), or set STORM_WRK=0" >&2
  exit 1
}

if [ $# -ge 2 ]; then
  old_bin=$(realpath "$1")
  new_bin=$(realpath "$2")
else
  old_tree=$(mktemp -d)/seatgate-old
  git worktree add --detach "$old_tree" "$old_rev" >/dev/null
  echo "building the old gateway ($old_rev) in $old_tree ..." >&2
  (cd "$old_tree" && cargo build --release --bin seatgate) >&2
  old_bin=$out/seatgate-old
  cp "$old_tree/target/release/seatgate" "$old_bin"
  git worktree remove --force "$old_tree"
  echo "building the new gateway ..." >&2
  cargo build --release --bin seatgate >&2
  new_bin=$(realpath target/release/seatgate)
fi
tools_bin=${STORM_TOOLS:-target/release/seatgate-tools}
if [ -z "${STORM_TOOLS:-}" ] && [ ! -x "$tools_bin" ]; then
  echo "building the storm client (seatgate-tools) ..." >&2
  cargo build --release -p seatgate-tools >&2
fi
tools_bin=$(realpath "$tools_bin")

run_id=$$
gw_name=storm_$run_id
# shellcheck source=lib/gateways.sh
. "$(dirname "$0")/lib/gateways.sh"

# "ListenOverflows ListenDrops" of the whole host, from /proc/net/netstat.
listen_counters() {
  awk '/^TcpExt:/ { if (!n) { for (i = 2; i <= NF; i++) name[i] = $i; n = 1 } else {
         for (i = 2; i <= NF; i++) v[name[i]] = $i } }
       END { print v["ListenOverflows"], v["ListenDrops"] }' /proc/net/netstat
}

port=$((18000 + run_id % 1000 * 10))
echo "storm run $run_id: sizes $sizes, $rounds round(s), somaxconn $(cat /proc/sys/net/core/somaxconn), ulimit -n $(ulimit -n), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for round in $(seq "$rounds"); do
  for n in $sizes; do
    for label in old new; do
      bin=$old_bin
      [ "$label" = new ] && bin=$new_bin
      port=$((port + 1))
      start_gateway "$bin" "$label" "$port"
      # The listener's backlog as the kernel holds it (Send-Q of a listening socket).
      ss -Hltn "sport = :$port" | awk '{ print $3 }' >"$out/backlog-$label"
      echo "== $label, $n connections, round $round (listen backlog $(cat "$out/backlog-$label"))" >&2
      "$tools_bin" storm --url "http://127.0.0.1:$port" --connections "$n" \
        --json "$out/storm-$label-$n-$round.json" >&2 || true
      stop_gateway
    done
  done
done

if [ "$use_wrk" = 1 ]; then
  for n in $sizes; do
    for label in old new; do
      bin=$old_bin
      [ "$label" = new ] && bin=$new_bin
      port=$((port + 1))
      start_gateway "$bin" "$label" "$port"
      echo "== wrk, $label, $n connections" >&2
      read -r o0 d0 < <(listen_counters)
      wrk -t2 -c "$n" -d "${wrk_secs}s" --timeout 10s --latency \
        "http://127.0.0.1:$port/healthz" >"$out/wrk-$label-$n.txt" 2>&1 || true
      read -r o1 d1 < <(listen_counters)
      echo "$((o1 - o0)) $((d1 - d0))" >"$out/wrk-$label-$n.kernel"
      cat "$out/wrk-$label-$n.txt" >&2
      stop_gateway
    done
  done
fi

python3 - "$out" "$sizes" "$rounds" "$use_wrk" <<'PY'
import json, os, re, sys
out, sizes, rounds, use_wrk = sys.argv[1], sys.argv[2].split(), int(sys.argv[3]), sys.argv[4] == "1"

def ms(us):
    return "-" if us is None else (f"{us / 1000:.0f} ms" if us >= 10_000 else f"{us / 1000:.1f} ms")

def backlog(label):
    try:
        return open(f"{out}/backlog-{label}").read().strip() or "?"
    except OSError:
        return "?"

print("| tool | gateway (listen backlog) | connections | answered | ListenOverflows / ListenDrops | first answer p50 | p99 | p99.9 | max |")
print("|---|---|---|---|---|---|---|---|---|")
for n in sizes:
    for r in range(1, rounds + 1):
        for label in ("old", "new"):
            path = f"{out}/storm-{label}-{n}-{r}.json"
            if not os.path.exists(path):
                print(f"| seatgate storm | {label} ({backlog(label)}) | {n} | (no report) | | | | | |")
                continue
            j = json.load(open(path))
            fa = j["first_answer_us"]
            st = ", ".join(f"{k}×{v}" for k, v in j["statuses"].items())
            failed = sum(j["failures"].values())
            answered = f"{j['answered']} ({st})" + (f", {failed} failed" if failed else "")
            print(f"| seatgate storm | {label} ({backlog(label)}) | {n} | {answered} | +{j['listen_overflows']} / +{j['listen_drops']} "
                  f"| {ms(fa['p50'])} | {ms(fa['p99'])} | {ms(fa['p99_9'])} | {ms(fa['max'])} |")
if use_wrk:
    print()
    print("| tool | gateway | connections | requests/s | socket errors | ListenOverflows / ListenDrops | latency p50 | p99 | max |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in sizes:
        for label in ("old", "new"):
            try:
                text = open(f"{out}/wrk-{label}-{n}.txt").read()
                over, drops = open(f"{out}/wrk-{label}-{n}.kernel").read().split()
            except OSError:
                continue
            rps = re.search(r"Requests/sec:\s*([\d.]+)", text)
            errs = re.search(r"Socket errors: (.*)", text)
            p50 = re.search(r"^\s+50%\s+(\S+)", text, re.M)
            p99 = re.search(r"^\s+99%\s+(\S+)", text, re.M)
            mx = re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", text)
            g = lambda m: m.group(1) if m else "-"
            print(f"| wrk /healthz | {label} | {n} | {g(rps)} | {g(errs) if errs else 'none'} | +{over} / +{drops} "
                  f"| {g(p50)} | {g(p99)} | {g(mx)} |")
PY
