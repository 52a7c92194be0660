"""The finding record: facts in fields, the message rendered from them, JSON both ways, deviations."""

from __future__ import annotations

from protocolcheck.clinical.findings import Considered, Deviation, Finding, FindingCode, Quote, Severity

NEAR = Considered("1.2.5", "#5 'COR STIR'", "oblique coronal T2 FLAIR 2D",
                  ("inversion FLAIR, TI 2500 ms (needs STIR)",), None, 5)
MISSING = Finding(FindingCode.MISSING_SEQUENCE, Severity.ERROR, "Required series missing: STIR",
                  requirement="fluid-fat-suppressed", requirement_name="Fluid-sensitive fat-suppressed",
                  expected="STIR or fat-saturated T2, acquired before contrast", found=(NEAR,),
                  action="Add an oblique coronal STIR (or fat-saturated T2) before contrast",
                  citations=("plexus-sequences",), guideline=(Quote("plexus-sequences", "Use STIR", "A summary"),))


def test_the_message_is_rendered_from_the_fields() -> None:
    assert MISSING.message == (
        "Required series missing: STIR. Expected: STIR or fat-saturated T2, acquired before contrast. "
        "Found: #5 'COR STIR' (oblique coronal T2 FLAIR 2D): inversion FLAIR, TI 2500 ms (needs STIR). "
        "Action: Add an oblique coronal STIR (or fat-saturated T2) before contrast. "
        "Guideline: \u201cUse STIR\u201d (A summary)")
    assert MISSING.render(action=False, guideline=False).endswith("(needs STIR).")


def test_json_carries_every_field_and_reads_back() -> None:
    data = MISSING.to_dict()
    assert data["found"][0] == {"series": "1.2.5", "stack": None, "series_number": 5, "name": "#5 'COR STIR'",
                                "classified": "oblique coronal T2 FLAIR 2D",
                                "why": ["inversion FLAIR, TI 2500 ms (needs STIR)"]}
    assert data["action"] == MISSING.action and data["message"] == MISSING.message
    assert Finding.from_dict(data) == MISSING


def test_a_record_from_before_findings_were_structured_keeps_its_message() -> None:
    old = {"code": "missing-sequence", "severity": "error", "requirement": "t1", "series": [],
           "message": "Missing T1. Guideline: \u201cx\u201d (y)", "citations": ["c"], "evidence": {}}
    finding = Finding.from_dict(old)
    assert finding.message == old["message"] and finding.action == ""
    unknown = Finding.from_dict({**old, "code": "from-the-future"})
    assert unknown.code is FindingCode.VALUE_PROBLEM and unknown.evidence["code"] == "from-the-future"


def test_a_deviation_keeps_the_finding_as_info_with_its_reason() -> None:
    deviation = Deviation.parse("  suspected hematoma,   imaging needed now ")
    assert deviation == Deviation("suspected hematoma, imaging needed now")
    kept = deviation.apply([MISSING])
    assert len(kept) == 1 and kept[0].severity is Severity.INFO and kept[0].deviated_from is Severity.ERROR
    assert "Deviation recorded: suspected hematoma, imaging needed now." in kept[0].message
    assert Finding.from_dict(kept[0].to_dict()) == kept[0]


def test_a_deviation_can_name_what_it_covers() -> None:
    only_timing = Deviation.parse("trauma-too-early: suspected hematoma")
    assert only_timing == Deviation("suspected hematoma", ("trauma-too-early",))
    assert only_timing.apply([MISSING]) == [MISSING]
    by_requirement = Deviation.parse("fluid-fat-suppressed: patient could not lie still", ["fluid-fat-suppressed"])
    assert by_requirement is not None and by_requirement.apply([MISSING])[0].severity is Severity.INFO
    assert Deviation.parse("note: not a code list") == Deviation("note: not a code list")
    assert Deviation.parse("   ") is None


def test_safety_and_file_findings_are_kept_as_they_are_unless_named() -> None:
    contrast = Finding(FindingCode.CONTRAST_CONTRAINDICATED, Severity.ERROR, "Gadolinium was given")
    unreadable = Finding(FindingCode.UNREADABLE_FILE, Severity.ERROR, "File x could not be read")
    assert Deviation.parse("urgent").apply([contrast, unreadable]) == [contrast, unreadable]
    named = Deviation.parse("contrast-despite-contraindication: contrast essential")
    assert named is not None and named.apply([contrast])[0].severity is Severity.INFO
