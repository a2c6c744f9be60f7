#!/usr/bin/env python3
"""End-to-end runner in the spirit of CRIU's zdtm.

Starts a workload, waits for its READY line, takes a snapshot of
/proc/PID/{maps,status,fd} of every process of its tree, dumps it with criu,
makes sure the tree is gone (or, with --leave-running, still running after two
dumps, then kills it), restores it, compares the /proc snapshots, sends SIGTERM
to the root and expects the workload itself to print PASS and exit 0.
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


# What a zombie still shows in /proc/PID/status (its masks and memory are gone).
ZOMBIE_FIELDS = ["Name", "State", "Tgid", "Pid", "PPid", "Uid", "Gid", "NStgid", "NSpid", "NSpgid", "NSsid"]


def merge_anon(maps):
    """Adjacent anonymous mappings with the same protection are one to the process; the kernel
    keeps them apart only when they came from different processes (fork), and a restore that
    maps them again lets it merge them."""
    out = []
    for line in maps:
        addr, perms, off, dev, ino, path = (line.split(" ", 5) + [""])[:6]
        if out and dev == "00:00" and ino == "0" and not path:
            paddr, pperms, poff, pdev, pino, ppath = (out[-1].split(" ", 5) + [""])[:6]
            pstart, pend = paddr.split("-")
            start, end = addr.split("-")
            if pend == start and pperms == perms and pdev == dev and pino == ino and not ppath:
                out[-1] = f"{pstart}-{end} {perms} {poff} {dev} {ino} "
                continue
        out.append(line)
    return out


def snapshot(pid):
    """What of /proc/PID a restore must reproduce."""
    maps = []
    deleted_ids = {}
    try:
        maps_text = read_text(f"/proc/{pid}/maps")
    except PermissionError:
        maps_text = ""  # a zombie's
    for line in maps_text.splitlines():
        parts = line.split(None, 5)
        addr, perms, off, dev, ino = parts[:5]
        path = parts[5] if len(parts) > 5 else ""
        if perms[3] == "p" and (path.endswith("(deleted)") or path.startswith("/memfd:")):
            # A private mapping whose file is gone (unlinked, or a memfd) comes back as anonymous
            # memory holding every page it showed (restore/vma_files.cc); its content is the
            # workload's to check.
            maps.append(f"{addr} {perms} 00000000 00:00 0 ")
            continue
        if path.endswith("(deleted)") or path.startswith("/memfd:") or path.startswith("/SYSV"):
            # Shared memory gets a new inode on restore: compare identity classes, not numbers.
            dev = "-"
            ino = deleted_ids.setdefault(ino, f"shm#{len(deleted_ids)}")
        maps.append(f"{addr} {perms} {off} {dev} {ino} {path}")
    status = {}
    text = read_text(f"/proc/{pid}/status")
    zombie = re.search(r"^State:\s+Z", text, re.M) is not None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in (ZOMBIE_FIELDS if zombie else STATUS_FIELDS):
            status[key] = " ".join(value.split())
    fds = {}
    anon_ids = {}
    try:
        fd_list = os.listdir(f"/proc/{pid}/fd")
    except (PermissionError, FileNotFoundError):
        fd_list = []  # a zombie's
    for fd in sorted(fd_list, key=int):
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
    return {"maps": merge_anon(maps), "status": status, "fds": fds}


def tree_pids(root):
    """The root and every descendant, parents first (children of every thread)."""
    out = [root]
    for pid in out:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except FileNotFoundError:
            continue
        for tid in tids:
            try:
                kids = read_text(f"/proc/{pid}/task/{tid}/children").split()
            except FileNotFoundError:
                continue
            out.extend(int(k) for k in kids if int(k) not in out)
    return out


def snapshot_tree(root):
    snaps = {}
    for pid in tree_pids(root):
        try:
            snaps[pid] = snapshot(pid)
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            snaps[pid] = None  # gone meanwhile
    return snaps


def compare_tree(before, after):
    problems = []
    if sorted(before) != sorted(after):
        problems.append(f"processes differ: before {sorted(before)}, after {sorted(after)}")
    for pid, snap in before.items():
        if pid in after and snap is not None and after[pid] is not None:
            problems.extend(f"pid {pid}: {p}" for p in compare(snap, after[pid]))
    return problems


def kill_and_reap_tree(pids, timeout=10.0):
    """SIGKILLs what is left of a tree and reaps everything that was reparented to us, so
    that no zombie keeps one of its pids."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        except ChildProcessError:
            pass
        if not any(os.path.exists(f"/proc/{p}") for p in pids):
            return
        time.sleep(0.01)
    raise Failure(f"processes of the tree still exist: {[p for p in pids if os.path.exists(f'/proc/{p}')]}")


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


