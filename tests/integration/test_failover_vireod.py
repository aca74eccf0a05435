#!/usr/bin/python3
"""vireod alone dies on a host (SIGKILL to its pid, from the lab's pid
file): on a 3-host lab with the test guest, while failtest.Watch checks all
along that no guest runs on two hosts:

  * n3 runs ha1 (HA) and plain (not HA); its vireod is SIGKILLed. Its
    vireo-watchdog kills ha1's QEMU at once (the socket closed without a
    clean stop) and logs it; the cluster sees n3's vireod leave, fences
    ha1 (deadline passed, lease free) and restarts it on n1/n2 with every
    acknowledged write. plain runs on untouched in n3 (its lease is held,
    so it is never started elsewhere).
  * vireod on n3 starts again: n3 rejoins, runs ha1 nowhere, and plain is
    its own again, the same boot.
"""
import os
import signal
import time

from labtest import Lab, check, converged, log, main, wait_until
from failtest import (FAILOVER_BOUND_S, FENCE_DELAY_S, Watch, boots_before, check_recovered_disk,
                      check_single_boot_since, events, failover_events, log_where, put_ha_vm,
                      wait_acked, wait_back)
from vmtest import (cli_has_vm, current_boot, daemon_pid, ensure_guest, vm_list,
                    wait_heartbeats_go_on, wait_ready, wait_vm)

NODES = ["n1", "n2", "n3"]
# The watchdog kills "at once" (~0.05 s measured); the timeline promises no
# guest of a lost host runs past detection (here at once: vireod left the
# CPG) + the fence delay, when the manager may confirm the fence.
WATCHDOG_KILL_S = FENCE_DELAY_S
SETTLE_WATCH_S = 7.0              # two reconcile passes (3 T)
SCAN_SLACK_S = 0.05               # how long a Watch scan of the QEMUs may take


