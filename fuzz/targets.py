"""Fuzz targets: how an input is generated from the seeds, and the contract each run must keep.

A target raises :class:`Violation` when the code under test returned but broke its contract (a file
not named, a non-finite number in a record, the lean reader disagreeing with pydicom, JSON that is not
JSON); any other exception escaping :meth:`Target.execute` is a crash. Both are findings.

Targets:
  headers   one mutated DICOM file -> headers.scan_file, fastheaders.read_fast and read_file_pydicom
  classify  a study folder with 1-3 mutated files (sometimes the same edit on a whole series) ->
            scan -> group_studies -> classify_study -> audit pipeline -> table/CSV/JSON/JUnit renderers
            (and now and then the real ``classify``/``audit`` commands through click's CliRunner)
  library   one mutated protocol YAML in a copy of the shipped library -> load_library / lint; a library
            that loads must audit sample studies without error
  rules     a mutated recommender rules.yaml -> load_rules, recommend, check_order, and an audit
  context   a mutated clinical-context CSV -> load_context_csv; a table that loads must audit studies
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import seeds as seedlib
from .dicom_mutators import mutate
from .text_mutators import CSV_MUTATORS, YAML_MUTATORS, mutate_text

REPO = Path(__file__).resolve().parent.parent


class Violation(AssertionError):
    """The code returned, but broke its contract; ``kind`` groups findings (e.g. "divergence")."""

    def __init__(self, kind: str, message: str, key: str = "") -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.key = key  # groups findings of one kind (e.g. the field that differs); default: the message


def check_problems(exc: Exception, what: str) -> None:
    """Violation unless the refusal ``exc`` lists its problems, each a non-empty text (the error contract)."""
    problems = getattr(exc, "problems", None)
    if not problems or not all(isinstance(p, str) and p for p in problems):
        raise Violation("contract", f"{what} without problems") from exc


@dataclass
class Case:
    """One generated input: files to write (relative name -> bytes) and how it was made."""

    files: dict[str, bytes]
    seed_name: str
    mutators: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------ checks


_NUMBER_FIELDS = ("field_strength", "repetition_time", "echo_time", "inversion_time", "flip_angle",
                  "echo_train_length", "slice_thickness", "spacing_between_slices", "diffusion_b_value", "kvp")
_VECTOR_FIELDS = (("image_orientation", 6), ("image_position", 3), ("pixel_spacing", 2))


def check_records(records: Sequence[Any], path: str) -> None:
    """The :func:`headers.scan_file` contract: typed records naming the file, clean values."""
    from protocolcheck.dicom.records import InstanceHeader, Skipped, Unreadable

    if not isinstance(records, list) or not records:
        raise Violation("contract", f"scan_file returned {type(records).__name__} {records!r:.80}")
    for record in records:
        if not isinstance(record, (InstanceHeader, Unreadable, Skipped)):
            raise Violation("contract", f"scan_file yielded a {type(record).__name__}")
        if record.path != path:
            raise Violation("contract", f"record names {record.path!r}, not the file read")
        if isinstance(record, (Unreadable, Skipped)):
            if not isinstance(record.reason, str) or not record.reason.strip():
                raise Violation("contract", "unreadable/skipped record without a reason")
            if "MemoryError" in record.reason or "RecursionError" in record.reason:
                raise Violation("bounds", f"reader hit a resource limit: {record.reason[:200]}")
            continue
        check_header(record)


def check_header(h: Any) -> None:
    for name in _NUMBER_FIELDS:
        value = getattr(h, name)
        if value is not None and (not isinstance(value, float) or not math.isfinite(value)):
            raise Violation("contract", f"{name} = {value!r} (must be a finite float or None)")
    for name, size in _VECTOR_FIELDS:
        value = getattr(h, name)
        finite = value is not None and all(isinstance(v, float) and math.isfinite(v) for v in value)
        if value is not None and (len(value) != size or not finite):
            raise Violation("contract", f"{name} = {value!r:.120} (must be {size} finite floats or None)")
    for name in ("study_instance_uid", "series_instance_uid"):
        if not isinstance(getattr(h, name), str) or not getattr(h, name):
            raise Violation("contract", f"header record without {name}")
    if not isinstance(h.frames, int):
        raise Violation("contract", f"frames = {h.frames!r}")


def check_private(texts: Sequence[str], names: Iterable[str], where: str) -> None:
    """No patient name may appear in ``texts`` (outputs and messages shown without --include-patient)."""
    for name in names:
        for text in texts:
            if name in text:
                raise Violation("privacy", f"patient name {name!r} appears in {where}", key=where)


def patient_names(headers: Sequence[Any]) -> set[str]:
    """Patient names worth looking for: long enough, and not also the value of a non-patient field."""
    names = {h.patient_name for h in headers if len(h.patient_name) >= 5}
    other = {getattr(h, f) for h in headers for f in ("series_description", "study_description", "protocol_name",
                                                      "institution", "station_name", "accession_number", "manufacturer",
                                                      "requested_procedure_description", "sequence_name", "model")}
    return {n for n in names if not any(n in o for o in other if isinstance(o, str))}


def strict_json(data: Any) -> str:
    """JSON as the CLI writes it, but NaN/Infinity (not JSON) are a violation."""
    from protocolcheck.clinical.findings import json_default

    try:
        return json.dumps(data, default=json_default, ensure_ascii=False, allow_nan=False)
    except ValueError as exc:
        raise Violation("json", f"output is not valid JSON: {exc}") from exc


def _differential(path: str) -> None:
    """The lean reader must never raise, and whatever it reads, pydicom must read the same way."""
    from protocolcheck.dicom import lean as fastheaders
    from protocolcheck.dicom.reader import read_file_pydicom

    try:
        fast = fastheaders.read_fast(path)
    except Exception as exc:  # the contract is "returns None for anything unusual"
        raise Violation("fast-raised", f"read_fast raised {type(exc).__name__}: {exc}") from exc
    if fast is None:
        return
    try:
        reference: Any = read_file_pydicom(path)
    except ValueError as exc:
        raise Violation("divergence", f"read_fast read a file pydicom rejects ({exc})", key="pydicom-rejects") from exc
    if type(fast) is not type(reference):
        raise Violation("divergence", f"read_fast gives {type(fast).__name__}, pydicom {type(reference).__name__}")
    if isinstance(fast, list) and isinstance(reference, list):
        if len(fast) != len(reference):
            raise Violation("divergence", f"{len(fast)} records from read_fast, {len(reference)} from pydicom")
        for a, b in zip(fast, reference, strict=True):
            for f in dataclasses.fields(a):
                va, vb = getattr(a, f.name), getattr(b, f.name)
                if va != vb:
                    raise Violation("divergence", f"field {f.name}: read_fast {va!r:.80} != pydicom {vb!r:.80}",
                                    key=f.name)


# ------------------------------------------------------------------------------------ targets


class Target:
    """Base: ``generate`` makes a :class:`Case` from a seeded RNG; ``execute`` runs it in ``workdir``."""

    name = ""
    slow = 1.0  # seconds: an input slower than this is recorded as a finding

    def __init__(self, corpus: seedlib.Corpus) -> None:
        self.corpus = corpus

    def generate(self, rng: random.Random) -> Case:
        raise NotImplementedError

    def execute(self, case: Case, workdir: Path) -> None:
        raise NotImplementedError

    @staticmethod
    def write(case: Case, workdir: Path) -> Path:
        """Write the case's files under ``workdir/case`` (fresh each time) and return that folder."""
        folder = workdir / "case"
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        for name, data in case.files.items():
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        return folder


