"""The site configuration file: option defaults for every command, so a scheduled job types nothing twice.

One TOML file, found as ``--config FILE``, else ``$PROTOCOLCHECK_CONFIG``, else
``/etc/protocolcheck/config.toml`` (when it exists). Its keys are the commands' own long option names
(without the dashes), so the file and ``--help`` can never disagree::

    [defaults]                 # every command that has the option
    db = "/var/lib/protocolcheck/results.db"
    library = "/etc/protocolcheck/protocols"
    fail-on = "never"
    log-file = "/var/log/protocolcheck/protocolcheck.log"
    log-format = "json"

    [audit]                    # one command's options
    context = "/srv/ris/context.csv"
    allow-empty = true

    [worklist]
    host = "ris.example.org"
    port = 104
    called-aet = "RIS"

Options given on the command line win over the file; the file wins over the environment's
``PROTOCOLCHECK_*`` defaults and the built-in ones. A key that is no option of its command, or a
value the option would refuse, is an error naming the file, the line, the key and what to write
instead (exit 2) — a typo never silently falls back to a default.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from protocolcheck.errors import InputError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

CONFIG_ENV = "PROTOCOLCHECK_CONFIG"
SYSTEM_CONFIG = Path("/etc/protocolcheck/config.toml")
DEFAULTS_SECTION = "defaults"
MAX_CONFIG_BYTES = 1 << 20  # a site configuration is a few hundred bytes; refuse anything absurd


class ConfigError(InputError):
    """A configuration file that cannot be used (exit 2): each problem names the file, line, key and fix."""

    headline = "the configuration file cannot be used"


@dataclass(frozen=True)
class Setting:
    """One value from the file, where it was written, and the command it applies to."""

    command: str  # a command name, or "defaults"
    key: str  # the long option name without dashes
    value: Any
    line: int


@dataclass(frozen=True)
class SiteConfig:
    """The settings of one configuration file (``path`` None: no file in use)."""

    path: Path | None
    settings: tuple[Setting, ...] = ()

    def default_map(self, group: click.Group) -> dict[str, Any]:
        """Click's ``default_map``: per command, parameter name -> value (the command's own section
        wins over ``[defaults]``)."""
        out: dict[str, dict[str, Any]] = {}
        for name, command in group.commands.items():
            params = _options(command)
            values: dict[str, Any] = {}
            for setting in self.settings:
                if setting.command == DEFAULTS_SECTION and setting.key in params:
                    values.setdefault(params[setting.key].name or "", setting.value)
            for setting in self.settings:
                if setting.command == name:
                    values[params[setting.key].name or ""] = setting.value
            if values:
                out[name] = values
        top = _options(group)
        for setting in self.settings:
            if setting.command == DEFAULTS_SECTION and setting.key in top:
                out[top[setting.key].name or ""] = setting.value  # a group option (log-file, log-format)
        return out

    def source(self, command: str, key: str) -> str:
        """Where a command's option value comes from in this file ("" when the file does not set it)."""
        for section in (command, DEFAULTS_SECTION):
            for setting in self.settings:
                if setting.command == section and setting.key == key:
                    return f"{self.path}:{setting.line} [{section}]"
        return ""


def config_path(explicit: str | None) -> Path | None:
    """``--config``, else ``$PROTOCOLCHECK_CONFIG``, else the system file when it exists, else None."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(CONFIG_ENV, "").strip()
    if env:
        return Path(env)
    return SYSTEM_CONFIG if SYSTEM_CONFIG.is_file() else None


def _options(command: click.Command) -> dict[str, click.Parameter]:
    """A command's parameters by the name a configuration file uses: the first long option without
    dashes (``--fail-on`` -> ``fail-on``), or the argument's name (``host``)."""
    out: dict[str, click.Parameter] = {}
    for param in command.params:
        if param.name in ("help", "version"):
            continue
        longs = [o[2:] for o in getattr(param, "opts", []) if o.startswith("--")]
        key = longs[0] if longs else (param.name or "").replace("_", "-")
        if isinstance(param, click.Option) and param.hidden:
            continue  # secrets and internals are never configured in a file
        out[key] = param
    return out


