"""Shared helpers for vireo's integration tests on a real lab cluster.

Each test is a standalone script run by `make check`: exit 0 pass, 1 fail,
77 skipped (with the reason printed). A test brings up its own lab with a
unique name and always takes it down, even when it fails, then checks that
nothing of the lab is left behind."""
import inspect
import json
import os
import subprocess
import sys
import time

SRC_DIR = os.environ.get("VIREO_SRC_DIR") or os.path.realpath(
    os.path.join(os.path.dirname(__file__), "..", ".."))


def find_build_dir():
    """As vireo-lab finds it: $VIREO_BUILD_DIR, else the source tree when it
    holds a build (tools/demo's), else build/ (tools/run-tests')."""
    if os.environ.get("VIREO_BUILD_DIR"):
        return os.environ["VIREO_BUILD_DIR"]
    for d in (SRC_DIR, os.path.join(SRC_DIR, "build")):
        if os.access(os.path.join(d, "node", "vireod"), os.X_OK):
            return d
    return SRC_DIR


BUILD_DIR = find_build_dir()
LAB_TOOL = os.path.join(SRC_DIR, "tools", "vireo-lab")


class TestFailure(Exception):
    pass


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def check(cond, fmt, *args):
    """TEST_ASSERT: on failure says where (file:line) and the values."""
    if not cond:
        caller = inspect.stack()[1]
        raise TestFailure(f"{os.path.basename(caller.filename)}:{caller.lineno}: " + (fmt % args if args else fmt))


def skip(reason):
    print(f"skipped: {reason}", flush=True)
    sys.exit(77)


def wait_until(what, pred, timeout, interval=0.1):
    """Polls pred() until it returns a true value; returns (value, seconds)."""
    t0 = time.monotonic()
    last = None
    err = None
    while True:
        try:
            last = pred()
        except TestFailure:
            raise
        except Exception as e:  # a host in transition may not answer yet
            last = None
            err = e
        if last:
            return last, time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise TestFailure(f"timed out after {timeout:.1f} s waiting for {what}"
                              + (f" (last error: {err})" if err else ""))
        time.sleep(interval)


class Lab:
    def __init__(self, name):
        self.name = name
        self.env = dict(os.environ, VIREO_LAB=name, VIREO_BUILD_DIR=BUILD_DIR)

    def run(self, *args, check_rc=True, timeout=120):
        p = subprocess.run([LAB_TOOL, *args], env=self.env, capture_output=True, text=True,
                           timeout=timeout)
        if check_rc and p.returncode != 0:
            raise TestFailure(f"vireo-lab {' '.join(args)} failed ({p.returncode}): "
                              f"{p.stdout.strip()} {p.stderr.strip()}")
        return p

    def up(self, n):
        t0 = time.monotonic()
        out = self.run("up", str(n)).stdout.strip()
        log(out)
        return time.monotonic() - t0

    def exec(self, node, *cmd, timeout=60):
        return self.run("exec", node, *cmd, check_rc=False, timeout=timeout)

    def vireo(self, node, *args, timeout=60):
        """Runs the vireo CLI inside a host: (exit code, stdout, stderr)."""
        p = self.exec(node, "vireo", *args, timeout=timeout)
        return p.returncode, p.stdout, p.stderr

    def status(self, node):
        rc, out, err = self.vireo(node, "status", "--json", "--timeout", "5")
        if rc != 0:
            return None
        return json.loads(out)

    def down(self):
        self.run("down", check_rc=False, timeout=180)

    def leftovers(self):
        """What of this lab still exists after down: netns, mounts, processes."""
        left = []
        ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        left += [f"netns {l.split()[0]}" for l in ns.splitlines() if f"vl-{self.name}-" in l]
        with open("/proc/mounts") as f:
            left += [f"mount {l.split()[1]}" for l in f if f"/vireo-lab/{self.name}" in l]
        cg = f"/sys/fs/cgroup/freezer/vireo-lab/{self.name}"
        if os.path.exists(cg):
            left.append(f"cgroup {cg}")
        lab_dir = f"/tmp/vireo-lab/{self.name}"
        if os.path.exists(lab_dir):
            left.append(f"directory {lab_dir}")
        loops = subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
        left += [f"loop {l.split(':')[0]}" for l in loops.splitlines() if lab_dir + "/" in l]
        return left


