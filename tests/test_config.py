"""Settings: each PROTOCOLCHECK_* variable is read by config, and the option given wins over it."""

from __future__ import annotations

from pathlib import Path

import pytest

from protocolcheck import config
from protocolcheck.clinical.library import library_path
from protocolcheck.clinical.recommend import default_rules_path


def test_library_and_rules_follow_option_then_environment_then_package(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in config.Env:
        monkeypatch.delenv(name.value, raising=False)
    shipped = config.shipped_protocols_dir()
    assert (shipped / config.RULES_FILENAME).is_file()
    assert library_path() == shipped and default_rules_path() == shipped / config.RULES_FILENAME
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.setenv(config.Env.LIBRARY.value, str(site))
    assert library_path() == site and library_path(tmp_path) == tmp_path
    assert default_rules_path() == shipped / config.RULES_FILENAME  # the site library has no rules.yaml
    (site / config.RULES_FILENAME).write_text("x")
    assert default_rules_path() == site / config.RULES_FILENAME
    monkeypatch.setenv(config.Env.RULES.value, str(tmp_path / "mine.yaml"))
    assert default_rules_path() == tmp_path / "mine.yaml" and default_rules_path(tmp_path) == tmp_path / "rules.yaml"


def test_store_path_and_readers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(config.Env.DB.value, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert config.store_target() == str(tmp_path / "protocolcheck" / "results.db") and not config.store_chosen()
    assert config.store_target("x.db") == "x.db" and config.store_chosen("x.db")
    monkeypatch.setenv(config.Env.DB.value, "postgresql://h/db")  # a URL stays a URL
    assert config.store_target() == "postgresql://h/db" == config.store_target(None) and config.store_chosen()
    assert config.store_target("x.db") == "x.db"
    monkeypatch.setenv(config.Env.READER.value, "pydicom")
    assert config.pydicom_reader_forced()
    monkeypatch.setenv(config.Env.READER.value, "lean")
    assert not config.pydicom_reader_forced()


def test_environment_for_workers_has_absolute_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(config.Env.LIBRARY.value, "lib")
    monkeypatch.setenv(config.Env.READER.value, "pydicom")
    env = config.protocolcheck_environment()
    assert env[config.Env.LIBRARY.value] == str(tmp_path / "lib") and env[config.Env.READER.value] == "pydicom"
    monkeypatch.setenv(config.Env.PURE_PYTHON.value, "1")
    config.apply_environment(env)  # what a worker does with the client's environment
    assert config.Env.PURE_PYTHON.value not in config.protocolcheck_environment()
    assert config.protocolcheck_environment() == env


def test_rules_go_with_their_library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in config.Env:
        monkeypatch.delenv(name.value, raising=False)
    assert config.rules_for(tmp_path) == config.rules_file() == config.rules_for(None)  # no rules.yaml there
    (tmp_path / config.RULES_FILENAME).write_text("x")
    assert config.rules_for(tmp_path) == tmp_path / config.RULES_FILENAME
