#!/usr/bin/env python3
"""End-to-end runner in the spirit of CRIU's zdtm.

Starts a workload, waits for its READY line, takes a snapshot of
/proc/PID/{maps,status,fd}, dumps it with criu, makes sure it is gone (or, with
--leave-running, still running after two dumps, then kills it), restores it,
compares the /proc snapshot, sends SIGTERM and expects the workload itself to
print PASS and exit 0.
"""
import argparse
import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

PR_SET_CHILD_SUBREAPER = 36

# /proc/PID/status fields that must survive a checkpoint/restore unchanged.
STATUS_FIELDS = [
    "Name", "Umask", "Tgid", "Pid", "PPid", "TracerPid", "Uid", "Gid", "Groups",
    "NStgid", "NSpid", "NSpgid", "NSsid", "Threads", "SigBlk", "SigIgn", "SigCgt",
    "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp",
    "Seccomp_filters", "VmSize", "VmLck", "VmPin",
]


class Failure(Exception):
    pass


def log(msg):
    print(f"[e2e] {msg}", flush=True)


def read_text(path):
    with open(path, "r", errors="replace") as f:
        return f.read()


def snapshot(pid):
    """What of /proc/PID a restore must reproduce."""
    maps = []
    deleted_ids = {}
    for line in read_text(f"/proc/{pid}/maps").splitlines():
        parts = line.split(None, 5)
        addr, perms, off, dev, ino = parts[:5]
        path = parts[5] if len(parts) > 5 else ""
        if path.endswith("(deleted)") or path.startswith("/memfd:") or path.startswith("/SYSV"):
            # Shared memory gets a new inode on restore: compare identity classes, not numbers.
            dev = "-"
            ino = deleted_ids.setdefault(ino, f"shm#{len(deleted_ids)}")
        maps.append(f"{addr} {perms} {off} {dev} {ino} {path}")
    status = {}
    for line in read_text(f"/proc/{pid}/status").splitlines():
        key, _, value = line.partition(":")
        if key in STATUS_FIELDS:
            status[key] = " ".join(value.split())
    fds = {}
    anon_ids = {}
    for fd in sorted(os.listdir(f"/proc/{pid}/fd"), key=int):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        # Kernel object numbers (pipe:[N], socket:[N]) change; keep which fds share one.
        m = re.match(r"^(\w+):\[(\d+)\]$", target)
        if m:
            key = (m.group(1), m.group(2))
            target = f"{m.group(1)}:#{anon_ids.setdefault(key, len(anon_ids))}"
        flags = ""
        try:
            for line in read_text(f"/proc/{pid}/fdinfo/{fd}").splitlines():
                if line.startswith("flags:"):
                    flags = line.split()[1]
        except FileNotFoundError:
            pass
        fds[int(fd)] = f"{target} flags={flags}"
    return {"maps": maps, "status": status, "fds": fds}


def compare(before, after):
    problems = []
    if before["maps"] != after["maps"]:
        import difflib
        diff = "\n".join(difflib.unified_diff(before["maps"], after["maps"], "before", "after", lineterm=""))
        problems.append("maps differ:\n" + diff)
    for key, value in before["status"].items():
        if after["status"].get(key) != value:
            problems.append(f"status {key}: before '{value}', after '{after['status'].get(key)}'")
    if before["fds"] != after["fds"]:
        problems.append(f"fds differ:\n before {before['fds']}\n after  {after['fds']}")
    return problems


