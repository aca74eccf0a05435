"""A lab and its hosts: metadata, paths, booting hosts and daemons, waiting for quorum."""

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import time

from labconf import holder_script, make_host_dirs
from labsys import (CG_ROOT, LAB_ROOT, NAME_RE, SYS_PATH, LabError, UsageError, cg_joiner,
                    cg_set_state, flock, info, lab_netns, proc_cgroup, proc_state, read_int, run,
                    tail, trace, warn, write_file)

MAX_HOSTS = 16
MAX_SUBNETS = 201            # 10.99.0.0/24 .. 10.99.200.0/24
UP_TIMEOUT = 60.0
DAEMON_TIMEOUT = 30.0
DEFAULT_POOL_SIZE = 4 << 30
# vireo-watchdog ("watchdog") starts before vireod, which connects to it.
DAEMONS = ("corosync", "virtlockd", "libvirtd", "watchdog", "vireod")

# The source tree: tools/lab/labhost.py is three levels down.
SRC_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))


def find_build_dir():
    """$VIREO_BUILD_DIR; else the source tree when it holds a build (tools/demo
    makes one); else build/, where tools/run-tests builds (after cleaning the
    in-tree one), so the README's commands work in either order."""
    if os.environ.get("VIREO_BUILD_DIR"):
        return os.path.realpath(os.environ["VIREO_BUILD_DIR"])
    for d in (SRC_DIR, f"{SRC_DIR}/build"):
        if os.access(f"{d}/node/vireod", os.X_OK):
            return os.path.realpath(d)
    return SRC_DIR


BUILD_DIR = find_build_dir()
NOT_BUILT = ((f"vireod is not built in $VIREO_BUILD_DIR ({BUILD_DIR}); build there or unset it"
              if os.environ.get("VIREO_BUILD_DIR") else
              f"vireod is not built in {SRC_DIR} or {SRC_DIR}/build; run tools/demo or "
              "tools/run-tests first, or set VIREO_BUILD_DIR to a build directory"))

# Where each daemon's stdout/stderr goes, relative to the host's /var/log.
DAEMON_STDOUT = {
    "corosync": "corosync/corosync.stdout",
    "virtlockd": "libvirt/virtlockd.stdout",
    "libvirtd": "libvirt/libvirtd.stdout",
    "watchdog": "vireo/watchdog.stdout",
    "vireod": "vireo/vireod.stdout",
}


