#!/usr/bin/env python3
"""End-to-end tests of the page server and of live migration.

Two "hosts" on one machine: network namespaces A and B joined by a veth pair
(10.231.0.1 and 10.231.0.2, nothing else is ever contacted). The destination also gets
its own pid namespace (and a mount namespace for its /proc), as a real second host has:
the migrated process keeps its pid there while the source still holds it here until the
destination has restored it. Both share the filesystem, like cluster nodes with shared
storage. Every namespace, process and directory is removed on every path.

Scenarios:
  page-server  dump --page-server to a page server on loopback; restore from its
               directory merged with the local images; the workload says PASS
  ok           migrate a workload that keeps writing memory; it continues on B and PASSes
  wrong-key    serve and migrate with different keys: refused, the source runs on intact
  dest-killed  the destination dies mid-stream (SIGKILL): the source runs on intact, the
               destination holds nothing; a new serve cleans up, a second migration works
  src-disk-full  the source's scratch space fills up: refused cleanly on both sides
  cache        pages through the SSD caches (--cache-dir on both sides): a second process
               with the same static memory sends only the chunks the destination lacks
  eager        as ok, with --no-lazy-restore (every page in before the process runs there)
  fill-killed  criu serve dies (SIGKILL) while the migrated process runs and its memory is
               still being filled: its sentinel kills the process rather than let it read
               zero pages, and says so; the migration fails
  post-copy    pre-copy cannot converge (--max-downtime-ms 1 against a writer that never
               stops): with --post-copy the last round's anonymous pages stay on the source
               and the destination fetches them while the process runs; it PASSes there
  post-copy-src-killed  the source dies at the destination's first page request: the
               destination kills its copy rather than let it read zero pages; the source's
               process runs on if the source died before the commit point
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

A_ADDR, B_ADDR = "10.231.0.1", "10.231.0.2"


class Failure(Exception):
    pass


def log(msg):
    print(f"[migrate-e2e] {msg}", flush=True)


def sh(*cmd, check=True):
    r = subprocess.run(list(cmd), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    if check and r.returncode != 0:
        raise Failure(f"{' '.join(cmd)} failed: {r.stderr.strip()}")
    return r


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return False


def proc_state(pid):
    with open(f"/proc/{pid}/status") as f:
        fields = dict(l.split(":", 1) for l in f.read().splitlines() if ":" in l)
    return fields["State"].split()[0], int(fields["TracerPid"])


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.02)
    raise Failure(f"timed out after {timeout} s waiting for {what}")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Hosts:
    """Namespaces A (source) and B (destination, with its own pid namespace)."""

    def __init__(self):
        # The pid alone is not unique: runs in different pid namespaces (ctest-ci shape) share
        # /run/netns and the interface names. 11 characters at most: an interface name is <= 15.
        tag = f"{os.getpid() % 100000}{os.urandom(2).hex()}"
        self.a, self.b = f"cmig{tag}a", f"cmig{tag}b"
        self.va, self.vb = f"cma{tag}", f"cmb{tag}"
        self.b_init = None
        self.b_init_pid = None

    def __enter__(self):
        sh("ip", "netns", "add", self.a)
        sh("ip", "netns", "add", self.b)
        sh("ip", "link", "add", self.va, "type", "veth", "peer", "name", self.vb)
        sh("ip", "link", "set", self.va, "netns", self.a)
        sh("ip", "link", "set", self.vb, "netns", self.b)
        for ns, dev, addr in ((self.a, self.va, A_ADDR), (self.b, self.vb, B_ADDR)):
            sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        # B's pid namespace: its init is a sleep that outlives every serve.
        self.b_init = subprocess.Popen(["ip", "netns", "exec", self.b, "unshare", "--pid", "--fork", "--mount-proc",
                                        "--kill-child", "sleep", "3600"], stdin=subprocess.DEVNULL)

        def child():
            kids = read(f"/proc/{self.b_init.pid}/task/{self.b_init.pid}/children").split()
            return int(kids[0]) if kids else None
        self.b_init_pid = wait_for(child, 10, "the destination's pid namespace")
        return self

    def b_pidns(self):
        return os.readlink(f"/proc/{self.b_init_pid}/ns/pid")

    def in_a(self, cmd):
        return ["ip", "netns", "exec", self.a] + cmd

    def in_b(self, cmd):
        return ["nsenter", "-t", str(self.b_init_pid), "-n", "-p", "-m", "--"] + cmd

    def b_processes(self):
        """Host pids of every process in B's pid namespace except its init."""
        ns = self.b_pidns()
        out = []
        for d in os.listdir("/proc"):
            if not d.isdigit() or int(d) == self.b_init_pid:
                continue
            try:
                if os.readlink(f"/proc/{d}/ns/pid") == ns and alive(int(d)):
                    out.append(int(d))
            except OSError:
                pass
        return out

    def host_pid_in_b(self, inner):
        for hp in self.b_processes():
            nspid = [l for l in read(f"/proc/{hp}/status").splitlines() if l.startswith("NSpid:")]
            if nspid and int(nspid[0].split()[-1]) == inner:
                return hp
        return None

    def __exit__(self, *exc):
        if self.b_init is not None:
            if self.b_init_pid and alive(self.b_init_pid):
                os.kill(self.b_init_pid, signal.SIGKILL)  # takes the whole pid namespace with it
            self.b_init.kill()
            self.b_init.wait()
        for ns in (self.a, self.b):
            sh("ip", "netns", "del", ns, check=False)
        return False


