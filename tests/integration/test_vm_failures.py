#!/usr/bin/python3
"""What a VM survives, on a 2-host lab with the test guest:

  * its QEMU is killed: vireo starts it again on the same host (a new boot,
    restarts 1, running);
  * vireod on its host is killed and started again: the guest is adopted,
    the same boot heartbeats on, nothing is restarted;
  * libvirtd on its host is killed and started again: the VM stays running
    and vireo can still stop it;
  * its QEMU is killed more often than vm_restart_limit (3) allows within the
    window: the VM is 'error' with a message saying why, no guest runs, and
    `vm start` tries again;
  * it is deleted while vireod on its host is down: that vireod removes the
    definition once it is back, and leaves a domain vireo did not make alone.
"""
import time

from labtest import Lab, check, log, main, wait_until
from vmtest import (boots, cli_has_vm, console_text, create, current_boot, ensure_guest,
                    kill_qemu, qemu_pid, virsh_domains, vm_cmd, vm_list, wait_heartbeat,
                    wait_heartbeats_go_on, wait_ready, wait_vm)

NODES = ["n1", "n2"]
VM = "sturdy"
RESTART_LIMIT = 3


def kill_and_revive(lab, owner, boot, restarts):
    """Kills the guest's QEMU; it must come back on owner with a new boot."""
    t0 = time.monotonic()
    pid = kill_qemu(lab, owner, VM)
    new, _ = wait_heartbeat(lab, VM, not_in=boot)
    took = time.monotonic() - t0
    v, _ = wait_vm(lab, VM, lambda v: v and v["restarts"] == restarts and v["state"] == "running",
                   f"running with restarts {restarts}", timeout=20)
    check(v["node"] == owner, "%s was restarted on %s, not on its host %s", VM, v["node"], owner)
    check(qemu_pid(lab, owner, VM) not in (None, pid), "no new QEMU for %s on %s", VM, owner)
    check("QEMU died" in v["message"], "the message does not say why %s was restarted: %r", VM,
          v["message"])
    log(f"QEMU {pid} killed: new boot {new[:8]} heartbeating on {owner} {took:.2f} s later, "
        f"restarts {v['restarts']}, message {v['message']!r}")
    return new


def vireod_restart(lab, owner, boot):
    n_boots = len(boots(console_text(lab, VM)))
    t0 = time.monotonic()
    lab.run("stop-daemon", owner, "vireod")
    wait_heartbeats_go_on(lab, VM, boot, count=3)
    lab.run("start-daemon", owner, "vireod")
    wait_ready(lab, NODES)
    log(f"vireod on {owner} killed and back, cluster ready, in {time.monotonic() - t0:.2f} s")
    # Give the new vireod a few of its passes (every 3 s) to do something wrong.
    wait_heartbeats_go_on(lab, VM, boot, count=40, timeout=30)
    v = vm_list(lab)[VM]
    check(v["state"] == "running" and v["node"] == owner and v["restarts"] == 1,
          "%s after vireod restarted: %s", VM, v)
    check(len(boots(console_text(lab, VM))) == n_boots, "the guest booted again after vireod "
          "restarted: %s", boots(console_text(lab, VM)))
    log(f"vireod restart: guest adopted, boot {boot[:8]} goes on")


def libvirtd_restart(lab, owner, boot):
    t0 = time.monotonic()
    lab.run("stop-daemon", owner, "libvirtd")
    wait_heartbeats_go_on(lab, VM, boot, count=3)
    lab.run("start-daemon", owner, "libvirtd")
    log(f"libvirtd on {owner} killed and back in {time.monotonic() - t0:.2f} s")
    wait_until(f"virsh on {owner} to show {VM} running",
               lambda: virsh_domains(lab, owner).get(VM) == "running", 20)
    # vireod reconnects on its own; wait past a periodic pass (3 s).
    wait_heartbeats_go_on(lab, VM, boot, count=40, timeout=30)
    v = vm_list(lab)[VM]
    check(v["state"] == "running" and v["node"] == owner and v["restarts"] == 1,
          "%s after libvirtd restarted: %s", VM, v)
    n_before = len(console_text(lab, VM))
    took, _, _ = vm_cmd(lab, "stop", VM)
    v = vm_list(lab)[VM]
    check(v["state"] == "stopped", "%s after stop: %s", VM, v)
    check(virsh_domains(lab, owner).get(VM) == "shut off", "%s still runs on %s after vm stop",
          VM, owner)
    check("POWEROFF" in console_text(lab, VM)[n_before:], "%s was not powered off by ACPI", VM)
    log(f"libvirtd restart: VM kept running; vm stop afterwards took {took:.2f} s")


