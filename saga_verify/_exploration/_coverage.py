"""What a search covered: for each fault kind and each operation of the saga, how many executed
plans put that fault there and how many of those broke an invariant. The search records every
execution it checks (database replay, sweep, Hypothesis, shrinking) with a few dict updates."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from .._saga import Saga
from ..faults import FAULT_KINDS, Fault
from ..faults._alphabet import alphabet


class Cell(NamedTuple):
    """One fault kind at one operation."""

    plans: int
    """Executed plans that put this fault at this operation (at any attempt)."""
    broke: int
    """How many of those broke an invariant."""
    searched: bool
    """Whether the search may put this kind here at all: a refusal needs the step's ``refuse=``
    hook, a crash its ``restart=`` hook, a pause ``Saga(pauses=True)``."""

    @property
    def never_tried(self) -> bool:
        """The search could have put this fault here and no plan did."""
        return self.searched and self.plans == 0


class Coverage:
    """Counts, per (participant, operation, fault kind), the plans that put that fault there."""

    __slots__ = ("_counts", "_searched", "broken", "executions", "saga")

    def __init__(self, saga: Saga) -> None:
        self.saga = saga
        #: (participant, operation, kind) -> [plans, of which broke an invariant]
        self._counts: dict[tuple[str, str, str], list[int]] = {}
        self._searched: frozenset[tuple[str, str, str]] | None = None
        #: Executions recorded, and how many of them broke an invariant.
        self.executions = 0
        self.broken = 0

    def record(self, faults: tuple[Fault, ...], broke: bool) -> None:
        """Note one checked execution: the faults it injected, and whether it broke anything."""
        self.executions += 1
        if broke:
            self.broken += 1
        if not faults:
            return
        keys: Iterable[tuple[str, str, str]]
        if len(faults) == 1:
            at = faults[0].at
            keys = ((at.participant, at.operation, faults[0].kind),)
        else:
            # A plan counts once per cell, however many attempts of the operation it disturbs.
            keys = {(f.at.participant, f.at.operation, f.kind) for f in faults}
        counts = self._counts
        for key in keys:
            cell = counts.get(key)
            if cell is None:
                counts[key] = [1, 1 if broke else 0]
            else:
                cell[0] += 1
                if broke:
                    cell[1] += 1

    # -- reading -------------------------------------------------------------------------------
    @property
    def kinds(self) -> tuple[str, ...]:
        """Every fault kind, simplest first (the rows of the matrix); ``switch`` only for a saga
        with several actors, ``corrupt`` only for a choreography, the only ones they can happen in."""
        return tuple(
            k.kind
            for k in FAULT_KINDS
            if (k.kind != "switch" or self.saga.actors) and (k.kind != "corrupt" or self.saga.choreography is not None)
        )

    @property
    def operations(self) -> tuple[tuple[str, str], ...]:
        """The saga's operations in step order, each action before its compensation, then the
        events its participants send (the columns)."""
        return (*((participant, op) for participant, ops in self.saga.layout for _step, op, _slot in ops), *self.saga.events)

    def is_compensation(self, participant: str, operation: str) -> bool:
        return any(s.participant == participant and s.compensation == operation for s in self.saga.steps)

    def cell(self, kind: str, participant: str, operation: str) -> Cell:
        if self._searched is None:
            self._searched = frozenset(
                (participant_, op, t.cls.kind)
                for (participant_, op), templates in alphabet(self.saga).items()
                for t in templates
            )
        plans, broke = self._counts.get((participant, operation, kind), (0, 0))
        return Cell(plans, broke, (participant, operation, kind) in self._searched)

    def never_tried(self) -> list[str]:
        """``"refuse at payment.charge"`` for each cell the search could try and no plan did."""
        return [
            f"{kind} at {participant}.{operation}"
            for kind in self.kinds
            for participant, operation in self.operations
            if self.cell(kind, participant, operation).never_tried
        ]

    def to_json(self) -> dict[str, Any]:
        """``cells[kind][participant.operation]`` is ``{"plans": N, "broke": M}``, or None where the
        search cannot put that kind and no plan did."""
        cells: dict[str, dict[str, dict[str, int] | None]] = {}
        for kind in self.kinds:
            row: dict[str, dict[str, int] | None] = {}
            for participant, operation in self.operations:
                cell = self.cell(kind, participant, operation)
                row[f"{participant}.{operation}"] = (
                    {"plans": cell.plans, "broke": cell.broke} if cell.searched or cell.plans else None
                )
            cells[kind] = row
        return {
            "executions": self.executions,
            "broke": self.broken,
            "kinds": list(self.kinds),
            "operations": [f"{p}.{o}" for p, o in self.operations],
            "cells": cells,
            "never_tried": self.never_tried(),
        }
