#!/usr/bin/env python3
"""Real programs from Debian, dumped, restored and then used by their ordinary clients.

  --program http   python3 -m http.server on 127.0.0.1 (a free port) serving a temp directory with a
                   known 256 KiB file; urllib fetches it before the dump and after the restore and
                   compares it byte for byte (sha256). The server speaks HTTP/1.1 (-p HTTP/1.1) and a
                   keep-alive connection of this driver stays open across the dump and the restore
                   (see "Kept connections" below).
  --program redis  redis-server on a unix socket with persistence off; 5000 keys written with
                   `redis-cli --pipe`, and after the restore `redis-cli` reads back every one of them
                   (GET of each key, DBSIZE), increments a counter and writes 100 new keys.
  --program redis-tcp  the same on 127.0.0.1 (a free port) instead of a unix socket, the 5000 keys
                   written over a RESP connection of this driver that stays open across the dump and
                   the restore (see "Kept connections" below).

Kept connections (http, redis-tcp; dumped and restored with --tcp-established): the driver is the
client, outside the dumped tree, on an ordinary socket with a small receive buffer. Before the dump
it sends requests whose replies (5000 GETs, or two 256 KiB responses) far exceed what that buffer
holds, and does not read them: the dump finds the server's send queue full (checked in files.img).
After the restore it reads every reply over the same socket and checks each one, then makes new
requests on it. A reset, a lost, duplicated or reordered reply fails. With --leave-running the
original must go on serving the connection after the dump; then a second, plain dump with new
unread replies is the one restored.

Each server is its own process tree (its own session), dumped with `criu dump -t PID`, killed
(plain) or left running (--leave-running: it must still serve, and what it is told after the dump
must not be in the restored one), then restored with `criu restore -d`. This driver is a child
subreaper, so the detached restored server becomes its child and is killed and reaped on every path.
A required program that is missing is a failure telling to run scripts/deps.sh (CI installs it).
"""
import argparse
import ctypes
import base64
import hashlib
import json
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


def server_queues(server_port, client_port):
    """(send, receive) queue bytes of the server's end of a loopback IPv4 connection, from
    /proc/net/tcp, or None while the kernel shows no such socket."""
    want = (f"0100007F:{server_port:04X}", f"0100007F:{client_port:04X}")
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            col = line.split()
            if (col[1], col[2]) == want and col[3] == "01":  # 01: ESTABLISHED
                tx, rx = col[4].split(":")
                return int(tx, 16), int(rx, 16)
    return None


def wait_send_queue_full(server_port, client_port, what, all_read):
    """Waits until the server's send queue holds replies the client does not read (it cannot
    empty while the client does not read: the dump finds them there) and, with `all_read`, the
    server has read every request (redis does; http.server reads the next request only once it
    has written the whole response before it, which may not fit the socket's send buffer)."""
    def full():
        q = server_queues(server_port, client_port)
        return q is not None and q[0] > 0 and (q[1] == 0 or not all_read)
    wait_for(f"{what}: the server's send queue filled with unread replies", full, 30)
    tx, rx = server_queues(server_port, client_port)
    log(f"{what}: {tx} bytes of replies in the server's send queue, {rx} bytes of requests unread")


