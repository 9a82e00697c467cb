#!/usr/bin/env python3
"""Backups and restores of a store of several GB against `cp -r`, and the write latency a
three-node cluster sees while one of its nodes takes a backup.

    benches/backup.py [--dir /work/pullback-backup-bench] [--size-gib 5] [--cluster-size-gib 1]
                      [--only single|cluster] [--bin PATH] [--pushers 3] [--rate 50]
                      [--no-cold] [--wait-quiet SECONDS] [--min-free-gb 3] [--keep]

single (one node, plain HTTP on loopback):

1. builds the release binary (`cargo build --release --workspace --bin pullback`, unless --bin)
   and copies it into the work folder, so that other builds cannot change it under the run;
2. starts `pullback server` alone with a local backup target (`keep = 2`) in the work folder,
   and fills its store until `du -s <data_dir>/db` reaches --size-gib GiB: --pushers processes
   push batches of 1,000 alerts (`POST /api/v1/alerts`, about 1.7 MB a request, under the
   2 MiB body limit), each alert carrying 1,000 random bytes (base64) in an extra field that
   the node keeps in the alert's raw event, so that RocksDB's compression cannot shrink them;
3. times `cp -r <data_dir>/db` and then `sync`, warm (files read into the page cache first)
   and cold (`sync; echo 3 > /proc/sys/vm/drop_caches` first; needs root);
4. times a backup through the API (`POST /api/v1/backups`), cold and warm, following
   `GET /api/v1/backups/<id>` every 100 ms: the stage changes (checkpoint, writing,
   verifying, reading back) and started_at/finished_at give the phases, the node's log
   line "backup written" the end of the write; the node's IO and CPU are sampled every
   500 ms;
5. stops the node, removes its data, and times `pullback backup restore` into a fresh data
   folder (the end of its progress bar at 100 % "fetching" splits fetch from the rest),
   cold and warm, against `cp -r` + `sync` of the backup's folder.

cluster (`cluster/local up 3`, TLS):

6. adds a local backup target to each node's configuration and restarts the nodes one by one,
   fills the store through the leader (--cluster-batch alerts a push) until it holds
   --cluster-size-gib GiB of table files (the write-ahead log, which a checkpoint flushes, is
   not counted), then pushes one alert per request to the leader at --rate requests per
   second (open loop, 4 connections) and records each request's latency, while a follower
   and then the leader take a backup; prints p50/p99/max before (the 30 s before), during
   and after (the 30 s after) each backup, the 1 s buckets whose median exceeds twice the
   median before and those whose slowest request exceeds twice the p99 before, and a 5 s
   timeline.

Every result is a JSON line on standard output (also written to --results). The work folder
is removed at the end unless --keep. It needs about three times the store's size free on the
disk (store, backup, and the copy a backup reads back into the node's data folder); the run
stops and cleans up when less than --min-free-gb remain. Timed runs wait (up to
--wait-quiet seconds) until no compiler, cargo, other benchmark or test server has been seen
for 10 s, and report the most such processes seen while they ran (`foreign`). Loopback only; every process started is stopped by its pid.
"""

import argparse
import base64
import hashlib
import http.client
import json
import multiprocessing
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from datetime import datetime

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
KEY = "bench-backup-admin-key-3f9e21"
GIB = 1 << 30
RESULTS = []
# Processes that compete for the processors or the disk: builds, other benchmarks, test
# servers and browsers. The nodes of this run are `pullback-bench`, not `pullback`.
FOREIGN = {"rustc", "cargo", "cc1", "cc1plus", "cc", "c++", "ld", "ld.lld", "rust-lld", "lld",
           "clang", "clang++", "collect2", "throughput", "pullback", "chromium", "dovecot",
           "imap", "sshd", "etcd"}


def emit(record):
    RESULTS.append(record)
    print(json.dumps(record), flush=True)