class HeadersTarget(Target):
    name = "headers"

    def generate(self, rng: random.Random) -> Case:
        name, data = rng.choice(self.corpus.dicom_files)
        donors = [d for _n, d in rng.sample(self.corpus.dicom_files, min(3, len(self.corpus.dicom_files)))]
        mutated, used = mutate(rng, data, donors)
        return Case({"input.dcm": mutated}, name, used)

    def execute(self, case: Case, workdir: Path) -> None:
        from protocolcheck.dicom.scan import scan_file

        folder = self.write(case, workdir)
        for name in case.files:
            path = str(folder / name)
            records = scan_file(path)
            check_records(records, path)
            messages = [getattr(r, "reason", "") for r in records] + [p for r in records
                                                                       for p in getattr(r, "value_problems", ())]
            check_private(messages, self.corpus.patient_names, "unreadable reasons / value problems")
            _differential(path)


class ClassifyTarget(Target):
    """Study folders with some files mutated, through classification, audit and every renderer."""

    name = "classify"
    slow = 5.0
    cli_every = 25

    def __init__(self, corpus: seedlib.Corpus) -> None:
        super().__init__(corpus)
        self.count = 0
        self._library: Any = None

    @property
    def library(self) -> Any:
        if self._library is None:
            from protocolcheck.clinical.library import load_library

            self._library = load_library(None)
        return self._library

    def generate(self, rng: random.Random) -> Case:
        study_name, files = rng.choice(self.corpus.studies)
        names = sorted(files)
        out = dict(files)
        donors = [d for _n, d in rng.sample(self.corpus.dicom_files, min(3, len(self.corpus.dicom_files)))]
        used: list[str] = []
        if rng.random() < 0.3:  # the same edit on every file of one series
            prefix = rng.choice(names).split("_")[0]
            edit_seed = rng.randrange(1 << 30)
            for name in names:
                if name.startswith(prefix):
                    out[name], used = mutate(random.Random(edit_seed), files[name], donors)
        else:
            for name in rng.sample(names, min(len(names), rng.choice((1, 1, 2, 3)))):
                out[name], u = mutate(rng, files[name], donors)
                used += u
        if rng.random() < 0.1:  # a stray non-DICOM or empty file in the folder
            content = rng.choice((b"", b"hello", b"\x00" * 200))  # drawn first, as before: same cases per seed
            out[rng.choice(("notes.txt", "empty.dcm", "DICOMDIR", "x.csv"))] = content
        return Case(out, study_name, used)

    def execute(self, case: Case, workdir: Path) -> None:
        from protocolcheck.audit.engine import AuditOptions, audit_records
        from protocolcheck.classify import classify_study
        from protocolcheck.dicom.records import InstanceHeader, Unreadable
        from protocolcheck.dicom.scan import scan
        from protocolcheck.dicom.study import group_studies
        from protocolcheck.report import text as render
        from protocolcheck.report.tabular import to_json

        folder = self.write(case, workdir)
        records = list(scan([folder]))
        headers = [r for r in records if isinstance(r, InstanceHeader)]
        bad = [r for r in records if isinstance(r, Unreadable)]
        for record in records:
            check_records([record], record.path)
        classified = [c.to_dict() for study in group_studies(headers) for c in classify_study(study)]
        names = patient_names(headers)
        check_private([strict_json(classified)], names, "classify output")
        to_json(classified)
        check_private([render.classify_table(classified)], names, "classify table")
        render.classify_csv(classified)
        series = {(h.study_instance_uid, h.series_instance_uid) for h in headers}
        got = {(c["study_instance_uid"], c["series_instance_uid"]) for c in classified}
        if series != got:
            raise Violation("contract", f"classify lost series: {sorted(series - got)[:3]}")
        # half the time with a trauma context, so the timing rules meet the mutated dates
        default = _CONTEXTS[1] if self.count % 2 else None
        results = list(audit_records(records, AuditOptions(library=self.library, default_context=default)))
        dicts = [r.to_dict() for r in results]
        check_private([strict_json(dicts), render.audit_table(dicts), render.audit_csv(dicts),
                       render.audit_junit(dicts),
                       *(u.reason for u in bad)], names, "audit output")
        studies = {h.study_instance_uid for h in headers}
        audited = {r.study_instance_uid for r in results if r.study_instance_uid}
        if studies != audited:
            raise Violation("contract", f"studies not audited: {sorted(studies - audited)[:3]}")
        named = json.dumps([f for d in dicts for f in d["findings"]])
        for item in bad:
            if json.dumps(item.path)[1:-1] not in named:
                raise Violation("contract", f"unreadable file {item.path} is named in no finding")
        self.count += 1
        if self.count % self.cli_every == 0:
            self.run_cli(folder, bad, names)

    @staticmethod
    def run_cli(folder: Path, bad: Sequence[Any], names: Iterable[str] = ()) -> None:
        """The real commands, as a user runs them: exit codes 0-2, no traceback, bad files named."""
        from click.testing import CliRunner

        from protocolcheck.cli import main

        store = folder.parent / "results.db"  # never the user's store; fresh, so no study is skipped as unchanged
        for args in (["classify", str(folder), "--format", "json"], ["classify", str(folder), "--format", "table"],
                     ["audit", str(folder), "--format", "json"], ["audit", str(folder), "--format", "table"],
                     ["audit", str(folder), "--format", "csv"]):
            for leftover in folder.parent.glob("results.db*"):
                leftover.unlink()
            result = CliRunner(env={"PROTOCOLCHECK_DB": str(store)}).invoke(main, args)
            if result.exception is not None and not isinstance(result.exception, SystemExit):
                raise result.exception
            if result.exit_code not in (0, 1, 2):
                raise Violation("cli", f"{' '.join(args[:1])} exit code {result.exit_code}")
            text = result.output + (result.stderr if result.stderr_bytes is not None else "")
            if "Traceback" in text:
                raise Violation("cli", f"traceback printed by {args[0]}")
            check_private([text], names, f"{args[0]} command output")
            for item in bad:
                if item.path not in text and json.dumps(item.path)[1:-1] not in text and args[0] == "audit" \
                        and args[-1] == "json":
                    raise Violation("cli", f"{args[0]} does not name the unreadable file {item.path}")


