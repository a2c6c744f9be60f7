#!/usr/bin/env python3
"""Real programs from Debian, dumped, restored and then used by their ordinary clients.

  --program http   python3 -m http.server on 127.0.0.1 (a free port) serving a temp directory with a
                   known 256 KiB file; urllib fetches it before the dump and after the restore and
                   compares it byte for byte (sha256). A listening TCP socket, no client connection at
                   dump time.
  --program redis  redis-server on a unix socket with persistence off; 5000 keys written with
                   `redis-cli --pipe`, and after the restore `redis-cli` reads back every one of them
                   (GET of each key, DBSIZE), increments a counter and writes 100 new keys.
  --program redis-tcp  the same on 127.0.0.1 (a free port) instead of a unix socket.

Each server is its own process tree (its own session), dumped with `criu dump -t PID`, killed
(plain) or left running (--leave-running: it must still serve, and what it is told after the dump
must not be in the restored one), then restored with `criu restore -d`. This driver is a child
subreaper, so the detached restored server becomes its child and is killed and reaped on every path.
A required program that is missing is a failure telling to run scripts/deps.sh (CI installs it).
"""
import argparse
import ctypes
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

PR_SET_CHILD_SUBREAPER = 36
NKEYS = 5000
NEWKEYS = 100


class Failure(Exception):
    pass


def log(msg):
    print(f"[realprog] {msg}", flush=True)


def need(path_or_name):
    found = path_or_name if os.path.isabs(path_or_name) and os.access(path_or_name, os.X_OK) \
        else shutil.which(path_or_name)
    if not found:
        raise Failure(f"{path_or_name} is not installed: run scripts/deps.sh (it installs the Debian packages "
                      f"the tests need; CI does)")
    return found


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, probe, timeout=15.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            if probe():
                return
        except Exception as e:  # noqa: BLE001 - not ready yet; keep the reason for the message
            last = e
        time.sleep(0.05)
    raise Failure(f"{what} not ready within {timeout} s (last error: {last})")


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def kill_and_reap(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        # Not our child (yet): wait until it is gone.
        deadline = time.monotonic() + 5
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)


def wait_single_thread(pid, timeout=10.0):
    """Waits until a server has no thread but its main one (a finished request's thread is gone)."""
    wait_for(f"pid {pid} back to one thread", lambda: len(os.listdir(f"/proc/{pid}/task")) == 1, timeout)


class Criu:
    def __init__(self, binary, img):
        self.binary = binary
        self.img = img

    def run(self, args, what):
        t0 = time.monotonic()
        r = subprocess.run([self.binary] + args, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=120)
        if r.returncode != 0:
            # The error lines, not the whole debug trail (the log is printed on failure).
            errors = [l for l in r.stderr.splitlines() if "Error" in l] or r.stderr.splitlines()[-5:]
            raise Failure(f"{what} failed with {r.returncode}: " + "\n".join(errors))
        log(f"{what}: {time.monotonic() - t0:.2f} s")

    def dump(self, pid, leave_running):
        args = ["dump", "-t", str(pid), "-D", self.img, "-o", "dump.log", "-v4", "--no-progress"]
        if leave_running:
            args.append("--leave-running")
        self.run(args, f"criu {' '.join(args)}")

    def restore(self, tmp):
        pidfile = os.path.join(tmp, "restored.pid")
        args = ["restore", "-D", self.img, "-o", "restore.log", "-v4", "-d", "--pidfile", pidfile, "--no-progress"]
        self.run(args, f"criu {' '.join(args)}")
        with open(pidfile) as f:
            return int(f.read())


def start(argv, tmp, logname):
    """Starts a server as its own process tree (own session), output to a file in tmp."""
    with open(os.path.join(tmp, logname), "wb") as out:
        p = subprocess.Popen(argv, cwd=tmp, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                             start_new_session=True, close_fds=True)
    log(f"started pid {p.pid}: {' '.join(argv)}")
    return p.pid


# ---------------------------------------------------------------- http.server