def dumped_connections(criu_bin, img):
    """The established TCP connections of files.img, as (send queue, never sent, receive queue) bytes."""
    r = subprocess.run([criu_bin, "show", os.path.join(img, "files.img")], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise Failure(f"criu show files.img: {r.stderr.strip()}")
    found = []

    def walk(x):
        if isinstance(x, dict):
            t = x.get("tcp")
            if isinstance(t, dict):
                found.append((len(base64.b64decode(t.get("send_queue", ""))), int(t.get("unsent", 0)),
                              len(base64.b64decode(t.get("recv_queue", "")))))
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(json.loads(r.stdout))
    return found


def check_dumped_connection(criu_bin, img):
    conns = dumped_connections(criu_bin, img)
    if len(conns) != 1:
        raise Failure(f"{img}: expected one established TCP connection in files.img, found {len(conns)}")
    sendq, unsent, recvq = conns[0]
    log(f"{os.path.basename(img)}: the kept connection was dumped with {sendq} bytes to send ({unsent} never sent) "
        f"and {recvq} to read")
    if sendq == 0:
        raise Failure(f"{img}: the kept connection's send queue was empty at the dump: the test proves little")


def remove_lock_tables(pid):
    """Removes the network lock tables a failed run left (criu_tcp_<pid>_*, named by the dump)."""
    r = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, timeout=30)
    for line in r.stdout.splitlines():
        name = line.split()[-1] if line.split() else ""
        if name.startswith(f"criu_tcp_{pid}_"):
            log(f"removing the network lock table {name} left behind")
            subprocess.run(["nft", "delete", "table", "inet", name], capture_output=True, timeout=30)