def start_lazy_daemon(criu, img, tmp):
    """Checks that a lazy restore without a daemon fails cleanly, then starts the daemon."""
    cmd = [criu, "restore", "-D", img, "-d", "--lazy-pages", "-o", "restore-nodaemon.log"]
    log("$ " + " ".join(cmd))
    r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    if r.returncode == 0 or "no lazy-pages daemon" not in r.stderr:
        raise Failure(f"restore --lazy-pages without a daemon: exit {r.returncode}, {r.stderr.strip()}")
    cmd = [criu, "lazy-pages", "-D", img, "-o", "lazy-pages.log", "-v4", "--stats-json",
           os.path.join(tmp, "lazy-stats.json")]
    log("$ " + " ".join(cmd))
    d = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
    sock = os.path.join(img, "lazy-pages.socket")
    deadline = time.monotonic() + 30
    while not os.path.exists(sock):
        if d.poll() is not None:
            raise Failure(f"criu lazy-pages exited with {d.returncode} before listening")
        if time.monotonic() > deadline:
            d.kill()
            raise Failure("criu lazy-pages did not listen within 30 s")
        time.sleep(0.01)
    return d


def show_logs(tmp):
    for root, _, files in os.walk(tmp):
        for name in sorted(files):
            if name.endswith(".log") and name != "out.log":
                path = os.path.join(root, name)
                lines = read_text(path).splitlines()
                print(f"----- last lines of {path}")
                print("\n".join(lines[-40:]))