class Lab:
    def __init__(self, name):
        if not NAME_RE.match(name):
            raise UsageError(f"lab name '{name}' is not valid; use letters, digits, '_' and '-' (at most 32)")
        self.name = name
        self.dir = f"{LAB_ROOT}/{name}"
        self.meta_path = f"{self.dir}/lab.json"
        self.lock_path = f"{self.dir}/.lock"
        self.cg = f"{CG_ROOT}/{name}"
        self.brns = f"vl-{name}-br"
        self.pool_img = f"{self.dir}/pool.img"
        self.pool = f"{self.dir}/pool"
        self._meta = None

    # -- names and paths
    def netns(self, node):
        return f"vl-{self.name}-{node}"

    def hdir(self, node):
        return f"{self.dir}/{node}"

    def host_cg(self, node):
        return f"{self.cg}/{node}"

    def pidfile(self, node, daemon):
        return f"{self.hdir(node)}/pids/{daemon}.pid"

    def stdout_log(self, node, daemon):
        return f"{self.hdir(node)}/log/{DAEMON_STDOUT[daemon]}"

    # -- metadata
    @property
    def meta(self):
        if self._meta is None:
            try:
                with open(self.meta_path) as f:
                    self._meta = json.load(f)
            except FileNotFoundError:
                raise LabError(f"lab {self.name} does not exist (no {self.meta_path}); "
                               f"start one with: vireo-lab up N --name {self.name}")
            except ValueError as e:
                raise LabError(f"{self.meta_path} is damaged ({e}); remove the lab with: "
                               f"vireo-lab down --name {self.name}")
        return self._meta

    def save(self):
        write_file(self.meta_path, json.dumps(self._meta, indent=2, sort_keys=True) + "\n")

    def nodes(self):
        return [f"n{i}" for i in range(1, self.meta["hosts"] + 1)]

    def check_node(self, node):
        if node not in self.nodes():
            raise UsageError(f"lab {self.name} has no host '{node}'; its hosts are n1..n{self.meta['hosts']}")

    def addr(self, node):
        return f"10.99.{self.meta['subnet_index']}.{node[1:]}"

    def lock(self):
        return flock(self.lock_path)

    def lock_existing(self):
        """The lab's lock; fails clearly first if the lab does not exist (flock would create its dir)."""
        self.meta  # noqa: B018
        self._meta = None       # read it again under the lock
        return self.lock()

    def exists(self):
        return (os.path.exists(self.dir) or os.path.isdir(self.cg)
                or any(lab == self.name for lab, _ in lab_netns()))

    # -- processes
    def alive(self, node, pid):
        """pid is a live process of host node (checked by cgroup, so a reused pid never matches)."""
        if not pid or proc_state(pid) in (None, "Z", "X"):
            return False
        return proc_cgroup(pid) == f"/vireo-lab/{self.name}/{node}"

    def holder(self, node):
        pid = self.meta["nodes"][node].get("holder_pid")
        return pid if self.alive(node, pid) else None

    def need_holder(self, node):
        pid = self.holder(node)
        if not pid:
            raise LabError(f"host {node} of lab {self.name} is down; boot it with: "
                           f"vireo-lab start {node} --name {self.name}")
        return pid

    def daemon_pid(self, node, daemon):
        """pid of a running daemon, or None."""
        pid = read_int(self.pidfile(node, daemon))
        return pid if self.alive(node, pid) else None

    def host_env(self, base=None):
        env = dict(base if base is not None else {"HOME": "/root", "LANG": "C.UTF-8"})
        env["PATH"] = f"{BUILD_DIR}/tools:{BUILD_DIR}/node:{SYS_PATH}"
        env["VIREO_LAB"] = self.name
        env.pop("LIBVIRT_DEFAULT_URI", None)
        return env

    def nsenter(self, holder, wd="/"):
        return ["nsenter", "-t", str(holder), "-m", "-n", "-u", f"--wd={wd}", "--"]

    def probe_all(self, nodes, argv, timeout=5.0):
        """Run the same query in several hosts at once: {node: stdout or None}.

        The queries run outside the hosts' cgroups, so a frozen host makes
        its query time out instead of hanging us."""
        procs, out = {}, {}
        for n in nodes:
            holder = self.holder(n)
            if holder:
                procs[n] = subprocess.Popen(self.nsenter(holder) + argv, stdin=subprocess.DEVNULL,
                                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                            text=True, env=self.host_env())
        deadline = time.monotonic() + timeout
        for n in nodes:
            p = procs.get(n)
            out[n] = None
            if not p:
                continue
            try:
                stdout, _ = p.communicate(timeout=max(0.0, deadline - time.monotonic()))
                out[n] = stdout if p.returncode == 0 or stdout else None
            except subprocess.TimeoutExpired:
                p.kill()
                p.communicate()
        return out

    def spawn(self, node, argv, log):
        """Start argv in host node's cgroup as its own session; returns the Popen."""
        with open(log, "ab") as out:
            try:
                return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                        preexec_fn=cg_joiner(self.host_cg(node)),
                                        start_new_session=True, close_fds=True,
                                        env=self.host_env(), cwd="/")
            except (OSError, subprocess.SubprocessError) as e:
                raise LabError(f"cannot start {argv[0]} for host {node}: {e}")


def vireod_bin():
    p = f"{BUILD_DIR}/node/vireod"
    return p if os.access(p, os.X_OK) else None


def runs_vireod(lab):
    """Whether the lab's hosts run vireod (not when it came up with --no-vireod)."""
    return bool(lab.meta.get("vireod")) and bool(vireod_bin())


def watchdog_bin():
    p = f"{BUILD_DIR}/node/vireo-watchdog"
    return p if os.access(p, os.X_OK) else None


def vireo_bin():
    p = f"{BUILD_DIR}/tools/vireo"
    return p if os.access(p, os.X_OK) else None