class HttpServer:
    def __init__(self, tmp):
        # The Debian interpreter when there is one (this driver may run under another python).
        self.python = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
        self.tmp = tmp
        self.port = free_port()
        www = os.path.join(tmp, "www")
        os.mkdir(www)
        self.content = os.urandom(256 * 1024)
        with open(os.path.join(www, "blob.bin"), "wb") as f:
            f.write(self.content)
        self.www = www
        # No proxy, whatever the environment says: the server is on loopback.
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def start(self):
        return start([self.python, "-m", "http.server", "--bind", "127.0.0.1", "--directory", self.www,
                      str(self.port)], self.tmp, "http.log")

    def fetch(self, name):
        with self.opener.open(f"http://127.0.0.1:{self.port}/{name}", timeout=10) as r:
            return r.status, r.read()

    def wait_ready(self, pid):
        wait_for("http.server", lambda: self.fetch("blob.bin")[0] == 200)
        self.check("before the dump")
        wait_single_thread(pid)

    def check(self, when):
        status, body = self.fetch("blob.bin")
        if status != 200 or body != self.content:
            raise Failure(f"{when}: GET /blob.bin gave status {status}, {len(body)} bytes, sha256 "
                          f"{hashlib.sha256(body).hexdigest()[:16]} (expected {len(self.content)} bytes, "
                          f"{hashlib.sha256(self.content).hexdigest()[:16]})")
        status, listing = self.fetch("")
        if status != 200 or b"blob.bin" not in listing:
            raise Failure(f"{when}: the directory listing (status {status}) does not name blob.bin")
        log(f"{when}: GET /blob.bin: {len(body)} bytes identical (sha256 {hashlib.sha256(body).hexdigest()[:16]}), "
            f"listing ok")

    def after_dump_while_running(self, pid):
        self.check("after the dump, original still running")
        wait_single_thread(pid)

    def check_restored(self, pid):
        self.check("after the restore")
        wait_single_thread(pid)
        self.check("after the restore, second request")


# ---------------------------------------------------------------- redis


def value_of(i):
    # Distinct per key, long enough that the data set is ~0.5 MiB.
    return f"v{i}-" + hashlib.sha256(str(i).encode()).hexdigest() + f"-{i * 7919}"


def resp(*args):
    out = f"*{len(args)}\r\n"
    for a in args:
        out += f"${len(a.encode())}\r\n{a}\r\n"
    return out


class Redis:
    def __init__(self, tmp, tcp):
        self.server = need("redis-server")
        self.cli = need("redis-cli")
        self.tmp = tmp
        if tcp:
            port = free_port()
            self.listen = ["--port", str(port), "--bind", "127.0.0.1"]
            self.connect = ["-h", "127.0.0.1", "-p", str(port)]
        else:
            sock = os.path.join(tmp, "redis.sock")
            self.listen = ["--port", "0", "--unixsocket", sock]
            self.connect = ["-s", sock]

    def start(self):
        return start([self.server] + self.listen + ["--save", "", "--appendonly", "no", "--daemonize", "no",
                                                    "--dir", self.tmp, "--databases", "1"], self.tmp, "redis.log")

    def cmd(self, *args, stdin=None):
        r = subprocess.run([self.cli] + self.connect + list(args), input=stdin, capture_output=True, text=True,
                           timeout=30)
        if r.returncode != 0:
            raise Failure(f"redis-cli {' '.join(args)} failed with {r.returncode}: {r.stderr.strip()}")
        return r.stdout

    def wait_ready(self, pid):
        wait_for("redis-server", lambda: self.cmd("PING").strip() == "PONG")
        self.load()

    def load(self):
        t0 = time.monotonic()
        data = "".join(resp("SET", f"key:{i}", value_of(i)) for i in range(NKEYS))
        data += resp("SET", "counter", "1000")
        out = self.cmd("--pipe", stdin=data)
        if f"replies: {NKEYS + 1}" not in out or "errors: 0" not in out:
            raise Failure(f"redis-cli --pipe did not store {NKEYS + 1} keys: {out.strip()}")
        log(f"wrote {NKEYS} keys + counter with redis-cli --pipe in {time.monotonic() - t0:.2f} s")
        self.check_keys("before the dump", NKEYS + 1)

    def check_keys(self, when, dbsize):
        n = int(self.cmd("DBSIZE").strip())
        if n != dbsize:
            raise Failure(f"{when}: DBSIZE {n}, expected {dbsize}")
        # One GET per key, all through one redis-cli reading commands from stdin.
        out = self.cmd(stdin="".join(f"GET key:{i}\n" for i in range(NKEYS))).splitlines()
        if len(out) != NKEYS:
            raise Failure(f"{when}: {len(out)} replies to {NKEYS} GETs")
        bad = [i for i in range(NKEYS) if out[i] != value_of(i)]
        if bad:
            i = bad[0]
            raise Failure(f"{when}: {len(bad)} of {NKEYS} keys differ; key:{i} is {out[i]!r}, expected "
                          f"{value_of(i)!r}")
        log(f"{when}: DBSIZE {n}, all {NKEYS} keys read back with GET and identical")

    def after_dump_while_running(self, pid):
        self.check_keys("after the dump, original still running", NKEYS + 1)
        # Told to the original after the dump: the restored one must not know it.
        self.cmd("SET", "after-dump", "yes")
        self.cmd("INCR", "counter")

    def check_restored(self, pid):
        self.check_keys("after the restore", NKEYS + 1)
        if self.cmd("EXISTS", "after-dump").strip() != "0":
            raise Failure("after the restore: key 'after-dump', written after the dump, exists")
        c = self.cmd("INCR", "counter").strip()
        if c != "1001":
            raise Failure(f"after the restore: INCR counter gave {c}, expected 1001")
        out = self.cmd("--pipe", stdin="".join(resp("SET", f"new:{i}", f"n{i}") for i in range(NEWKEYS)))
        if f"replies: {NEWKEYS}" not in out or "errors: 0" not in out:
            raise Failure(f"after the restore: redis-cli --pipe did not store {NEWKEYS} new keys: {out.strip()}")
        n = int(self.cmd("DBSIZE").strip())
        if n != NKEYS + 1 + NEWKEYS:
            raise Failure(f"after the restore: DBSIZE {n} after writing {NEWKEYS} new keys, expected "
                          f"{NKEYS + 1 + NEWKEYS}")
        if self.cmd("GET", f"new:{NEWKEYS - 1}").strip() != f"n{NEWKEYS - 1}":
            raise Failure("after the restore: a new key does not read back")
        log(f"after the restore: INCR counter = 1001, {NEWKEYS} new keys written, DBSIZE {n}")


