#!/usr/bin/python3
"""The libvirt driver (hypervisor/) against a lab host's own libvirtd, with
the test guest, through tests/hv/hv-smoke run inside the host:

  * auto acceleration resolves to TCG here (this /dev/kvm cannot boot it);
  * starting a VM nobody defined answers -ENOENT with a clear message;
  * lifecycle: define, start, HEARTBEAT, pause (heartbeats stop), resume
    (same boot goes on), save + restore (same boot goes on), destroy,
    graceful and forced shutdown, undefine, with a disk on the shared pool
    (cache=none io=native) and a NIC on a bridge; the lifecycle events
    (started, paused, resumed, stopped) arrive through the qb_loop;
  * start -> first HEARTBEAT, 3 boots, median;
  * libvirtd killed and restarted while a VM runs: the driver reports the
    connection lost, then restored, and reads the still-running VM again.
"""
import os
import re
import subprocess
import threading
import time

from labtest import BUILD_DIR, LAB_TOOL, SRC_DIR, Lab, check, log, main, skip, wait_until

GUEST_DIR = os.environ.get("VIREO_GUEST_DIR", "/var/cache/vireo/guest")
SMOKE = os.path.join(BUILD_DIR, "tests", "hv", "hv-smoke")
BUILD_GUEST = os.path.join(SRC_DIR, "tools", "guest", "build-guest")
WORK_DIR = "/var/lib/vireo/pool/hv-smoke"      # inside the host: the shared pool (ext4)
BRIDGE = "hvbr0"


def ensure_guest():
    if not os.access(SMOKE, os.X_OK):
        skip(f"{SMOKE} is not built; run make")
    log(f"building the test guest in {GUEST_DIR} if needed (slow the first time)")
    p = subprocess.run([BUILD_GUEST, "--out", GUEST_DIR], capture_output=True, text=True,
                       timeout=900)
    if p.returncode != 0:
        skip(f"cannot build the test guest: {(p.stdout + p.stderr).strip()[-300:]}")


def smoke(lab, *args, timeout=120):
    """Runs hv-smoke in n1; returns (stdout lines, stderr). Fails unless it says OK."""
    p = lab.exec("n1", SMOKE, "--guest", GUEST_DIR, "--dir", WORK_DIR, *args, timeout=timeout)
    lines = p.stdout.splitlines()
    check(p.returncode == 0 and lines and lines[-1] == "OK",
          "hv-smoke %s failed (exit %d):\n%s\n%s", " ".join(args), p.returncode, p.stdout,
          p.stderr[-3000:])
    return lines, p.stderr


def events(lines):
    """[(type, vm, reason)] from the EVENT lines of VMs."""
    out = []
    for line in lines:
        parts = line.split()
        if len(parts) == 4 and parts[0] == "EVENT":
            out.append(tuple(parts[1:]))
    return out


def value(lines, key):
    for line in lines:
        if line.startswith(key + " "):
            return line[len(key) + 1:]
    return None


def check_accel(lab):
    lines, err = smoke(lab, "--accel", "auto", "accel")
    accel = value(lines, "ACCEL")
    log(f"auto acceleration: {accel}")
    check(accel and accel.startswith("tcg "), "auto resolved to %r, expected tcg here", accel)
    check("acceleration: tcg (" in err, "the choice is not logged with its reason:\n%s", err)


def check_start_undefined(lab):
    lines, err = smoke(lab, "--name", "never-defined", "start-undefined")
    check(value(lines, "RC") == "-2 No such file or directory", "start gave %r", value(lines, "RC"))
    check("VM never-defined is not defined on this host" in err and "define it first" in err,
          "the error message is not clear:\n%s", err)


def check_lifecycle(lab):
    t0 = time.monotonic()
    lines, err = smoke(lab, "--disk", "--bridge", BRIDGE, "--ip", "10.250.0.2/24", "lifecycle")
    log(f"lifecycle took {time.monotonic() - t0:.1f} s")
    ev = events(lines)
    kinds = {(t, r) for t, _, r in ev}
    for want in [("defined", "none"), ("started", "booted"), ("paused", "user"),
                 ("resumed", "user"), ("stopped", "saved"), ("started", "restored"),
                 ("stopped", "destroyed"), ("stopped", "shutdown"), ("undefined", "none")]:
        check(want in kinds, "no %s (%s) event; got %s", want[0], want[1], ev)
    order = [t for t, _, _ in ev]
    i = order.index("paused")
    check("resumed" in order[i:], "no resumed after paused: %s", order)
    check(value(lines, "PAUSED-HEARTBEATS") == "0", "heartbeats while paused")
    for key in ("RESUMED", "RESTORED"):
        v = value(lines, key)
        check(v and re.match(r"boot_id=[0-9a-f]{32} n=\d+->\d+", v), "%s line %r", key, v)
    check(value(lines, "DISK") is not None, "the guest's disk did not work")
    for line in lines:
        if line.startswith(("STEP", "BOOT-MS")):
            log(f"  {line}")


def check_boot_time(lab):
    lines, _ = smoke(lab, "--runs", "3", "boottime")
    runs = [int(l.split()[2]) for l in lines if l.startswith("BOOT-MS ")]
    median = value(lines, "BOOT-MEDIAN")
    log(f"start -> first HEARTBEAT: {runs} ms, median {median} ms")
    check(len(runs) == 3, "boot times %s", runs)


def check_reconnect(lab):
    cmd = [LAB_TOOL, "exec", "n1", SMOKE, "--guest", GUEST_DIR, "--dir", WORK_DIR, "reconnect"]
    proc = subprocess.Popen(cmd, env=lab.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    out = []
    reader = threading.Thread(target=lambda: out.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        wait_until("hv-smoke running a VM (READY)", lambda: "READY\n" in out or proc.poll() is not None,
                   60)
        check("READY\n" in out, "hv-smoke reconnect ended early:\n%s", "".join(out))
        t0 = time.monotonic()
        lab.run("stop-daemon", "n1", "libvirtd")
        lab.run("start-daemon", "n1", "libvirtd")
        log(f"libvirtd restarted in {time.monotonic() - t0:.2f} s")
        proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(5)
    text = "".join(out)
    check(proc.returncode == 0 and text.rstrip().endswith("OK"), "hv-smoke reconnect failed "
          "(exit %s):\n%s", proc.returncode, text)
    for want in ("EVENT connection-lost", "EVENT connection-restored", "STATE running",
                 "EVENT stopped"):
        check(want in text, "no %r in:\n%s", want, text)
    for line in text.splitlines():
        if line.startswith(("EVENT connection", "STEP reconnect")):
            log(f"  {line}")


def test(lab: Lab):
    ensure_guest()
    lab.up(1)
    # The driver on its own: vireod would treat the test's domains (vireo's
    # metadata, in no cluster state) as left over from deleted VMs.
    lab.run("stop-daemon", "n1", "vireod")
    for args in (["link", "add", BRIDGE, "type", "bridge"], ["link", "set", BRIDGE, "up"]):
        p = lab.exec("n1", "ip", *args)
        check(p.returncode == 0, "ip %s: %s", " ".join(args), p.stderr)
    check_accel(lab)
    check_start_undefined(lab)
    check_lifecycle(lab)
    check_boot_time(lab)
    check_reconnect(lab)


main(test, "hv")
