#!/usr/bin/python3
"""Integration test of the lab itself (tools/vireo-lab), no guests.

Builds a 3-host lab and checks quorum, the per-host libvirtd, host death and
reboot, a partition and its healing, a pause, killing one daemon, and that
`down` leaves nothing behind; then a quick 5-host up/down.

Exit status: 0 pass, 1 fail, 77 skipped (not root, tools missing).
Environment: VIREO_BUILD_DIR as for vireo-lab; VIREO_LAB_TOOL overrides the
path of vireo-lab.
"""

import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import time

SRC_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
TOOL = os.environ.get("VIREO_LAB_TOOL", f"{SRC_DIR}/tools/vireo-lab")
# Unique per run: two runs of this test at once must not tear down each other's lab.
LAB = f"tlab{os.getpid() % 100000}"
LAB5 = f"tlab5x{os.getpid() % 100000}"
failures = 0


class Abort(Exception):
    pass


def check(cond, what, detail=""):
    """Print one line per check; a failed check says where it is and what was seen."""
    global failures
    if cond:
        print(f"ok    {what}", flush=True)
        return True
    failures += 1
    line = inspect.currentframe().f_back.f_lineno
    print(f"FAIL  {what} ({os.path.basename(__file__)}:{line}){': ' + str(detail) if detail else ''}",
          flush=True)
    return False


def require(cond, what, detail=""):
    if not check(cond, what, detail):
        raise Abort(what)


def lab(*args, name=LAB, timeout=90):
    return subprocess.run([TOOL, "--name", name] + list(args), capture_output=True, text=True,
                          timeout=timeout)


def quorum(node, name=LAB):
    """(members, quorate) as node's corosync reports it, or None."""
    r = lab("exec", node, "corosync-quorumtool", "-s", name=name, timeout=10)
    m = re.search(r"Nodes:\s+(\d+).*?Quorate:\s+(\w+)", r.stdout, re.S)
    return (int(m.group(1)), m.group(2) == "Yes") if m else None


def wait_views(want, timeout, name=LAB):
    """Poll until every node in want (node -> (members, quorate)) reports it; returns (ok, views, secs)."""
    t0 = time.monotonic()
    while True:
        views = {n: quorum(n, name) for n in want}
        if views == want:
            return True, views, time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            return False, views, time.monotonic() - t0
        time.sleep(0.1)


def status(name=LAB):
    r = lab("status", "--json", name=name)
    return json.loads(r.stdout) if r.returncode == 0 else None


def host(doc, node):
    return next(n for n in doc["nodes"] if n["name"] == node)


def check_gone(name):
    """Everything `down` must remove for lab name."""
    r = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    left = [l.split()[0] for l in r.stdout.splitlines() if l.startswith(f"vl-{name}-")]
    check(not left, f"no network namespace vl-{name}-* remains", left)
    with open("/proc/self/mountinfo") as f:
        mounts = [l.split()[4] for l in f if l.split()[4].startswith(f"/tmp/vireo-lab/{name}")]
    check(not mounts, f"no mount under /tmp/vireo-lab/{name} remains", mounts)
    cg = f"/sys/fs/cgroup/freezer/vireo-lab/{name}"
    procs = []
    for root, _, files in os.walk(cg):
        if "cgroup.procs" in files:
            with open(f"{root}/cgroup.procs") as f:
                procs += f.read().split()
    check(not procs and not os.path.exists(cg), f"no process and no cgroup left in {cg}", procs)
    loops = []
    for dev in os.listdir("/sys/block"):
        try:
            with open(f"/sys/block/{dev}/loop/backing_file") as f:
                if f.read().startswith(f"/tmp/vireo-lab/{name}/"):
                    loops.append(dev)
        except OSError:
            pass
    check(not loops, "no loop device of the pool remains", loops)
    check(not os.path.exists(f"/tmp/vireo-lab/{name}"), f"/tmp/vireo-lab/{name} is gone")


