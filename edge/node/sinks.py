"""Where a node's alerts and audit records go: small interfaces, and the console line.

The pipeline only knows these protocols. ``edge.node.app`` plugs in the durable outbox
sender, the console printer and the audit log; tests plug in lists.
"""

from __future__ import annotations

from typing import Any, Protocol

from edge.link.schema import Alert, describe


class AlertSink(Protocol):
    """Takes one alert (the matched face's crop as JPEG, and the watchlist photo it matched)."""

    def send(self, alert: Alert, jpeg: bytes, reference_jpeg: bytes | None = None) -> None: ...


class AuditSink(Protocol):
    """Appends one record to the audit log (counts, ids and scores only: never face data)."""

    def append(self, kind: str, data: dict[str, Any]) -> dict[str, Any]: ...


class ConsoleSink:
    """One line per alert on stdout, for the operator at the node (``alerts.console``)."""

    def send(self, alert: Alert, jpeg: bytes, reference_jpeg: bytes | None = None) -> None:
        print(describe(alert), flush=True)