class Run:
    def __init__(self, a):
        self.a = a
        self.tmp = tempfile.mkdtemp(prefix=f"criu-e2e-migrate-{a.scenario}-")
        self.work = os.path.join(self.tmp, "work")
        os.mkdir(self.work)
        self.out = os.path.join(self.tmp, "out.log")
        self.key = self.make_key("key")
        self.proc = None
        self.procs = []

    def make_key(self, name):
        path = os.path.join(self.tmp, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, os.urandom(32))
        os.close(fd)
        return path

    def start_workload(self):
        with open(self.out, "a") as out:
            self.proc = subprocess.Popen(self.a.workload, cwd=self.work, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=out, start_new_session=True)
        wait_for(lambda: "READY" in read(self.out), 60, "READY from the workload")
        time.sleep(0.3)  # let it write for a while
        log(f"workload ready as pid {self.proc.pid}")
        return self.proc.pid

    def criu(self, cmd, wrap=None, env=None, background=False):
        full = [self.a.criu] + cmd
        if wrap:
            full = wrap(full)
        log("$ " + " ".join(full))
        e = dict(os.environ)
        e.update(env or {})
        if background:
            p = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True, env=e)
            self.procs.append(p)
            return p
        r = subprocess.run(full, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=180, env=e)
        for s in (r.stdout, r.stderr):
            if s.strip():
                print(s.rstrip())
        return r

    def criu_raw(self, full):
        log("$ " + " ".join(full))
        r = subprocess.run(full, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=180)
        for s in (r.stdout, r.stderr):
            if s.strip():
                print(s.rstrip())
        return r

    def source_intact(self, pid):
        """The source after a failed migration: running, not traced, not stopped."""
        time.sleep(0.3)
        if not alive(pid):
            raise Failure(f"the source pid {pid} is gone: {read(self.out)}")
        state, tracer = proc_state(pid)
        if tracer != 0 or state not in ("R", "S", "D"):
            raise Failure(f"the source pid {pid} was left in state {state}, traced by {tracer}")

    def finish_local(self, pid):
        """SIGTERM our own child and expect PASS."""
        os.kill(pid, signal.SIGTERM)
        rc = self.proc.wait(120)
        last = read(self.out).strip().splitlines()[-1]
        if rc != 0 or last != "PASS":
            raise Failure(f"workload verdict '{last}', exit {rc}\n{read(self.out)}")

    def finish_remote(self, host_pid):
        """SIGTERM the migrated process (not our child) and expect PASS in its output."""
        os.kill(host_pid, signal.SIGTERM)
        wait_for(lambda: not alive(host_pid), 120, "the migrated workload to exit")
        text = read(self.out).strip().splitlines()
        if not text or text[-1] != "PASS":
            raise Failure(f"migrated workload verdict '{text[-1] if text else ''}':\n{read(self.out)}")
        m = re.search(r"max pause ([0-9.]+) ms", read(self.out))
        if m:
            log(f"the workload saw a longest pause of {m.group(1)} ms")

    def show_logs(self):
        for root, _, files in os.walk(self.tmp):
            for name in sorted(files):
                if name.endswith(".log") and name != "out.log":
                    path = os.path.join(root, name)
                    print(f"----- last lines of {path}")
                    print("\n".join(read(path).splitlines()[-30:]))
        print(f"----- workload output\n{read(self.out)}")

    def cleanup(self, ok):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if ok and not self.a.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            log(f"scratch directory kept: {self.tmp}")


