#!/usr/bin/env python3
"""Live-migration benchmark (run by hand, as root, on an idle machine).

A process with STATIC MiB written once and DYNAMIC MiB rewritten at RATE MiB/s
(test/e2e/workloads/mig_writer.c; defaults 1024 / 64 / 32) is migrated between two network
namespaces joined by veth (the same setup as test/e2e/migrate_run.py). Reported per run and as
min / median: the longest pause the process itself observed, criu's downtime, the total time,
the bytes on the wire per round, and, measured in the same session, the veth bandwidth (one
TCP stream) and what (memory / bandwidth) would take.

  python3 bench/migrate_bench.py --criu build/bin/criu --writer build/test/e2e/e2e_mig_writer --runs 3
  python3 bench/migrate_bench.py ... --cache     # pages through the SSD cache (--cache-dir on both sides)
  python3 bench/migrate_bench.py ... --post-copy # post-copy when pre-copy does not converge

The machine's load (/proc/loadavg) is printed with every run: the figures mean little without it.
"""
import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "e2e"))
import migrate_run as mr  # noqa: E402


def veth_bandwidth(hosts, port, mib=1024):
    """One TCP stream from A to B: GiB/s."""
    recv = ("import socket,sys,time\n"
            "s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
            f"s.bind(('{mr.B_ADDR}',{port}));s.listen(1);c,_=s.accept();n=0\n"
            "b=bytearray(4<<20)\n"
            "while True:\n  k=c.recv_into(b)\n  if not k: break\n  n+=k\n"
            "print(n)\n")
    send = ("import socket,time\n"
            f"c=socket.create_connection(('{mr.B_ADDR}',{port}));b=bytes(4<<20);t=time.monotonic()\n"
            f"for _ in range({mib // 4}): c.sendall(b)\n"
            "c.shutdown(socket.SHUT_WR);c.recv(1);print(time.monotonic()-t)\n")
    r = subprocess.Popen(hosts.in_b(["python3", "-c", recv]), stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    s = subprocess.run(hosts.in_a(["python3", "-c", send]), capture_output=True, text=True, check=True)
    r.wait(60)
    return mib / 1024 / float(s.stdout.strip())


def one_run(r, hosts, args, n):
    r.out = os.path.join(r.tmp, f"out{n}.log")
    pid = r.start_workload()
    time.sleep(args.settle)
    port = mr.free_port()
    cache = os.path.join(r.tmp, f"dest-cache{n}")
    serve_cmd = ["serve", "--listen", f"{mr.B_ADDR}:{port}", "--cache-dir", cache, "--auth-key", r.key, "--once",
                 "-o", f"serve{n}.log", "-W", r.tmp]
    srv = r.criu(serve_cmd, wrap=hosts.in_b, background=True)
    mr.wait_for(lambda: "listening on" in mr.read(os.path.join(r.tmp, f"serve{n}.log")), 10, "serve")
    stats = os.path.join(r.tmp, f"stats{n}.json")
    cmd = ["migrate", "-t", str(pid), "--to", f"{mr.B_ADDR}:{port}", "--auth-key", r.key, "--stats-json", stats,
           "-o", f"migrate{n}.log", "-W", r.tmp, "--max-downtime-ms", str(args.max_downtime_ms)]
    if args.cache:
        cmd += ["--cache-dir", os.path.join(r.tmp, f"src-cache{n}")]
    if args.post_copy:
        cmd += ["--post-copy"]
    if args.no_lazy_restore:
        cmd += ["--no-lazy-restore"]
    t0 = time.monotonic()
    m = r.criu(cmd, wrap=hosts.in_a)
    wall = time.monotonic() - t0
    if m.returncode != 0:
        raise mr.Failure("migrate failed")
    srv.wait(60)
    r.proc.wait(10)
    hp = hosts.host_pid_in_b(pid)
    os.kill(hp, signal.SIGTERM)
    mr.wait_for(lambda: not mr.alive(hp), 120, "the workload to finish")
    out = mr.read(r.out)
    if not out.strip().endswith("PASS"):
        raise mr.Failure(f"workload failed after migration:\n{out}")
    pause = float(re.search(r"max pause ([0-9.]+) ms", out).group(1))
    st = json.load(open(stats))
    return {"pause_ms": pause, "downtime_ms": st["downtime_ms"], "total_ms": st["total_ms"], "wall_s": wall,
            "bytes_sent": st["bytes_sent"], "rounds": [(x["pages"], x["bytes"], x["frozen"]) for x in st["rounds"]],
            "dedup": st["dedup_ratio"], "compression": st["compression_ratio"], "fill_ms": st.get("fill_ms", 0),
            "restore_ms": st["restore_ms"], "post_copy": st.get("post_copy", False),
            "postcopy_pages": st.get("postcopy_pages", 0), "load": open("/proc/loadavg").read().split()[0]}


def fmt(xs):
    return f"{min(xs):.1f} / {statistics.median(xs):.1f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--criu", required=True)
    ap.add_argument("--writer", required=True)
    ap.add_argument("--static-mib", type=int, default=1024)
    ap.add_argument("--dynamic-mib", type=int, default=64)
    ap.add_argument("--rate", type=float, default=32)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--settle", type=float, default=1.0, help="seconds the workload writes before the migration")
    ap.add_argument("--max-downtime-ms", type=int, default=100)
    ap.add_argument("--cache", action="store_true")
    ap.add_argument("--post-copy", action="store_true")
    ap.add_argument("--no-lazy-restore", action="store_true")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    args.scenario = "bench"
    args.workload = [args.writer, str(args.static_mib), str(args.dynamic_mib), str(args.rate)]
    r = mr.Run(args)
    ok = False
    try:
        with mr.Hosts() as hosts:
            bws = []
            results = []
            for n in range(args.runs):
                bws.append(veth_bandwidth(hosts, mr.free_port()))
                res = one_run(r, hosts, args, n)
                results.append(res)
                rounds = ", ".join(f"{p} pages/{b / 2**20:.1f} MiB{' (frozen)' if f else ''}"
                                   for p, b, f in res["rounds"])
                print(f"run {n + 1} (load {res['load']}): pause {res['pause_ms']:.1f} ms, downtime "
                      f"{res['downtime_ms']} ms (restore {res['restore_ms']} ms), total {res['total_ms']} ms (memory "
                      f"filled {res['fill_ms']} ms after the hold), {res['bytes_sent'] / 2**20:.1f} MiB sent; rounds: "
                      f"{rounds}{'; post-copy of %d pages' % res['postcopy_pages'] if res['post_copy'] else ''}; "
                      f"veth {bws[-1]:.2f} GiB/s", flush=True)
            mem_gib = (args.static_mib + args.dynamic_mib) / 1024
            ideal = [mem_gib / b * 1000 for b in bws]
            print()
            print(f"workload: {args.static_mib} MiB static + {args.dynamic_mib} MiB rewritten at {args.rate} MiB/s"
                  f"{', through the SSD cache' if args.cache else ''}; {args.runs} runs, min / median")
            print(f"  pause seen by the process   {fmt([x['pause_ms'] for x in results])} ms")
            print(f"  downtime (criu)             {fmt([x['downtime_ms'] for x in results])} ms")
            print(f"  total migration time        {fmt([x['total_ms'] for x in results])} ms")
            print(f"  memory / veth bandwidth     {fmt(ideal)} ms   (veth one stream {min(bws):.2f} / {statistics.median(bws):.2f} GiB/s)")
            print(f"  total / ideal               {fmt([x['total_ms'] / i for x, i in zip(results, ideal)])}")
            print(f"  bytes on the wire           {fmt([x['bytes_sent'] / 2**20 for x in results])} MiB")
            print(f"  later rounds (not 1st)      {fmt([sum(b for _, b, _ in x['rounds'][1:]) / 2**20 for x in results])}"
                  f" MiB   (dynamic area {args.dynamic_mib} MiB)")
            print(f"  load average (1 min)        {', '.join(x['load'] for x in results)}")
        ok = True
    finally:
        r.cleanup(ok)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
