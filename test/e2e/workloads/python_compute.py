# A real interpreter mid-computation: builds a large dict and a running hash,
# says READY, keeps computing until SIGTERM, then checks everything it built.
import hashlib
import os
import signal
import sys

stop = False


def on_term(signum, frame):
    global stop
    stop = True


signal.signal(signal.SIGTERM, on_term)
table = {i: str(i * i) for i in range(200000)}
blob = bytes(range(256)) * 4096
digest = hashlib.sha256(blob).hexdigest()
n = 0
acc = 0
print(f"READY {os.getpid()}", flush=True)
while not stop:
    acc = (acc * 31 + n) % 1000000007
    n += 1

ok = all(table[i] == str(i * i) for i in range(0, 200000, 997))
ok = ok and hashlib.sha256(blob).hexdigest() == digest
# Recompute the running value from scratch: it must match what survived.
check = 0
for i in range(n):
    check = (check * 31 + i) % 1000000007
ok = ok and check == acc
print("PASS" if ok else f"FAIL: interpreter state differs (n={n})", flush=True)
sys.exit(0 if ok else 1)
