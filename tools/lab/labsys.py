"""Low-level helpers of vireo-lab: commands, files, processes, freezer cgroups.

Nothing here knows what a lab is; labhost.py builds on it.
"""

import contextlib
import fcntl
import os
import re
import signal
import subprocess
import sys
import time

LAB_ROOT = "/tmp/vireo-lab"
CG_ROOT = "/sys/fs/cgroup/freezer/vireo-lab"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
NETNS_RE = re.compile(r"^vl-(.+)-(br|n[0-9]+)$")
SYS_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class LabError(Exception):
    """A failure: one line on stderr, exit status 1."""


class UsageError(Exception):
    """Bad usage: one line on stderr, exit status 2."""


def warn(msg):
    print(f"vireo-lab: warning: {msg}", file=sys.stderr)


def info(msg):
    print(msg, flush=True)


_T0 = time.monotonic()


def trace(msg):
    """Progress with timestamps, on stderr, when VIREO_LAB_VERBOSE is set."""
    if os.environ.get("VIREO_LAB_VERBOSE"):
        print(f"vireo-lab: +{time.monotonic() - _T0:6.3f} s {msg}", file=sys.stderr, flush=True)


def run(argv, check=True, input=None, timeout=30, env=None):
    """Run a command, capture its output; raise LabError with its stderr on failure."""
    try:
        r = subprocess.run(argv, input=input, capture_output=True, text=True,
                           timeout=timeout, env=env)
    except FileNotFoundError:
        raise LabError(f"{argv[0]} is not installed; run tools/install-deps")
    except subprocess.TimeoutExpired:
        raise LabError(f"'{' '.join(argv)}' did not finish within {timeout} s")
    if check and r.returncode != 0:
        msg = (r.stderr or r.stdout).strip().splitlines()
        raise LabError(f"'{' '.join(argv)}' failed: {msg[-1] if msg else 'exit %d' % r.returncode}")
    return r


def write_file(path, text, mode=0o644):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.rename(tmp, path)


def read_int(path):
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def tail(path, lines=5):
    try:
        with open(path, errors="replace") as f:
            return " | ".join(l.strip() for l in f.read().splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextlib.contextmanager
def flock(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def parse_size(text):
    m = re.match(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?)(i?b)?\s*$", text, re.I)
    if not m:
        raise UsageError(f"--pool-size: cannot read '{text}'; give e.g. 4G, 512M or a byte count")
    n = float(m.group(1)) * (1 << (10 * " kmgt".index(m.group(2).lower() or " ")))
    if n < 64 << 20:
        raise UsageError(f"--pool-size: {text} is too small; the pool needs at least 64M")
    return int(n)


def mountinfo():
    """Mount points of our mount namespace, octal escapes undone."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4]
            out.append(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), mp))
    return out


def proc_state(pid):
    """One-letter state of pid, or None if it does not exist."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def proc_cgroup(pid):
    """pid's freezer cgroup path (e.g. /vireo-lab/lab/n1), or None."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            for line in f:
                _, ctrls, path = line.rstrip("\n").split(":", 2)
                if "freezer" in ctrls.split(","):
                    return path
    except (OSError, ValueError):
        pass
    return None


def cg_procs(cg):
    try:
        with open(f"{cg}/cgroup.procs") as f:
            return [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return []


def cg_set_state(cg, state, wait=2.0):
    """Write FROZEN or THAWED; wait until the freezer reports it (FREEZING may linger)."""
    try:
        with open(f"{cg}/freezer.state", "w") as f:
            f.write(state)
    except FileNotFoundError:
        return True
    deadline = time.monotonic() + wait
    while True:
        with open(f"{cg}/freezer.state") as f:
            if f.read().strip() == state:
                return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)


def cg_state(cg):
    try:
        with open(f"{cg}/freezer.state") as f:
            return f.read().strip()
    except OSError:
        return None


def cg_kill(cg, last=None, timeout=15.0):
    """SIGKILL every process in cgroup cg and wait until it is empty.

    Frozen first, so nothing forks behind our back; a frozen task dies of
    SIGKILL only once thawed, hence the thaw. Only processes listed in the
    cgroup are ever signalled. `last` (the host's holder, a subreaper) is
    spared until everything else is gone, so it reaps the others instead of
    leaving their zombies to PID 1, which reaps slowly here."""
    if not os.path.isdir(cg):
        return
    deadline = time.monotonic() + timeout
    while True:
        cg_set_state(cg, "FROZEN", wait=1.0)
        pids = cg_procs(cg)
        spare = last if last in pids else None
        victims = [p for p in pids if p != spare] or pids
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        cg_set_state(cg, "THAWED")
        if not pids:
            return
        end = min(deadline, time.monotonic() + 1.0)
        while (set(victims) & set(cg_procs(cg)) or has_children(spare)) and time.monotonic() < end:
            time.sleep(0.002)
        if time.monotonic() > deadline:
            raise LabError(f"processes {cg_procs(cg)} in {cg} survive SIGKILL; "
                           "they may be stuck in the kernel (state D)")


def has_children(pid):
    """pid still has children, zombies included (it has not reaped them all)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return bool(f.read().strip())
    except (OSError, TypeError):
        return False


def cg_joiner(cg):
    """A preexec_fn that moves the child into cgroup cg before it execs anything."""
    procs = f"{cg}/cgroup.procs"

    def join():
        with open(procs, "w") as f:
            f.write(str(os.getpid()))
    return join


def lab_netns():
    """(lab, suffix) for every network namespace named like a lab's."""
    try:
        names = os.listdir("/run/netns")
    except FileNotFoundError:
        return []
    return [m.groups() for m in map(NETNS_RE.match, names) if m]


def pool_loops(lab_dir):
    """Loop devices whose backing file lies in lab_dir (also after it was deleted)."""
    out = []
    with contextlib.suppress(FileNotFoundError):
        for dev in os.listdir("/sys/block"):
            with contextlib.suppress(OSError):
                with open(f"/sys/block/{dev}/loop/backing_file") as f:
                    if f.read().strip().startswith(lab_dir + "/"):
                        out.append(f"/dev/{dev}")
    return out