def wait_for_line(path, prefix, proc_alive, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            for line in read_text(path).splitlines():
                if line.startswith(prefix):
                    return line
        if not proc_alive():
            raise Failure(f"workload exited before '{prefix}': {read_text(path) if os.path.exists(path) else ''}")
        time.sleep(0.01)
    raise Failure(f"no '{prefix}' line within {timeout} s")


def run_criu(args, criu, tmp, what, timeout=120):
    cmd = [criu] + args
    log("$ " + " ".join(cmd))
    r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    if r.stdout.strip():
        print(r.stdout.rstrip())
    if r.stderr.strip():
        print(r.stderr.rstrip())
    if r.returncode != 0:
        for name in os.listdir(tmp):
            pass
        raise Failure(f"{what} failed with exit code {r.returncode}")
    return r


def show_logs(tmp):
    for root, _, files in os.walk(tmp):
        for name in sorted(files):
            if name.endswith(".log") and name != "out.log":
                path = os.path.join(root, name)
                lines = read_text(path).splitlines()
                print(f"----- last lines of {path}")
                print("\n".join(lines[-40:]))


def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except FileNotFoundError:
        return False


def reap(pid, timeout=10.0):
    """Waits for our child `pid`; returns its wait status."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return None
        if got == pid:
            return status
        time.sleep(0.01)
    raise Failure(f"pid {pid} did not exit within {timeout} s")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--criu", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--mode", choices=["plain", "leave-running"], default="plain")
    ap.add_argument("--dump-args", default="", help="extra criu dump arguments")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    ap.add_argument("workload", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.workload[1:] if a.workload and a.workload[0] == "--" else a.workload

    # Restored processes are re-parented to us, so we can wait for them.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)

    tmp = tempfile.mkdtemp(prefix=f"criu-e2e-{a.name}-{a.mode}-")
    work = os.path.join(tmp, "work")
    os.mkdir(work)
    out_path = os.path.join(tmp, "out.log")
    pid = None
    ok = False
    try:
        with open(out_path, "a") as out:
            proc = subprocess.Popen(cmd, cwd=work, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                    start_new_session=True)
        pid = proc.pid
        wait_for_line(out_path, "READY", lambda: proc.poll() is None, 60)
        log(f"workload {a.name} ready as pid {pid}")
        before = snapshot(pid)
        extra = a.dump_args.split()

        if a.mode == "plain":
            img = os.path.join(tmp, "img")
            run_criu(["dump", "-t", str(pid), "-D", img, "-o", "dump.log", "-v4"] + extra, a.criu, tmp, "dump")
            status = reap(pid)
            if status is None or not os.WIFSIGNALED(status):
                raise Failure(f"after dump the workload was not killed (status {status})")
        else:
            for n in (1, 2):
                img = os.path.join(tmp, f"img{n}")
                run_criu(["dump", "-t", str(pid), "-D", img, "-o", "dump.log", "-v4", "--leave-running"] + extra,
                         a.criu, tmp, f"dump {n} --leave-running")
                time.sleep(0.05)
                if not pid_alive(pid):
                    raise Failure(f"workload died after dump {n} with --leave-running: {read_text(out_path)}")
                state = snapshot(pid)
                problems = compare(before, state)
                if problems:
                    raise Failure(f"after dump {n} --leave-running the process changed:\n" + "\n".join(problems))
            proc.kill()
            reap(pid)
        log("workload is gone; restoring")

        pidfile = os.path.join(tmp, "restored.pid")
        deadline = time.monotonic() + 10
        run_criu(["restore", "-D", img, "-d", "--pidfile", pidfile, "-o", "restore.log", "-v4"],
                 a.criu, tmp, "restore")
        restored = int(read_text(pidfile).strip())
        if restored != pid:
            raise Failure(f"restored pid {restored}, expected {pid}")
        if not pid_alive(pid):
            raise Failure(f"restored process is not running: {read_text(out_path)}")
        after = snapshot(pid)
        problems = compare(before, after)
        if problems:
            raise Failure("after restore:\n" + "\n".join(problems))
        os.kill(pid, signal.SIGTERM)
        status = reap(pid, 120)
        output = read_text(out_path)
        last = output.strip().splitlines()[-1] if output.strip() else ""
        if status is None:
            raise Failure("restored process is not our child: cannot read its exit status")
        if last != "PASS" or not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
            raise Failure(f"workload verdict: '{last}', wait status {status}\n{output}")
        ok = True
        log(f"{a.name} ({a.mode}): PASS")
    except (Failure, subprocess.TimeoutExpired) as e:
        log(f"{a.name} ({a.mode}): FAIL: {e}")
        show_logs(tmp)
    finally:
        if pid is not None and pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
            try:
                reap(pid, 5)
            except Failure:
                pass
        if ok and not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        elif not ok:
            log(f"scratch directory kept: {tmp}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
