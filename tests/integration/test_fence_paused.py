#!/usr/bin/python3
"""A host frozen while its HA guest is paused on a full pool is not fenced
by its free lease (vireo-chaos seed 11, tests/chaos/regressions).

QEMU pauses a guest whose disk write fails (ENOSPC), and libvirt lets the
guest's disk lease go when it pauses; the paused QEMU still has its disk
open (and locked) and runs on when resumed. On a 3-host lab:

  * ha1 runs on n3; the shared pool is filled until ha1's next write fails
    and libvirt on n3 shows it paused;
  * n3 is frozen for longer than detection + the fence delay: the manager
    must not start ha1 anywhere else (its image is locked by n3's QEMU),
    which failtest.Watch checks all along (QEMU processes every 20 ms,
    libvirt every 100 ms); the manager's log says the disks are held;
  * the pool gets its room back and n3 thaws: ha1 ends up running on
    exactly one host, with every acknowledged write.
"""
import os
import time

from labtest import TestFailure, check, log, main, wait_until
from failtest import (DETECTION_S, FENCE_DELAY_S, Watch, boots_before, check_recovered_disk,
                      check_single_boot_since, lab_cmd_async, put_ha_vm, vireod_log, wait_acked)
from vmtest import (cli_has_vm, current_boot, ensure_guest, pool_dir, virsh_domains, vm_list,
                    wait_heartbeats_go_on, wait_ready)

NODES = ["n1", "n2", "n3"]
PAUSE_S = 7.0                     # > detection + fence delay (3.2 s), with room


def fill_pool(lab):
    """Fills the pool's file system, reserved blocks too (vireod and QEMU run
    as root); returns the file's path."""
    pool = pool_dir(lab)
    path = os.path.join(pool, "test-fill")
    st = os.statvfs(pool)
    size = st.f_bfree * st.f_frsize
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    try:
        while size > (1 << 20):
            try:
                os.posix_fallocate(fd, 0, size)
                break
            except OSError:
                size -= max(1 << 20, size // 50)
    finally:
        os.close(fd)
    return path


def run(lab):
    ensure_guest()
    lab.up(3)
    cli_has_vm(lab)
    wait_ready(lab, NODES)
    watch = Watch(lab, NODES)
    fill = None
    try:
        boot = put_ha_vm(lab, "ha1", "n3", prefer=True, watch=watch)
        wait_acked(lab, "ha1")
        before = boots_before(lab, ["ha1"])
        fill = fill_pool(lab)
        log(f"pool filled ({os.statvfs(pool_dir(lab)).f_bfree * 4} KiB left); waiting for ha1 to pause")
        wait_until("ha1 paused on n3 (a failed write)",
                   lambda: virsh_domains(lab, "n3").get("ha1") == "paused", 60, interval=0.2)
        log("ha1 is paused on n3; freezing n3")
        t0 = time.monotonic()
        p = lab_cmd_async(lab, "pause", "n3", str(PAUSE_S))
        while p.poll() is None:
            check(watch.qemu.hosts_of("ha1") <= {"n3"}, "ha1 started on %s while n3 was frozen "
                  "with ha1 paused: %s", watch.qemu.hosts_of("ha1"), watch.story("ha1", t0))
            time.sleep(0.05)
        check(p.returncode == 0, "vireo-lab pause failed: %s", p.stdout.read())
        mgr = "".join(vireod_log(lab, n) for n in ("n1", "n2"))
        check("disks of VM ha1: in use" in mgr, "the manager never found ha1's disks held "
              "while n3 was frozen (%.1f s > detection %.1f + fence %.1f)", PAUSE_S, DETECTION_S,
              FENCE_DELAY_S)
        os.unlink(fill)
        fill = None
        log(f"n3 thawed after {time.monotonic() - t0:.2f} s; the pool has room again")

        # Thawed, n3 either rejoins in time (ha1 is resumed there, the same
        # boot) or finds it lost quorum while frozen and fences itself (ha1
        # boots again, on n3 or elsewhere): both are right, one guest at a time.
        def settled():
            v = vm_list(lab, "n1")["ha1"]
            cur, _ = current_boot(lab, "ha1")
            if v["state"] != "running" or watch.qemu.hosts_of("ha1") != {v["node"]}:
                return None
            try:
                wait_heartbeats_go_on(lab, "ha1", cur, count=3)
            except TestFailure:
                return None          # replaced meanwhile: look again
            return v, cur
        (v, cur), took = wait_until("ha1 running on exactly one host, heartbeating", settled, 120,
                                    interval=0.2)
        if cur != boot:
            check_recovered_disk(lab, "ha1", boot, cur, before["ha1"][1])
        check_single_boot_since(lab, "ha1", boot)
        log(f"ha1 settled {took:.2f} s later on {v['node']} "
            f"({'the same boot, resumed' if cur == boot else 'a new boot ' + cur[:8]})")
        watch.check()
    finally:
        if fill:
            os.unlink(fill)
        watch.stop()


if __name__ == "__main__":
    main(run, "fencepause")
