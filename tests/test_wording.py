"""Clinical wording: every message, caution, rationale and problem the clinical core writes reads as a
radiologist would write it — no internal words (seed, option names, protocol ids or procedure keys as
prose, unfilled placeholders), whole sentences, and sources cited by title and year.

The texts are generated, not listed: every template of rules.yaml is rendered through recommend and
check-order over a grid of scenarios and orders, so a new template is checked without editing this test.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from collections.abc import Iterator

import pytest

from protocolcheck.clinical.context import ClinicalContext
from protocolcheck.clinical.recommend import ScenarioError, check_order, recommend
from protocolcheck.clinical.rules import load_rules

TODAY = dt.date(2026, 3, 1)
DAY = dt.timedelta(days=1)
INDICATIONS = ("lumbosacral plexopathy G54.1", "piriformis syndrome G57.01", "S34.4XXA plexus injury",
               "L5 radiculopathy M54.16", "lumbosacral plexopathy, known prostate cancer", "diabetic amyotrophy E11.44",
               "plexopathy after fall; pacemaker", "G54.1, MR-conditional pacemaker", "G54.1 gadolinium allergy",
               "G54.1, 20 weeks pregnant", "G54.1 iodine contrast allergy", "G54.1 no pacemaker",
               "left lumbosacral plexopathy G54.1")
FACTS = ({}, {"mri_contraindicated": True}, {"gadolinium_contraindicated": True}, {"egfr": 22.0},
         {"mri_contraindicated": True, "iodinated_contrast_contraindicated": True}, {"dermatomal": True},
         {"trauma_date": TODAY - 10 * DAY}, {"trauma_date": TODAY - 200 * DAY})
ORDERS = ("MRI lumbosacral plexus without and with contrast", "MRI lumbosacral plexus without contrast",
          "MRI LS plexus", "MRI pelvis w/o", "MRI pelvis with contrast", "CT abdomen pelvis with contrast",
          "CT abd/pelvis without contrast", "XR pelvis", "MRA pelvis", "pelvis", "IRM du plexus lombo-sacré",
          "PET/CT skull base to mid-thigh", "MRI lumbar spine without contrast",
          "MRI right lumbosacral plexus w/wo")

BANNED = [
    (r"\bseed\b", "the word 'seed'"), (r"(?<![\w-])--[a-z]", "an option name"), (r"\bre-run\b", "'re-run'"),
    (r"understood as", "'understood as'"), (r"\bis may\b", "'is may'"), (r"[{}]", "a placeholder"),
    (r"\bNone\b", "'None'"), (r"\s{2,}", "double spaces"), (r"\s[.,;:]", "space before punctuation"),
    (r"(?<!\.)\.\.(?!\.)", "'..'"), (r"\b(\w+) \1\b", "a doubled word"),
    (r"\ba (MRI|[aeiou]\w)", "'a' before a vowel sound"),
    (r"\(\s|\s\)", "space inside parentheses"),
]


def _texts() -> Iterator[tuple[str, str]]:
    rules = load_rules()
    ids = {p for p in rules.protocol_ids()} | set(rules.procedures)
    yield "ids", " ".join(sorted(ids))
    for indication, facts in itertools.product(INDICATIONS, FACTS):
        context = ClinicalContext(indication=indication, source="the request", **facts)
        try:
            rec = recommend(context, on=TODAY, rules=rules, today=TODAY)
        except ScenarioError as exc:
            for problem in exc.problems:
                yield "problem", problem
            continue
        for s in rec.companion + rec.follow_up + rec.cautions:
            yield "statement", s.text
        for r in rec.recommendations:
            yield "rationale", r.rationale
        for e in rec.excluded:
            yield "exclusion", e.reason
        yield "timing", rec.timing.text
        for note in rec.scenario.notes:
            yield "note", note
        for text in ORDERS:
            for f in check_order(text, context, scheduled=TODAY, rules=rules, today=TODAY).findings:
                yield f"finding {f.code.value}", f.render(guideline=False)
                for quote in f.guideline:
                    yield "cited", quote.source


TEXTS = list(_texts())
IDS = set(TEXTS[0][1].split())


def _sentences(text: str) -> list[str]:
    # quoted order texts and source titles may hold anything; judge the prose around them
    prose = re.sub(r"\u201c[^\u201d]*\u201d|\(Source: .*?\.\)(?=\s|$)", "X", text)
    prose = re.sub(r"\b(e\.g|i\.e|et al|vs)\.", r"\1", prose)  # abbreviations end no sentence
    return [s for s in re.split(r"(?<=[.!?])\s+", prose) if s]


@pytest.mark.parametrize("pattern, what", BANNED)
def test_no_internal_words_or_slips(pattern: str, what: str) -> None:
    bad = [(kind, text) for kind, text in TEXTS[1:]
           if kind != "cited" and re.search(pattern, re.sub(r"\u201c[^\u201d]*\u201d", "X", text))]
    assert not bad, f"{what} in {len(bad)} texts, e.g. {bad[:3]}"


def test_no_protocol_ids_or_procedure_keys_as_prose() -> None:
    bad = [(kind, text) for kind, text in TEXTS[1:] for token in re.findall(r"[a-z0-9]+(?:-[a-z0-9]+)+", text)
           if token in IDS]
    assert not bad, bad[:3]


def test_messages_are_whole_sentences() -> None:
    for kind, text in TEXTS[1:]:
        if kind in ("problem", "exclusion", "note", "cited"):  # clauses shown after "error: ", "excluded: ", "note: "
            continue
        assert text.rstrip()[-1] in ".)", (kind, text)
        for sentence in _sentences(text):
            first = sentence[0].isupper() or sentence[0].isdigit() or sentence[0] in "X(" or sentence.startswith("eGFR")
            assert first, (kind, sentence, text)


def test_sources_are_cited_as_a_radiologist_cites_them() -> None:
    rules = load_rules()
    for sid, source in rules.sources.items():
        assert "seed" not in source.title.lower() and "rules.yaml" not in source.title, sid
        assert re.search(r"\b(19|20)\d\d\b", source.title) or source.origin == "site", (sid, source.title)
        if source.origin == "acr" and "Appropriateness Criteria" in source.title:
            assert re.search(r"Appropriateness Criteria [A-Z][\w ]+", source.title), source.title
    cited = {text for kind, text in TEXTS if kind == "cited"}  # the sources check-order findings quote
    assert cited and all(re.search(r"^[A-Z].*\b(19|20)\d\d\b", t) or t.startswith("Site policy") for t in cited), cited


def test_every_template_was_rendered() -> None:
    """The grid reaches every caution, companion and follow-up template and every exclusion of rules.yaml."""
    rules = load_rules()
    rendered = {text for kind, text in TEXTS if kind == "statement"}
    for section in (rules.cautions, rules.companion, rules.follow_up):
        for template in section:
            head = template.text.split("{")[0][:40]
            assert any(t.startswith(head) for t in rendered), template.text
    reasons = {text for kind, text in TEXTS if kind == "exclusion"}
    for exclusion in rules.exclusions:
        head = exclusion.reason.split("{")[0][:20]
        assert any(r.startswith(head) for r in reasons), exclusion.reason