def pid_alive(pid):
    """Whether `pid` can still run: not a zombie, and not on its way out (PF_EXITING, 0x4 in
    the flags of /proc/PID/stat: criu dump SIGKILLs the tree and exits without waiting while
    the kernel frees the processes' memory)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return fields[0] not in ("Z", "X") and not int(fields[6]) & 0x4
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


def settled_problems(before, pid, settle_s=10.0):
    """Differences from `before` that last. A thread that was stopped inside sigsuspend or
    another call that swaps the signal mask restarts it after a resume or a restore, and shows
    its real mask until the restarted call has swapped it again (with lazy pages, until the page
    holding the mask has arrived). On a loaded machine that moment lasts long enough to be seen,
    so a difference only counts once it has lasted `settle_s` seconds."""
    deadline = time.monotonic() + settle_s
    problems = compare_tree(before, snapshot_tree(pid))
    while problems and time.monotonic() < deadline:
        time.sleep(0.05)
        problems = compare_tree(before, snapshot_tree(pid))
    return problems


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--criu", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--mode", choices=["plain", "leave-running", "restore-fails", "dump-killed"], default="plain",
                    help="restore-fails: remove --remove-after-dump from the workload's directory after a "
                         "plain dump; the restore must fail naming it and leave no process of the tree. "
                         "dump-killed: a dump --leave-running with CRIU_FAULT_INJECT=--fault must end with "
                         "criu SIGKILLed and the workload intact; it then verifies itself without a restore")
    ap.add_argument("--fault", default="", help="CRIU_FAULT_INJECT value for --mode dump-killed")
    ap.add_argument("--remove-after-dump", default="", help="file (relative to the workload's cwd)")
    ap.add_argument("--dump-args", default="", help="extra criu dump arguments")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    ap.add_argument("--lazy-pages", action="store_true",
                    help="restore with --lazy-pages, served by a `criu lazy-pages` daemon")
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
    lazy = None
    ok = False
    try:
        with open(out_path, "a") as out:
            proc = subprocess.Popen(cmd, cwd=work, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                    start_new_session=True)
        pid = proc.pid
        wait_for_line(out_path, "READY", lambda: proc.poll() is None, 60)
        log(f"workload {a.name} ready as pid {pid}")
        before = snapshot_tree(pid)
        pids = list(before)
        if len(pids) > 1:
            log(f"tree of {len(pids)} processes: {pids}")
        extra = a.dump_args.split()

        if a.mode == "dump-killed":
            img = os.path.join(tmp, "img")
            cmd = [a.criu, "dump", "-t", str(pid), "-D", img, "-o", "dump.log", "-v4", "--leave-running"] + extra
            log(f"$ CRIU_FAULT_INJECT={a.fault} " + " ".join(cmd))
            r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
                               env=dict(os.environ, CRIU_FAULT_INJECT=a.fault))
            if r.returncode != -signal.SIGKILL:
                raise Failure(f"criu was not SIGKILLed by the fault '{a.fault}' (exit {r.returncode}): {r.stderr}")
            # Whatever criu left running on its behalf may still be finishing: wait for the tree
            # to look as before (up to 10 s), then let the workload judge itself.
            problems = ["not compared yet"]
            deadline = time.monotonic() + 10
            while problems and time.monotonic() < deadline:
                time.sleep(0.02)
                if not pid_alive(pid):
                    raise Failure(f"workload died with criu: {read_text(out_path)}")
                problems = compare_tree(before, snapshot_tree(pid))
            if problems:
                raise Failure("after criu was killed the process changed:\n" + "\n".join(problems))
            os.kill(pid, signal.SIGTERM)
            status = reap(pid, 120)
            output = read_text(out_path)
            last = output.strip().splitlines()[-1] if output.strip() else ""
            if last != "PASS" or status is None or not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
                raise Failure(f"workload verdict: '{last}', wait status {status}\n{output}")
            ok = True
            log(f"{a.name} ({a.mode}): PASS")
            return 0
        if a.mode in ("plain", "restore-fails"):
            img = os.path.join(tmp, "img")
            run_criu(["dump", "-t", str(pid), "-D", img, "-o", "dump.log", "-v4"] + extra, a.criu, tmp, "dump")
            status = reap(pid)
            if status is None or not os.WIFSIGNALED(status):
                raise Failure(f"after dump the workload was not killed (status {status})")
            alive = [p for p in pids if pid_alive(p)]
            if alive:
                raise Failure(f"after dump processes of the tree still run: {alive}")
            kill_and_reap_tree(pids)
        else:
            for n in (1, 2):
                img = os.path.join(tmp, f"img{n}")
                run_criu(["dump", "-t", str(pid), "-D", img, "-o", "dump.log", "-v4", "--leave-running"] + extra,
                         a.criu, tmp, f"dump {n} --leave-running")
                if not pid_alive(pid):
                    raise Failure(f"workload died after dump {n} with --leave-running: {read_text(out_path)}")
                problems = settled_problems(before, pid)
                if problems:
                    raise Failure(f"after dump {n} --leave-running the process changed:\n" + "\n".join(problems))
            proc.kill()
            reap(pid)
            kill_and_reap_tree(pids)
        log("workload is gone; restoring")
        if a.mode == "restore-fails":
            victim = os.path.join(work, a.remove_after_dump)
            os.unlink(victim)
            log(f"removed {victim}: the restore must fail")
            cmd = [a.criu, "restore", "-D", img, "-d", "-o", "restore.log", "-v4"]
            log("$ " + " ".join(cmd))
            r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
            print(r.stderr.rstrip())
            if r.returncode == 0:
                raise Failure("the restore succeeded without the removed file")
            if os.path.basename(victim) not in r.stderr:
                raise Failure(f"the error does not name {victim}")
            # Nothing of the tree may be left: no process, no zombie, no stand-in.
            left = [p for p in pids if os.path.exists(f"/proc/{p}")]
            if left:
                raise Failure(f"processes left behind by the failed restore: {left}")
            ok = True
            log(f"{a.name} ({a.mode}): PASS")
            return 0

        pidfile = os.path.join(tmp, "restored.pid")
        restore_args = []
        if a.lazy_pages:
            lazy = start_lazy_daemon(a.criu, img, tmp)
            restore_args = ["--lazy-pages"]
        run_criu(["restore", "-D", img, "-d", "--pidfile", pidfile, "-o", "restore.log", "-v4"] + restore_args,
                 a.criu, tmp, "restore")
        restored = int(read_text(pidfile).strip())
        if restored != pid:
            raise Failure(f"restored pid {restored}, expected {pid}")
        if not pid_alive(pid):
            raise Failure(f"restored process is not running: {read_text(out_path)}")
        problems = settled_problems(before, pid)
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
        if a.lazy_pages:
            rc = lazy.wait(timeout=120)
            if rc != 0:
                raise Failure(f"criu lazy-pages exited with {rc}")
            log(f"lazy-pages stats: {read_text(os.path.join(tmp, 'lazy-stats.json')).strip()}")
        ok = True
        log(f"{a.name} ({a.mode}): PASS")
    except (Failure, subprocess.TimeoutExpired) as e:
        log(f"{a.name} ({a.mode}): FAIL: {e}")
        show_logs(tmp)
    finally:
        if lazy is not None and lazy.poll() is None:
            lazy.kill()
            lazy.wait()
        # Whatever is left (the tree, or children a failed root left behind) was reparented to
        # us, a subreaper: only our own descendants are killed here.
        try:
            kill_and_reap_tree(tree_pids(os.getpid())[1:], 5)
        except Failure:
            pass
        if ok and not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        elif not ok:
            log(f"scratch directory kept: {tmp}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