def converged(lab, nodes):
    """True when every node answers, is quorate, sees the same nodes online,
    and all report the same state digest at the same version."""
    digests = set()
    for n in nodes:
        st = lab.status(n)
        if not st or not st["quorate"] or not st.get("synced"):
            return False
        online = {x["name"] for x in st["nodes"] if x["state"] == "online"}
        if online != set(nodes):
            return False
        for x in st["nodes"]:
            if x["name"] in nodes:
                digests.add((x["version"], x["digest"]))
        digests.add((st["version"], st["digest"]))
    return len(digests) == 1


def log_loop_stalls(lab):
    """Logs each live host's longest main-loop stall since its vireod
    started (node/loop_stall.c); best effort, after the test body. One of a
    token or more delays the watchdog's feed and corosync's dispatch."""
    from timeouts import LAB_TOKEN_MS
    try:
        nodes = [n["name"] for n in json.loads(lab.run("status", "--json").stdout)["nodes"]]
    except Exception:
        return
    seen = []
    for n in nodes:
        try:
            rc, out, _ = lab.vireo(n, "status", "--json", "--timeout", "3", timeout=10)
            st = json.loads(out) if rc == 0 else None
        except Exception:
            st = None
        if st and "loop_stall_max_ms" in st:
            seen.append((n, st["loop_stall_max_ms"], st.get("loop_stall_cause") or "-"))
    if not seen:
        return
    log("main loop, longest stall per host: " + ", ".join(
        f"{n} {ms} ms ({cause})" for n, ms, cause in seen) + f"; token {LAB_TOKEN_MS} ms")
    for n, ms, cause in seen:
        if ms >= LAB_TOKEN_MS:
            log(f"WARNING: vireod on {n} held its main loop {ms} ms in {cause}: a token or more")


def main(test_fn, name):
    """Runs test_fn(lab) with a fresh lab; always tears it down and checks cleanup."""
    if os.geteuid() != 0:
        skip("the lab needs root (namespaces, mounts, cgroups)")
    for tool in ("corosync", "libvirtd", "ip", "nft"):
        if subprocess.run(["sh", "-c", f"command -v {tool} || test -x /usr/sbin/{tool}"],
                          capture_output=True).returncode != 0:
            skip(f"{tool} is not installed; run tools/install-deps")
    lab = Lab(f"t{name}{os.getpid() % 1000}")
    rc = 0
    try:
        lab.down()
        test_fn(lab)
        log_loop_stalls(lab)
        log("PASS")
    except TestFailure as e:
        log(f"FAIL: {e}")
        rc = 1
        log_loop_stalls(lab)
        dump_logs(lab)
    finally:
        # VIREO_KEEP_LAB=1: a failed test leaves its lab to look into.
        if rc and os.environ.get("VIREO_KEEP_LAB") == "1":
            log(f"the lab is kept (VIREO_KEEP_LAB=1); remove it with: vireo-lab down --name {lab.name}")
            sys.exit(rc)
        lab.down()
        left = lab.leftovers()
        if left:
            log(f"FAIL: vireo-lab down left things behind: {left}")
            rc = 1
    sys.exit(rc)


def dump_logs(lab):
    """On failure, the tail of every vireod log of the lab, for the CI output."""
    base = f"/tmp/vireo-lab/{lab.name}"
    if not os.path.isdir(base):
        return
    for host in sorted(os.listdir(base)):
        p = os.path.join(base, host, "log", "vireo", "vireod.log")
        if os.path.exists(p):
            print(f"----- {host} vireod.log (tail)")
            with open(p, errors="replace") as f:
                print("".join(f.readlines()[-40:]))
