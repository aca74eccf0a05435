#!/usr/bin/python3
"""Failover when hosts die, on real labs with the test guest, while two
watchers (failtest.Watch: QEMU processes per host every 20 ms, `virsh list`
per host every 100 ms) check all along that no guest runs on two hosts:

  * 3 hosts: n3 runs ha1 and ha2 (HA) and plain (not HA) and is killed:
    ha1 and ha2 run again on n1/n2 as new boots within detection + fence
    delay + a margin for start and boot, their disks hold every write they
    saw acknowledged (DISK-LAST >= the highest ACKED before the kill), they
    were fenced no sooner than the fence delay, and plain is stopped with a
    message naming n3. n3 comes back and runs none of them.
  * the manager's host n1 is killed with ha1 and ha2 on it: n2 becomes the
    manager and fails them over to n2/n3; n1 comes back and runs none.
  * 5 hosts: n4 and n5 are killed together with two HA guests each: all
    four come back on n1..n3.
"""
import re
import time

from labtest import Lab, check, converged, log, main, wait_until
from failtest import (FAILOVER_BOUND_S, FENCE_DELAY_S, Watch, boots_before,
                      check_recovered_disk, cli_has, events, failover_events, log_where,
                      put_ha_vm, virsh_all, wait_acked, wait_back)
from vmtest import cli_has_vm, ensure_guest, vm_cmd, vm_list, wait_ready, wait_vm

# After a host rejoins, watch this long for a guest it must not run: two of
# its vireod's reconcile passes (VIREO_VM_RECONCILE_MS, 3 T).
REJOIN_WATCH_S = 7.0


def kill_and_fail_over(lab, watch, victims, ha, alive, via, plain=()):
    """Kills the hosts victims; every VM of ha must come back on a host of
    alive as a new boot with its acknowledged writes, within the bound.
    Every VM of plain must end stopped, naming its lost host."""
    owner = {n: vm_list(lab, via)[n]["node"] for n in list(ha) + list(plain)}
    before = boots_before(lab, ha)
    t_wall = time.time() * 1000
    t0 = time.monotonic()
    for v in victims:
        lab.run("kill", v)
    log(f"killed {', '.join(victims)} ({time.monotonic() - t0:.2f} s); waiting for "
        f"{', '.join(ha)} to come back")
    back = wait_back(lab, ha, before, alive, via, t0, FAILOVER_BOUND_S + 20)

    for n, (took, node, bid) in sorted(back.items()):
        disk_last, acked = check_recovered_disk(lab, n, before[n][0], bid, before[n][1])
        log(f"{n}: {owner[n]} -> {node}, new boot {bid[:8]} heartbeating {took:.2f} s after the "
            f"kill; ACKED {before[n][1]} before the kill ({acked} in all), DISK-LAST {disk_last}")
        check(took <= FAILOVER_BOUND_S, "%s came back %.2f s after the kill, more than the %.1f s "
              "bound (detection + fence delay + start and boot margin)", n, took,
              FAILOVER_BOUND_S)

    evs = failover_events(events(lab, via), list(ha) + list(plain), t_wall - 1000)
    for n in ha:
        check("fencing" in evs[n] and "fenced" in evs[n], "%s: no 'fencing' and 'fenced after' "
              "events: %s", n, evs[n])
    # The manager counts the fence delay from when the node was lost, once
    # for all its VMs; the 'fencing' ops of one node go out one after
    # another, so the first of them is the closest mark of that moment.
    lost_at = {}
    for n in ha:
        lost_at[owner[n]] = min(lost_at.get(owner[n], evs[n]["fencing"]), evs[n]["fencing"])
    for n in ha:
        e = evs[n]
        waited = e["fenced"] - lost_at[owner[n]]
        log(f"{n}: fencing {(e['fencing'] - t_wall) / 1000:.2f} s after the kill, fenced "
            f"{(e['fenced'] - e['fencing']) / 1000:.2f} s later, {waited / 1000:.2f} s after "
            f"{owner[n]}'s first 'fencing' ({e['fenced_text']!r})")
        check(waited >= FENCE_DELAY_S * 1000 - 50, "%s was fenced %d ms after its node's first "
              "'fencing' event, sooner than the fence delay", n, waited)
        said = re.search(r"fenced after (\d+) ms", e["fenced_text"])
        check(said and int(said.group(1)) >= FENCE_DELAY_S * 1000, "%s: the manager says it "
              "waited less than the fence delay: %r", n, e["fenced_text"])
        check(owner[n] in e["fenced_text"], "the fenced event does not name %s: %r", owner[n],
              e["fenced_text"])

    for n in plain:
        v, _ = wait_vm(lab, n, lambda v: v and v["state"] == "stopped", "stopped", node=via,
                       timeout=10)
        check(f"node {owner[n]} was lost" in v["message"], "%s: the message does not name the "
              "lost node %s: %r", n, owner[n], v["message"])
        check(not v["want_running"], "%s: stopped but still wanted running: %s", n, v)
        log(f"{n} (not HA): stopped: {v['message']!r}")
    log_where(watch, list(ha) + list(plain), t0)
    watch.check()
    return back


