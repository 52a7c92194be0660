"""Render records as a table, CSV or JSON (pandas for the tabular forms)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any

from protocolcheck.clinical.findings import json_default

if TYPE_CHECKING:  # pandas costs ~0.6 s to import: only table/CSV output needs it
    import pandas as pd


class OutputFormat(str, Enum):
    TABLE = "table"
    CSV = "csv"
    JSON = "json"


def to_json(records: Any) -> str:
    """Pretty JSON; dates and enums become strings."""
    return json.dumps(records, indent=2, default=json_default, ensure_ascii=False) + "\n"


def frame(records: Sequence[dict[str, Any]], columns: Sequence[str]) -> pd.DataFrame:
    """A DataFrame of the chosen columns (lists flattened to '|'-joined text)."""
    import pandas as pd

    rows = [{c: _cell(r.get(c)) for c in columns} for r in records]
    return pd.DataFrame(rows, columns=list(columns))


def _cell(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return "|".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, default=json_default)
    if isinstance(value, Enum):
        return value.value
    return value


def to_csv(records: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    return frame(records, columns).to_csv(index=False)


def to_table(records: Sequence[dict[str, Any]], columns: Sequence[str], headers: dict[str, str] | None = None,
             widths: dict[str, int] | None = None) -> str:
    """A plain-text table; text columns are cut to ``widths`` so it stays readable at 100 columns."""
    df = frame(records, columns).fillna("")
    widths = widths or {}
    for column, width in widths.items():
        if column in df:
            df[column] = df[column].astype(str).map(lambda s, w=width: s if len(s) <= w else s[: w - 1] + "…")
    if headers:
        df = df.rename(columns=headers)
    if df.empty:
        return "(nothing)\n"
    return df.to_string(index=False) + "\n"
