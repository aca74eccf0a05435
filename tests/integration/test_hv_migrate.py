#!/usr/bin/python3
"""Live migration through the libvirt driver (hypervisor/): a 2-host lab;
tests/hv/hv-smoke in n1 runs the test guest with a disk on the shared pool,
live-migrates it to n2's libvirtd (qemu+tcp://n2/system, peer to peer) and
checks that the same boot goes on there, that n1 no longer has it, and that
HV_EVENT_MIGRATION_DONE reported success."""
import os
import subprocess

from labtest import BUILD_DIR, SRC_DIR, Lab, check, log, main, skip

GUEST_DIR = os.environ.get("VIREO_GUEST_DIR", "/var/cache/vireo/guest")
SMOKE = os.path.join(BUILD_DIR, "tests", "hv", "hv-smoke")
BUILD_GUEST = os.path.join(SRC_DIR, "tools", "guest", "build-guest")
WORK_DIR = "/var/lib/vireo/pool/hv-smoke"


def test(lab: Lab):
    if not os.access(SMOKE, os.X_OK):
        skip(f"{SMOKE} is not built; run make")
    p = subprocess.run([BUILD_GUEST, "--out", GUEST_DIR], capture_output=True, text=True,
                       timeout=900)
    if p.returncode != 0:
        skip(f"cannot build the test guest: {(p.stdout + p.stderr).strip()[-300:]}")
    lab.up(2)
    # The driver on its own: vireod would treat the test's domains (vireo's
    # metadata, in no cluster state) as left over from deleted VMs.
    for node in ("n1", "n2"):
        lab.run("stop-daemon", node, "vireod")
    p = lab.exec("n1", SMOKE, "--guest", GUEST_DIR, "--dir", WORK_DIR, "--disk",
                 "--dest", "qemu+tcp://n2/system", "migrate", timeout=180)
    lines = p.stdout.splitlines()
    check(p.returncode == 0 and lines and lines[-1] == "OK", "hv-smoke migrate failed (exit %d):"
          "\n%s\n%s", p.returncode, p.stdout, p.stderr[-3000:])
    for line in lines:
        if line.startswith(("STEP migrate", "MIGRATION", "MIGRATED", "EVENT")):
            log(f"  {line}")
    check(any(l.startswith("EVENT stopped ") and l.endswith(" migrated") for l in lines),
          "the source reported no STOPPED (migrated) event")
    check(any(l.startswith("MIGRATED boot_id=") for l in lines), "no MIGRATED line")


main(test, "hvmig")