def rejoin(lab, watch, victim, nodes, moved, via):
    """The killed host comes back and runs none of the guests that left it."""
    t0 = time.monotonic()
    lab.run("start", victim)
    _, took = wait_until(f"{victim} rejoined and the cluster converged",
                         lambda: converged(lab, nodes), 30, interval=0.25)
    log(f"{victim} started again and the cluster converged in {time.monotonic() - t0:.2f} s")
    end = time.monotonic() + REJOIN_WATCH_S
    while time.monotonic() < end:
        for n in moved:
            check(victim not in watch.qemu.hosts_of(n), "%s runs on %s again after it rejoined: "
                  "%s", n, victim, watch.story(n, t0))
        time.sleep(0.1)
    doms = virsh_all(lab, victim) or {}
    running = sorted(n for n in moved if doms.get(n) == "running")
    check(not running, "virsh on %s shows %s running after it rejoined", victim, running)
    vms = vm_list(lab, via)
    for n in moved:
        v = vms[n]
        if v["ha"]:
            check(v["state"] == "running" and v["node"] != victim, "%s after %s rejoined: %s",
                  n, victim, v)
        else:
            check(v["state"] == "stopped", "%s (not HA) after %s rejoined: %s", n, victim, v)
    log(f"{victim} rejoined: runs none of {', '.join(moved)} after {REJOIN_WATCH_S:.0f} s "
        f"(libvirt there: {doms or 'no domains'})")
    watch.check()


def three_hosts(lab):
    nodes = ["n1", "n2", "n3"]
    lab.up(3)
    cli_has_vm(lab)
    wait_ready(lab, nodes)
    prefer = cli_has(lab, "--prefer")
    watch = Watch(lab, nodes)
    try:
        t0 = time.monotonic()
        for name, ha in (("ha1", True), ("ha2", True), ("plain", False)):
            put_ha_vm(lab, name, "n3", ha=ha, prefer=prefer, watch=watch)
        for name in ("ha1", "ha2", "plain"):
            wait_acked(lab, name)
        log(f"ha1, ha2 (HA) and plain run on n3 ({'--prefer' if prefer else 'vm migrate --to'}"
            f" n3) after {time.monotonic() - t0:.1f} s")

        kill_and_fail_over(lab, watch, ["n3"], ["ha1", "ha2"], ["n1", "n2"], "n1",
                           plain=["plain"])
        rejoin(lab, watch, "n3", nodes, ["ha1", "ha2", "plain"], "n1")

        # The manager's own host.
        check(lab.status("n2")["manager"] == 1, "n1 should be the manager")
        for name in ("ha1", "ha2"):
            if vm_list(lab)[name]["node"] != "n1":
                with watch.migrating(name):
                    vm_cmd(lab, "migrate", name, "--to", "n1", timeout=180)
        wait_vm(lab, "ha1", lambda v: v and v["node"] == "n1" and v["state"] == "running",
                "on n1")
        wait_vm(lab, "ha2", lambda v: v and v["node"] == "n1" and v["state"] == "running",
                "on n1")
        kill_and_fail_over(lab, watch, ["n1"], ["ha1", "ha2"], ["n2", "n3"], "n2")
        st = lab.status("n2")
        check(st["manager"] == 2, "the manager after n1 died is %r, not 2", st["manager"])
        rejoin(lab, watch, "n1", nodes, ["ha1", "ha2"], "n2")
        log(f"qemu scans {watch.qemu.scans}, virsh samples {watch.virsh.check()}")
    finally:
        watch.stop()


def five_hosts(lab):
    nodes = ["n1", "n2", "n3", "n4", "n5"]
    lab.up(5)
    wait_ready(lab, nodes)
    prefer = cli_has(lab, "--prefer")
    watch = Watch(lab, nodes)
    try:
        place = {"a4": "n4", "b4": "n4", "a5": "n5", "b5": "n5"}
        for name, host in place.items():
            put_ha_vm(lab, name, host, prefer=prefer, watch=watch)
        for name in place:
            wait_acked(lab, name)
        back = kill_and_fail_over(lab, watch, ["n4", "n5"], list(place), ["n1", "n2", "n3"],
                                  "n1")
        log(f"spread over the three left: {sorted((n, b[1]) for n, b in back.items())}")
        log(f"qemu scans {watch.qemu.scans}, virsh samples {watch.virsh.check()}")
    finally:
        watch.stop()


def test(lab: Lab):
    ensure_guest()
    t0 = time.monotonic()
    three_hosts(lab)
    log(f"3-host part took {time.monotonic() - t0:.1f} s")
    lab.down()
    t1 = time.monotonic()
    five_hosts(lab)
    log(f"5-host part took {time.monotonic() - t1:.1f} s; all {time.monotonic() - t0:.1f} s")


main(test, "fo")
