#!/usr/bin/python3
"""A hung libvirtd costs its guests nothing (issue: vireod never blocks).

On a 3-host lab, n1 runs ha1 (HA) and plain (not HA). n1's libvirtd is
SIGSTOPped for STOP_S seconds, then continued. Meanwhile:

  * vireod on n1 lives on (the same pid: its watchdog, fed by a loop that
    never waits on libvirt, never fires) and answers the CLI in well under
    a second, all along;
  * the cluster says n1's hypervisor is stalled (vireo node list, an
    event), and a VM created preferring n1 starts elsewhere;
  * both guests run on with the same boot (their heartbeats go on), no
    guest runs on two hosts (QEMU processes scanned all along), nothing is
    restarted or failed over;
  * once continued, n1's hypervisor answers again (node list, an event),
    and ha1 and plain are still the same boots, running on n1.

Then the same for a qemu-img that hangs (a slow pool): in n1's mount
namespace only, /usr/bin/qemu-img becomes a wrapper whose first run sleeps
QEMU_IMG_HANG_S. A `vireo vm create` with a disk on n1 waits for it, while
vireod on n1 answers status and console requests at once, keeps its pid,
and the guests heartbeat on; the create then completes.
"""
import json
import os
import signal
import subprocess
import threading
import time

from labtest import LAB_TOOL, Lab, check, log, main, wait_until
from timeouts import T
from failtest import QemuWatch, boots_before, events, put_ha_vm, wait_acked
from vmtest import (cli_has_vm, create, create_args, current_boot, daemon_pid, ensure_guest, vm_list,
                    wait_heartbeats_go_on, wait_ready, wait_vm)

NODES = ["n1", "n2", "n3"]
STOP_S = 30.0
# The next reconcile pass's list is the first call to hang, stalled after
# VIREO_HV_STALL_MS, seen by the next probe; plus slack for the announce and
# the CLI's polling.
STALLED_WITHIN_S = T.VM_RECONCILE + T.HV_STALL + T.HV_STALL_PROBE + 2.0
# The CLI's answer from n1 while libvirtd is stopped: the loop does not
# wait on libvirt, so a round trip through the cluster, not seconds.
CLI_ANSWER_S = 1.0


def node_row(lab, via, name):
    rc, out, err = lab.vireo(via, "node", "list", "--json", timeout=20)
    check(rc == 0, "vireo node list on %s failed: %s", via, err)
    for n in json.loads(out):
        if n["name"] == name:
            return n
    return None


QEMU_IMG_HANG_S = 15.0


def answers_quickly(lab, vireod, seconds, what):
    """vireod on n1 answers status and ha1's console within CLI_ANSWER_S,
    for seconds, with the same pid. Returns (slowest status, slowest console)."""
    slow_status = slow_console = 0.0
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        t = time.monotonic()
        rc, _, err = lab.vireo("n1", "status", "--json", timeout=20)
        slow_status = max(slow_status, time.monotonic() - t)
        check(rc == 0, "vireo status on n1 failed while %s: %s", what, err)
        t = time.monotonic()
        rc, out, err = lab.vireo("n1", "vm", "console", "ha1", timeout=20)
        slow_console = max(slow_console, time.monotonic() - t)
        check(rc == 0 and "HEARTBEAT" in out, "vireo vm console ha1 on n1 failed while %s "
              "(exit %d): %s", what, rc, err.strip() or out[-200:])
        time.sleep(0.5)
    check(daemon_pid(lab, "n1", "vireod") == vireod, "vireod on n1 was replaced while %s", what)
    check(slow_status <= CLI_ANSWER_S and slow_console <= CLI_ANSWER_S, "vireod on n1 took "
          "%.2f s (status) / %.2f s (console) to answer while %s: its loop waited",
          slow_status, slow_console, what)
    return slow_status, slow_console


