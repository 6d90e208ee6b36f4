"""Fleet benchmark: N simulated nodes -> hub, ZeroMQ single hub vs NATS 1 server vs NATS
3-server cluster (R3 streams), side by side. Written to out/bench/fleet.json.

Each simulated node is the real durable sender (``ZmqSender`` or ``NatsSender``: SQLite outbox
with fsync, acks, heartbeats every second) sending real alert messages (schema v1 header, a
JPEG face crop and a JPEG reference image from insightface's sample photo) at ``--rate``
alerts/s each, phases spread evenly. All N nodes run in one child process (the "farm"); the
hub is ``edge hub`` in its own process, its SQLite store on disk, as deployed. Per run:

- ``alerts_per_s``: alerts stored by the hub / the sending window;
- ``capture_to_hub`` p50/p95/p99: hub ``received_at`` - ``captured_at`` (stamped just before
  ``send()``), i.e. outbox + transport + hub store commit;
- ``lost``: alerts sent but not stored after the drain (must be 0).

Goal: 100 nodes at 1 alert/s each with capture->hub p99 <= 250 ms.

    python benchmarks/fleet.py                          # N = 1, 10, 100; 20 s each: ~4 min
    python benchmarks/fleet.py --nodes 1 10 --seconds 10 --transports zmq nats1
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import cv2  # noqa: E402
import httpx  # noqa: E402
import numpy as np  # noqa: E402

from edge.link.nats_fabric import NatsSettings  # noqa: E402

OUT = REPO / "out" / "bench"
EDGE = [sys.executable, "-m", "edge.cli"]


def _free_port() -> int:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return int(p)


def face_jpegs() -> tuple[bytes, bytes]:
    """(probe crop 112x112, reference 224x224) JPEGs of insightface's sample face photo."""
    from edge.node.demo import sample_images_dir

    img = cv2.imread(str(sample_images_dir() / "Tom_Hanks_54745.png"))
    assert img is not None
    probe = cv2.imencode(".jpg", cv2.resize(img, (112, 112)), [cv2.IMWRITE_JPEG_QUALITY, 90])[1]
    ref = cv2.imencode(".jpg", cv2.resize(img, (224, 224)), [cv2.IMWRITE_JPEG_QUALITY, 90])[1]
    return probe.tobytes(), ref.tobytes()


# -- the farm: N senders in this process ------------------------------------------------------


def farm(args: argparse.Namespace) -> None:
    from edge.hub.synthetic import synthetic_alert
    from edge.link.nats_sender import NatsSender
    from edge.link.sender import OutboxSender
    from edge.link.zmq_sender import ZmqSender

    probe, ref = face_jpegs()
    work = Path(args.work)
    senders: list[OutboxSender] = []
    for i in range(args.n):
        node = f"node-{i}"
        box = work / f"{node}.outbox.sqlite"
        if args.transport == "zmq":
            senders.append(ZmqSender(box, args.endpoint, node, heartbeat_interval=1.0))
        else:
            urls = tuple(args.endpoint.split(","))
            urls = urls[i % len(urls):] + urls[:i % len(urls)]
            senders.append(NatsSender(box, NatsSettings(servers=urls), node, args.deployment,
                                      heartbeat_interval=1.0))
    for s in senders:
        s.start()
    deadline = time.monotonic() + 30
    while not all(s.hub_connected for s in senders) and time.monotonic() < deadline:
        time.sleep(0.05)
    period = 1.0 / args.rate
    start = time.monotonic() + 0.5
    end = start + args.seconds
    sent = 0
    k = 0
    while True:  # one schedule for all nodes: node i sends at start + (k + i/N) * period
        rnd, i = divmod(k, args.n)
        at = start + (rnd + i / args.n) * period
        if at >= end:
            break
        delay = at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        now = time.time()
        a = synthetic_alert(f"node-{i}", n=rnd, deployment_id=args.deployment,
                            captured_at=now, decided_at=now)
        senders[i].send(a, probe, ref)
        sent += 1
        k += 1
    drain = time.monotonic() + 60
    while any(s.pending() for s in senders) and time.monotonic() < drain:
        time.sleep(0.05)
    pending = sum(s.pending() for s in senders)
    for s in senders:
        s.close(timeout=0)
    print(json.dumps({"sent": sent, "pending": pending}), flush=True)


# -- one run: hub + farm ----------------------------------------------------------------------


def start_nats(root: Path, size: int) -> Any:
    from tests.nats_helpers import Fabric

    return Fabric(root, size).start()