def scenario_page_server(r):
    pid = r.start_workload()
    port = free_port()
    psdir = os.path.join(r.tmp, "ps")
    local = os.path.join(r.tmp, "img")
    srv = r.criu(["page-server", "--address", "127.0.0.1", "--port", str(port), "-D", psdir, "--auth-key", r.key,
                  "-o", "page-server.log", "-W", r.tmp, "-v4"], background=True)
    wait_for(lambda: "listening" in read(os.path.join(r.tmp, "page-server.log")) or srv.poll() is not None, 10,
             "the page server")
    d = r.criu(["dump", "-t", str(pid), "-D", local, "--page-server", "--address", "127.0.0.1", "--port", str(port),
                "--auth-key", r.key, "-o", "dump.log", "-v4"])
    if d.returncode != 0:
        raise Failure(f"dump --page-server failed ({d.returncode})")
    if srv.wait(30) != 0:
        raise Failure(f"page server exit {srv.returncode}: {srv.stdout.read()}")
    r.proc.wait(10)
    here = sorted(os.listdir(local))
    there = sorted(os.listdir(psdir))
    if any(n.startswith(("pages-", "pagemap-")) for n in here):
        raise Failure(f"page images written locally: {here}")
    if f"pagemap-{pid}.img" not in there or f"pages-{pid}.img" not in there:
        raise Failure(f"the page server holds {there}")
    for n in there:
        if n.endswith(".img"):
            shutil.copy(os.path.join(psdir, n), os.path.join(local, n))
    pidfile = os.path.join(r.tmp, "restored.pid")
    rs = r.criu(["restore", "-D", local, "-d", "--pidfile", pidfile, "-o", "restore.log", "-v4"])
    if rs.returncode != 0:
        raise Failure("restore from the merged directory failed")
    restored = int(read(pidfile))
    if restored != pid:
        raise Failure(f"restored pid {restored}, expected {pid}")
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not alive(pid), 60, "the restored workload to exit")
    if read(r.out).strip().splitlines()[-1] != "PASS":
        raise Failure(f"verdict:\n{read(r.out)}")


def start_serve(r, hosts, key, port, env=None, tag="serve"):
    cache = os.path.join(r.tmp, "dest-cache")
    srv = r.criu(["serve", "--listen", f"{B_ADDR}:{port}", "--cache-dir", cache, "--auth-key", key, "--once",
                  "--pidfile", os.path.join(r.tmp, "serve.pid"), "-o", f"{tag}.log", "-W", r.tmp, "-v4"],
                 wrap=hosts.in_b, env=env, background=True)
    logf = os.path.join(r.tmp, f"{tag}.log")
    wait_for(lambda: "listening on" in read(logf) or srv.poll() is not None, 10, "criu serve to listen")
    if srv.poll() is not None:
        raise Failure(f"criu serve exited at once ({srv.returncode}): {read(logf)}")
    return srv, cache


def migrate(r, hosts, pid, key, port, stats=None, src_cache=None, extra=(), env=None):
    cmd = ["migrate", "-t", str(pid), "--to", f"{B_ADDR}:{port}", "--auth-key", key, "-o", "migrate.log", "-W", r.tmp,
           "-v4"] + list(extra)
    if stats:
        cmd += ["--stats-json", stats]
    if src_cache:
        cmd += ["--cache-dir", src_cache]
    return r.criu(cmd, wrap=hosts.in_a, env=env)


