"""A host's degraded network: packet loss and delay on its eth0 (vireo-lab netem).

With sch_netem in the kernel, one netem qdisc does both. Without it (the
kernels we develop on), loss is an nftables rule in the host's namespace and
delay is vireo-delayline serving an NFQUEUE that an iptables rule feeds every
packet arriving on eth0. That delays the way in where netem delays the way
out: a round trip with the host takes D longer either way, but a packet held
on its way out still counts against its TCP socket's small-queue budget, and a
sender held that way sends a few packets per delay (a migration stream would
crawl); one that crossed the veth pair belongs to no socket. The delayline
runs in the lab's own cgroup, not the host's: like a qdisc, it goes
on working while the host is frozen or killed, and vireo-lab down ends it."""

import contextlib
import os
import select
import signal
import subprocess
import time

from labhost import BUILD_DIR
from labsys import LabError, cg_joiner, proc_state, run

NETEM_TABLE = "vireo_lab_netem"
DELAY_CHAIN = "VIREO_LAB_DELAY"
DELAY_QUEUE = 0                 # queues are per network namespace
READY_TIMEOUT = 5.0
MAX_DELAY_MS = 60000.0          # vireo-delayline's bound too


def delayline_bin():
    p = f"{BUILD_DIR}/tools/lab/vireo-delayline"
    return p if os.access(p, os.X_OK) else None


def netem_available():
    """Whether the kernel has sch_netem: try it on the loopback of a throwaway network namespace."""
    return run(["unshare", "--net", "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"],
               check=False).returncode == 0


def nfqueue_available():
    """Whether packets can be delayed without netem: vireo-delayline is built and iptables has NFQUEUE."""
    return bool(delayline_bin()) and run(
        ["unshare", "--net", "iptables", "-w", "-t", "mangle", "-A", "PREROUTING", "-j", "NFQUEUE",
         "--queue-num", str(DELAY_QUEUE), "--queue-bypass"], check=False).returncode == 0


def probe():
    have = netem_available()
    nfq = not have and nfqueue_available()
    return {"netem": have, "loss": True, "loss_method": "netem" if have else "nftables",
            "delay": have or nfq, "delay_method": "netem" if have else "nfqueue" if nfq else None}


def describe(rec):
    parts = []
    if rec.get("loss") is not None:
        parts.append(f"loss {rec['loss']:g}%")
    if rec.get("delay") is not None:
        parts.append(f"delay {rec['delay']:g} ms" + (f" jitter {rec['jitter']:g} ms" if rec.get("jitter") else ""))
    return " ".join(parts) + f" ({rec['method']})"


def _drop_nft(lab, node):
    run(["ip", "netns", "exec", lab.netns(node), "nft", "-f", "-"],
        input=f"table inet {NETEM_TABLE}\ndelete table inet {NETEM_TABLE}\n")


def _loss_nft(lab, node, loss):
    """Drop loss% of eth0's packets each way; replaces an earlier setting in one transaction."""
    # In hundredths of a percent, so 0.5% works too; nft refuses "mod 10000 < 10000".
    limit = round(loss * 100)
    test = "" if limit >= 10000 else f"numgen random mod 10000 < {limit} "
    chains = ""
    for hook, dev in (("input", "iifname"), ("output", "oifname")):
        chains += (f"    chain {hook} {{\n        type filter hook {hook} priority 0; policy accept;\n"
                   + (f'        {dev} "eth0" {test}drop\n' if limit else "")
                   + "    }\n")
    script = (f"table inet {NETEM_TABLE}\ndelete table inet {NETEM_TABLE}\n"
              f"table inet {NETEM_TABLE} {{\n{chains}}}\n")
    run(["ip", "netns", "exec", lab.netns(node), "nft", "-f", "-"], input=script)


def _iptables(lab, node, *args, check=True):
    return run(["ip", "netns", "exec", lab.netns(node), "iptables", "-w", "-t", "mangle"] + list(args),
               check=check)


def _is_delayline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return os.path.basename(f.read().split(b"\0")[0]) == b"vireo-delayline"
    except OSError:
        return False


