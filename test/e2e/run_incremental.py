#!/usr/bin/env python3
"""End-to-end runner for incremental dumps (issue 5), built on run.py's helpers.

Modes:
  chain         pre-dump 3 times (the workload changes its mappings between them: MADV_DONTNEED,
                a new mmap, an mremap), then dump --track-mem; every increment must have used
                uffd-wp tracking and written less than the full copy; restore from the chain.
  agent-killed  the same, but the tracking agent is SIGKILLed before the final dump: the dump must
                say it fell back (stats tracking_fallback, dirty_tracking "hash") and still be right.
  pre-copy      one `criu dump --pre-copy`; the stats must show the rounds; restore.
  order-chain, order-pre-copy
                chain and pre-copy with the mem_order workload, which writes without pause while
                the pre-dumps and rounds copy its memory (no phases, no agent kill): after the
                restore no page may be older than its last write before the final freeze.
In every mode the workload verifies every byte after the restore and prints PASS, and no tracking
agent may be left once the process is gone.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as base  # noqa: E402

log = base.log
Failure = base.Failure


def agents_of(pid):
    """Tracking agents (comm criu-track-agt) whose command line names -t PID."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if base.read_text(f"/proc/{entry}/comm").strip() != "criu-track-agt":
                continue
            args = base.read_text(f"/proc/{entry}/cmdline").split("\0")
        except (FileNotFoundError, ProcessLookupError):
            continue
        for i, a in enumerate(args[:-1]):
            if a in ("-t", "--tree") and args[i + 1] == str(pid):
                found.append(int(entry))
    return found


def stats(path):
    with open(path) as f:
        return json.load(f)


def num(v):
    return int(v) if isinstance(v, str) else (v or 0)


