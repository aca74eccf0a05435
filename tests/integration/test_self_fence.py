#!/usr/bin/python3
"""The host side of fencing, on a 3-host lab with the test guest: each host
runs vireo-watchdog next to vireod (doc/failover.md, "Host side").

  (0) vireod on a host without guests is SIGSTOPped: after 5 T the watchdog
      kills it anyway, since a hung vireod holds up the whole cluster;

  (a) vireod on a host with an HA guest and a non-HA guest is SIGKILLed:
      the watchdog kills the HA guest at once (the socket closed without a
      clean stop), the non-HA guest runs on;
  (b) vireod on a host with an HA guest is SIGSTOPped: it stops feeding, and
      after VIREO_WATCHDOG_TIMEOUT_MS (5 T) the watchdog kills the guest,
      then vireod;
  a watchdog restarted (stop-daemon, start-daemon) is fed again;
  (c) a host with an HA guest is cut off (partition): it loses quorum, and
      its vireod destroys the guest within detection + VIREO_SELF_FENCE_MS
      and logs "self-fencing: destroyed HA guest ... (lost quorum)".

Each VM is pinned to its host (--node), so the manager never restarts it
elsewhere: where the cluster recovers VMs is not this test's business.
"""
import os
import signal
import time

from labtest import Lab, TestFailure, check, log, main, wait_until
from vmtest import cli_has_vm, create, daemon_pid, ensure_guest, virsh_running, wait_ready, wait_vm

NODES = ["n1", "n2", "n3"]
TOKEN = 1.0                       # the lab's corosync token, seconds
DETECTION = 2.2 * TOKEN           # VIREO_DETECTION_MS
SELF_FENCE = 0.5 * TOKEN          # VIREO_SELF_FENCE_MS
WATCHDOG_TIMEOUT = 5 * TOKEN      # VIREO_WATCHDOG_TIMEOUT_MS
SLACK = 1.5                       # a busy 2-core machine, and polling virsh

# host: [(VM, HA)]
PLAN = {"n1": [("fa-ha", True), ("fa-plain", False)], "n2": [("fb-ha", True)],
        "n3": [("fc-ha", True)]}


