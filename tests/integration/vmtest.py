"""Helpers for the integration tests of vireo's VMs (test_vm_*.py): the
test guest, `vireo vm` through the CLI inside a lab host, the guests'
consoles on the shared pool, and what libvirt says on each host."""
import hashlib
import json
import os
import re
import subprocess
import time

from labtest import SRC_DIR, TestFailure, check, log, skip, wait_until

GUEST_DIR = os.environ.get("VIREO_GUEST_DIR", "/var/cache/vireo/guest")
KERNEL = f"{GUEST_DIR}/vmlinux"
INITRD = f"{GUEST_DIR}/initrd.img"
CMDLINE = "console=ttyS0 quiet panic=-1 pci=noacpi cryptomgr.notests"
BUILD_GUEST = os.path.join(SRC_DIR, "tools", "guest", "build-guest")
POOL = "/var/lib/vireo/pool"          # inside a host
# Placement waits for every node's pool check (every few seconds) and
# acceleration probe; a guest boots in ~2.5 s under TCG on a busy machine.
READY_TIMEOUT = 30
RUN_TIMEOUT = 60

HEARTBEAT = re.compile(r"^HEARTBEAT (\d+) ([0-9a-f]{32}) (\d+)$")
START = re.compile(r"^VIREO-GUEST-START ([0-9a-f]{32})$")


def ensure_guest():
    """Builds the test guest if needed (cached), or skips the test."""
    log(f"building the test guest in {GUEST_DIR} if needed (slow the first time)")
    try:
        p = subprocess.run([BUILD_GUEST, "--out", GUEST_DIR], capture_output=True, text=True,
                           timeout=900)
    except (OSError, subprocess.TimeoutExpired) as e:
        skip(f"cannot build the test guest: {e}")
    if p.returncode != 0:
        skip(f"cannot build the test guest: {(p.stdout + p.stderr).strip()[-300:]}")


def cli_has_vm(lab, node="n1"):
    """The vireo CLI of this build knows `vm`; else the test is skipped."""
    p = lab.exec(node, "vireo", "--help")
    if " vm " not in p.stdout + p.stderr:
        skip("this build's vireo CLI has no 'vm' commands")


# ------------------------------------------------------------ cluster views

def vireo_json(lab, node, *args, timeout=90):
    rc, out, err = lab.vireo(node, *args, "--json", timeout=timeout)
    check(rc == 0, "vireo %s on %s failed (exit %d): %s", " ".join(args), node, rc, err.strip())
    try:
        return json.loads(out)
    except ValueError:
        raise TestFailure(f"vireo {' '.join(args)} --json on {node} printed no JSON: {out!r}")


def vm_list(lab, node="n1"):
    """{name: VM object} from `vireo vm list --json`."""
    vms = vireo_json(lab, node, "vm", "list")
    check(isinstance(vms, list), "vm list --json is not an array: %r", vms)
    return {v["name"]: v for v in vms}


def vm_show(lab, name, node="n1"):
    v = vireo_json(lab, node, "vm", "show", name)
    return v[0] if isinstance(v, list) and len(v) == 1 else v


def node_names(lab, node="n1"):
    st = lab.status(node)
    return [n["name"] for n in st["nodes"]] if st else []


def nodes_ready(lab, nodes, accel="tcg"):
    """Every node, seen from each, is online with a usable pool and the
    acceleration resolved to accel."""
    for seen_from in nodes:
        st = lab.status(seen_from)
        if not st or not st["quorate"]:
            return False
        by_name = {n["name"]: n for n in st["nodes"]}
        for n in nodes:
            x = by_name.get(n)
            check(x is None or ("pool_ok" in x and "accel" in x),
                  "vireo status --json shows no pool_ok and accel per node: %s", x)
            if not x or x["state"] != "online" or not x["pool_ok"] or x["accel"] != accel:
                return False
    return True


def wait_ready(lab, nodes):
    def why_not():
        st = lab.status(nodes[0]) or {}
        return [(n["name"], n.get("state"), n.get("pool_ok"), n.get("pool_message"),
                 n.get("accel")) for n in st.get("nodes", [])]
    try:
        _, took = wait_until("every node with pool ok and accel tcg",
                             lambda: nodes_ready(lab, nodes), READY_TIMEOUT, interval=0.25)
    except TestFailure as e:
        raise TestFailure(f"{e}; nodes (name, state, pool_ok, pool_message, accel): {why_not()}")
    log(f"all nodes ready for VMs (pool ok, accel tcg) after {took:.2f} s")
    return took


def wait_vm(lab, name, pred, what, timeout=RUN_TIMEOUT, node="n1"):
    """Polls vm list until pred(vm or None) holds; returns the VM."""
    last = {}

    def probe():
        last["vm"] = vm_list(lab, node).get(name)
        return pred(last["vm"]) and (last["vm"] or True)
    try:
        v, took = wait_until(f"VM {name} {what}", probe, timeout, interval=0.2)
    except TestFailure as e:
        raise TestFailure(f"{e}; VM is now {last.get('vm')}")
    return v, took


def create_args(name, memory="128M", vcpus=1, disks="64M", start=True, cmdline=CMDLINE, extra=()):
    args = ["vm", "create", name, "--vcpus", str(vcpus), "--memory", memory,
            "--kernel", KERNEL, "--initrd", INITRD, "--cmdline", cmdline]
    if disks:
        args += ["--disk", disks]
    if start:
        args.append("--start")
    return args + list(extra)