def _sample_records(corpus: seedlib.Corpus, workdir: Path, count: int = 3) -> list[Any]:
    """Header records of a few sample studies (read once), to audit against a fuzzed library/context."""
    from protocolcheck.dicom.scan import scan

    folder = workdir / "samples"
    if not folder.exists():
        for name, files in corpus.studies[:count]:
            for file, data in files.items():
                (folder / name).mkdir(parents=True, exist_ok=True)
                (folder / name / file).write_bytes(data)
    return list(scan([folder]))


class LibraryTarget(Target):
    """One protocol file mutated inside a copy of the shipped library."""

    name = "library"
    slow = 5.0

    def __init__(self, corpus: seedlib.Corpus) -> None:
        super().__init__(corpus)
        self._records: list[Any] | None = None

    def generate(self, rng: random.Random) -> Case:
        name, data = rng.choice(self.corpus.protocols)
        mutated, used = mutate_text(rng, data, [d for _n, d in self.corpus.protocols], YAML_MUTATORS)
        files = {n: d for n, d in self.corpus.protocols}
        files[name] = mutated
        files["rules.yaml"] = self.corpus.rules
        return Case(files, name, used, {"mutated": name})

    def execute(self, case: Case, workdir: Path) -> None:
        from protocolcheck.clinical.library import LibraryError, lint, load_library

        folder = self.write(case, workdir)
        mutated = folder / case.extra.get("mutated", next(iter(case.files)))
        results = lint([mutated])
        for result in results:
            for problem in getattr(result, "problems", ()):
                if not isinstance(problem, str):
                    raise Violation("contract", f"lint problem is a {type(problem).__name__}")
        try:
            library = load_library(folder)
        except LibraryError as exc:
            check_problems(exc, "LibraryError")
            return
        self.audit_with(library, workdir)

    def audit_with(self, library: Any, workdir: Path, contexts: Any = None) -> None:
        from protocolcheck.audit.engine import AuditOptions, audit_records
        from protocolcheck.clinical.context import ClinicalContext
        from protocolcheck.report import text as render

        if self._records is None:
            self._records = _sample_records(self.corpus, workdir)
        for p in library:
            strict_json(p.to_dict())
            render.protocol_text(p)
        default = ClinicalContext(indication="lumbosacral plexopathy G54.1", source="fuzz")
        for protocol_id in [None] + [p.id for p in library][:2]:
            options = AuditOptions(library=library, protocol_id=protocol_id, contexts=contexts, default_context=default)
            dicts = [r.to_dict() for r in audit_records(self._records, options)]
            strict_json(dicts)
            render.audit_table(dicts)


