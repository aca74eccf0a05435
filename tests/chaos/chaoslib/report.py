"""The run's timeline and its final report (tables, violation dump)."""
import os
import re
import shutil
import statistics
import sys
import threading
import time

from chaoslib import schedule


class Timeline:
    """Everything that happened, stamped relative to the start, printed as it comes."""

    def __init__(self, out=sys.stdout):
        self.t0 = time.monotonic()
        self.lines = []
        self.out = out
        self.lock = threading.Lock()

    def rel(self, t):
        return t - self.t0

    def add(self, text):
        t = time.monotonic() - self.t0
        line = f"[{t:8.2f}] {text}"
        with self.lock:
            self.lines.append(line)
            print(line, file=self.out, flush=True)

    def text(self):
        with self.lock:
            return "\n".join(self.lines) + "\n"


def _ms(x):
    return "-" if x is None else f"{x:.2f}"


SLOWEST = 5      # recoveries listed one by one, to look into
STALL_RE = re.compile(r"^(\w{3} +\d+ \d\d:\d\d:\d\d) .*the main loop stalled (\d+) ms in (.*) "
                      r"\(longest so far")
PAUSED = "the chaos's own pause of the process or host (SIGSTOP, freezer)"


def _log_time(stamp):
    """Wall-clock seconds of a vireod log stamp ("Dec 07 23:49:56", local time)."""
    try:
        t = time.strptime(f"{time.localtime().tm_year} {stamp}", "%Y %b %d %H:%M:%S")
        return time.mktime(t)
    except ValueError:
        return None


def _paused(pauses, host, end, ms):
    """Whether a stall of host that ended at end (a log stamp, to the second)
    and lasted ms falls in a pause the chaos made: then the loop did not
    stall, the process did not run."""
    if end is None:
        return False
    start = end - ms / 1000.0
    return any(h == host and start <= pe + 1.0 and end + 1.0 >= ps for h, ps, pe in pauses)


def loop_stalls(lab_dir, pauses=()):
    """[(ms, cause, host)] of every main-loop stall the hosts' vireods logged
    (node/loop_stall.c logs each of a tenth of a token or more); a stall
    inside one of the chaos's pauses of that host has the cause PAUSED."""
    out = []
    if not lab_dir or not os.path.isdir(lab_dir):
        return out
    for host in sorted(os.listdir(lab_dir)):
        path = os.path.join(lab_dir, host, "log", "vireo", "vireod.log")
        try:
            with open(path, errors="replace") as f:
                for line in f:
                    m = STALL_RE.search(line)
                    if m:
                        ms = int(m.group(2))
                        cause = PAUSED if _paused(pauses, host, _log_time(m.group(1)), ms) \
                            else m.group(3)
                        out.append((ms, cause, host))
        except OSError:
            continue
    return out


def stall_lines(stalls):
    """The summary's lines about the stalls: those of the loop itself
    first, then the chaos's pauses (the process did not run)."""
    own = [s for s in stalls if s[1] != PAUSED]
    paused = [s[0] for s in stalls if s[1] == PAUSED]
    tail = [f"  {len(paused):5} more during the chaos's pauses of vireod or its host: max "
            f"{max(paused)} ms (the process did not run; not the loop's doing)"] if paused else []
    if not own:
        return ["main loop: no stall of a tenth of a token or more on any host, "
                "apart from the chaos's pauses", *tail]
    ms = [s[0] for s in own]
    worst = max(own)
    out = [f"main loop stalls of a tenth of a token or more: {len(ms)}, median {statistics.median(ms):.0f} ms, "
           f"max {worst[0]} ms (on {worst[2]}, in {worst[1]})"]
    by_cause = {}
    for m, cause, _ in own:
        by_cause.setdefault(cause, []).append(m)
    for cause, xs in sorted(by_cause.items(), key=lambda kv: -max(kv[1]))[:5]:
        out.append(f"  {len(xs):5} in {cause}: median {statistics.median(xs):.0f} ms, max {max(xs)} ms")
    return out + tail