def create(lab, name, node="n1", **kw):
    """Creates (and by default starts) a VM with the test guest; returns the
    seconds the command took."""
    t0 = time.monotonic()
    rc, out, err = lab.vireo(node, *create_args(name, **kw), timeout=120)
    took = time.monotonic() - t0
    check(rc == 0, "vm create %s failed (exit %d): %s %s", name, rc, out.strip(), err.strip())
    return took


def vm_cmd(lab, *args, node="n1", expect_rc=0, timeout=120):
    """Runs `vireo vm ARGS`; checks the exit code; returns (seconds, stdout, stderr)."""
    t0 = time.monotonic()
    rc, out, err = lab.vireo(node, "vm", *args, timeout=timeout)
    took = time.monotonic() - t0
    check(rc == expect_rc, "vireo vm %s: exit %d, expected %d: %s %s", " ".join(args), rc,
          expect_rc, out.strip(), err.strip())
    return took, out, err


# ------------------------------------------------------------ pool, console

def pool_dir(lab):
    """The shared pool as the machine sees it."""
    return f"/tmp/vireo-lab/{lab.name}/pool"


def images(lab):
    d = os.path.join(pool_dir(lab), "images")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def console_text(lab, name):
    """The guest's serial log, read from the pool directly (every boot)."""
    try:
        with open(os.path.join(pool_dir(lab), "console", f"{name}.log"), errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def heartbeats(text):
    """[(n, boot_id, uptime_ms)] of the whole HEARTBEAT lines in text."""
    out = []
    for line in text.splitlines():
        m = HEARTBEAT.match(line.strip("\r"))
        if m:
            out.append((int(m.group(1)), m.group(2), int(m.group(3))))
    return out


def boots(text):
    """boot_ids in the order their START lines appear."""
    return [m.group(1) for m in (START.match(l.strip("\r")) for l in text.splitlines()) if m]


def current_boot(lab, name):
    """(boot_id, highest n) of the latest heartbeat, or (None, 0)."""
    hb = heartbeats(console_text(lab, name))
    return (hb[-1][1], hb[-1][0]) if hb else (None, 0)


def wait_heartbeat(lab, name, not_in=(), timeout=RUN_TIMEOUT):
    """Waits for a HEARTBEAT of a boot not in not_in; returns (boot_id, seconds)."""
    def probe():
        bid, _ = current_boot(lab, name)
        return bid if bid and bid not in not_in else None
    return wait_until(f"a heartbeat of a new boot of {name}", probe, timeout, interval=0.1)


def wait_heartbeats_go_on(lab, name, boot_id, count=5, timeout=20):
    """The same boot keeps heartbeating: count more heartbeats of boot_id."""
    _, n0 = current_boot(lab, name)

    def probe():
        bid, n = current_boot(lab, name)
        check(bid == boot_id, "VM %s: boot %s replaced boot %s", name, bid, boot_id)
        return n >= n0 + count
    wait_until(f"{count} more heartbeats of {name} boot {boot_id[:8]}", probe, timeout)


# ------------------------------------------------------------ libvirt

def virsh_domains(lab, node):
    """{name: state} of every domain libvirt defines on node."""
    p = lab.exec(node, "virsh", "list", "--all")
    check(p.returncode == 0, "virsh list on %s failed: %s", node, p.stderr.strip())
    doms = {}
    for line in p.stdout.splitlines()[2:]:
        parts = line.split(None, 2)
        if len(parts) == 3:
            doms[parts[1]] = parts[2].strip()
    return doms


def virsh_running(lab, node):
    return {n for n, s in virsh_domains(lab, node).items() if s == "running"}


def qemu_pid(lab, node, name):
    p = lab.exec(node, "cat", f"/run/libvirt/qemu/{name}.pid")
    if p.returncode != 0 or not p.stdout.strip().isdigit():
        return None
    return int(p.stdout.strip())


def kill_qemu(lab, node, name):
    pid = qemu_pid(lab, node, name)
    check(pid, "no pid file of %s's QEMU on %s", name, node)
    p = lab.exec(node, "kill", "-KILL", str(pid))
    check(p.returncode == 0, "kill %d on %s: %s", pid, node, p.stderr.strip())
    return pid


def check_virsh_agrees(lab, nodes):
    """Every host runs exactly the VMs the cluster says run there."""
    vms = vm_list(lab, nodes[0])
    for node in nodes:
        want = {n for n, v in vms.items() if v["node"] == node and v["state"] == "running"}
        have = virsh_running(lab, node)
        check(want == have, "on %s the cluster says %s run, virsh says %s", node, sorted(want),
              sorted(have))


# ------------------------------------------------------------ leases

def daemon_pid(lab, node, daemon):
    st = json.loads(lab.run("status", "--json").stdout)
    for n in st["nodes"]:
        if n["name"] == node:
            return n["daemons"][daemon]["pid"]
    return None


def lease_holders(lab, disk):
    """Pids holding a lock on the lockd lease of disk (a path inside the
    hosts). The lease file is sha256(path) in the pool's leases/; all lab
    hosts share one kernel, so /proc/locks shows every host's locks."""
    lease = os.path.join(pool_dir(lab), "leases", hashlib.sha256(disk.encode()).hexdigest())
    try:
        st = os.stat(lease)
    except FileNotFoundError:
        return set()
    dev = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    holders = set()
    with open("/proc/locks") as f:
        for line in f:
            parts = line.split()
            if "->" in parts:      # a waiter, not a holder
                continue
            if len(parts) >= 6 and parts[5] == dev:
                holders.add(int(parts[4]))
    return holders
