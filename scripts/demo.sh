#!/usr/bin/env bash
# The main job, end to end: check the kernel, start a counter, checkpoint it (the process is
# killed), restore it from the images and show that it counts on from where it stopped.
set -euo pipefail
criu=$(realpath "${1:-build/bin/criu}")
counter=$(realpath "$(dirname "$criu")/criu-demo-counter")
work=$(mktemp -d /tmp/criu-demo-XXXXXX)
cleanup() { [[ -n "${pid:-}" ]] && kill -9 "$pid" 2>/dev/null; true; }
trap cleanup EXIT

echo "== criu check"
"$criu" check

echo "== starting the counter"
setsid "$counter" </dev/null >"$work/counter.out" 2>&1 &
pid=$!
disown "$pid" 2>/dev/null || true  # no "Killed" notice from the shell when the dump kills it
sleep 1
echo "   pid $pid; last line: $(tail -n 1 "$work/counter.out")"

echo "== criu dump -t $pid -D $work/images"
"$criu" dump -t "$pid" -D "$work/images" -o dump.log
wait "$pid" 2>/dev/null || true
kill -0 "$pid" 2>/dev/null && { echo "the counter still runs after the dump" >&2; exit 1; }
before=$(tail -n 1 "$work/counter.out")
echo "   the counter is gone; its last line was: $before"
echo "   images: $(ls "$work/images" | tr '\n' ' ')"

echo "== criu restore -D $work/images -d"
"$criu" restore -D "$work/images" -d --pidfile "$work/restored.pid" -o restore.log
restored=$(cat "$work/restored.pid")
sleep 1
after=$(tail -n 1 "$work/counter.out")
echo "   restored as pid $restored; last line now: $after"

n_before=$(awk '{print $2}' <<<"$before")
n_after=$(awk '{print $2}' <<<"$after")
if [[ "$restored" == "$pid" ]] && kill -0 "$restored" && ((n_after > n_before)); then
  echo "== the counter survived: it went on from $n_before to $n_after with the same pid $restored"
  kill -9 "$restored"
  pid=
  rm -rf "$work"
else
  echo "== the restored counter did not go on (work dir kept: $work)" >&2
  exit 1
fi
