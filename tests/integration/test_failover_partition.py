#!/usr/bin/python3
"""Failover of a host that is cut off or stalls rather than dies, on a 3-host
lab with the test guest, while failtest.Watch checks all along that no guest
runs on two hosts (QEMU processes per host every 20 ms, `virsh list
--state-running` per host every 100 ms) and the consoles show no two boots
at once:

  * n3 runs ha1, ha2 (HA) and plain (not HA) and is partitioned away from
    n1,n2: n3 loses quorum and destroys ha1 and ha2 itself (its vireod logs
    "self-fencing: destroyed HA guest ..."), within detection + the
    self-fence bound; the majority restarts them only after the fence
    deadline, with every acknowledged write; plain runs on in n3 (the
    default nonha_on_quorum_loss = keep) and is never started elsewhere.
    After the heal n3 rejoins and runs neither HA guest again; plain goes
    on there, the same boot.
  * the host running ha1 is frozen (vireo-lab pause) for longer than
    detection + fence delay, then thawed: its leases stay held while it is
    frozen, so the majority starts nothing; after the thaw ha1 runs on
    exactly one host.
"""
import time

from labtest import Lab, check, converged, log, main, wait_until
from timeouts import T
from failtest import (DETECTION_S, FAILOVER_BOUND_S, FENCE_DELAY_S, TOKEN_S, Watch, boots_before,
                      check_recovered_disk, check_single_boot_since, events, failover_events,
                      lab_cmd_async, log_where, put_ha_vm, vireod_log, wait_acked, wait_back)
from vmtest import (cli_has_vm, current_boot, ensure_guest, vm_cmd, vm_list, wait_heartbeat,
                    wait_heartbeats_go_on, wait_ready, wait_vm)

NODES = ["n1", "n2", "n3"]
SELF_FENCE_S = T.SELF_FENCE       # VIREO_SELF_FENCE_MS
SLACK_S = 1.5                     # a busy 2-core machine
PAUSE_S = 6.0                     # > detection + fence delay (3.2 s)
SETTLE_WATCH_S = 7.0              # two reconcile passes (3 T) after things settle


