"""The fault schedule and the workload schedule, computed from the seed
alone before the run starts (pure: same seed and shape, same schedule), so
`--seed S` replays a run and the schedule can be printed up front.

A fault is a dict: id, t (seconds after the start), kind, and its targets
and parameters. Faults overlap; the generator keeps the cluster able to
recover: faults that impair hosts (kill them, cut them off, hang them)
never take out more than a minority at once, and each host stays reserved
for a while after its fault is mended (restart, rejoin, failback)."""
import random

from chaoslib import bounds

# kind: (weight, impairs a host, exclusive, needs hosts >= N)
# exclusive: no other impairing fault may overlap it (it may impair any host).
KINDS = {
    "host-kill":          (10, True, False, 2),
    "vireod-kill":        (8, True, False, 2),
    "corosync-kill":      (6, True, False, 2),
    "libvirtd-kill":      (6, True, False, 2),
    "qemu-kill":          (12, False, False, 1),
    "partition-one":      (8, True, False, 3),   # 1 | N-1
    "partition-two":      (5, True, False, 5),   # 2 | 3
    "partition-bridge":   (4, True, True, 3),    # A | B, one host sees both sides
    "netem":              (8, True, False, 2),
    "host-pause-short":   (8, False, False, 1),
    "host-pause-long":    (6, True, False, 2),
    "vireod-pause-short": (6, False, False, 1),
    "vireod-pause-long":  (5, True, False, 2),
    "migration-cut":      (8, True, True, 2),
    "pool-full":          (4, False, False, 1),
}

CUT_HOW = ("kill-target-vireod", "kill-source-vireod", "kill-target-qemu",
           "kill-target-libvirtd", "cut-link")


def _u(rng, lo, hi):
    return round(rng.uniform(lo, hi), 2)


def _make(kind, rng, hosts, guests, ha_guests, free, delay_rng):
    """The fault's parameters, its impaired hosts and how long they stay
    reserved after it starts. delay_rng: None where the lab cannot delay
    packets; delays come from a stream of their own, so that a seed draws the
    same faults with and without them."""
    f = {"kind": kind}
    if kind in ("host-kill", "vireod-kill", "corosync-kill", "libvirtd-kill"):
        f["host"] = rng.choice(free)
        f["seconds"] = _u(rng, 2, 8) if kind == "host-kill" else _u(rng, 1, 6)
        return f, {f["host"]}, f["seconds"] + (9 if kind == "host-kill" else 6)
    if kind == "qemu-kill":
        f["guest"] = rng.choice(guests)
        return f, set(), 0
    if kind == "partition-one":
        f["host"] = rng.choice(free)
        f["groups"] = [[f["host"]], [h for h in hosts if h != f["host"]]]
        f["seconds"] = _u(rng, 3, 12)
        return f, {f["host"]}, f["seconds"] + 7
    if kind == "partition-two":
        pair = sorted(rng.sample(free, 2))
        f["groups"] = [pair, [h for h in hosts if h not in pair]]
        f["seconds"] = _u(rng, 3, 12)
        return f, set(pair), f["seconds"] + 7
    if kind == "partition-bridge":
        bridge = rng.choice(hosts)
        rest = [h for h in hosts if h != bridge]
        rng.shuffle(rest)
        half = len(rest) // 2
        f["groups"] = [sorted(rest[:half]), sorted(rest[half:])]
        f["bridge"] = bridge
        f["seconds"] = _u(rng, 3, 10)
        return f, set(hosts), f["seconds"] + 9
    if kind == "netem":
        f["host"] = rng.choice(free)
        f["loss"] = rng.choice((5, 10, 20, 30, 40))
        if delay_rng:
            f["delay_ms"] = delay_rng.choice((20, 50, 100, 200, 400))
            f["jitter_ms"] = f["delay_ms"] // 5
        f["seconds"] = _u(rng, 3, 10)
        return f, {f["host"]}, f["seconds"] + 6
    if kind in ("host-pause-short", "vireod-pause-short"):
        f["host"] = rng.choice(hosts)
        f["seconds"] = _u(rng, *bounds.SHORT_PAUSE_S)
        return f, set(), 0
    if kind in ("host-pause-long", "vireod-pause-long"):
        f["host"] = rng.choice(free)
        f["seconds"] = _u(rng, *bounds.LONG_PAUSE_S)
        return f, {f["host"]}, f["seconds"] + 8
    if kind == "migration-cut":
        f["guest"] = rng.choice(ha_guests)
        f["how"] = rng.choice(CUT_HOW)
        f["live"] = rng.random() < 0.3
        f["after"] = _u(rng, 0.05, 1.5)          # into the migration
        f["seconds"] = _u(rng, 1, 5)             # until the killed part is back
        return f, set(hosts), f["seconds"] + 10
    if kind == "pool-full":
        f["seconds"] = _u(rng, 2, 8)
        return f, set(), 0
    raise ValueError(kind)


