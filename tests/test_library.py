"""Protocol library: the shipped protocols load, and every kind of broken file is reported clearly."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from protocolcheck import config
from protocolcheck.clinical.library import (
    LibraryError,
    default_library_path,
    lint,
    load_library,
    load_protocol_file,
)
from protocolcheck.clinical.protocol import Level

SHIPPED_IDS = {
    "mr-lumbosacral-plexus-wwo",
    "mr-lumbosacral-plexus-wo",
    "ct-abdomen-pelvis-with-contrast",
    "mr-lumbar-spine-wo",
    "mr-pelvis",
}


@pytest.fixture()
def site_library(tmp_path: Path) -> Path:
    """A copy of the shipped library that a test may break."""
    target = tmp_path / "library"
    target.mkdir()
    for path in default_library_path().glob("*.yaml"):
        shutil.copy(path, target / path.name)
    return target


def _problems(directory: Path) -> list[str]:
    with pytest.raises(LibraryError) as info:
        load_library(directory)
    return info.value.problems


def test_shipped_schemas_are_valid_against_their_metaschemas() -> None:
    """Checked here once rather than on every run (it costs a noticeable share of start-up)."""
    import json

    import jsonschema

    from protocolcheck.clinical.protocol_schema import schema

    for document in (schema(),
                     json.loads((Path(__file__).resolve().parent.parent / "protocolcheck" / "clinical" / "schemas"
                                           / "rules.schema.json").read_text(encoding="utf-8"))):
        jsonschema.validators.validator_for(document).check_schema(document)


def test_shipped_library_loads_with_contract_ids() -> None:
    library = load_library()
    assert set(library.protocols) >= SHIPPED_IDS
    assert any("rules.yaml" in s for s in library.skipped) or not (default_library_path() / "rules.yaml").exists()


def test_plexus_protocols_have_the_issue_requirements() -> None:
    library = load_library()
    wwo = library.get("mr-lumbosacral-plexus-wwo")
    wo = library.get("mr-lumbosacral-plexus-wo")
    assert [r.id for r in wwo.requirements] == ["t1", "t2", "fluid-fat-suppressed", "post-contrast-t1-fat-suppressed"]
    assert [r.id for r in wo.requirements] == ["t1", "t2", "fluid-fat-suppressed"]
    for protocol in (wwo, wo):
        assert [p.id for p in protocol.planes] == ["orthogonal-oblique-planes"]
        assert protocol.trauma is not None and protocol.trauma.min_days == 28 and protocol.trauma.max_days == 90
        assert all(r.level is Level.REQUIRED for r in protocol.requirements)
    ct = library.get("ct-abdomen-pelvis-with-contrast")
    assert ct.modality == "CT"
    contrast = ct.rule("iv-contrast")
    assert contrast is not None and contrast.defines_exam and not contrast.exclusive


def test_every_rule_cites_a_quoted_statement() -> None:
    for protocol in load_library():
        for rule in (*protocol.requirements, *protocol.planes):
            cited = protocol.cite(rule.citations)
            assert cited, f"{protocol.id}/{rule.id} cites nothing"
            assert all(c.statement and c.source for c in cited)


def test_unknown_key_names_file_line_path_and_close_match(site_library: Path) -> None:
    path = site_library / "mr-pelvis.yaml"
    path.write_text(path.read_text().replace("match: {weighting: T1}", "match: {weigthing: T1}"))
    problems = _problems(site_library)
    assert len(problems) == 1
    text = problems[0]
    line = next(i for i, text_line in enumerate(path.read_text().splitlines(), 1) if "weigthing" in text_line)
    assert text.startswith(f"{path}:{line}: requirements[0].match.weigthing: unknown key 'weigthing'")
    assert "did you mean 'weighting'" in text


def test_all_problems_in_all_files_are_reported(site_library: Path) -> None:
    pelvis = site_library / "mr-pelvis.yaml"
    pelvis.write_text(pelvis.read_text().replace("level: recommended", "level: recomended")
                      .replace("modality: MR", "modality: MRI"))
    spine = site_library / "mr-lumbar-spine-wo.yaml"
    spine.write_text(spine.read_text().replace("citations: [seed-dermatome]", "citations: [seed-dermatom]", 1))
    problems = _problems(site_library)
    joined = "\n".join(problems)
    assert "'recomended' is not allowed" in joined and "did you mean 'recommended'" in joined
    assert "modality: 'MRI' is not allowed" in joined and "did you mean 'MR'" in joined
    assert "unknown citation 'seed-dermatom'" in joined and "did you mean 'seed-dermatome'" in joined
    assert {p.split(":")[0] for p in problems} == {str(pelvis), str(spine)}


def test_invalid_yaml_gives_the_line(site_library: Path) -> None:
    (site_library / "broken.yaml").write_text("kind: protocol\nid: broken\n  title: x\n")
    problems = _problems(site_library)
    assert problems == [p for p in problems if p.startswith(f"{site_library / 'broken.yaml'}:3: not valid YAML")]


def test_duplicate_keys_and_ids_are_reported(site_library: Path) -> None:
    wo = site_library / "mr-lumbosacral-plexus-wo.yaml"
    text = wo.read_text().replace("status: active\n", "status: active\nstatus: draft\n")
    wo.write_text(text)
    copy = site_library / "copy.yaml"
    copy.write_text((site_library / "mr-pelvis.yaml").read_text())
    joined = "\n".join(_problems(site_library))
    assert "key 'status' given twice" in joined
    assert "id 'mr-pelvis' differs from the file name 'copy.yaml'" in joined


def test_missing_keys_and_bad_ranges(site_library: Path) -> None:
    data = {"kind": "protocol", "id": "x-site", "modality": "MR", "version": 1, "status": "active",
            "citations": [{"id": "c", "source": "s", "statement": "t"}],
            "requirements": [{"id": "a", "label": "A", "level": "required", "citations": ["c"]},
                             {"id": "b", "label": "B", "level": "required", "citations": ["c"],
                              "match": {"slice_thickness": {"min": 5, "max": 2}}}]}
    (site_library / "x-site.yaml").write_text(yaml.safe_dump(data))
    joined = "\n".join(_problems(site_library))
    assert "missing required key 'title'" in joined
    assert "requirements[0]: needs 'match' or 'any_of'" in joined
    assert "requirements[1].match.slice_thickness: min 5 is greater than max 2" in joined


def test_other_kinds_are_skipped_but_kindless_files_are_not(site_library: Path) -> None:
    (site_library / "site-settings.yaml").write_text("kind: settings\nfoo: 1\n")
    library = load_library(site_library)
    assert any("site-settings.yaml" in s for s in library.skipped)
    (site_library / "forgot.yaml").write_text("id: forgot\n")
    assert any("missing required key 'kind'" in p for p in _problems(site_library))


def test_a_site_adds_a_protocol_without_python(site_library: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = (site_library / "mr-pelvis.yaml").read_text().replace("id: mr-pelvis", "id: mr-hip-site")
    (site_library / "mr-hip-site.yaml").write_text(text.replace("status: active", "status: draft"))
    monkeypatch.setenv(config.Env.LIBRARY.value, str(site_library))
    library = load_library()
    assert library.get("mr-hip-site").status == "draft"
    assert library.path == str(site_library)


def test_unknown_protocol_id_suggests_close_ids() -> None:
    with pytest.raises(KeyError) as info:
        load_library().get("mr-lumbosacral-plexus-ww")
    assert "did you mean 'mr-lumbosacral-plexus-wwo'" in str(info.value)


def test_lint_single_file_and_missing_path(tmp_path: Path) -> None:
    good = load_protocol_file(default_library_path() / "mr-pelvis.yaml")
    assert good.protocol is not None and not good.problems
    results = lint([tmp_path / "nope.yaml"])
    assert results[0].problems == [f"{tmp_path / 'nope.yaml'}: no such file or folder"]
    with pytest.raises(LibraryError, match=r"no \*\.yaml files in this folder"):
        load_library(tmp_path)


def test_trauma_window_comes_from_the_rules_only() -> None:
    """The protocols switch the trauma rule on; the days are the rules' (one place)."""
    from protocolcheck.clinical.rules import load_rules

    rules = load_rules()
    for protocol in load_library():
        if protocol.trauma is not None:
            assert (protocol.trauma.min_days, protocol.trauma.max_days) == (rules.min_days_after_trauma,
                                                                            rules.max_days_after_trauma)


