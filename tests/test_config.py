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


def test_receive_limits_are_sizes_option_then_environment_then_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert config.parse_size("4GiB") == 4 << 30 and config.parse_size("512M") == 512 << 20
    assert config.parse_size("1048576") == 1 << 20 and config.parse_size("1.5k") == 1536
    for bad in ("", "4 gigs", "0", "-1", "4GB2"):
        with pytest.raises(ValueError, match="--max-dataset"):
            config.parse_size(bad, "--max-dataset")
    monkeypatch.delenv(config.Env.MAX_DATASET.value, raising=False)
    monkeypatch.delenv(config.Env.MAX_RECEIVING.value, raising=False)
    assert config.receive_limits() == (config.MAX_DATASET_BYTES, config.default_max_receiving())
    memory = config.physical_memory()
    assert config.default_max_receiving() == min(config.MAX_RECEIVING_BYTES, memory // 4 if memory else 1 << 62)
    monkeypatch.setenv(config.Env.MAX_DATASET.value, "16MiB")
    monkeypatch.setenv(config.Env.MAX_RECEIVING.value, "lots")
    with pytest.raises(ValueError, match=r"\$PROTOCOLCHECK_MAX_RECEIVING 'lots' is not a size"):
        config.receive_limits()
    assert config.receive_limits(None, "1GiB") == (16 << 20, 1 << 30)
    assert config.receive_limits("2G", "3G") == (2 << 30, 3 << 30)