def reaper_bin(lab):
    """The built vireo-reaper, or one compiled into the lab dir until the build has one."""
    built = f"{BUILD_DIR}/tools/lab/vireo-reaper"
    if os.access(built, os.X_OK):
        return built
    out = f"{lab.dir}/vireo-reaper"
    if not os.access(out, os.X_OK):
        src = f"{SRC_DIR}/tools/lab/vireo-reaper.c"
        run(["cc", "-O2", "-Wall", "-Wextra", "-Werror", "-o", out, src])
    return out


def require_root():
    if os.geteuid() != 0:
        raise LabError("vireo-lab needs root (namespaces, mounts, cgroups); run it as root")


def require_tools():
    for tool in ("ip", "nft", "nsenter", "unshare", "mount", "umount", "losetup", "mkfs.ext4",
                 "corosync", "corosync-quorumtool", "virtlockd", "libvirtd"):
        if not shutil.which(tool, path=SYS_PATH):
            raise LabError(f"{tool} is not installed; run tools/install-deps")
    if not os.path.isfile("/sys/fs/cgroup/freezer/cgroup.procs"):
        raise LabError("the cgroup v1 freezer is not mounted at /sys/fs/cgroup/freezer; "
                       "mount it with: mount -t cgroup -o freezer freezer /sys/fs/cgroup/freezer")


def alloc_subnet():
    """Lowest subnet index no other lab uses (caller holds the global lock)."""
    used = set()
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(LAB_ROOT):
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                with open(f"{LAB_ROOT}/{name}/lab.json") as f:
                    used.add(int(json.load(f)["subnet_index"]))
    for k in range(MAX_SUBNETS):
        if k not in used:
            return k
    raise LabError(f"all {MAX_SUBNETS} lab subnets are in use; remove a lab with vireo-lab down")


def make_pool(lab, size):
    with open(lab.pool_img, "wb") as f:
        f.truncate(size)
    run(["mkfs.ext4", "-q", "-F", "-L", "vireo-pool", "-m", "0",
         "-E", "lazy_itable_init=1,lazy_journal_init=1", lab.pool_img], timeout=120)
    loop = run(["losetup", "--find", "--show", lab.pool_img]).stdout.strip()
    lab.meta["pool"]["loop"] = loop
    lab.save()
    os.makedirs(lab.pool, exist_ok=True)
    run(["mount", "-t", "ext4", loop, lab.pool])
    os.makedirs(f"{lab.pool}/leases", exist_ok=True)


def make_network(lab):
    nodes = lab.nodes()
    run(["ip", "-batch", "-"], input="".join(f"netns add {ns}\n" for ns in
                                             [lab.brns] + [lab.netns(n) for n in nodes]))
    br = ["link set lo up", "link add name br0 type bridge", "link set br0 up"]
    for n in nodes:
        i = n[1:]
        br += [f"link add name vn{i} type veth peer name eth0 netns {lab.netns(n)}",
               f"link set vn{i} master br0", f"link set vn{i} up"]
    run(["ip", "-n", lab.brns, "-batch", "-"], input="\n".join(br) + "\n")
    for n in nodes:
        run(["ip", "-n", lab.netns(n), "-batch", "-"],
            input=f"link set lo up\naddr add {lab.addr(n)}/24 dev eth0\nlink set eth0 up\n")


def start_holder(lab, node):
    """Spawn the host's holder; returns the Popen (wait with wait_holder)."""
    h = lab.hdir(node)
    os.makedirs(lab.host_cg(node), exist_ok=True)
    cg_set_state(lab.host_cg(node), "THAWED")
    for stale in [f"{h}/holder.pid"] + [lab.pidfile(node, d) for d in DAEMONS]:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(stale)
    write_file(f"{h}/holder.sh", holder_script(lab, node, lab.meta["reaper"]), 0o755)
    return lab.spawn(node, ["ip", "netns", "exec", lab.netns(node), "unshare", "--mount", "--uts",
                            "--propagation", "private", "/bin/sh", f"{h}/holder.sh"],
                     f"{h}/holder.log")


