"""Rewrite the classifier's decision and threshold tables in README.md from the code.

    python tools/decision_table.py            # rewrite README.md in place
    python tools/decision_table.py --print    # print the Markdown instead
"""

from __future__ import annotations

import sys
from pathlib import Path

from protocolcheck.classify.table import markdown, write_readme

README = Path(__file__).resolve().parent.parent / "README.md"

if __name__ == "__main__":
    if "--print" in sys.argv[1:]:
        print(markdown())
    else:
        print("README.md " + ("updated" if write_readme(README) else "unchanged"))
