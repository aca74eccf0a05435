#!/usr/bin/python3
"""Integration test of the lab's network faults and --set (tools/vireo-lab), no guests.

Builds a 3-host lab with `up --set` and checks vireo.conf; `cut n1 n3` (n1 and
n3 lose each other, n2 still reaches both); `netem n2 --loss 100` (nobody
reaches n2) and `--clear`; `netem --probe`; `netem n2 --delay 150` (by netem,
or by NFQUEUE and vireo-delayline where the kernel has no sch_netem): a TCP
handshake with n2 takes the delay, one with n3 does not, `--clear` and `down`
end the delayline; where the lab cannot delay, that `--delay` is refused
clearly. Reachability and round trips are TCP connects to the peer's libvirtd
(port 16509) from inside a host: the machine may have no ping.

Exit status: 0 pass, 1 fail, 77 skipped (not root, tools missing).
Environment: VIREO_BUILD_DIR as for vireo-lab; VIREO_LAB_TOOL overrides the
path of vireo-lab.
"""

import inspect
import json
import os
import shutil
import subprocess
import sys

SRC_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
TOOL = os.environ.get("VIREO_LAB_TOOL", f"{SRC_DIR}/tools/vireo-lab")
# Unique per run: two runs of this test at once must not tear down each other's lab.
LAB = f"labtf{os.getpid() % 100000}"
LIBVIRTD_PORT = 16509
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


def lab(*args, timeout=90):
    return subprocess.run([TOOL, "--name", LAB] + list(args), capture_output=True, text=True,
                          timeout=timeout)


def status():
    r = lab("status", "--json")
    return json.loads(r.stdout) if r.returncode == 0 else None


def host(doc, node):
    return next(n for n in doc["nodes"] if n["name"] == node)


def reaches(src, dst, addrs):
    """src can open a TCP connection to dst's libvirtd within 1 s."""
    code = (f"import socket; socket.create_connection(('{addrs[dst]}', {LIBVIRTD_PORT}), 1).close()")
    return lab("exec", src, sys.executable, "-c", code, timeout=20).returncode == 0


def handshake_ms(src, dst, addrs, tries=5):
    """The median time src takes to open a TCP connection to dst's libvirtd, in ms (None: no connection)."""
    code = ("import socket, time\nr = []\n"
            f"for _ in range({tries}):\n"
            "    t = time.monotonic()\n"
            f"    socket.create_connection(('{addrs[dst]}', {LIBVIRTD_PORT}), 3).close()\n"
            "    r.append((time.monotonic() - t) * 1000)\n"
            "print(sorted(r)[len(r) // 2])\n")
    r = lab("exec", src, sys.executable, "-c", code, timeout=30)
    return float(r.stdout) if r.returncode == 0 else None


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def check_delay(addrs, probe):
    """netem --delay: n2's packets leave 150 ms late, nobody else's; --clear and down end it."""
    r = lab("netem", "n2", "--delay", "150")
    if not probe["delay"]:
        check(r.returncode == 1 and "sch_netem" in r.stderr,
              "where the lab cannot delay, --delay fails (exit 1) and says why", (r.returncode, r.stderr.strip()))
        return
    rec = host(status(), "n2")["netem"]
    check(r.returncode == 0 and rec and rec["delay"] == 150 and probe["delay_method"] in rec["method"],
          f"netem n2 --delay 150 works, by {probe['delay_method']}", (r.stderr.strip(), rec))
    slow, fast = handshake_ms("n1", "n2", addrs), handshake_ms("n1", "n3", addrs)
    print(f"      TCP handshake n1->n2 {slow or 0:.1f} ms (n2 delayed 150 ms), n1->n3 {fast or 0:.1f} ms")
    check(slow is not None and 140 <= slow <= 400, "a handshake with the delayed n2 takes its 150 ms", slow)
    check(fast is not None and fast < 100, "a handshake between two other hosts is not delayed", fast)
    pid = (rec or {}).get("delay_pid")
    r = lab("netem", "n2", "--delay", "60", "--jitter", "10", "--loss", "0")
    rec2 = host(status(), "n2")["netem"]
    check(r.returncode == 0 and rec2 and rec2["delay"] == 60 and rec2["jitter"] == 10,
          "a second netem replaces the first", (r.stderr.strip(), rec2))
    if pid:
        check(not alive(pid), "the first setting's delayline is gone", pid)
    slow = handshake_ms("n1", "n2", addrs)
    check(slow is not None and 45 <= slow < 140, "the new delay (60 ± 10 ms) holds", slow)
    pid = (rec2 or {}).get("delay_pid")
    r = lab("netem", "n2", "--clear")
    check(r.returncode == 0 and host(status(), "n2")["netem"] is None, "--clear after a delay succeeds",
          r.stderr.strip())
    if pid:
        check(not alive(pid), "--clear ends the delayline", pid)
    fast = handshake_ms("n1", "n2", addrs)
    check(fast is not None and fast < 100, "after --clear n2 answers without delay", fast)
    r = lab("netem", "n1", "--delay", "30")
    pid = (host(status(), "n1")["netem"] or {}).get("delay_pid")
    check(r.returncode == 0, "netem n1 --delay 30 (left for down to end)", r.stderr.strip())
    return pid


