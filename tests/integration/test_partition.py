#!/usr/bin/python3
"""Partition 1|2: the single host is not quorate and refuses mutations with
exit code 3; after heal it rejoins and the digests converge. Then 5 hosts,
2|3 split and heal."""
import json

from labtest import Lab, check, converged, log, main, wait_until


def quorate(lab, node, want):
    st = lab.status(node)
    return st is not None and st["quorate"] == want


def test(lab: Lab):
    lab.up(3)
    wait_until("converged", lambda: converged(lab, ["n1", "n2", "n3"]), 10)
    lab.run("partition", "n1,n2", "n3")
    wait_until("n3 inquorate", lambda: quorate(lab, "n3", False), 10)
    wait_until("n1/n2 see n3 offline", lambda: converged(lab, ["n1", "n2"]), 10)
    rc, out, err = lab.vireo("n3", "event", "add", "from the minority")
    check(rc == 3, "mutation on the minority exited %d, expected 3 (%s)", rc, err)
    check("not in the quorate partition" in err, "message: %r", err)
    rc, out, err = lab.vireo("n1", "event", "add", "from the majority")
    check(rc == 0, "majority mutation failed: %s", err)

    lab.run("heal")
    _, took = wait_until("healed and converged", lambda: converged(lab, ["n1", "n2", "n3"]), 15)
    log(f"converged {took:.2f} s after heal")
    rc, out, err = lab.vireo("n3", "event", "list", "--json")
    texts = [e["text"] for e in json.loads(out)]
    check("from the majority" in texts, "n3 did not get the majority's event")
    check("from the minority" not in texts, "the minority's mutation leaked")


def test5(lab: Lab):
    lab.up(5)
    nodes = ["n1", "n2", "n3", "n4", "n5"]
    wait_until("5 converged", lambda: converged(lab, nodes), 15)
    lab.run("partition", "n1,n2", "n3,n4,n5")
    wait_until("n1,n2 inquorate", lambda: quorate(lab, "n1", False) and quorate(lab, "n2", False), 10)
    wait_until("n3..n5 converged", lambda: converged(lab, ["n3", "n4", "n5"]), 10)
    check(lab.status("n4")["manager"] == 3, "manager of the majority should be 3")
    rc, _, err = lab.vireo("n2", "event", "add", "x")
    check(rc == 3, "minority of 2 accepted a mutation (rc %d)", rc)
    rc, _, err = lab.vireo("n5", "event", "add", "while split")
    check(rc == 0, "majority of 3 refused: %s", err)
    lab.run("heal")
    wait_until("5 converged after heal", lambda: converged(lab, nodes), 15)
    check(lab.status("n1")["manager"] == 1, "n1 should manage again")


def both(lab: Lab):
    test(lab)
    lab.down()
    test5(lab)


main(both, "part")