def test_three():
    all3 = {n: (3, True) for n in ("n1", "n2", "n3")}

    r = lab("up", "3")
    require(r.returncode == 0, "vireo-lab up 3 succeeds", (r.stderr or r.stdout).strip())
    print(f"      {r.stdout.strip()}")
    ok, views, _ = wait_views(all3, 1)
    check(ok, "corosync on n1, n2, n3 is quorate with 3 members", views)

    r = lab("up", "3")
    check(r.returncode == 1 and "already exists" in r.stderr, "a second up of the same lab is refused", r.stderr)
    r = lab("up", "17", name="labtest-bad")
    check(r.returncode == 2, "up 17 is bad usage (exit 2)", r.returncode)

    r = lab("exec", "n1", "virsh", "list")
    check(r.returncode == 0 and "Name" in r.stdout, "exec n1 virsh list works", r.stderr.strip())
    names = {n: lab("exec", n, "virsh", "hostname").stdout.strip() for n in ("n1", "n2", "n3")}
    check(names == {"n1": "n1", "n2": "n2", "n3": "n3"}, "virsh in each host talks to that host's libvirtd", names)
    doc = status()
    pids = [host(doc, n)["daemons"]["libvirtd"]["pid"] for n in ("n1", "n2", "n3")]
    check(len(set(pids)) == 3 and all(host(doc, n)["daemons"]["libvirtd"]["alive"] for n in ("n1", "n2", "n3")),
          "each host runs its own libvirtd", pids)
    r = lab("exec", "n2", "sh", "-c", "exit 7")
    check(r.returncode == 7, "exec passes the exit code through", r.returncode)
    r = lab("exec", "n1", "sh", "-c", "cat /proc/self/cgroup; ls -d /var/lib/vireo/pool/leases")
    check(f"freezer:/vireo-lab/{LAB}/n1" in r.stdout and "leases" in r.stdout,
          "exec runs in the host's cgroup and sees the shared pool", r.stdout + r.stderr)

    if host(doc, "n1")["daemons"]["vireod"]["pid"]:
        r = lab("exec", "n1", "vireo", "status", "--json")
        try:
            v = json.loads(r.stdout)
        except ValueError:
            v = {}
        check(v.get("quorate") is True, "vireo status --json on n1 says quorate", r.stdout[:200] + r.stderr)

    # A host dies: the survivors keep quorum with 2 of 3.
    r = lab("kill", "n3")
    check(r.returncode == 0, "kill n3 succeeds", r.stderr.strip())
    doc = status()
    check(host(doc, "n3")["state"] == "down", "status shows n3 down", host(doc, "n3"))
    with open(f"/sys/fs/cgroup/freezer/vireo-lab/{LAB}/n3/cgroup.procs") as f:
        check(f.read().strip() == "", "no process is left in n3's cgroup")
    check(os.path.exists(f"/run/netns/vl-{LAB}-n3"), "n3's network namespace stays")
    ok, views, secs = wait_views({"n1": (2, True), "n2": (2, True)}, 10)
    check(ok, f"n1 and n2 see 2 members, still quorate ({secs:.1f} s after the kill)", views)
    r = lab("exec", "n3", "true")
    check(r.returncode == 1 and "down" in r.stderr, "exec into a dead host fails clearly", r.stderr.strip())

    r = lab("start", "n3")
    check(r.returncode == 0, "start n3 succeeds", (r.stderr or r.stdout).strip())
    ok, views, secs = wait_views(all3, 15)
    check(ok, f"after start n3 all see 3 members ({secs:.1f} s)", views)

    # Partition n1 away from n2,n3.
    r = lab("partition", "n1", "n2,n3")
    check(r.returncode == 0, "partition n1 n2,n3 succeeds", r.stderr.strip())
    check(status()["partition"] == [["n1"], ["n2", "n3"]], "status shows the partition")
    ok, views, secs = wait_views({"n1": (1, False), "n2": (2, True), "n3": (2, True)}, 10)
    check(ok, f"n1 is inquorate alone, n2 and n3 quorate together ({secs:.1f} s)", views)
    r = lab("heal")
    check(r.returncode == 0, "heal succeeds", r.stderr.strip())
    ok, views, secs = wait_views(all3, 15)
    check(ok, f"after heal all see 3 members, quorate ({secs:.1f} s)", views)

    # Pause n2 for 3 s: frozen, not killed.
    before = host(status(), "n2")["daemons"]["corosync"]["pid"]
    t0 = time.monotonic()
    p = subprocess.Popen([TOOL, "--name", LAB, "pause", "n2", "3"], stdout=subprocess.PIPE, text=True)
    time.sleep(1)
    with open(f"/sys/fs/cgroup/freezer/vireo-lab/{LAB}/n2/freezer.state") as f:
        check(f.read().strip() == "FROZEN", "during pause n2's cgroup is frozen")
    check(p.wait(timeout=30) == 0 and 2.9 < time.monotonic() - t0 < 6, "pause n2 3 blocks about 3 s",
          time.monotonic() - t0)
    with open(f"/sys/fs/cgroup/freezer/vireo-lab/{LAB}/n2/freezer.state") as f:
        check(f.read().strip() == "THAWED", "after pause n2's cgroup is thawed")
    after = host(status(), "n2")["daemons"]["corosync"]
    check(after["pid"] == before and after["alive"], "n2's corosync survived the pause", after)
    ok, views, secs = wait_views(all3, 15)
    check(ok, f"after the pause all see 3 members ({secs:.1f} s)", views)

    # One daemon dies alone.
    r = lab("stop-daemon", "n2", "corosync")
    check(r.returncode == 0, "stop-daemon n2 corosync succeeds", r.stderr.strip())
    ok, views, _ = wait_views({"n1": (2, True)}, 10)
    check(ok, "n1 sees 2 members after n2's corosync died", views)
    check(host(status(), "n2")["daemons"]["libvirtd"]["alive"], "n2's libvirtd lives on")
    r = lab("start-daemon", "n2", "corosync")
    check(r.returncode == 0, "start-daemon n2 corosync succeeds", r.stderr.strip())
    ok, views, _ = wait_views(all3, 15)
    check(ok, "all see 3 members again", views)

    r = lab("path", "n1", "corosync-log")
    check(r.returncode == 0 and os.path.getsize(r.stdout.strip()) > 0, "path n1 corosync-log names the log")

    r = lab("down")
    check(r.returncode == 0, "down succeeds", r.stderr.strip())
    check_gone(LAB)
    r = lab("down")
    check(r.returncode == 0, "a second down is harmless", r.stderr.strip())


