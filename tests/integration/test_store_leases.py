#!/usr/bin/python3
"""Disk leases on the shared pool, in a 2-host lab.

Both hosts see one pool (same id, mounted, writable, lease directory) and
run libvirt under lockd with its lockspace on the pool. A VM started with
virsh on n1 holds its disk's lease; starting the same disk on n2 fails with a
lock error and deleting the image from n2 is refused; once n1 destroys the VM
the lease is free and n2 starts it. A lease held from outside libvirt (as a
VM on another host would hold it) stops libvirt from starting the disk even
where QEMU's own image lock would not notice: that is virtlockd at work.

Uses tests/store/vireo-store-tool (built by make check) inside the hosts."""
import json
import os
import subprocess
import tempfile
import time

from labtest import BUILD_DIR, LAB_TOOL, Lab, check, log, main, skip, wait_until

TOOL = os.path.join(BUILD_DIR, "tests", "store", "vireo-store-tool")
POOL = "/var/lib/vireo/pool"
IMAGE = "leasetest"
DISK = f"{POOL}/images/{IMAGE}.qcow2"
GUEST = "/var/cache/vireo/guest"
DOMAIN = "storetest"


def domain_xml(kvm):
    """A tiny domain on the pool's disk. With the test guest built, it boots
    the guest's kernel; without, SeaBIOS finds nothing to boot and QEMU keeps
    running all the same, which is all a lease needs."""
    boot = ""
    if os.path.exists(f"{GUEST}/vmlinux") and os.path.exists(f"{GUEST}/initrd.img"):
        boot = (f"<kernel>{GUEST}/vmlinux</kernel><initrd>{GUEST}/initrd.img</initrd>"
                "<cmdline>console=ttyS0 quiet panic=-1</cmdline>")
    return f"""<domain type='{"kvm" if kvm else "qemu"}'>
  <name>{DOMAIN}</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type>{boot}</os>
  <on_poweroff>destroy</on_poweroff>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='none'/>
      <source file='{DISK}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <serial type='file'><source path='/var/log/libvirt/qemu/{DOMAIN}.serial'/></serial>
    <memballoon model='none'/>
  </devices>
</domain>
"""


def tool(lab, node, *args):
    p = lab.exec(node, TOOL, *args)
    return p.returncode, p.stdout, p.stderr.strip()


def lease_held(lab, node):
    rc, out, err = tool(lab, node, "lease-held", POOL, DISK)
    check(rc == 0, "lease-held on %s failed: %s", node, err)
    return out.strip() == "yes"


def virsh(lab, node, *args):
    p = lab.exec(node, "virsh", *args)
    return p.returncode, (p.stdout + p.stderr).strip()


def test(lab: Lab):
    if not os.access(TOOL, os.X_OK):
        skip(f"{TOOL} is not built; run make check (or make {os.path.relpath(TOOL, BUILD_DIR)})")
    kvm = os.path.exists("/dev/kvm")
    fd, xml = tempfile.mkstemp(prefix="vireo-storetest-", suffix=".xml")
    with os.fdopen(fd, "w") as f:
        f.write(domain_xml(kvm))
    try:
        run(lab, xml, kvm)
    finally:
        os.unlink(xml)


