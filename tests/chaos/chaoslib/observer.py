"""The observer: watches every host without asking vireod, and checks the
cluster's invariants (doc/DESIGN's 1-5) all through the run.

What it reads:
  * every host's QEMU processes (freezer cgroups, every 20 ms) and every
    host's libvirtd (`virsh list --state-running`, every 100 ms), through
    failtest's QemuWatch and VirshWatch;
  * every guest's serial log on the shared pool (boots, heartbeats, ACKED
    writes, the DISK-LAST a boot found), read incrementally;
  * the disk leases: /proc/locks on the one kernel all lab hosts share,
    each holder mapped to its host by its freezer cgroup;
  * the quorate members' state digests (`vireo status --json`), the one
    thing only vireod can tell, compared among themselves.

Liveness checks (2, 4, 5) ask the nemesis's model when the cluster should
have been able to act; safety checks (1, 3, 5's "starts nothing") hold
always. A violation is recorded with its evidence; the runner stops."""
import hashlib
import json
import os
import re
import statistics
import subprocess
import threading
import time

from chaoslib import bounds
from failtest import QemuWatch, VirshWatch

POOL_IN_HOST = "/var/lib/vireo/pool"
START = re.compile(r"^VIREO-GUEST-START ([0-9a-f]{32})$")
HEARTBEAT = re.compile(r"^HEARTBEAT (\d+) ([0-9a-f]{32}) (\d+)$")
ACKED = re.compile(r"^ACKED (\d+)$")
DISK_LAST = re.compile(r"^DISK-LAST (\d+)$")
ACCEL_PROBE = "vireo-accel-probe-"
CGROUP_HOST = re.compile(r"freezer:/vireo-lab/[^/]+/(n\d+)")


class Violation(Exception):
    pass


