#!/usr/bin/env python3
"""Memory and completeness of a scripted poller that prints about 1 GB, and the rate of a
streamed CSV export import, on one Pullback node.

    benches/sources.py [--alerts 5000000] [--csv-rows 1000000] [--dir /tmp/pullback-sources]
                       [--bin target/release/pullback]

It starts `pullback server` alone on loopback (no mailbox, no match condition), waits until it
is idle and reads its resident memory (the baseline). Then:

1. script: an administrator adds (through the API) a script source whose Python program
   prints --alerts alerts of about 200 bytes each, with a checkpoint line every 100 000, and
   exits. The node's resident memory is sampled every 100 ms until the source reports a
   successful run; the report gives the peak above the baseline, the time, and the alerts
   stored (the source's `accepted` counter) against the alerts printed.
2. csv: a search-export source gets a credential; a CSV file of --csv-rows rows (one
   recipient each, the header of a known gateway export) is streamed to its push endpoint
   in one request. The report gives rows per second and the peak memory above the baseline
   during the import.

Memory is VmRSS from /proc/<pid>/status. Loopback only. Build first with
`cargo build --release --workspace` (the script does it unless --bin is given).
"""

import argparse
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
KEY = "bench-admin-key-5d7c1e"
CREDENTIAL = None

SCRIPT = r'''#!/usr/bin/env python3
import os, sys
total = int(sys.argv[1])
out = sys.stdout.buffer
pad = "x" * 96
start = int(os.environ.get("PULLBACK_CHECKPOINT", "0"))
lines = []
for i in range(start, total):
    lines.append(('{"id":"bench-%d","message_id":"<m%d@bench.example>","recipients":["u%d@corp.example"],'
                  '"subject":"%s","time":"2026-12-04T10:00:00Z"}\n' % (i, i, i % 1000, pad)).encode())
    if (i + 1) % 100000 == 0:
        lines.append(('{"checkpoint":"%d"}\n' % (i + 1)).encode())
    if len(lines) >= 10000:
        out.write(b"".join(lines))
        lines = []
out.write(b"".join(lines))
'''


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class Sampler:
    """Samples a process's resident memory every 100 ms in the background."""

    def __init__(self, pid):
        self.pid = pid
        self.peak = 0
        self.running = True
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while self.running:
            self.peak = max(self.peak, rss(self.pid))
            time.sleep(0.1)

    def stop(self):
        self.running = False
        self.thread.join()
        return self.peak


def request(port, method, path, body=None, key=KEY, headers=None, timeout=3600):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    all_headers = {"Authorization": key}
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        all_headers["Content-Type"] = "application/json"
    all_headers.update(headers or {})
    connection.request(method, path, body=body, headers=all_headers)
    response = connection.getresponse()
    text = response.read()
    connection.close()
    try:
        return response.status, json.loads(text)
    except ValueError:
        return response.status, text.decode(errors="replace")


def wait_ready(port, deadline=60):
    end = time.time() + deadline
    while time.time() < end:
        try:
            status, _ = request(port, "GET", "/health/ready", timeout=2)
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit("the node did not become ready")


def settle(pid, seconds=5):
    """Waits until memory stops moving, then returns it."""
    time.sleep(seconds)
    return rss(pid)


def bench_script(args, port, pid, workdir):
    script = os.path.join(workdir, "emit.py")
    with open(script, "w") as f:
        f.write(SCRIPT)
    os.chmod(script, 0o755)
    baseline = settle(pid)
    sampler = Sampler(pid)
    started = time.time()
    status, body = request(port, "PUT", "/api/v1/sources/bench-script", {
        "type": "script", "command": script, "args": [str(args.alerts)],
        "interval_secs": 86400, "timeout_secs": 86400, "memory_mb": 512,
        "max_lines_per_sec": 1000000,
    })
    assert status == 200, body
    while True:
        time.sleep(0.5)
        _, source = request(port, "GET", "/api/v1/sources/bench-script")
        if source.get("last_success") or source.get("last_error"):
            break
    elapsed = time.time() - started
    peak = sampler.stop()
    emitted_bytes = args.alerts * 200
    print(json.dumps({
        "bench": "script", "alerts_emitted": args.alerts,
        "output_bytes_approx": emitted_bytes,
        "alerts_stored": source.get("accepted"), "duplicates": source.get("duplicates"),
        "rejected": source.get("rejected"), "position": source.get("position"),
        "last_error": source.get("last_error"),
        "baseline_rss_mb": round(baseline / 2**20, 1),
        "peak_above_baseline_mb": round((peak - baseline) / 2**20, 1),
        "seconds": round(elapsed, 1),
        "alerts_per_sec": round(args.alerts / elapsed),
    }), flush=True)