def partition(lab, watch):
    for name, ha in (("ha1", True), ("ha2", True), ("plain", False)):
        put_ha_vm(lab, name, "n3", ha=ha, prefer=True, watch=watch)
    for name in ("ha1", "ha2", "plain"):
        wait_acked(lab, name)
    before = boots_before(lab, ["ha1", "ha2", "plain"])
    log("ha1, ha2 (HA) and plain run on n3; cutting n3 off")
    t_wall = time.time() * 1000
    t0 = time.monotonic()
    lab.run("partition", "n1,n2", "n3")
    back = wait_back(lab, ["ha1", "ha2"], before, ["n1", "n2"], "n1", t0, FAILOVER_BOUND_S + 20)

    evs = failover_events(events(lab, "n1"), ["ha1", "ha2", "plain"], t_wall - 1000)
    n3_log = vireod_log(lab, "n3")
    for n, (took, node, bid) in sorted(back.items()):
        disk_last, acked = check_recovered_disk(lab, n, before[n][0], bid, before[n][1])
        e = evs[n]
        check("fencing" in e and "fenced" in e, "%s: no 'fencing' and 'fenced after' events: %s",
              n, e)
        # When n3's QEMU of n went away, and when the majority's appeared.
        gone = [t for t, hosts in watch.qemu.timeline.get(n, []) if t > t0 and "n3" not in hosts]
        new = [t for t, hosts in watch.qemu.timeline.get(n, []) if t > t0 and node in hosts]
        check(gone and new, "%s: the QEMU watch saw no hand-over: %s", n, watch.story(n, t0))
        t_gone, t_new = gone[0] - t0, new[0] - t0
        t_fenced = (e["fenced"] - t_wall) / 1000
        log(f"{n}: n3 destroyed it {t_gone:.2f} s after the cut; fencing at "
            f"{(e['fencing'] - t_wall) / 1000:.2f} s, fenced at {t_fenced:.2f} s; QEMU on {node} "
            f"at {t_new:.2f} s, heartbeating at {took:.2f} s; ACKED {acked}, DISK-LAST {disk_last}")
        check(f"self-fencing: destroyed HA guest {n}" in n3_log,
              "n3's vireod did not log destroying %s (self-fencing): %s", n,
              [l for l in n3_log.splitlines() if "fenc" in l][-5:])
        check(t_gone <= DETECTION_S + SELF_FENCE_S + SLACK_S, "%s still ran on n3 %.2f s after "
              "the cut, more than detection + self-fence (%.1f s) + %.1f s", n, t_gone,
              DETECTION_S + SELF_FENCE_S, SLACK_S)
        check(e["fenced"] - e["fencing"] >= FENCE_DELAY_S * 1000 - 50, "%s was fenced %d ms "
              "after 'fencing', sooner than the fence delay", n, e["fenced"] - e["fencing"])
        check(t_new >= t_fenced - 0.05, "%s's QEMU on %s appeared at %.2f s, before the fence "
              "was confirmed at %.2f s", n, node, t_new, t_fenced)
        check(took <= FAILOVER_BOUND_S, "%s came back %.2f s after the cut, more than the "
              "%.1f s bound", n, took, FAILOVER_BOUND_S)
    self_fence = [l for l in n3_log.splitlines() if "self-fencing" in l]
    log("n3: " + " | ".join(l.split("] ", 1)[-1] for l in self_fence[-4:]))

    # plain (not HA) runs on in n3; the majority never starts it.
    check(watch.qemu.hosts_of("plain") == {"n3"}, "plain (not HA) runs on %s during the "
          "partition: %s", watch.qemu.hosts_of("plain"), watch.story("plain", t0))
    v = vm_list(lab, "n1")["plain"]
    log(f"plain (not HA) during the partition: {v['state']} on {v['node']}: {v['message']!r}")
    check(v["state"] in ("fencing", "stopped") and v["node"] == "n3",
          "plain during the partition: %s", v)
    log_where(watch, ["ha1", "ha2", "plain"], t0)
    watch.check()

    t1 = time.monotonic()
    lab.run("heal")
    wait_until("n3 back and the cluster converged", lambda: converged(lab, NODES), 30,
               interval=0.25)
    log(f"healed; converged after {time.monotonic() - t1:.2f} s")
    end = time.monotonic() + SETTLE_WATCH_S
    while time.monotonic() < end:
        for n in ("ha1", "ha2"):
            check("n3" not in watch.qemu.hosts_of(n), "%s runs on n3 again after the heal: %s",
                  n, watch.story(n, t0))
        time.sleep(0.1)
    vms = vm_list(lab, "n1")
    for n, (_, node, bid) in back.items():
        check(vms[n]["state"] == "running" and vms[n]["node"] == node, "%s after the heal: %s",
              n, vms[n])
        check(current_boot(lab, n)[0] == bid, "%s booted again after the heal", n)
    v = vms["plain"]
    log(f"plain after the heal: {v['state']} on {v['node']}: {v['message']!r}")
    check(v["state"] == "running" and v["node"] == "n3", "plain after the heal: %s", v)
    check(current_boot(lab, "plain")[0] == before["plain"][0], "plain booted again")
    wait_heartbeats_go_on(lab, "plain", before["plain"][0], count=3)
    for n in ("ha1", "ha2", "plain"):
        check_single_boot_since(lab, n, before[n][0])
    log_where(watch, ["ha1", "ha2", "plain"], t0)
    watch.check()


