#!/usr/bin/python3
"""VMs through `vireo vm` on a 3-host lab, with the test guest:

  * the nodes become ready (pool ok, acceleration tcg); three VMs created
    with --start each run, one per host; every host's libvirt runs exactly
    the VMs the cluster puts there; the console shows heartbeats;
  * bad specs (sizes, vCPUs, duplicate and invalid names, unknown node,
    missing kernel) are refused with exit 2 and one line naming the
    problem, and change neither the VM list nor the pool;
  * stop powers the guest off (ACPI), start and restart boot it anew (a new
    boot_id), and the VM just restarted stops by ACPI too; stop --force
    destroys a guest that ignores the power button (acpi=off) while a
    graceful stop of it waits; delete removes the VM and its domain on every
    host, and keeps its disk and console log unless --purge.
"""
import os
import re
import subprocess
import time

from labtest import LAB_TOOL, Lab, TestFailure, check, log, main, wait_until
from timeouts import T
from vmtest import (CMDLINE, INITRD, KERNEL, boots, check_virsh_agrees, cli_has_vm,
                    console_text, create, create_args, current_boot, ensure_guest, heartbeats,
                    images, pool_dir, vm_cmd, vm_list, vm_show, virsh_domains, wait_heartbeat,
                    wait_heartbeats_go_on, wait_ready, wait_vm)

NODES = ["n1", "n2", "n3"]
VMS = ["web", "db", "cache"]
DEAF = "cache"          # its guest has no power button (acpi=off)
GRACE_S = T.HV_SHUTDOWN # vireo's ACPI grace before it destroys a guest
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def check_show(lab, name):
    v = vm_show(lab, name, node="n2")
    check(v.get("name") == name, "vm show %s: name %r", name, v.get("name"))
    check(v.get("state") == "running" and v.get("want_running") is True,
          "vm show %s: state %r want_running %r", name, v.get("state"), v.get("want_running"))
    check(v.get("node") in NODES, "vm show %s: node %r", name, v.get("node"))
    check(v.get("memory_mib") == 128 and v.get("vcpus") == 1, "vm show %s: memory %r vcpus %r",
          name, v.get("memory_mib"), v.get("vcpus"))
    check(v.get("ha") is False, "vm show %s: ha %r, created without --ha", name, v.get("ha"))
    check(isinstance(v.get("uuid"), str) and UUID.match(v["uuid"]), "vm show %s: uuid %r", name,
          v.get("uuid"))
    check(isinstance(v.get("generation"), int) and v["generation"] >= 1,
          "vm show %s: generation %r", name, v.get("generation"))
    check(v.get("restarts") == 0, "vm show %s: restarts %r", name, v.get("restarts"))
    check(isinstance(v.get("message"), str), "vm show %s: message %r", name, v.get("message"))
    listed = vm_list(lab)[name]
    for k in ("name", "state", "node", "uuid", "generation", "memory_mib", "vcpus"):
        check(listed.get(k) == v.get(k), "vm show and vm list disagree on %s: %r vs %r", k,
              v.get(k), listed.get(k))
    return v


def create_three(lab):
    took = {}
    for name in VMS:
        took[name] = create(lab, name, cmdline=CMDLINE + " acpi=off" if name == DEAF else CMDLINE)
    vms = vm_list(lab)
    for name in VMS:
        check(vms[name]["state"] == "running", "%s is %s after create --start returned: %s", name,
              vms[name]["state"], vms[name])
    owners = {vms[n]["node"] for n in VMS}
    log("create --start: " + ", ".join(f"{n} {took[n]:.2f} s on {vms[n]['node']}" for n in VMS))
    check(owners == set(NODES), "three VMs should spread over three hosts, they run on %s",
          {n: vms[n]["node"] for n in VMS})
    check_virsh_agrees(lab, NODES)
    boot = {}
    for name in VMS:
        boot[name], t = wait_heartbeat(lab, name)
        log(f"{name}: first heartbeat of boot {boot[name][:8]} seen {t:.2f} s after the check began")
    for name in VMS:
        _, out, _ = vm_cmd(lab, "console", name, node="n3")
        hb = heartbeats(out)
        check(hb, "vireo vm console %s shows no HEARTBEAT line:\n%s", name, out[-500:])
        check(hb[-1][1] == boot[name], "vm console %s shows boot %s, the pool log says %s", name,
              hb[-1][1], boot[name])
    for name in VMS:
        check(images(lab).count(f"{name}-disk1.qcow2") == 1, "no disk image of %s in the pool: %s",
              name, images(lab))
        check_show(lab, name)
    return boot


