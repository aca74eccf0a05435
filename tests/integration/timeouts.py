"""vireo's timeouts for the lab's token, in seconds, from the macros vireod
uses (cluster/timeouts.h, hypervisor/hv_timeouts.h) through the built
tools/vireo-timeouts: the tests and the chaos bounds hold no copies of them.

    from timeouts import T
    T.DETECTION          # VIREO_DETECTION_MS at the lab's token, in s
"""
import json
import os
import subprocess

from labtest import BUILD_DIR

# The lab's corosync token (tools/lab/labconf.py writes it into corosync.conf).
LAB_TOKEN_MS = 1000


class _Timeouts:
    def __init__(self, token_ms):
        tool = os.path.join(BUILD_DIR, "tools", "vireo-timeouts")
        if not os.access(tool, os.X_OK):
            raise RuntimeError(f"{tool} is not built; build vireo (make) or set VIREO_BUILD_DIR")
        out = subprocess.run([tool, "--json", "--token", str(token_ms)], capture_output=True,
                             text=True, check=True).stdout
        self._ms = json.loads(out)

    def __getattr__(self, name):
        """T.DETECTION: VIREO_DETECTION_MS in seconds (T.HV_KEEPALIVE_S as it is)."""
        ms = self._ms
        if name + "_MS" in ms:
            return ms[name + "_MS"] / 1000.0
        if name in ms:
            return ms[name]
        raise AttributeError(f"no timeout VIREO_{name}_MS in cluster/timeouts.h")

    @property
    def TOKEN(self):
        return self._ms["token_ms"] / 1000.0


T = _Timeouts(LAB_TOKEN_MS)