def tables(args, faults, nemesis, workload, observer, wall_s, timeline, lab_dir=None):
    """The summary the issue asks for, as lines of text."""
    out = [f"vireo-chaos seed {args.seed}: {args.hosts} hosts, {args.guests} HA + {args.plain} "
           f"non-HA guests, {wall_s:.0f} s", "", "faults injected by type:",
           f"  {'kind':20} {'planned':>7} {'done':>5} {'failed':>6}"]
    planned = {}
    for f in faults:
        planned[f["kind"]] = planned.get(f["kind"], 0) + 1
    total_done = 0
    for k in sorted(planned):
        r = nemesis.results.get(k, {"injected": 0, "errors": 0})
        total_done += r["injected"]
        out.append(f"  {k:20} {planned[k]:7} {r['injected']:5} {r['errors']:6}")
    out.append(f"  {'total':20} {len(faults):7} {total_done:5} "
               f"{sum(r['errors'] for r in nemesis.results.values()):6}")
    eps = observer.recoveries()
    moved = [e for e in eps if e["host_after"] != e["host_before"]]
    local = [e for e in eps if e["host_after"] == e["host_before"]]

    def times(es, key):
        return [e["first_hb"] - e[key] for e in es if e["first_hb"] and e.get(key)]

    for e in eps:
        e["fault_t"], e["fault"] = nemesis.cause(e["guest"], e["host_before"], e["lost"])
    out += ["", "recoveries of HA guests: the guest's QEMU gone from every host, until the first "
                "heartbeat of its next boot",
            f"  {'':22} {'count':>5} {'median s':>9} {'max s':>7}   from the fault: {'median s':>9} {'max s':>7}"]
    for name, es in (("failed over (moved)", moved), ("restarted in place", local), ("all", eps)):
        ts, tf = times(es, "lost"), times(es, "fault_t")
        out.append(f"  {name:22} {len(es):5} {_ms(statistics.median(ts) if ts else None):>9} "
                   f"{_ms(max(ts) if ts else None):>7}   {'':15}{_ms(statistics.median(tf) if tf else None):>9} "
                   f"{_ms(max(tf) if tf else None):>7}")
    by_cause = {}
    for e in moved:
        if e["first_hb"] and e.get("fault_t"):
            by_cause.setdefault(e["fault"], []).append(e["first_hb"] - e["fault_t"])
    if by_cause:
        out.append("  failovers by the fault that caused them (seconds from the fault to the heartbeat):")
        for k in sorted(by_cause):
            xs = by_cause[k]
            out.append(f"    {k:20} {len(xs):5} median {statistics.median(xs):6.2f}  max {max(xs):6.2f}")
    slow = sorted((e for e in eps if e["first_hb"]), key=lambda e: e["first_hb"] - e["lost"],
                  reverse=True)[:SLOWEST]
    if slow:
        out.append(f"  the {len(slow)} slowest (run time of the loss, guest, host before -> after, "
                   "seconds, the fault):")
        for e in slow:
            out.append(f"    {timeline.rel(e['lost']):8.2f} {e['guest']:6} {e['host_before'] or '?'} -> "
                       f"{e['host_after'] or '?'}  {e['first_hb'] - e['lost']:6.2f}  {e['fault'] or '?'}"
                       + (f" at {timeline.rel(e['fault_t']):.2f}" if e.get("fault_t") else ""))
    out += ["", "migrations:"]
    for k in sorted(workload.counts):
        if k.startswith("migrate"):
            out.append(f"  {k:40} {workload.counts[k]:5}")
    out += ["", "other workload:"]
    for k in sorted(workload.counts):
        if not k.startswith("migrate"):
            out.append(f"  {k:40} {workload.counts[k]:5}")
    out += ["", *stall_lines(loop_stalls(lab_dir, nemesis.pauses))]
    out += ["", f"observer: {observer.qemu.scans} QEMU scans, "
                f"{sum(h.samples for h in observer.virsh.hosts.values())} virsh samples, "
                f"{observer.lease_samples} lease samples, {observer.digest_checks} digest checks",
            f"violations: {len(observer.violations)}"]
    for v in observer.violations:
        out.append(f"  invariant {v['invariant']}: {v['text']}")
    return out


def dump(report_dir, args, faults, ops, timeline, summary, lab_dir):
    """seed, schedule, timeline, summary and every host's logs into report_dir."""
    os.makedirs(report_dir, exist_ok=True)
    with open(os.path.join(report_dir, "schedule.txt"), "w") as f:
        f.write(f"seed {args.seed}\n")
        for x in faults:
            f.write(f"{x['t']:8.2f} fault {x['id']}: {schedule.describe(x)}\n")
        for x in ops:
            f.write(f"{x['t']:8.2f} workload: {x['op']} {x['guest']}{' live' if x.get('live') else ''}\n")
    with open(os.path.join(report_dir, "timeline.txt"), "w") as f:
        f.write(timeline.text())
    with open(os.path.join(report_dir, "summary.txt"), "w") as f:
        f.write("\n".join(summary) + "\n")
    if lab_dir and os.path.isdir(lab_dir):
        for host in sorted(os.listdir(lab_dir)):
            src = os.path.join(lab_dir, host, "log")
            if os.path.isdir(src):
                shutil.copytree(src, os.path.join(report_dir, "hosts", host), dirs_exist_ok=True,
                                ignore_dangling_symlinks=True)
        con = os.path.join(lab_dir, "pool", "console")
        if os.path.isdir(con):
            shutil.copytree(con, os.path.join(report_dir, "console"), dirs_exist_ok=True)