def log(text):
    print(f"# {time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)


def parse_time(text):
    """RFC 3339 with up to nanoseconds, as the node writes it, to seconds since the epoch."""
    head, _, tail = text.rstrip("Z").partition(".")
    micros = (tail + "000000")[:6]
    return datetime.fromisoformat(f"{head}.{micros}+00:00").timestamp()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def du(path):
    """Bytes on disk under path, as `du -s --block-size=1` counts them."""
    out = subprocess.run(["du", "-s", "--block-size=1", path], capture_output=True, text=True)
    return int(out.stdout.split()[0]) if out.returncode == 0 else 0


def file_bytes(path):
    total, count = 0, 0
    for folder, _, files in os.walk(path):
        for name in files:
            total += os.path.getsize(os.path.join(folder, name))
            count += 1
    return total, count


def breakdown(db):
    """MB in the store's table files, write-ahead logs and the rest."""
    parts = {"sst_mb": 0, "wal_mb": 0, "other_mb": 0}
    for name in os.listdir(db):
        path = os.path.join(db, name)
        if not os.path.isfile(path):
            continue
        kind = "sst_mb" if name.endswith(".sst") else "wal_mb" if name.endswith(".log") else "other_mb"
        parts[kind] += os.path.getsize(path)
    return {k: round(v / 1e6) for k, v in parts.items()}


def drop_caches():
    subprocess.run(["sync"], check=True)
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def can_drop_caches():
    return os.geteuid() == 0 and os.access("/proc/sys/vm/drop_caches", os.W_OK)


def warm(path):
    """Writes out what is dirty, then reads every file under path so that it is in the page
    cache."""
    subprocess.run(["sync"], check=True)
    buf = bytearray(8 << 20)
    for folder, _, files in os.walk(path):
        for name in files:
            with open(os.path.join(folder, name), "rb", buffering=0) as f:
                while f.readinto(buf):
                    pass


def foreign_processes():
    n = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() in FOREIGN:
                    n += 1
        except OSError:
            pass
    return n


def wait_quiet(limit):
    """Waits until no compiler or cargo process has been seen for 10 s, for at most limit s."""
    if limit <= 0:
        return
    end = time.time() + limit
    quiet_since = time.time()
    while time.time() < end:
        if foreign_processes():
            quiet_since = time.time()
        elif time.time() - quiet_since >= 10:
            return
        time.sleep(0.5)
    log(f"other builds still running after {limit} s; measuring anyway")


class Sampler:
    """Every 500 ms: the pids' storage IO and CPU time, the machine's CPU split, and how many
    compiler processes run."""

    def __init__(self, pids):
        self.pids = pids
        self.samples = []
        self.running = True
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    @staticmethod
    def proc(pid):
        io = {}
        try:
            with open(f"/proc/{pid}/io") as f:
                for line in f:
                    k, v = line.split(":")
                    io[k] = int(v)
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return 0, 0, 0.0
        return io.get("read_bytes", 0), io.get("write_bytes", 0), cpu

    def run(self):
        while self.running:
            read = write = cpu = 0
            for pid in self.pids:
                r, w, c = self.proc(pid)
                read, write, cpu = read + r, write + w, cpu + c
            with open("/proc/stat") as f:
                parts = [int(x) for x in f.readline().split()[1:]]
            self.samples.append({"t": time.time(), "read": read, "write": write, "cpu": cpu,
                                 "busy": sum(parts[:3]) + sum(parts[5:8]), "idle": parts[3],
                                 "iowait": parts[4], "foreign": foreign_processes()})
            time.sleep(0.5)

    def stop(self):
        self.running = False
        self.thread.join()
        return self

    def between(self, start, end):
        """IO, CPU and machine figures from start to end (seconds since the epoch)."""
        inside = [s for s in self.samples if start - 0.5 <= s["t"] <= end + 0.5]
        if len(inside) < 2:
            return {}
        a, b = inside[0], inside[-1]
        seconds = max(b["t"] - a["t"], 1e-6)
        ticks = (b["busy"] - a["busy"]) + (b["idle"] - a["idle"]) + (b["iowait"] - a["iowait"])
        ticks = max(ticks, 1)
        return {
            "read_mb": round((b["read"] - a["read"]) / 1e6),
            "write_mb": round((b["write"] - a["write"]) / 1e6),
            "proc_cpu_pct": round(100 * (b["cpu"] - a["cpu"]) / seconds),
            "machine_busy_pct": round(100 * (b["busy"] - a["busy"]) / ticks),
            "machine_iowait_pct": round(100 * (b["iowait"] - a["iowait"]) / ticks),
            "foreign": max(s["foreign"] for s in inside),
        }


class Api:
    def __init__(self, port, key=KEY, cafile=None):
        self.port = port
        self.key = key
        self.cafile = cafile
        self.context = ssl.create_default_context(cafile=cafile) if cafile else None

    def connect(self, timeout=600):
        if self.context:
            return http.client.HTTPSConnection("127.0.0.1", self.port, context=self.context,
                                               timeout=timeout)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def call(self, method, path, body=None, connection=None, timeout=600):
        own = connection is None
        c = connection or self.connect(timeout)
        headers = {"Authorization": self.key}
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            c.request(method, path, body=data, headers=headers)
            response = c.getresponse()
            text = response.read()
        finally:
            if own:
                c.close()
        try:
            return response.status, json.loads(text)
        except ValueError:
            return response.status, text.decode(errors="replace")


def wait_ready(api, deadline=120):
    end = time.time() + deadline
    while time.time() < end:
        try:
            status, _ = api.call("GET", "/health/ready", timeout=2)
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit(f"the node on port {api.port} did not become ready")


# ---- filling a store ---------------------------------------------------------------------

def batch(worker, start, size, pad):
    alerts = []
    for i in range(start, start + size):
        alerts.append({
            "id": f"fill-{worker}-{i}",
            "message_id": f"<fill-{worker}-{i}@bench.example>",
            "recipients": [f"u{i % 5000}@corp.example"],
            "sender": "billing@evil.example",
            "subject": f"Invoice {i % 977} overdue",
            "time": "2026-12-04T10:00:00Z",
            "classification": "phish",
            "threats": [{"value": f"https://evil{i % 97}.example/l/{worker}/{i}", "type": "url"}],
            "notes": base64.b64encode(os.urandom(pad)).decode(),
        })
    return json.dumps({"source": "bench-fill", "alerts": alerts}).encode()


def pusher(port, key, cafile, worker, first, size, pad, stop, pushed, failures):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    api = Api(port, key, cafile)
    connection = api.connect()
    n = first
    while not stop.is_set():
        body = batch(worker, n, size, pad)
        try:
            status, answer = api.call("POST", "/api/v1/alerts", body, connection=connection)
        except (OSError, http.client.HTTPException):
            connection.close()
            connection = api.connect()
            time.sleep(0.5)
            continue
        if status != 200:
            with failures.get_lock():
                failures.value += 1
            print(f"push: {status} {str(answer)[:200]}", file=sys.stderr, flush=True)
            time.sleep(1)
            continue
        with pushed.get_lock():
            pushed.value += len(answer["alerts"])
        n += size
    connection.close()


def table_bytes(db):
    """Bytes in the store's table files: what a checkpoint holds once memtables are flushed,
    without the write-ahead log, which can be large before a flush."""
    return sum(os.path.getsize(os.path.join(db, n)) for n in os.listdir(db) if n.endswith(".sst"))


def fill(api, db_dir, target_bytes, pushers, pad, server_pids, size=1000, first_seq=0,
         measure=du):
    """Pushes until db_dir holds target_bytes (by measure: on disk by default) and stays
    there once compactions settle. Returns (alerts stored, seconds)."""
    stop = multiprocessing.Event()
    pushed = multiprocessing.Value("q", 0)
    failures = multiprocessing.Value("q", 0)
    started = time.time()
    round_no = 0
    while True:
        stop.clear()
        workers = [multiprocessing.Process(
            target=pusher,
            args=(api.port, api.key, api.cafile, w, first_seq + round_no * 10**8,
                  size, pad, stop, pushed, failures), daemon=True) for w in range(pushers)]
        for w in workers:
            w.start()
        last = time.time()
        while measure(db_dir) < target_bytes * 1.04:
            time.sleep(5)
            if time.time() - last >= 30:
                last = time.time()
                log(f"fill: {measure(db_dir) / GIB:.2f} GiB, {pushed.value} alerts, "
                    f"{pushed.value / (time.time() - started):.0f} alerts/s, "
                    f"{failures.value} refused pushes")
        stop.set()
        for w in workers:
            w.join()
        settle(server_pids, db_dir)
        if measure(db_dir) >= target_bytes:
            return pushed.value, time.time() - started
        round_no += 1


def settle(pids, path, seconds=120):
    """Waits until the node stops working (compactions) and path's size stays put."""
    end = time.time() + seconds
    before = sum(Sampler.proc(p)[2] for p in pids)
    size = du(path)
    while time.time() < end:
        time.sleep(5)
        now = sum(Sampler.proc(p)[2] for p in pids)
        new_size = du(path)
        if now - before < 0.25 and abs(new_size - size) < (64 << 20):
            return
        before, size = now, new_size


# ---- one node: backup, restore, cp -------------------------------------------------------

def timed(argv):
    started = time.time()
    subprocess.run(argv, check=True)
    return time.time() - started


def cp_run(source, dest, cold, quiet):
    wait_quiet(quiet)
    if cold:
        drop_caches()
    else:
        warm(source)
    sampler = Sampler([])
    started = time.time()
    copy = timed(["cp", "-r", source, dest])
    sync = timed(["sync"])
    sampler.stop()
    figures = sampler.between(started, time.time())
    shutil.rmtree(dest)
    subprocess.run(["sync"])
    return {"cp_s": round(copy, 2), "sync_s": round(sync, 2), "cp_sync_s": round(copy + sync, 2),
            "foreign": figures.get("foreign", 0)}


def backup_run(api, target, pid, node_log, quiet, cold, warm_dir):
    wait_quiet(quiet)
    if cold:
        drop_caches()
    else:
        warm(warm_dir)
    sampler = Sampler([pid])
    log_offset = os.path.getsize(node_log)
    posted = time.time()
    status, answer = api.call("POST", "/api/v1/backups", {"target": target})
    assert status == 202, (status, answer)
    backup_id = answer["id"]
    connection = api.connect()
    seen = {}
    while True:
        status, record = api.call("GET", f"/api/v1/backups/{backup_id}", connection=connection)
        now = time.time()
        if status == 200:
            seen.setdefault(record["stage"], now)
            if record["state"] != "running":
                break
        time.sleep(0.1)
    connection.close()
    time.sleep(0.6)
    sampler.stop()
    if record["state"] != "verified":
        sys.exit(f"backup {backup_id} ended {record['state']}: {record.get('error')}")
    started, finished = parse_time(record["started_at"]), parse_time(record["finished_at"])
    written = None
    extra = []
    with open(node_log, errors="replace") as f:
        f.seek(log_offset)
        for line in f:
            if "backup written" in line:
                written = parse_time(line.split()[0])
            elif re.match(r"^copy(\+sync)? ", line):
                extra.append(line.strip())
    writing = seen.get("writing", started)
    verifying = seen.get("verifying", finished)
    reading_back = seen.get("reading back")
    write_end = written or verifying
    phases = {
        "checkpoint_s": round(writing - started, 2),
        "write_s": round(write_end - writing, 2),
        "verify_s": round((reading_back or finished) - write_end, 2),
        "read_back_and_open_s": round(finished - reading_back, 2) if reading_back else None,
    }
    return {
        "id": backup_id,
        "alerts": record["counts"].get("alert"),
        "total_bytes": record["total_bytes"],
        "wall_s": round(finished - started, 2),
        "to_written_s": round(write_end - started, 2),
        **phases,
        "api_answer_s": round(started - posted, 2),
        "io_checkpoint": sampler.between(started, writing),
        "io_write": sampler.between(writing, write_end),
        "io_verify": sampler.between(write_end, reading_back or finished),
        "io_read_back": sampler.between(reading_back, finished) if reading_back else {},
        "node_log": extra,
    }


def restore_run(binary, config, target, backup_id, data_dir, quiet, cold, warm_dir):
    wait_quiet(quiet)
    if cold:
        drop_caches()
    else:
        warm(warm_dir)
    started = time.time()
    process = subprocess.Popen(
        [binary, "backup", "restore", "--config", config, "--target", target, "--id", backup_id],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    sampler = Sampler([process.pid])
    fetched = None
    tail = b""
    # The progress bar redraws with \r; the first 100 % "fetching" ends the fetch.
    while True:
        chunk = process.stderr.read1(4096)
        if not chunk:
            break
        tail = (tail + chunk)[-4096:]
        if fetched is None and re.search(rb"100% fetching", tail):
            fetched = time.time()
    out = process.stdout.read().decode(errors="replace")
    code = process.wait()
    ended = time.time()
    sampler.stop()
    if code != 0:
        sys.exit(f"restore failed ({code}): {out}\n{tail.decode(errors='replace')}")
    restored = du(os.path.join(data_dir, "db"))
    shutil.rmtree(data_dir)
    subprocess.run(["sync"])
    fetched = fetched or ended
    return {
        "wall_s": round(ended - started, 2),
        "fetch_s": round(fetched - started, 2),
        "open_copy_forget_s": round(ended - fetched, 2),
        "restored_db_bytes": restored,
        "io_fetch": sampler.between(started, fetched),
        "io_rest": sampler.between(fetched, ended),
        "said": out.strip().splitlines()[0] if out.strip() else "",
    }


def node_config(path, data_dir, port, backups, store_memory_mb):
    key_hash = hashlib.sha256(KEY.encode()).hexdigest()
    with open(path, "w") as f:
        f.write(f'[node]\ndata_dir = "{data_dir}"\nlisten = "127.0.0.1:{port}"\n'
                f'store_memory_mb = {store_memory_mb}\n\n'
                f'[[api_keys]]\nname = "bench"\nrole = "admin"\nsha256 = "{key_hash}"\n\n'
                f'[[backup_targets]]\nname = "local"\nkeep = 2\n'
                f'target = {{ type = "local", path = "{backups}" }}\n')


def single(args, binary):
    work = os.path.join(args.dir, "single")
    os.makedirs(work)
    data = os.path.join(work, "data")
    db = os.path.join(data, "db")
    backups = os.path.join(work, "backups")
    os.makedirs(backups)
    port = free_port()
    config = os.path.join(work, "pullback.toml")
    node_config(config, data, port, backups, args.store_memory_mb)
    node_log = os.path.join(work, "server.log")
    with open(node_log, "w") as logfile:
        server = subprocess.Popen([binary, "server", "--config", config], stdout=logfile,
                                  stderr=logfile, env={**os.environ, "PULLBACK_LOG": "info"})
    api = Api(port)
    cold_too = not args.no_cold and can_drop_caches()
    if not args.no_cold and not cold_too:
        log("cannot drop the page cache (not root?): warm runs only")
    try:
        wait_ready(api)
        log(f"filling the store to {args.size_gib} GiB")
        alerts, seconds = fill(api, db, args.size_gib * GIB, args.pushers, args.pad, [server.pid])
        size, files = file_bytes(db)
        emit({"bench": "fill", "alerts": alerts, "seconds": round(seconds),
              "alerts_per_s": round(alerts / seconds), "db_du_bytes": du(db),
              "db_file_bytes": size, "db_files": files, **breakdown(db),
              "sst_files": len([n for n in os.listdir(db) if n.endswith(".sst")])})
        modes = (["warm", "cold"] if cold_too else ["warm"])
        for mode in modes:
            for _ in range(args.repeat):
                log(f"cp -r of the store, {mode}")
                emit({"bench": "cp_store", "cache": mode, "bytes": size,
                      **cp_run(db, os.path.join(work, "cp-store"), mode == "cold", args.wait_quiet)})
        last = None
        for mode in (["cold", "warm"] if cold_too else ["warm"]):
            for _ in range(args.repeat):
                if last:
                    shutil.rmtree(os.path.join(backups, last))
                log(f"backup through the API, {mode}")
                before = {"db_du_bytes": du(db), **breakdown(db)}
                result = backup_run(api, "local", server.pid, node_log, args.wait_quiet,
                                    mode == "cold", db)
                last = result["id"]
                emit({"bench": "backup", "cache": mode, **before, **result})
    finally:
        server.terminate()
        server.wait(timeout=120)
    # The node is stopped; its store is no longer needed, and the restores need the room.
    shutil.rmtree(data)
    backup_dir = os.path.join(backups, last)
    restore_data = os.path.join(work, "restored")
    restore_config = os.path.join(work, "restore.toml")
    node_config(restore_config, restore_data, free_port(), backups, args.store_memory_mb)
    for mode in (["cold", "warm"] if cold_too else ["warm"]):
        for _ in range(args.repeat):
            log(f"pullback backup restore, {mode}")
            emit({"bench": "restore", "cache": mode, "id": last,
                  **restore_run(binary, restore_config, "local", last, restore_data,
                                args.wait_quiet, mode == "cold", backup_dir)})
            log(f"cp -r of the backup, {mode}")
            emit({"bench": "cp_backup", "cache": mode, "bytes": file_bytes(backup_dir)[0],
                  **cp_run(backup_dir, os.path.join(work, "cp-backup"), mode == "cold",
                           args.wait_quiet)})
    shutil.rmtree(work)


# ---- three nodes: write latency during a backup ------------------------------------------

class LatencyPusher:
    """Pushes one small alert per request at a fixed rate, open loop: request i is due at
    start + i / rate, sent by one of four connections; its latency runs from when it was
    sent (lateness, when a connection was still busy, is recorded apart)."""

    def __init__(self, api, rate, connections=4):
        self.api = api
        self.rate = rate
        self.records = []  # (due, sent, latency, status)
        self.lock = threading.Lock()
        self.running = True
        self.start = time.time() + 0.5
        self.threads = [threading.Thread(target=self.run, args=(k, connections), daemon=True)
                        for k in range(connections)]
        for t in self.threads:
            t.start()

    def run(self, k, n):
        connection = self.api.connect(timeout=30)
        i = k
        while self.running:
            due = self.start + i / self.rate
            delay = due - time.time()
            if delay > 0:
                time.sleep(delay)
            body = {"source": "bench-latency", "alerts": [{
                "id": f"lat-{i}", "message_id": f"<lat-{i}@bench.example>",
                "recipients": [f"u{i % 500}@corp.example"], "subject": "latency probe",
                "time": "2026-12-04T10:00:00Z", "classification": "phish"}]}
            sent = time.time()
            try:
                status, _ = self.api.call("POST", "/api/v1/alerts", body, connection=connection)
            except (OSError, http.client.HTTPException):
                status = 0
                connection.close()
                connection = self.api.connect(timeout=30)
            done = time.time()
            with self.lock:
                self.records.append((due, sent, done - sent, status))
            i += n
        connection.close()

    def stop(self):
        self.running = False
        for t in self.threads:
            t.join()


def percentile(values, p):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def window(records, start, end):
    inside = [r for r in records if start <= r[1] < end]
    ok = [r[2] * 1000 for r in inside if r[3] == 200]
    return {
        "requests": len(inside), "errors": len(inside) - len(ok),
        "p50_ms": round(percentile(ok, 50), 2) if ok else None,
        "p99_ms": round(percentile(ok, 99), 2) if ok else None,
        "max_ms": round(max(ok), 1) if ok else None,
        "late_ms_max": round(max((r[1] - r[0]) * 1000 for r in inside), 1) if inside else None,
    }


def raised_seconds(records, start, end, median_limit_ms, max_limit_ms):
    """The 1 s buckets from start to end whose median request took more than
    median_limit_ms (typical writes slowed), and those whose slowest one took more than
    max_limit_ms or failed (tail spikes), as offsets from start."""
    typical, spikes = [], []
    t = start
    while t < end:
        inside = [r for r in records if t <= r[1] < t + 1]
        ok = [r[2] * 1000 for r in inside if r[3] == 200]
        if ok and percentile(ok, 50) > median_limit_ms:
            typical.append(round(t - start))
        if any(r[3] != 200 for r in inside) or (ok and max(ok) > max_limit_ms):
            spikes.append(round(t - start))
        t += 1
    return typical, spikes


def cluster(args, binary):
    work = os.path.join(args.dir, "cluster")
    local = os.path.join(ROOT, "cluster", "local")
    env = {**os.environ, "PULLBACK_BIN": binary, "PULLBACK_LOCAL_BASE_PORT": str(args.base_port)}
    subprocess.run([local, "up", "3", work], check=True, env=env)
    nodes = [1, 2, 3]
    started = []
    try:
        key = open(os.path.join(work, "admin.key")).read().strip()
        cafile = os.path.join(work, "ca.crt")
        port = {k: int(open(os.path.join(work, f"node{k}", "api")).read().rsplit(":", 1)[1])
                for k in nodes}
        apis = {k: Api(port[k], key, cafile) for k in nodes}
        # A backup target on every node: append it and restart the nodes one by one.
        for k in nodes:
            backups = os.path.join(work, f"backups{k}")
            os.makedirs(backups)
            with open(os.path.join(work, f"node{k}", "pullback.toml"), "a") as f:
                f.write(f'\n[[backup_targets]]\nname = "local"\nkeep = 2\n'
                        f'target = {{ type = "local", path = "{backups}" }}\n')
            pidfile = os.path.join(work, f"node{k}", "pid")
            pid = int(open(pidfile).read())
            os.kill(pid, signal.SIGTERM)
            for _ in range(600):
                if not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z":
                    break
                time.sleep(0.1)
            logfile = open(os.path.join(work, f"node{k}", "log"), "a")
            process = subprocess.Popen(
                [binary, "server", "--config", os.path.join(work, f"node{k}", "pullback.toml")],
                stdout=logfile, stderr=logfile, stdin=subprocess.DEVNULL,
                env={**os.environ, "PULLBACK_LOG": "info,openraft=warn"})
            started.append(process)
            with open(pidfile, "w") as f:
                f.write(str(process.pid))
            wait_ready(apis[k])
            time.sleep(2)

        def leader():
            for _ in range(300):
                for k in nodes:
                    try:
                        status, s = apis[k].call("GET", "/api/v1/status", timeout=2)
                    except OSError:
                        continue
                    if status == 200 and s.get("state") == "leader":
                        return k
                time.sleep(0.2)
            sys.exit("no leader")

        lead = leader()
        pids = {k: int(open(os.path.join(work, f"node{k}", "pid")).read()) for k in nodes}
        db = os.path.join(work, f"node{lead}", "data", "db")
        log(f"cluster: leader is node {lead}; filling to {args.cluster_size_gib} GiB")
        alerts, seconds = fill(apis[lead], db, args.cluster_size_gib * GIB, args.pushers,
                               args.pad, list(pids.values()), size=args.cluster_batch,
                               measure=table_bytes)
        emit({"bench": "cluster_fill", "alerts": alerts, "seconds": round(seconds),
              "db_du_bytes": {k: du(os.path.join(work, f"node{k}", "data", "db")) for k in nodes},
              "leader_db": breakdown(db)})
        lead = leader()
        follower = next(k for k in nodes if k != lead)
        wait_quiet(args.wait_quiet)
        sampler = Sampler(list(pids.values()))
        probe = LatencyPusher(apis[lead], args.rate)
        runs = []
        try:
            time.sleep(30)
            for role, k in (("follower", follower), ("leader", lead)):
                log(f"cluster: backup on the {role}, node {k}")
                status, answer = apis[k].call("POST", "/api/v1/backups", {"target": "local"})
                assert status == 202, (status, answer)
                backup_id = answer["id"]
                while True:
                    time.sleep(0.2)
                    status, record = apis[k].call("GET", f"/api/v1/backups/{backup_id}")
                    if status == 200 and record["state"] != "running":
                        break
                if record["state"] != "verified":
                    sys.exit(f"backup {backup_id} on node {k}: {record}")
                runs.append((role, k, record))
                time.sleep(30)
        finally:
            probe.stop()
            sampler.stop()
        records = probe.records
        for role, k, record in runs:
            start, end = parse_time(record["started_at"]), parse_time(record["finished_at"])
            before = window(records, start - 30, start)
            typical, spikes = raised_seconds(records, start, end + 30, 2 * before["p50_ms"],
                                             2 * before["p99_ms"])
            since_end = lambda seconds: round(max(seconds) - (end - start), 1) if seconds else None
            emit({"bench": "cluster_backup", "on": role, "node": k, "leader": lead,
                  "rate_per_s": args.rate, "total_bytes": record["total_bytes"],
                  "alerts": record["counts"].get("alert"), "backup_s": round(end - start, 1),
                  "before": before, "during": window(records, start, end),
                  "after": window(records, end, end + 30),
                  "median_raised_s": typical, "median_last_after_end_s": since_end(typical),
                  "spike_limit_ms": round(2 * before["p99_ms"], 1), "spike_s": spikes,
                  "spike_last_after_end_s": since_end(spikes),
                  "machine": sampler.between(start, end)})
            timeline = []
            t = start - 10
            while t < end + 30:
                w = window(records, t, t + 5)
                timeline.append([round(t - start), w["p50_ms"], w["p99_ms"], w["errors"]])
                t += 5
            emit({"bench": "cluster_timeline", "on": role,
                  "columns": ["from_start_s", "p50_ms", "p99_ms", "errors"], "rows": timeline})
    finally:
        for process in started:
            if process.poll() is None:
                process.terminate()
        for process in started:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for k in (1, 2, 3):
            pidfile = os.path.join(work, f"node{k}", "pid")
            if os.path.exists(pidfile) and int(open(pidfile).read()) in [p.pid for p in started]:
                os.remove(pidfile)
        subprocess.run([local, "down", work], check=False, env=env)
        shutil.rmtree(work, ignore_errors=True)


def disk_guard(path, min_free_gb):
    """Interrupts the run (which then cleans up) when the disk is nearly full: the disk is
    shared with other work."""
    while True:
        time.sleep(1)
        try:
            free = shutil.disk_usage(path).free
        except OSError:
            return
        if free < min_free_gb * 1e9:
            log(f"only {free / 1e9:.1f} GB free on the disk: stopping")
            os.kill(os.getpid(), signal.SIGINT)
            return


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="/work/pullback-backup-bench")
    parser.add_argument("--size-gib", type=float, default=5)
    parser.add_argument("--cluster-size-gib", type=float, default=1)
    parser.add_argument("--only", choices=["single", "cluster"], default=None)
    parser.add_argument("--bin", default=None)
    parser.add_argument("--pushers", type=int, default=3)
    parser.add_argument("--pad", type=int, default=1000,
                        help="random bytes in each filled alert (base64 in the request)")
    parser.add_argument("--store-memory-mb", type=int, default=12)
    parser.add_argument("--cluster-batch", type=int, default=100,
                        help="alerts per push while filling the cluster (1,000 alerts of 1.7 KB "
                             "make Raft entries that can miss the 100 ms append timeout)")
    parser.add_argument("--rate", type=float, default=50)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--base-port", type=int, default=19600)
    parser.add_argument("--no-cold", action="store_true")
    parser.add_argument("--wait-quiet", type=float, default=0,
                        help="wait up to this many seconds for other builds to end before each timed run")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--min-free-gb", type=float, default=3,
                        help="stop and clean up when the disk has less free than this")
    parser.add_argument("--results", default=None)
    args = parser.parse_args()

    if os.path.exists(args.dir):
        sys.exit(f"{args.dir} exists; remove it first")
    os.makedirs(args.dir)
    guard = threading.Thread(target=disk_guard, args=(args.dir, args.min_free_gb), daemon=True)
    guard.start()
    try:
        source = args.bin
        if source is None:
            subprocess.run(["bash", "-c", "source scripts/env.sh && "
                            "cargo build --release --workspace --bin pullback"],
                           cwd=ROOT, check=True)
            target = subprocess.run(["bash", "-c", "source scripts/env.sh && echo $CARGO_TARGET_DIR"],
                                    cwd=ROOT, capture_output=True, text=True).stdout.strip()
            source = os.path.join(target, "release", "pullback")
        binary = os.path.join(args.dir, "pullback-bench")
        shutil.copy2(source, binary)
        built = {}
        if args.bin is None:
            head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                  capture_output=True, text=True).stdout.strip()
            dirty = subprocess.run(["git", "status", "--short", "--untracked-files=no", "crates"],
                                   cwd=ROOT, capture_output=True, text=True).stdout.split("\n")
            built = {"built_at_commit": head,
                     "changed_crate_files": [d.strip() for d in dirty if d.strip()]}
        free = shutil.disk_usage(args.dir)
        emit({"bench": "machine", "cpus": os.cpu_count(), "kernel": os.uname().release,
              "binary": source, **built,
              "free_gb": round(free.free / 1e9, 1), "mem_gb": round(
                  os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9, 1)})
        if args.only in (None, "single"):
            single(args, binary)
        if args.only in (None, "cluster"):
            cluster(args, binary)
    finally:
        if args.results:
            with open(args.results, "w") as f:
                json.dump(RESULTS, f, indent=1)
        if not args.keep:
            shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