# The post-copy scenarios need a pre-copy that does not converge. At --max-downtime-ms 1 a
# round converges only with no dirty page at all, yet a writer starved by a loaded machine can
# leave a short round (~30 ms once the pages stream straight from memory) without one: one
# round of pre-copy, then always the switch.
ONE_ROUND = {"CRIU_MIGRATE_MAX_ROUNDS": "1"}


def migrate_ok(r, hosts, pid, port, tag="serve", src_cache=None, extra=(), env=None):
    srv, cache = start_serve(r, hosts, r.key, port, tag=tag)
    stats = os.path.join(r.tmp, f"stats-{tag}.json")
    m = migrate(r, hosts, pid, r.key, port, stats, src_cache, extra, env)
    if m.returncode != 0:
        raise Failure(f"criu migrate failed ({m.returncode})")
    if srv.wait(30) != 0:
        raise Failure(f"criu serve exit {srv.returncode}")
    r.proc.wait(10)  # the source was killed: reap it
    if alive(pid):
        raise Failure("the source is still running")
    host_pid = hosts.host_pid_in_b(pid)
    if host_pid is None:
        raise Failure(f"no pid {pid} in the destination's pid namespace")
    st = json.load(open(stats))
    log(f"migrated: downtime {st['downtime_ms']} ms, total {st['total_ms']} ms, {st['bytes_sent']} bytes, "
        f"{st['iterations']} round(s)")
    for k in ("iterations", "rounds", "downtime_ms", "total_ms", "bytes_sent", "dedup_ratio", "compression_ratio",
              "lazy_restore", "fill_ms", "fill_faults"):
        if k not in st:
            raise Failure(f"stats JSON lacks {k}")
    lazy = "--no-lazy-restore" not in extra
    if st["lazy_restore"] != lazy:
        raise Failure(f"lazy_restore is {st['lazy_restore']} in the stats")
    slog = read(os.path.join(r.tmp, f"{tag}.log"))
    if lazy and not re.search(r"every page in after \d+ ms", slog):
        raise Failure("criu serve did not report the memory filled after the release")
    if lazy:
        log(f"filled on the destination in {st['fill_ms']} ms, {st['fill_faults']} faults served while it ran")
    if os.listdir(os.path.join(cache, "incoming")):
        raise Failure(f"the destination kept {os.listdir(os.path.join(cache, 'incoming'))}")
    r.finish_remote(host_pid)
    return st


def scenario_ok(r, hosts):
    pid = r.start_workload()
    migrate_ok(r, hosts, pid, free_port())


def scenario_eager(r, hosts):
    pid = r.start_workload()
    migrate_ok(r, hosts, pid, free_port(), extra=["--no-lazy-restore"])


def scenario_fill_killed(r, hosts):
    """criu serve SIGKILLed once the filler copied 512 pages of the running process."""
    pid = r.start_workload()
    port = free_port()
    srv, cache = start_serve(r, hosts, r.key, port, env={"CRIU_SERVE_DIE_AFTER_FILL_PAGES": "512"})
    m = migrate(r, hosts, pid, r.key, port)
    if m.returncode == 0:
        raise Failure("criu migrate succeeded although the destination died while filling")
    if "could not all be filled" not in m.stderr:
        raise Failure(f"the source does not say the memory could not be filled: {m.stderr}")
    out, _ = srv.communicate(timeout=30)
    if srv.returncode not in (-signal.SIGKILL, 137):
        raise Failure(f"criu serve ended with {srv.returncode}, not killed by its test hook")
    if "rather than let it read zero pages" not in out:
        raise Failure(f"the sentinel did not report killing the process: {out}")
    r.proc.wait(10)  # the source was killed once the destination held its copy
    wait_for(lambda: not hosts.b_processes(), 20, "the half-filled process to be killed")
    if "PASS" in read(r.out) or "FAIL" in read(r.out):
        raise Failure(f"the half-filled process ran to a verdict:\n{read(r.out)}")


def scenario_post_copy(r, hosts):
    pid = r.start_workload()
    st = migrate_ok(r, hosts, pid, free_port(), extra=["--post-copy", "--max-downtime-ms", "1"], env=ONE_ROUND)
    log(f"post-copy: {st['postcopy_pages']} pages left on the source, {st['postcopy_pages_served']} served in "
        f"{st['postcopy_requests']} requests, {st['postcopy_bytes']} bytes")
    if not st["post_copy"] or st["postcopy_pages"] == 0:
        raise Failure(f"no post-copy happened: {st}")
    if not 0 < st["postcopy_pages_served"] <= st["postcopy_pages"]:
        raise Failure(f"{st['postcopy_pages_served']} pages served for {st['postcopy_pages']} left on the source")


