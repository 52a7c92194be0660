"""The live page: what the scanners are doing, for the screen beside the console (``listen --web``).

A small Starlette app over a :class:`~protocolcheck.jobs.live.LiveMonitor`:

- ``GET /`` the page (one HTML document, inline CSS and script, no external assets: works offline):
  one card per scanner (station name / AE title) with its exam in progress, an alert banner while an
  open exam has something missing or wrong, the recent exams below. It updates itself from
- ``GET /events`` server-sent events (``text/event-stream``): the exams as JSON each time one changes
  (without the evidence lists), checked every :data:`POLL_SECONDS`, with a comment line every
  :data:`KEEPALIVE_SECONDS`.
- ``GET /api/exams`` the exams as JSON (one object per exam, :meth:`ExamView.to_dict`).

Patient names are left out unless ``include_patient``. With ``token`` every request must carry it:
``Authorization: Bearer TOKEN``, basic auth with TOKEN as the password (any user name; the browser
asks), or ``?token=TOKEN``. :class:`WebServer` runs the app with uvicorn on its own thread.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from protocolcheck.jobs.live import LiveMonitor

LOG = logging.getLogger("protocolcheck.report.live_page")

POLL_SECONDS = 0.2  # how often an event stream looks for a new version of the exams
KEEPALIVE_SECONDS = 15.0


def exams_json(monitor: LiveMonitor, include_patient: bool, *, compact: bool = False) -> list[dict[str, Any]]:
    """The exams as ``/api/exams`` gives them; ``compact`` (the event stream) leaves out the per-series
    and per-finding ``evidence``, which the page does not show (it is most of the bytes)."""
    exams = [v.to_dict(include_patient=include_patient) for v in monitor.views()]
    if compact:
        for exam in exams:
            for key in ("series", "findings", "alerts"):
                exam[key] = [{k: v for k, v in item.items() if k != "evidence"} for item in exam[key]]
    return exams


def _authorized(request: Request, token: str) -> bool:
    offered = request.query_params.get("token", "")
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        offered = value.strip()
    elif scheme.lower() == "basic":
        try:
            offered = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            offered = ""
    return hmac.compare_digest(offered.encode(), token.encode())


def create_app(monitor: LiveMonitor, *, include_patient: bool = False, token: str = "",
               title: str = "protocolcheck live") -> Starlette:
    """The Starlette app of the live page over ``monitor``."""

    def denied(request: Request) -> Response | None:
        if token and not _authorized(request, token):
            return Response("authentication required\n", status_code=401, media_type="text/plain",
                            headers={"WWW-Authenticate": 'Basic realm="protocolcheck live"'})
        return None

    async def page(request: Request) -> Response:
        return denied(request) or HTMLResponse(PAGE.replace("__TITLE__", _html_text(title)),
                                               headers=_SECURITY_HEADERS)

    async def api_exams(request: Request) -> Response:
        return denied(request) or JSONResponse(exams_json(monitor, include_patient),
                                               headers={"Cache-Control": "no-store"})

    async def events(request: Request) -> Response:
        refused = denied(request)
        if refused is not None:
            return refused

        return StreamingResponse(_event_stream(request, monitor, include_patient), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    return Starlette(routes=[Route("/", page), Route("/api/exams", api_exams), Route("/events", events)])


async def _event_stream(request: Request, monitor: LiveMonitor, include_patient: bool) -> AsyncIterator[str]:
    """The exams each time their version changes (checked every POLL_SECONDS), keep-alives between."""
    seen = -1
    quiet_since = time.monotonic()
    while not await request.is_disconnected():
        version = monitor.version
        if version != seen:
            seen = version
            quiet_since = time.monotonic()
            payload = json.dumps({"version": version,
                                  "exams": exams_json(monitor, include_patient, compact=True)},
                                 separators=(",", ":"))
            yield f"id: {version}\nevent: exams\ndata: {payload}\n\n"
        elif time.monotonic() - quiet_since > KEEPALIVE_SECONDS:
            quiet_since = time.monotonic()
            yield ": keep-alive\n\n"
        await asyncio.sleep(POLL_SECONDS)


def _html_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                               "connect-src 'self'; img-src 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class WebServer:
    """uvicorn serving ``app`` on ``host:port`` from a daemon thread (port 0: chosen by the OS)."""

    def __init__(self, app: Starlette, host: str = "127.0.0.1", port: int = 8080) -> None:
        self.config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                                     lifespan="off", timeout_graceful_shutdown=1)
        self.server = uvicorn.Server(self.config)
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 10.0) -> None:
        """Start serving; OSError when the address cannot be bound."""
        self._thread = threading.Thread(target=self.server.run, name="protocolcheck-web", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise OSError(f"the web page could not listen on {self.config.host}:{self.config.port}")
            time.sleep(0.02)

    @property
    def address(self) -> tuple[str, int]:
        for server in self.server.servers:
            for sock in server.sockets:
                host, port = sock.getsockname()[:2]
                return str(host), int(port)
        raise RuntimeError("web server not started")

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(5)


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<style>
body{font:15px/1.4 system-ui,-apple-system,"DejaVu Sans",sans-serif;margin:0;background:#f4f5f7;color:#1d232b}
header{display:flex;justify-content:space-between;align-items:center;padding:8px 16px;
background:#1d232b;color:#fff}
header h1{font-size:17px;margin:0} #conn{font-size:13px;opacity:.8}
#banner{display:none;margin:12px 16px;padding:12px 16px;border-radius:6px;background:#b3261e;color:#fff;
font-weight:600}
#banner.on{display:block} #banner ul{margin:6px 0 0 18px;padding:0;font-weight:400}
#cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:12px;padding:12px 16px}
.card{background:#fff;border-radius:8px;padding:12px 14px;box-shadow:0 1px 3px rgba(0,0,0,.15);
border-top:6px solid #8a939e}
.card.alert{border-top-color:#b3261e} .card.on-track{border-top-color:#2e7d32} .card.pass{border-top-color:#2e7d32}
.card.warn{border-top-color:#c77700} .card.fail{border-top-color:#b3261e}
.card h2{font-size:16px;margin:0 0 4px} .meta{color:#55606c;font-size:13px}
.verdict{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:700;color:#fff;
background:#8a939e}
.verdict.alert,.verdict.fail{background:#b3261e} .verdict.on-track,.verdict.pass{background:#2e7d32}
.verdict.warn{background:#c77700}
table{border-collapse:collapse;width:100%;font-size:13px;margin-top:6px}
td,th{text-align:left;padding:2px 6px;border-bottom:1px solid #e3e6ea}
.req-met{color:#2e7d32} .req-missing{color:#b3261e} .req-open{color:#55606c}
li.wrong,li.missing{color:#b3261e} li.still-missing{color:#55606c} li.note{color:#55606c}
#banner li{color:#fff}
.action{font-weight:600} section{padding:0 16px 16px} h3{font-size:15px;margin:12px 0 4px}
</style></head>
<body>
<header><h1>__TITLE__</h1><span id="conn">connecting…</span></header>
<div id="banner" role="alert"></div>
<div id="cards"></div>
<section><h3>Recent exams</h3><table id="recent"><thead><tr><th>updated</th><th>station</th><th>accession</th>
<th>protocol</th><th>state</th><th>verdict</th><th>problems</th></tr></thead><tbody></tbody></table></section>
<script>
"use strict";
const token = new URLSearchParams(location.search).get("token");
const q = token ? "?token=" + encodeURIComponent(token) : "";
function el(tag, cls, text) { const e = document.createElement(tag); if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text); return e; }
function station(x) { return x.station || x.station_aet || "unknown station"; }
function problem(f) { const r = f.requirement_name || f.requirement;
  return (r ? r + ": " : "") + (f.summary || f.message || f.code); }
function item(f) { const li = el("li", f.live); li.append(el("b", null, label(f.live) + ": "), problem(f));
  if (f.action) { li.append(el("div", "action", "→ " + f.action)); } return li; }
function label(kind) {
  return {"still-missing": "still missing", "missing": "missing", "wrong": "wrong", "note": "note"}[kind] || kind; }
function card(x) {
  const c = el("div", "card " + x.verdict); c.dataset.study = x.study_instance_uid; c.dataset.verdict = x.verdict;
  c.append(el("h2", null, station(x) + (x.station_aet && x.station ? " (" + x.station_aet + ")" : "")));
  const head = el("div", "meta");
  head.append(el("span", "verdict " + x.verdict, x.verdict), " ",
    "accession " + (x.accession_number || "-") + " · " + x.state + (x.provisional ? " (provisional)" : " (final)") +
    (x.ended_by === "timeout" ? " · ended by the exam timeout: no images or MPPS for too long" : ""));
  c.append(head);
  if (x.scheduled_procedure) c.append(el("div", "meta", "scheduled: " + x.scheduled_procedure));
  c.append(el("div", "meta", "protocol: " + (x.protocol || "not determined yet") + " · " + x.series_received +
    " series received" + (x.series_open ? ", " + x.series_open + " arriving" : "")));
  if (x.requirements.length) {
    const t = el("table"); const tb = el("tbody");
    for (const r of x.requirements) { const tr = el("tr");
      const state = r.met ? "met" : (x.provisional ? "open" : "missing");
      tr.append(el("td", "req-" + state, r.met ? "✓" : (x.provisional ? "…" : "✗")), el("td", null, r.label || r.id),
        el("td", "meta", (r.series_numbers || []).map(n => "#" + n).join(" ")));
      tb.append(tr); }
    t.append(tb); c.append(t); }
  const seen = new Set(); const series = el("div", "meta");
  for (const s of x.series) { if (seen.has(s.series_instance_uid)) continue; seen.add(s.series_instance_uid);
    series.append(el("div", null, "#" + s.series_number + " " + (s.series_description || "") + " — " +
      [s.plane, s.weighting, s.inversion, s.fat_suppressed ? "FS" : "", s.post_contrast ? "+C" : "",
       s.localizer ? "localizer" : ""].filter(Boolean).join(" "))); }
  c.append(series);
  if (x.findings.length) { const ul = el("ul"); for (const f of x.findings) ul.append(item(f)); c.append(ul); }
  return c;
}
function render(exams) {
  const cards = document.getElementById("cards"); cards.replaceChildren();
  const byStation = new Map();
  for (const x of exams) { const k = station(x); const cur = byStation.get(k);
    if (!cur || (x.state === "in-progress" && cur.state !== "in-progress")) byStation.set(k, x); }
  for (const x of byStation.values()) cards.append(card(x));
  const alerts = exams.filter(x => x.state === "in-progress" && x.alerts.length);
  const banner = document.getElementById("banner"); banner.replaceChildren();
  if (alerts.length) { banner.className = "on";
    for (const x of alerts) {
      banner.append(el("div", null, station(x) + " · accession " + (x.accession_number || "-") + ": " +
        x.alerts.length + " problem" + (x.alerts.length > 1 ? "s" : "") + " while the patient is on the table"));
      const ul = el("ul"); for (const f of x.alerts) ul.append(item(f));
      banner.append(ul); } }
  else banner.className = "";
  const tb = document.querySelector("#recent tbody"); tb.replaceChildren();
  for (const x of exams) { const tr = el("tr");
    tr.append(el("td", null, x.updated.replace("T", " ").slice(0, 19)), el("td", null, station(x)),
      el("td", null, x.accession_number), el("td", null, x.protocol || "-"),
      el("td", null, x.state + (x.ended_by === "timeout" ? " (timeout)" : "")),
      el("td", null, x.verdict),
      el("td", null, x.findings.filter(f => f.live !== "note").map(f => f.requirement || f.code).join(", ")));
    tb.append(tr); }
}
function connect() {
  const source = new EventSource("events" + q);
  source.addEventListener("exams", e => { const d = JSON.parse(e.data); render(d.exams);
    document.getElementById("conn").textContent = "live · updated " + new Date().toLocaleTimeString(); });
  source.onerror = () => { document.getElementById("conn").textContent = "reconnecting…"; };
}
connect();
</script></body></html>
"""
