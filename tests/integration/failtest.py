"""Helpers for the failover tests (test_failover*.py) and
tools/bench/failover-bench: watching that no guest ever runs on two hosts
at once, reading a guest's boots off its console, putting HA guests on a
chosen host, and waiting for them to come back elsewhere.

Two watchers look at every host all the time, each in its own way:

  * QemuWatch reads the hosts' freezer cgroups (every process of host nI is
    in /sys/fs/cgroup/freezer/vireo-lab/LAB/nI, QEMU included) every 20 ms
    and names each QEMU by its `-name guest=NAME` (a zombie does not count:
    it holds no disk). One scan reads all hosts
    within a millisecond, so one guest's QEMU in two hosts in one scan is
    two at one instant. A frozen host's QEMU counts: it holds the disk and
    runs on when thawed.
  * VirshWatch keeps one interactive virsh per host (`vireo-lab exec nI
    virsh`) and asks it `list --name --state-running` every 100 ms: what
    libvirt says runs. A sample is stamped with the middle of its round
    trip; one that stalled (a frozen host answers once thawed, maybe from
    libvirtd's view before the thaw) with when it was asked, so it does not
    stretch a run past what libvirt surely said. A guest shown running on
    two hosts with overlapping runs of samples is a double run.

Both record a timeline per guest (which hosts, from when) for the log."""
import contextlib
import os
import re
import subprocess
import threading
import time

from labtest import LAB_TOOL, TestFailure, check, log, wait_until
from timeouts import T
import vmtest

CG_ROOT = "/sys/fs/cgroup/freezer/vireo-lab"

# cluster/timeouts.h with the lab's token (tests/integration/timeouts.py).
TOKEN_S = T.TOKEN
DETECTION_S = T.DETECTION            # VIREO_DETECTION_MS
FENCE_DELAY_S = T.FENCE_DELAY        # VIREO_FENCE_DELAY_MS: skew T/4 + self-fence T/2 + kill T/4
# Placement, define, start and the test guest's boot (~2 s under TCG on an
# idle machine) take a few seconds; CI machines are busy and the lab runs
# every host on 2 cores: a generous margin.
START_BOOT_MARGIN_S = 10.0
FAILOVER_BOUND_S = DETECTION_S + FENCE_DELAY_S + START_BOOT_MARGIN_S

ACKED = re.compile(r"^ACKED (\d+)$")
DISK_LAST = re.compile(r"^DISK-LAST (\d+)$")


# ------------------------------------------------------------ QEMU processes

