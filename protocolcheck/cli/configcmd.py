"""``config show``: the effective settings and where each comes from (file and line, environment, default)."""

from __future__ import annotations

import json
import os
from typing import Any

import click

from protocolcheck.cli.siteconfig import CONFIG_ENV, SYSTEM_CONFIG, SiteConfig, effective

SECRET_WORDS = ("PASSWORD", "TOKEN", "SECRET")


@click.group("config")
def config_group() -> None:
    """The site configuration file (TOML): see what is in effect."""


@config_group.command("show")
@click.argument("command", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.pass_context
def show(ctx: click.Context, command: str | None, as_json: bool) -> None:
    """Print the settings in effect: with COMMAND, every option of that command and where its value
    comes from; without, the configuration file's settings and the PROTOCOLCHECK_* environment."""
    root = ctx.find_root()
    group = root.command
    assert isinstance(group, click.Group)
    config: SiteConfig = root.obj if isinstance(root.obj, SiteConfig) else SiteConfig(None)
    if command is not None:
        if command not in group.commands or command == "config":
            raise click.UsageError(f"no command {command!r}; one of: {', '.join(sorted(group.commands))}")
        rows = effective(group, config, command)
        if as_json:
            click.echo(json.dumps({key: {"value": value, "from": source} for key, value, source in rows},
                                  indent=2, default=str))
            return
        width = max(len(key) for key, _v, _s in rows)
        for key, value, source in rows:
            click.echo(f"{key:<{width}}  {_shown(value):<40}  {source}")
        return
    environment = {k: ("(set)" if any(w in k for w in SECRET_WORDS) else v)
                   for k, v in sorted(os.environ.items()) if k.startswith("PROTOCOLCHECK_")}
    data: dict[str, Any] = {
        "file": str(config.path) if config.path else None,
        "searched": ["--config", f"${CONFIG_ENV}", str(SYSTEM_CONFIG)],
        "settings": [{"section": s.command, "key": s.key, "value": s.value, "from": f"{config.path}:{s.line}"}
                     for s in config.settings],
        "environment": environment,
    }
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
        return
    searched = f"none (searched --config, ${CONFIG_ENV}, {SYSTEM_CONFIG})"
    click.echo(f"configuration file: {config.path or searched}")
    for setting in data["settings"]:
        click.echo(f"  [{setting['section']}] {setting['key']} = {_shown(setting['value'])}   ({setting['from']})")
    click.echo("environment:" + ("" if environment else " no PROTOCOLCHECK_* variables set"))
    for key, value in environment.items():
        click.echo(f"  {key}={value}")
    click.echo("options given on the command line win over both; `protocolcheck config show COMMAND` lists "
               "every option of a command with its source")


def _shown(value: Any) -> str:
    return json.dumps(value, default=str) if not isinstance(value, str) else value