def test_plexus_protocols_bound_slice_thickness_and_field_strength_by_site_policy() -> None:
    library = load_library()
    for pid in ("mr-lumbosacral-plexus-wwo", "mr-lumbosacral-plexus-wo"):
        limits = {q.id: q for q in library.get(pid).limits}
        thickness = limits["slice-thickness-2d"]
        assert (thickness.parameter, thickness.range.max) == ("slice_thickness", 5)
        assert (limits["field-strength"].parameter, limits["field-strength"].range.min) == ("field_strength", 1.5)
        assert all(q.site_policy and not q.citations and q.action for q in limits.values())


def test_a_limit_needs_a_source_a_bound_and_a_known_parameter(site_library: Path) -> None:
    path = site_library / "mr-lumbosacral-plexus-wo.yaml"
    data = yaml.safe_load(path.read_text())
    data["limits"] = [
        {"id": "no-source", "label": "A", "level": "required", "parameter": "slice_thickness", "max": 5},
        {"id": "no-bound", "label": "B", "level": "required", "parameter": "field_strength", "site_policy": "x"},
        {"id": "swapped", "label": "C", "level": "required", "parameter": "slice_thickness", "min": 6, "max": 2,
         "site_policy": "x"},
        {"id": "unknown", "label": "D", "level": "required", "parameter": "echo_time", "max": 2, "site_policy": "x"},
    ]
    path.write_text(yaml.safe_dump(data))
    joined = "\n".join(_problems(site_library))
    assert "limits[0]" in joined and "limits[1]" in joined and "limits[3].parameter" in joined
    assert "limits[2].slice_thickness: min 6 is greater than max 2" in joined