def next_phase(pid, out_path, n, proc_alive):
    os.kill(pid, signal.SIGUSR1)
    base.wait_for_line(out_path, f"PHASE {n}", proc_alive, 30)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--criu", required=True)
    ap.add_argument("--mode", choices=["chain", "agent-killed", "pre-copy", "order-chain", "order-pre-copy"],
                    required=True)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("workload", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.workload[1:] if a.workload and a.workload[0] == "--" else a.workload
    # The order modes run a workload without phases (it never stops writing).
    phases = not a.mode.startswith("order-")
    mode = a.mode.removeprefix("order-")

    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(base.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)

    tmp = tempfile.mkdtemp(prefix=f"criu-e2e-incr-{a.mode}-")
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
        alive = lambda: proc.poll() is None  # noqa: E731
        base.wait_for_line(out_path, "READY", alive, 60)
        log(f"workload ready as pid {pid}")
        before = base.snapshot(pid)
        common = ["-t", str(pid), "-v4"]

        if mode == "pre-copy":
            img = os.path.join(tmp, "img")
            st = os.path.join(tmp, "stats.json")
            base.run_criu(["dump", "--pre-copy", "--max-downtime-ms", "50", "-D", img, "-o", "dump.log",
                           "--stats-json", st] + common, a.criu, tmp, "dump --pre-copy")
            s = stats(st)
            rounds = s.get("pre_copy_rounds", [])
            log(f"pre-copy: {len(rounds)} rounds, pages dirty "
                f"{[num(r.get('pages_dirty')) for r in rounds]}, final {num(s.get('pages_dirty'))} dirty, "
                f"{num(s.get('pages_written'))} written, frozen {num(s.get('frozen_time_us')) / 1000:.1f} ms")
            if len(rounds) < 1 or s.get("iterations") != len(rounds) + 1:
                raise Failure(f"stats do not show the pre-copy rounds: {s}")
            if s.get("dirty_tracking") != "uffd-wp":
                raise Failure(f"final delta not found with uffd-wp: {s.get('dirty_tracking')!r}")
            full = num(rounds[0].get("pages_written"))
            if num(s.get("pages_written")) >= full:
                raise Failure(f"the frozen delta wrote {num(s.get('pages_written'))} pages, the full copy {full}")
        else:
            prev = None
            for n in (1, 2, 3):
                d = os.path.join(tmp, f"pre{n}")
                st = os.path.join(tmp, f"pre{n}.json")
                args = ["pre-dump", "-D", d, "-o", "pre-dump.log", "--stats-json", st] + common
                if prev:
                    args += ["--prev-images-dir", f"../{prev}"]
                base.run_criu(args, a.criu, tmp, f"pre-dump {n}")
                s = stats(st)
                log(f"pre-dump {n}: {s.get('dirty_tracking')!r}, {num(s.get('pages_dirty'))} dirty, "
                    f"{num(s.get('pages_written'))} written, {num(s.get('pages_skipped_parent'))} from the parent")
                if n > 1 and (s.get("dirty_tracking") != "uffd-wp" or s.get("tracking_fallback")):
                    raise Failure(f"pre-dump {n} did not use the tracking agent: {s}")
                # With the agent answering, a pre-dump never stops the process.
                if n > 1 and num(s.get("frozen_time_us")) != 0:
                    raise Failure(f"pre-dump {n} stopped the process although its agent answered: {s}")
                if not agents_of(pid):
                    raise Failure(f"no tracking agent runs for pid {pid} after pre-dump {n}")
                prev = f"pre{n}"
                if phases:
                    next_phase(pid, out_path, n, alive)
            if mode == "chain":
                # A dump that leaves the process running with --track-mem keeps the tracking going.
                st = os.path.join(tmp, "mid.json")
                base.run_criu(["dump", "-R", "--track-mem", "--prev-images-dir", f"../{prev}",
                               "-D", os.path.join(tmp, "mid"), "-o", "dump.log", "--stats-json", st] + common,
                              a.criu, tmp, "dump -R --track-mem")
                s = stats(st)
                log(f"dump -R: {s.get('dirty_tracking')!r}, {num(s.get('pages_dirty'))} dirty, "
                    f"{num(s.get('pages_written'))} written")
                if s.get("dirty_tracking") != "uffd-wp" or not base.pid_alive(pid) or not agents_of(pid):
                    raise Failure(f"dump -R --track-mem did not keep the process and its tracking: {s}")
                prev = "mid"
                time.sleep(0.2)
            if mode == "agent-killed":
                for agent in agents_of(pid):
                    log(f"killing tracking agent {agent}")
                    os.kill(agent, signal.SIGKILL)
                time.sleep(0.2)
            img = os.path.join(tmp, "img")
            st = os.path.join(tmp, "dump.json")
            base.run_criu(["dump", "--track-mem", "--prev-images-dir", f"../{prev}", "-D", img, "-o", "dump.log",
                           "--stats-json", st] + common, a.criu, tmp, "dump --track-mem")
            s = stats(st)
            log(f"dump: {s.get('dirty_tracking')!r}, {num(s.get('pages_dirty'))} dirty, "
                f"{num(s.get('pages_written'))} written, {num(s.get('pages_skipped_parent'))} from the parent, "
                f"frozen {num(s.get('frozen_time_us')) / 1000:.1f} ms, fallback: {s.get('tracking_fallback')!r}")
            if mode == "chain":
                if s.get("dirty_tracking") != "uffd-wp" or s.get("tracking_fallback"):
                    raise Failure(f"the dump did not use the tracking agent: {s}")
                if num(s.get("pages_skipped_parent")) == 0:
                    raise Failure("the dump took nothing from the parent")
            else:
                if s.get("dirty_tracking") != "hash" or not s.get("tracking_fallback"):
                    raise Failure(f"the dump did not report its fallback: {s}")
                # The incremental pre-dumps carried their parents' hashes over: the fallback still
                # finds the unchanged pages.
                if num(s.get("pages_skipped_parent")) == 0:
                    raise Failure("the hash fallback found no unchanged page")

        status = base.reap(pid)
        if status is None or not os.WIFSIGNALED(status):
            raise Failure(f"after dump the workload was not killed (status {status})")
        deadline = time.monotonic() + 5
        while agents_of(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if agents_of(pid):
            raise Failure(f"tracking agents {agents_of(pid)} outlived pid {pid}")

        pidfile = os.path.join(tmp, "restored.pid")
        base.run_criu(["restore", "-D", img, "-d", "--pidfile", pidfile, "-o", "restore.log", "-v4"],
                      a.criu, tmp, "restore")
        restored = int(base.read_text(pidfile).strip())
        if restored != pid:
            raise Failure(f"restored pid {restored}, expected {pid}")
        after = base.snapshot(pid)
        problems = [p for p in base.compare(before, after) if not p.startswith("maps differ")
                    and not p.startswith("status VmSize")]
        if problems:
            raise Failure("after restore:\n" + "\n".join(problems))
        os.kill(pid, signal.SIGTERM)
        status = base.reap(pid, 120)
        output = base.read_text(out_path)
        last = output.strip().splitlines()[-1] if output.strip() else ""
        if status is None or last != "PASS" or not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
            raise Failure(f"workload verdict: '{last}', wait status {status}\n{output}")
        ok = True
        log(f"incremental ({a.mode}): PASS")
    except (Failure, subprocess.TimeoutExpired) as e:
        log(f"incremental ({a.mode}): FAIL: {e}")
        base.show_logs(tmp)
    finally:
        if pid is not None:
            if base.pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
                try:
                    base.reap(pid, 5)
                except Failure:
                    pass
            for agent in agents_of(pid):
                os.kill(agent, signal.SIGKILL)
        if ok and not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        elif not ok:
            log(f"scratch directory kept: {tmp}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
