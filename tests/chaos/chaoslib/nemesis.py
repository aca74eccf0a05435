"""Breaks and mends the lab, and keeps a model of what is broken.

Every fault runs in its own thread: inject, wait its seconds, mend, then
repair the host (start any of its daemons that died meanwhile, e.g. a
vireod the watchdog killed). The model is what the observer's liveness
checks (invariants 2, 4 and 5) ask: which hosts are up, reachable, settled,
and which are cut off. It is built from what the nemesis did, never from
what vireod says."""
import json
import os
import random
import signal
import subprocess
import threading
import time

from chaoslib import bounds

CG_ROOT = "/sys/fs/cgroup/freezer/vireo-lab"
DAEMONS = ("corosync", "virtlockd", "libvirtd", "watchdog", "vireod")


class HostModel:
    def __init__(self):
        self.up = True
        self.frozen = False
        self.dead = set()          # daemons killed by a fault, not yet restarted
        self.vireod_stopped = False
        self.loss = 0
        self.settled_at = 0.0      # counts as able from then on
        self.lost_at = None        # when it stopped being healthy (None: healthy)
        self.out_since = None      # when it left the quorate side (None: in it, or down)


class Model:
    """What the nemesis has done to the lab, with times (monotonic)."""

    def __init__(self, hosts):
        self.hosts = list(hosts)
        self.h = {n: HostModel() for n in hosts}
        self.groups = None         # a partition: [[hosts], ...]
        self.bridge = None         # a cut: [the hosts that see both sides]
        self.pool_full = False
        self.pool_free_at = 0.0
        self.changed_at = time.monotonic()
        self.lock = threading.RLock()

    def change(self, host=None, **kw):
        now = time.monotonic()
        with self.lock:
            if host:
                hm = self.h[host]
                was = self._healthy(host)
                for k, v in kw.items():
                    setattr(hm, k, v)
                if was and not self._healthy(host):
                    hm.lost_at = now
                if not was and self._healthy(host):
                    hm.settled_at = now + bounds.SETTLE_S
                    hm.lost_at = None
            else:
                before = {n: self._healthy(n) for n in self.hosts}
                for k, v in kw.items():
                    setattr(self, k, v)
                if "pool_full" in kw and not kw["pool_full"]:
                    self.pool_free_at = now + bounds.SETTLE_S
                for n in self.hosts:
                    if not self._healthy(n):
                        continue
                    if not before[n]:
                        self.h[n].settled_at = now + bounds.SETTLE_S
                    elif "groups" in kw:
                        # Membership changes for everybody when a partition comes or goes.
                        self.h[n].settled_at = max(self.h[n].settled_at, now + bounds.SETTLE_S)
            self.changed_at = now
            qs = self._quorate_side() or set()
            for n in self.hosts:
                hm = self.h[n]
                if n in qs or not hm.up or hm.frozen:
                    hm.out_since = None
                elif hm.out_since is None:
                    hm.out_since = now

    def _healthy(self, n):
        hm = self.h[n]
        return hm.up and not hm.frozen and not hm.dead and not hm.vireod_stopped and not hm.loss

    def _member(self, n):
        """Runs corosync and can be reached (it takes part in membership)."""
        hm = self.h[n]
        return hm.up and not hm.frozen and "corosync" not in hm.dead

    def _side(self, n):
        if not self.groups:
            return set(self.hosts)
        for g in self.groups:
            if n in g:
                return set(g) | set(self.bridge or ())
        return set(self.hosts)     # the bridge host

    def certain(self):
        """False while membership cannot be predicted (a bridge, packet loss)."""
        with self.lock:
            return not self.bridge and not any(hm.loss for hm in self.h.values())

    def quorate_side(self):
        """The hosts that form the quorate partition, or None if there is none
        or it cannot be told."""
        with self.lock:
            return self._quorate_side() if self.certain() else None

    def _quorate_side(self):
        majority = len(self.hosts) // 2 + 1
        for n in self.hosts:
            side = {m for m in self._side(n) if self._member(m)}
            if len(side) >= majority:
                return side
        return None

    def able_since(self, now):
        """When, if at all, a quorate partition with capacity (a settled,
        healthy host with a working libvirtd and vireod, a pool with room)
        last began; None if there is none now."""
        with self.lock:
            side = self.quorate_side()
            if not side or self.pool_full:
                return None
            healthy = [n for n in side if self._healthy(n)]
            if not healthy or any(not self._healthy(n) and self._member(n) and
                                  self.h[n].vireod_stopped for n in side):
                return None
            # Every member must have settled: a member just back may still be joining.
            t = max([self.h[n].settled_at for n in side] + [self.pool_free_at])
            return t if t <= now else None

    def inquorate(self):
        """{host: since} of hosts that surely are not in a quorate partition
        and run: cut into a minority, or without corosync."""
        out = {}
        with self.lock:
            if not self.certain():
                return out
            for n in self.hosts:
                hm = self.h[n]
                if hm.up and not hm.frozen and hm.out_since is not None:
                    out[n] = hm.out_since
        return out

    def stable_for(self, now):
        with self.lock:
            return now - self.changed_at


