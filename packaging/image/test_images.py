#!/usr/bin/env python3
"""The appliance image tests (run by packaging/test-images, which installs what they need).

Every VM runs under QEMU's software emulation with OVMF, on a copy-on-write overlay of the
image under test, with user networking restricted to the VM itself (`restrict=on`: the
guest reaches nothing outside, so no test can ever touch a metadata address) and the API
forwarded to a port on 127.0.0.1 only. The serial console is a Unix socket this script
reads (and types into, to log in as root like an administrator would).
"""

import argparse
import hashlib
import http.client
import json
import os
import re
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import tarfile
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
BUILD = ROOT / "packaging/build-image"
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
MIB = 1024 * 1024
BOOT_TIMEOUT = 600
TIMINGS = []


def log(message):
    print(f"test-images: {message}", file=sys.stderr, flush=True)


class Failure(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Failure(message)


def step(name):
    """Times a step; the timings are printed at the end."""

    class Step:
        def __enter__(self):
            self.t0 = time.monotonic()
            log(f"{name}...")

        def __exit__(self, kind, *_):
            took = time.monotonic() - self.t0
            TIMINGS.append((name, took))
            if kind is None:
                log(f"{name}: ok ({took:.0f} s)")

    return Step()


def run(*args, **kwargs):
    kwargs.setdefault("check", True)
    return subprocess.run([str(a) for a in args], **kwargs)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# Building what the tests need.


def build(args, out, version, *extra):
    if args.reuse_images and (out / f"pullback-{version}.build.json").exists():
        log(f"  reusing the images in {out}")
        return
    run(BUILD, "--binary", args.binary, "--out", out, "--version", version,
        "--signing-key", args.keys / "release.pem", *extra)


def make_keys(folder):
    folder.mkdir(parents=True, exist_ok=True)
    for name in ["release", "stranger"]:
        key = folder / f"{name}.pem"
        if not key.exists():
            run("openssl", "genpkey", "-algorithm", "ed25519", "-out", key)
    return folder


def img_members(path):
    with tarfile.open(path) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]


def write_img(path, members):
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, __import__("io").BytesIO(data))


