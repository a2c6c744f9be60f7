#!/usr/bin/env python3
"""End-to-end test of established TCP connections (criu dump/restore --tcp-established).

The workload (workloads/tcp_stream.c) is the dumped tree; its peer (workloads/tcp_peer.c) runs
outside it, started here and never dumped. Both stream a checked byte pattern both ways at all
times (test/e2e/lib/tcp_stream.h), so at the dump both of the workload's queues hold data.

  --role client: the workload connects to the peer's listener; server: the peer connects to
                 the workload's listener (which stays open beside the accepted socket).
  --family 4|6:  127.0.0.1 or ::1.
  --mode plain:         dump (the workload is killed; the peer sees a pause), check the images
                        hold data in both queues and that the nft table blocks the connection,
                        restore, and check the stream goes on both ways with no table left.
  --mode leave-running: two dumps with --leave-running (the stream goes on after each, no table
                        left), then a plain dump and restore.
  --mode rollback:      a dump without --tcp-established is refused naming the connection; dumps
                        failed on purpose (CRIU_FAULT_INJECT) after the connection was put in
                        repair mode; each time the stream goes on untouched and no table is left.
  --mode unacked:       (client role) the sent-but-unacknowledged part of the send queue. An nft
                        table of this test drops, at the input hook, every packet the workload
                        sends to the peer's port: it leaves the workload's kernel as sent and is
                        lost on the way (dropped at output, the sender's kernel would see an error
                        and count nothing as sent). Once `ss` shows segments out and not
                        acknowledged, the workload is dumped; the image must hold sent-but-
                        unacknowledged bytes. After the restore the table is removed: the restored
                        socket must send those bytes again from its repaired queue, or the peer
                        finds a gap in the stream. (Holding the peer's acknowledgements instead
                        would prove nothing here: the peer's receive window is full nearly all the
                        time, so nothing would be in flight when the hold begins.)
At the end the peer and the workload give their verdicts: no byte lost or duplicated, no reset.
"""
import argparse
import base64
import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import Failure, pid_alive, reap  # noqa: E402  (the e2e runner's own, same semantics)

PR_SET_CHILD_SUBREAPER = 36
PROGRESS = 512 << 10  # bytes both ways that prove the stream moves


def log(msg):
    print(f"[tcp] {msg}", flush=True)