def reach_map(pairs, addrs):
    return {f"{a}->{b}": reaches(a, b, addrs) for a, b in pairs}


def test_faults():
    r = lab("up", "3", "--set", "vm_restart_limit=50", "--set", "log_level=debug")
    require(r.returncode == 0, "vireo-lab up 3 --set ... succeeds", (r.stderr or r.stdout).strip())
    print(f"      {r.stdout.strip()}")
    doc = status()
    addrs = {n["name"]: n["addr"] for n in doc["nodes"]}

    # --set
    with open(lab("path", "n1", "conf").stdout.strip()) as f:
        conf = f.read()
    check("\nvm_restart_limit = 50\n" in conf and conf.endswith("log_level = debug\n"),
          "--set lines end every host's vireo.conf, in order", conf)
    check(doc["vireo_conf_set"] == [["vm_restart_limit", "50"], ["log_level", "debug"]],
          "status --json shows vireo_conf_set", doc.get("vireo_conf_set"))
    if host(doc, "n1")["daemons"]["vireod"]["pid"]:
        check(all(host(doc, n)["daemons"]["vireod"]["alive"] for n in addrs), "vireod runs with the extra settings")
    r = lab("up", "3", "--set", "novalue")
    check(r.returncode == 2 and "KEY=VALUE" in r.stderr, "--set without '=' is bad usage (exit 2)", r.stderr.strip())

    everyone = [(a, b) for a in sorted(addrs) for b in sorted(addrs) if a != b]
    seen = reach_map(everyone, addrs)
    require(all(seen.values()), "before any fault every host reaches every other", seen)

    # cut: n1 and n3 lose each other, n2 bridges.
    r = lab("cut", "n1", "n3")
    check(r.returncode == 0 and "n2" in r.stdout, "cut n1 n3 succeeds and names the bridge n2",
          (r.stderr or r.stdout).strip())
    doc = status()
    check(doc["partition"] == [["n1"], ["n3"]] and doc["bridge"] == ["n2"],
          "status --json shows partition [[n1], [n3]] and bridge [n2]", (doc["partition"], doc["bridge"]))
    seen = reach_map(everyone, addrs)
    want = {k: k not in ("n1->n3", "n3->n1") for k in seen}
    check(seen == want, "under the cut n1 and n3 do not reach each other, n2 reaches both and both reach n2",
          seen)
    r = lab("cut", "n1")
    check(r.returncode == 2, "cut with one group is bad usage (exit 2)", r.stderr.strip())
    r = lab("cut", "n1,n2", "n2")
    check(r.returncode == 2 and "two groups" in r.stderr, "a host in two groups is bad usage", r.stderr.strip())
    r = lab("cut", "n1", "n7")
    check(r.returncode == 2 and "n7" in r.stderr, "an unknown host is bad usage", r.stderr.strip())
    r = lab("partition", "n1,n2", "n3")
    check(r.returncode == 0 and status()["bridge"] == [], "a partition naming every host replaces the cut, "
          "no bridge left", (r.stderr, status()["bridge"]))
    r = lab("heal")
    doc = status()
    check(r.returncode == 0 and doc["partition"] is None and doc["bridge"] is None, "heal clears the record",
          r.stderr.strip())
    seen = reach_map(everyone, addrs)
    check(all(seen.values()), "after heal every host reaches every other", seen)

    # netem: what the kernel can do.
    r = lab("netem", "--probe", "--json")
    try:
        probe = json.loads(r.stdout)
    except ValueError:
        probe = {}
    require(r.returncode == 0 and isinstance(probe.get("delay"), bool),
            "netem --probe --json says whether delay works", r.stdout + r.stderr)
    print(f"      netem --probe: {r.stdout.strip()}")

    # netem: all of n2's packets lost.
    r = lab("netem", "n2", "--loss", "100")
    check(r.returncode == 0, "netem n2 --loss 100 succeeds", r.stderr.strip())
    rec = host(status(), "n2")["netem"]
    check(rec and rec["loss"] == 100 and rec["method"] == probe["loss_method"],
          "status --json shows n2's netem setting", rec)
    seen = reach_map([("n1", "n2"), ("n2", "n3"), ("n1", "n3")], addrs)
    check(seen == {"n1->n2": False, "n2->n3": False, "n1->n3": True},
          "with loss 100% nobody reaches n2 and n2 reaches nobody; n1 still reaches n3", seen)
    r = lab("netem", "n2", "--loss", "101")
    check(r.returncode == 2, "--loss 101 is bad usage (exit 2)", r.stderr.strip())
    r = lab("netem", "n2", "--delay", "70000")
    check(r.returncode == 2 and "60000" in r.stderr, "--delay 70000 is bad usage (exit 2)", r.stderr.strip())
    r = lab("netem", "n2", "--clear")
    check(r.returncode == 0 and host(status(), "n2")["netem"] is None, "netem n2 --clear succeeds and is recorded",
          r.stderr.strip())
    seen = reach_map(everyone, addrs)
    check(all(seen.values()), "after --clear every host reaches every other", seen)
    r = lab("netem", "n2", "--clear")
    check(r.returncode == 0, "a second --clear is harmless", r.stderr.strip())
    left_delayed = check_delay(addrs, probe)

    r = lab("kill", "n3")
    r = lab("netem", "n3", "--loss", "10")
    check(r.returncode == 1 and "down" in r.stderr, "netem on a down host fails clearly", r.stderr.strip())

    r = lab("down")
    check(r.returncode == 0, "down succeeds", r.stderr.strip())
    if left_delayed:
        check(not alive(left_delayed), "down ends a host's delayline", left_delayed)


def main():
    if os.geteuid() != 0:
        print("skipped: the lab needs root")
        return 77
    for tool in ("corosync", "libvirtd", "virtlockd", "nft", "nsenter", "tc", "unshare"):
        if not shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin:/bin"):
            print(f"skipped: {tool} is not installed (run tools/install-deps)")
            return 77
    if not os.path.isdir("/sys/fs/cgroup/freezer"):
        print("skipped: the cgroup v1 freezer is not mounted")
        return 77
    try:
        test_faults()
    except Abort:
        pass
    except subprocess.TimeoutExpired as e:
        check(False, "vireo-lab answers in time", e)
    finally:
        lab("down")
    print(f"{'FAIL' if failures else 'PASS'}: {failures} check(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
