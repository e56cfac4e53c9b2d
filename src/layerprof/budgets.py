"""``layerprof.budgets``: the public home of the audit budgets (:mod:`layerprof.analysis.budgets`).

``from layerprof.budgets import assert_within`` is the spelling the README promises for a user's own
test suite; this module keeps it working.
"""

from __future__ import annotations

from layerprof.analysis.budgets import (
    BUDGET_NAMES,
    BudgetName,
    BudgetResult,
    Budgets,
    assert_within,
    check,
    failure_message,
    failures,
    memory_bound_share,
)

__all__ = [
    "BUDGET_NAMES",
    "BudgetName",
    "BudgetResult",
    "Budgets",
    "assert_within",
    "check",
    "failure_message",
    "failures",
    "memory_bound_share",
]