def restart_limit(lab, owner_hint):
    took, _, _ = vm_cmd(lab, "start", VM)
    v = vm_list(lab)[VM]
    owner = v["node"]
    check(v["state"] == "running" and v["restarts"] == 0, "%s after start: %s", VM, v)
    seen = set(boots(console_text(lab, VM)))
    boot, _ = wait_heartbeat(lab, VM, not_in=seen)
    log(f"{VM} started again on {owner} in {took:.2f} s (was on {owner_hint})")
    t0 = time.monotonic()
    for i in range(1, RESTART_LIMIT + 1):
        seen.add(boot)
        boot = kill_and_revive(lab, owner, seen, i)
    kill_qemu(lab, owner, VM)
    v, t = wait_vm(lab, VM, lambda v: v and v["state"] == "error", "in error", timeout=20)
    log(f"killed {RESTART_LIMIT + 1} times in {time.monotonic() - t0:.1f} s: error after {t:.2f} s: "
        f"{v['message']!r}")
    msg = v["message"]
    check(f"restarted {RESTART_LIMIT} times" in msg, "the error does not say the guest was "
          "restarted %d times: %r", RESTART_LIMIT, msg)
    check("QEMU died" in msg, "the error does not say why the guest stopped (its QEMU died): "
          "%r", msg)
    time.sleep(1)
    check(virsh_domains(lab, owner).get(VM) != "running", "%s runs on %s although it is in error",
          VM, owner)
    for node in NODES:
        check(virsh_domains(lab, node).get(VM) != "running", "%s runs on %s in error", VM, node)
    bid, _ = current_boot(lab, VM)
    check(bid == boot, "a boot after the last allowed restart: %s", bid)

    took, _, _ = vm_cmd(lab, "start", VM)
    v = vm_list(lab)[VM]
    check(v["state"] == "running" and v["restarts"] == 0, "%s after start from error: %s", VM, v)
    seen.add(boot)
    wait_heartbeat(lab, VM, not_in=seen)
    log(f"vm start after error: running again in {took:.2f} s")


def deleted_while_down(lab):
    """The VM is deleted while vireod on its host is down: the definition it
    left there goes once vireod is back; a domain vireo did not define stays."""
    owner = vm_list(lab)[VM]["node"]
    other = "n2" if owner == "n1" else "n1"
    vm_cmd(lab, "stop", "--force", VM)
    check(VM in virsh_domains(lab, owner), "%s is not defined on %s after stop", VM, owner)
    p = lab.exec(owner, "sh", "-c", "printf '%s' \"$1\" > /tmp/foreign.xml && "
                 "virsh define /tmp/foreign.xml", "sh", FOREIGN_XML)
    check(p.returncode == 0, "cannot define a foreign domain on %s: %s", owner, p.stderr)
    lab.run("stop-daemon", owner, "vireod")
    vm_cmd(lab, "delete", VM, node=other)
    lab.run("start-daemon", owner, "vireod")
    _, took = wait_until(f"{owner}'s vireod removes the definition of the deleted {VM}",
                         lambda: VM not in virsh_domains(lab, owner), 20)
    check("foreign" in virsh_domains(lab, owner), "vireod removed a domain it did not define")
    lab.exec(owner, "virsh", "undefine", "foreign")
    log(f"deleted while {owner}'s vireod was down: its definition removed {took:.2f} s after "
        f"vireod came back; a foreign domain kept")


FOREIGN_XML = """<domain type='qemu'><name>foreign</name><memory unit='MiB'>32</memory>
<vcpu>1</vcpu><os><type arch='x86_64' machine='pc'>hvm</type></os></domain>"""


def test(lab: Lab):
    ensure_guest()
    t_all = time.monotonic()
    lab.up(2)
    cli_has_vm(lab)
    wait_ready(lab, NODES)
    create(lab, VM)
    owner = vm_list(lab)[VM]["node"]
    boot, _ = wait_heartbeat(lab, VM)
    log(f"{VM} runs on {owner}, boot {boot[:8]}")

    boot = kill_and_revive(lab, owner, {boot}, 1)
    vireod_restart(lab, owner, boot)
    libvirtd_restart(lab, owner, boot)
    restart_limit(lab, owner)
    deleted_while_down(lab)
    log(f"failures test body took {time.monotonic() - t_all:.1f} s")


main(test, "vmfail")