def wait_holder(lab, node, proc, deadline):
    h = lab.hdir(node)
    while True:
        pid = read_int(f"{h}/holder.pid")
        if pid:
            lab.meta["nodes"][node]["holder_pid"] = pid
            lab.meta["nodes"][node]["daemons"] = {}
            return pid
        if proc.poll() is not None:
            raise LabError(f"host {node}: building its namespaces failed: {tail(h + '/holder.log', 3)}")
        if time.monotonic() > deadline:
            raise LabError(f"host {node}: its holder did not come up; see {h}/holder.log")
        time.sleep(0.005)


def daemon_argv(daemon):
    if daemon == "corosync":
        return ["corosync", "-f", "-c", "/etc/corosync/corosync.conf"]
    if daemon == "virtlockd":
        return ["virtlockd", "-f", "/etc/libvirt/virtlockd.conf"]
    if daemon == "libvirtd":
        return ["libvirtd", "--listen", "-f", "/etc/libvirt/libvirtd.conf"]
    if daemon == "watchdog":
        return [watchdog_bin(), "--config", "/etc/vireo/vireo.conf", "--foreground"]
    return [vireod_bin(), "--config", "/etc/vireo/vireo.conf", "--foreground"]


def holder_spawn(lab, node, argv, log):
    """Have host node's holder start argv (stdout, stderr appended to log); returns its pid.

    The holder forks it, so it starts inside the host's namespaces and cgroup
    and descends from the host's subreaper."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
            s.settimeout(5)
            s.connect(f"{lab.hdir(node)}/holder.sock")
            s.send(b"".join(x.encode() + b"\0" for x in [log] + argv))
            reply = s.recv(256).decode(errors="replace")
    except OSError as e:
        raise LabError(f"host {node}: its holder does not answer ({e}); is the host paused?")
    if not reply.startswith("ok "):
        raise LabError(f"host {node}: cannot start {argv[0]}: {reply or 'no answer'}")
    return int(reply[3:])


def start_daemon(lab, node, daemon):
    """Start one daemon in its host under vireo-reaper; returns the reaper's pid."""
    lab.need_holder(node)
    if daemon == "vireod" and not vireod_bin():
        raise LabError(f"{BUILD_DIR}/node/vireod is not built; build it or set VIREO_BUILD_DIR")
    if daemon == "watchdog" and not watchdog_bin():
        raise LabError(f"{BUILD_DIR}/node/vireo-watchdog is not built; build it or set VIREO_BUILD_DIR")
    pidfile = lab.pidfile(node, daemon)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(pidfile)
    if daemon == "watchdog":
        # A killed watchdog leaves its socket: ready means the new one's.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"/proc/{lab.need_holder(node)}/root{WATCHDOG_SOCK}")
    argv = [lab.meta["reaper"], "--pidfile", pidfile, "--"] + daemon_argv(daemon)
    reaper = holder_spawn(lab, node, argv, lab.stdout_log(node, daemon))
    lab.meta["nodes"][node]["daemons"][daemon] = {"reaper_pid": reaper, "pid": None}
    return reaper


def wait_pid(lab, node, daemon, reaper, deadline):
    while True:
        pid = read_int(lab.pidfile(node, daemon))
        if pid:
            lab.meta["nodes"][node]["daemons"][daemon]["pid"] = pid
            return pid
        if not lab.alive(node, reaper):
            raise LabError(f"host {node}: {daemon} did not start: {tail(lab.stdout_log(node, daemon), 3)}")
        if time.monotonic() > deadline:
            raise LabError(f"host {node}: {daemon} did not start; see {lab.stdout_log(node, daemon)}")
        time.sleep(0.005)


# Where vireo-watchdog listens in a host (vireo.conf's default watchdog_socket).
WATCHDOG_SOCK = "/run/vireo/watchdog.sock"

QUORUM_RE = re.compile(r"Nodes:\s+(\d+).*?Quorate:\s+(\w+)", re.S)


def parse_quorum(stdout):
    """(members, quorate) from `corosync-quorumtool -s`, or None."""
    m = QUORUM_RE.search(stdout or "")
    return (int(m.group(1)), m.group(2) == "Yes") if m else None


def corosync_views(lab, nodes):
    """{node: (members, quorate) or None if its corosync does not answer}."""
    out = lab.probe_all(nodes, ["corosync-quorumtool", "-s"])
    return {n: parse_quorum(o) for n, o in out.items()}


