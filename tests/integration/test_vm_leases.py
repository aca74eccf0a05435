#!/usr/bin/python3
"""A vireo VM's disk lease guards it against a second guest on another host.

In a 2-host lab a VM runs on its owner, whose virtlockd holds the lease of
its disk. On the other host a domain is defined by hand (virsh define, type
qemu) on the same disk file and started: it must fail on a lock, and the VM
goes on running, the same boot heartbeating. Once vireo has stopped the VM
the lease is free and the very same hand-made domain starts: what stopped it
was the lock, not its XML. vireo then starts the VM again, and deleting it
leaves neither images nor lease files in the pool.

In the lab it is QEMU's own image lock that refuses first: libvirt launches
QEMU paused and takes lockd leases only when the CPUs start, while QEMU
locks the image as it opens it, and all lab hosts share one kernel. Where
the hosts do not share locks (NFS without them) the lease is what refuses;
test_store_leases.py covers that path with a lease held from outside."""
import os
import tempfile
import time

from labtest import Lab, check, log, main
from vmtest import (CMDLINE, INITRD, KERNEL, POOL, cli_has_vm, create, current_boot,
                    daemon_pid, ensure_guest, images, lease_holders, pool_dir, virsh_domains,
                    vm_cmd, vm_list, wait_heartbeat, wait_heartbeats_go_on, wait_ready)

NODES = ["n1", "n2"]
VM = "guarded"
INTRUDER = "intruder"
DISK = f"{POOL}/images/{VM}-disk1.qcow2"
LOCK_ERRORS = ("Lockspace resource", 'Failed to get "write" lock')


def intruder_xml():
    return f"""<domain type='qemu'>
  <name>{INTRUDER}</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{KERNEL}</kernel>
    <initrd>{INITRD}</initrd>
    <cmdline>{CMDLINE}</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='none'/>
      <source file='{DISK}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <serial type='file'><source path='/var/log/libvirt/qemu/{INTRUDER}.serial'/></serial>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
"""


def virsh(lab, node, *args):
    p = lab.exec(node, "virsh", *args)
    return p.returncode, " ".join((p.stdout + p.stderr).split())


def test(lab: Lab):
    ensure_guest()
    fd, xml = tempfile.mkstemp(prefix="vireo-intruder-", suffix=".xml")
    with os.fdopen(fd, "w") as f:
        f.write(intruder_xml())
    try:
        run(lab, xml)
    finally:
        os.unlink(xml)


def run(lab, xml):
    lab.up(2)
    cli_has_vm(lab)
    wait_ready(lab, NODES)
    took = create(lab, VM)
    owner = vm_list(lab)[VM]["node"]
    other = "n2" if owner == "n1" else "n1"
    boot, _ = wait_heartbeat(lab, VM)
    log(f"{VM} runs on {owner} (create --start {took:.2f} s), boot {boot[:8]}; intruding from {other}")
    lockd = daemon_pid(lab, owner, "virtlockd")
    check(lease_holders(lab, DISK) == {lockd}, "the lease of %s should be held by virtlockd "
          "(%s) of %s, is held by %s", DISK, lockd, owner, lease_holders(lab, DISK))

    rc, msg = virsh(lab, other, "define", xml)
    check(rc == 0, "virsh define on %s failed: %s", other, msg)
    t0 = time.monotonic()
    rc, msg = virsh(lab, other, "start", INTRUDER)
    log(f"virsh start of the same disk on {other}: rc={rc} in {time.monotonic() - t0:.2f} s: {msg}")
    check(rc != 0, "a second guest started on %s on the disk %s runs on", other, VM)
    check(any(e in msg for e in LOCK_ERRORS), "the failure is not a lock error: %s", msg)
    check(lease_holders(lab, DISK) == {lockd}, "after the intrusion the lease of %s is held by "
          "%s, not by %s's virtlockd %s", DISK, lease_holders(lab, DISK), owner, lockd)
    state = virsh_domains(lab, other).get(INTRUDER)
    check(state == "shut off", "the intruder on %s is %r after its failed start", other, state)

    v = vm_list(lab)[VM]
    check(v["state"] == "running" and v["node"] == owner and v["restarts"] == 0,
          "%s after the intrusion: %s", VM, v)
    wait_heartbeats_go_on(lab, VM, boot, count=5)
    check(virsh_domains(lab, owner).get(VM) == "running", "%s is not running on %s", VM, owner)

    # The same domain does start once the VM let go of its disk.
    vm_cmd(lab, "stop", VM)
    check(not lease_holders(lab, DISK), "the lease of %s is still held after vm stop: %s", DISK,
          lease_holders(lab, DISK))
    rc, msg = virsh(lab, other, "start", INTRUDER)
    check(rc == 0, "with %s stopped the intruder should start on %s: %s", VM, other, msg)
    log(f"{VM} stopped: the same domain starts on {other}, so the lock was what stopped it")
    rc, msg = virsh(lab, other, "destroy", INTRUDER)
    check(rc == 0, "virsh destroy on %s: %s", other, msg)
    rc, msg = virsh(lab, other, "undefine", INTRUDER)
    check(rc == 0, "virsh undefine on %s: %s", other, msg)

    took, _, _ = vm_cmd(lab, "start", VM)
    new, _ = wait_heartbeat(lab, VM, not_in={boot})
    log(f"{VM} started again by vireo in {took:.2f} s on {vm_list(lab)[VM]['node']}")
    bid, _ = current_boot(lab, VM)
    check(bid == new, "boot %s of %s is not the latest", new, VM)
    vm_cmd(lab, "stop", "--force", VM)
    _, out, err = vm_cmd(lab, "delete", "--purge", VM)
    check(images(lab) == [], "images left in the pool after vm delete (which said %r %r): %s",
          out.strip(), err.strip(), images(lab))
    leases = os.listdir(os.path.join(pool_dir(lab), "leases"))
    check(leases == [], "lease files left in the pool: %s", leases)


main(test, "vmlease")