def scenario_post_copy_src_killed(r, hosts):
    pid = r.start_workload()
    port = free_port()
    srv, cache = start_serve(r, hosts, r.key, port)
    m = r.criu(["migrate", "-t", str(pid), "--to", f"{B_ADDR}:{port}", "--auth-key", r.key, "-o", "migrate.log",
                "-W", r.tmp, "-v4", "--post-copy", "--max-downtime-ms", "1"], wrap=hosts.in_a,
               env={"CRIU_MIGRATE_DIE_AT_PAGE_REQUEST": "1", **ONE_ROUND})
    if m.returncode not in (-signal.SIGKILL, 137):
        raise Failure(f"criu migrate ended with {m.returncode}, not killed by its test hook")
    srv.communicate(timeout=60)
    if srv.returncode == 0:
        raise Failure("criu serve succeeded although the source died during post-copy")
    slog = read(os.path.join(r.tmp, "serve.log"))
    if not re.search(r"\(([1-9][0-9]*) from the source\)", slog):
        raise Failure("the destination was owed no page by the source")
    wait_for(lambda: not hosts.b_processes(), 20, "the destination to kill its copy")
    if os.listdir(os.path.join(cache, "incoming")):
        raise Failure(f"the destination kept {os.listdir(os.path.join(cache, 'incoming'))}")
    if alive(pid):
        log("the source died before the commit point: its process runs on")
        r.source_intact(pid)
        r.finish_local(pid)
    else:
        r.proc.wait(10)
        if "PASS" in read(r.out) or "FAIL" in read(r.out):
            raise Failure(f"a half-filled copy ran to a verdict:\n{read(r.out)}")


def scenario_wrong_key(r, hosts):
    pid = r.start_workload()
    port = free_port()
    other = r.make_key("other-key")
    srv, cache = start_serve(r, hosts, other, port)
    m = migrate(r, hosts, pid, r.key, port)
    if m.returncode == 0:
        raise Failure("criu migrate with the wrong key succeeded")
    if "closed the connection during the handshake" not in m.stderr:
        raise Failure(f"unclear error for a wrong key: {m.stderr}")
    r.source_intact(pid)
    slog = read(os.path.join(r.tmp, "serve.log"))
    if "refused" not in slog:
        raise Failure("criu serve did not log the refusal")
    if srv.poll() is not None:
        raise Failure("criu serve stopped after a refused connection")
    if os.listdir(os.path.join(cache, "incoming")):
        raise Failure("the destination created something for an unauthenticated peer")
    r.finish_local(pid)


def scenario_dest_killed(r, hosts):
    pid = r.start_workload()
    port = free_port()
    srv, cache = start_serve(r, hosts, r.key, port, env={"CRIU_SERVE_DIE_AFTER_BYTES": str(4 << 20)})
    m = migrate(r, hosts, pid, r.key, port)
    if m.returncode == 0:
        raise Failure("criu migrate succeeded although the destination died")
    srv.wait(30)
    if srv.returncode != -signal.SIGKILL and srv.returncode != 137:
        log(f"serve ended with {srv.returncode}")
    r.source_intact(pid)
    left = [p for p in hosts.b_processes()]
    if left:
        raise Failure(f"processes left in the destination: {left}")
    incoming = os.path.join(r.tmp, "dest-cache", "incoming")
    if not os.listdir(incoming):
        raise Failure("the killed server left no staging directory: was it killed mid-stream?")
    # The dead server's half-received set is cleaned by the next server; then migrate for real.
    migrate_ok(r, hosts, pid, free_port(), tag="serve2")
    if "left by an earlier server" not in read(os.path.join(r.tmp, "serve2.log")):
        raise Failure("the new server did not clean up after the killed one")


