#!/usr/bin/env python3
"""A/B of two versions of claim.lua, interleaved on one private redis-server.

Usage: scripts/claim_ab.py OLD.lua NEW.lua [claims per kind, default 20000]
(e.g. `git show HEAD~1:lua/claim.lua > /tmp/old.lua`). Starts redis-server on a unix
socket in a temporary directory, fills two identical 100,000-seat events (one per
script), sends claims alternating old/new through `redis-cli --pipe` (specific seat,
202; best available of 2, 202; a taken seat, 409), and prints Redis's own run time per
call from the slow log (slowlog-log-slower-than 0). Interleaving makes both versions
share whatever else the machine is doing, so the ratio is the figure to read.
"""
import json, os, shutil, statistics, subprocess, sys, tempfile, time

old_path, new_path = sys.argv[1], sys.argv[2]
n = int(sys.argv[3]) if len(sys.argv) > 3 else 20000
SEATS = 100_000


def resp(*args):
    out = [f"*{len(args)}\r\n".encode()]
    for a in args:
        b = str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


d = tempfile.mkdtemp()
sock = os.path.join(d, "redis.sock")
subprocess.run(["redis-server", "--port", "0", "--unixsocket", sock, "--save", "",
                "--appendonly", "no", "--slowlog-log-slower-than", "0",
                "--slowlog-max-len", "1000000", "--daemonize", "yes", "--dir", d,
                "--logfile", os.path.join(d, "log")], check=True)
cli = ["redis-cli", "-s", sock]
for _ in range(50):
    if subprocess.run(cli + ["ping"], capture_output=True).returncode == 0:
        break
    time.sleep(0.1)
try:
    sha = {}
    for name, path in (("old", old_path), ("new", new_path)):
        sha[name] = subprocess.run(cli + ["-x", "script", "load"], stdin=open(path, "rb"),
                                   capture_output=True, check=True).stdout.decode().strip()
    setup = []
    for v in ("old", "new"):
        p = "{e:%s}" % v
        setup.append(resp("HSET", p + ":meta", "on_sale", "1", "limit", "100"))
        for lo in range(0, SEATS, 1000):
            ids = [f"S{i:06}" for i in range(lo, lo + 1000)]
            setup.append(resp("HSET", p + ":seats", *[x for s in ids for x in (s, "available")]))
            setup.append(resp("ZADD", p + ":avail", *[x for i, s in zip(range(lo, lo + 1000), ids) for x in (i, s)]))
        setup.append(resp("HSET", p + ":seats", "HOT", "pending:x"))
    subprocess.run(cli + ["--pipe"], input=b"".join(setup), capture_output=True, check=True)
    subprocess.run(cli + ["slowlog", "reset"], check=True, capture_output=True)

    def claim(v, i, mode, qty, seats):
        p = "{e:%s}" % v
        user, bid = f"u{mode}{i}", f"b{mode}{i}"
        return resp("EVALSHA", sha[v], 6, p + ":meta", p + ":seats", p + ":avail",
                    p + ":user:" + user, p + ":outbox", p + ":b:" + bid,
                    bid, user, 1767225600000, "", 86400, mode, qty, *seats)

    cmds = []
    for i in range(n):
        for v in (("old", "new") if i % 2 == 0 else ("new", "old")):
            cmds.append(claim(v, i, "seats", 0, [f"S{SEATS - 1 - i:06}"]))
            cmds.append(claim(v, i, "quantity", 2, []))
            cmds.append(claim(v, i, "seats", 0, ["HOT"]))
    subprocess.run(cli + ["--pipe"], input=b"".join(cmds), capture_output=True, check=True)
    # (redis-cli --pipe ends with an ECHO of random bytes, which --json cannot print.)
    raw = subprocess.run(cli + ["--json", "-2", "slowlog", "get", "-1"],
                         capture_output=True, check=True).stdout
    log = json.loads(raw.decode("latin-1"))
    times = {}
    for e in log:
        args = e[3]
        if args[0].upper() != "EVALSHA":
            continue
        v = "old" if args[1] == sha["old"] else "new"
        kind = ("quantity 2 (202)" if args[14] == "quantity"
                else "hot seat (409)" if args[16] == "HOT" else "seats x1 (202)")
        times.setdefault(kind, {}).setdefault(v, []).append(e[2])
    print(f"Redis time per claim.lua call, µs (slow log), {n} calls per kind and version")
    for kind in sorted(times):
        o, w = times[kind]["old"], times[kind]["new"]
        print(f"  {kind:<17} old mean {statistics.mean(o):5.2f} median {statistics.median(o):4.1f}"
              f" | new mean {statistics.mean(w):5.2f} median {statistics.median(w):4.1f}"
              f" | new/old {statistics.mean(w) / statistics.mean(o):.2f}")
finally:
    subprocess.run(cli + ["shutdown", "nosave"], capture_output=True)
    shutil.rmtree(d, ignore_errors=True)
