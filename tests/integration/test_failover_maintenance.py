#!/usr/bin/python3
"""Maintenance and evacuation on a 3-host lab with the test guest, while
failtest.Watch checks all along that libvirt never shows a guest running on
two hosts (a live migration has a QEMU on both ends, so the QEMU-process
watch excuses the guests while they move):

  * `vireo node maintenance enter n2` with m1 (HA) and m2 (not HA) running
    on n2: both move live (the same boot goes on: no guest restart, the
    ACKED sequence goes on) and n2 is in maintenance; a VM created with
    --prefer n2 does not land there; `maintenance exit n2` lifts it (the
    next VM preferring n2 lands there) and moves nothing back;
  * `vireo node evacuate n3`: its VMs move live, the same boots, and n3 is
    active again by itself afterwards.
"""
import time

from labtest import Lab, check, log, main, wait_until
from failtest import Watch, max_acked, put_ha_vm, wait_acked
from vmtest import (boots, cli_has_vm, console_text, create, current_boot, ensure_guest,
                    vireo_json, vm_list, wait_heartbeat, wait_heartbeats_go_on, wait_ready,
                    wait_vm)

NODES = ["n1", "n2", "n3"]
ALL = ("m1", "m2", "m3", "m4")


def modes(lab, via="n1"):
    return {n["name"]: n.get("mode") for n in vireo_json(lab, via, "node", "list")}


def node_cmd(lab, *args, via="n1", timeout=300):
    t0 = time.monotonic()
    rc, out, err = lab.vireo(via, "node", *args, timeout=timeout)
    took = time.monotonic() - t0
    check(rc == 0, "vireo node %s: exit %d: %s %s", " ".join(args), rc, out.strip(), err.strip())
    for line in out.strip().splitlines():
        log(f"  | {line}")
    return took


def snapshot(lab, names):
    """{vm: (boot_id, number of boots on its console, highest ACKED)}."""
    return {n: (current_boot(lab, n)[0], len(boots(console_text(lab, n))), max_acked(lab, n))
            for n in names}


def check_moved_live(lab, names, before, away_from):
    vms = vm_list(lab)
    for n in names:
        v = vms[n]
        check(v["state"] == "running" and v["node"] not in (None, away_from),
              "%s should run off %s: %s", n, away_from, v)
        boot, n_boots, acked = before[n]
        wait_heartbeats_go_on(lab, n, boot, count=3)
        check(len(boots(console_text(lab, n))) == n_boots, "%s booted again while moving off %s",
              n, away_from)
        wait_until(f"{n}'s ACKED sequence going on", lambda: max_acked(lab, n) > acked, 10)
        lm = v.get("last_migration") or {}
        log(f"{n}: {away_from} -> {v['node']}, {lm.get('kind')} migration, downtime "
            f"{lm.get('downtime_ms')} ms, the same boot {boot[:8]}")


def test(lab: Lab):
    ensure_guest()
    t_all = time.monotonic()
    lab.up(3)
    cli_has_vm(lab)
    wait_ready(lab, NODES)
    watch = Watch(lab, NODES)
    try:
        put_ha_vm(lab, "m1", "n2", prefer=True, watch=watch)
        put_ha_vm(lab, "m2", "n2", ha=False, prefer=True, watch=watch)
        for n in ("m1", "m2"):
            wait_acked(lab, n)
        before = snapshot(lab, ["m1", "m2"])

        with watch.migrating(*ALL):
            took = node_cmd(lab, "maintenance", "enter", "n2")
        log(f"maintenance enter n2 took {took:.2f} s")
        check(modes(lab)["n2"] == "maintenance", "n2's mode: %s", modes(lab))
        check_moved_live(lab, ["m1", "m2"], before, "n2")

        # n2 takes nothing new, even for a VM that prefers it.
        create(lab, "m3", extra=["--prefer", "n2"])
        v = vm_list(lab)["m3"]
        check(v["state"] == "running" and v["node"] != "n2", "m3 (prefers n2) landed on n2 in "
              "maintenance: %s", v)
        wait_heartbeat(lab, "m3")
        log(f"m3 (--prefer n2) was placed on {v['node']}, not on n2 in maintenance")

        node_cmd(lab, "maintenance", "exit", "n2")
        check(modes(lab)["n2"] == "active", "n2's mode after exit: %s", modes(lab))
        vms = vm_list(lab)
        check(all(vms[n]["node"] != "n2" for n in ("m1", "m2", "m3")),
              "maintenance exit moved VMs back: %s", {n: vms[n]["node"] for n in vms})
        create(lab, "m4", extra=["--prefer", "n2"])
        v = vm_list(lab)["m4"]
        check(v["state"] == "running" and v["node"] == "n2", "after maintenance exit, m4 "
              "(prefers n2) runs on %s, not n2", v["node"])
        wait_heartbeat(lab, "m4")
        log("maintenance exit n2: nothing moved back; m4 (--prefer n2) was placed on n2")

        # Evacuation of n3: give it two VMs first.
        on3 = [n for n, v in vm_list(lab).items() if v["node"] == "n3"]
        for n in ("m1", "m2", "m3"):
            if len(on3) >= 2:
                break
            if n not in on3:
                with watch.migrating(n):
                    rc, out, err = lab.vireo("n1", "vm", "migrate", n, "--to", "n3", "--live",
                                             timeout=180)
                check(rc == 0, "vm migrate %s --to n3: %s %s", n, out, err)
                on3.append(n)
        for n in on3:
            wait_vm(lab, n, lambda v: v and v["state"] == "running" and v["node"] == "n3",
                    "running on n3")
            wait_acked(lab, n)
        before = snapshot(lab, on3)
        with watch.migrating(*ALL):
            took = node_cmd(lab, "evacuate", "n3")
        log(f"evacuate n3 ({', '.join(on3)}) took {took:.2f} s")
        check_moved_live(lab, on3, before, "n3")
        _, t = wait_until("n3 active again after its evacuation",
                          lambda: modes(lab)["n3"] == "active", 20)
        vms = vm_list(lab)
        check(not [n for n, v in vms.items() if v["node"] == "n3"], "VMs left on n3: %s",
              {n: v["node"] for n, v in vms.items()})
        log(f"n3 evacuated and active again ({t:.2f} s after the command returned); VMs now "
            f"{ {n: v['node'] for n, v in sorted(vms.items())} }")
        scans, samples = watch.check()
        log(f"qemu scans {scans}, virsh samples {samples}")
    finally:
        watch.stop()
    log(f"maintenance test body took {time.monotonic() - t_all:.1f} s")


main(test, "fomnt")
