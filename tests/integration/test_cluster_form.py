#!/usr/bin/python3
"""3 hosts form a quorate cluster within 5 s; all digests are equal; the
CLI's status and node list agree; usage errors exit 2."""
import json

from labtest import Lab, check, converged, log, main, wait_until


def test(lab: Lab):
    took = lab.up(3)
    _, waited = wait_until("3 nodes converged", lambda: converged(lab, ["n1", "n2", "n3"]), 10)
    log(f"vireo-lab up 3 took {took:.2f} s, converged {waited:.2f} s later")
    check(took + waited <= 5.0, "3 nodes took %.2f s to be quorate and converged, more than 5 s",
          took + waited)
    st = lab.status("n2")
    check(st["cluster"] == lab.name, "cluster name %r", st["cluster"])
    check(st["manager"] == 1, "manager %r, expected 1", st["manager"])
    check(st["local_node"] == 2, "local_node %r", st["local_node"])
    check(len(st["nodes"]) == 3, "nodes %r", st["nodes"])
    for n in st["nodes"]:
        check(set(n) >= {"id", "name", "address", "state", "digest"}, "node keys %r", n)
        check(n["address"].startswith("10.99."), "node %s has address %r", n["name"], n["address"])
        check(n["state"] == "online" and len(n["digest"] or "") == 64, "node %r", n)

    rc, out, err = lab.vireo("n1", "node", "list", "--json")
    check(rc == 0, "node list failed: %s", err)
    check([n["name"] for n in json.loads(out)] == ["n1", "n2", "n3"], "node list %s", out)

    rc, out, err = lab.vireo("n1", "status")
    check(rc == 0 and "quorate:  yes" in out and "n3" in out, "human status:\n%s%s", out, err)

    rc, out, err = lab.vireo("n1", "frobnicate")
    check(rc == 2 and "unknown command" in err, "usage error rc=%d err=%r", rc, err)
    rc, out, err = lab.vireo("n1", "event", "list", "--limit", "zero")
    check(rc == 2 and "--limit" in err, "bad --limit rc=%d err=%r", rc, err)

    rc, out, err = lab.vireo("n3", "event", "add", "hello from n3")
    check(rc == 0, "event add failed: %s", err)
    rc, out, err = lab.vireo("n1", "event", "list", "--json")
    check(rc == 0 and any(e["text"] == "hello from n3" for e in json.loads(out)),
          "event not replicated to n1: %s", out)


main(test, "form")