def faults(seed, hosts, guests, ha_guests, duration, count, netem_delay=False, kinds=None):
    """count faults spread over duration seconds (a fault's mending may run
    past it). kinds: the allowed kinds (default: all that fit the host count)."""
    rng = random.Random(f"faults/{seed}")
    delay_rng = random.Random(f"netem-delay/{seed}") if netem_delay else None
    n = len(hosts)
    max_impaired = (n - 1) // 2
    allowed = [k for k, (_, _, _, need) in KINDS.items()
               if n >= need and (kinds is None or k in kinds)]
    if not allowed:
        raise ValueError("no fault kind fits this lab")
    light = [k for k in allowed if not KINDS[k][1]]
    reserved = []              # (until, hosts, exclusive)
    pool_until = 0.0           # one full pool at a time
    part_until = 0.0           # and one partition (the lab has one set of rules)
    out = []
    start, span = 5.0, max(1.0, duration - 10.0)
    times = sorted(start + rng.uniform(0, span) for _ in range(count))
    for i, t in enumerate(times):
        reserved = [r for r in reserved if r[0] > t]
        busy = set().union(*(r[1] for r in reserved)) if reserved else set()
        excl = any(r[2] for r in reserved)
        free = [h for h in hosts if h not in busy]
        kind = rng.choices(allowed, weights=[KINDS[k][0] for k in allowed])[0]
        _, impairs, exclusive, _ = KINDS[kind]
        room = max_impaired - len(busy)
        fits = not impairs or (not excl and (
            (not reserved or not exclusive) and room >= (2 if kind == "partition-two" else 1)))
        if exclusive and busy:
            fits = False
        if not fits:
            if not light:
                continue
            kind = rng.choices(light, weights=[KINDS[k][0] for k in light])[0]
        if kind == "pool-full" and t < pool_until:
            kind = "qemu-kill"
        if kind.startswith("partition") or (kind == "migration-cut" and t < part_until):
            if t < part_until:
                kind = "host-pause-short"
        f, impaired, hold = _make(kind, rng, hosts, guests, ha_guests, free, delay_rng)
        f["id"] = i + 1
        f["t"] = round(t, 2)
        out.append(f)
        if kind == "pool-full":
            pool_until = t + f["seconds"] + 2
        if kind.startswith("partition") or kind == "migration-cut":
            part_until = t + f["seconds"] + (12 if kind == "migration-cut" else 1)
        if impaired:
            reserved.append((t + hold, impaired, KINDS[kind][2]))
    return out


def workload(seed, guests, ha_guests, plain_guests, duration, every=4.0):
    """What users do meanwhile: [(t, op, params)], one op every ~`every` s."""
    rng = random.Random(f"workload/{seed}")
    out, t, tmp = [], 8.0, 0
    temps = []
    while t < duration - 5:
        r = rng.random()
        if r < 0.50:
            op = {"op": "migrate", "guest": rng.choice(guests), "live": False}
        elif r < 0.70:
            op = {"op": "migrate", "guest": rng.choice(guests), "live": True}
        elif r < 0.85 and plain_guests:
            op = {"op": "stop-start", "guest": rng.choice(plain_guests)}
        elif temps and rng.random() < 0.5:
            op = {"op": "delete", "guest": temps.pop(rng.randrange(len(temps)))}
        else:
            tmp += 1
            name = f"tmp{tmp}"
            temps.append(name)
            op = {"op": "create", "guest": name}
        op["t"] = round(t, 2)
        out.append(op)
        t += rng.uniform(0.5 * every, 1.5 * every)
    return out


def describe(f):
    """One line for a fault, as printed in the schedule and the timeline."""
    k = f["kind"]
    if "groups" in f:
        s = " | ".join(",".join(g) for g in f["groups"])
        if f.get("bridge"):
            s += f" (bridge {f['bridge']})"
        return f"{k} {s} for {f['seconds']} s"
    if k == "qemu-kill":
        return f"{k} {f['guest']}"
    if k == "migration-cut":
        return (f"{k} {f['guest']} ({'live' if f['live'] else 'quick'}) "
                f"{f['how']} {f['after']} s in, back after {f['seconds']} s")
    if k == "netem":
        d = f" delay {f['delay_ms']}±{f['jitter_ms']} ms" if "delay_ms" in f else ""
        return f"{k} {f['host']} loss {f['loss']}%{d} for {f['seconds']} s"
    if k == "pool-full":
        return f"{k} for {f['seconds']} s"
    return f"{k} {f['host']} for {f['seconds']} s"
