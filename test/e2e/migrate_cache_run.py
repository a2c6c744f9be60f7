#!/usr/bin/env python3
"""End-to-end tests of the SSD cache in live migration and of the convergence controller's
cgroup throttling, on the two-host setup of migrate_run.py (network namespaces joined by
veth, the destination in its own pid namespace).

Scenarios:
  cache-writeback    --cache-mode writeback through a source cache much smaller than the
                     workload, over a link slowed to 200 Mbit/s: `criu cache stat` (read-only,
                     next to the running migration) sees dirty chunks, which are 0 at the end;
                     puts waited for the writer instead of evicting dirty chunks; the cache
                     verifies; a second process through the same source cache to a fresh
                     destination cache (chunks clean here, unknown there) migrates too
  cache-disk-full    the source's cache directory on a 3 MiB tmpfs: the migration fails
                     with the disk's error, the source runs on intact, the destination keeps
                     nothing, and the cache then opens, verifies and reports clean
  cache-dest-killed  writeback, the destination SIGKILLed mid-stream: the source runs on
                     intact, the destination keeps nothing, the unacknowledged chunks stay
                     dirty in the source cache and go to the next destination
  cache-criu-killed  criu migrate itself SIGKILLed while its cache holds dirty chunks: the
                     source runs on intact, the destination keeps nothing, the cache recovers
                     and verifies, and the next migration through it goes through
  throttle           a writer that dirties faster than the link (120 MiB/s against 100 Mbit/s):
                     pre-copy cannot converge, so the controller throttles it through a cgroup
                     (cpu.max, or cpu.cfs_quota_us on cgroup v1) until it does; the process
                     PASSes on the destination and the throttle cgroup is gone
  throttle-fail      the same, the destination killed while the process is throttled: the
                     source is back in its own cgroup, unthrottled, and PASSes
  throttle-criu-killed  the same, criu migrate itself SIGKILLed while the process is
                     throttled: its watchdog puts the source back and removes the cgroup
  page-server-cache  criu dump --page-server --cache-dir (writeback) to a page server with its
                     own chunk cache: restored from the merged images the workload PASSes; a
                     second process with the same static memory sends only what is missing
"""
import argparse
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import migrate_run as mr  # noqa: E402
from migrate_run import B_ADDR, Failure, alive, free_port, log, read, wait_for  # noqa: E402


def slow_link(hosts, rate):
    """Shapes A's side of the veth (A -> B, where the pages go)."""
    mr.sh("ip", "netns", "exec", hosts.a, "tc", "qdisc", "add", "dev", hosts.va, "root", "tbf", "rate", rate,
          "burst", "256kb", "latency", "200ms")


def serve(r, hosts, cache, tag, env=None):
    srv = r.criu(["serve", "--listen", f"{B_ADDR}:{r.port}", "--cache-dir", cache,
                  "--auth-key", r.key, "--once", "-o", f"{tag}.log", "-W", r.tmp, "-v4"],
                 wrap=hosts.in_b, env=env, background=True)
    logf = os.path.join(r.tmp, f"{tag}.log")
    wait_for(lambda: "listening on" in read(logf) or srv.poll() is not None, 10, "criu serve to listen")
    if srv.poll() is not None:
        raise Failure(f"criu serve exited at once ({srv.returncode}): {read(logf)}")
    return srv


def migrate_cmd(r, pid, extra):
    return ["migrate", "-t", str(pid), "--to", f"{B_ADDR}:{r.port}", "--auth-key", r.key, "-o", "migrate.log",
            "-W", r.tmp, "-v4"] + list(extra)


