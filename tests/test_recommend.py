"""Recommender, order check and protocol selection against the shipped decision rules (protocols/rules.yaml)."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from protocolcheck.cli import main
from protocolcheck.clinical.context import ClinicalContext
from protocolcheck.clinical.findings import Status
from protocolcheck.clinical.recommend import (
    Appropriateness,
    RulesError,
    ScenarioError,
    TimingStatus,
    check_order,
    default_rules_path,
    evaluate,
    extract_icd10,
    load_rules,
    parse_order,
    recommend,
    select_protocol,
)

TODAY = dt.date(2026, 3, 1)
DAY = dt.timedelta(days=1)


@pytest.fixture(scope="module")
def rules():
    return load_rules()


def rec(rules, on=TODAY, **fields):
    return recommend(ClinicalContext(**fields), on=on, rules=rules, today=TODAY)


def problems(rules, **fields) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        rec(rules, **fields)
    return info.value


def order(rules, procedure, scheduled=TODAY, code="", **fields):
    return check_order(procedure, ClinicalContext(**fields), code, scheduled, rules=rules, today=TODAY)


def codes_of(check):
    return sorted((f.code.value, f.severity.value) for f in check.findings)


# --------------------------------------------------------------------------------------------------
# The judging vignettes


def test_nontraumatic_plexopathy_first_line_is_plexus_mri_with_and_without_contrast(rules):
    r = rec(rules, indication="lumbosacral plexopathy G54.1")
    assert r.variant.id == "nontraumatic"
    assert r.top.protocol == "mr-lumbosacral-plexus-wwo"
    assert r.top.appropriateness is Appropriateness.USUALLY
    by_key = {x.key: x for x in r.recommendations}
    assert by_key["mr-plexus-wo"].appropriateness is Appropriateness.USUALLY      # ACR 2021 Variant 2
    assert by_key["ct-ap-w"].appropriateness is Appropriateness.MAY_BE
    assert by_key["mr-plexus-w"].appropriateness is Appropriateness.NOT          # contrast-only MRI
    assert by_key["mr-pelvis-wo"].appropriateness is Appropriateness.NOT         # standard pelvis MRI
    assert r.earliest_date is None and r.timing.status is TimingStatus.NO_TRAUMA
    assert [x.rank for x in r.recommendations] == list(range(1, len(r.recommendations) + 1))
    orders = [x.appropriateness.order for x in r.recommendations]
    assert orders == sorted(orders)


def test_piriformis_syndrome_is_an_entrapment_scenario_with_plexus_mri(rules):
    for indication in ("piriformis syndrome", "G57.01", "sciatic nerve entrapment at the piriformis"):
        r = rec(rules, indication=indication)
        assert r.variant.id == "entrapment", indication
        assert r.top.protocol == "mr-lumbosacral-plexus-wwo"
    assert any("idiopathic" in c.text for c in r.cautions)


def test_trauma_ten_days_ago_is_too_early_and_earliest_date_is_28_days_after(rules):
    trauma = TODAY - 10 * DAY
    r = rec(rules, indication="S34.4XXA lumbosacral plexus injury", trauma_date=trauma)
    assert r.variant.id == "traumatic"
    assert r.top.protocol == "mr-lumbosacral-plexus-wwo"
    assert r.earliest_date == trauma + 28 * DAY
    assert r.timing.latest_date == trauma + 90 * DAY
    assert r.timing.status is TimingStatus.TOO_EARLY
    assert "seed-delay-after-trauma" in r.timing.citations
    check = order(rules, "MRI lumbosacral plexus without and with contrast", indication="S34.4XXA", trauma_date=trauma)
    assert codes_of(check) == [("trauma-too-early", "error")]
    assert check.status is Status.FAIL
    assert (trauma + 28 * DAY).isoformat() in check.findings[0].message


def test_trauma_sixty_days_ago_can_be_imaged_now(rules):
    trauma = TODAY - 60 * DAY
    r = rec(rules, indication="plexopathy after a pelvic fracture", trauma_date=trauma)
    assert r.variant.id == "traumatic"
    assert r.earliest_date == trauma + 28 * DAY
    assert r.timing.status is TimingStatus.IN_WINDOW
    check = order(rules, "MR LS plexus w/wo", indication="S34.4", trauma_date=trauma)
    assert check.findings == () and check.status is Status.PASS


def test_trauma_date_alone_makes_plexopathy_traumatic(rules):
    r = rec(rules, indication="G54.1", trauma_date=TODAY - 40 * DAY)
    assert r.variant.id == "traumatic"


def test_exactly_28_days_is_allowed_and_91_days_is_delayed(rules):
    assert order(rules, "MRI LS plexus w/wo", indication="S34.4", trauma_date=TODAY - 28 * DAY).findings == ()
    late = order(rules, "MRI LS plexus w/wo", indication="S34.4", trauma_date=TODAY - 91 * DAY)
    assert codes_of(late) == [("trauma-delayed", "warning")]
    assert late.status is Status.WARN
    assert rec(rules, indication="S34.4", trauma_date=TODAY - 91 * DAY).timing.status is TimingStatus.LATE


def test_trauma_named_without_a_date_asks_for_it(rules):
    r = rec(rules, indication="plexus injury after a fall from a ladder")
    assert r.variant.id == "traumatic"
    assert r.earliest_date is None and r.timing.status is TimingStatus.TRAUMA_DATE_MISSING
    check = order(rules, "MRI LS plexus w/wo", indication="plexus injury after a fall from a ladder")
    assert codes_of(check) == [("context-missing", "warning")]


def test_pacemaker_mri_contraindicated_gives_ct_with_contrast(rules):
    r = rec(rules, indication="lumbosacral plexopathy", mri_contraindicated=True)
    assert r.top.protocol == "ct-abdomen-pelvis-with-contrast"
    assert r.top.appropriateness is Appropriateness.MAY_BE
    assert all(x.modality != "MR" for x in r.recommendations)
    assert {e.key for e in r.excluded} >= {"mr-plexus-wwo", "mr-plexus-wo"}
    assert any("MR Conditional" in c.text for c in r.cautions)
    assert "seed-ct-when-mri-contraindicated" in r.top.citations
    bad = order(rules, "CT abdomen and pelvis without contrast", indication="G54.1", mri_contraindicated=True)
    assert codes_of(bad) == [("wrong-protocol", "error")]
    assert bad.recommended.protocol == "ct-abdomen-pelvis-with-contrast"
    mri = order(rules, "MRI lumbosacral plexus w/wo", indication="G54.1", mri_contraindicated=True)
    assert codes_of(mri) == [("wrong-protocol", "error")] and "contraindicated" in mri.findings[0].message


def test_gadolinium_allergy_gives_plexus_mri_without_contrast(rules):
    r = rec(rules, indication="G54.1", gadolinium_contraindicated=True)
    assert r.top.protocol == "mr-lumbosacral-plexus-wo"
    assert r.top.appropriateness is Appropriateness.USUALLY
    assert "mr-plexus-wwo" in {e.key for e in r.excluded}
    assert order(rules, "MRI LS plexus without contrast", indication="G54.1",
                 gadolinium_contraindicated=True).findings == ()
    wwo = order(rules, "MRI LS plexus with and without contrast", indication="G54.1", gadolinium_contraindicated=True)
    assert codes_of(wwo) == [("wrong-protocol", "error")]
    assert wwo.recommended.protocol == "mr-lumbosacral-plexus-wo"


def test_low_egfr_prefers_non_contrast_mri_and_cites_the_contrast_manual(rules):
    r = rec(rules, indication="G54.1", egfr=22)
    assert r.top.protocol == "mr-lumbosacral-plexus-wo"
    excluded = {e.key: e for e in r.excluded}
    assert "group II" in excluded["mr-plexus-wwo"].reason and "22 < 30" in excluded["mr-plexus-wwo"].reason
    assert "acr-contrast-manual-gbca" in excluded["mr-plexus-wwo"].citations
    assert any("group II" in c.text for c in r.cautions)
    assert rec(rules, indication="G54.1", egfr=30).top.protocol == "mr-lumbosacral-plexus-wwo"  # threshold is < 30


def test_low_egfr_with_mri_contraindicated_keeps_ct_contrast_with_a_caution(rules):
    r = rec(rules, indication="G54.1", mri_contraindicated=True, egfr=20)
    assert r.top.protocol == "ct-abdomen-pelvis-with-contrast"
    assert any("normal saline" in c.text and "acr-nkf-iodinated-2020" in c.citations for c in r.cautions)


def test_mri_and_iodinated_contrast_both_contraindicated_says_nothing_appropriate_remains(rules):
    r = rec(rules, indication="G54.1", mri_contraindicated=True, iodinated_contrast_contraindicated=True)
    assert r.top.key == "ct-ap-wo" and r.top.appropriateness is Appropriateness.NOT
    assert any("No imaging rated usually or may be appropriate" in c.text for c in r.cautions)
    check = order(rules, "CT abdomen pelvis without contrast", indication="G54.1", mri_contraindicated=True,
                  iodinated_contrast_contraindicated=True)
    assert codes_of(check) == [("wrong-protocol", "warning")]


def test_single_dermatome_pain_is_radiculopathy_with_lumbar_spine_mri(rules):
    r = rec(rules, indication="right leg pain", dermatomal=True)
    assert r.variant.id == "radiculopathy"
    assert r.top.protocol == "mr-lumbar-spine-wo"
    assert any("lateral" in c.text and "seed-pitfall-lateral-disc" in c.citations for c in r.cautions)
    assert all("Repeat electrodiagnostic" not in s.text for s in r.companion)
    for code in ("M54.16", "M54.17", "M51.16", "G54.4"):
        assert rec(rules, indication=code).variant.id == "radiculopathy", code
    spine_ct = rec(rules, indication="M54.16", mri_contraindicated=True)
    assert spine_ct.top.key == "ct-lspine-wo"


def test_radiculopathy_with_a_trauma_date_has_no_plexus_waiting_period(rules):
    r = rec(rules, indication="L5 radiculopathy", trauma_date=TODAY - 5 * DAY)
    assert r.variant.id == "radiculopathy"
    assert r.earliest_date is None and r.timing.status is TimingStatus.NOT_APPLICABLE


def test_standard_pelvis_mri_order_is_wrong_protocol(rules):
    check = order(rules, "MRI pelvis without contrast", indication="lumbosacral plexopathy")
    assert codes_of(check) == [("wrong-protocol", "error")]
    assert check.ordered.key == "mr-pelvis-wo"
    assert check.recommended.protocol == "mr-lumbosacral-plexus-wwo"
    assert "seed-no-standard-pelvis" in check.findings[0].citations
    assert "not supported" in check.findings[0].message
    unstated = order(rules, "MRI pelvis", indication="lumbosacral plexopathy")
    assert codes_of(unstated) == [("wrong-protocol", "error")]


def test_post_contrast_only_mri_order_is_wrong_protocol(rules):
    for text in ("MRI lumbosacral plexus with contrast", "MR LS plexus post-contrast only", "MRI pelvis +C"):
        check = order(rules, text, indication="G54.1")
        assert codes_of(check) == [("wrong-protocol", "error")], text
        assert check.ordered.contrast == "with"
    assert "post-contrast only" in order(rules, "MRI plexus with contrast", indication="G54.1").findings[0].message


def test_ct_with_contrast_ordered_when_mri_is_possible_is_a_warning(rules):
    check = order(rules, "CT abd/pelvis w/ contrast", indication="G54.1")
    assert codes_of(check) == [("wrong-protocol", "warning")]


def test_equally_rated_alternative_is_not_a_finding(rules):
    check = order(rules, "MRI lumbosacral plexus without contrast", indication="G54.1")
    assert codes_of(check) == [] and check.status is Status.PASS  # as appropriate as the first choice


def test_order_identified_from_cpt_code_only(rules):
    check = order(rules, "", code="72197", indication="G54.1")
    assert check.ordered.key == "mr-pelvis-wwo" and check.ordered.region_from_code
    assert codes_of(check) == [("wrong-protocol", "warning")]   # plexus MRI is billed under pelvis codes too
    described = order(rules, "MRI lumbosacral plexus", code="72197", indication="G54.1")
    assert described.ordered.key == "mr-plexus-wwo" and described.findings == ()
    unknown = parse_order("MRI LS plexus w/wo", "MRLSP", rules)
    assert unknown.key == "mr-plexus-wwo" and "not known to the rules" in unknown.notes[0]
    clash = parse_order("CT abdomen pelvis with contrast", "72197", rules)
    assert clash.key == "ct-ap-w" and "description decides" in clash.notes[0]


def test_unrecognisable_order_and_unstated_contrast(rules):
    assert codes_of(order(rules, "MRI knee", indication="G54.1")) == [("order-not-understood", "warning")]
    assert codes_of(order(rules, "MRI LS plexus", indication="G54.1")) == [("context-missing", "info")]
    rated_elsewhere = order(rules, "PET/CT", indication="M54.16")
    assert codes_of(rated_elsewhere) == [("wrong-protocol", "warning")]


@pytest.mark.parametrize("text, key", [
    ("MRI pelvis w/o", "mr-pelvis-wo"),
    ("MRI LS plexus w and wo", "mr-plexus-wwo"),
    ("MRI lumbosacral plexus with and without IV contrast", "mr-plexus-wwo"),
    ("MR neurography lumbosacral plexus pre and post", "mr-plexus-wwo"),
    ("MRI L-spine without contrast", "mr-lspine-wo"),
    ("CT A/P w/wo", "ct-ap-wwo"),
    ("CT abdomen pelvis non-contrast", "ct-ap-wo"),
    ("MRI pelvis wo contrast (plexus protocol)", "mr-plexus-wo"),
])
def test_order_text_parsing(rules, text, key):
    assert parse_order(text, "", rules).key == key


def test_malignancy_and_prior_radiation_variant(rules):
    r = rec(rules, indication="lumbosacral plexopathy, history of prostate cancer")
    assert r.variant.id == "malignancy" and r.top.protocol == "mr-lumbosacral-plexus-wwo"
    assert "fdg-pet-ct" in {x.key for x in r.recommendations}
    assert rec(rules, indication="G54.1", prior_radiation=True).variant.id == "malignancy"
    assert rec(rules, indication="G54.1 C61").variant.id == "malignancy"
    flagged = [x for x in r.recommendations if "site decision" in x.rationale]
    assert flagged and all("site-policy" in x.citations for x in flagged)


def test_idiopathic_plexopathy_gets_its_caution(rules):
    r = rec(rules, indication="E11.44 diabetic amyotrophy")
    assert r.variant.id == "nontraumatic"
    assert any("diabetic amyotrophy" in c.text and c.text.startswith("Idiopathic") for c in r.cautions)


def test_negations_are_not_read_as_positives(rules):
    r = rec(rules, indication="non-traumatic lumbosacral plexopathy, no history of cancer, no trauma")
    assert r.variant.id == "nontraumatic"
    assert "trauma" not in r.scenario.categories and "malignancy" not in r.scenario.categories
    assert rec(rules, indication="plexopathy, rule out malignancy").variant.id == "nontraumatic"
    assert rec(rules, indication="plexopathy, non-dermatomal").variant.id == "nontraumatic"


# --------------------------------------------------------------------------------------------------
# Every input error


def test_dermatomal_with_a_plexus_code_is_contradictory(rules):
    error = problems(rules, indication="S34.4XXA", dermatomal=True)
    assert error.problems[0].startswith("dermatomal") and not error.out_of_scope
    assert rec(rules, indication="plexopathy vs radiculopathy", dermatomal=True).variant.id == "radiculopathy"
    assert rec(rules, indication="piriformis syndrome", dermatomal=True).variant.id == "radiculopathy"


def test_malformed_codes_are_rejected_with_the_expected_form(rules):
    for text in ("G54-1", "plexopathy G54.12345"):
        error = problems(rules, indication=text)
        assert "is not an ICD-10-CM code" in error.problems[0] and "G54.1" in error.problems[0]


def test_code_extraction_normalises_and_skips_levels():
    assert extract_icd10("G541 and m54.16, S344XXA; T12 fracture, L5-S1") == (["G54.1", "M54.16", "S34.4XXA"], [])
    assert extract_icd10("T2-weighted STIR, L4 root, G54-1") == ([], ["G54-1"])


def test_unknown_codes_alone_are_out_of_scope_and_with_a_known_term_a_note(rules):
    error = problems(rules, indication="M17.11")
    assert error.out_of_scope and "M17.11" in error.problems[0]
    r = rec(rules, indication="plexopathy M17.11")
    assert r.scenario.unknown_codes == ("M17.11",) and "M17.11" in r.scenario.notes[0]


@pytest.mark.parametrize("indication", ["brachial plexopathy", "G54.0", "M54.12", "tarsal tunnel syndrome", "G57.51"])
def test_out_of_scope_indications(rules, indication):
    error = problems(rules, indication=indication)
    assert error.out_of_scope


def test_cervical_radiculopathy_stays_out_of_scope_even_when_dermatomal(rules):
    assert problems(rules, indication="M54.12", dermatomal=True).out_of_scope


def test_empty_indication(rules):
    error = problems(rules, indication="")
    assert error.out_of_scope and error.problems[0].startswith("indication:")


def test_dates_and_egfr_out_of_range(rules):
    assert "in the future" in problems(rules, indication="G54.1", trauma_date=TODAY + DAY).problems[0]
    assert "after the exam date" in problems(rules, indication="G54.1", trauma_date=TODAY - DAY,
                                             on=TODAY - 2 * DAY).problems[0]
    assert "outside 0-200" in problems(rules, indication="G54.1", egfr=-1).problems[0]
    assert "outside 0-200" in problems(rules, indication="G54.1", egfr=250).problems[0]


def test_explicit_no_contradicting_the_indication(rules):
    error = problems(rules, indication="plexopathy, metastatic carcinoma", known_malignancy=False)
    assert "known_malignancy" in error.problems[0]


def test_indication_denying_what_the_context_states(rules):
    error = problems(rules, indication="non-traumatic lumbosacral plexopathy", trauma_date=TODAY - 30 * DAY)
    assert "denies trauma" in error.problems[0]
    assert "denies known malignancy" in problems(rules, indication="plexopathy, no history of cancer",
                                                 known_malignancy=True).problems[0]


def test_check_order_turns_input_problems_into_status(rules):
    bad = order(rules, "MRI LS plexus w/wo", indication="S34.4", dermatomal=True)
    assert bad.status is Status.ERROR and bad.problems and bad.recommended is None
    outside = order(rules, "MRI knee", indication="knee osteoarthritis M17.11")
    assert outside.status is Status.NO_PROTOCOL and outside.findings == ()


# --------------------------------------------------------------------------------------------------
# Every rule in the data file


def test_every_code_rule_maps_to_its_categories(rules):
    for rule in rules.codes:
        code = rule.prefix if "." in rule.prefix else \
            (rule.prefix + "0.0" if len(rule.prefix) == 1 else rule.prefix + ".9")
        from protocolcheck.clinical.scenario import _match_code
        assert _match_code(code, rules).prefix == rule.prefix, code


def test_every_keyword_rule_matches_an_example(rules):
    examples = {
        0: "lumbosacral plexopathy", 1: "diabetic amyotrophy", 2: "idiopathic", 3: "piriformis", 4: "nerve entrapment",
        5: "sciatic neuropathy", 6: "L5 radiculopathy", 7: "lateral disc herniation", 8: "trauma", 9: "cancer",
        10: "radiotherapy", 11: "brachial plexus", 12: "tarsal tunnel",
    }
    assert len(rules.keywords) == len(examples)
    for i, kw in enumerate(rules.keywords):
        assert kw.pattern.search(examples[i]), (i, kw.pattern.pattern)
    assert not rules.keywords[0].pattern.search("brachial plexopathy")
    assert not rules.keywords[6].pattern.search("lumbosacral radiculoplexus neuropathy")


def test_every_variant_is_reachable_and_protocols_exist_in_the_library(rules):
    from protocolcheck.clinical.library import load_library

    library = load_library()
    assert rules.protocol_ids() <= set(library.protocols)
    seen = {rec(rules, **kw).variant.id for kw in (
        {"indication": "G54.1"}, {"indication": "G57.01"}, {"indication": "S34.4"}, {"indication": "M54.16"},
        {"indication": "G54.1", "known_malignancy": True})}
    assert seen == {v.id for v in rules.variants}


def test_every_exclusion_and_conditional_caution_fires(rules):
    fired = set()
    for kw in ({"mri_contraindicated": True}, {"gadolinium_contraindicated": True}, {"egfr": 10},
               {"iodinated_contrast_contraindicated": True, "mri_contraindicated": True}):
        r = rec(rules, indication="G54.1", **kw)
        fired |= {e.reason.split(":")[0].split(" < ")[0] for e in r.excluded}
    assert len(fired) == len(rules.exclusions)
    conditional = [c for c in rules.cautions if c.when is not None]
    texts = set()
    for kw in ({"mri_contraindicated": True}, {"egfr": 10}, {"mri_contraindicated": True, "egfr": 10},
               {"mri_contraindicated": True, "iodinated_contrast_contraindicated": True},
               {"indication": "G54.1 idiopathic"}):
        fields = {"indication": "G54.1", **kw}
        texts |= {c.text for c in rec(rules, **fields).cautions}
    texts |= {c.text for c in rec(rules, indication="G54.1 pacemaker").cautions}
    for caution in conditional:
        head = caution.text.split("{")[0] if caution.text.find("{") in range(25) else caution.text[:25]
        assert any(t.startswith(head.format(gbca_egfr="30", icm_egfr="30")) for t in texts), caution.text


def test_condition_language():
    facts = {"categories": {"plexopathy"}, "dermatomal": False, "egfr": 25.0, "variant": "nontraumatic"}
    assert evaluate({"any": [{"dermatomal": True}, {"categories_any": ["plexopathy"]}]}, facts)
    assert evaluate({"all": [{"egfr_below": 30}, {"not": {"categories_none": ["plexopathy"]}}]}, facts)
    assert not evaluate({"categories_all": ["plexopathy", "trauma"]}, facts)
    assert evaluate({"variants": ["nontraumatic"], "dermatomal": False}, facts)


def test_every_statement_cites_a_defined_source(rules):
    r = rec(rules, indication="S34.4", trauma_date=TODAY - 3 * DAY, egfr=20)
    data = r.to_dict()
    cited = set(data["variant"]["citations"]) | set(data["timing"]["citations"])
    for section in ("recommendations", "excluded", "companion", "follow_up", "cautions"):
        for item in data[section]:
            assert item["citations"], (section, item)
            cited |= set(item["citations"])
    assert cited == set(data["sources"])
    assert all(s["statement"] for s in data["sources"].values())


# --------------------------------------------------------------------------------------------------
# Recommendations and audits agree


@pytest.mark.parametrize("fields", [
    {"indication": "G54.1"}, {"indication": "piriformis syndrome"},
    {"indication": "G54.1", "mri_contraindicated": True},
    {"indication": "G54.1", "gadolinium_contraindicated": True}, {"indication": "M54.16"},
    {"indication": "S34.4", "trauma_date": TODAY - 10 * DAY},
])
def test_select_protocol_names_the_recommenders_first_choice(rules, fields):
    from protocolcheck.clinical.library import load_library

    context = ClinicalContext(**fields)
    selection = select_protocol(context, load_library(), on=TODAY)
    first = recommend(context, on=TODAY, rules=rules, today=TODAY).top
    assert selection.protocol_id == first.protocol
    assert selection.procedure == first.procedure and selection.citations == first.citations
    assert check_order(first.procedure, context, "", TODAY + 60 * DAY, rules=rules, today=TODAY).recommended == first


def test_select_protocol_never_raises(rules):
    assert select_protocol(ClinicalContext(indication="knee pain")).protocol_id is None
    # a study dated before the recorded trauma: the exam choice does not depend on dates
    assert select_protocol(ClinicalContext(indication="S34.4", trauma_date=TODAY), on=TODAY - 9 * DAY).protocol_id \
        == "mr-lumbosacral-plexus-wwo"
    from protocolcheck.clinical.library import Library, load_library

    pelvis_only = Library(protocols={"mr-pelvis": load_library().get("mr-pelvis")})
    missing = select_protocol(ClinicalContext(indication="G54.1"), library=pelvis_only)
    assert missing.protocol_id is None and "not in the protocol library" in missing.reason
    no_protocol = select_protocol(ClinicalContext(indication="G54.1", mri_contraindicated=True,
                                                  iodinated_contrast_contraindicated=True))
    assert no_protocol.protocol_id is None and "no library protocol" in no_protocol.reason


def test_select_protocol_reads_the_rules_beside_a_custom_library(tmp_path):
    import shutil

    from protocolcheck.clinical.library import default_library_path, load_library

    shutil.copytree(default_library_path(), tmp_path, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    _write_rules(tmp_path, lambda d: d["variants"][4]["ratings"][0].update(appropriateness="may-be-appropriate"))
    library = load_library(tmp_path)
    chosen = select_protocol(ClinicalContext(indication="G54.1"), library)
    assert chosen.protocol_id == "mr-lumbosacral-plexus-wo"
    (tmp_path / "rules.yaml").write_text("kind: rules\n", encoding="utf-8")
    broken = select_protocol(ClinicalContext(indication="G54.1"), library)
    assert broken.protocol_id is None and "cannot be used" in broken.reason


# --------------------------------------------------------------------------------------------------
# The rules file is validated like the protocols


def _write_rules(tmp_path: Path, edit) -> Path:
    data = yaml.safe_load(default_rules_path().read_text(encoding="utf-8"))
    edit(data)
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


@pytest.mark.parametrize("edit, expected", [
    (lambda d: d["timing"].update(min_days_after_trauma="28"), r"timing\.min_days_after_trauma"),
    (lambda d: d["variants"][0]["ratings"][0].update(appropriateness="maybe"), r"variants\[0\]\.ratings\[0\]"),
    (lambda d: d["variants"][0]["ratings"][0].update(procedure="mr-knee"), "procedure 'mr-knee' is not defined"),
    (lambda d: d["cautions"][0].update(citations=["nope"]), "citation 'nope' is not defined"),
    (lambda d: d["codes"].append({"prefix": "G99", "categories": ["knee"], "label": "x"}), "category 'knee'"),
    (lambda d: d["keywords"].append({"pattern": "(unclosed", "categories": ["trauma"]}), "bad regular expression"),
    (lambda d: d["timing"].update(min_days_after_trauma=120), "min_days_after_trauma must be below"),
    (lambda d: d["companion"][0].update(variants=["ghost"]), "variant 'ghost' is not defined"),
    (lambda d: d["exclusions"][0]["applies_to"].update(modality="XR"), "no procedure has modality 'XR'"),
    (lambda d: d.update(extra_key=1), "Additional properties"),
    (lambda d: d["order_parsing"]["region"].append({"value": "knee", "pattern": "knee"}), "a region needs a label"),
    (lambda d: d["order_parsing"]["contrast"].append({"value": "some", "pattern": "x"}), "value 'some' is not one of"),
    (lambda d: d["order_parsing"]["region"].pop(0), "procedures.mr-plexus-wwo.region"),
])
def test_rules_problems_name_the_file_and_key(tmp_path, edit, expected):
    path = _write_rules(tmp_path, edit)
    with pytest.raises(RulesError) as info:
        load_rules(path)
    assert any(re.search(expected, p) and str(path) in p for p in info.value.problems), info.value.problems


def test_a_site_can_change_the_timing_without_python(tmp_path):
    path = _write_rules(tmp_path, lambda d: d["timing"].update(min_days_after_trauma=42))
    r = recommend(ClinicalContext(indication="S34.4", trauma_date=TODAY - 10 * DAY), on=TODAY, rules=load_rules(path),
                  today=TODAY)
    assert r.earliest_date == TODAY + 32 * DAY


def test_unreadable_and_invalid_yaml_rules(tmp_path):
    with pytest.raises(RulesError, match="cannot read"):
        load_rules(tmp_path / "missing.yaml")
    bad = tmp_path / "rules.yaml"
    bad.write_text("kind: rules\nversion: [1\n", encoding="utf-8")
    with pytest.raises(RulesError, match="not valid YAML"):
        load_rules(bad)


# --------------------------------------------------------------------------------------------------
# Output forms and the command line


def test_json_contract_fields(rules):
    data = json.loads(json.dumps(rec(rules, indication="G54.1", trauma_date=TODAY - 10 * DAY).to_dict()))
    assert set(data) >= {"scenario", "variant", "recommendations", "earliest_date", "timing", "companion",
                         "follow_up", "cautions"}
    first = data["recommendations"][0]
    assert set(first) >= {"rank", "procedure", "protocol", "appropriateness", "rationale", "citations"}
    assert first["appropriateness"] in {"usually-appropriate", "may-be-appropriate", "usually-not-appropriate"}
    assert data["earliest_date"] == (TODAY + 18 * DAY).isoformat()
    assert all(set(c) == {"text", "citations"} for c in data["cautions"])


def test_cli_recommend_json_and_errors():
    runner = CliRunner()
    ok = runner.invoke(main, ["recommend", "--indication", "piriformis syndrome G57.01", "--format", "json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["recommendations"][0]["protocol"] == "mr-lumbosacral-plexus-wwo"
    gad = runner.invoke(main,
                        ["recommend", "--indication", "G54.1", "--gadolinium-contraindicated", "--format", "json"])
    assert json.loads(gad.stdout)["recommendations"][0]["protocol"] == "mr-lumbosacral-plexus-wo"
    for args in (["--indication", "S34.4", "--dermatomal"], ["--indication", "G54.1", "--egfr", "-2"],
                 ["--indication", "G54.1", "--trauma-date", "2999-01-01"],
                 ["--indication", "G54.1", "--on", "01/02/2026"],
                 ["--indication", "G5-41"], ["--indication", "brachial plexopathy"]):
        result = runner.invoke(main, ["recommend", *args, "--format", "json"])
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output


def test_cli_check_order_exit_codes():
    runner = CliRunner()
    base = ["check-order", "--indication", "lumbosacral plexopathy", "--format", "json"]
    wrong = runner.invoke(main, base + ["--procedure", "MRI pelvis without contrast"])
    assert wrong.exit_code == 1
    data = json.loads(wrong.stdout)
    assert data["status"] == "fail" and data["findings"][0]["code"] == "wrong-protocol"
    assert data["recommended"]["protocol"] == "mr-lumbosacral-plexus-wwo"
    assert runner.invoke(main,
                         base + ["--procedure", "MRI pelvis without contrast", "--fail-on", "never"]).exit_code == 0
    assert runner.invoke(main, base + ["--procedure", "MRI LS plexus w/wo"]).exit_code == 0
    ct = base + ["--procedure", "CT abdomen pelvis with contrast"]
    assert runner.invoke(main, ct).exit_code == 0
    assert runner.invoke(main, ct + ["--fail-on", "warning"]).exit_code == 1
    early = runner.invoke(main, ["check-order", "--procedure", "MRI LS plexus w/wo", "--indication", "S34.4XXA",
                                 "--trauma-date", "2026-02-19", "--scheduled", "2026-03-01", "--format", "json"])
    assert early.exit_code == 1 and json.loads(early.stdout)["findings"][0]["code"] == "trauma-too-early"
    assert runner.invoke(main, ["check-order", "--indication", "G54.1"]).exit_code == 2
    bad = runner.invoke(main, ["check-order", "--procedure", "MRI LS plexus", "--indication", "S34.4", "--dermatomal",
                               "--format", "json"])
    assert bad.exit_code == 2 and json.loads(bad.stdout)["status"] == "error"


def test_cli_takes_the_scenario_from_a_context_csv(tmp_path):
    csv = tmp_path / "ctx.csv"
    csv.write_text("accession_number,indication,trauma_date,mri_contraindicated,egfr\n"
                   "A1,piriformis syndrome,,no,\nA2,G54.1,,yes,25\n", encoding="utf-8")
    runner = CliRunner()
    one = runner.invoke(main, ["recommend", "--context", str(csv), "--accession", "A2", "--format", "json"])
    assert one.exit_code == 0, one.output
    data = json.loads(one.stdout)
    assert data["scenario"]["egfr"] == 25
    assert data["recommendations"][0]["protocol"] == "ct-abdomen-pelvis-with-contrast"
    override = runner.invoke(main, ["recommend", "--context", str(csv), "--accession", "A1", "--dermatomal",
                                    "--format", "json"])
    assert json.loads(override.stdout)["variant"]["id"] == "radiculopathy"
    assert runner.invoke(main, ["recommend", "--context", str(csv), "--accession", "ZZ"]).exit_code == 2
    assert runner.invoke(main, ["recommend", "--context", str(csv)]).exit_code == 2
    broken = tmp_path / "broken.csv"
    broken.write_text("accession_number,egfr\nA1,lots\n", encoding="utf-8")
    assert runner.invoke(main, ["recommend", "--context", str(broken), "--accession", "A1"]).exit_code == 2


def test_cli_rejects_a_broken_rules_file(tmp_path):
    path = _write_rules(tmp_path, lambda d: d["timing"].update(min_days_after_trauma=500))
    result = CliRunner().invoke(main, ["recommend", "--indication", "G54.1", "--rules", str(path)])
    assert result.exit_code == 2 and "min_days_after_trauma" in result.output
