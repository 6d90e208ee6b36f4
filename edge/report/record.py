"""The deployment record as CSV (one row per camera + totals) and as a one-page HTML report
with a chart, the way forces publish one per deployment. Input: HubStore.deployment_record()."""

from __future__ import annotations

import base64
import csv
import html
import io
import time
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a window

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

CSV_COLUMNS = ("node_id", "camera", "faces_seen", "alerts", "confirmed", "rejected", "no_action",
               "undecided", "false_alert_rate", "false_alert_one_in", "false_alert_share")
OUTCOME_TEXT = {"spoken_to": "Spoken to", "arrested": "Arrested", "wrong_person": "Wrong person",
                "no_further_action": "No further action", "other": "Other"}


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t)) if t else "—"


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.2f}%"


def to_csv(record: dict[str, Any]) -> str:
    """One row per camera, then a totals row; outcomes as one column each."""
    outcomes = sorted(record["totals"].get("outcomes", {}))
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow([*CSV_COLUMNS, *(f"outcome_{o}" for o in outcomes)])
    rows = [*record["per_camera"], {**record["totals"], "node_id": "TOTAL", "camera": ""}]
    for r in rows:
        w.writerow([("" if r.get(c) is None else r.get(c)) for c in CSV_COLUMNS]
                   + [r.get("outcomes", {}).get(o, 0) for o in outcomes])
    return buf.getvalue()


def _chart(record: dict[str, Any]) -> bytes:
    """PNG: alerts per camera split by decision (what a reader of the record looks for)."""
    cams = record["per_camera"] or [{"camera": "(no camera)", "confirmed": 0, "rejected": 0,
                                     "no_action": 0, "undecided": 0}]
    names = [c["camera"] or c.get("node_id", "") for c in cams]
    fig, ax = plt.subplots(figsize=(7.5, 2.8), dpi=110)
    left = [0] * len(cams)
    for key, label, colour in (("confirmed", "Confirmed", "#1f7a45"),
                               ("rejected", "Rejected (false alert)", "#b83232"),
                               ("no_action", "No action", "#6b7785"),
                               ("undecided", "Undecided", "#c9a227")):
        vals = [c[key] for c in cams]
        ax.barh(names, vals, left=left, label=label, color=colour)
        left = [a + b for a, b in zip(left, vals, strict=True)]
    ax.set_xlabel("alerts")
    ax.set_title("Alerts per camera by officer decision")
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    plt.close(fig)
    return out.getvalue()


def to_html(record: dict[str, Any]) -> str:
    """A self-contained one-page report (the chart inlined as a PNG data URI)."""
    t = record["totals"]
    e = html.escape
    deps = record.get("deployments", [])
    dep_ids = sorted({d["deployment_id"] for d in deps}) or [record.get("deployment_id") or "—"]
    officers = sorted({d["authorising_officer"] for d in deps if d["authorising_officer"]})
    window = record.get("window")
    one_in = t.get("false_alert_one_in")
    rows = "".join(
        f"<tr><td>{e(c['camera'])}</td><td>{e(c['node_id'])}</td><td>{c['faces_seen']:,}</td>"
        f"<td>{c['alerts']}</td><td>{c['confirmed']}</td><td>{c['rejected']}</td>"
        f"<td>{c['no_action']}</td><td>{c['undecided']}</td>"
        f"<td>{_pct(c.get('false_alert_share'))}</td></tr>" for c in record["per_camera"])
    outcomes = "".join(f"<li>{e(OUTCOME_TEXT.get(k, k))}: {v}</li>"
                       for k, v in sorted(t.get("outcomes", {}).items())) or "<li>none recorded</li>"
    chart = base64.b64encode(_chart(record)).decode()
    size = record.get("watchlist_size")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Deployment record {e(", ".join(dep_ids))}</title>
<style>
body {{ font: 15px/1.45 system-ui, sans-serif; color: #111; background: #fff; margin: 24px auto;
  max-width: 860px; padding: 0 16px; }}
h1 {{ font-size: 22px; margin: 0 0 4px; }} h2 {{ font-size: 17px; margin: 18px 0 6px; }}
table {{ border-collapse: collapse; width: 100%; }} th, td {{ border-bottom: 1px solid #ccc;
  padding: 4px 6px; text-align: right; }} th:first-child, td:first-child,
th:nth-child(2), td:nth-child(2) {{ text-align: left; }}
.facts {{ display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 0; }}
.facts dt {{ font-weight: 600; }} .facts dd {{ margin: 0; }}
img {{ max-width: 100%; }} .note {{ color: #444; font-size: 13px; }}
</style></head><body>
<h1>Live facial recognition deployment record</h1>
<p class="note">Generated {e(_when(record.get("generated_at")))} from the alert hub. Counts only:
no images, no names of people matched or passing.</p>
<dl class="facts">
<dt>Deployment</dt><dd id="deployment">{e(", ".join(dep_ids))}</dd>
<dt>Authorised by</dt><dd id="officer">{e(", ".join(officers) or "—")}</dd>
<dt>Window</dt><dd id="window">{e(_when(window["start"]) + " to " + _when(window["end"])
                                  if window else "—")}</dd>
<dt>Cameras</dt><dd id="cameras">{e(", ".join(c["camera"] for c in record["per_camera"]) or "—")}</dd>
<dt>Watchlist size</dt><dd id="watchlist">{size if size is not None else "—"}</dd>
<dt>Faces seen</dt><dd id="faces">{t["faces_seen"]:,}</dd>
<dt>Alerts</dt><dd id="alerts">{t["alerts"]}</dd>
<dt>Confirmed / rejected / no action</dt>
<dd id="decisions">{t["confirmed"]} / {t["rejected"]} / {t["no_action"]} (undecided {t["undecided"]})</dd>
<dt>False alert rate</dt><dd id="far">{_pct(t.get("false_alert_rate"))} of faces seen{
        f" (1 in {one_in:,})" if one_in else ""}; {_pct(t.get("false_alert_share"))} of decided alerts</dd>
</dl>
<h2>Alerts per camera</h2>
<img id="chart" alt="Alerts per camera by officer decision" src="data:image/png;base64,{chart}">
<table><thead><tr><th>Camera</th><th>Node</th><th>Faces seen</th><th>Alerts</th><th>Confirmed</th>
<th>Rejected</th><th>No action</th><th>Undecided</th><th>False share</th></tr></thead>
<tbody>{rows}</tbody></table>
<h2>Outcomes recorded by officers</h2><ul id="outcomes">{outcomes}</ul>
<p class="note">{e(record.get("notes", ""))}</p>
</body></html>
"""