def read_text(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def wait_for(what, cond, timeout, alive=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        if alive is not None:
            alive()
        time.sleep(0.01)
    raise Failure(f"{what}: not within {timeout} s")


def wait_line(path, prefix, proc, timeout=60):
    def check():
        for line in read_text(path).splitlines():
            if line.startswith(prefix):
                return line
        return None

    def alive():
        if proc.poll() is not None:
            raise Failure(f"exited with {proc.returncode} before '{prefix}': {read_text(path)}")

    return wait_for(f"'{prefix}' from {path}", check, timeout, alive)


def lock_tables(pid):
    """nft tables a dump of `pid` made (criu_tcp_<pid>_<random>)."""
    r = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise Failure(f"nft list tables: {r.stderr.strip()}")
    return [line.split()[-1] for line in r.stdout.splitlines() if line.split()[-1].startswith(f"criu_tcp_{pid}_")]


class Runner:
    def __init__(self, a, tmp):
        self.a = a
        self.tmp = tmp
        self.host = "127.0.0.1" if a.family == "4" else "::1"
        self.work = os.path.join(tmp, "work")
        os.mkdir(self.work)
        self.out = os.path.join(tmp, "out.log")
        self.peer_out = os.path.join(tmp, "peer.log")
        self.status = os.path.join(tmp, "peer.status")
        self.peer = None
        self.proc = None
        self.pid = None
        self.dumps = 0
        self.port = None
        self.hold_table = None

    # ---- the two ends
    def start(self):
        def spawn(cmd, out):
            with open(out, "a") as f:
                return subprocess.Popen(cmd, cwd=self.work, stdin=subprocess.DEVNULL, stdout=f, stderr=f,
                                        start_new_session=True)

        if self.a.role == "client":
            self.peer = spawn([self.a.peer, self.status, "listen", self.host], self.peer_out)
            port = wait_line(self.peer_out, "PORT", self.peer).split()[1]
            self.port = int(port)
            self.proc = spawn([self.a.workload, "connect", self.host, port], self.out)
        else:
            self.proc = spawn([self.a.workload, "listen", self.host], self.out)
            port = wait_line(self.out, "PORT", self.proc).split()[1]
            self.peer = spawn([self.a.peer, self.status, "connect", self.host, port], self.peer_out)
        self.pid = self.proc.pid
        wait_line(self.out, "READY", self.proc)
        wait_line(self.peer_out, "CONNECTED", self.peer)
        log(f"workload pid {self.pid} ({self.a.role}) and peer pid {self.peer.pid} connected over {self.host} "
            f"port {port}")

    def peer_status(self):
        line = read_text(self.status).split()
        if len(line) != 7:
            return None
        st = {"rx": int(line[1]), "acked": int(line[3]), "tx": int(line[5]), "ok": line[6] == "ok"}
        if not st["ok"]:
            raise Failure(f"the peer's stream broke: {read_text(self.peer_out)}")
        return st

    def check_peer_alive(self):
        if self.peer.poll() is not None:
            raise Failure(f"the peer exited with {self.peer.returncode}: {read_text(self.peer_out)}")
        self.peer_status()

    def wait_progress(self, what, timeout=90):
        """Both directions move by PROGRESS bytes: the peer reads the workload's data, and the
        workload reads the peer's (its kernel acknowledges more only as it reads)."""
        start = wait_for("the peer's status", self.peer_status, 30)
        t0 = time.monotonic()

        def moved():
            st = self.peer_status()
            return st and st["rx"] >= start["rx"] + PROGRESS and st["acked"] >= start["acked"] + PROGRESS

        wait_for(f"the stream moving both ways {what}", moved, timeout, self.check_peer_alive)
        log(f"stream moves both ways {what} ({time.monotonic() - t0:.2f} s for {PROGRESS >> 10} KiB)")

    # ---- criu
    def criu(self, args, what, env=None, expect_ok=True):
        cmd = [self.a.criu] + args
        log("$ " + " ".join(cmd) + (f"  ({' '.join(f'{k}={v}' for k, v in env.items())})" if env else ""))
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
                           env=dict(os.environ, **(env or {})))
        for s in (r.stdout, r.stderr):
            if s.strip():
                print(s.rstrip())
        if expect_ok and r.returncode != 0:
            raise Failure(f"{what} failed with exit code {r.returncode}")
        if not expect_ok and r.returncode == 0:
            raise Failure(f"{what} succeeded")
        return r

    def show(self, img, name):
        r = subprocess.run([self.a.criu, "show", os.path.join(img, name)], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise Failure(f"criu show {name}: {r.stderr.strip()}")
        return json.loads(r.stdout)

    def check_images(self, img, need_unacked=False):
        """Both queues held data at the dump (or, with need_unacked, the send queue held sent but
        unacknowledged bytes), and the inventory names the lock table."""
        files = json.dumps(self.show(img, "files.img"))
        entries = []

        def walk(x):
            if isinstance(x, dict):
                if "tcp" in x and isinstance(x["tcp"], dict):
                    entries.append(x["tcp"])
                for v in x.values():
                    walk(v)
            elif isinstance(x, list):
                for v in x:
                    walk(v)

        walk(json.loads(files))
        if len(entries) != 1:
            raise Failure(f"expected one established connection in files.img, found {len(entries)}")
        t = entries[0]
        recvq = len(base64.b64decode(t.get("recv_queue", "")))
        sendq = len(base64.b64decode(t.get("send_queue", "")))
        unsent = int(t.get("unsent", 0))
        log(f"dumped connection: {recvq} bytes to read, {sendq} bytes to send ({unsent} never sent, "
            f"{sendq - unsent} sent and not acknowledged)")
        if need_unacked:
            if sendq - unsent <= 0:
                raise Failure(f"no sent-but-unacknowledged bytes in the dumped send queue ({sendq} bytes, {unsent} "
                              f"never sent) although its packets to the peer were dropped")
        elif recvq == 0 or sendq == 0:
            raise Failure(f"a queue was empty at the dump (receive {recvq}, send {sendq}): the test proves little")
        inv = self.show(img, "inventory.img")
        table = json.dumps(inv).split('"tcp_lock_table": "')[1].split('"')[0] if "tcp_lock_table" in json.dumps(
            inv) else ""
        if not table.startswith(f"criu_tcp_{self.pid}_"):
            raise Failure(f"inventory names lock table '{table}'")
        return table

    def dump(self, leave_running, extra=(), env=None, expect_ok=True):
        self.dumps += 1
        img = os.path.join(self.tmp, f"img{self.dumps}")
        args = ["dump", "-t", str(self.pid), "-D", img, "-o", "dump.log", "-v4"] + list(extra)
        if leave_running:
            args.append("--leave-running")
        return img, self.criu(args, f"dump {self.dumps}", env, expect_ok)

    def no_table_left(self, when):
        left = lock_tables(self.pid)
        if left:
            raise Failure(f"nft tables left {when}: {left}")

    def still_running(self, when):
        if not pid_alive(self.pid):
            raise Failure(f"the workload died {when}: {read_text(self.out)}")
        self.check_peer_alive()
        self.no_table_left(when)
        self.wait_progress(when)

    # ---- holding packets back (--mode unacked)
    def hold(self):
        """Drops, in an nft table of this test, what the workload sends to the peer's port, then
        waits until the workload's socket has segments out that are not acknowledged."""
        self.hold_table = f"criu_e2e_hold_{os.getpid()}_{os.urandom(4).hex()}"
        script = (f"table inet {self.hold_table} {{\n"
                  f"  chain input {{ type filter hook input priority -310; policy accept;\n"
                  f"    tcp dport {self.port} counter drop\n  }}\n}}\n")
        r = subprocess.run(["nft", "-f", "-"], input=script, capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise Failure(f"nft: cannot add table {self.hold_table}: {r.stderr.strip()}")
        log(f"nft table inet {self.hold_table}: dropping arriving packets to port {self.port} (the peer's)")

        def unacked():
            # The workload's end: the connection to the peer's port (the peer's end has it as sport).
            r = subprocess.run(["ss", "-tinH", "state", "established", "dport", "=", f":{self.port}"],
                               capture_output=True, text=True, timeout=30)
            m = re.search(r"\bunacked:(\d+)", r.stdout)
            return int(m.group(1)) if m else 0

        n = wait_for("segments sent by the workload and not acknowledged", unacked, 30, self.check_peer_alive)
        log(f"the workload's socket has {n} segment(s) out and not acknowledged")

    def release_hold(self):
        if not self.hold_table:
            return
        r = subprocess.run(["nft", "list", "table", "inet", self.hold_table], capture_output=True, text=True,
                           timeout=30)
        dropped = re.search(r"counter packets (\d+) bytes (\d+)", r.stdout)
        subprocess.run(["nft", "delete", "table", "inet", self.hold_table], capture_output=True, timeout=30)
        log(f"nft table inet {self.hold_table} removed" +
            (f" (it dropped {dropped.group(1)} packets, {dropped.group(2)} bytes)" if dropped else ""))
        self.hold_table = None

    def dump_and_restore(self):
        if self.a.mode == "unacked":
            self.hold()
        img, _ = self.dump(False, ["--tcp-established"])
        status = reap(self.pid, 30)
        if status is None or not os.WIFSIGNALED(status):
            raise Failure(f"after the dump the workload was not killed (status {status})")
        self.check_peer_alive()
        table = self.check_images(img, need_unacked=self.a.mode == "unacked")
        r = subprocess.run(["nft", "list", "table", "inet", table], capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise Failure(f"the lock table {table} is not there while the workload is gone: {r.stderr.strip()}")
        # The peer keeps sending into the pause; it must not see a reset meanwhile.
        self.check_peer_alive()
        pidfile = os.path.join(self.tmp, "restored.pid")
        self.criu(["restore", "-D", img, "-d", "--tcp-established", "--pidfile", pidfile, "-o", "restore.log",
                   "-v4"], "restore")
        if int(read_text(pidfile).strip()) != self.pid or not pid_alive(self.pid):
            raise Failure(f"the restored workload is not running as pid {self.pid}: {read_text(self.out)}")
        if self.a.mode == "unacked":
            self.check_peer_alive()
            self.release_hold()
        self.still_running("after restore")

    def run(self):
        self.start()
        self.wait_progress("before the dump")
        if self.a.mode in ("plain", "unacked"):
            self.dump_and_restore()
        elif self.a.mode == "leave-running":
            for n in (1, 2):
                self.dump(True, ["--tcp-established"])
                self.still_running(f"after dump {n} --leave-running")
            self.dump_and_restore()
        else:
            _, r = self.dump(False, expect_ok=False)
            want = ["established TCP connection", f"pid {self.pid} fd", "--tcp-established"]
            if not all(w in r.stderr for w in want):
                raise Failure(f"the refusal does not say {want}: {r.stderr.strip()}")
            self.still_running("after the refused dump")
            for phase in ("images", "inventory"):
                self.dump(False, ["--tcp-established"], {"CRIU_FAULT_INJECT": phase}, expect_ok=False)
                self.still_running(f"after a dump failed at phase '{phase}'")
        self.verdicts()

    def verdicts(self):
        # The peer first, without closing (a close would reset the workload), then the workload.
        self.peer.send_signal(signal.SIGTERM)
        line = wait_line(self.peer_out, "PEER ", self.peer, 30)
        if not line.startswith("PEER PASS"):
            raise Failure(f"peer verdict: {line}")
        log(line)
        os.kill(self.pid, signal.SIGTERM)
        status = reap(self.pid, 60)
        output = read_text(self.out).strip()
        last = output.splitlines()[-1] if output else ""
        if status is None or not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0 or last != "PASS":
            raise Failure(f"workload verdict: '{last}', wait status {status}\n{output}")
        log("workload: " + " ".join(line for line in output.splitlines() if "streamed" in line))

    def cleanup(self):
        self.release_hold()
        for p in (self.peer, self.proc):
            if p is not None and p.poll() is None:
                p.kill()
        if self.pid and pid_alive(self.pid):
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for p in (self.peer, self.proc):
            if p is not None:
                try:
                    p.wait(timeout=10)
                except (subprocess.TimeoutExpired, ChildProcessError):
                    pass
        # A restored workload is our child only as a subreaper's orphan.
        try:
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        except ChildProcessError:
            pass
        if self.pid:
            for t in lock_tables(self.pid):
                subprocess.run(["nft", "delete", "table", "inet", t], capture_output=True, timeout=30)


def show_logs(tmp):
    for root, _, files in os.walk(tmp):
        for name in sorted(files):
            if name.endswith(".log"):
                path = os.path.join(root, name)
                print(f"----- last lines of {path}")
                print("\n".join(read_text(path).splitlines()[-40:]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--criu", required=True)
    ap.add_argument("--workload", required=True)
    ap.add_argument("--peer", required=True)
    ap.add_argument("--role", choices=["client", "server"], required=True)
    ap.add_argument("--family", choices=["4", "6"], required=True)
    ap.add_argument("--mode", choices=["plain", "leave-running", "rollback", "unacked"], required=True)
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    a.criu, a.workload, a.peer = (os.path.abspath(p) for p in (a.criu, a.workload, a.peer))
    if a.mode == "unacked" and a.role != "client":
        ap.error("--mode unacked holds packets by the peer's port: --role client")
    # Restored processes are re-parented to us, so we can wait for them.
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    name = f"tcp_{a.role}{a.family}.{a.mode}"
    tmp = tempfile.mkdtemp(prefix=f"criu-e2e-{name}-")
    r = Runner(a, tmp)
    ok = False
    try:
        r.run()
        ok = True
        log(f"{name}: PASS")
    except (Failure, subprocess.TimeoutExpired) as e:
        log(f"{name}: FAIL: {e}")
        show_logs(tmp)
    finally:
        try:
            r.cleanup()
        except Exception as e:  # noqa: BLE001 - cleanup must not hide the verdict
            log(f"cleanup: {e}")
        if ok and not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        elif not ok:
            log(f"scratch directory kept: {tmp}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