class SockReader:
    """A client socket read through its own buffer; every read waits at most 30 s."""

    def __init__(self, port):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # A small receive buffer: replies the driver does not read pile up in the server's send queue.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        self.sock.settimeout(30)
        self.sock.connect(("127.0.0.1", port))
        self.port = self.sock.getsockname()[1]
        self.buf = bytearray()

    def fill(self):
        try:
            chunk = self.sock.recv(262144)
        except socket.timeout:
            raise Failure("the kept connection: no reply within 30 s") from None
        except ConnectionError as e:
            raise Failure(f"the kept connection (local port {self.port}) broke: {e}") from None
        if not chunk:
            raise Failure(f"the kept connection (local port {self.port}) was closed by the server")
        self.buf += chunk

    def line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                out = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return out
            self.fill()

    def exactly(self, n):
        while len(self.buf) < n:
            self.fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def close(self):
        self.sock.close()


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

    def dump(self, pid, leave_running, tcp):
        args = ["dump", "-t", str(pid), "-D", self.img, "-o", "dump.log", "-v4", "--no-progress"]
        if leave_running:
            args.append("--leave-running")
        if tcp:
            args.append("--tcp-established")
        self.run(args, f"criu {' '.join(args)}")

    def restore(self, tmp, tcp):
        pidfile = os.path.join(tmp, "restored.pid")
        args = ["restore", "-D", self.img, "-o", "restore.log", "-v4", "-d", "--pidfile", pidfile, "--no-progress"]
        if tcp:
            args.append("--tcp-established")
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
        self.conn = None

    def start(self):
        return start([self.python, "-m", "http.server", "--bind", "127.0.0.1", "--directory", self.www,
                      "--protocol", "HTTP/1.1", str(self.port)], self.tmp, "http.log")

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

    # ---- the kept HTTP/1.1 keep-alive connection
    def open_connection(self, pid):
        self.conn = SockReader(self.port)
        self.served = 0
        for _ in range(3):
            self.conn_get("blob.bin", "before the dump, kept connection")
        self.conn_get("", "before the dump, kept connection")
        log(f"kept connection from local port {self.conn.port}: 4 requests answered on it")

    def conn_request(self, name):
        self.conn.sock.sendall(f"GET /{name} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n\r\n".encode())

    def conn_response(self, name, when):
        status = self.conn.line().decode(errors="replace")
        headers = {}
        while True:
            h = self.conn.line().decode(errors="replace")
            if not h:
                break
            k, _, v = h.partition(":")
            headers[k.strip().lower()] = v.strip()
        if not status.startswith("HTTP/1.1 200 ") or "content-length" not in headers:
            raise Failure(f"{when}: GET /{name} answered '{status}' with headers {headers}")
        if headers.get("connection", "").lower() == "close":
            raise Failure(f"{when}: the server closes the keep-alive connection after GET /{name}")
        body = self.conn.exactly(int(headers["content-length"]))
        ok = body == self.content if name == "blob.bin" else b"blob.bin" in body
        if not ok:
            raise Failure(f"{when}: GET /{name} on the kept connection gave {len(body)} bytes, sha256 "
                          f"{hashlib.sha256(body).hexdigest()[:16]} (expected {len(self.content)} bytes, "
                          f"{hashlib.sha256(self.content).hexdigest()[:16]})")
        self.served += 1

    def conn_get(self, name, when):
        self.conn_request(name)
        self.conn_response(name, when)

    def leave_replies_unread(self, pid, when):
        """Two 256 KiB responses asked for and not read: the server's send queue fills."""
        self.conn_request("blob.bin")
        self.conn_request("blob.bin")
        wait_send_queue_full(self.port, self.conn.port, when, all_read=False)
        # The request threads urllib's connections left have ended; the kept one's stays.
        wait_for(f"pid {pid} with two threads (main, kept connection)",
                 lambda: len(os.listdir(f"/proc/{pid}/task")) == 2)

    def read_unread_replies(self, when):
        for _ in range(2):
            self.conn_response("blob.bin", when)
        log(f"{when}: both 256 KiB responses asked for before the dump read on the kept connection, identical")

    def conn_after(self, when):
        for name in ("blob.bin", "", "blob.bin"):
            self.conn_get(name, when)
        log(f"{when}: 3 more requests answered on the kept connection (local port {self.conn.port}, "
            f"{self.served} in all)")

    def after_dump_while_running(self, pid):
        self.check("after the dump, original still running")
        if self.conn:
            self.read_unread_replies("after the dump, original still running")
            self.conn_after("after the dump, original still running")
        else:
            wait_single_thread(pid)

    def check_restored(self, pid):
        if self.conn:
            self.read_unread_replies("after the restore")
            self.conn_after("after the restore")
        self.check("after the restore")
        if not self.conn:
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
        self.conn = None
        self.port = None
        if tcp:
            port = free_port()
            self.port = port
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
        if self.port is None:
            self.load()  # over TCP the kept connection loads the keys (open_connection)

    def load(self):
        t0 = time.monotonic()
        data = "".join(resp("SET", f"key:{i}", value_of(i)) for i in range(NKEYS))
        data += resp("SET", "counter", "1000")
        if self.conn:
            # Over the kept connection, pipelined: all the commands, then all the replies.
            self.conn.sock.sendall(data.encode())
            self.expect_replies(["OK"] * (NKEYS + 1), "writing the keys on the kept connection")
            how = f"on the kept RESP connection (local port {self.conn.port})"
        else:
            out = self.cmd("--pipe", stdin=data)
            if f"replies: {NKEYS + 1}" not in out or "errors: 0" not in out:
                raise Failure(f"redis-cli --pipe did not store {NKEYS + 1} keys: {out.strip()}")
            how = "with redis-cli --pipe"
        log(f"wrote {NKEYS} keys + counter {how} in {time.monotonic() - t0:.2f} s")
        self.check_keys("before the dump", NKEYS + 1)

    # ---- the kept RESP connection (redis-tcp)
    def open_connection(self, pid):
        if self.port is None:
            return
        self.conn = SockReader(self.port)
        self.load()

    def reply(self):
        line = self.conn.line()
        kind, rest = line[:1], line[1:].decode(errors="replace")
        if kind in (b"+", b":"):
            return rest
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            body = self.conn.exactly(n + 2)
            if body[-2:] != b"\r\n":
                raise Failure(f"a bulk reply of {n} bytes does not end in CRLF: {body[-8:]!r}")
            return body[:-2].decode(errors="replace")
        raise Failure(f"unexpected reply {line[:80]!r}")

    def expect_replies(self, expected, when):
        for i, want in enumerate(expected):
            got = self.reply()
            if got != want:
                raise Failure(f"{when}: reply {i} of {len(expected)} is {got!r}, expected {want!r}")

    def leave_replies_unread(self, pid, when):
        """5000 GETs sent and their replies (~0.5 MiB) not read: the server's send queue fills."""
        self.conn.sock.sendall("".join(resp("GET", f"key:{i}") for i in range(NKEYS)).encode())
        wait_send_queue_full(self.port, self.conn.port, when, all_read=True)

    def read_unread_replies(self, when):
        self.expect_replies([value_of(i) for i in range(NKEYS)], f"{when}: the GETs sent before the dump")
        log(f"{when}: all {NKEYS} GETs sent before the dump answered on the kept connection, in order, identical")

    def conn_after(self, when, counter):
        """New writes on the kept connection, read back on it."""
        data = resp("INCR", "counter") + "".join(resp("SET", f"new:{i}", f"n{i}") for i in range(NEWKEYS))
        data += "".join(resp("GET", f"new:{i}") for i in range(NEWKEYS)) + resp("DBSIZE")
        self.conn.sock.sendall(data.encode())
        self.expect_replies([str(counter)] + ["OK"] * NEWKEYS + [f"n{i}" for i in range(NEWKEYS)] +
                            [str(NKEYS + 1 + NEWKEYS)], f"{when}: new writes on the kept connection")
        log(f"{when}: on the kept connection INCR counter = {counter}, {NEWKEYS} new keys written and read back, "
            f"DBSIZE {NKEYS + 1 + NEWKEYS}")

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
        if self.conn:
            # The connection goes on with the original; a second dump is the one restored.
            self.read_unread_replies("after the dump, original still running")
            self.conn_after("after the dump, original still running", 1001)
            self.conn.sock.sendall((resp("DEL", "counter") + resp("SET", "counter", "1000") +
                                    "".join(resp("DEL", f"new:{i}") for i in range(NEWKEYS))).encode())
            self.expect_replies(["1", "OK"] + ["1"] * NEWKEYS, "undoing the new writes on the kept connection")
            return
        # Told to the original after the dump: the restored one must not know it.
        self.cmd("SET", "after-dump", "yes")
        self.cmd("INCR", "counter")

    def check_restored(self, pid):
        if self.conn:
            self.read_unread_replies("after the restore")
            self.conn_after("after the restore", 1001)
            self.check_keys("after the restore", NKEYS + 1 + NEWKEYS)
            log(f"after the restore: other clients (redis-cli) see the kept connection's writes")
            return
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
    prog.open_connection(pid)
    tcp = prog.conn is not None
    if tcp:
        prog.leave_replies_unread(pid, "before the dump")

    criu.dump(pid, leave, tcp)
    if leave:
        if not alive(pid):
            raise Failure(f"pid {pid} died after the dump with --leave-running")
        if tcp:
            check_dumped_connection(criu.binary, criu.img)
        prog.after_dump_while_running(pid)
        if tcp:
            # The first image's connection went on without it: the restore takes a second one.
            criu.img = os.path.join(tmp, "img2")
            os.mkdir(criu.img)
            prog.leave_replies_unread(pid, "before the second dump")
            criu.dump(pid, False, tcp)
            leave = False
    if not leave:
        # Before any other subprocess: subprocess reaps the exited children it started itself.
        _, status = os.waitpid(pid, 0)
        if not os.WIFSIGNALED(status):
            raise Failure(f"the dump did not kill pid {pid} (status {status:#x})")
        if tcp:
            check_dumped_connection(criu.binary, criu.img)
    kill_and_reap(pid)

    restored = criu.restore(tmp, tcp)
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
        for name in ("img/dump.log", "img2/dump.log", "img/restore.log", "img2/restore.log", "http.log", "redis.log"):
            path = os.path.join(tmp, name)
            if os.path.exists(path):
                print(f"----- {path} (last lines)")
                print("\n".join(open(path, errors="replace").read().splitlines()[-30:]), flush=True)
    finally:
        for pid in pids:
            kill_and_reap(pid)
        if pids:
            remove_lock_tables(pids[0])
        if ok:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            log(f"scratch directory kept: {tmp}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
