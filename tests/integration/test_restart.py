#!/usr/bin/python3
"""Stop every host and start them again: the state (the event log)
survives. Kill vireod alone: it rejoins. Kill corosync alone: vireod
notices and reconnects when corosync is back."""
import json
import os
import signal

from labtest import Lab, check, converged, log, main, wait_until

NODES = ["n1", "n2", "n3"]


def events(lab, node):
    rc, out, err = lab.vireo(node, "event", "list", "--json")
    check(rc == 0, "event list on %s failed: %s", node, err)
    return [e["text"] for e in json.loads(out)]


def test(lab: Lab):
    lab.up(3)
    wait_until("converged", lambda: converged(lab, NODES), 10)
    rc, _, err = lab.vireo("n2", "event", "add", "survives a full restart")
    check(rc == 0, "event add: %s", err)
    before = lab.status("n1")["version"]

    for n in NODES:
        lab.run("kill", n)
    for n in NODES:
        lab.run("start", n)
    wait_until("converged after full restart", lambda: converged(lab, NODES), 20)
    for n in NODES:
        check("survives a full restart" in events(lab, n), "%s lost the event", n)
    check(lab.status("n3")["version"] >= before, "version went backwards")

    # SIGTERM: a clean exit that leaves the group at once and saves the state
    pid = json.loads(lab.run("status", "--json").stdout)["nodes"][0]["daemons"]["vireod"]["pid"]
    os.kill(pid, signal.SIGTERM)
    wait_until("n1 vireod exited", lambda: not os.path.exists(f"/proc/{pid}"), 10)
    log_text = lab.exec("n1", "cat", "/var/log/vireo/vireod.log").stdout
    check("vireod stopped" in log_text, "n1's vireod did not log a clean stop")
    lab.run("start-daemon", "n1", "vireod")
    wait_until("n1 back", lambda: converged(lab, NODES), 15)

    # vireod alone
    lab.run("stop-daemon", "n2", "vireod")
    wait_until("n2 offline", lambda: any(x["name"] == "n2" and x["state"] == "offline"
                                         for x in lab.status("n1")["nodes"]), 10)
    lab.run("start-daemon", "n2", "vireod")
    wait_until("n2 rejoined", lambda: converged(lab, NODES), 15)

    # corosync alone
    lab.run("stop-daemon", "n3", "corosync")
    wait_until("vireod on n3 notices", lambda: lab.status("n3") and
               not lab.status("n3")["corosync_connected"], 10)
    rc, _, err = lab.vireo("n3", "event", "add", "x")
    check(rc == 3, "n3 without corosync accepted a mutation (rc %d: %s)", rc, err)
    lab.run("start-daemon", "n3", "corosync")
    _, took = wait_until("n3 reconnected", lambda: converged(lab, NODES), 20)
    log(f"n3 reconnected and converged {took:.2f} s after corosync restarted")
    log_text = lab.exec("n3", "cat", "/var/log/vireo/vireod.log").stdout
    check("reconnected to corosync" in log_text, "no reconnect logged on n3")


main(test, "rst")