class QemuWatch:
    """Every `period` s, which hosts have a QEMU process of which guest."""

    def __init__(self, lab, hosts, period=0.02):
        self.cg = {h: f"{CG_ROOT}/{lab.name}/{h}" for h in hosts}
        self.period = period
        self.cache = {}             # (pid, starttime) -> guest name
        self.where = {}             # guest -> frozenset(hosts), as of the last scan
        self.timeline = {}          # guest -> [(t, frozenset(hosts))] on every change
        self.overlaps = []          # (t, guest, hosts)
        self.excused = set()        # guests being migrated: a QEMU on both ends is right
        self.scans = 0
        self.t0 = time.monotonic()
        self.lock = threading.Lock()
        self.stopped = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def qemu_guest(self, pid):
        """The guest NAME of QEMU process pid, or None for any other process."""
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            return None
        comm = stat[stat.find(b"(") + 1:stat.rfind(b")")]
        if not comm.startswith(b"qemu-system"):
            return None
        rest = stat[stat.rfind(b")") + 2:].split()
        if rest[0] in (b"Z", b"X"):   # dead, not yet reaped: its disk and locks are let go
            return None
        start = rest[19]              # field 22
        key = (pid, start)
        if key not in self.cache:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    args = f.read().split(b"\0")
            except OSError:
                return None
            name = None
            for a in args:
                if a.startswith(b"guest="):
                    name = a[6:].split(b",")[0].decode(errors="replace")
                    break
            # A process caught in exec has its new name but not yet its
            # arguments: ask again next scan rather than remember "none".
            if name is None:
                return None
            self.cache[key] = name
        return self.cache[key]

    def scan(self):
        found = {}
        for host, cg in self.cg.items():
            try:
                with open(f"{cg}/cgroup.procs") as f:
                    pids = [int(x) for x in f.read().split()]
            except (FileNotFoundError, ValueError):
                continue
            for pid in pids:
                g = self.qemu_guest(pid)
                if g:
                    found.setdefault(g, set()).add(host)
        return found

    def run(self):
        while not self.stopped:
            t = time.monotonic()
            found = self.scan()
            with self.lock:
                self.scans += 1
                for g in set(found) | set(self.where):
                    hosts = frozenset(found.get(g, ()))
                    if self.where.get(g, frozenset()) != hosts:
                        self.timeline.setdefault(g, []).append((t, hosts))
                        self.where[g] = hosts
                    if len(hosts) > 1 and g not in self.excused:
                        self.overlaps.append((t, g, sorted(hosts)))
            time.sleep(self.period)

    @contextlib.contextmanager
    def migrating(self, *guests):
        """While guests migrate on purpose, a QEMU of each on the source and
        on the target is no double run (the target's waits, paused)."""
        with self.lock:
            self.excused |= set(guests)
        try:
            yield
        finally:
            time.sleep(2 * self.period)
            with self.lock:
                self.excused -= set(guests)

    def hosts_of(self, guest):
        with self.lock:
            return set(self.where.get(guest, ()))

    def stop(self):
        self.stopped = True
        self.thread.join(2)

    def story(self, guest, t_ref=None):
        """'n3 -2.1 s, none +0.1 s, n1 +3.9 s': where its QEMU was, relative to t_ref."""
        t_ref = self.t0 if t_ref is None else t_ref
        with self.lock:
            tl = list(self.timeline.get(guest, []))
        return ", ".join(f"{','.join(sorted(h)) or 'none'} {t - t_ref:+.2f} s" for t, h in tl)

    def check(self):
        with self.lock:
            ov = list(self.overlaps)
        if ov:
            first = ov[0]
            raise TestFailure(f"a guest's QEMU ran on two hosts at once: {first[1]} on "
                              f"{' and '.join(first[2])} (and {len(ov) - 1} more scans); "
                              f"where it ran: {self.story(first[1])}")
        return self.scans


# ------------------------------------------------------------ what libvirt says

