#!/usr/bin/env python3
"""Dump/restore benchmark (run by hand; never part of the test suite).

For each size, starts bench-memhog (half random, half compressible memory), dumps it,
restores it, and checks it survived; repeats, interleaving the modes, and prints
medians and minimums next to the ceilings of this machine measured in the same run:
dd with O_DIRECT and buffered dd to the images' filesystem, and a fresh-memory fill.

  python3 bench/dump_restore.py --criu build/bin/criu --sizes 256,1024 --runs 5

With --procs 1,10 the same total is also spread over a tree of 10 processes (bench-memhog
MIB tree 10): the rows compare a tree with one process holding the same bytes.
"""
import argparse
import ctypes
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def dir_size(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
    return total


def dd_rate(dirpath, mib, direct):
    target = os.path.join(dirpath, "dd.bench")
    flags = ["oflag=direct", "bs=4M", f"count={mib // 4}"] if direct else ["bs=1M", f"count={mib}"]
    t0 = time.monotonic()
    sh(["dd", "if=/dev/zero", f"of={target}", "conv=fsync"] + flags)
    dt = time.monotonic() - t0
    os.unlink(target)
    return dt


def fill_time(memhog, mib):
    return float(sh([memhog, str(mib), "fill"]).stdout.strip())


def reap_orphans():
    """Members of a dumped (killed) or finished tree are reparented to us (a subreaper): reap
    them at once, or the next restore would wait for their pids."""
    while True:
        try:
            if os.waitpid(-1, 0)[0] <= 0:
                return
        except ChildProcessError:
            return


def start_memhog(memhog, mib, out_path, procs=1):
    out = open(out_path, "w")
    cmd = [memhog, str(mib)] + (["tree", str(procs)] if procs > 1 else [])
    p = subprocess.Popen(cmd, stdout=out, stderr=out, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        with open(out_path) as f:
            if "READY" in f.read():
                return p
        if p.poll() is not None:
            raise RuntimeError("memhog exited")
        time.sleep(0.05)
    raise RuntimeError("memhog not ready")


def one_run(a, memhog, mib, base, compress, procs=1):
    img = os.path.join(base, f"img-{mib}-{int(compress)}-{procs}")
    shutil.rmtree(img, ignore_errors=True)
    out_path = os.path.join(base, "memhog.out")
    p = start_memhog(memhog, mib, out_path, procs)
    stats = os.path.join(base, "stats.json")
    args = [a.criu, "dump", "-t", str(p.pid), "-D", img, "--stats-json", stats]
    if compress:
        args.append("--compress")
    t0 = time.monotonic()
    sh(args)
    dump_s = time.monotonic() - t0
    p.wait()
    reap_orphans()
    frozen_ms = None
    try:
        with open(stats) as f:
            st = json.load(f)
        frozen_ms = float(st.get("frozen_time_us", 0)) / 1000.0  # uint64 fields are JSON strings
    except (OSError, ValueError):
        pass
    size = dir_size(img)
    pidfile = os.path.join(base, "pid")
    t0 = time.monotonic()
    sh([a.criu, "restore", "-D", img, "-d", "--pidfile", pidfile])
    restore_s = time.monotonic() - t0
    pid = int(open(pidfile).read())
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    ok = False
    while time.monotonic() < deadline:
        if "PASS" in open(out_path).read():
            ok = True
            break
        if "FAIL" in open(out_path).read():
            break
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    reap_orphans()
    shutil.rmtree(img, ignore_errors=True)
    if not ok:
        raise RuntimeError(f"restored memhog did not verify its memory ({mib} MiB)")
    return dump_s, restore_s, frozen_ms, size


def fmt_pair(values, unit=""):
    return f"{min(values):.3f}/{statistics.median(values):.3f}{unit}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--criu", default="build/bin/criu")
    ap.add_argument("--sizes", default="256,1024")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--dir", default="/var/tmp", help="where images go (a disk)")
    ap.add_argument("--compress", action="store_true", help="also measure --compress")
    ap.add_argument("--procs", default="1", help="process counts to spread each size over, e.g. 1,10")
    a = ap.parse_args()
    # Restored trees and the members of killed ones come back to us: we reap them.
    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    procs_list = [int(x) for x in a.procs.split(",")]
    memhog = os.path.join(os.path.dirname(os.path.abspath(a.criu)), "bench-memhog")
    base = tempfile.mkdtemp(prefix="criu-bench-", dir=a.dir)
    print(f"images in {base}; min/median of {a.runs} runs")
    print(f"{'MiB':>5} {'mode':>6} {'dump s':>13} {'GiB/s':>6} {'vs dd-direct':>12} {'vs dd':>6} "
          f"{'frozen ms':>9} {'image MiB':>9} {'restore s':>13} {'GiB/s':>6} {'vs fill':>7}")
    try:
        for mib in [int(s) for s in a.sizes.split(",")]:
            modes = [(c, n) for n in procs_list for c in ([False, True] if a.compress else [False])]
            res = {m: [] for m in modes}
            dd_direct, dd_buf, fill = [], [], []
            for _ in range(a.runs):
                dd_direct.append(dd_rate(base, mib, True))
                dd_buf.append(dd_rate(base, mib, False))
                fill.append(fill_time(memhog, mib))
                for m in modes:
                    res[m].append(one_run(a, memhog, mib, base, m[0], m[1]))
            gib = mib / 1024.0
            ceil_direct = statistics.median(dd_direct)
            ceil_buf = statistics.median(dd_buf)
            ceil_fill = statistics.median(fill)
            print(f"{mib:>5} {'ceil':>6} dd-direct {fmt_pair(dd_direct)} s ({gib / ceil_direct:.2f} GiB/s), "
                  f"dd {fmt_pair(dd_buf)} s ({gib / ceil_buf:.2f} GiB/s), fill {fmt_pair(fill)} s "
                  f"({gib / ceil_fill:.2f} GiB/s)")
            for m in modes:
                d = [r[0] for r in res[m]]
                r_ = [r[1] for r in res[m]]
                fr = [r[2] for r in res[m] if r[2] is not None]
                sz = statistics.median([r[3] for r in res[m]]) / (1 << 20)
                md = statistics.median(d)
                mr = statistics.median(r_)
                label = ("zstd" if m[0] else "raw") + (f"x{m[1]}" if m[1] > 1 else "")
                print(f"{mib:>5} {label:>6} {fmt_pair(d):>13} {gib / md:>6.2f} "
                      f"{ceil_direct / md:>12.0%} {ceil_buf / md:>6.0%} "
                      f"{(statistics.median(fr) if fr else float('nan')):>9.1f} {sz:>9.0f} "
                      f"{fmt_pair(r_):>13} {gib / mr:>6.2f} {ceil_fill / mr:>7.0%}")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
