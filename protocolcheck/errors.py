"""The errors protocolcheck raises for the user to act on; the CLI maps them to exit codes in one place
(:func:`protocolcheck.cli.options.exit_code_for`).

Every error carries ``problems``: each one complete enough to act on (file, line, key, peer, fix).
:class:`InputError` means the input cannot be used (exit 2); :class:`RunError` that the run cannot be
done here and now (results store, job lock, network peer, cluster: exit 3). Each concrete error also
keeps the built-in base callers may already catch (``ValueError``, ``RuntimeError``, ``ImportError``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar


class ProtocolcheckError(Exception):
    """Base of protocolcheck's errors; ``problems`` lists every problem, ``str()`` joins them by lines."""

    headline: ClassVar[str] = ""  # what cannot be done, shown above the list of problems ("" = none)

    def __init__(self, problems: str | Sequence[str]) -> None:
        self.problems: list[str] = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))

    def describe(self) -> str:
        """The headline and every problem, for a person (one problem per indented line)."""
        if not self.headline:
            return "\n  ".join(self.problems)
        count = len(self.problems)
        return f"{self.headline} ({count} problem{'s' if count != 1 else ''}):\n  " + "\n  ".join(self.problems)


class InputError(ProtocolcheckError):
    """The input cannot be used: a protocol, rules or context file, an option value, a scenario."""


class RunError(ProtocolcheckError):
    """The run cannot be done here and now: the results store, the job lock, a network peer, the cluster."""
