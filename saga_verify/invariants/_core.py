"""Invariants: named predicates over a finished execution that explain themselves when broken."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

from .._world import Execution
from ..errors import SagaVerifyError


@dataclass(frozen=True)
class Violation:
    """What broke, in words, with the ledger rows and trace entries that show it."""

    message: str
    evidence: tuple[Any, ...] = ()
    """Ledger rows and trace entries a person should look at."""
    invariant: str = ""
    """The invariant's name (filled in by the invariant that reports it)."""

    def __str__(self) -> str:
        return f"{self.invariant}: {self.message}" if self.invariant else self.message


CheckResult = None | bool | str | Violation | Iterable["str | Violation"]


@dataclass(frozen=True)
class Invariant:
    """A named check. ``check(execution)`` returns None or True when it holds; False, a message,
    a `Violation` or several of them when it does not (an ``assert`` inside works too)."""

    name: str
    check: Callable[[Execution], CheckResult] = field(repr=False)
    description: str = ""

    def __call__(self, execution: Execution) -> list[Violation]:
        try:
            result = self.check(execution)
        except AssertionError as exc:
            result = str(exc) or self.description or "assertion failed"
        except Exception as exc:
            raise SagaVerifyError(
                f"invariant {self.name!r} itself raised {type(exc).__name__}: {exc}; "
                "an invariant should return a message (or a Violation) when it is broken"
            ) from exc
        return self._normalise(result)

    def _normalise(self, result: CheckResult) -> list[Violation]:
        if result is None or result is True:
            return []
        if result is False:
            return [Violation(self.description or "does not hold", (), self.name)]
        if isinstance(result, str):
            return [Violation(result, (), self.name)]
        if isinstance(result, Violation):
            return [Violation(result.message, result.evidence, result.invariant or self.name)]
        if isinstance(result, (bytes, dict)) or not isinstance(result, Iterable):
            raise SagaVerifyError(
                f"invariant {self.name!r} returned {result!r}; return None or True when it holds, and "
                "False, a message, a Violation or a list of them when it does not"
            )
        found: list[Violation] = []
        for item in result:
            found.extend(self._normalise(item))
        return found


@overload
def invariant(fn: Callable[[Execution], CheckResult], /) -> Invariant: ...
@overload
def invariant(*, name: str | None = None, description: str | None = None) -> Callable[[Callable[[Execution], CheckResult]], Invariant]: ...
def invariant(
    fn: Callable[[Execution], CheckResult] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
) -> Invariant | Callable[[Callable[[Execution], CheckResult]], Invariant]:
    """Make a function an `Invariant` (usable bare or with ``name=``/``description=``)."""

    def wrap(f: Callable[[Execution], CheckResult]) -> Invariant:
        doc = " ".join((f.__doc__ or "").split())
        return Invariant(name or f.__name__, f, description if description is not None else doc)

    return wrap(fn) if fn is not None else wrap


def check(execution: Execution, invariants: Sequence[Invariant]) -> list[Violation]:
    """Every violation of ``invariants`` in ``execution``, in the order the invariants are given."""
    found: list[Violation] = []
    for inv in invariants:
        found.extend(inv(execution))
    return found