def bad_images(good, keys, folder):
    """Images an appliance must refuse: each is the good one spoiled in one way."""
    members = img_members(good)
    bad = {}

    tampered = [(n, bytearray(d)) for n, d in members]
    kernel = next(d for n, d in tampered if n == "vmlinuz")
    kernel[len(kernel) // 2] ^= 0xFF
    bad["tampered"] = ([(n, bytes(d)) for n, d in tampered], "hash check failed")

    manifest = dict(members)["manifest.json"]
    (folder / "manifest.json").write_bytes(manifest)
    run("openssl", "pkeyutl", "-sign", "-inkey", keys / "stranger.pem", "-rawin",
        "-in", folder / "manifest.json", "-out", folder / "stranger.sig")
    stranger = [(n, (folder / "stranger.sig").read_bytes() if n == "manifest.sig" else d)
                for n, d in members]
    bad["other-key"] = (stranger, "signature check failed")

    paths = {}
    for name, (content, words) in bad.items():
        paths[name] = (folder / f"{name}.img", words)
        write_img(paths[name][0], content)
    truncated = folder / "truncated.img"
    with open(good, "rb") as source, open(truncated, "wb") as out:
        out.write(source.read(8 * MIB))
    paths["truncated"] = (truncated, "truncated")
    return paths


def config_disk(path, answers):
    """A small FAT disk labelled PULLBACKCFG holding the first-boot answers."""
    folder = path.with_suffix(".d")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pullback-firstboot.toml").write_text(answers)
    if path.exists():
        path.unlink()
    run("mkfs.vfat", "-n", "PULLBACKCFG", "-C", path, 4096, stdout=subprocess.DEVNULL)
    run("mcopy", "-i", path, folder / "pullback-firstboot.toml", "::/")
    return path


def files_disk(path, files):
    """An ext4 disk with the given files at its root (the guest mounts it)."""
    folder = path.with_suffix(".d")
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for f in files:
        os.link(f, folder / f.name)
    size = sum(f.stat().st_size for f in files) + 64 * MIB
    if path.exists():
        path.unlink()
    run("truncate", "-s", size, path)
    run("mkfs.ext4", "-q", "-F", "-d", folder, "-L", "upgrades", path)
    shutil.rmtree(folder)
    return path


# ---------------------------------------------------------------------------------------------
# A VM with a serial console this script reads and types into.


class Vm:
    def __init__(self, name, work, disk, disk_format, drives=(), api_port=None):
        self.name = name
        self.dir = work / f"vm-{name}"
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True)
        overlay = self.dir / "disk.qcow2"
        run("qemu-img", "create", "-q", "-f", "qcow2", "-F", disk_format, "-b", disk, overlay)
        shutil.copy(OVMF_VARS, self.dir / "vars.fd")
        self.socket_path = self.dir / "serial.sock"
        self.monitor_path = self.dir / "monitor.sock"
        self.log_path = self.dir / "serial.log"
        self.api_port = api_port
        net = "user,id=n0,restrict=on"
        if api_port:
            net += f",hostfwd=tcp:127.0.0.1:{api_port}-:443"
        command = [
            "qemu-system-x86_64", "-accel", "tcg", "-machine", "q35", "-m", "1536",
            "-smp", "2", "-display", "none", "-nodefaults",
            "-monitor", f"unix:{self.monitor_path},server=on,wait=off",
            "-drive", f"if=pflash,format=raw,readonly=on,file={OVMF_CODE}",
            "-drive", f"if=pflash,format=raw,file={self.dir / 'vars.fd'}",
            # The image's disk is the only one the firmware boots from.
            "-drive", f"id=root,file={overlay},if=none,format=qcow2",
            "-device", "virtio-blk-pci,drive=root,bootindex=0",
            "-netdev", net, "-device", "virtio-net-pci,netdev=n0",
            "-chardev", f"socket,id=s0,path={self.socket_path},server=on,wait=off",
            "-serial", "chardev:s0",
        ]
        for number, (drive, serial) in enumerate(drives):
            command += ["-drive", f"id=d{number},file={drive},if=none,format=raw,readonly=on",
                        "-device", f"virtio-blk-pci,drive=d{number},serial={serial}"]
        self.output = ""
        self.lock = threading.Condition()
        self.process = subprocess.Popen(command, stdout=open(self.dir / "qemu.log", "w"),
                                        stderr=subprocess.STDOUT)
        self.serial = self._connect()
        threading.Thread(target=self._read, daemon=True).start()
        self.started = time.monotonic()

    def _connect(self):
        deadline = time.monotonic() + 30
        while True:
            try:
                s = socket.socket(socket.AF_UNIX)
                s.connect(str(self.socket_path))
                return s
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise Failure(f"{self.name}: QEMU did not start (see {self.dir}/qemu.log)")
                time.sleep(0.2)

    def _read(self):
        with open(self.log_path, "wb") as log_file:
            while True:
                try:
                    data = self.serial.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                log_file.write(data)
                log_file.flush()
                with self.lock:
                    self.output += data.decode("utf-8", "replace")
                    self.lock.notify_all()

    def mark(self):
        """A position in the output; waits look only after it."""
        with self.lock:
            return len(self.output)

    def wait_for(self, pattern, timeout=BOOT_TIMEOUT, since=0):
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        with self.lock:
            while True:
                found = regex.search(self.output, since)
                if found:
                    return found
                left = deadline - time.monotonic()
                if left <= 0 or self.process.poll() is not None:
                    tail = self.output[-3000:]
                    state = self.cpu_state()
                    raise Failure(f"{self.name}: no {pattern!r} on the console within "
                                  f"{timeout} s (log: {self.log_path}); last output:\n{tail}\n"
                                  f"CPU state when it gave up:\n{state}")
                self.lock.wait(min(left, 1))

    def type(self, text):
        self.serial.sendall(text.encode())

    def cpu_state(self):
        """What the VM is doing, from QEMU's monitor: where a silent hang is spinning."""
        if self.process.poll() is not None:
            return f"QEMU exited with status {self.process.returncode}"
        try:
            monitor = socket.socket(socket.AF_UNIX)
            monitor.settimeout(5)
            monitor.connect(str(self.monitor_path))
            replies = []
            for command in ["info status", "info registers", "x/6i $pc", "info registers",
                            "x/6i $pc"]:
                monitor.sendall(command.encode() + b"\n")
                time.sleep(0.5)
                replies.append(monitor.recv(65536).decode("utf-8", "replace"))
            monitor.close()
        except OSError as e:
            return f"(the monitor did not answer: {e})"
        text = "".join(replies)
        (self.dir / "monitor.txt").write_text(text)
        return text[-4000:]

    def login(self, password):
        since = self.mark()
        self.type("\n")
        self.wait_for(r"login: ", since=since, timeout=120)
        since = self.mark()
        self.type("root\n")
        self.wait_for(r"Password: ", since=since, timeout=60)
        since = self.mark()
        self.type(password + "\n")
        self.wait_for(r"# ", since=since, timeout=60)
        # No prompt and no echo: what a command prints is all that comes back.
        self.shell("export PS1='' PS2='' TERM=dumb; stty -echo cols 200")

    def shell(self, command, timeout=600):
        """Runs a shell command on the console; returns (status, output)."""
        token = secrets.token_hex(4)
        since = self.mark()
        self.type(f"{command}; echo \"__{token}_$?__\"\n")
        found = self.wait_for(rf"__{token}_(\d+)__", timeout=timeout, since=since)
        with self.lock:
            output = self.output[since:found.start()]
        return int(found.group(1)), output.replace("\r", "").strip()

    def stop(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.serial.close()


# ---------------------------------------------------------------------------------------------
# The node's API through the forwarded port.


class Api:
    def __init__(self, port, key):
        self.port = port
        self.key = key
        # The node's certificate is issued by its own cluster CA for its own addresses; this
        # is a VM on this machine's loopback.
        self.context = ssl.create_default_context()
        self.context.check_hostname = False
        self.context.verify_mode = ssl.CERT_NONE

    def request(self, method, path, body=None):
        connection = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=30,
                                                 context=self.context)
        headers = {"Authorization": self.key}
        if body is not None:
            body = json.dumps(body)
            headers["Content-Type"] = "application/json"
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        data = response.read()
        connection.close()
        return response.status, data

    def upload(self, path, file):
        """POSTs a file as the body, as the web UI's upgrade form does."""
        connection = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=600,
                                                 context=self.context)
        headers = {"Authorization": self.key, "Content-Type": "application/octet-stream",
                   "Content-Length": str(file.stat().st_size)}
        with open(file, "rb") as body:
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
        connection.close()
        return response.status, data

    def upgrade_result(self, states, timeout=300):
        """Waits until the last uploaded upgrade reaches one of `states`; returns it."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                status, data = self.request("GET", "/api/v1/appliance/upgrade")
                check(status == 200, f"GET /api/v1/appliance/upgrade answered {status}: {data!r}")
                last = json.loads(data).get("last")
                if last and last["state"] in states:
                    return last
            except (OSError, http.client.HTTPException) as e:
                last = repr(e)
            time.sleep(2)
        raise Failure(f"the uploaded upgrade never reached {states}: last {last}")

    def wait_ready(self, timeout=BOOT_TIMEOUT):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                status, data = self.request("GET", "/health/ready")
                if status == 200:
                    return
                last = f"{status} {data[:100]!r}"
            except (OSError, http.client.HTTPException) as e:
                last = repr(e)
            time.sleep(2)
        raise Failure(f"/health/ready never answered 200 through 127.0.0.1:{self.port}: {last}")

    def alert_subjects(self):
        status, data = self.request("GET", "/api/v1/alerts?limit=100")
        check(status == 200, f"GET /api/v1/alerts answered {status}: {data[:200]!r}")
        text = data.decode()
        return text


# ---------------------------------------------------------------------------------------------
# The tests.


def answers_text(password, key_sha256):
    return (
        'hostname = "pbtest"\n'
        '[network]\nmode = "dhcp"\n'
        '[admin]\n'
        f'password = "{password}"\n'
        '[cluster]\nmode = "new"\nnode_id = 1\n'
        '[[api_keys]]\nname = "test"\nrole = "admin"\n'
        f'sha256 = "{key_sha256}"\n'
    )


def check_ova(ova, raw):
    with tarfile.open(ova) as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        check(names[0].endswith(".ovf"), f"the OVA's first member is {names[0]}, not the OVF")
        check(names[1].endswith(".mf"), f"the OVA's second member is {names[1]}, not the manifest")
        check(len(names) == 3 and names[2].endswith(".vmdk"), f"OVA members: {names}")
        contents = {m.name: tar.extractfile(m).read() for m in members[:2]}
        vmdk_path = ova.parent / names[2]
        with tar.extractfile(members[2]) as source, open(vmdk_path, "wb") as out:
            shutil.copyfileobj(source, out, 4 * MIB)
    manifest = contents[names[1]].decode()
    for line in manifest.splitlines():
        found = re.fullmatch(r"SHA1\((.+)\)= ([0-9a-f]{40})", line)
        check(found, f"manifest line {line!r} is not SHA1(name)= hex")
        name, digest = found.groups()
        data_hash = (hashlib.sha1(contents[name]).hexdigest() if name in contents
                     else sha1_file(vmdk_path))
        check(data_hash == digest, f"the manifest's SHA-1 of {name} is wrong")
    check(len(manifest.splitlines()) == 2, "the manifest lists the OVF and the VMDK")

    ovf = ET.fromstring(contents[names[0]])
    ns = {"ovf": "http://schemas.dmtf.org/ovf/envelope/1",
          "vssd": "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData",
          "rasd": "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData",
          "vmw": "http://www.vmware.com/schema/ovf"}
    system_type = ovf.find(".//vssd:VirtualSystemType", ns).text
    check(system_type == "vmx-11", f"virtual hardware {system_type}, not vmx-11")
    items = {i.find("rasd:ResourceType", ns).text: i for i in ovf.findall(".//ovf:Item", ns)}
    check(items["3"].find("rasd:VirtualQuantity", ns).text == "2", "not 2 vCPU")
    check(items["4"].find("rasd:VirtualQuantity", ns).text == "8192", "not 8 GB of memory")
    firmware = [c.get(f"{{{ns['vmw']}}}value") for c in ovf.findall(".//vmw:Config", ns)
                if c.get(f"{{{ns['vmw']}}}key") == "firmware"]
    check(firmware == ["efi"], f"firmware {firmware}, not efi")
    file_ref = ovf.find(".//ovf:References/ovf:File", ns)
    check(file_ref.get(f"{{{ns['ovf']}}}href") == names[2], "the OVF names another disk file")
    check(int(file_ref.get(f"{{{ns['ovf']}}}size")) == vmdk_path.stat().st_size,
          "the OVF's disk size is wrong")

    info = json.loads(run("qemu-img", "info", "--output=json", vmdk_path,
                          capture_output=True, text=True).stdout)
    check(info["format"] == "vmdk", f"qemu-img reads the disk as {info['format']}")
    check(info.get("format-specific", {}).get("data", {}).get("create-type") == "streamOptimized",
          "the VMDK is not streamOptimized")
    same = run("qemu-img", "compare", "-f", "vmdk", "-F", "raw", vmdk_path, raw,
               capture_output=True, text=True, check=False)
    check(same.returncode == 0, f"the VMDK's content differs from the raw disk: {same.stdout}")
    return vmdk_path


def sha1_file(path):
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        while chunk := f.read(4 * MIB):
            digest.update(chunk)
    return digest.hexdigest()


def check_sha256_files(out):
    artifacts = [p for p in out.iterdir() if p.suffix in {".raw", ".ova", ".vhdx", ".img"}]
    check(artifacts, f"no artifacts in {out}")
    for artifact in artifacts:
        listed = Path(f"{artifact}.sha256").read_text().split()
        check(listed[1] == artifact.name, f"{artifact}.sha256 names {listed[1]}")
        digest = hashlib.sha256()
        with open(artifact, "rb") as f:
            while chunk := f.read(4 * MIB):
                digest.update(chunk)
        check(digest.hexdigest() == listed[0], f"{artifact}.sha256 is wrong")


def slot_fingerprint(vm):
    """What an upgrade writes: the inactive slot B (slot A is the mounted root, whose
    superblock changes as it runs), the ESP's entries and kernels, the slot record and the
    snapshots."""
    status, output = vm.shell(
        "head -c 16M /dev/disk/by-partlabel/pullback-root-b | sha256sum; "
        "find /efi /data/snapshots -maxdepth 3 | sort; "
        "cat /efi/loader/entries/* /data/appliance/slots.json | sha256sum")
    check(status == 0, f"cannot read the slots: {output}")
    return output


def test_raw_and_upgrades(args, v1, images, password, key):
    api = Api(free_port(), key)
    cfg = config_disk(args.work / "config.img", answers_text(password, hashlib.sha256(key.encode()).hexdigest()))
    upgrades = files_disk(args.work / "upgrades.img", [p for p, _ in images.values()])
    vm = Vm("raw", args.work, v1["raw"], "raw", [(cfg, "config"), (upgrades, "upgrades")], api.port)
    try:
        with step("raw image: first boot from the config disk, /health/ready on 127.0.0.1"):
            vm.wait_for(rf"booted slot A, release {re.escape(args.version)}")
            done = vm.wait_for(r"first boot (done|failed)[^\r\n]*")
            check(done.group(1) == "done", done.group(0))
            api.wait_ready()
            status, data = api.request("POST", "/api/v1/alerts", {
                "source": "image-test",
                "alerts": [{"id": "before-upgrade", "message_id": "<before-upgrade@test>",
                            "recipients": ["someone@corp.example"], "sender": "x@evil.example",
                            "subject": "written before the upgrade",
                            "time": "2026-01-01T00:00:00Z", "classification": "phish",
                            "threats": [{"value": "https://evil.example/x", "type": "url"}]}]})
            check(status == 200, f"POST /api/v1/alerts answered {status}: {data[:300]!r}")
            check("written before the upgrade" in api.alert_subjects(), "the alert is not listed")

        with step("refused upgrade images write nothing"):
            vm.login(password)
            status, output = vm.shell("mkdir -p /mnt/up && mount -o ro /dev/disk/by-id/virtio-upgrades /mnt/up")
            check(status == 0, f"cannot mount the upgrades disk: {output}")
            before = slot_fingerprint(vm)
            for name, (path, words) in images.items():
                if name in ("new", "broken"):
                    continue
                status, output = vm.shell(f"pullback upgrade apply /mnt/up/{path.name}")
                check(status != 0, f"{name}: the appliance accepted it: {output}")
                check(words in output and "nothing was written" in output,
                      f"{name}: the refusal does not say {words!r}: {output}")
                log(f"  {name}: {output.strip().splitlines()[-1]}")
            check(slot_fingerprint(vm) == before, "a refused image changed a slot or the ESP")

        with step("upgrade to a newer release: trial boot, confirmed, data kept"):
            since = vm.mark()
            status, output = vm.shell(
                f"pullback upgrade apply --no-reboot /mnt/up/{images['new'][0].name}", timeout=900)
            check(status == 0 and "written to slot B" in output, f"apply failed: {output}")
            vm.type("systemctl reboot\n")
            vm.wait_for(rf"booted slot B, release {re.escape(args.new_version)} "
                        r"\(data format \d+\), trying it", since=since)
            vm.wait_for(rf"upgrade to {re.escape(args.new_version)} confirmed", since=since)
            api.wait_ready()
            check("written before the upgrade" in api.alert_subjects(),
                  "the alert written before the upgrade is gone")

        with step("a truncated upgrade uploaded through the API is refused by root"):
            truncated, words = images["truncated"]
            status, data = api.upload("/api/v1/appliance/upgrade", truncated)
            check(status == 202, f"the upload answered {status}: {data[:300]!r}")
            last = api.upgrade_result({"refused", "rebooting", "failed"})
            check(last["state"] == "refused" and words in last["message"],
                  f"the truncated upload was not refused for being {words}: {last}")
            check(last["uploaded_by"] == "key test", f"the uploader is not recorded: {last}")
            log(f"  {last['message']}")

        # The broken release goes in from the console: 523 MiB through QEMU's emulated
        # network arrive at about 250 KB/s under TCG, which the truncated upload above shows
        # is the only thing the API path adds (root's install is the same code).
        with step("upgrade to a release whose health check fails: back on the previous one"):
            since = vm.mark()
            vm.login(password)
            vm.shell("mkdir -p /mnt/up && mount -o ro /dev/disk/by-id/virtio-upgrades /mnt/up")
            status, output = vm.shell(
                f"pullback upgrade apply --no-reboot /mnt/up/{images['broken'][0].name}",
                timeout=900)
            check(status == 0 and "written to slot A" in output, f"apply failed: {output}")
            vm.type("systemctl reboot\n")
            vm.wait_for(rf"booted slot A, release {re.escape(args.broken_version)} "
                        r"\(data format \d+\), trying it", since=since)
            vm.wait_for(r"is not healthy|did not become healthy", since=since)
            vm.wait_for(rf"upgrade to {re.escape(args.broken_version)} failed its trial boot; "
                        r"back on slot B", since=since)
            # The line ends there: not a trial. The console's line discipline turns the
            # "\r\n" that ends each announcement into "\r\r\n".
            vm.wait_for(rf"booted slot B, release {re.escape(args.new_version)} "
                        r"\(data format \d+\)\r*\n", since=since)
            api.wait_ready()
            check("written before the upgrade" in api.alert_subjects(),
                  "the alert is gone after the fallback")
    finally:
        vm.stop()


def test_converted(args, name, disk, disk_format, password, key, expect=None, config=True):
    with step(f"{name}: boots to the serial marker"):
        drives = []
        if config:
            cfg = config_disk(args.work / f"config-{name}.img",
                              answers_text(password, hashlib.sha256(key.encode()).hexdigest()))
            drives.append((cfg, "config"))
        vm = Vm(name, args.work, disk, disk_format, drives)
        try:
            vm.wait_for(rf"booted slot A, release {re.escape(args.version)}")
            if expect:
                vm.wait_for(expect)
        finally:
            vm.stop()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--only", choices=["raw", "ova", "vhdx", "upgrade"])
    parser.add_argument("--keep", action="store_true", help="keep the VM folders and images")
    parser.add_argument("--reuse-images", action="store_true",
                        help="do not rebuild images a previous run left in --work")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("test-images: run as root")
    args.work.mkdir(parents=True, exist_ok=True)
    args.keys = make_keys(args.work / "keys")
    base_version = next(l.split('"')[1] for l in (ROOT / "Cargo.toml").read_text().splitlines()
                        if l.startswith("version = "))
    args.version = base_version
    args.new_version = f"{base_version}-upgraded"
    args.broken_version = f"{base_version}-broken"
    password = "image test " + secrets.token_hex(6)
    key = secrets.token_hex(32)
    started = time.monotonic()
    try:
        v1_out, new_out, broken_out = (args.work / d for d in ("v1", "new", "broken"))
        with step("build the release images (raw, OVA, VHDX, IMG)"):
            build(args, v1_out, args.version)
        v1 = {"raw": v1_out / f"pullback-{args.version}.raw",
              "ova": v1_out / f"pullback-{args.version}.ova",
              "vhdx": v1_out / f"pullback-{args.version}.vhdx"}
        with step("the .sha256 files match"):
            check_sha256_files(v1_out)
        with step("the OVA: descriptor first, SHA-1 manifest, vmx-11, EFI, VMDK readable"):
            vmdk = check_ova(v1["ova"], v1["raw"])

        if args.only in (None, "raw", "upgrade"):
            with step("build the upgrade images (newer, broken, spoiled)"):
                build(args, new_out, args.new_version, "--formats", "img")
                build(args, broken_out, args.broken_version, "--formats", "img",
                      "--test-broken-service")
                new_img = new_out / f"pullback-{args.new_version}.img"
                images = {"new": (new_img, None),
                          "broken": (broken_out / f"pullback-{args.broken_version}.img", None)}
                older = args.work / "older"
                build(args, older, f"{base_version}-older-format", "--formats", "img",
                      "--data-format", "0", "--oldest-data-format", "0")
                images["older-format"] = (older / f"pullback-{base_version}-older-format.img",
                                          "data format check failed")
                spoiled = args.work / "spoiled"
                spoiled.mkdir(exist_ok=True)
                images.update(bad_images(new_img, args.keys, spoiled))
            test_raw_and_upgrades(args, v1, images, password, key)
        if args.only in (None, "ova"):
            test_converted(args, "vmdk", vmdk, "vmdk", password, key)
        if args.only in (None, "vhdx"):
            # The VHDX is set up to read AWS user data; here, not being an EC2 instance, it
            # must not ask the metadata service (and the network could not reach it anyway).
            test_converted(args, "vhdx", v1["vhdx"], "vhdx", password, key, config=False,
                           expect=r"not an EC2 instance; the metadata service is not asked")
    except Failure as failure:
        log(f"FAILED: {failure}")
        print_timings(started)
        sys.exit(1)
    print_timings(started)
    log("all image tests passed")
    if not args.keep:
        for folder in args.work.glob("vm-*"):
            shutil.rmtree(folder)


def print_timings(started):
    lines = [f"  {name:<78} {took:6.0f} s" for name, took in TIMINGS]
    log("timings:\n" + "\n".join(lines) +
        f"\n  {'total':<78} {time.monotonic() - started:6.0f} s")


if __name__ == "__main__":
    main()