class Nemesis:
    def __init__(self, lab, model, qemu_watch, workload, timeline, rng_seed):
        self.lab = lab
        self.model = model
        self.qemu = qemu_watch
        self.workload = workload
        self.timeline = timeline
        self.rng = random.Random(f"nemesis/{rng_seed}")
        self.threads = []
        self.results = {}          # kind -> {"injected": n, "errors": n}
        self.injections = []       # (t, kind, hosts, guest): what each fault hit, when
        self.pauses = []           # (host, wall start, wall end): vireod or the host stopped
        self.host_lock = {h: threading.Lock() for h in model.hosts}
        self.lab_lock = threading.Lock()

    # ------------------------------------------------------------ lab access

    def lab_cmd(self, *args, timeout=180, check=True):
        p = subprocess.run([self.lab.tool, *args], env=self.lab.env, capture_output=True,
                           text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise RuntimeError(f"vireo-lab {' '.join(args)}: {(p.stderr or p.stdout).strip()}")
        return p

    def status(self):
        return json.loads(self.lab_cmd("status", "--json").stdout)

    def daemon_pid(self, host, daemon):
        for n in self.status()["nodes"]:
            if n["name"] == host:
                d = n["daemons"][daemon]
                return d["pid"] if d["alive"] else None
        return None

    def freeze(self, host, state):
        with open(f"{CG_ROOT}/{self.lab.name}/{host}/freezer.state", "w") as f:
            f.write(state)

    def qemu_pid(self, host, guest):
        """The pid of guest's QEMU in host's cgroup (a process of our lab)."""
        try:
            with open(f"{CG_ROOT}/{self.lab.name}/{host}/cgroup.procs") as f:
                pids = [int(x) for x in f.read().split()]
        except (OSError, ValueError):
            return None
        for pid in pids:
            if self.qemu.qemu_guest(pid) == guest:
                return pid
        return None

    def repair(self, host):
        """Starts every daemon of an up host that is not running (in order)."""
        st = self.status()
        rec = next(n for n in st["nodes"] if n["name"] == host)
        if rec["state"] != "up":
            return
        for d in DAEMONS:
            if not rec["daemons"][d]["alive"]:
                self.timeline.add(f"repair: start {d} on {host}")
                p = self.lab_cmd("start-daemon", host, d, check=False)
                if p.returncode != 0:
                    self.timeline.add(f"repair: {d} on {host} failed: {p.stderr.strip()}")

    # ------------------------------------------------------------ faults

    def run(self, f):
        th = threading.Thread(target=self._run, args=(f,), daemon=True, name=f"fault{f['id']}")
        th.start()
        self.threads.append(th)

    def _run(self, f):
        kind = f["kind"]
        r = self.results.setdefault(kind, {"injected": 0, "errors": 0})
        try:
            getattr(self, "f_" + kind.replace("-", "_"))(f)
            r["injected"] += 1
        except Exception as e:  # a fault that could not be done is reported, not fatal
            r["errors"] += 1
            self.timeline.add(f"fault {f['id']} {kind}: could not be done: {e}")

    def hit(self, kind, hosts=(), guest=None):
        self.injections.append((time.monotonic(), kind, set(hosts), guest))

    def cause(self, guest, host, t):
        """The latest fault that hit guest or its host at or before t (30 s back)."""
        for ti, kind, hosts, g in reversed(self.injections):
            if ti <= t + 0.2 and t - ti < 30 and (g == guest or host in hosts):
                return ti, kind
        return None, None

    def _hold(self, seconds):
        time.sleep(seconds)

    def _daemon_fault(self, f, daemon):
        h = f["host"]
        with self.host_lock[h]:
            self.lab_cmd("stop-daemon", h, daemon)
            self.hit(f"{daemon}-kill", [h])
            self.model.change(h, dead=self.model.h[h].dead | {daemon})
            self.timeline.add(f"fault {f['id']}: {daemon} killed on {h}")
            self._hold(f["seconds"])
            self.repair(h)
            self.model.change(h, dead=self.model.h[h].dead - {daemon})
            self.timeline.add(f"fault {f['id']}: {daemon} back on {h}")

    def f_host_kill(self, f):
        h = f["host"]
        with self.host_lock[h]:
            self.lab_cmd("kill", h)
            self.hit("host-kill", [h])
            self.model.change(h, up=False)
            self.timeline.add(f"fault {f['id']}: host {h} killed")
            self._hold(f["seconds"])
            self.lab_cmd("start", h)
            self.model.change(h, up=True)
            self.timeline.add(f"fault {f['id']}: host {h} started")

    def f_vireod_kill(self, f):
        self._daemon_fault(f, "vireod")

    def f_corosync_kill(self, f):
        self._daemon_fault(f, "corosync")

    def f_libvirtd_kill(self, f):
        self._daemon_fault(f, "libvirtd")

    def f_qemu_kill(self, f):
        g = f["guest"]
        hosts = sorted(self.qemu.hosts_of(g))
        if not hosts:
            self.timeline.add(f"fault {f['id']}: {g} has no QEMU to kill (not running)")
            return
        h = self.rng.choice(hosts)
        pid = self.qemu_pid(h, g)
        if not pid:
            self.timeline.add(f"fault {f['id']}: {g}'s QEMU on {h} is gone already")
            return
        os.kill(pid, signal.SIGKILL)
        self.hit("qemu-kill", [], g)
        self.timeline.add(f"fault {f['id']}: {g}'s QEMU (pid {pid}) killed on {h}")

    def _partition(self, f, cmd):
        groups = [",".join(g) for g in f["groups"]]
        with self.lab_lock:
            self.lab_cmd(cmd, *groups)
            self.hit(f["kind"], [h for g in f["groups"] for h in g] if f.get("bridge") else
                     min(f["groups"], key=len))
            self.model.change(groups=f["groups"], bridge=[f["bridge"]] if f.get("bridge") else None)
        self.timeline.add(f"fault {f['id']}: {cmd} {' | '.join(groups)}")
        self._hold(f["seconds"])
        with self.lab_lock:
            self.lab_cmd("heal")
            self.model.change(groups=None, bridge=None)
        self.timeline.add(f"fault {f['id']}: healed")

    def f_partition_one(self, f):
        self._partition(f, "partition")

    def f_partition_two(self, f):
        self._partition(f, "partition")

    def f_partition_bridge(self, f):
        self._partition(f, "cut")

    def f_netem(self, f):
        h = f["host"]
        args = ["--loss", str(f["loss"])]
        delay = ""
        if "delay_ms" in f:
            args += ["--delay", str(f["delay_ms"]), "--jitter", str(f["jitter_ms"])]
            delay = f", the rest leave {f['delay_ms']}±{f['jitter_ms']} ms late"
        with self.host_lock[h]:
            self.lab_cmd("netem", h, *args)
            self.hit("netem", [h])
            self.model.change(h, loss=f["loss"])
            self.timeline.add(f"fault {f['id']}: {h} loses {f['loss']}% of its packets{delay}")
            self._hold(f["seconds"])
            self.lab_cmd("netem", h, "--clear", check=False)
            self.model.change(h, loss=0)
            self.timeline.add(f"fault {f['id']}: {h}'s network clear")

    def _host_pause(self, f, lock):
        h = f["host"]
        with lock:
            self.freeze(h, "FROZEN")
            t = time.time()
            self.hit(f["kind"], [h])
            self.model.change(h, frozen=True)
            self._hold(f["seconds"])
            self.freeze(h, "THAWED")
            self.pauses.append((h, t, time.time()))
            self.model.change(h, frozen=False)
        self.timeline.add(f"fault {f['id']}: {h} frozen for {f['seconds']} s")

    def f_host_pause_short(self, f):
        # A short pause may fall on a host another fault holds (a killed host: no effect).
        self._host_pause(f, threading.Lock())

    def f_host_pause_long(self, f):
        self._host_pause(f, self.host_lock[f["host"]])

    def _vireod_pause(self, f, lock):
        h = f["host"]
        with lock:
            pid = self.daemon_pid(h, "vireod")
            if not pid:
                self.timeline.add(f"fault {f['id']}: no vireod on {h} to pause")
                return
            os.kill(pid, signal.SIGSTOP)
            t = time.time()
            self.hit(f["kind"], [h])
            self.model.change(h, vireod_stopped=True)
            self._hold(f["seconds"])
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass               # the watchdog killed the hung vireod
            self.pauses.append((h, t, time.time()))
            self.model.change(h, vireod_stopped=False)
            self.timeline.add(f"fault {f['id']}: vireod on {h} stopped for {f['seconds']} s")
            if f["seconds"] >= bounds.WATCHDOG_S - 0.5:
                time.sleep(1.0)
                self.repair(h)

    def f_vireod_pause_short(self, f):
        self._vireod_pause(f, threading.Lock())

    def f_vireod_pause_long(self, f):
        self._vireod_pause(f, self.host_lock[f["host"]])

    def f_migration_cut(self, f):
        g, how = f["guest"], f["how"]
        mig = self.workload.start_migration(g, f["live"], cause=f"fault {f['id']}")
        if not mig:
            self.timeline.add(f"fault {f['id']}: {g} cannot be migrated now; nothing cut")
            return
        src, dst = mig["source"], mig["target"]
        time.sleep(f["after"])
        victim = dst if "target" in how or how == "cut-link" else src
        self.hit("migration-cut", [src, dst], g)
        with self.host_lock[victim]:
            if how.endswith("vireod") or how.endswith("libvirtd"):
                d = how.rsplit("-", 1)[1]
                self.lab_cmd("stop-daemon", victim, d)
                self.model.change(victim, dead=self.model.h[victim].dead | {d})
                self.timeline.add(f"fault {f['id']}: migration of {g} {src}->{dst}: {d} killed on {victim}")
                self._hold(f["seconds"])
                self.repair(victim)
                self.model.change(victim, dead=self.model.h[victim].dead - {d})
            elif how == "kill-target-qemu":
                pid = self.qemu_pid(dst, g)
                if pid:
                    os.kill(pid, signal.SIGKILL)
                self.timeline.add(f"fault {f['id']}: migration of {g} {src}->{dst}: target QEMU "
                                  + (f"(pid {pid}) killed" if pid else "not there (yet or any more)"))
            else:
                with self.lab_lock:
                    self.lab_cmd("cut", src, dst)
                    self.model.change(groups=[[src], [dst]],
                                      bridge=[h for h in self.model.hosts if h not in (src, dst)] or None)
                self.timeline.add(f"fault {f['id']}: migration of {g} {src}->{dst}: link cut")
                self._hold(f["seconds"])
                with self.lab_lock:
                    self.lab_cmd("heal")
                    self.model.change(groups=None, bridge=None)
        self.workload.finish_migration(mig)

    def f_pool_full(self, f):
        path = os.path.join(self.lab.pool, "chaos-fill")
        st = os.statvfs(self.lab.pool)
        size = st.f_bfree * st.f_frsize      # root writes into the reserved blocks too
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        try:
            while size > (1 << 20):
                try:
                    os.posix_fallocate(fd, 0, size)
                    break
                except OSError:
                    size -= max(1 << 20, size // 50)
            self.model.change(pool_full=True)
            free = os.statvfs(self.lab.pool).f_bfree * st.f_frsize
            self.timeline.add(f"fault {f['id']}: pool full ({free >> 10} KiB left)")
            self._hold(f["seconds"])
        finally:
            os.close(fd)
            os.unlink(path)
            self.model.change(pool_full=False)
            self.timeline.add(f"fault {f['id']}: pool has room again")

    def join(self, timeout):
        deadline = time.monotonic() + timeout
        for th in self.threads:
            th.join(max(0.1, deadline - time.monotonic()))
        return [th.name for th in self.threads if th.is_alive()]
