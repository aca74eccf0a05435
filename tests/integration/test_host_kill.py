#!/usr/bin/python3
"""Kill the manager's host: survivors show it offline within 3 s, quorum
holds, the manager moves; the host comes back and rejoins."""
import time

from labtest import Lab, check, converged, log, main, wait_until


def offline_on(lab, node, victim):
    st = lab.status(node)
    return st and st["quorate"] and any(
        n["name"] == victim and n["state"] == "offline" for n in st["nodes"])


def test(lab: Lab):
    lab.up(3)
    wait_until("converged", lambda: converged(lab, ["n1", "n2", "n3"]), 10)
    check(lab.status("n2")["manager"] == 1, "n1 should manage")
    t0 = time.monotonic()
    lab.run("kill", "n1")
    _, took = wait_until("n1 offline on n2 and n3",
                         lambda: offline_on(lab, "n2", "n1") and offline_on(lab, "n3", "n1"), 10)
    took = time.monotonic() - t0
    log(f"n1 shown offline on the survivors {took:.2f} s after the kill")
    check(took <= 3.0, "detection took %.2f s, more than 3 s", took)
    st = lab.status("n3")
    check(st["quorate"], "survivors lost quorum")
    check(st["manager"] == 2, "manager is %r, expected 2", st["manager"])
    wait_until("manager recorded", lambda: lab.status("n3")["nodes"] and
               any("is now the manager" in l for l in lab.vireo("n3", "event", "list")[1].splitlines()[-5:]), 5)

    lab.run("start", "n1")
    wait_until("n1 rejoined", lambda: converged(lab, ["n1", "n2", "n3"]), 15)
    check(lab.status("n2")["manager"] == 1, "n1 should manage again")


main(test, "kill")