# ---------------------------------------------------------------- driver


def run(a, tmp, pids):
    prog = HttpServer(tmp) if a.program == "http" else Redis(tmp, tcp=a.program == "redis-tcp")
    criu = Criu(a.criu, os.path.join(tmp, "img"))
    os.mkdir(criu.img)
    leave = a.mode == "leave-running"

    pid = prog.start()
    pids.append(pid)
    prog.wait_ready(pid)

    criu.dump(pid, leave)
    if leave:
        if not alive(pid):
            raise Failure(f"pid {pid} died after the dump with --leave-running")
        prog.after_dump_while_running(pid)
    else:
        _, status = os.waitpid(pid, 0)
        if not os.WIFSIGNALED(status):
            raise Failure(f"the dump did not kill pid {pid} (status {status:#x})")
    kill_and_reap(pid)

    restored = criu.restore(tmp)
    pids.append(restored)
    if restored != pid:
        raise Failure(f"restored pid {restored}, expected {pid}")
    prog.check_restored(restored)
    if not alive(restored):
        raise Failure(f"restored pid {restored} died after serving")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--criu", required=True)
    ap.add_argument("--program", choices=["http", "redis", "redis-tcp"], required=True)
    ap.add_argument("--mode", choices=["plain", "leave-running"], default="plain")
    a = ap.parse_args()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        log(f"FAIL: cannot become a child subreaper: {os.strerror(ctypes.get_errno())}")
        return 1
    tmp = tempfile.mkdtemp(prefix=f"criu-e2e-realprog-{a.program}-")
    pids = []
    ok = False
    t0 = time.monotonic()
    try:
        run(a, tmp, pids)
        ok = True
        log(f"PASS: {a.program} ({a.mode}) dumped, restored and used by its clients in "
            f"{time.monotonic() - t0:.1f} s")
    except (Failure, OSError, subprocess.SubprocessError, ValueError) as e:
        log(f"FAIL: {a.program} ({a.mode}): {e}")
        for name in ("img/dump.log", "img/restore.log", "http.log", "redis.log"):
            path = os.path.join(tmp, name)
            if os.path.exists(path):
                print(f"----- {path} (last lines)")
                print("\n".join(open(path, errors="replace").read().splitlines()[-30:]), flush=True)
    finally:
        for pid in pids:
            kill_and_reap(pid)
        if ok:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            log(f"scratch directory kept: {tmp}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