def bench_csv(args, port, pid, workdir):
    path = os.path.join(workdir, "export.csv")
    with open(path, "w", newline="") as f:
        f.write("\ufeffDate,Sender,Header_From,Header_Return-Path,Recipients,Sender_IP_Address,"
                "Message_ID,Subject,Message_Size\r\n")
        for i in range(args.csv_rows):
            f.write(f"2026-12-04 10:00:00,s{i}@evil.example,s{i}@evil.example,s{i}@evil.example,"
                    f"\"u{i % 1000}@corp.example\",192.0.2.{i % 250},<csv{i}@bench.example>,"
                    f"\"Invoice, number {i}\",{1000 + i % 5000}\r\n")
    size = os.path.getsize(path)
    status, body = request(port, "PUT", "/api/v1/sources/bench-export", {"type": "search_export"})
    assert status == 200, body
    status, body = request(port, "POST", "/api/v1/sources/bench-export/credential")
    assert status == 200, body
    credential = body["credential"]
    baseline = settle(pid)
    sampler = Sampler(pid)
    started = time.time()
    with open(path, "rb") as f:
        status, answer = request(port, "POST", "/api/v1/sources/bench-export/push", body=f,
                                 key=credential,
                                 headers={"Content-Type": "text/csv",
                                          "Content-Length": str(size)})
    elapsed = time.time() - started
    peak = sampler.stop()
    assert status == 200, answer
    print(json.dumps({
        "bench": "csv", "rows": answer["rows"], "alerts": answer["alerts"],
        "bad_rows": answer["bad_rows"], "bytes": size, "seconds": round(elapsed, 1),
        "rows_per_sec": round(answer["rows"] / elapsed),
        "peak_above_baseline_mb": round((peak - baseline) / 2**20, 1),
    }), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=5_000_000)
    parser.add_argument("--csv-rows", type=int, default=1_000_000)
    parser.add_argument("--dir", default="/tmp/pullback-sources-bench")
    parser.add_argument("--bin", default=None)
    parser.add_argument("--only", choices=["script", "csv"], default=None)
    args = parser.parse_args()

    binary = args.bin
    if binary is None:
        target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
        subprocess.run(["cargo", "build", "--release", "--workspace"], cwd=ROOT, check=True)
        binary = os.path.join(target, "release", "pullback")
    shutil.rmtree(args.dir, ignore_errors=True)
    os.makedirs(args.dir)
    port = free_port()
    key_hash = subprocess.run(
        ["python3", "-c", f"import hashlib;print(hashlib.sha256({KEY!r}.encode()).hexdigest())"],
        capture_output=True, text=True, check=True).stdout.strip()
    config = os.path.join(args.dir, "pullback.toml")
    with open(config, "w") as f:
        f.write(f'[node]\ndata_dir = "{args.dir}/data"\nlisten = "127.0.0.1:{port}"\n\n'
                f'[[api_keys]]\nname = "bench"\nrole = "admin"\nsha256 = "{key_hash}"\n')
    log = open(os.path.join(args.dir, "server.log"), "w")
    server = subprocess.Popen([binary, "server", "--config", config], stdout=log, stderr=log,
                              env={**os.environ, "PULLBACK_LOG": "warn"})
    try:
        wait_ready(port)
        print(json.dumps({"machine": os.uname().machine, "cpus": os.cpu_count(),
                          "kernel": os.uname().release}), flush=True)
        if args.only in (None, "script"):
            bench_script(args, port, server.pid, args.dir)
        if args.only in (None, "csv"):
            bench_csv(args, port, server.pid, args.dir)
    finally:
        server.terminate()
        server.wait(timeout=60)


if __name__ == "__main__":
    main()