class RulesTarget(LibraryTarget):
    """The recommender's rules.yaml mutated: loader, recommend, check-order, and audit with it."""

    name = "rules"

    def generate(self, rng: random.Random) -> Case:
        mutated, used = mutate_text(rng, self.corpus.rules, [d for _n, d in self.corpus.protocols], YAML_MUTATORS)
        files = {n: d for n, d in self.corpus.protocols}
        files["rules.yaml"] = mutated
        return Case(files, "rules.yaml", used)

    def execute(self, case: Case, workdir: Path) -> None:
        import datetime as dt

        from protocolcheck.clinical.library import load_library
        from protocolcheck.clinical.recommend import RulesError, ScenarioError, check_order, load_rules, recommend
        from protocolcheck.report.text import format_order_check, format_recommendation

        folder = self.write(case, workdir)
        try:
            rules = load_rules(folder / "rules.yaml")
        except RulesError as exc:
            check_problems(exc, "RulesError")
            rules = None
        if rules is not None:
            today = dt.date(2026, 3, 1)
            for context in _CONTEXTS:
                try:
                    rec = recommend(context, dt.date(2026, 3, 1), rules, today=today)
                    format_recommendation(rec)
                    strict_json(rec.to_dict())
                except ScenarioError as exc:
                    if not exc.problems:
                        raise Violation("contract", "ScenarioError without problems") from exc
                check = check_order("MRI lumbosacral plexus without and with contrast", context,
                                    scheduled=dt.date(2026, 3, 2), rules=rules, today=today)
                format_order_check(check)
                strict_json(check.to_dict(rules))
            # as the CLI: audit only with rules that load (bad rules are exit 2 before any audit)
            self.audit_with(load_library(folder), workdir)


