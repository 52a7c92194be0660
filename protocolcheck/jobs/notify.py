"""``listen --notify URL``: POST a JSON event when an open exam gets an error-level problem.

:class:`AlertNotifier` is a :class:`~protocolcheck.jobs.live.LiveMonitor` listener: for each exam
still in progress, each error-level alert (a finding that is ``missing`` or ``wrong``, not merely
``still-missing``) is announced once per exam, requirement and code. Events wait in a bounded queue
(the oldest is dropped, and counted, when it is full) and are POSTed by one worker thread with
retries and exponential back-off; a 4xx answer is not retried. Receiving DICOM never waits on it.

The event carries a ready-made ``text`` line, so chat gateways that take ``{"text": ...}`` (Slack
and Mattermost incoming webhooks, ntfy with a JSON template, most paging bridges) can use it as is.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from protocolcheck.clinical.findings import Severity
from protocolcheck.jobs.live import ExamState, ExamView

LOG = logging.getLogger("protocolcheck.jobs.notify")

EVENT_TYPE = "protocolcheck.exam-alert"


def check_url(url: str) -> str:
    """``url`` if it is an http(s) URL with a host; ValueError otherwise."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(f"--notify needs an http:// or https:// URL, not {url!r}")
    return url


def alert_event(view: ExamView, alerts: list[dict[str, Any]]) -> dict[str, Any]:
    """The JSON event for ``alerts`` (finding dicts) of ``view``."""
    where = view.station or view.station_aet or "unknown station"
    items = [f"{a.get('live')}: {a.get('requirement_name') or a.get('requirement') or a.get('code')} \u2014 "
             f"{a.get('action') or a.get('summary') or a.get('message')}" for a in alerts]
    return {
        "event": EVENT_TYPE,
        "study_instance_uid": view.study_instance_uid,
        "accession_number": view.accession_number,
        "station": view.station,
        "station_aet": view.station_aet,
        "state": view.state.value,
        "provisional": view.provisional,
        "protocol": view.protocol,
        "codes": sorted({str(a.get("code")) for a in alerts}),
        "actions": [a.get("action") or a.get("summary") or a.get("message") for a in alerts],
        "findings": alerts,
        "text": f"{where}, accession {view.accession_number or '-'}: " + "; ".join(items),
    }


@dataclass
class NotifyCounters:
    sent: int = 0
    failed: int = 0  # given up after the retries (or refused with 4xx)
    dropped: int = 0  # the queue was full
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + 1)


class AlertNotifier:
    """POSTs alert events to ``url`` (see the module docstring); call :meth:`start`, then use it as
    a monitor listener, and :meth:`stop` at the end (it tries to send what is queued for ``drain`` s)."""

    def __init__(self, url: str, *, max_queue: int = 100, retries: int = 5, backoff: float = 1.0,
                 timeout: float = 5.0, headers: dict[str, str] | None = None,
                 post: Callable[[str, bytes, dict[str, str], float], int] | None = None) -> None:
        self.url = check_url(url)
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self.headers = {"Content-Type": "application/json", "User-Agent": "protocolcheck", **(headers or {})}
        self.post = post or _post
        self.counters = NotifyCounters()
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(max_queue)
        self._seen: set[tuple[str, str, str]] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __call__(self, view: ExamView) -> None:
        if view.state is not ExamState.IN_PROGRESS:
            return
        fresh = []
        for alert in view.alerts:
            if alert.get("severity") != Severity.ERROR.value:
                continue
            key = (view.study_instance_uid, str(alert.get("code")), str(alert.get("requirement")))
            if key not in self._seen:
                self._seen.add(key)
                fresh.append(alert)
        if fresh:
            self.offer(alert_event(view, fresh))

    def offer(self, event: dict[str, Any]) -> None:
        """Queue ``event``; when the queue is full the oldest event is dropped (and counted)."""
        while True:
            try:
                self._queue.put_nowait(event)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                    self.counters.add("dropped")
                    LOG.warning("notify queue full: oldest event dropped")
                except queue.Empty:
                    pass

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="protocolcheck-notify", daemon=True)
        self._thread.start()

    def stop(self, drain: float = 5.0) -> None:
        deadline = time.monotonic() + drain
        while not self._queue.empty() and time.monotonic() < deadline:
            time.sleep(0.05)
        self._stop.set()
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        if self._thread is not None:
            self._thread.join(self.timeout + 1)

    def _run(self) -> None:
        while not self._stop.is_set():
            event = self._queue.get()
            if event is None:
                continue
            self._send(event)

    def _send(self, event: dict[str, Any]) -> None:
        body = json.dumps(event, ensure_ascii=False).encode("utf-8")
        delay = self.backoff
        for attempt in range(self.retries + 1):
            try:
                status = self.post(self.url, body, self.headers, self.timeout)
            except OSError as exc:
                status, reason = 0, str(exc)
            else:
                reason = f"HTTP {status}"
            if 200 <= status < 300:
                self.counters.add("sent")
                return
            if 400 <= status < 500:
                break
            if attempt < self.retries and not self._stop.wait(delay):
                LOG.info("notify %s failed (%s); retrying in %g s", self.url, reason, delay)
                delay = min(delay * 2, 60.0)
                continue
            break
        self.counters.add("failed")
        LOG.error("notify %s failed for accession %s (%s); event dropped", self.url,
                  event.get("accession_number") or "-", reason)


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # http(s) only: check_url
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