def hanging_qemu_img(lab, watch, before, vireod):
    """A qemu-img that hangs on n1: the create waits, nothing else does."""
    # In n1's own /run (a tmpfs of its mount namespace), so nothing of it
    # is seen outside n1, and it goes with the lab.
    d = "/run/vireo-test"
    flag, wrapper, real = f"{d}/hang-once", f"{d}/qemu-img.slow", f"{d}/qemu-img.real"
    script = (f"#!/bin/sh\n[ -e {flag} ] && rm -f {flag} && sleep {QEMU_IMG_HANG_S:.0f}\n"
              f"exec {real} \"$@\"\n")
    p = lab.exec("n1", "sh", "-c", f"mkdir -p {d} && printf '%s' '{script}' > {wrapper} && "
                 f"chmod 755 {wrapper} && touch {real} && "
                 f"mount --bind /usr/bin/qemu-img {real} && mount --bind {wrapper} /usr/bin/qemu-img")
    check(p.returncode == 0, "cannot put the slow qemu-img in place on n1: %s", p.stderr)
    try:
        check(lab.exec("n1", "touch", flag).returncode == 0, "cannot arm the slow qemu-img")
        t0 = time.monotonic()
        creating = subprocess.Popen([LAB_TOOL, "exec", "n1", "vireo",
                                     *create_args("slowdisk", disks="16M", start=False)],
                                    env=lab.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True)
        created = {}

        def wait_created():
            created["out"], created["err"] = creating.communicate(timeout=120)
            created["took"] = time.monotonic() - t0

        waiter = threading.Thread(target=wait_created, daemon=True)
        waiter.start()
        time.sleep(1.0)
        check(creating.poll() is None, "vm create did not wait for the hanging qemu-img: %s",
              created)
        slow = answers_quickly(lab, vireod, QEMU_IMG_HANG_S - 4.0, "qemu-img hangs")
        log(f"while qemu-img hung: status answered in at most {slow[0]:.3f} s, the console "
            f"in {slow[1]:.3f} s")
        waiter.join(120)
        check("took" in created, "vm create did not end")
        check(creating.returncode == 0, "vm create with the slow qemu-img failed (exit %d): %s",
              creating.returncode, created["err"].strip() or created["out"].strip())
        took = created["took"]
        check(QEMU_IMG_HANG_S - 1 <= took <= QEMU_IMG_HANG_S + 5, "vm create took %.1f s with "
              "qemu-img hanging %.0f s", took, QEMU_IMG_HANG_S)
        log(f"vm create waited {took:.1f} s for the qemu-img that hung {QEMU_IMG_HANG_S:.0f} s, "
            f"then succeeded")
        for n in ("ha1", "plain"):
            wait_heartbeats_go_on(lab, n, before[n][0], count=2)
            check(watch.hosts_of(n) == {"n1"}, "%s runs on %s", n, watch.hosts_of(n))
    finally:
        lab.exec("n1", "sh", "-c", f"umount /usr/bin/qemu-img; umount {real}; rm -rf {d}")