def bad(lab, args, what, pattern):
    """A request that must change nothing: exit 2, one line on stderr."""
    before_vms, before_imgs = vm_list(lab), images(lab)
    rc, out, err = lab.vireo("n1", *args)
    lines = err.strip().splitlines()
    check(rc == 2, "%s: exit %d, expected 2 (stdout %r, stderr %r)", what, rc, out, err)
    check(len(lines) == 1, "%s: stderr should be one line, is %r", what, err)
    check(re.search(pattern, lines[0], re.I), "%s: message %r does not name the problem (%s)", what,
          lines[0], pattern)
    after_vms = vm_list(lab)
    check(set(after_vms) == set(before_vms), "%s changed the VM list: %s -> %s", what,
          sorted(before_vms), sorted(after_vms))
    for n, v in before_vms.items():
        check((after_vms[n]["state"], after_vms[n]["generation"]) == (v["state"], v["generation"]),
              "%s changed VM %s: %s -> %s", what, n, v, after_vms[n])
    check(images(lab) == before_imgs, "%s changed the pool's images: %s -> %s", what,
          before_imgs, images(lab))
    log(f"refused as it should: {what}: {lines[0]}")


def bad_specs(lab):
    cases = [
        ("memory 0", create_args("bad1", memory="0"), r"memory"),
        ("memory 100T", create_args("bad2", memory="100T"), r"memory|100T"),
        ("memory 1T, more than any node has", create_args("bad2", memory="1T"), r"memory|MiB"),
        ("999 vCPUs", create_args("bad3", vcpus=999), r"vcpu|cpu"),
        ("a duplicate name", create_args("web"), r"web.*exist|exist.*web"),
        ("a name with /", create_args("a/b"), r"name"),
        ("a name with <", create_args("a<b"), r"name"),
        ("a name with a space", create_args("a b"), r"name"),
        ("a 65-character name", create_args("x" * 65), r"name|long|64"),
        ("an unknown --node", create_args("bad4", extra=["--node", "n9"]), r"n9"),
        ("a missing kernel", ["vm", "create", "bad5", "--vcpus", "1", "--memory", "128M",
                              "--disk", "64M", "--kernel", "/nonexistent/vmlinux", "--initrd",
                              INITRD, "--cmdline", CMDLINE, "--start"], r"/nonexistent/vmlinux"),
        ("start of an unknown VM", ["vm", "start", "nosuchvm"], r"nosuchvm"),
    ]
    t0 = time.monotonic()
    for what, args, pattern in cases:
        bad(lab, args, what, pattern)
    log(f"{len(cases)} bad requests refused in {time.monotonic() - t0:.1f} s")


def stop_start(lab, name, boot):
    graceful_stop(lab, name)
    check_virsh_agrees(lab, NODES)

    took, _, _ = vm_cmd(lab, "start", name)
    v = vm_list(lab)[name]
    check(v["state"] == "running", "%s after start: %s", name, v)
    new, t = wait_heartbeat(lab, name, not_in={boot})
    log(f"vm start {name}: {took:.2f} s to running on {v['node']}, "
        f"new boot {new[:8]} heartbeating {took + t:.2f} s after the command")
    check_virsh_agrees(lab, NODES)
    return new


def restart(lab, name, boot):
    took, _, _ = vm_cmd(lab, "restart", name)
    v = vm_list(lab)[name]
    check(v["state"] == "running", "%s after restart: %s", name, v)
    new, t = wait_heartbeat(lab, name, not_in={boot})
    log(f"vm restart {name}: {took:.2f} s, new boot {new[:8]} heartbeating {took + t:.2f} s "
        f"after the command")
    wait_heartbeats_go_on(lab, name, new, count=3)
    check_virsh_agrees(lab, NODES)
    return new


