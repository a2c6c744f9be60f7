#!/usr/bin/env python3
"""A real program on a pty: an interactive bash whose terminal is a pty held by this driver.

The driver types a command and reads the answer, dumps bash with --shell-job (its terminal
belongs to the driver's session, not to the dumped tree), then restores it with a new pty as the
restoring criu's terminal, types another command on that pty and expects bash to answer it.
"""
import argparse
import ctypes
import fcntl
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import termios
import time

PR_SET_CHILD_SUBREAPER = 36


def log(msg):
    print(f"[shell_pty] {msg}", flush=True)


def read_until(fd, needle, timeout=15.0):
    """Reads from the pty master until `needle` shows up; returns everything read."""
    out = b""
    deadline = time.monotonic() + timeout
    while needle not in out:
        left = deadline - time.monotonic()
        if left <= 0:
            raise RuntimeError(f"no {needle!r} within {timeout} s; got {out[-400:]!r}")
        r, _, _ = select.select([fd], [], [], left)
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                chunk = b""
            if not chunk:
                raise RuntimeError(f"pty closed before {needle!r}; got {out[-400:]!r}")
            out += chunk
    return out


def start_bash(slave):
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
            for fd in (0, 1, 2):
                os.dup2(slave, fd)
            os.closerange(3, 4096)
            env = {"PATH": "/usr/bin:/bin", "PS1": "bash$ ", "HOME": "/", "TERM": "dumb"}
            os.execve("/bin/bash", ["bash", "--norc", "--noprofile", "-i"], env)
        finally:
            os._exit(127)
    return pid


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--criu", required=True)
    a = ap.parse_args()
    if not os.path.exists("/bin/bash"):
        log("SKIP: no /bin/bash")
        return 0
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    tmp = tempfile.mkdtemp(prefix="criu-e2e-shell-pty-")
    img = os.path.join(tmp, "img")
    bash = None
    ok = False
    try:
        master, slave = pty.openpty()
        bash = start_bash(slave)
        os.close(slave)
        os.write(master, b"echo before-$((6*7))\n")
        out = read_until(master, b"before-42")
        if b"bash$ " not in out.split(b"before-42", 1)[1]:
            read_until(master, b"bash$ ")  # back at the prompt: bash waits in read()
        time.sleep(0.2)
        log(f"bash {bash} answers on its pty; dumping it")
        r = subprocess.run([a.criu, "dump", "-t", str(bash), "-D", img, "-o", "dump.log", "-v4", "--shell-job"],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"dump failed: {r.stderr}")
        _, status = os.waitpid(bash, 0)
        if not os.WIFSIGNALED(status):
            raise RuntimeError(f"bash was not killed by the dump (status {status})")
        os.close(master)

        # The restoring criu's terminal becomes bash's terminal.
        master2, slave2 = pty.openpty()
        pidfile = os.path.join(tmp, "pid")
        r = subprocess.run([a.criu, "restore", "-D", img, "-o", "restore.log", "-v4", "--shell-job", "-d",
                            "--pidfile", pidfile], stdin=slave2, stdout=slave2, stderr=slave2, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"restore failed with {r.returncode}: {read_until_quiet(master2)!r}")
        restored = int(open(pidfile).read())
        if restored != bash:
            raise RuntimeError(f"restored pid {restored}, expected {bash}")
        os.write(master2, b"echo after-$((7*6))\n")
        read_until(master2, b"after-42")
        ok = True
        log("PASS: restored bash answered on its new terminal")
    except Exception as e:  # noqa: BLE001 - every failure ends the test with its reason
        log(f"FAIL: {e}")
        for name in ("dump.log", "restore.log"):
            path = os.path.join(img, name)
            if os.path.exists(path):
                print(f"----- {path}")
                print("\n".join(open(path, errors="replace").read().splitlines()[-30:]))
    finally:
        if bash is not None:
            try:
                os.kill(bash, signal.SIGKILL)
                os.waitpid(bash, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        if ok:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            log(f"scratch directory kept: {tmp}")
    return 0 if ok else 1


def read_until_quiet(fd):
    out = b""
    while select.select([fd], [], [], 0.2)[0]:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    return out


if __name__ == "__main__":
    sys.exit(main())