def _line_of(text: str, section: str, key: str) -> int:
    """The line where ``key`` is set in ``[section]`` (1 when it cannot be found)."""
    current = ""
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        header = re.match(r"^\[\s*([^\]]+?)\s*\]", stripped)
        if header:
            current = header.group(1).strip().strip('"')
        elif current == section and re.match(rf'^"?{re.escape(key)}"?\s*=', stripped):
            return number
    return 1


def _section_line(text: str, section: str) -> int:
    for number, line in enumerate(text.splitlines(), 1):
        if re.match(rf"^\s*\[\s*\"?{re.escape(section)}\"?\s*\]", line):
            return number
    return 1


def _read(path: Path) -> str:
    """The file's text; :class:`ConfigError` when it is missing, unreadable, huge or not UTF-8."""
    try:
        raw = path.read_bytes()[: MAX_CONFIG_BYTES + 1] if path.is_file() else None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration file ({exc.strerror or exc})") from exc
    if raw is None:
        raise ConfigError(f"{path}: no such configuration file (given by --config or ${CONFIG_ENV})")
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than 1 MB; this is not a protocolcheck configuration file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc


def load(path: Path, group: click.Group) -> SiteConfig:
    """Read and check ``path`` against ``group``'s commands; :class:`ConfigError` on any problem."""
    text = _read(path)
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}; fix the syntax at that line") from exc
    settings: list[Setting] = []
    problems: list[str] = []
    sections = {DEFAULTS_SECTION: None, **group.commands}
    for section, table in document.items():
        if section not in sections or not isinstance(table, dict):
            hint = difflib.get_close_matches(section, sections, 1)
            problems.append(f"{path}:{_section_line(text, section)}: [{section}] is no command"
                            + (f" — did you mean [{hint[0]}]?" if hint else f"; use one of: {', '.join(sections)}"))
            continue
        for key, value in table.items():
            problem = _check(section, key, value, group)
            line = _line_of(text, section, key)
            if problem:
                problems.append(f"{path}:{line}: [{section}] {key}: {problem}")
            else:
                settings.append(Setting(section, key, value, line))
    if problems:
        raise ConfigError(problems)
    return SiteConfig(path, tuple(settings))


def _check(section: str, key: str, value: Any, group: click.Group) -> str:
    """What is wrong with one setting ("" when nothing)."""
    if section == DEFAULTS_SECTION:
        known: dict[str, click.Parameter] = dict(_options(group))
        for command in group.commands.values():
            for name, param in _options(command).items():
                known.setdefault(name, param)
    else:
        known = _options(group.commands[section])
    found = known.get(key)
    if found is None:
        hint = difflib.get_close_matches(key, known, 1)
        return "no such option" + (f" — did you mean {hint[0]!r}?" if hint else
                                   f" of {section}; see `protocolcheck {section} --help`" if section != DEFAULTS_SECTION
                                   else " of any command")
    param = found
    try:
        values = value if isinstance(value, list) and (param.nargs != 1 or param.multiple) else [value]
        for item in values:
            if isinstance(item, (dict, list)):
                raise click.BadParameter("a table or nested list is not a value")
            param.type.convert(item, param, None)
    except click.BadParameter as exc:
        return f"{value!r} is not usable: {exc.message}"
    return ""


def effective(group: click.Group, config: SiteConfig, command: str) -> list[tuple[str, Any, str]]:
    """For ``config show``: each option of ``command`` with its value and where it comes from
    (the file and line, an environment variable, or the built-in default)."""
    cmd = group.commands[command]
    defaults = config.default_map(group).get(command, {})
    rows: list[tuple[str, Any, str]] = []
    for key, param in _options(cmd).items():
        name = param.name or ""
        if name in defaults:
            rows.append((key, defaults[name], config.source(command, key)))
            continue
        envvar = getattr(param, "envvar", None)
        if isinstance(envvar, str) and os.environ.get(envvar):
            rows.append((key, "(set)", f"environment ${envvar}"))
            continue
        default = param.get_default(click.Context(cmd), call=True) if isinstance(param, click.Option) else None
        rows.append((key, default, "default"))
    return rows


def as_mapping(rows: list[tuple[str, Any, str]]) -> Mapping[str, Any]:
    return {key: {"value": value, "from": source} for key, value, source in rows}