def _remove_rule(lab, node):
    """The jump to the delay chain and the chain; either may be missing."""
    _iptables(lab, node, "-D", "PREROUTING", "-i", "eth0", "-j", DELAY_CHAIN, check=False)
    _iptables(lab, node, "-F", DELAY_CHAIN, check=False)
    _iptables(lab, node, "-X", DELAY_CHAIN, check=False)


def _stop_delay(lab, node, rec):
    """Remove the rule first (packets flow undelayed), then end the delayline, which lets go what it holds."""
    _remove_rule(lab, node)
    pid = (rec or {}).get("delay_pid")
    if not pid or not _is_delayline(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + READY_TIMEOUT
        while proc_state(pid) not in (None, "Z"):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                break
            time.sleep(0.01)


def _start_delay(lab, node, delay, jitter):
    """Start the host's delayline; returns its pid once it serves the queue and the rule feeds it."""
    rd, wr = os.pipe()
    argv = ["ip", "netns", "exec", lab.netns(node), delayline_bin(), "--queue", str(DELAY_QUEUE),
            "--delay", f"{delay:g}", "--jitter", f"{jitter or 0:g}", "--ready-fd", str(wr)]
    try:
        with open(f"{lab.hdir(node)}/delayline.log", "ab") as log:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, pass_fds=(wr,),
                                    start_new_session=True, preexec_fn=cg_joiner(lab.cg))
    finally:
        os.close(wr)
    with os.fdopen(rd, "rb") as ready:
        # "ready" once bound; EOF if it exits without binding.
        line = ready.readline() if select.select([ready], [], [], READY_TIMEOUT)[0] else b""
    try:
        if line != b"ready\n":
            raise LabError(f"host {node}: vireo-delayline did not start; see {lab.hdir(node)}/delayline.log")
        _iptables(lab, node, "-N", DELAY_CHAIN)
        _iptables(lab, node, "-A", DELAY_CHAIN, "-j", "NFQUEUE", "--queue-num", str(DELAY_QUEUE),
                  "--queue-bypass")
        _iptables(lab, node, "-A", "PREROUTING", "-i", "eth0", "-j", DELAY_CHAIN)
    except Exception:
        _remove_rule(lab, node)
        proc.kill()
        proc.wait()
        raise
    return proc.pid


def clear(lab, node):
    """Remove every kind of degradation; nothing to remove is fine."""
    ns = lab.netns(node)
    _drop_nft(lab, node)
    _stop_delay(lab, node, lab.meta["nodes"][node].get("netem"))
    qdisc = run(["ip", "netns", "exec", ns, "tc", "qdisc", "show", "dev", "eth0", "root"]).stdout
    if " netem " in f" {qdisc} ":
        run(["ip", "netns", "exec", ns, "tc", "qdisc", "del", "dev", "eth0", "root"])


def apply(lab, node, loss, delay, jitter):
    """Replace host node's degradation with this one; returns the record to keep in the lab's metadata."""
    caps = probe()
    if delay is not None and not caps["delay"]:
        raise LabError("this kernel has no sch_netem and vireo-lab cannot delay packets with NFQUEUE "
                       "either (is tools/lab/vireo-delayline built? does iptables have NFQUEUE?); "
                       "only --loss works here (vireo-lab netem --probe tells)")
    clear(lab, node)
    rec = {"loss": loss, "delay": delay, "jitter": jitter}
    if caps["netem"]:
        rec["method"] = "netem"
        argv = ["tc", "qdisc", "replace", "dev", "eth0", "root", "netem"]
        if loss is not None:
            argv += ["loss", f"{loss:g}%"]
        if delay is not None:
            argv += ["delay", f"{delay:g}ms"] + ([f"{jitter:g}ms"] if jitter else [])
        run(["ip", "netns", "exec", lab.netns(node)] + argv)
        return rec
    rec["method"] = "+".join(m for m, on in (("nftables", loss is not None), ("nfqueue", delay is not None)) if on)
    try:
        if loss is not None:
            _loss_nft(lab, node, loss)
        if delay is not None:
            rec["delay_pid"] = _start_delay(lab, node, delay, jitter)
    except Exception:
        _drop_nft(lab, node)       # all or nothing: the caller records no degradation
        raise
    return rec