def cache_stat(r, cache):
    p = subprocess.run([r.a.criu, "cache", "stat", "--json", "--cache-dir", cache], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        return None
    return json.loads(p.stdout)


def cache_verify(r, cache):
    p = subprocess.run([r.a.criu, "cache", "verify", "--cache-dir", cache], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise Failure(f"criu cache verify {cache} failed: {p.stdout} {p.stderr}")


def landed(r, hosts, pid, srv, stats_path):
    """After a successful migration: the source is gone, the copy runs on B, B kept nothing."""
    if srv.wait(60) != 0:
        raise Failure(f"criu serve exit {srv.returncode}")
    r.proc.wait(10)
    if alive(pid):
        raise Failure("the source is still running")
    host_pid = hosts.host_pid_in_b(pid)
    if host_pid is None:
        raise Failure(f"no pid {pid} in the destination's pid namespace")
    st = json.load(open(stats_path))
    log(f"migrated: downtime {st['downtime_ms']} ms, total {st['total_ms']} ms, {st['bytes_sent']} bytes, "
        f"{st['iterations']} round(s), {st['chunks_sent']} chunks sent")
    return host_pid, st


def no_staging(cache):
    incoming = os.path.join(cache, "incoming")
    if os.path.isdir(incoming) and os.listdir(incoming):
        raise Failure(f"the destination kept {os.listdir(incoming)}")


def nothing_kept(hosts, cache):
    no_staging(cache)
    if hosts.b_processes():
        raise Failure(f"processes left in the destination: {hosts.b_processes()}")


def migrate_again(r, hosts, pid, src, dest, what):
    """Migrates pid through the source cache `src` to a new server with the cache `dest`: it
    must land, with nothing left dirty in the source cache."""
    r.port = free_port()
    srv = serve(r, hosts, dest, "serve2")
    stats = os.path.join(r.tmp, "stats2.json")
    m = r.criu(migrate_cmd(r, pid, ["--cache-dir", src, "--stats-json", stats]), wrap=hosts.in_a)
    if m.returncode != 0:
        raise Failure(f"{what} failed ({m.returncode})")
    host_pid, _ = landed(r, hosts, pid, srv, stats)
    if cache_stat(r, src)["dirty_chunks"] != 0:
        raise Failure("dirty chunks left after the second migration")
    r.finish_remote(host_pid)


def scenario_cache_writeback(r, hosts):
    slow_link(hosts, "200mbit")
    src = os.path.join(r.tmp, "src-cache")
    dest1 = os.path.join(r.tmp, "dest-cache-1")
    pid = r.start_workload()
    r.port = free_port()
    srv = serve(r, hosts, dest1, "serve1")
    stats = os.path.join(r.tmp, "stats1.json")
    m = r.criu(migrate_cmd(r, pid, ["--cache-dir", src, "--cache-mode", "writeback", "--cache-size", "16M",
                                    "--stats-json", stats]), wrap=hosts.in_a, background=True)
    # `criu cache stat` opens read-only next to the running migration.
    samples = []
    while m.poll() is None:
        s = cache_stat(r, src)
        if s is not None:
            samples.append(s["dirty_chunks"])
        time.sleep(0.05)
    out = m.stdout.read()
    if out.strip():
        print(out.rstrip())
    if m.returncode != 0:
        raise Failure(f"criu migrate failed ({m.returncode})")
    host_pid, st = landed(r, hosts, pid, srv, stats)
    final = cache_stat(r, src)
    log(f"dirty chunks seen while migrating: max {max(samples, default=0)} over {len(samples)} samples; at the "
        f"end {final['dirty_chunks']}; writeback waits {final['writeback_waits']}, evictions {final['evictions']}, "
        f"writebacks {final['writebacks']}")
    if final["mode"] != "writeback":
        raise Failure(f"the source cache runs in {final['mode']} mode")
    if max(samples, default=0) == 0:
        raise Failure(f"criu cache stat never saw a dirty chunk in {len(samples)} samples")
    if final["dirty_chunks"] != 0:
        raise Failure(f"{final['dirty_chunks']} chunks still dirty after the migration")
    # 80 MiB of pages through 12 MiB of room, sent at 25 MB/s: puts had to wait for the
    # writer, and the room came from clean chunks only.
    if final["writeback_waits"] == 0 or final["evictions"] == 0:
        raise Failure(f"no put waited for the writer or nothing was evicted: {final}")
    if final["live_bytes"] > final["live_limit"]:
        raise Failure(f"the cache holds {final['live_bytes']} live bytes over its limit {final['live_limit']}")
    cache_verify(r, src)
    no_staging(dest1)
    r.finish_remote(host_pid)

    # A second process, the same source cache, a destination cache that has never seen any
    # of it: chunks clean here must be sent all the same.
    r.out = os.path.join(r.tmp, "out2.log")
    pid2 = r.start_workload()
    migrate_again(r, hosts, pid2, src, os.path.join(r.tmp, "dest-cache-2"),
                  "the migration to a fresh destination cache")


def scenario_cache_disk_full(r, hosts):
    pid = r.start_workload()
    r.port = free_port()
    dest = os.path.join(r.tmp, "dest-cache")
    srv = serve(r, hosts, dest, "serve")
    small = os.path.join(r.tmp, "small")
    os.mkdir(small)
    cache = os.path.join(small, "cache")
    cmd = " ".join([r.a.criu] + migrate_cmd(r, pid, ["--cache-dir", cache, "--cache-size", "64M"]))
    crit = r.a.criu
    # The tmpfs lives in a private mount namespace: the cache is checked in the same one.
    script = (f"mount -t tmpfs -o size=3m tmpfs {small} && {{ {cmd}; echo migrate-rc=$?; "
              f"{crit} cache verify --cache-dir {cache}; echo verify-rc=$?; "
              f"{crit} cache stat --json --cache-dir {cache}; }}")
    p = r.criu_raw(hosts.in_a(["unshare", "-m", "--propagation", "private", "sh", "-c", script]))
    out = p.stdout + p.stderr
    if "migrate-rc=0" in out or "migrate-rc=" not in out:
        raise Failure("criu migrate succeeded on a full disk (or did not run)")
    if "No space left" not in out and "ENOSPC" not in out:
        raise Failure(f"the error does not say the disk is full: {out}")
    r.source_intact(pid)
    wait_for(lambda: "nothing kept" in read(os.path.join(r.tmp, "serve.log")), 30, "the destination to give up")
    nothing_kept(hosts, dest)
    if "verify-rc=0" not in out:
        raise Failure(f"the cache does not verify after the full disk: {out}")
    r.finish_local(pid)


def scenario_cache_dest_killed(r, hosts):
    slow_link(hosts, "400mbit")
    src = os.path.join(r.tmp, "src-cache")
    dest = os.path.join(r.tmp, "dest-cache")
    pid = r.start_workload()
    r.port = free_port()
    srv = serve(r, hosts, dest, "serve", env={"CRIU_SERVE_DIE_AFTER_BYTES": str(8 << 20)})
    m = r.criu(migrate_cmd(r, pid, ["--cache-dir", src, "--cache-mode", "writeback"]), wrap=hosts.in_a)
    if m.returncode == 0:
        raise Failure("criu migrate succeeded although the destination died")
    srv.wait(30)
    if srv.returncode not in (-signal.SIGKILL, 137):
        raise Failure(f"criu serve ended with {srv.returncode}, not killed by its test hook")
    r.source_intact(pid)
    if hosts.b_processes():
        raise Failure(f"processes left in the destination: {hosts.b_processes()}")
    s = cache_stat(r, src)
    log(f"source cache after the failure: {s['chunks']} chunks, {s['dirty_chunks']} dirty")
    cache_verify(r, src)
    # A new server removes what the killed one left, and the migration then goes through;
    # nothing stays dirty.
    migrate_again(r, hosts, pid, src, dest, "the second migration")
    if "left by an earlier server" not in read(os.path.join(r.tmp, "serve2.log")):
        raise Failure("the new server did not clean up after the killed one")
    no_staging(dest)


def cpu_cgroup_of(pid):
    """The cpu controller's line of /proc/PID/cgroup ('2:cpu:/path'), or the v2 one."""
    lines = read(f"/proc/{pid}/cgroup").splitlines()
    for l in lines:
        if "cpu" in l.split(":")[1].split(","):
            return l
    return next((l for l in lines if l.startswith("0::")), "")


def throttle_dirs(line):
    """criu-throttle-* cgroups below the cgroup of a /proc/PID/cgroup line, in every mounted
    hierarchy (the test runs in the host's mount namespace, where they are mounted)."""
    path = line.split(":", 2)[2].lstrip("/")
    pats = [os.path.join("/sys/fs/cgroup", path, "criu-throttle-*"),
            os.path.join("/sys/fs/cgroup", "*", path, "criu-throttle-*")]
    return sorted(set(d for p in pats for d in glob.glob(p)))


def throttle_workload(r):
    """mig_writer with 10 us of CPU work after every page: it dirties its 8 MiB as fast as
    the CPU it gets allows (~390 MiB/s on a whole CPU), far above the 200 Mbit/s link."""
    r.a.workload = [r.a.workload[0], "16", "8", "100000", "10"]
    return r.start_workload()


def scenario_throttle(r, hosts):
    slow_link(hosts, "200mbit")
    pid = throttle_workload(r)
    before = cpu_cgroup_of(pid)
    r.port = free_port()
    dest = os.path.join(r.tmp, "dest-cache")
    srv = serve(r, hosts, dest, "serve")
    stats = os.path.join(r.tmp, "stats.json")
    m = r.criu(migrate_cmd(r, pid, ["--stats-json", stats]), wrap=hosts.in_a, background=True)
    seen = set()
    while m.poll() is None:
        if alive(pid):
            seen.add(cpu_cgroup_of(pid))
        time.sleep(0.02)
    out = m.stdout.read()
    if out.strip():
        print(out.rstrip())
    if m.returncode != 0:
        raise Failure(f"criu migrate failed ({m.returncode})")
    host_pid, st = landed(r, hosts, pid, srv, stats)
    log(f"throttled {st['throttled']}: down to {st['throttle_min_cpu_pct']}% of a CPU, {st['throttle_rounds']} "
        f"throttled rounds; cgroups seen: {sorted(seen)}")
    if not st["throttled"] or st["throttle_rounds"] == 0:
        raise Failure(f"pre-copy against a writer faster than the link was not throttled: {st}")
    if not any("criu-throttle-" in s for s in seen):
        raise Failure(f"the process was never seen in a throttle cgroup (only in {sorted(seen)}, was {before})")
    if st["post_copy"]:
        raise Failure("post-copy happened although throttling is the default")
    # Throttled, it dirties less than the link carries: the dirty set shrinks well below the
    # whole 8 MiB it rewrote every round before. (Whether the last round then fits 100 ms also
    # depends on a round's fixed cost on a loaded machine: logged, not required.)
    pages = [x["pages"] for x in st["rounds"] if not x["frozen"]]
    log(f"pages per round: {pages}; converged: "
        f"{'converged after round' in read(os.path.join(r.tmp, 'migrate.log'))}")
    if min(pages[2:]) * 4 > max(pages[1:]):
        raise Failure(f"throttling did not shrink the dirty set: {pages}")
    left = [d for d in throttle_dirs(before) if f"-{pid}." in d]
    if left:
        raise Failure(f"the throttle cgroup is still there: {left}")
    no_staging(dest)
    r.finish_remote(host_pid)


def scenario_throttle_fail(r, hosts):
    """The destination dies while the source is throttled: the source ends up in its own
    cgroup again, without a limit, and PASSes."""
    slow_link(hosts, "200mbit")
    pid = throttle_workload(r)
    before = cpu_cgroup_of(pid)
    r.port = free_port()
    dest = os.path.join(r.tmp, "dest-cache")
    srv = serve(r, hosts, dest, "serve")
    m = r.criu(migrate_cmd(r, pid, ["--throttle"]), wrap=hosts.in_a, background=True)
    wait_for(lambda: "criu-throttle-" in cpu_cgroup_of(pid) or m.poll() is not None, 120,
             "the source to be throttled")
    if m.poll() is not None:
        raise Failure(f"criu migrate ended ({m.returncode}) before it throttled the source")
    throttled_in = cpu_cgroup_of(pid)
    log(f"the source is throttled in {throttled_in}: killing the destination")
    victims = [p for p in hosts.b_processes()]
    for p in victims:
        os.kill(p, signal.SIGKILL)
    rc = m.wait(120)
    out = m.stdout.read()
    if out.strip():
        print(out.rstrip())
    if rc == 0:
        raise Failure("criu migrate succeeded although the destination died")
    r.source_intact(pid)
    after = cpu_cgroup_of(pid)
    if after != before:
        raise Failure(f"the source was in {before} and is now in {after}")
    left = [d for d in throttle_dirs(before) if f"-{pid}." in d]
    if left:
        raise Failure(f"the throttle cgroup is still there: {left}")
    srv.wait(30)
    # (A SIGKILLed serve leaves its staging directory to the next serve: e2e.migrate.dest-killed.)
    if hosts.b_processes():
        raise Failure(f"processes left in the destination: {hosts.b_processes()}")
    r.finish_local(pid)


def scenario_cache_criu_killed(r, hosts):
    """criu migrate SIGKILLed while its writeback cache holds chunks the destination has not
    acknowledged: the source runs on intact, the destination keeps nothing, the cache
    recovers (verify), still holds those chunks dirty, and the next migration takes them."""
    slow_link(hosts, "200mbit")
    src = os.path.join(r.tmp, "src-cache")
    dest = os.path.join(r.tmp, "dest-cache")
    pid = r.start_workload()
    r.port = free_port()
    srv = serve(r, hosts, dest, "serve")
    m = r.criu(migrate_cmd(r, pid, ["--cache-dir", src, "--cache-mode", "writeback"]), wrap=hosts.in_a,
               background=True)

    def dirty():
        s = cache_stat(r, src)
        return s is not None and s["dirty_chunks"] >= 64

    wait_for(lambda: dirty() or m.poll() is not None, 120, "dirty chunks in the source cache")
    if m.poll() is not None:
        raise Failure(f"criu migrate ended ({m.returncode}) before its cache held a dirty chunk")
    os.kill(m.pid, signal.SIGKILL)  # ip netns exec execs criu: this is criu itself
    m.wait(30)
    log("criu migrate killed with dirty chunks in its cache")
    r.source_intact(pid)
    # The throttle cgroup set up in case the rounds do not converge goes too (its watchdog).
    wait_for(lambda: not [d for d in throttle_dirs(cpu_cgroup_of(pid)) if f"-{pid}." in d], 30,
             "the throttle cgroup to be removed")
    wait_for(lambda: srv.poll() is not None, 60, "criu serve to give up on the lost source")
    wait_for(lambda: not hosts.b_processes(), 20, "the destination to remove its copy")
    no_staging(dest)
    cache_verify(r, src)
    s = cache_stat(r, src)
    log(f"source cache after kill -9: {s['chunks']} chunks, {s['dirty_chunks']} dirty, recoveries "
        f"{s['recoveries']}")
    if s["recoveries"] < 1:
        raise Failure(f"the cache did not notice it was not closed cleanly: {s}")
    migrate_again(r, hosts, pid, src, dest, "the migration after the kill")


def scenario_throttle_criu_killed(r, hosts):
    """criu migrate SIGKILLed while the source is throttled: no destructor runs, so its
    watchdog moves the source back to its cgroup and removes the throttle cgroup."""
    slow_link(hosts, "200mbit")
    pid = throttle_workload(r)
    before = cpu_cgroup_of(pid)
    r.port = free_port()
    dest = os.path.join(r.tmp, "dest-cache")
    srv = serve(r, hosts, dest, "serve")
    m = r.criu(migrate_cmd(r, pid, []), wrap=hosts.in_a, background=True)
    wait_for(lambda: "criu-throttle-" in cpu_cgroup_of(pid) or m.poll() is not None, 120,
             "the source to be throttled")
    if m.poll() is not None:
        raise Failure(f"criu migrate ended ({m.returncode}) before it throttled the source")
    log(f"the source is throttled in {cpu_cgroup_of(pid)}: killing criu migrate")
    os.kill(m.pid, signal.SIGKILL)  # ip netns exec execs criu: this is criu itself
    m.wait(30)
    wait_for(lambda: cpu_cgroup_of(pid) == before, 30, f"the source to be back in {before}")
    wait_for(lambda: not [d for d in throttle_dirs(before) if f"-{pid}." in d], 30,
             "the throttle cgroup to be removed")
    r.source_intact(pid)
    wait_for(lambda: srv.poll() is not None, 60, "criu serve to give up on the lost source")
    if hosts.b_processes():
        raise Failure(f"processes left in the destination: {hosts.b_processes()}")
    no_staging(dest)
    r.finish_local(pid)


def dump_through_cache(r, pid, tag, src_cache, ps_cache):
    """criu dump --page-server --cache-dir to a page server on loopback with its own chunk
    cache; returns (local images dir, page server dir, chunks the page server received)."""
    port = free_port()
    psdir = os.path.join(r.tmp, f"ps-{tag}")
    local = os.path.join(r.tmp, f"img-{tag}")
    srv = r.criu(["page-server", "--address", "127.0.0.1", "--port", str(port), "-D", psdir, "--auth-key", r.key,
                  "--cache-dir", ps_cache, "-o", f"page-server-{tag}.log", "-W", r.tmp, "-v4"], background=True)
    slog = os.path.join(r.tmp, f"page-server-{tag}.log")
    wait_for(lambda: "listening" in read(slog) or srv.poll() is not None, 10, "the page server")
    d = r.criu(["dump", "-t", str(pid), "-D", local, "--page-server", "--address", "127.0.0.1", "--port", str(port),
                "--auth-key", r.key, "--cache-dir", src_cache, "--cache-size", "32M", "-o", f"dump-{tag}.log",
                "-W", r.tmp, "-v4"])
    if d.returncode != 0:
        raise Failure(f"dump --page-server --cache-dir failed ({d.returncode})")
    if srv.wait(60) != 0:
        raise Failure(f"page server exit {srv.returncode}")
    m = re.search(r"chunks from \S+: (\d+) received, (\d+) taken from the cache", read(slog))
    if not m:
        raise Failure("the page server did not receive the pages as chunks")
    return local, psdir, int(m.group(1))


def restore_merged(r, local, psdir, pid):
    """Restores from the dump's images merged with the page server's; the workload PASSes."""
    for n in os.listdir(psdir):
        if n.endswith(".img"):
            shutil.copy(os.path.join(psdir, n), os.path.join(local, n))
    pidfile = os.path.join(local, "restored.pid")
    rs = r.criu(["restore", "-D", local, "-d", "--pidfile", pidfile, "-o", "restore.log", "-v4"])
    if rs.returncode != 0:
        raise Failure("restore from the merged directory failed")
    if int(read(pidfile)) != pid:
        raise Failure(f"restored pid {read(pidfile)}, expected {pid}")
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not alive(pid), 60, "the restored workload to exit")
    if read(r.out).strip().splitlines()[-1] != "PASS":
        raise Failure(f"verdict:\n{read(r.out)}")


def scenario_page_server_cache(r, hosts):
    """dump --page-server --cache-dir (writeback through a 32 MiB cache, 80 MiB of pages):
    restored from the merged images it PASSes; a second process with the same static memory
    dumped through the same caches sends only what the page server's cache lacks."""
    src, ps_cache = os.path.join(r.tmp, "src-cache"), os.path.join(r.tmp, "ps-cache")
    pid = r.start_workload()
    local, psdir, first = dump_through_cache(r, pid, "1", src, ps_cache)
    r.proc.wait(10)
    s = cache_stat(r, src)
    log(f"first dump: {first} chunks received by the page server; source cache {s['chunks']} chunks, "
        f"{s['dirty_chunks']} dirty, {s['writebacks']} written back, {s['evictions']} evicted, mode {s['mode']}")
    if s["mode"] != "writeback" or s["dirty_chunks"] != 0 or s["writebacks"] == 0:
        raise Failure(f"the source cache did not write back everything: {s}")
    restore_merged(r, local, psdir, pid)

    r.out = os.path.join(r.tmp, "out2.log")
    pid2 = r.start_workload()
    local2, psdir2, second = dump_through_cache(r, pid2, "2", src, ps_cache)
    r.proc.wait(10)
    log(f"second dump: {second} chunks received")
    if second * 2 > first:
        raise Failure(f"the second dump sent {second} chunks, the first {first}: no deduplication")
    restore_merged(r, local2, psdir2, pid2)


SCENARIOS = {
    "cache-writeback": scenario_cache_writeback,
    "cache-disk-full": scenario_cache_disk_full,
    "cache-dest-killed": scenario_cache_dest_killed,
    "cache-criu-killed": scenario_cache_criu_killed,
    "throttle": scenario_throttle,
    "throttle-fail": scenario_throttle_fail,
    "throttle-criu-killed": scenario_throttle_criu_killed,
    "page-server-cache": scenario_page_server_cache,
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--criu", required=True)
    ap.add_argument("--scenario", required=True, choices=sorted(SCENARIOS))
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("workload", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    a.workload = a.workload[1:] if a.workload and a.workload[0] == "--" else a.workload
    r = mr.Run(a)
    ok = False
    try:
        with mr.Hosts() as hosts:
            SCENARIOS[a.scenario](r, hosts)
        ok = True
        log(f"{a.scenario}: PASS")
    except (Failure, subprocess.TimeoutExpired, OSError, KeyError, ValueError, TypeError) as e:
        log(f"{a.scenario}: FAIL: {e}")
        r.show_logs()
    finally:
        r.cleanup(ok)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
