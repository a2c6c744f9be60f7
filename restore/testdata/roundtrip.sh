#!/bin/sh
# Manual round trip through the CLI: start restore_target, dump it, restore it detached, check
# that it runs on with its state intact, then stop it (exit status 7 after joining its threads).
# usage: roundtrip.sh BUILD_DIR [MODE]      (MODE: "", "seccomp")
set -eu
build=$1
mode=${2:-plain}
dir=$(mktemp -d /tmp/criu-roundtrip-XXXXXX)
trap 'rm -rf "$dir"' EXIT
chmod 711 "$dir"
"$build/bin/restore_target" "$dir/stop" "$mode" > "$dir/out" 2>&1 < /dev/null &
pid=$!
sleep 0.5
mkdir "$dir/img"
"$build/bin/criu" dump -t "$pid" -D "$dir/img" -o dump.log
wait "$pid" 2>/dev/null || true   # killed by the dump; reaped here so the pid is free at once
before=$(wc -l < "$dir/out")
"$build/bin/criu" restore -D "$dir/img" -d -o restore.log --pidfile "$dir/pid"
[ "$(cat "$dir/pid")" = "$pid" ] || { echo "FAIL: pidfile says $(cat "$dir/pid"), dumped $pid"; exit 1; }
sleep 0.5
after=$(wc -l < "$dir/out")
last=$(tail -n 1 "$dir/out")
echo "lines before restore $before, after $after; last: $last"
case "$last" in
  *"zmm=ok tls=ok mem=ok alt=ok shm=ok"*) ;;
  *) echo "FAIL: state lost"; kill -9 "$pid"; exit 1 ;;
esac
[ "$after" -gt "$before" ] || { echo "FAIL: no progress"; kill -9 "$pid"; exit 1; }
grep -o "restored with.*" "$dir/img/restore.log"
touch "$dir/stop"
for _ in 1 2 3 4 5 6 7 8 9 10; do [ -d "/proc/$pid" ] || break; sleep 0.1; done
tail -n 1 "$dir/out"
echo PASS
