"""Render records as a table, CSV or JSON (pandas for the tabular forms), and make text from headers
safe for where it goes: CSV cells that a spreadsheet would run as formulas are neutralised
(:func:`csv_safe`), control characters are escaped for terminals and logs (:func:`printable`) and
characters XML cannot hold are dropped (:func:`xml_safe`)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any

from protocolcheck.clinical.findings import json_default
from protocolcheck.logs import printable

if TYPE_CHECKING:  # pandas costs ~0.6 s to import: only table/CSV output needs it
    import pandas as pd


class OutputFormat(str, Enum):
    TABLE = "table"
    CSV = "csv"
    JSON = "json"


def to_json(records: Any) -> str:
    """Pretty JSON; dates and enums become strings."""
    return json.dumps(records, indent=2, default=json_default, ensure_ascii=False) + "\n"


# Spreadsheets run a cell that starts with = + - @ as a formula (=HYPERLINK(...), =cmd|' /C calc'!A0), and
# tab / CR can hide such a start (OWASP "CSV injection"): such text cells get a leading apostrophe.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# Characters XML 1.0 cannot hold at all (not even escaped): C0 controls other than tab, LF, CR; lone
# surrogates; U+FFFE and U+FFFF.
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def csv_safe(value: Any) -> Any:
    """``value`` as a CSV cell a spreadsheet will show, not run: text starting with = + - @, tab or CR
    gets a leading apostrophe (numbers are left as they are)."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def csv_safe_frame(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` with every text cell passed through :func:`csv_safe` (column names too)."""
    import pandas as pd  # noqa: PLC0415 - deferred (see TYPE_CHECKING above)

    out = df.copy()
    for column in out.columns:
        if not pd.api.types.is_numeric_dtype(out[column].dtype):  # object, or pandas' string dtypes
            out[column] = out[column].map(csv_safe)
    out.columns = [csv_safe(str(c)) for c in out.columns]
    return out


def xml_safe(text: str) -> str:
    """``text`` without the characters XML 1.0 cannot hold (``\\x01``, ``\\x0b``...), so the document stays
    well-formed; everything else is escaped by the XML writer."""
    return _XML_INVALID.sub("", text)


def frame(records: Sequence[dict[str, Any]], columns: Sequence[str]) -> pd.DataFrame:
    """A DataFrame of the chosen columns (lists flattened to '|'-joined text)."""
    import pandas as pd  # noqa: PLC0415 - loaded only when a frame is built (start-up time of every command)

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
    """CSV of the chosen columns, every text cell passed through :func:`csv_safe`."""
    return csv_safe_frame(frame(records, columns)).to_csv(index=False)


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
    df = df.map(lambda v: printable(v) if isinstance(v, str) else v)
    return df.to_string(index=False) + "\n"
