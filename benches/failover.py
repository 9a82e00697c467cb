#!/usr/bin/env python3
"""Failover time of a local Pullback cluster: from SIGKILL of the leader to the moment the
new leader has started its pollers and workers, over many kills.

    benches/failover.py [--nodes 3] [--kills 25] [--dir /tmp/pullback-failover]

It starts a cluster with cluster/local, then repeatedly: finds the leader, kills it with
SIGKILL, polls every survivor's /api/v1/status until one reports `leader_work` started for
a newer term, records the time from the kill to that `started_at` (both on this machine's
clock), restarts the killed node and waits until it has caught up. It prints each figure and
the percentiles, and stops the cluster at the end. Loopback only.
"""

import argparse
import json
import os
import signal
import ssl
import statistics
import subprocess
import sys
import time
import urllib.request
from datetime import datetime

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def api_get(context, key, base, path, timeout=2.0):
    request = urllib.request.Request(base + path, headers={"Authorization": "Bearer " + key})
    with urllib.request.urlopen(request, context=context, timeout=timeout) as response:
        return json.load(response)


def parse_time(text):
    # RFC 3339 with nanoseconds: Python takes at most microseconds.
    head, _, tail = text.rstrip("Z").partition(".")
    micros = (tail + "000000")[:6]
    return datetime.fromisoformat(f"{head}.{micros}+00:00").timestamp()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--kills", type=int, default=25)
    parser.add_argument("--dir", default="/tmp/pullback-failover")
    args = parser.parse_args()

    local = os.path.join(ROOT, "cluster", "local")
    subprocess.run([local, "down", args.dir], capture_output=True)
    subprocess.run(["rm", "-rf", args.dir], check=True)
    subprocess.run([local, "up", str(args.nodes), args.dir], check=True)
    try:
        run(args)
    finally:
        subprocess.run([local, "down", args.dir], check=False)


def run(args):
    context = ssl.create_default_context(cafile=os.path.join(args.dir, "ca.crt"))
    key = open(os.path.join(args.dir, "admin.key")).read().strip()
    nodes = list(range(1, args.nodes + 1))
    base = {k: open(os.path.join(args.dir, f"node{k}", "api")).read().strip() for k in nodes}
    binary = os.environ.get("PULLBACK_BIN") or os.path.join(
        os.environ.get("CARGO_TARGET_DIR", "/work/target"), "debug", "pullback")

    def status(k):
        try:
            return api_get(context, key, base[k], "/api/v1/status", timeout=0.5)
        except Exception:
            return None

    def leader():
        for k in nodes:
            s = status(k)
            if s and s["state"] == "leader" and s.get("leader_work"):
                return k, s["term"]
        return None, None

    def start(k):
        log = open(os.path.join(args.dir, f"node{k}", "log"), "a")
        process = subprocess.Popen(
            [binary, "server", "--config", os.path.join(args.dir, f"node{k}", "pullback.toml")],
            stdout=subprocess.DEVNULL, stderr=log, stdin=subprocess.DEVNULL)
        with open(os.path.join(args.dir, f"node{k}", "pid"), "w") as f:
            f.write(str(process.pid))

    def caught_up():
        seen = [status(k) for k in nodes]
        if any(s is None for s in seen):
            return False
        applied = {s["last_applied"] for s in seen}
        return len(applied) == 1 and all(s["leader"] for s in seen)

    figures = []
    for kill in range(args.kills):
        deadline = time.time() + 30
        old, term = leader()
        while old is None and time.time() < deadline:
            time.sleep(0.05)
            old, term = leader()
        if old is None:
            sys.exit("no leader found")
        pid = int(open(os.path.join(args.dir, f"node{old}", "pid")).read())
        killed_at = time.time()
        os.kill(pid, signal.SIGKILL)
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        new_at = None
        while new_at is None and time.time() < killed_at + 30:
            for k in nodes:
                if k == old:
                    continue
                s = status(k)
                work = s and s.get("leader_work")
                if work and work["term"] > term:
                    new_at = parse_time(work["started_at"])
                    new = k
                    break
            else:
                time.sleep(0.01)
        if new_at is None:
            sys.exit(f"no new leader within 30 s after kill {kill + 1}")
        figure = new_at - killed_at
        figures.append(figure)
        print(f"kill {kill + 1:>3}: node {old} -> node {new}: {figure * 1000:7.0f} ms", flush=True)
        start(old)
        deadline = time.time() + 60
        while not caught_up():
            if time.time() > deadline:
                sys.exit(f"node {old} did not catch up after restart")
            time.sleep(0.1)

    figures.sort()
    def pct(p):
        return figures[min(len(figures) - 1, int(round(p / 100 * (len(figures) - 1))))]
    summary = {
        "kills": len(figures),
        "min_ms": round(figures[0] * 1000),
        "p50_ms": round(pct(50) * 1000),
        "p90_ms": round(pct(90) * 1000),
        "p99_ms": round(pct(99) * 1000),
        "max_ms": round(figures[-1] * 1000),
        "mean_ms": round(statistics.mean(figures) * 1000),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