def parse_json(stdout):
    try:
        doc = json.loads(stdout or "")
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def vireo_views(lab, nodes):
    """{node: `vireo status --json` as a dict, or None if its vireod does not answer}."""
    out = lab.probe_all(nodes, [vireo_bin() or "vireo", "status", "--json"], timeout=10)
    return {n: parse_json(o) for n, o in out.items()}


def vireo_online(doc):
    """Names of the nodes a `vireo status --json` document calls online."""
    nodes = doc.get("nodes") or []
    if isinstance(nodes, dict):
        nodes = [dict(v, name=k) if isinstance(v, dict) else {"name": k, "state": v}
                 for k, v in nodes.items()]
    out = set()
    for n in nodes:
        if isinstance(n, dict) and (n.get("online") is True or n.get("state") == "online"):
            out.add(str(n.get("name")))
    return out


def in_host_exists(lab, node, path):
    holder = lab.holder(node)
    return bool(holder) and os.path.exists(f"/proc/{holder}/root{path}")


def daemon_ready(lab, node, daemon):
    if daemon == "corosync":
        return corosync_views(lab, [node])[node] is not None
    if daemon == "virtlockd":
        return in_host_exists(lab, node, "/run/libvirt/virtlockd-sock")
    if daemon == "libvirtd":
        return in_host_exists(lab, node, "/run/libvirt/libvirt-sock")
    if daemon == "watchdog":
        return in_host_exists(lab, node, WATCHDOG_SOCK)
    if not vireo_bin():
        return True
    return vireo_views(lab, [node])[node] is not None


def check_daemons(lab, nodes, daemons):
    """Fail at once if a daemon we started has already died."""
    for n in nodes:
        for d in daemons:
            rec = lab.meta["nodes"][n]["daemons"].get(d)
            if rec and rec.get("pid") and not lab.alive(n, rec["pid"]):
                raise LabError(f"host {n}: {d} exited: {tail(lab.stdout_log(n, d), 3)} "
                               f"(logs in {lab.hdir(n)}/log)")


def wait_ready(lab, nodes, daemon, deadline):
    pending = list(nodes)
    while pending:
        check_daemons(lab, pending, [daemon])
        pending = [n for n in pending if not daemon_ready(lab, n, daemon)]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise LabError(f"{daemon} is not ready on {','.join(pending)}; "
                           f"see {lab.stdout_log(pending[0], daemon)}")
        time.sleep(0.02)


def boot_hosts(lab, nodes, deadline):
    """Holders, then corosync, virtlockd, libvirtd and vireod on every host in nodes.

    Each step is started on all hosts before we wait for any, so hosts boot in
    parallel; corosync comes first because membership is what we wait for."""
    procs = {n: start_holder(lab, n) for n in nodes}
    for n in nodes:
        wait_holder(lab, n, procs[n], deadline)
    lab.save()
    trace("holders up")
    daemons = ["corosync", "virtlockd", "libvirtd"]
    # A build without vireo-watchdog (an older tree) boots without it.
    if runs_vireod(lab) and watchdog_bin():
        daemons.append("watchdog")
    if runs_vireod(lab):
        daemons.append("vireod")
    for d in daemons:
        if d == "libvirtd":
            wait_ready(lab, nodes, "virtlockd", deadline)
            trace("virtlockd ready")
        if d == "watchdog":
            wait_ready(lab, nodes, "libvirtd", deadline)
            trace("libvirtd ready")
        if d == "vireod":
            # vireod talks to libvirtd from the start, and feeds its watchdog.
            wait_ready(lab, nodes, "watchdog" if "watchdog" in daemons else "libvirtd", deadline)
            trace("watchdog ready" if "watchdog" in daemons else "libvirtd ready")
        procs = {n: start_daemon(lab, n, d) for n in nodes}
        for n in nodes:
            wait_pid(lab, n, d, procs[n], deadline)
        lab.save()
        trace(f"{d} started")


