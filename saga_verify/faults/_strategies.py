"""Hypothesis strategies for fault plans, for users who write their own ``@given`` tests."""

from __future__ import annotations

from hypothesis import strategies as st

from .._saga import Saga
from ..errors import OptionError
from ._alphabet import alphabet
from ._kinds import DeliveryPoint, Fault
from ._plan import FaultPlan


def fault_plans(saga: Saga, *, max_faults: int = 3, max_attempt: int = 3) -> st.SearchStrategy[FaultPlan]:
    """Plans of at most ``max_faults`` faults over the saga's operations and attempts 1 to
    ``max_attempt``. Few faults are likelier than many, and a failing plan shrinks by dropping
    faults and moving each towards the simplest kind, the earliest operation and attempt."""
    for name, value in (("max_faults", max_faults), ("max_attempt", max_attempt)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise OptionError(f"fault_plans(): {name} must be a whole number >= 1, got {value!r}")
    table = alphabet(saga)
    ops = sorted(table)

    @st.composite
    def one_fault(draw: st.DrawFn) -> Fault:
        participant, operation = draw(st.sampled_from(ops))
        attempt = draw(st.integers(1, max_attempt))
        template = draw(st.sampled_from(table[(participant, operation)]))
        return template.at(DeliveryPoint(participant, operation, attempt))

    faults = st.lists(one_fault(), max_size=max_faults, unique_by=lambda f: f.at)
    return faults.map(lambda fs: FaultPlan(tuple(sorted(fs, key=lambda f: f.at)), saga=saga.name, saga_ref=saga.ref))