def pause(lab, watch):
    host = vm_list(lab, "n1")["ha1"]["node"]
    if host == "n1":             # freeze a host that is not the manager's
        with watch.migrating("ha1"):
            vm_cmd(lab, "migrate", "ha1", "--to", "n2", timeout=180)
        host = "n2"
    wait_vm(lab, "ha1", lambda v: v and v["state"] == "running" and v["node"] == host,
            f"running on {host}")
    boot, _ = wait_heartbeat(lab, "ha1")
    before = boots_before(lab, ["ha1"])
    alive = [n for n in NODES if n != host]
    log(f"ha1 runs on {host}; freezing {host} for {PAUSE_S:.0f} s")
    t_wall = time.time() * 1000
    t0 = time.monotonic()
    p = lab_cmd_async(lab, "pause", host, str(PAUSE_S))
    # While it is frozen, the majority must start nothing: the leases are held.
    saw_fencing = False
    while p.poll() is None:
        check(watch.qemu.hosts_of("ha1") <= {host}, "ha1 started on %s while %s was frozen: %s",
              watch.qemu.hosts_of("ha1"), host, watch.story("ha1", t0))
        if not saw_fencing and time.monotonic() - t0 > DETECTION_S + FENCE_DELAY_S + 0.5:
            try:
                v = vm_list(lab, alive[0])["ha1"]
                saw_fencing = v["state"] == "fencing"
                if saw_fencing:
                    log(f"ha1 is 'fencing' {time.monotonic() - t0:.2f} s into the freeze: "
                        f"{v['message']!r}")
            except Exception:
                pass
        time.sleep(0.1)
    out = p.stdout.read().strip()
    check(p.returncode == 0, "vireo-lab pause failed: %s", out)
    t_thaw = time.monotonic() - t0
    log(f"{host} thawed after {t_thaw:.2f} s")

    def settled():
        v = vm_list(lab, alive[0])["ha1"]
        hosts = watch.qemu.hosts_of("ha1")
        return v["state"] == "running" and hosts == {v["node"]} and v
    v, took = wait_until("ha1 running on exactly one host", settled, 60, interval=0.2)
    if v["node"] != host:        # failed over: wait for the new boot
        wait_heartbeat(lab, "ha1", not_in={boot})
    end = time.monotonic() + SETTLE_WATCH_S
    while time.monotonic() < end:
        check(len(watch.qemu.hosts_of("ha1")) == 1, "ha1 on %s after it settled: %s",
              watch.qemu.hosts_of("ha1"), watch.story("ha1", t0))
        time.sleep(0.1)
    cur, _ = current_boot(lab, "ha1")
    log(f"ha1 settled {took:.2f} s after the thaw: running on {v['node']}, "
        f"{'the same boot' if cur == boot else 'new boot ' + cur[:8]}: {v['message']!r}")
    if cur != boot:
        check_recovered_disk(lab, "ha1", boot, cur, before["ha1"][1])
    wait_heartbeats_go_on(lab, "ha1", cur, count=3)
    check_single_boot_since(lab, "ha1", boot)
    evs = failover_events(events(lab, alive[0]), ["ha1"], t_wall - 1000)["ha1"]
    log("ha1 events: " + (", ".join(f"{k} {(evs[k] - t_wall) / 1000:.2f} s after the freeze"
                                    for k in ("fencing", "fenced") if k in evs) or "none")
        + (f" ({evs['fenced_text']!r})" if "fenced_text" in evs else ""))
    if "fenced" in evs:
        check(evs["fenced"] - t_wall >= t_thaw * 1000 - 100, "ha1 was fenced %.2f s into "
              "the freeze, before %s thawed (%.2f s) and freed its lease",
              (evs["fenced"] - t_wall) / 1000, host, t_thaw)
    log_where(watch, ["ha1"], t0)
    watch.check()


def test(lab: Lab):
    ensure_guest()
    t_all = time.monotonic()
    lab.up(3)
    cli_has_vm(lab)
    wait_ready(lab, NODES)
    watch = Watch(lab, NODES)
    try:
        partition(lab, watch)
        pause(lab, watch)
        log(f"qemu scans {watch.qemu.scans}, virsh samples {watch.virsh.check()}")
    finally:
        watch.stop()
    log(f"partition test body took {time.monotonic() - t_all:.1f} s")


main(test, "fopart")