def scenario_src_disk_full(r, hosts):
    """The source's disk fills up half way (its scratch directory on a 16 KiB tmpfs: the pages
    stream straight to the destination, only each round's other images and pagemap are
    written there, a few KiB each): the migration fails, the source runs on intact, the
    destination keeps nothing."""
    pid = r.start_workload()
    port = free_port()
    srv, cache = start_serve(r, hosts, r.key, port)
    small = os.path.join(r.tmp, "small")
    os.mkdir(small)
    cmd = [r.a.criu, "migrate", "-t", str(pid), "--to", f"{B_ADDR}:{port}", "--auth-key", r.key, "-o",
           "migrate.log", "-W", r.tmp, "-v4"]
    script = f"mount -t tmpfs -o size=16k tmpfs {small} && TMPDIR={small} exec " + " ".join(cmd)
    m = r.criu_raw(hosts.in_a(["unshare", "-m", "--propagation", "private", "sh", "-c", script]))
    if m.returncode == 0:
        raise Failure("criu migrate succeeded on a full disk")
    if "No space left" not in m.stderr and "ENOSPC" not in m.stderr:
        raise Failure(f"the error does not say the disk is full: {m.stderr}")
    r.source_intact(pid)
    wait_for(lambda: "nothing kept" in read(os.path.join(r.tmp, "serve.log")), 20, "the destination to give up")
    if os.listdir(os.path.join(cache, "incoming")) or hosts.b_processes():
        raise Failure("the destination kept something")
    r.finish_local(pid)


def scenario_cache(r, hosts):
    """Pages through the SSD caches: a second process with the same static memory, migrated to
    the same destination cache, sends only what the destination does not have yet."""
    src_cache = os.path.join(r.tmp, "src-cache")
    pid = r.start_workload()
    first = migrate_ok(r, hosts, pid, free_port(), tag="serve1", src_cache=src_cache)
    r.out = os.path.join(r.tmp, "out2.log")
    pid2 = r.start_workload()
    second = migrate_ok(r, hosts, pid2, free_port(), tag="serve2", src_cache=src_cache)
    log(f"chunks sent: {first['chunks_sent']} then {second['chunks_sent']}; dedup {second['dedup_ratio']}; first "
        f"rounds {first['rounds'][0]['bytes']} then {second['rounds'][0]['bytes']} bytes")
    # The first round of each carries the whole memory: the second's finds the static part in
    # the destination's cache. (Later rounds re-send the rewritten part, as many times as there
    # are rounds, which a loaded machine makes many: the totals are not compared.)
    if second["rounds"][0]["bytes"] * 2 > first["rounds"][0]["bytes"]:
        raise Failure(f"the second migration's first round sent {second['rounds'][0]['bytes']} bytes, the first's "
                      f"{first['rounds'][0]['bytes']}")
    if first["chunks_sent"] == 0 or second["dedup_ratio"] <= 1:
        raise Failure(f"dedup ratio {second['dedup_ratio']} on the second migration, {first['chunks_sent']} chunks "
                      f"sent by the first")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--criu", required=True)
    ap.add_argument("--scenario", required=True, choices=["page-server", "ok", "wrong-key", "dest-killed", "cache",
                                                          "src-disk-full", "eager", "fill-killed", "post-copy",
                                                          "post-copy-src-killed"])
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("workload", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    a.workload = a.workload[1:] if a.workload and a.workload[0] == "--" else a.workload
    r = Run(a)
    ok = False
    try:
        if a.scenario == "page-server":
            scenario_page_server(r)
        else:
            with Hosts() as hosts:
                {"ok": scenario_ok, "wrong-key": scenario_wrong_key, "dest-killed": scenario_dest_killed,
                 "cache": scenario_cache, "src-disk-full": scenario_src_disk_full, "eager": scenario_eager,
                 "fill-killed": scenario_fill_killed, "post-copy": scenario_post_copy,
                 "post-copy-src-killed": scenario_post_copy_src_killed}[
                    a.scenario](r, hosts)
        ok = True
        log(f"{a.scenario}: PASS")
    except (Failure, subprocess.TimeoutExpired, OSError, KeyError, ValueError) as e:
        log(f"{a.scenario}: FAIL: {e}")
        r.show_logs()
    finally:
        r.cleanup(ok)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
