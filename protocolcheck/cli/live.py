"""``listen``'s live loop: per-series verdicts, MPPS, the live page, notifications, the SR to the PACS.

:func:`live_options` are the click options; :class:`LiveLoop` wires the parts together (each lives
in its own module: :mod:`protocolcheck.jobs.live` judges, :mod:`protocolcheck.net.mpps` receives
MPPS, :mod:`protocolcheck.report.live_page` serves the page, :mod:`protocolcheck.jobs.notify`
posts alerts, :mod:`protocolcheck.report.sr` builds the report that :mod:`protocolcheck.net.push`
stores in the PACS).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from protocolcheck import config
from protocolcheck.cli.options import apply_options

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from protocolcheck.audit.engine import AuditOptions
    from protocolcheck.jobs.live import ExamView, Expectation, LiveMonitor
    from protocolcheck.jobs.notify import AlertNotifier
    from protocolcheck.net.common import Peer
    from protocolcheck.net.instances import InstanceKey, InstanceStore
    from protocolcheck.net.mpps import MppsStore
    from protocolcheck.net.push import StoreQueue
    from protocolcheck.report.live_page import WebServer
    from protocolcheck.report.sr import ReportVersion

LOG = logging.getLogger("protocolcheck.live")

TOKEN_ENV = config.Env.WEB_TOKEN.value


def live_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The live-loop options of ``listen``."""
    return apply_options(f, [
        click.option("--series-idle", type=click.FloatRange(0, 3600), default=2.0, show_default=True,
                     metavar="SECONDS",
                     help="A series is judged when no instance of it has arrived for this long, or the next "
                          "series of the exam starts; the exam so far is then re-audited (provisional verdict)."),
        click.option("--exam-timeout", type=click.FloatRange(1, 30 * 86400), default=config.EXAM_TIMEOUT,
                     show_default=True, metavar="SECONDS",
                     help="An open exam with no new instance and no MPPS message for this long ends: final "
                          "verdict, state idle, ended_by timeout (an MPPS left IN PROGRESS does not stay open)."),
        click.option("--web", "web", default=None, metavar="[HOST:]PORT",
                     help="Serve the live page (one card per scanner, alert banner, recent exams) and "
                          "GET /api/exams here; the host defaults to 127.0.0.1."),
        click.option("--web-token-file", type=click.Path(dir_okay=False), default=None, metavar="FILE",
                     help=f"Require the token in FILE (its first line) for the page: Bearer, basic-auth password "
                          f"or ?token= (default ${TOKEN_ENV}; never typed on the command line, where ps shows it)."),
        click.option("--notify", "notify_url", default=None, metavar="URL",
                     help="POST a JSON event here when an open exam gets an error-level problem "
                          "(retried; bounded queue)."),
        click.option("--send-sr", "send_sr", default=None, metavar="AET@HOST:PORT|URL",
                     help="Store a DICOM Structured Report of each final verdict in this PACS (C-STORE, in "
                          "the study it judges; retried while the PACS is down)."),
        click.option("--worklist", "worklist", nargs=2, type=(str, click.IntRange(1, 65535)), default=None,
                     metavar="HOST PORT",
                     help="Look each exam's accession number up on this modality worklist: scheduled "
                          "procedure, reason and contraindications (a wrong exam is flagged at its first "
                          "series)."),
        click.option("--worklist-aet", default=None, metavar="AET", help="The worklist server's AE title."),
    ])


def read_token(path: str) -> str:
    """The first line of ``path``; usage error when it cannot be read or is empty."""
    try:
        with open(path, encoding="utf-8") as fh:
            token = fh.readline().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise click.UsageError(f"--web-token-file {path}: cannot be read ({exc})") from exc
    if not token:
        raise click.UsageError(f"--web-token-file {path}: the first line is empty")
    return token


def web_address(text: str) -> tuple[str, int]:
    """``PORT`` or ``HOST:PORT`` (IPv6 in brackets); ValueError otherwise."""
    host, colon, port = text.rpartition(":")
    if not colon:
        host, port = "127.0.0.1", text
    if not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"--web expects [HOST:]PORT, not {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def worklist_lookup(peer: Peer, context_file: str | None, timeout: float = 10.0
                    ) -> Callable[[str], Expectation | None]:
    """``expect(accession)`` for the live monitor: the worklist item of that accession, read by the
    clinical core (:func:`protocolcheck.net.mwl.order_context`, the context CSV overriding it)."""
    from protocolcheck.clinical.context import load_context_csv
    from protocolcheck.jobs.live import Expectation
    from protocolcheck.net.common import Timeouts
    from protocolcheck.net.mwl import WorklistQuery, find_worklist, order_context

    table = load_context_csv(context_file) if context_file else None  # already checked by the audit options
    timeouts = Timeouts(connect=min(timeout, 5.0), acse=timeout, dimse=timeout, network=timeout)

    def expect(accession: str) -> Expectation | None:
        items = find_worklist(peer, WorklistQuery(accession=accession), timeouts)
        if not items:
            LOG.warning("accession %s is not on the worklist of %s", accession, peer)
            return None
        item = items[0]
        return Expectation(scheduled_procedure=item.procedure, context=order_context(item, table),
                           source=f"worklist {peer}")

    return expect


