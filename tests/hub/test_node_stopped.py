"""A node that stops cleanly tells the hub (a last heartbeat with `stopping`): the hub shows it
stopped, with why, never lost; a node killed -9 is lost; the next heartbeat brings it back."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.hub_helpers import RunningHub, hub_config, metric, wait_for

pytestmark = pytest.mark.unit

NODE = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from edge.link.zmq_sender import ZmqSender
    s = ZmqSender(Path(sys.argv[1]), sys.argv[2], sys.argv[3], None, None,
                  heartbeat_interval=0.1).start()
    while not s.hub_connected:
        time.sleep(0.02)
    print("up", flush=True)
    sys.stdin.readline()  # "stop" (or we are killed before)
    s.close(0, reason="source ended")
""")


def _node(tmp: Path, h: RunningHub, name: str) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", NODE, str(tmp / f"{name}.sqlite"), h.endpoint,
                          name], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "up"
    return p


def _status(h: RunningHub, name: str) -> dict:
    (n,) = [n for n in h.hub.node_status() if n["node_id"] == name]
    return n


def test_clean_stop_is_stopped_kill_is_lost(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO, "edge.hub")
    h = RunningHub(hub_config(tmp_path, **{"ui.node_lost_after_s": 1}))
    try:
        calm, killed = _node(tmp_path, h, "calm"), _node(tmp_path, h, "killed")
        wait_for(lambda: _status(h, "calm")["online"] and _status(h, "killed")["online"],
                 what="both online")
        assert calm.stdin is not None
        calm.stdin.write("stop\n")
        calm.stdin.flush()
        assert calm.wait(10) == 0
        killed.send_signal(signal.SIGKILL)
        killed.wait(10)
        st = wait_for(lambda: (n := _status(h, "calm"))["stopped"] and n, what="stopped")
        assert st["online"] is False and st["stopped"]["reason"] == "source ended"
        wait_for(lambda: not _status(h, "killed")["online"], timeout=5, what="killed lost")
        wait_for(lambda: metric(h.hub.metrics.registry, "edge_hub_nodes_online") == 0,
                 what="gauge")
        assert _status(h, "killed")["stopped"] is None  # lost, not stopped
        assert _status(h, "calm")["stopped"] is not None  # still stopped, not lost, later on
        lines = [r.getMessage() for r in caplog.records]
        assert "node calm stopped: source ended" in lines
        assert any(x.startswith("node killed lost") for x in lines), lines
        assert not any(x.startswith("node calm lost") for x in lines), lines
        # over HTTP, as the tablet reads it
        nodes = {n["node_id"]: n for n in h.client().get("/api/nodes").json()["nodes"]}
        assert nodes["calm"]["stopped"]["reason"] == "source ended"
        assert nodes["killed"]["stopped"] is None and not nodes["killed"]["online"]
        again = _node(tmp_path, h, "calm")  # started again: online, no longer stopped
        wait_for(lambda: _status(h, "calm")["online"], what="back online")
        assert _status(h, "calm")["stopped"] is None
        again.kill()
        again.wait(10)
    finally:
        h.close()
