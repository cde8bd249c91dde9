"""Where invariants live: the built-in saga invariants and the means to write your own."""

from ._builtin import (
    all_or_nothing,
    compensation_matches_effect,
    forward_order,
    full_compensation,
    invariants_for,
    irreversible_last,
    no_double_effect,
    no_forward_after_compensation,
    no_unhandled_error,
    reverse_compensation_order,
    standard_invariants,
    terminates,
)
from ._choreography import choreography_invariants, correlated_events, dead_letters_are_poison, nothing_lost, settles
from ._core import Invariant, Violation, check, invariant
from ._durable import compensation_resumed, saga_owned
from ._time import retry_budget, within_deadline

__all__ = [
    "Invariant",
    "Violation",
    "all_or_nothing",
    "check",
    "choreography_invariants",
    "compensation_matches_effect",
    "compensation_resumed",
    "correlated_events",
    "dead_letters_are_poison",
    "forward_order",
    "full_compensation",
    "invariant",
    "invariants_for",
    "irreversible_last",
    "no_double_effect",
    "nothing_lost",
    "no_forward_after_compensation",
    "no_unhandled_error",
    "retry_budget",
    "reverse_compensation_order",
    "saga_owned",
    "settles",
    "standard_invariants",
    "terminates",
    "within_deadline",
]