class LiveLoop:
    """Everything ``listen`` runs beside the storage SCP for the live loop (see the module docstring)."""

    def __init__(self, opts: dict[str, Any], options: AuditOptions, store_root: Path, aet: str) -> None:
        from protocolcheck.jobs.live import LiveMonitor
        from protocolcheck.net.mpps import MppsStore

        self.opts = opts
        self.store_root = store_root
        self.include_patient = bool(opts.get("include_patient"))
        expect = None
        if opts.get("worklist"):
            expect = worklist_lookup(self._worklist_peer(opts, aet), opts.get("context_file"))
        self.monitor: LiveMonitor = LiveMonitor(options, series_idle=opts["series_idle"],
                                                exam_timeout=opts["exam_timeout"], expect=expect)
        self.mpps: MppsStore = MppsStore(store_root)
        self.notifier: AlertNotifier | None = None
        self.sender: StoreQueue | None = None
        self.web: WebServer | None = None
        self._sr_sent: set[tuple[str, str]] = set()
        self.monitor.subscribe(_log_view)
        if opts.get("notify_url"):
            from protocolcheck.jobs.notify import AlertNotifier

            try:
                self.notifier = AlertNotifier(opts["notify_url"])
            except ValueError as exc:
                raise click.UsageError(str(exc)) from exc
            self.monitor.subscribe(self.notifier)
        if opts.get("send_sr"):
            from protocolcheck.cli.dicomweb import sr_destination
            from protocolcheck.net.outbox import Outbox
            from protocolcheck.net.push import StoreQueue
            from protocolcheck.report import sr  # noqa: F401 - highdicom loaded now, not at the first verdict

            try:
                max_items, max_bytes = config.outbox_limits()
                outbox = Outbox(store_root, max_items=max_items, max_bytes=max_bytes, sent_keep=config.OUTBOX_SENT_KEEP,
                                reported_keep=config.OUTBOX_REPORTED_KEEP)
                self.sender = StoreQueue(sr_destination(opts["send_sr"], aet), outbox)
            except ValueError as exc:
                raise click.UsageError(f"--send-sr: {exc}") from exc
            self.monitor.subscribe(self._send_sr)
        if opts.get("web"):
            try:
                host, port = web_address(opts["web"])
            except ValueError as exc:
                raise click.UsageError(str(exc)) from exc
            from protocolcheck.report.live_page import WebServer, create_app

            token = read_token(opts["web_token_file"]) if opts.get("web_token_file") else config.web_token()
            self.web = WebServer(create_app(self.monitor, include_patient=self.include_patient, token=token),
                                 host, port)

    @staticmethod
    def _worklist_peer(opts: dict[str, Any], aet: str) -> Peer:
        from protocolcheck.net.common import Peer, validate_aet

        if not opts.get("worklist_aet"):
            raise click.UsageError("--worklist needs --worklist-aet (the worklist server's AE title)")
        host, port = opts["worklist"]
        try:
            return Peer(host, int(port), validate_aet(opts["worklist_aet"], "--worklist-aet"), aet)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from exc

    # -- wiring into the storage SCP ------------------------------------------------------------
    def services(self) -> list[tuple[tuple[str, ...], list[Any]]]:
        from protocolcheck.net.mpps import MPPS_SOP_CLASS, mpps_handlers

        return [((MPPS_SOP_CLASS,), mpps_handlers(self.mpps, self._mpps_message))]

    def on_instance(self, key: InstanceKey, path: Path) -> None:
        self.monitor.instance(key.study, key.series, path)

    def on_study(self, study_uid: str) -> None:
        """The idle hand-over (before the audit; the study stays marked pending until this returns): wait
        until the live verdict went through the listeners, so that a kill -9 cannot fall between the
        marker's removal and the report's arrival in the outbox."""
        if not self.monitor.study_idle(study_uid, wait=config.LIVE_HANDOVER_WAIT):
            LOG.warning("the live verdict of study %s is late (over %g s); handing it over anyway", study_uid,
                        config.LIVE_HANDOVER_WAIT)

    def _mpps_message(self, uid: str, step: Dataset) -> None:
        from protocolcheck.jobs.live import MppsMessage

        self.monitor.mpps(MppsMessage.from_dataset(uid, step))

    # -- start, recover, stop -------------------------------------------------------------------
    def start(self, store: InstanceStore) -> None:
        """Replay what an earlier run received (pending studies, open MPPS steps, see :meth:`_replay_mpps`),
        then start the parts.
        OSError when the MPPS folder cannot be used or the page's port cannot be bound."""
        if self.sender is not None:
            self.sender.prepare()  # before the replay below can make a final verdict
        else:
            _outbox_left(self.store_root)
        self.monitor.history = _earlier_files(store)
        pending = set(store.pending_studies())
        for study in sorted(pending):
            self._replay_instances(store, study)
        self._replay_mpps(store, pending)
        self.monitor.start()
        if self.notifier is not None:
            self.notifier.start()
        if self.sender is not None:
            self.sender.start()
        if self.web is not None:
            self.web.start()

    def _replay_instances(self, store: InstanceStore, study: str) -> None:
        for path in store.instances(study):
            self.monitor.instance(study, path.parent.name, path)

    def _replay_mpps(self, store: InstanceStore, pending: set[str]) -> None:
        """MPPS steps still in progress, or of a pending study; with --send-sr also the exams an MPPS ended
        within ``config.LIVE_REPLAY_ENDED`` (judged again: their report reaches the outbox even if a kill
        came between the N-SET and the report; one the PACS has already is not sent again)."""
        from protocolcheck.jobs.live import ExamState, MppsMessage

        window = config.LIVE_REPLAY_ENDED if self.sender is not None else -1.0
        for uid, step in self.mpps.load().items():
            message = MppsMessage.from_dataset(uid, step)
            age = self._mpps_age(uid)
            study = message.study_instance_uid
            ended = message.state in (ExamState.COMPLETED, ExamState.DISCONTINUED) and age <= window
            if ended and study and study not in pending:
                try:
                    self._replay_instances(store, study)
                except ValueError as exc:  # a Study Instance UID unusable as a folder name
                    LOG.warning("MPPS %s: %s", uid, exc)
            if message.state is ExamState.IN_PROGRESS or study in pending or ended:
                self.monitor.mpps(message, age=age)

    def _mpps_age(self, uid: str) -> float:
        """Seconds since the last stored message of MPPS step ``uid`` (0 when unknown)."""
        times = [p.stat().st_mtime for p in self.mpps.root.glob(f"{uid}_*.dcm")]
        return max(0.0, time.time() - max(times)) if times else 0.0

    def describe(self) -> str:
        parts = [f"series judged after {self.opts['series_idle']:g} s without new instances", "MPPS accepted",
                 f"an exam ends after {self.opts['exam_timeout']:g} s without instances or MPPS messages"]
        if self.web is not None:
            host, port = self.web.address
            parts.append(f"live page on http://{host}:{port}/")
        if self.notifier is not None:
            parts.append(f"alerts to {self.opts['notify_url']}")
        if self.sender is not None:
            parts.append(f"reports to {self.sender.peer}")
        if self.opts.get("worklist"):
            parts.append(f"worklist {self.opts['worklist_aet']}@{self.opts['worklist'][0]}:{self.opts['worklist'][1]}")
        return "; ".join(parts)

    def stop(self) -> None:
        """After the SCP stopped: let the monitor judge what is left, then stop the rest."""
        self.monitor.wait_idle(10.0)
        self.monitor.stop()
        if self.sender is not None:
            self.sender.stop()
            c = self.sender.counters
            LOG.info("reports to %s: %d stored, %d refused for good (in %s), %d not queued (outbox full or "
                     "unwritable)", self.sender.peer, c.sent, c.refused, self.sender.outbox.failed_folder,
                     c.full + c.unwritten)
        if self.notifier is not None:
            self.notifier.stop()
        if self.web is not None:
            self.web.stop()

    # -- the report back to the PACS ------------------------------------------------------------
    def _send_sr(self, view: ExamView) -> None:
        """Queue the report of a final verdict: not when the last report of the study said the same (an
        exam idle, then completed by MPPS); a new version naming that one when it differs."""
        from protocolcheck.jobs.live import ExamState
        from protocolcheck.report.sr import build_audit_sr, content_digest

        if view.state is ExamState.IN_PROGRESS or not view.status or self.sender is None:
            return
        key = (view.study_instance_uid, content_digest(view))
        if key in self._sr_sent:
            return
        label = f"audit report of accession {view.accession_number or view.study_instance_uid}"
        previous = self._last_report(view.study_instance_uid)
        if previous is not None and self._reported_already(view, previous, label):
            self._sr_sent.add(key)
            return
        if previous is not None and self.sender.outbox.known(previous.sop_instance_uid) == "refused":
            previous = None  # the PACS never took it: a new version would name a report it does not have
        try:  # built here (tens of ms) so that it is in the outbox, fsynced, before the next event is judged
            ds = build_audit_sr(view, self.store_root / view.study_instance_uid, previous=previous)
        except Exception:  # a report that cannot be built must not stop judging
            LOG.exception("cannot build the %s", label)
            return
        if previous is not None:
            label += f" (version {ds.InstanceNumber}, supersedes {previous.sop_instance_uid})"
        known = self.sender.outbox.known(str(ds.SOPInstanceUID))
        if known == "refused":
            LOG.warning("not sending the %s again: %s refused it for good before", label, self.sender.peer)
            return
        if known == "sent":
            LOG.info("the %s is in %s already (sent by an earlier run)", label, self.sender.peer)
        elif not self.sender.put(ds, label):
            return
        self._sr_sent.add(key)
        self._remember(view, ds)

    def _reported_already(self, view: ExamView, previous: ReportVersion, label: str) -> bool:
        """Whether the study's last report says what ``view`` says (logged: no new version)."""
        from protocolcheck.report.sr import report_digest

        assert self.sender is not None
        if previous.digest != report_digest(view):
            return False
        if self.sender.outbox.known(previous.sop_instance_uid) == "refused":
            LOG.warning("not sending the %s: %s refused the same verdict for good before", label, self.sender.peer)
        else:
            LOG.info("the %s (%s, ended by %s): the same verdict as the report of %s (Instance Number %d, %s); "
                     "no new version stored", label, view.state.value, view.ended_by.value if view.ended_by else "-",
                     previous.when, previous.instance_number, previous.sop_instance_uid)
        return True

    def _last_report(self, study_uid: str) -> ReportVersion | None:
        """What the last report queued for the study was (kept in the outbox across restarts)."""
        from protocolcheck.report.sr import ReportVersion

        assert self.sender is not None
        record = self.sender.outbox.last_report(study_uid)
        if record is None:
            return None
        try:
            return ReportVersion.from_dict(record)
        except (KeyError, TypeError, ValueError) as exc:
            LOG.warning("what was reported for study %s cannot be read (%s); a new report will not name it", study_uid,
                        exc)
            return None

    def _remember(self, view: ExamView, ds: Dataset) -> None:
        """Record the report just queued as the study's last (after it is in the outbox: a kill in between
        makes the same report again at the restart, which the outbox knows)."""
        from protocolcheck.report.sr import ReportVersion

        assert self.sender is not None
        try:
            self.sender.outbox.record_report(view.study_instance_uid, ReportVersion.of(view, ds).to_dict())
        except (OSError, ValueError) as exc:
            LOG.error("cannot record the report of study %s in %s (%s): the next verdict of the study will be "
                      "stored as a report of its own", view.study_instance_uid, self.sender.outbox.reported_folder,
                      exc)