class _VirshHost:
    """One interactive virsh inside one host, restarted when it dies."""

    def __init__(self, watch, host):
        self.watch = watch
        self.host = host
        self.proc = None
        self.samples = 0
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def spawn(self):
        env = dict(self.watch.lab.env)
        self.proc = subprocess.Popen(
            [LAB_TOOL, "exec", self.host, "virsh", "-c", "qemu:///system"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, bufsize=1, env=env)
        # Past its banner (without -q: with it, echo ends no line).
        self.talk("")

    def talk(self, command):
        """Sends command, then an echo of a mark; the lines before the mark
        (None when virsh is gone), and whether one was an error."""
        p = self.proc
        try:
            p.stdin.write(f"{command}\necho @@END@@\n")
            p.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            return None, True
        lines, err = [], False
        while True:
            line = p.stdout.readline()
            if not line:
                return None, True
            line = line.strip()
            if line == "@@END@@":
                return lines, err
            if line.startswith("error"):
                err = True          # no connection yet (libvirtd starting): ask again
            elif line and not line.startswith("virsh #"):
                lines.append(line)

    def ask(self):
        """One sample: (t_sent, t_answered, set of running guests), or None
        when this virsh is gone or has no connection."""
        t0 = time.monotonic()
        lines, err = self.talk("list --name --state-running")
        if lines is None or err:
            return None
        return t0, time.monotonic(), set(lines)

    def close(self):
        p = self.proc
        if p and p.poll() is None:
            try:
                p.stdin.close()
            except OSError:
                pass
            try:
                p.wait(2)
            except subprocess.TimeoutExpired:
                p.kill()            # our own vireo-lab exec, by its Popen
                p.wait()

    def run(self):
        while not self.watch.stopped:
            if self.proc is None or self.proc.poll() is not None:
                self.close()
                self.spawn()
            s = self.ask()
            if s is None:
                self.close()
                self.proc = None
                self.watch.gap(self.host)
                time.sleep(1.0)     # a host that is down: try again now and then
                continue
            self.samples += 1
            self.watch.record(self.host, *s)
            time.sleep(max(0.0, self.watch.period - (time.monotonic() - s[0])))
        self.close()


class VirshWatch:
    """`virsh list --name --state-running` on every host every `period` s."""

    STALL_S = 0.5

    def __init__(self, lab, hosts, period=0.1):
        self.lab = lab
        self.period = period
        self.t0 = time.monotonic()
        self.lock = threading.Lock()
        self.stopped = False
        self.runs = {}            # (guest, host) -> [[first_t, last_t]] runs of samples
        self.last = {}            # host -> (t, names) of its last sample
        self.hosts = {h: _VirshHost(self, h) for h in hosts}

    def record(self, host, t_sent, t_answered, names):
        t = t_sent if t_answered - t_sent > self.STALL_S else (t_sent + t_answered) / 2
        with self.lock:
            prev = self.last.get(host)
            for g in names:
                runs = self.runs.setdefault((g, host), [])
                if prev and g in prev[1] and runs:
                    runs[-1][1] = t
                else:
                    runs.append([t, t])
            self.last[host] = (t, set(names))

    def gap(self, host):
        """host's virsh is gone (the host died): its runs end here."""
        with self.lock:
            self.last.pop(host, None)

    def running_on(self, guest):
        with self.lock:
            return {h for h, (_, names) in self.last.items() if guest in names}

    def wait_samples(self, timeout=20):
        """Waits until every host answered at least once."""
        wait_until("a virsh sample of every host",
                   lambda: all(h.samples for h in self.hosts.values()), timeout)

    def stop(self):
        self.stopped = True
        for h in self.hosts.values():
            h.thread.join(3)

    def overlaps(self):
        """[(guest, host_a, run_a, host_b, run_b)] of runs that intersect."""
        with self.lock:
            by_guest = {}
            for (g, h), runs in self.runs.items():
                for r in runs:
                    by_guest.setdefault(g, []).append((h, r))
        out = []
        for g, rs in by_guest.items():
            for i, (ha, ra) in enumerate(rs):
                for hb, rb in rs[i + 1:]:
                    if ha != hb and ra[0] <= rb[1] and rb[0] <= ra[1]:
                        out.append((g, ha, ra, hb, rb))
        return out

    def story(self, guest, t_ref=None):
        t_ref = self.t0 if t_ref is None else t_ref
        with self.lock:
            rs = sorted((r[0], r[1], h) for (g, h), runs in self.runs.items() if g == guest
                        for r in runs)
        return ", ".join(f"{h} {a - t_ref:+.2f}..{b - t_ref:+.2f} s" for a, b, h in rs)

    def check(self):
        ov = self.overlaps()
        if ov:
            g, ha, ra, hb, rb = ov[0]
            raise TestFailure(f"virsh showed {g} running on {ha} ({ra[0] - self.t0:+.2f}.."
                              f"{ra[1] - self.t0:+.2f} s) and on {hb} ({rb[0] - self.t0:+.2f}.."
                              f"{rb[1] - self.t0:+.2f} s) at once; its runs: {self.story(g)}")
        return {h: x.samples for h, x in self.hosts.items()}


class Watch:
    """Both watchers over the hosts; check() fails on any double run."""

    def __init__(self, lab, hosts):
        self.qemu = QemuWatch(lab, hosts)
        self.virsh = VirshWatch(lab, hosts)
        self.virsh.wait_samples()

    def check(self):
        scans = self.qemu.check()
        samples = self.virsh.check()
        return scans, samples

    def stop(self):
        self.qemu.stop()
        self.virsh.stop()

    def migrating(self, *guests):
        return self.qemu.migrating(*guests)

    def story(self, guest, t_ref=None):
        return f"QEMU: {self.qemu.story(guest, t_ref)}; virsh: {self.virsh.story(guest, t_ref)}"


# ------------------------------------------------------------ the console

def console_boots(text):
    """The guest's boots in the order of their START lines, each a dict:
    boot, disk_last (None if not printed), acked [seq...], hb [n...], and
    foreign: heartbeats of another boot_id seen after this boot's START
    (two guests writing one console: a double run)."""
    out = []
    cur = None
    for raw in text.splitlines():
        line = raw.strip("\r")
        m = vmtest.START.match(line)
        if m:
            cur = {"boot": m.group(1), "disk_last": None, "acked": [], "hb": [], "foreign": []}
            out.append(cur)
            continue
        if cur is None:
            continue
        m = vmtest.HEARTBEAT.match(line)
        if m:
            if m.group(2) == cur["boot"]:
                cur["hb"].append(int(m.group(1)))
            else:
                cur["foreign"].append(m.group(2))
            continue
        m = ACKED.match(line)
        if m:
            cur["acked"].append(int(m.group(1)))
            continue
        m = DISK_LAST.match(line)
        if m and cur["disk_last"] is None:
            cur["disk_last"] = int(m.group(1))
    return out


def max_acked(lab, name):
    """The highest ACKED on the guest's console so far (0 if none)."""
    acks = [a for b in console_boots(vmtest.console_text(lab, name)) for a in b["acked"]]
    return max(acks) if acks else 0


def check_recovered_disk(lab, name, old_boot, new_boot, acked_before):
    """The new boot found on its disk every write the old boot saw
    acknowledged (DISK-LAST >= the old boot's highest ACKED, which is at least
    acked_before, read before the fault), and the console has no heartbeat
    of another boot in the new one's lines. Returns (disk_last, old max)."""
    bs = {b["boot"]: b for b in console_boots(vmtest.console_text(lab, name))}
    check(old_boot in bs and new_boot in bs, "%s: boots %s and %s not both on the console",
          name, old_boot[:8], new_boot[:8])
    old, new = bs[old_boot], bs[new_boot]
    old_max = max(old["acked"]) if old["acked"] else 0
    check(old_max >= acked_before, "%s: the console lost ACKED lines (max %d < %d seen before)",
          name, old_max, acked_before)
    check(acked_before > 0, "%s: no ACKED before the fault; nothing was checked", name)
    check(new["disk_last"] is not None, "%s: the new boot %s printed no DISK-LAST", name,
          new_boot[:8])
    check(new["disk_last"] >= old_max, "%s: acknowledged writes lost: the old boot %s saw "
          "ACKED %d, the new boot %s found DISK-LAST %d", name, old_boot[:8], old_max,
          new_boot[:8], new["disk_last"])
    check(not new["foreign"], "%s: heartbeats of boot(s) %s appear after boot %s started: two "
          "guests wrote the console", name, sorted(set(x[:8] for x in new["foreign"])),
          new_boot[:8])
    return new["disk_last"], old_max


def check_single_boot_since(lab, name, boot):
    """From boot's START on, no other boot heartbeats on the console."""
    bs = console_boots(vmtest.console_text(lab, name))
    after = False
    for b in bs:
        if b["boot"] == boot:
            after = True
        if after:
            check(not b["foreign"], "%s: boot %s's console lines hold heartbeats of %s: two "
                  "guests ran at once", name, b["boot"][:8], sorted(set(x[:8] for x in b["foreign"])))


def wait_acked(lab, name, timeout=30):
    return wait_until(f"{name}'s first ACKED", lambda: max_acked(lab, name), timeout)[0]


# ------------------------------------------------------------ the cluster

def cli_has(lab, words, node="n1"):
    p = lab.exec(node, "vireo", "--help")
    return words in p.stdout + p.stderr


def events(lab, node="n1", limit=200):
    """The event log, oldest first: [{seq, time_ms, node, text}]."""
    return vmtest.vireo_json(lab, node, "event", "list", "--limit", str(limit))


def vm_running_elsewhere(lab, name, old, node):
    """The VM if the cluster says it runs on a node other than old."""
    v = vmtest.vm_list(lab, node).get(name)
    return v if v and v["state"] == "running" and v["node"] not in (None, old) else None


def put_ha_vm(lab, name, host, ha=True, prefer=False, via="n1", watch=None):
    """Creates and starts a VM with the test guest and gets it onto host:
    --prefer host when the CLI has it (prefer=True), else a quick migration
    there after it started. Returns its boot_id once it heartbeats there."""
    extra = ["--ha"] if ha else []
    if prefer:
        extra += ["--prefer", host]
    vmtest.create(lab, name, node=via, extra=extra)
    v = vmtest.vm_list(lab, via)[name]
    if v["node"] != host:
        with watch.migrating(name) if watch else contextlib.nullcontext():
            vmtest.vm_cmd(lab, "migrate", name, "--to", host, node=via, timeout=180)
    v, _ = vmtest.wait_vm(lab, name, lambda v: v and v["state"] == "running" and v["node"] == host,
                          f"running on {host}", node=via)
    boot, _ = vmtest.wait_heartbeat(lab, name)
    return boot


def node_state(lab, via, node):
    st = lab.status(via)
    return {n["name"]: n for n in st["nodes"]}.get(node, {}).get("state") if st else None


def virsh_all(lab, node):
    """`virsh list --all` of node as {name: state}, or None if it does not answer."""
    try:
        return vmtest.virsh_domains(lab, node)
    except TestFailure:
        return None


def failover_events(evs, names, since_ms):
    """{vm: {'fencing': t_ms, 'fenced': t_ms, 'text': ...}} from the event log."""
    out = {n: {} for n in names}
    for e in evs:
        if e["time_ms"] < since_ms:
            continue
        for n in names:
            if e["text"].startswith(f"VM {n}: node ") and e["text"].endswith("; fencing"):
                out[n].setdefault("fencing", e["time_ms"])
            elif e["text"].startswith(f"VM {n}: ") and "fenced after" in e["text"]:
                out[n].setdefault("fenced", e["time_ms"])
                out[n]["fenced_text"] = e["text"]
    return out


def lab_cmd_async(lab, *args):
    """vireo-lab ARGS in the background (pause, which sleeps): the Popen."""
    return subprocess.Popen([LAB_TOOL, *args], env=lab.env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def vireod_log(lab, node):
    p = f"/tmp/vireo-lab/{lab.name}/{node}/log/vireo/vireod.log"
    try:
        with open(p, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def host_cgroup(lab, node):
    return os.path.join(CG_ROOT, lab.name, node)


def log_where(watch, names, t_ref):
    for n in names:
        log(f"  {n}: {watch.story(n, t_ref)}")


def boots_before(lab, names):
    """{vm: (boot_id of its latest heartbeat, highest ACKED so far)}."""
    return {n: (vmtest.current_boot(lab, n)[0], max_acked(lab, n)) for n in names}


def wait_back(lab, names, before, alive, via, t0, timeout):
    """Waits until each VM of names runs (as the cluster says) on a host of
    alive with a heartbeat of a boot other than before[vm][0]; returns
    {vm: (seconds after t0, node, new boot_id)}."""
    back, last = {}, {}
    deadline = t0 + timeout
    while len(back) < len(names):
        try:
            last = vmtest.vm_list(lab, via)
        except Exception:        # the CLI may not answer during the membership change
            pass
        now = time.monotonic() - t0
        for n in names:
            if n in back:
                continue
            bid, _ = vmtest.current_boot(lab, n)
            v = last.get(n)
            if bid and bid != before[n][0] and v and v["state"] == "running" and \
                    v["node"] in alive:
                back[n] = (now, v["node"], bid)
        check(time.monotonic() < deadline, "after %.0f s not every HA VM runs again on %s: "
              "back %s; VMs now %s", time.monotonic() - t0, alive, sorted(back),
              {n: ((last.get(n) or {}).get("state"), (last.get(n) or {}).get("node"),
                   (last.get(n) or {}).get("message")) for n in names})
        time.sleep(0.1)
    return back
