#!/usr/bin/env python3
"""System calls per unary call, duct and the raw floor side by side.

Runs duct-bench under strace for each payload and client count (one
repetition, few calls), attributes every traced call to its process (the
raw server, the duct server, or the bench itself, which is both clients),
and prints the counts per call. Linux only; needs strace (Debian: strace).

  bench/syscalls.py build/default/bin/duct-bench [--payload 16] [--clients 1]
"""
import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile

# The raw floor uses send()/recv() (sendto, recvfrom), duct sendmsg and
# recvmsg: in the bench process, which is both clients, that tells the raw
# client's calls from duct's.
TRACED = ("recvmsg,sendmsg,recvfrom,sendto,epoll_wait,epoll_ctl,poll,futex,"
          "clone,clone3,execve")
COLS = (("recv", 7), ("send", 7), ("epoll_wait", 11), ("epoll_ctl", 10), ("poll", 6),
        ("futex", 6))
LINE = re.compile(r"(\d+)\s+(\w+)\((.*)")
# A call another thread interrupted in strace's output ends on a line of
# its own: "<... clone3 resumed>, 88) = 1234".
RESUMED = re.compile(r"(\d+)\s+<\.\.\. (\w+) resumed>(.*)")


def attribute(log):
    """Counts per process kind: 'raw', 'duct' or 'bench'."""
    parent, kind = {}, {}
    counts = collections.defaultdict(collections.Counter)
    with open(log) as f:
        for line in f:
            r = RESUMED.match(line)
            if r:
                # Counted where it began; only a new thread's id is read here.
                if r.group(2) in ("clone", "clone3"):
                    new = re.search(r"= (\d+)\s*$", line)
                    if new:
                        parent[int(new.group(1))] = int(r.group(1))
                continue
            m = LINE.match(line)
            if not m:
                continue
            tid, call, rest = int(m.group(1)), m.group(2), m.group(3)
            if call in ("clone", "clone3"):
                r = re.search(r"= (\d+)\s*$", line)
                if r:
                    parent[int(r.group(1))] = tid
                continue
            if call == "execve":
                kind[tid] = ("raw" if "--raw-server" in rest else
                             "duct" if "--duct-server" in rest else "bench")
                continue
            counts[tid][call] += 1
    out = collections.defaultdict(collections.Counter)
    for tid, c in counts.items():
        t = tid
        while t not in kind and t in parent:
            t = parent[t]
        out[kind.get(t, "bench")].update(c)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bench")
    ap.add_argument("--payload", type=int, action="append")
    ap.add_argument("--clients", type=int, action="append")
    ap.add_argument("--calls-scale", default="0.05")
    a = ap.parse_args()
    payloads = a.payload or [16, 1024, 65536, 1048576]
    clients = a.clients or [1, 4]
    print("payload clients side           recv   send epoll_wait epoll_ctl  poll futex"
          "   (system calls per call)")
    for p in payloads:
        for c in clients:
            with tempfile.TemporaryDirectory() as d:
                log = os.path.join(d, "strace.log")
                out = subprocess.run(
                    ["strace", "-f", "-qq", "-e", "trace=" + TRACED, "-o", log, a.bench,
                     "--only", "unary", "--payload", str(p), "--clients", str(c),
                     "--reps", "1", "--calls-scale", a.calls_scale],
                    check=True, capture_output=True, text=True).stdout
                m = re.search(r" calls=(\d+)", out)
                if not m:
                    sys.exit("no bench line in: " + out)
                # The timed calls and their 10% warm-up, on each side.
                calls = int(m.group(1)) * 1.1
                got = attribute(log)
            b = got["bench"]
            rows = (
                ("raw server", got["raw"]["recvfrom"], got["raw"]["sendto"], got["raw"]),
                ("duct server", got["duct"]["recvmsg"], got["duct"]["sendmsg"], got["duct"]),
                ("raw client", b["recvfrom"], b["sendto"], None),
                ("duct client", b["recvmsg"], b["sendmsg"], None),
            )
            for name, recv, send, other in rows:
                vals = [recv, send] + ([other[k] for k, _ in COLS[2:]] if other
                                       else [None] * (len(COLS) - 2))
                cells = "".join(("{:>%d.2f}" % w).format(v / calls) if v is not None
                                else " " * (w - 1) + "-" for v, (_, w) in zip(vals, COLS))
                print(f"{p:>7} {c:>7} {name:<12}{cells}")

if __name__ == "__main__":
    main()