def force_stop(lab, name):
    """name's guest ignores the power button (acpi=off): a graceful stop
    waits out its grace, and a forced stop meanwhile ends it at once."""
    owner = vm_list(lab)[name]["node"]
    n_before = len(console_text(lab, name))
    graceful = subprocess.Popen([LAB_TOOL, "--name", lab.name, "exec", "n2", "vireo", "vm", "stop",
                                 name], env=lab.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    try:
        wait_vm(lab, name, lambda v: v and v["state"] == "stopping", "stopping", timeout=20)
        took, _, _ = vm_cmd(lab, "stop", "--force", name)
        out, err = graceful.communicate(timeout=60)
    finally:
        if graceful.poll() is None:
            graceful.kill()
            graceful.wait()
    v = vm_list(lab)[name]
    check(v["state"] == "stopped", "%s after stop --force: %s", name, v)
    check(took < GRACE_S * 2 / 3, "stop --force of %s took %.1f s: it waited for the %d s grace "
          "of the graceful stop in progress", name, took, GRACE_S)
    check(graceful.returncode == 0, "the graceful vm stop of %s running meanwhile failed (%d): %s",
          name, graceful.returncode, err.strip())
    state = virsh_domains(lab, owner).get(name)
    check(state == "shut off", "%s after stop --force: virsh on %s says %r", name, owner, state)
    tail = console_text(lab, name)[n_before:]
    check("POWEROFF" not in tail, "the guest of %s heard the power button with acpi=off:\n%s",
          name, tail[-300:])
    log(f"vm stop --force {name} during a graceful stop it ignores: {took:.2f} s")


def graceful_stop(lab, name):
    owner = vm_list(lab)[name]["node"]
    n_before = len(console_text(lab, name))
    took, _, _ = vm_cmd(lab, "stop", name)
    v = vm_list(lab)[name]
    check(v["state"] == "stopped" and v["want_running"] is False, "%s after stop: %s", name, v)
    state = virsh_domains(lab, owner).get(name)
    check(state == "shut off", "%s after vm stop: virsh on %s says %r", name, owner, state)
    tail = console_text(lab, name)[n_before:]
    check("POWEROFF" in tail, "%s was not powered off through ACPI (no POWEROFF):\n%s", name,
          tail[-300:])
    log(f"vm stop {name}: {took:.2f} s (ACPI power-off)")
    return took


def delete(lab, name, purge):
    args = ["delete", name] + (["--purge"] if purge else [])
    took, _, _ = vm_cmd(lab, *args)
    for node in NODES:
        check(name not in vm_list(lab, node), "%s still listed on %s after delete", name, node)

    def undefined_everywhere():
        return all(name not in virsh_domains(lab, n) for n in NODES)
    try:
        _, t = wait_until(f"domain {name} undefined on every host", undefined_everywhere, 15)
    except TestFailure as e:
        raise TestFailure(f"{e}: {({n: virsh_domains(lab, n).get(name) for n in NODES})}")
    disk = f"{name}-disk1.qcow2"
    if purge:
        check(disk not in images(lab), "delete --purge %s left its disk in the pool: %s", name,
              images(lab))
        check(not console_exists(lab, name), "delete --purge %s left its console log", name)
    else:
        check(disk in images(lab), "delete %s (without --purge) removed its disk: %s", name,
              images(lab))
        check(console_exists(lab, name), "delete %s (without --purge) removed its console log",
              name)
    log(f"vm {' '.join(args)}: {took:.2f} s; domain undefined on every host {t:.2f} s later; "
        f"disk {'removed' if purge else 'kept'}")


def console_exists(lab, name):
    return os.path.exists(os.path.join(pool_dir(lab), "console", f"{name}.log"))


def test(lab: Lab):
    ensure_guest()
    t_all = time.monotonic()
    lab.up(3)
    cli_has_vm(lab)
    wait_ready(lab, NODES)
    boot = create_three(lab)
    bad_specs(lab)

    boot["web"] = stop_start(lab, "web", boot["web"])
    check(len(set(boots(console_text(lab, "web")))) == 2, "web should have booted twice: %s",
          boots(console_text(lab, "web")))
    boot["db"] = restart(lab, "db", boot["db"])
    # Stopping the VM that was just restarted asks its new guest, which
    # powers off; nothing left over from the restart's stop interferes.
    graceful_stop(lab, "db")
    force_stop(lab, DEAF)
    bid, _ = current_boot(lab, "web")
    check(bid == boot["web"], "web rebooted behind our back: %s", bid)

    delete(lab, DEAF, purge=True)
    graceful_stop(lab, "web")
    delete(lab, "web", purge=False)
    delete(lab, "db", purge=True)
    check(vm_list(lab) == {}, "VMs left: %s", vm_list(lab))
    check(images(lab) == ["web-disk1.qcow2"], "the pool should hold only the kept disk: %s",
          images(lab))
    log(f"lifecycle test body took {time.monotonic() - t_all:.1f} s")


main(test, "vmlife")
