"""What users do while the nemesis breaks things: quick and live
migrations, stop/start of non-HA guests, create/delete of scratch VMs,
each through the vireo CLI on a host the model calls healthy.

It also keeps the desired state the observer checks invariant 2 against:
which guests should run (an HA guest always; a non-HA one unless the
workload stopped it)."""
import json
import random
import subprocess
import threading
import time

KERNEL = "/var/cache/vireo/guest/vmlinux"
INITRD = "/var/cache/vireo/guest/initrd.img"
CMDLINE = "console=ttyS0 quiet panic=-1 pci=noacpi cryptomgr.notests"
CLI_TIMEOUT = 150


def create_args(name, ha):
    return ["vm", "create", name, "--memory", "128M", "--vcpus", "1", "--kernel", KERNEL,
            "--initrd", INITRD, "--cmdline", CMDLINE, "--disk", "64M", "--start"] + \
        (["--ha", "--max-relocations", "100"] if ha else [])


class Workload:
    def __init__(self, lab, model, qemu_watch, timeline, seed):
        self.lab = lab
        self.model = model
        self.qemu = qemu_watch
        self.timeline = timeline
        self.rng = random.Random(f"workload-run/{seed}")
        self.lock = threading.Lock()
        self.windows = {}            # guest -> [[start, end]] of its migrations (+ a tail)
        self.made = []               # scratch VMs created
        self.stopped = set()         # non-HA guests the workload stopped
        self.counts = {}             # "migrate quick: moved" -> n
        self.migrations = []         # {guest, live, source, target, rc, seconds, cause}
        self.ops = []

    # ------------------------------------------------------------ the CLI

    def via(self, exclude=()):
        """A host to run the CLI on: healthy in the model, else any up one."""
        with self.model.lock:
            ok = [n for n in self.model.hosts if self.model._healthy(n) and n not in exclude]
            up = [n for n in self.model.hosts if self.model.h[n].up and n not in exclude]
        return self.rng.choice(ok or up or self.model.hosts)

    def vireo(self, host, *args, timeout=CLI_TIMEOUT):
        try:
            p = subprocess.run([self.lab.tool, "exec", host, "vireo", *args], env=self.lab.env,
                               capture_output=True, text=True, timeout=timeout)
            return p.returncode, p.stdout, p.stderr
        except subprocess.TimeoutExpired:
            return -1, "", f"no answer within {timeout} s"

    def vm_list(self, host=None):
        rc, out, _ = self.vireo(host or self.via(), "vm", "list", "--json", timeout=30)
        if rc != 0:
            return None
        try:
            doc = json.loads(out)
        except ValueError:
            return None
        vms = doc["vms"] if isinstance(doc, dict) and "vms" in doc else doc
        return {v["name"]: v for v in vms}

    def count(self, key):
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + 1

    # ------------------------------------------------------------ migrations

    def excused(self, guest, now):
        """A QEMU of guest on two hosts is its migration, not a double run."""
        return self.excused_between(guest, now, now)

    def excused_between(self, guest, lo, hi):
        with self.lock:
            return any(a - 0.5 <= hi and lo <= b + 0.5 for a, b in self.windows.get(guest, ()))

    def created(self):
        with self.lock:
            return list(self.made)

    def start_migration(self, guest, live, cause="workload"):
        """Starts `vireo vm migrate` in the background to another healthy
        host; the migration dict, or None if guest does not run now."""
        host = self.via()
        vms = self.vm_list(host)
        v = (vms or {}).get(guest)
        if not v or v.get("state") != "running" or not v.get("node"):
            self.count("migrate: skipped (not running)")
            return None
        src = v["node"]
        with self.model.lock:
            targets = [n for n in self.model.hosts if n != src and self.model._healthy(n)]
        if not targets:
            self.count("migrate: skipped (no target)")
            return None
        dst = self.rng.choice(targets)
        args = ["exec", host, "vireo", "vm", "migrate", guest, "--to", dst] + (["--live"] if live else [])
        window = [time.monotonic(), float("inf")]
        with self.lock:
            self.windows.setdefault(guest, []).append(window)
        proc = subprocess.Popen([self.lab.tool, *args], env=self.lab.env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        mig = {"guest": guest, "live": live, "source": src, "target": dst, "via": host,
               "proc": proc, "t0": window[0], "cause": cause, "window": window}
        self.timeline.add(f"{cause}: migrate {guest} {src} -> {dst} ({'live' if live else 'quick'}) via {host}")
        return mig

    def finish_migration(self, mig):
        from chaoslib import bounds
        proc = mig.pop("proc")
        try:
            out, _ = proc.communicate(timeout=CLI_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()               # our own vireo-lab exec
            out, _ = proc.communicate()
            proc.returncode = -1
        rc = proc.returncode
        mig["rc"] = rc
        mig["seconds"] = round(time.monotonic() - mig["t0"], 2)
        mig["output"] = out.strip()[-300:]
        what = {0: "moved", 1: "rolled back", 2: "refused", 3: "not quorate", -1: "no answer"}.get(rc, f"exit {rc}")
        mig["outcome"] = what
        self.count(f"migrate {'live' if mig['live'] else 'quick'}: {what}")
        if rc not in (0, 2):
            mig["settled"] = self.wait_settled(mig["guest"], bounds.MIGRATION_SETTLE_S)
        with self.lock:
            self.migrations.append(mig)
            mig.pop("window")[1] = time.monotonic() + bounds.MIGRATION_TAIL_S
        self.timeline.add(f"{mig['cause']}: migrate {mig['guest']} {mig['source']} -> {mig['target']}: "
                          f"{what} in {mig['seconds']} s" + (f" ({mig['output'][-160:]})" if rc else "")
                          + ("" if mig.get("settled", True) else
                             f"; the cluster still migrated it {bounds.MIGRATION_SETTLE_S:.0f} s later"))

    def wait_settled(self, guest, limit_s):
        """The command gave up or failed, but the cluster may still be
        migrating guest (vireod went away mid-request, quorum came back):
        both QEMUs stay excused until no host shows a migration of it.
        True once settled; False when limit_s passed first."""
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            with self.model.lock:     # not self.via(): leaves the workload's draws as they were
                ok = [n for n in self.model.hosts if self.model._healthy(n)]
            vms = self.vm_list(ok[0]) if ok else None
            if vms is not None and not (vms.get(guest) or {}).get("migration"):
                return True
            time.sleep(0.5)
        return False

    # ------------------------------------------------------------ ops

    def run(self, op):
        kind, g = op["op"], op["guest"]
        if kind == "migrate":
            mig = self.start_migration(g, op["live"])
            if mig:
                self.finish_migration(mig)
            return
        host = self.via()
        if kind == "stop-start":
            with self.lock:
                stopping = g not in self.stopped
                if stopping:
                    self.stopped.add(g)       # desired: stopped from the request on
            rc, out, err = self.vireo(host, "vm", "stop" if stopping else "start", g)
            if not stopping and rc == 0:
                with self.lock:
                    self.stopped.discard(g)
            self.count(f"{'stop' if stopping else 'start'}: {'ok' if rc == 0 else 'failed'}")
        elif kind == "create":
            with self.lock:
                self.made.append(g)
            rc, out, err = self.vireo(host, *create_args(g, False))
            self.count(f"create: {'ok' if rc == 0 else 'failed'}")
        elif kind == "delete":
            self.vireo(host, "vm", "stop", g, "--force")
            rc, out, err = self.vireo(host, "vm", "delete", g, "--purge")
            self.count(f"delete: {'ok' if rc == 0 else 'failed'}")
        self.timeline.add(f"workload: {kind} {g} via {host}: "
                          + ("ok" if rc == 0 else f"exit {rc}: {(err or out).strip()[-160:]}"))