def test_five():
    r = lab("up", "5", "--pool-size", "1G", name=LAB5)
    require(r.returncode == 0, "vireo-lab up 5 succeeds", (r.stderr or r.stdout).strip())
    print(f"      {r.stdout.strip()}")
    ok, views, _ = wait_views({f"n{i}": (5, True) for i in range(1, 6)}, 1, name=LAB5)
    check(ok, "all 5 hosts are quorate with 5 members", views)
    r = lab("exec", "n1", "df", "-B1M", "--output=size", "/var/lib/vireo/pool", name=LAB5)
    size = int(r.stdout.split()[-1]) if r.returncode == 0 else 0
    check(900 < size <= 1024, "--pool-size 1G gives a pool of about 1 GiB", r.stdout + r.stderr)
    r = lab("down", name=LAB5)
    check(r.returncode == 0, "down of the 5-host lab succeeds", r.stderr.strip())
    check_gone(LAB5)


def main():
    if os.geteuid() != 0:
        print("skipped: the lab needs root")
        return 77
    for tool in ("corosync", "libvirtd", "virtlockd", "nft", "nsenter"):
        if not shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin:/bin"):
            print(f"skipped: {tool} is not installed (run tools/install-deps)")
            return 77
    if not os.path.isdir("/sys/fs/cgroup/freezer"):
        print("skipped: the cgroup v1 freezer is not mounted")
        return 77
    try:
        test_three()
        test_five()
    except Abort:
        pass
    except subprocess.TimeoutExpired as e:
        check(False, "vireo-lab answers in time", e)
    finally:
        for name in (LAB, LAB5):
            lab("down", name=name)
    print(f"{'FAIL' if failures else 'PASS'}: {failures} check(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