def _earlier_files(store: InstanceStore) -> Callable[[str], list[Path]]:
    """The files a study has in the store (the monitor's ``history``: an exam it does not know yet starts
    from what an earlier run, or an exam it forgot, received)."""
    def files(study_uid: str) -> list[Path]:
        return list(store.instances(study_uid))

    return files


def _outbox_left(store_root: Path) -> None:
    """Warn when reports of an earlier run with --send-sr wait in the outbox (they wait for --send-sr)."""
    from protocolcheck.net.outbox import OUTBOX_FOLDER

    waiting = sum(1 for _ in (store_root / OUTBOX_FOLDER).glob("*.dcm"))
    if waiting:
        LOG.warning("%d reports in %s wait for --send-sr (not sent without it)", waiting, store_root / OUTBOX_FOLDER)


def _log_view(view: ExamView) -> None:
    """One log line per new verdict (stderr)."""
    problems = ", ".join(f"{f['live']} {f.get('requirement') or f['code']}" for f in view.findings
                         if f["live"] != "note") or "nothing missing or wrong"
    LOG.info("exam %s at %s: %s, %s (%s), %d series: %s", view.accession_number or view.study_instance_uid,
             view.station or view.station_aet or "?", view.state.value,
             "provisional" if view.provisional else "final", view.verdict, view.series_received, problems)