def run_one(transport: str, n: int, seconds: float, rate: float, work: Path,
            fabric: Any | None, label: str) -> dict[str, Any]:
    hub_dir = work / f"hub-{label}-{n}"
    hub_dir.mkdir(parents=True)
    db = hub_dir / "hub.sqlite"
    port = _free_port()
    dep = f"bench-{label}-{n}"
    if transport == "zmq":
        endpoint = f"tcp://127.0.0.1:{_free_port()}"
        head = f'[zmq]\nbind = "{endpoint}"\n'
    else:
        assert fabric is not None
        endpoint = ",".join(fabric.urls)
        servers = ", ".join(f'"{u}"' for u in fabric.urls)
        head = (f'transport = "nats"\n[nats]\nservers = [{servers}]\nhub_name = "bench"\n'
                f'deployments = ["{dep}"]\n')
    toml = hub_dir / "hub.toml"
    toml.write_text(head + f'[http]\nhost = "127.0.0.1"\nport = {port}\n'
                    f'[store]\npath = "{db}"\nofficers_file = "{hub_dir / "officers.json"}"\n'
                    '[metrics]\nport = 0\n')
    with open(hub_dir / "hub.log", "wb") as log:
        hub = subprocess.Popen([*EDGE, "hub", "--config", str(toml)], stdout=log,
                               stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or hub.poll() is not None:
                raise RuntimeError("hub did not start: " + (hub_dir / "hub.log").read_text())
            time.sleep(0.1)
        farm_dir = work / f"farm-{label}-{n}"
        farm_dir.mkdir()
        out = subprocess.run(
            [sys.executable, __file__, "--farm", "--transport", transport, "--endpoint",
             endpoint, "--n", str(n), "--seconds", str(seconds), "--rate", str(rate),
             "--deployment", dep, "--work", str(farm_dir)],
            capture_output=True, text=True, timeout=seconds + 180)
        if out.returncode != 0:
            raise RuntimeError(out.stderr[-3000:])
        res = json.loads(out.stdout.strip().splitlines()[-1])
        deadline = time.monotonic() + 30
        rows: list[tuple[float, float]] = []
        while time.monotonic() < deadline:
            c = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
            rows = c.execute("SELECT captured_at, received_at FROM alerts").fetchall()
            c.close()
            if len(rows) >= res["sent"]:
                break
            time.sleep(0.2)
    finally:
        hub.send_signal(signal.SIGTERM)
        try:
            hub.wait(timeout=20)
        except subprocess.TimeoutExpired:
            hub.kill()
    lat = np.array([r - c for c, r in rows]) * 1000.0
    span = (max(r for _, r in rows) - min(c for c, _ in rows)) if rows else 0.0
    return {
        "transport": transport, "nodes": n, "rate_per_node": rate, "seconds": seconds,
        "sent": res["sent"], "stored": len(rows), "lost": res["sent"] - len(rows),
        "left_in_outboxes": res["pending"],
        "alerts_per_s": round(len(rows) / span, 1) if span else 0.0,
        "capture_to_hub_ms": {q: round(float(np.percentile(lat, p)), 1) if len(lat) else None
                              for q, p in (("p50", 50), ("p95", 95), ("p99", 99))},
        "max_ms": round(float(lat.max()), 1) if len(lat) else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, nargs="+", default=[1, 10, 100])
    ap.add_argument("--transports", nargs="+", default=["zmq", "nats1", "nats3"],
                    choices=["zmq", "nats1", "nats3"])
    ap.add_argument("--seconds", type=float, default=20.0, help="sending window per run")
    ap.add_argument("--rate", type=float, default=1.0, help="alerts/s per node")
    # the farm (child process)
    ap.add_argument("--farm", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--transport", help=argparse.SUPPRESS)
    ap.add_argument("--endpoint", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--deployment", default="bench", help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.farm:
        farm(args)
        return
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="edge-fleet-") as tmp:
        work = Path(tmp)
        for transport in args.transports:
            fabric = None
            if transport != "zmq":
                fabric = start_nats(work / transport, 1 if transport == "nats1" else 3)
            try:
                for n in args.nodes:
                    r = run_one("zmq" if transport == "zmq" else "nats", n, args.seconds,
                                args.rate, work, fabric, transport)
                    r["transport"] = transport
                    results.append(r)
                    q = r["capture_to_hub_ms"]
                    print(f"{transport:6s} N={n:<4d} {r['alerts_per_s']:7.1f} alerts/s  "
                          f"p50 {q['p50']} ms  p95 {q['p95']} ms  p99 {q['p99']} ms  "
                          f"lost {r['lost']}", flush=True)
            finally:
                if fabric is not None:
                    fabric.stop()
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "fleet.json"
    path.write_text(json.dumps({"generated_at": time.time(), "cpus": os.cpu_count(),
                                "command": " ".join(sys.argv), "results": results}, indent=1))
    print(f"written {path}")


if __name__ == "__main__":
    main()
