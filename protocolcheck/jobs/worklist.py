"""``worklist``'s loop: each scheduled procedure step checked as an order (right exam, right time, protocol).

The clinical context of a step is its context CSV row (by accession number) over what the worklist
item itself says (:func:`~protocolcheck.net.mwl.order_context`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from protocolcheck.clinical.context import ContextTable
from protocolcheck.clinical.recommend import OrderCheck, Rules, check_order
from protocolcheck.net.mwl import WorklistItem, order_context


@dataclass(frozen=True)
class CheckedStep:
    """One scheduled procedure step and its order check; ``record`` is its output row."""

    item: WorklistItem
    check: OrderCheck
    record: dict[str, Any]


def check_worklist(items: Iterable[WorklistItem], rules: Rules,
                   contexts: ContextTable | None = None) -> Iterator[CheckedStep]:
    """Check every item as an order, in worklist order."""
    for item in items:
        context = order_context(item, contexts)
        check = check_order(item.procedure, context, item.procedure_code, item.scheduled, rules=rules)
        scenario = check.recommendation.scenario if check.recommendation else None
        trauma = scenario.trauma_date if scenario else context.trauma_date  # given, or read from the item's text
        record = {**item.to_dict(), "indication": context.indication,
                  "trauma_date": trauma.isoformat() if trauma else None,
                  "context_source": context.source, **check.to_dict(rules)}
        record["scheduled_date"] = item.to_dict()["scheduled_date"]
        yield CheckedStep(item, check, record)