def test(lab: Lab):
    ensure_guest()
    t_all = time.monotonic()
    lab.up(3)
    cli_has_vm(lab)
    wait_ready(lab, NODES)
    watch = QemuWatch(lab, NODES)
    libvirtd = None
    try:
        put_ha_vm(lab, "ha1", "n1", prefer=True)
        put_ha_vm(lab, "plain", "n1", ha=False, prefer=True)
        for n in ("ha1", "plain"):
            wait_acked(lab, n)
        before = boots_before(lab, ["ha1", "plain"])
        restarts = {n: vm_list(lab, "n2")[n]["restarts"] for n in ("ha1", "plain")}
        vireod = daemon_pid(lab, "n1", "vireod")
        libvirtd = daemon_pid(lab, "n1", "libvirtd")
        check(vireod and libvirtd, "no vireod or libvirtd pid on n1")

        t0 = time.monotonic()
        os.kill(libvirtd, signal.SIGSTOP)      # our lab's libvirtd
        log(f"SIGSTOPped libvirtd (pid {libvirtd}) on n1 for {STOP_S:.0f} s")
        _, took = wait_until("n1's hypervisor reported stalled", lambda: (
            node_row(lab, "n2", "n1") or {}).get("hypervisor") == "stalled", STALLED_WITHIN_S)
        row = node_row(lab, "n2", "n1")
        log(f"n1's hypervisor stalled after {time.monotonic() - t0:.2f} s: "
            f"{row['hypervisor_message']!r}")

        # Placement avoids it: a VM that prefers n1 starts elsewhere.
        create(lab, "newvm", node="n2", extra=["--prefer", "n1"])
        v, _ = wait_vm(lab, "newvm", lambda v: v and v["state"] == "running", "running",
                       node="n2")
        check(v["node"] != "n1", "newvm was started on n1, whose hypervisor is stalled: %s", v)
        log(f"newvm (--prefer n1) started on {v['node']} while n1's libvirtd is stopped")

        slowest = 0.0
        samples = 0
        while time.monotonic() - t0 < STOP_S:
            t = time.monotonic()
            rc, _, err = lab.vireo("n1", "status", "--json", timeout=20)
            answer = time.monotonic() - t
            check(rc == 0, "vireo status on n1 failed while libvirtd is stopped: %s", err)
            slowest = max(slowest, answer)
            samples += 1
            check(daemon_pid(lab, "n1", "vireod") == vireod, "vireod on n1 was replaced "
                  "(pid %s, was %s) while libvirtd was stopped", daemon_pid(lab, "n1", "vireod"),
                  vireod)
            for n in ("ha1", "plain"):
                check(watch.hosts_of(n) == {"n1"}, "%s runs on %s while n1's libvirtd is "
                      "stopped: %s", n, watch.hosts_of(n), watch.story(n, t0))
            time.sleep(0.5)
        log(f"vireod on n1 answered {samples} status requests, the slowest in {slowest:.3f} s")
        check(slowest <= CLI_ANSWER_S, "vireod on n1 took %.2f s to answer while libvirtd was "
              "stopped (more than %.1f s): its loop waited", slowest, CLI_ANSWER_S)
        for n in ("ha1", "plain"):
            wait_heartbeats_go_on(lab, n, before[n][0], count=3)
        log("ha1 and plain heartbeat on, the same boots, with libvirtd stopped")

        os.kill(libvirtd, signal.SIGCONT)
        t1 = time.monotonic()
        libvirtd = None
        wait_until("n1's hypervisor answering again", lambda: (
            node_row(lab, "n2", "n1") or {}).get("hypervisor") == "ok", 30)
        log(f"SIGCONT: n1's hypervisor answers again after {time.monotonic() - t1:.2f} s")
        # A pass after the reconnect adopts the guests as they run.
        time.sleep(3.0)
        vms = vm_list(lab, "n2")
        for n in ("ha1", "plain"):
            check(vms[n]["state"] == "running" and vms[n]["node"] == "n1", "%s after libvirtd "
                  "came back: %s", n, vms[n])
            check(vms[n]["restarts"] == restarts[n], "%s was restarted: %s", n, vms[n])
            check(current_boot(lab, n)[0] == before[n][0], "%s booted again", n)
            wait_heartbeats_go_on(lab, n, before[n][0], count=2)
            check(watch.hosts_of(n) == {"n1"}, "%s runs on %s: %s", n, watch.hosts_of(n),
                  watch.story(n, t0))
        check(daemon_pid(lab, "n1", "vireod") == vireod, "vireod on n1 was replaced")
        texts = [e["text"] for e in events(lab, "n2")]
        check(any("node n1: its hypervisor does not answer" in t for t in texts),
              "no event says n1's hypervisor stalled: %s", texts[-8:])
        check(any("node n1: its hypervisor answers again" in t for t in texts),
              "no event says n1's hypervisor answers again: %s", texts[-8:])
        hanging_qemu_img(lab, watch, before, vireod)
        watch.check()
        log(f"qemu scans {watch.scans}; ha1 and plain never stopped, vireod {vireod} lived on")
    finally:
        if libvirtd:
            os.kill(libvirtd, signal.SIGCONT)
        watch.stop()
    log(f"hypervisor-stall test body took {time.monotonic() - t_all:.1f} s")


main(test, "thvst")