# libvirtd probes QEMU's capabilities (~0.6 s of CPU) the first time a host
# needs them, which would land in the middle of a test's first guest start on
# that host (a failover, say). Probe results are cached per host; we keep one
# copy for the machine and seed every new host with it. libvirtd checks every
# entry (QEMU's and its own ctime, kernel, microcode) and probes again if stale.
CAPS_CACHE = f"{LAB_ROOT}/.cache/qemu-capabilities"
HOST_CAPS = "cache/libvirt/qemu/capabilities"


def seed_caps(lab, node):
    dst = f"{lab.hdir(node)}/{HOST_CAPS}"
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(CAPS_CACHE):
            if name.endswith(".xml"):
                os.makedirs(dst, mode=0o700, exist_ok=True)
                shutil.copy2(f"{CAPS_CACHE}/{name}", f"{dst}/{name}")


def save_caps(lab_dir):
    """Keep the newest capabilities any host of a lab probed, for the next labs."""
    with contextlib.suppress(FileNotFoundError):
        for host in os.listdir(lab_dir):
            src = f"{lab_dir}/{host}/{HOST_CAPS}"
            if not os.path.isdir(src):
                continue
            for name in os.listdir(src):
                dst = f"{CAPS_CACHE}/{name}"
                with contextlib.suppress(OSError):
                    if (name.endswith(".xml") and
                            (not os.path.exists(dst) or os.path.getmtime(f"{src}/{name}") > os.path.getmtime(dst))):
                        os.makedirs(CAPS_CACHE, mode=0o700, exist_ok=True)
                        shutil.copy2(f"{src}/{name}", dst + ".tmp")
                        os.rename(dst + ".tmp", dst)


def build_lab(lab, t0, with_vireod=True):
    deadline = t0 + UP_TIMEOUT
    nodes = lab.nodes()
    lab.meta["reaper"] = reaper_bin(lab)
    for d in ("/etc/vireo", "/var/lib/vireo"):
        os.makedirs(d, exist_ok=True)     # mount points for the per-host binds
    make_pool(lab, lab.meta["pool"]["size"])
    trace("pool mounted")
    make_network(lab)
    trace("network up")
    authkey = os.urandom(256)
    for node in nodes:
        make_host_dirs(lab, node, authkey)
        seed_caps(lab, node)
        os.makedirs(lab.host_cg(node), exist_ok=True)
    lab.meta["vireod"] = vireod_bin() if with_vireod else None
    lab.save()
    if not with_vireod:
        warn("--no-vireod: the hosts run corosync and libvirt only")
    boot_hosts(lab, nodes, deadline)
    wait_cluster(lab, deadline)
    info(f"lab {lab.name}: {len(nodes)} hosts quorate in {time.monotonic() - t0:.2f} s")


def describe_view(v):
    if v is None:
        return "does not answer"
    return f"sees {v[0]} members ({'quorate' if v[1] else 'inquorate'})"


def wait_cluster(lab, deadline):
    """Until every host sees all hosts as members and is quorate: corosync, then vireod."""
    nodes = lab.nodes()
    while True:
        check_daemons(lab, nodes, ["corosync", "watchdog", "vireod"])
        views = corosync_views(lab, nodes)
        if all(v == (len(nodes), True) for v in views.values()):
            break
        if time.monotonic() > deadline:
            raise LabError(f"corosync is not quorate with {len(nodes)} members everywhere: "
                           + ", ".join(f"{n} {describe_view(v)}" for n, v in views.items()))
        time.sleep(0.05)
    trace("corosync quorate everywhere")
    if not (runs_vireod(lab) and vireo_bin()):
        if runs_vireod(lab):
            warn(f"{BUILD_DIR}/tools/vireo is not built; not checking vireod's view")
        return
    while True:
        check_daemons(lab, nodes, ["vireod"])
        docs = vireo_views(lab, nodes)
        bad = [n for n, d in docs.items()
               if not d or d.get("quorate") is not True or vireo_online(d) != set(nodes)]
        if not bad:
            return
        if time.monotonic() > deadline:
            raise LabError(f"vireod is not quorate with all {len(nodes)} nodes online on "
                           f"{','.join(bad)}; its vireo status --json says: {json.dumps(docs[bad[0]])[:300]}")
        time.sleep(0.1)