class ContextTarget(LibraryTarget):
    """A mutated clinical-context CSV: loader, then an audit of sample studies with it."""

    name = "context"

    def generate(self, rng: random.Random) -> Case:
        name, data = rng.choice(self.corpus.contexts)
        mutated, used = mutate_text(rng, data, [d for _n, d in self.corpus.contexts], CSV_MUTATORS)
        return Case({"context.csv": mutated}, name, used)

    def execute(self, case: Case, workdir: Path) -> None:
        from protocolcheck.clinical.context import ContextError, load_context_csv
        from protocolcheck.clinical.library import load_library

        folder = self.write(case, workdir)
        try:
            table = load_context_csv(folder / "context.csv")
        except ContextError as exc:
            check_problems(exc, "ContextError")
            return
        if getattr(self, "_shipped", None) is None:
            self._shipped = load_library(None)
        self.audit_with(self._shipped, workdir, contexts=table)


def _contexts() -> list[Any]:
    import datetime as dt

    from protocolcheck.clinical.context import ClinicalContext

    return [
        ClinicalContext(indication="lumbosacral plexopathy G54.1"),
        ClinicalContext(indication="S34.4XXA plexus injury", trauma_date=dt.date(2026, 2, 20)),
        ClinicalContext(indication="piriformis G57.01", mri_contraindicated=True, gadolinium_contraindicated=True),
        ClinicalContext(indication="", dermatomal=True, egfr=15.0),
        ClinicalContext(indication="plexopathy", trauma_date=dt.date(2027, 1, 1),
                        iodinated_contrast_contraindicated=True),
    ]


_CONTEXTS: list[Any] = []

TARGETS: dict[str, type[Target]] = {t.name: t for t in (HeadersTarget, ClassifyTarget, LibraryTarget, RulesTarget,
                                                         ContextTarget)}


def make_target(name: str, corpus: seedlib.Corpus) -> Target:
    if not _CONTEXTS:
        _CONTEXTS.extend(_contexts())
    return TARGETS[name](corpus)


def replay_paths(target: str, paths: Iterable[Path]) -> Case:
    """A case from files on disk (a saved finding): one file, or a folder for ``classify``."""
    files: dict[str, bytes] = {}
    for path in paths:
        if path.is_dir():
            for sub in sorted(path.rglob("*")):
                if sub.is_file() and sub.name not in ("info.txt", "info.json"):
                    files[str(sub.relative_to(path))] = sub.read_bytes()
        else:
            files[path.name] = path.read_bytes()
    if target == "headers":
        files = {f"input{i}.dcm" if i else "input.dcm": d for i, d in enumerate(files.values())}
    elif target == "context":
        files = {"context.csv": next(iter(files.values()))}
    return Case(files, "replay")


