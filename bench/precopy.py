#!/usr/bin/env python3
"""Frozen time of incremental dumps against a plain dump (issue 5), run by hand.

For a process with SIZE MiB of which PCT % of the pages are rewritten per second
(bench-dirtier), interleaved over --runs runs:
  plain      criu dump                      (frozen for the whole copy)
  pre-copy   criu dump --pre-copy           (frozen only for the last delta)
  track-mem  criu pre-dump, wait --gap s, criu dump --track-mem --prev-images-dir ../pre
Prints min / median of the frozen time (stats frozen_time_us: from the seize until the process
is SIGKILLed, its images complete; reaping it comes after), of the bytes the final dump wrote,
and of the total wall time, the ratio pre-copy / plain (the issue's target: <= 5%), and the
load average (the machine may be shared).
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time


def start(dirtier, size, pct):
    p = subprocess.Popen([dirtier, str(size), str(pct)], stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    if not line.startswith("READY"):
        raise SystemExit(f"workload did not start: {line!r}")
    return p


def criu(binary, args):
    t0 = time.monotonic()
    r = subprocess.run([binary] + args, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"criu {' '.join(args)} failed:\n{r.stderr}")
    return time.monotonic() - t0


def stats(path):
    with open(path) as f:
        s = json.load(f)
    return {k: int(v) if isinstance(v, str) and v.isdigit() else v for k, v in s.items()}


def one(kind, a, root):
    p = start(a.dirtier, a.size, a.pct)
    time.sleep(a.settle)
    d = os.path.join(root, kind)
    shutil.rmtree(d, ignore_errors=True)
    st = os.path.join(root, f"{kind}.json")
    try:
        if kind == "plain":
            wall = criu(a.criu, ["dump", "-t", str(p.pid), "-D", d, "--stats-json", st])
        elif kind == "pre-copy":
            wall = criu(a.criu, ["dump", "--pre-copy", "--max-downtime-ms", str(a.max_downtime_ms), "-t",
                                 str(p.pid), "-D", d, "--stats-json", st])
        else:
            pre = os.path.join(root, "pre")
            shutil.rmtree(pre, ignore_errors=True)
            wall = criu(a.criu, ["pre-dump", "-t", str(p.pid), "-D", pre])
            time.sleep(a.gap)
            wall += criu(a.criu, ["dump", "--track-mem", "--prev-images-dir", "../pre", "-t", str(p.pid), "-D", d,
                                  "--stats-json", st])
        s = stats(st)
    finally:
        p.kill()
        p.wait()
    return {"frozen_ms": s.get("frozen_time_us", 0) / 1000.0, "bytes": s.get("bytes_written", 0),
            "wall_s": wall, "rounds": len(s.get("pre_copy_rounds", [])), "method": s.get("dirty_tracking", "")}


def fmt(values, unit):
    return f"{min(values):.2f} / {statistics.median(values):.2f} {unit}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--criu", default="build/bin/criu")
    ap.add_argument("--dirtier", default="build/bin/bench-dirtier")
    ap.add_argument("--dir", default="/var/tmp")
    ap.add_argument("--size", type=int, default=1024, help="MiB")
    ap.add_argument("--pct", type=float, default=1.0, help="percent of the pages rewritten per second")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--gap", type=float, default=2.0, help="seconds between pre-dump and dump --track-mem")
    ap.add_argument("--settle", type=float, default=1.0, help="seconds the workload runs before a dump")
    ap.add_argument("--max-downtime-ms", type=int, default=100)
    a = ap.parse_args()
    root = tempfile.mkdtemp(prefix="criu-bench-precopy-", dir=a.dir)
    load0 = os.getloadavg()[0]
    res = {"plain": [], "pre-copy": [], "track-mem": []}
    try:
        for i in range(a.runs):
            for kind in res:
                r = one(kind, a, root)
                res[kind].append(r)
                print(f"run {i + 1} {kind:9s}: frozen {r['frozen_ms']:8.1f} ms, final dump wrote "
                      f"{r['bytes'] / 2**20:8.1f} MiB, wall {r['wall_s']:.2f} s, rounds {r['rounds']}, "
                      f"tracking {r['method']!r}", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"\n{a.size} MiB, {a.pct}% rewritten per second, {a.runs} runs (min / median), "
          f"load average {load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end:")
    for kind, rs in res.items():
        print(f"  {kind:9s} frozen {fmt([r['frozen_ms'] for r in rs], 'ms')}, final dump wrote "
              f"{fmt([r['bytes'] / 2**20 for r in rs], 'MiB')}, wall {fmt([r['wall_s'] for r in rs], 's')}")
    plain = statistics.median(r["frozen_ms"] for r in res["plain"])
    pc = statistics.median(r["frozen_ms"] for r in res["pre-copy"])
    tm = statistics.median(r["frozen_ms"] for r in res["track-mem"])
    print(f"  frozen time vs a plain dump: pre-copy {100 * pc / plain:.1f}%, track-mem {100 * tm / plain:.1f}%")


if __name__ == "__main__":
    sys.exit(main())