def host_log(lab, node, name):
    try:
        with open(f"/tmp/vireo-lab/{lab.name}/{node}/log/vireo/{name}", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def watchdog_log(lab, node):
    return host_log(lab, node, "vireo-watchdog.log")


def protected(lab, node, vm):
    """The watchdog of node was fed a list that names vm."""
    for line in reversed(watchdog_log(lab, node).splitlines()):
        if "protects" in line:
            names = line.split(": ", 2)[-1].split(", ") if "guest(s): " in line else []
            return vm in names
    return False


def wait_logged(lab, node, name, text, what, timeout=3):
    """text shows up in node's log name (a line may land just after the fact it tells)."""
    try:
        wait_until(what, lambda: text in host_log(lab, node, name), timeout, interval=0.05)
    except TestFailure:
        return False
    return True


def wait_gone(lab, node, vm, timeout):
    """Seconds until vm no longer runs on node (virsh), polled as fast as virsh answers."""
    t0 = time.monotonic()
    wait_until(f"{vm} to stop running on {node}", lambda: vm not in virsh_running(lab, node),
               timeout, interval=0.02)
    return time.monotonic() - t0


def setup(lab):
    for node, vms in PLAN.items():
        for vm, ha in vms:
            create(lab, vm, disks="", extra=["--node", node] + (["--ha"] if ha else []))
    for node, vms in PLAN.items():
        for vm, ha in vms:
            wait_vm(lab, vm, lambda v, n=node: v and v["state"] == "running" and v["node"] == n,
                    f"running on {node}")
            wait_until(f"{vm} running on {node} (virsh)", lambda n=node, v=vm: v in virsh_running(lab, n), 30)
            if ha:
                wait_until(f"the watchdog of {node} protecting {vm}",
                           lambda n=node, v=vm: protected(lab, n, v), 10)
            else:
                check(not protected(lab, node, vm), "the watchdog of %s protects non-HA %s "
                      "(nonha_on_quorum_loss is keep by default)", node, vm)
    log("fa-ha, fa-plain on n1, fb-ha on n2, fc-ha on n3: running, HA ones protected by the watchdogs")


def vireod_killed(lab):
    t0 = time.monotonic()
    lab.run("stop-daemon", "n1", "vireod")
    took = time.monotonic() - t0 + wait_gone(lab, "n1", "fa-ha", 10)
    log(f"(a) vireod on n1 SIGKILLed: fa-ha gone {took:.2f} s later")
    check(took <= 1.0 + SLACK, "fa-ha ran %.2f s after its vireod was killed (the watchdog "
          "should kill it at once)", took)
    check(wait_logged(lab, "n1", "vireo-watchdog.log", "killed guest fa-ha", "n1's watchdog log"),
          "the watchdog of n1 does not say it killed fa-ha")
    time.sleep(1)
    check("fa-plain" in virsh_running(lab, "n1"), "non-HA fa-plain no longer runs on n1 after "
          "vireod was killed")
    check("killed guest fa-plain" not in watchdog_log(lab, "n1"), "the watchdog killed non-HA fa-plain")
    log("(a) non-HA fa-plain runs on")


def pid_dead(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def idle_vireod_hung(lab):
    """A hung vireod protects no guest but holds up the cluster (sync rounds wait
    for its answer, and it may be the manager): the watchdog kills it too."""
    pid = daemon_pid(lab, "n3", "vireod")
    check(pid, "no vireod pid for n3 in vireo-lab status --json")
    os.kill(pid, signal.SIGSTOP)
    t0 = time.monotonic()
    wait_until(f"idle vireod (pid {pid}) on n3 to be killed", lambda: pid_dead(pid),
               WATCHDOG_TIMEOUT + 10, interval=0.05)
    took = time.monotonic() - t0
    check(took >= WATCHDOG_TIMEOUT - 0.3, "n3's idle vireod was killed %.2f s after it stopped, "
          "before the watchdog timeout of %.1f s", took, WATCHDOG_TIMEOUT)
    check(wait_logged(lab, "n3", "vireo-watchdog.log", f"killed vireod (pid {pid})",
                      "n3's watchdog log"), "the watchdog of n3 does not say it killed the idle "
          "hung vireod: %s", watchdog_log(lab, "n3")[-600:])
    log(f"(0) idle vireod on n3 (pid {pid}) SIGSTOPped: the watchdog killed it {took:.2f} s later")
    lab.run("start-daemon", "n3", "vireod")
    wait_ready(lab, NODES)


def vireod_hung(lab):
    pid = daemon_pid(lab, "n2", "vireod")
    check(pid, "no vireod pid for n2 in vireo-lab status --json")
    os.kill(pid, signal.SIGSTOP)
    t0 = time.monotonic()
    took = wait_gone(lab, "n2", "fb-ha", WATCHDOG_TIMEOUT + 10)
    log(f"(b) vireod on n2 (pid {pid}) SIGSTOPped: fb-ha gone {took:.2f} s later")
    check(took >= WATCHDOG_TIMEOUT - 0.3, "fb-ha was killed %.2f s after its vireod stopped, "
          "before the watchdog timeout of %.1f s", took, WATCHDOG_TIMEOUT)
    check(took <= WATCHDOG_TIMEOUT + SLACK, "fb-ha ran %.2f s after its vireod stopped (watchdog "
          "timeout %.1f s)", took, WATCHDOG_TIMEOUT)

    wait_until(f"vireod (pid {pid}) on n2 to be killed", lambda: pid_dead(pid), 5, interval=0.05)
    check(wait_logged(lab, "n2", "vireo-watchdog.log", f"killed vireod (pid {pid})",
                      "n2's watchdog log") and "has not fed the watchdog" in watchdog_log(lab, "n2"),
          "the watchdog of n2 does not say it killed the hung vireod: %s",
          watchdog_log(lab, "n2")[-600:])
    log(f"(b) the watchdog killed fb-ha, then vireod ({time.monotonic() - t0:.2f} s after SIGSTOP)")


def watchdog_restarted(lab):
    """A watchdog that restarts is fed again: vireod reconnects on its own."""
    old = daemon_pid(lab, "n3", "watchdog")
    lab.run("stop-daemon", "n3", "watchdog")
    check("fc-ha" in virsh_running(lab, "n3"), "fc-ha died with n3's watchdog")
    t0 = time.monotonic()
    lab.run("start-daemon", "n3", "watchdog")
    new = daemon_pid(lab, "n3", "watchdog")
    check(new and new != old, "start-daemon n3 watchdog started no new watchdog (%s, was %s)",
          new, old)

    def fed_again():
        text = watchdog_log(lab, "n3")
        mine = [l for l in text.splitlines() if f"[{new}]" in l]
        return any("protects 1 guest(s): fc-ha" in l for l in mine)
    wait_until("n3's new watchdog to be fed fc-ha", fed_again, 10)
    log(f"n3's watchdog restarted (pid {old} -> {new}): vireod fed it fc-ha "
        f"{time.monotonic() - t0:.2f} s later")


def host_cut_off(lab):
    t0 = time.monotonic()
    lab.run("partition", "n1,n2", "n3")
    took = time.monotonic() - t0 + wait_gone(lab, "n3", "fc-ha", DETECTION + SELF_FENCE + 10)
    log(f"(c) n3 cut off: fc-ha gone {took:.2f} s later (detection {DETECTION:.1f} s + "
        f"self-fence {SELF_FENCE:.1f} s)")
    check(took <= DETECTION + SELF_FENCE + SLACK, "fc-ha ran %.2f s on the cut-off n3", took)
    line = "self-fencing: destroyed HA guest fc-ha (lost quorum)"
    logged = wait_logged(lab, "n3", "vireod.log", line, "n3's vireod log")
    wlog = watchdog_log(lab, "n3")
    check(logged, "n3's vireod.log lacks %r%s", line,
          " (its watchdog killed the guest: vireod did not confirm in time)"
          if "killed guest fc-ha" in wlog else "")
    log(f"(c) n3's vireod logged {line!r}; its watchdog: "
        + ("vireod confirmed in time" if "confirmed its self-fence" in wlog else "no confirmation logged"))
    lab.run("heal")


def test(lab: Lab):
    ensure_guest()
    t_all = time.monotonic()
    lab.up(3)
    cli_has_vm(lab)
    for n in NODES:
        check(daemon_pid(lab, n, "watchdog"), "vireo-lab started no watchdog on %s", n)
    wait_ready(lab, NODES)
    try:
        idle_vireod_hung(lab)
        setup(lab)
        vireod_killed(lab)
        vireod_hung(lab)
        watchdog_restarted(lab)
        host_cut_off(lab)
    except TestFailure:
        for n in NODES:
            print(f"----- {n} vireo-watchdog.log (tail)")
            print("\n".join(watchdog_log(lab, n).splitlines()[-25:]))
        raise
    log(f"self-fence test body took {time.monotonic() - t_all:.1f} s")


main(test, "selffence")