class Console:
    """One guest's serial log, parsed as it grows.

    A boot begins at its START line, or at the first heartbeat of a boot_id
    not seen before: QEMU writes the console to the shared pool, and while
    the pool is full some of it is lost (a START cut short). Two guests at
    once show as interleaved heartbeats: one of a boot that a later boot
    had already followed."""

    def __init__(self, path):
        self.path = path
        self.offset = 0
        self.partial = b""
        self.boots = []            # [{boot, disk_last, max_acked, start_t, first_hb_t}]
        self.ids = {}              # boot_id -> index in boots
        self.interleaved = set()

    def _begin(self, boot_id, now):
        self.ids[boot_id] = len(self.boots)
        self.boots.append({"boot": boot_id, "disk_last": None, "max_acked": 0,
                           "start_t": now, "first_hb_t": None})

    def poll(self, now):
        """Reads what was appended; returns the problems found (strings)."""
        problems = []
        try:
            with open(self.path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size < self.offset:           # the file was replaced (delete --purge)
                    self.offset, self.partial, self.boots, self.ids = 0, b"", [], {}
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return problems
        self.offset += len(data)
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        for raw in lines:
            line = raw.decode(errors="replace").strip("\r")
            m = START.match(line)
            if m:
                if m.group(1) not in self.ids:
                    self._begin(m.group(1), now)
                continue
            m = HEARTBEAT.match(line)
            if m:
                bid = m.group(2)
                if bid not in self.ids:
                    self._begin(bid, now)
                i = self.ids[bid]
                if i < len(self.boots) - 1 and bid not in self.interleaved:
                    self.interleaved.add(bid)
                    problems.append(f"a heartbeat of boot {bid[:8]} after boot "
                                    f"{self.boots[-1]['boot'][:8]} started: two guests wrote the console")
                b = self.boots[i]
                if b["first_hb_t"] is None:
                    b["first_hb_t"] = now
                continue
            if not self.boots:
                continue
            b = self.boots[-1]
            m = ACKED.match(line)
            if m:
                b["max_acked"] = max(b["max_acked"], int(m.group(1)))
                continue
            m = DISK_LAST.match(line)
            if m and b["disk_last"] is None:
                b["disk_last"] = int(m.group(1))
                before = max((x["max_acked"] for x in self.boots[:-1]), default=0)
                if b["disk_last"] < before:
                    problems.append(f"acknowledged writes lost: an earlier boot saw ACKED {before}, "
                                    f"boot {b['boot'][:8]} found DISK-LAST {b['disk_last']} on its disk")
        return problems


class Observer:
    def __init__(self, lab, hosts, ha_guests, plain_guests, model, workload, timeline):
        self.lab = lab
        self.hosts = hosts
        self.ha = list(ha_guests)
        self.guests = list(ha_guests) + list(plain_guests)
        self.model = model
        self.workload = workload
        self.timeline = timeline
        self.violations = []
        self.stopped = False
        self.lock = threading.Lock()
        self.consoles = {}
        self.lost_since = {}            # HA guest -> since when it runs nowhere
        self.gone_since = {}            # HA guest -> (since, host) it has no QEMU anywhere
        self.episodes = []              # {guest, lost, back, host_before, host_after, first_hb}
        self.last_host = {}             # HA guest -> where its QEMU last was
        self.qemu_seen = {}             # guest -> index into QemuWatch.timeline
        self.qemu_prev = {}             # guest -> its QEMU's hosts as of that index
        self.digest_checks = 0
        self.digest_unconverged_since = None
        self.lease_samples = 0
        self.lease_mismatch = {}        # guest -> first sample time of a mismatch
        self.virsh_checked = set()
        self.qemu = QemuWatch(lab, hosts)
        # vireod's acceleration probe (hypervisor/accel.c) is a QEMU too, but
        # no guest: it runs no VM's disk and may run anywhere, any time.
        any_qemu = self.qemu.qemu_guest

        def guest_qemu(pid):
            g = any_qemu(pid)
            return None if g and g.startswith(ACCEL_PROBE) else g
        self.qemu.qemu_guest = guest_qemu

        class Excused:
            def __contains__(_, g):
                return workload.excused(g, time.monotonic())
        self.qemu.excused = Excused()
        self.virsh = VirshWatch(lab, hosts)
        self.threads = [threading.Thread(target=fn, daemon=True, name=name) for fn, name in (
            (self.check_loop, "check"), (self.console_loop, "console"),
            (self.digest_loop, "digest"), (self.lease_loop, "lease"))]

    def start(self):
        self.virsh.wait_samples()
        for t in self.threads:
            t.start()

    def stop(self):
        self.stopped = True
        for t in self.threads:
            t.join(5)
        self.qemu.stop()
        self.virsh.stop()

    def violate(self, inv, text, key=None):
        """Records a violation once per (invariant, key): key names what
        broke (a guest, a host) when text carries changing numbers."""
        with self.lock:
            key = (inv, key if key is not None else text)
            if any(v["key"] == key for v in self.violations):
                return
            self.violations.append({"invariant": inv, "text": text, "key": key,
                                    "t": time.monotonic()})
        self.timeline.add(f"VIOLATION of invariant {inv}: {text}")

    # ------------------------------------------------------------ 1, 2, 5

    def check_loop(self):
        seen_overlaps = 0
        last_virsh = 0.0
        while not self.stopped:
            now = time.monotonic()
            with self.qemu.lock:
                ov = list(self.qemu.overlaps[seen_overlaps:])
                seen_overlaps += len(ov)
                where = {g: set(h) for g, h in self.qemu.where.items()}
                fresh = {g: list(tl[self.qemu_seen.get(g, 0):]) for g, tl in self.qemu.timeline.items()}
                for g, tl in self.qemu.timeline.items():
                    self.qemu_seen[g] = len(tl)
            for t, g, hs in ov:
                self.violate(1, f"{g}'s QEMU ran on {' and '.join(hs)} at once "
                                f"(at {self.timeline.rel(t):.2f} s)")
            if now - last_virsh > 1.0:
                last_virsh = now
                self.check_virsh()
            self.check_inquorate(now, where, fresh)
            self.check_failover(now, where)
            time.sleep(0.1)

    def check_virsh(self):
        for g, ha, ra, hb, rb in self.virsh.overlaps():
            key = (g, ha, ra[0], hb, rb[0])
            if key in self.virsh_checked:
                continue
            lo, hi = max(ra[0], rb[0]), min(ra[1], rb[1])
            if self.workload.excused_between(g, lo, hi):
                continue
            self.virsh_checked.add(key)
            self.violate(1, f"libvirt showed {g} running on {ha} and on {hb} at once "
                            f"({self.timeline.rel(lo):.2f}..{self.timeline.rel(hi):.2f} s)")

    def live_hosts(self, g, where):
        """Hosts where g's QEMU exists and is not known to be stopped: libvirt
        there says it runs, or that host's libvirt does not answer now."""
        out = set()
        with self.virsh.lock:
            last = dict(self.virsh.last)
        now = time.monotonic()
        for h in where.get(g, ()):
            s = last.get(h)
            if s is None or now - s[0] > 1.5 or g in s[1]:
                out.add(h)
        return out

    def check_failover(self, now, where):
        """Episodes (a guest's QEMU gone from every host until one is back)
        for the recovery figures; invariant 2 on how long an HA guest runs
        nowhere (no QEMU libvirt calls running) outside its migrations."""
        able = self.model.able_since(now)
        for g in self.ha:
            qhosts = where.get(g)
            if qhosts:
                if g in self.gone_since:
                    since, before = self.gone_since.pop(g)
                    self.episodes.append({"guest": g, "lost": since, "back": now,
                                          "host_before": before, "host_after": sorted(qhosts)[0],
                                          "first_hb": None})
                self.last_host[g] = sorted(qhosts)[0]
            elif g not in self.gone_since:
                self.gone_since[g] = (now, self.last_host.get(g))
            if self.live_hosts(g, where) or self.workload.excused(g, now):
                self.lost_since.pop(g, None)
                continue
            since = self.lost_since.setdefault(g, now)
            if able is None:
                continue
            start = max(since, able)
            if now - start > bounds.FAILOVER_BOUND_S:
                self.violate(2, f"HA guest {g} has not run for {now - since:.1f} s, "
                                f"{now - start:.1f} s of them while a quorate partition with "
                                f"capacity existed (bound {bounds.FAILOVER_BOUND_S:.1f} s); "
                                f"last on {self.last_host.get(g)}", key=g)

    def check_inquorate(self, now, where, fresh):
        inq = self.model.inquorate()
        for h, since in inq.items():
            if now - since > bounds.SELF_FENCE_BOUND_S:
                for g in self.ha:
                    if h in where.get(g, ()) and not self.workload.excused(g, now):
                        self.violate(5, f"host {h} has been cut off for {now - since:.1f} s and "
                                        f"still runs HA guest {g} (bound {bounds.SELF_FENCE_BOUND_S:.1f} s)",
                                     key=(h, g))
        for g, changes in fresh.items():
            prev = self.qemu_prev.get(g, frozenset())
            for t, hs in changes:
                for h in hs:
                    s = inq.get(h)
                    if s is not None and t - s > bounds.INQUORATE_START_GRACE_S and h not in prev:
                        self.violate(5, f"host {h}, cut off since {self.timeline.rel(s):.2f} s, "
                                        f"started {g} at {self.timeline.rel(t):.2f} s")
                prev = hs
            self.qemu_prev[g] = prev

    # ------------------------------------------------------------ 3 (and 1)

    def console_loop(self):
        pool = os.path.join(self.lab.pool, "console")
        while not self.stopped:
            now = time.monotonic()
            for g in self.guests + self.workload.created():
                c = self.consoles.setdefault(g, Console(os.path.join(pool, f"{g}.log")))
                for p in c.poll(now):
                    self.violate(1 if "two guests" in p else 3, f"{g}: {p}")
            self.match_first_heartbeats()
            time.sleep(0.25)

    def match_first_heartbeats(self):
        for e in self.episodes:
            if e["first_hb"] is None:
                c = self.consoles.get(e["guest"])
                for b in (c.boots if c else []):
                    if b["first_hb_t"] and b["start_t"] >= e["lost"] - 0.3:
                        e["first_hb"] = b["first_hb_t"]
                        break

    # ------------------------------------------------------------ 4

    def status(self, host):
        try:
            p = subprocess.run([self.lab.tool, "exec", host, "vireo", "status", "--json",
                                "--timeout", "5"], env=self.lab.env, capture_output=True,
                               text=True, timeout=20)
            return json.loads(p.stdout) if p.returncode == 0 else None
        except (subprocess.TimeoutExpired, ValueError):
            return None

    def digest_loop(self):
        while not self.stopped:
            time.sleep(2.0)
            now = time.monotonic()
            side = self.model.quorate_side()
            if not side or self.model.stable_for(now) < bounds.DIGEST_STABLE_S or \
                    any(not self.model._healthy(n) for n in side):
                self.digest_unconverged_since = None
                continue
            host = sorted(side)[int(now) % len(side)]
            st = self.status(host)
            if not st or self.model.stable_for(time.monotonic()) < bounds.DIGEST_STABLE_S:
                continue
            self.digest_checks += 1
            seen = {host: (st.get("version"), st.get("digest"))}
            for x in st.get("nodes", []):
                if x.get("state") == "online" and x.get("digest"):
                    seen[x["name"]] = (x.get("version"), x.get("digest"))
            by_version = {}
            for n, (ver, dg) in seen.items():
                by_version.setdefault(ver, {}).setdefault(dg, []).append(n)
            for ver, dgs in by_version.items():
                if len(dgs) > 1:
                    self.violate(4, f"at state version {ver} the members hold different states: "
                                    + "; ".join(f"{','.join(sorted(ns))} {dg[:12]}" for dg, ns in dgs.items()))
            online = {n for n in seen}
            if len(set(seen.values())) == 1 and online >= side:
                self.digest_unconverged_since = None
            elif self.digest_unconverged_since is None:
                self.digest_unconverged_since = now
            elif now - self.digest_unconverged_since > bounds.DIGEST_CONVERGE_S:
                self.violate(4, f"membership stable for {self.model.stable_for(now):.0f} s, yet the "
                                f"members have not agreed on one state for "
                                f"{now - self.digest_unconverged_since:.0f} s: {seen} (online {sorted(online)}, "
                                f"expected {sorted(side)})", key="converge")
                self.digest_unconverged_since = now

    # ------------------------------------------------------------ leases (1)

    def lease_files(self):
        out = {}
        for g in self.guests:
            disk = f"{POOL_IN_HOST}/images/{g}-disk1.qcow2"
            path = os.path.join(self.lab.pool, "leases", hashlib.sha256(disk.encode()).hexdigest())
            try:
                st = os.stat(path)
            except FileNotFoundError:
                continue
            out[f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"] = g
        return out

    @staticmethod
    def host_of_pid(pid):
        try:
            with open(f"/proc/{pid}/cgroup") as f:
                m = CGROUP_HOST.search(f.read())
            return m.group(1) if m else None
        except OSError:
            return None

    def lease_holders(self):
        files = self.lease_files()
        held = {}
        with open("/proc/locks") as f:
            for line in f:
                parts = line.split()
                if "->" in parts or len(parts) < 6:
                    continue
                g = files.get(parts[5])
                if g:
                    held.setdefault(g, set()).add(self.host_of_pid(int(parts[4])))
        return held

    def lease_loop(self):
        """A guest libvirt runs on one host while another host holds its
        disk lease: its disk is writable where it should not be."""
        while not self.stopped:
            time.sleep(1.0)
            now = time.monotonic()
            held = self.lease_holders()
            self.lease_samples += 1
            with self.virsh.lock:
                last = {h: s for h, s in self.virsh.last.items() if now - s[0] < 1.0}
            for g in self.guests:
                running = {h for h, (_, names) in last.items() if g in names}
                holders = held.get(g, set())
                bad = running and holders and not (running & holders)
                if len(holders) > 1:
                    self.violate(1, f"{g}'s disk lease is held on {sorted(holders)} at once")
                if bad and not self.workload.excused(g, now):
                    first = self.lease_mismatch.setdefault(g, now)
                    if now - first > 2.5:
                        self.violate(1, f"{g} runs on {sorted(running)} but its disk lease is held by "
                                        f"{sorted(holders)} (for {now - first:.1f} s)", key=("lease", g))
                else:
                    self.lease_mismatch.pop(g, None)

    # ------------------------------------------------------------ results

    def recoveries(self):
        """Failover episodes with their times (seconds from the loss to the
        new boot's first heartbeat, and from the fault that caused it)."""
        self.match_first_heartbeats()
        return list(self.episodes)


def median_max(xs):
    return (statistics.median(xs), max(xs)) if xs else (None, None)