def watchdog_log(lab, node):
    try:
        with open(f"/tmp/vireo-lab/{lab.name}/{node}/log/vireo/vireo-watchdog.log",
                  errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def test(lab: Lab):
    ensure_guest()
    t_all = time.monotonic()
    lab.up(3)
    cli_has_vm(lab)
    wait_ready(lab, NODES)
    check(daemon_pid(lab, "n3", "watchdog"), "this lab runs no vireo-watchdog on n3")
    watch = Watch(lab, NODES)
    try:
        put_ha_vm(lab, "ha1", "n3", prefer=True, watch=watch)
        put_ha_vm(lab, "plain", "n3", ha=False, prefer=True, watch=watch)
        for n in ("ha1", "plain"):
            wait_acked(lab, n)
        # The watchdog must have been fed ha1 before vireod dies.
        wait_until("n3's watchdog protecting ha1", lambda: any(
            "protects" in l and "ha1" in l for l in watchdog_log(lab, "n3").splitlines()), 10)
        before = boots_before(lab, ["ha1", "plain"])
        pid = daemon_pid(lab, "n3", "vireod")
        check(pid, "no vireod pid on n3")
        t_wall = time.time() * 1000
        t0 = time.monotonic()
        os.kill(pid, signal.SIGKILL)       # our lab's vireod
        log(f"SIGKILLed vireod (pid {pid}) on n3")
        back = wait_back(lab, ["ha1"], before, ["n1", "n2"], "n1", t0, FAILOVER_BOUND_S + 20)
        took, node, bid = back["ha1"]
        disk_last, acked = check_recovered_disk(lab, "ha1", before["ha1"][0], bid,
                                                before["ha1"][1])
        # A scan is stamped when it starts: one that began just before the
        # kill may see the QEMU gone already (CI: -0.00 s).
        gone = [max(0.0, t - t0) for t, h in watch.qemu.timeline.get("ha1", [])
                if t > t0 - SCAN_SLACK_S and "n3" not in h]
        check(gone, "ha1's QEMU on n3 never went away: %s", watch.story("ha1", t0))
        wlog = [l.split("] ", 1)[-1] for l in watchdog_log(lab, "n3").splitlines()
                if "killed guest ha1" in l]
        check(wlog, "n3's watchdog did not log killing ha1: %s",
              watchdog_log(lab, "n3").splitlines()[-5:])
        evs = failover_events(events(lab, "n1"), ["ha1", "plain"], t_wall - 1000)
        log_where(watch, ["ha1", "plain"], t0)
        e = evs["ha1"]
        check("fencing" in e and "fenced" in e, "ha1: no 'fencing' and 'fenced after' events: %s",
              e)
        log(f"ha1: n3's watchdog killed it {gone[0]:.2f} s after vireod died ({wlog[-1]!r}); "
            f"fencing at {(e['fencing'] - t_wall) / 1000:.2f} s, fenced at "
            f"{(e['fenced'] - t_wall) / 1000:.2f} s; running on {node} with boot {bid[:8]} "
            f"heartbeating at {took:.2f} s; ACKED {acked}, DISK-LAST {disk_last}")
        check(gone[0] <= WATCHDOG_KILL_S, "ha1's QEMU on n3 died %.2f s after vireod died, more "
              "than %.1f s (the fence delay); the watchdog's log: %s", gone[0], WATCHDOG_KILL_S,
              watchdog_log(lab, "n3").splitlines()[-8:])
        check(e["fenced"] - e["fencing"] >= FENCE_DELAY_S * 1000 - 50,
              "ha1 was fenced %d ms after 'fencing', sooner than the fence delay",
              e["fenced"] - e["fencing"])
        check(took <= FAILOVER_BOUND_S, "ha1 came back %.2f s after vireod died, more than the "
              "%.1f s bound", took, FAILOVER_BOUND_S)

        # plain (not HA) runs on in n3, and nowhere else.
        check(watch.qemu.hosts_of("plain") == {"n3"}, "plain runs on %s: %s",
              watch.qemu.hosts_of("plain"), watch.story("plain", t0))
        check(current_boot(lab, "plain")[0] == before["plain"][0], "plain booted again")
        v = vm_list(lab, "n1")["plain"]
        log(f"plain (not HA) while n3's vireod is gone: {v['state']} on {v['node']}: "
            f"{v['message']!r}")
        log_where(watch, ["ha1", "plain"], t0)
        watch.check()

        t1 = time.monotonic()
        lab.run("start-daemon", "n3", "vireod")
        wait_until("n3 back and the cluster converged", lambda: converged(lab, NODES), 30,
                   interval=0.25)
        log(f"vireod on n3 started again; converged after {time.monotonic() - t1:.2f} s")
        v, _ = wait_vm(lab, "plain", lambda v: v and v["state"] == "running", "running",
                       timeout=20)
        end = time.monotonic() + SETTLE_WATCH_S
        while time.monotonic() < end:
            check("n3" not in watch.qemu.hosts_of("ha1"), "ha1 runs on n3 again: %s",
                  watch.story("ha1", t0))
            check(watch.qemu.hosts_of("plain") == {"n3"}, "plain runs on %s: %s",
                  watch.qemu.hosts_of("plain"), watch.story("plain", t0))
            time.sleep(0.1)
        vms = vm_list(lab, "n1")
        check(vms["ha1"]["state"] == "running" and vms["ha1"]["node"] == node,
              "ha1 after n3's vireod came back: %s", vms["ha1"])
        check(current_boot(lab, "ha1")[0] == bid, "ha1 booted again after n3 came back")
        check(vms["plain"]["state"] == "running" and vms["plain"]["node"] == "n3",
              "plain after n3's vireod came back: %s", vms["plain"])
        wait_heartbeats_go_on(lab, "plain", before["plain"][0], count=3)
        for n in ("ha1", "plain"):
            check_single_boot_since(lab, n, before[n][0])
        log(f"n3 rejoined: ha1 stays on {node}; plain is n3's again, the same boot")
        log_where(watch, ["ha1", "plain"], t0)
        watch.check()
        log(f"qemu scans {watch.qemu.scans}, virsh samples {watch.virsh.check()}")
    finally:
        watch.stop()
    log(f"vireod-kill test body took {time.monotonic() - t_all:.1f} s")


main(test, "fovd")