def run(lab, xml, kvm):
    lab.up(2)
    log(f"domain: {'kvm' if kvm else 'qemu (TCG)'}, "
        f"{'test guest kernel' if 'kernel' in domain_xml(kvm) else 'no kernel (SeaBIOS)'}")

    # -- one pool, initialised once (by the first vireod that checked it),
    # seen alike from both hosts
    def initialised():
        rc, out, err = tool(lab, "n1", "check", POOL, "--lockspace")
        return rc == 0 and json.loads(out)["id"]
    pool_id, took = wait_until("vireod initialises the fresh lab pool", initialised, 10)
    log(f"pool {pool_id} initialised by vireod {took:.2f} s after the lab was up")
    for node in ("n1", "n2"):
        rc, out, err = tool(lab, node, "init", POOL)
        check(rc == 1 and "initialised already" in err and pool_id in err,
              "another init on %s must refuse and name the pool: rc=%d %s", node, rc, err)
    def all_ok():
        rc, out, err = lab.vireo("n2", "node", "list", "--json")
        return rc == 0 and all(n["pool_ok"] for n in json.loads(out))
    wait_until("every vireod reports the pool usable", all_ok, 10)
    for node in ("n1", "n2"):
        rc, out, err = tool(lab, node, "check", POOL, "--lockspace", "--expect", pool_id)
        st = json.loads(out)
        check(rc == 0 and st["ok"], "pool check on %s: %s %s", node, out, err)
        check(st["id"] == pool_id, "%s sees pool %s, n1 initialised %s", node, st["id"], pool_id)
        check(st["mountpoint"] and st["fstype"] == "ext4", "%s: %s", node, out)
        log(f"pool check on {node}: id {st['id']}, {st['fstype']}, "
            f"{st['free_bytes'] >> 20} MiB free, {st['elapsed_us']} us")
        rc, out, err = tool(lab, node, "check-host", "/etc/libvirt", POOL)
        check(rc == 0, "libvirt on %s is not set up for leases on the pool: %s", node, err)
    rc, out, err = tool(lab, "n2", "check", POOL, "--expect", "00000000-0000-4000-8000-000000000000")
    check(rc == 1 and "but this cluster uses pool" in out, "wrong pool id not reported: %s", out)

    # -- an image, created on n1, listed on n2
    rc, out, err = tool(lab, "n1", "create", POOL, IMAGE, "64M")
    check(rc == 0, "create failed: %s", err)
    rc, out, err = tool(lab, "n2", "list", POOL)
    imgs = json.loads(out) if rc == 0 else []
    check([(i["name"], i["format"], i["virtual_bytes"]) for i in imgs] == [(IMAGE, "qcow2", 64 << 20)],
          "list on n2: %s %s", out, err)

    # -- a lease held elsewhere stops libvirt before QEMU opens the disk
    holder = subprocess.Popen([LAB_TOOL, "--name", lab.name, "exec", "n2", TOOL, "lease-hold", POOL, DISK],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=lab.env)
    try:
        line = holder.stdout.readline().strip()
        check(line == "held", "lease-hold on n2 said %r", line)
        check(lease_held(lab, "n1"), "n1 does not see the lease n2 holds")
        rc, msg = virsh(lab, "n1", "create", xml)
        log(f"start on n1 while n2 holds the lease: rc={rc}: {msg}")
        check(rc != 0, "the domain started on n1 although its lease is held on n2")
        check("Lockspace resource" in msg and "is locked" in msg,
              "the failure is not virtlockd's lease error: %s", msg)
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    check(not lease_held(lab, "n1"), "the lease stays held after its holder let go")

    # -- a VM on n1 holds the lease; n2 can neither start the disk nor delete it
    t0 = time.monotonic()
    rc, msg = virsh(lab, "n1", "create", xml)
    check(rc == 0, "start on n1 failed: %s", msg)
    log(f"started on n1 in {time.monotonic() - t0:.2f} s")
    check(lease_held(lab, "n2"), "n2 does not see the lease of the VM running on n1")
    rc, out, err = tool(lab, "n2", "info", POOL, IMAGE)
    check(rc == 0 and json.loads(out)["in_use"], "info on n2 does not say in use: %s %s", out, err)
    rc, msg = virsh(lab, "n2", "create", xml)
    log(f"start on n2 while n1 runs it: rc={rc}: {msg}")
    check(rc != 0, "the same disk started on n2 while it runs on n1")
    check("lock" in msg.lower(), "the failure on n2 does not mention a lock or lease: %s", msg)
    rc, _ = virsh(lab, "n2", "domstate", DOMAIN)
    check(rc != 0, "a domain %s exists on n2 after the failed start", DOMAIN)
    rc, out, err = tool(lab, "n2", "delete", POOL, IMAGE)
    check(rc == 1 and "in use by a running VM" in err, "delete on n2 of a running disk: rc=%d %s", rc, err)
    rc, out, err = tool(lab, "n2", "resize", POOL, IMAGE, "128M")
    check(rc == 1 and "in use by a running VM" in err, "resize on n2 of a running disk: rc=%d %s", rc, err)
    rc, state = virsh(lab, "n1", "domstate", DOMAIN)
    check(rc == 0 and state == "running", "the VM on n1 is %r after n2's attempts", state)

    # -- stopped on n1: the lease is free and n2 starts the disk
    rc, msg = virsh(lab, "n1", "destroy", DOMAIN)
    check(rc == 0, "destroy on n1 failed: %s", msg)
    check(not lease_held(lab, "n2"), "the lease is still held after the VM on n1 was destroyed")
    rc, msg = virsh(lab, "n2", "create", xml)
    check(rc == 0, "start on n2 after n1 let go failed: %s", msg)
    check(lease_held(lab, "n1"), "n1 does not see the lease of the VM now on n2")
    rc, msg = virsh(lab, "n1", "create", xml)
    check(rc != 0 and "lock" in msg.lower(), "n1 started the disk that now runs on n2: %s", msg)
    rc, msg = virsh(lab, "n2", "destroy", DOMAIN)
    check(rc == 0, "destroy on n2 failed: %s", msg)

    # -- free: deleted from n1, nothing left in the pool
    rc, out, err = tool(lab, "n1", "delete", POOL, IMAGE)
    check(rc == 0, "delete after both VMs stopped failed: %s", err)
    rc, out, err = tool(lab, "n2", "list", POOL)
    check(rc == 0 and json.loads(out) == [], "images left: %s", out)
    p = lab.exec("n2", "ls", "-A", f"{POOL}/leases")
    check(p.returncode == 0 and p.stdout.strip() == "", "lease files left in the pool: %s", p.stdout)


main(test, "store")
