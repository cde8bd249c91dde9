"""Fault plans: the list of faults for one execution, as data that prints, saves and replays."""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._files import write_atomically
from ..errors import PlanError
from ._kinds import Crash, DeliveryPoint, Fault, Outage, Refuse, fault_from_json

if TYPE_CHECKING:
    from .._saga import Saga

_PLAN_VERSION = 1
PLAN_FORMAT = f"saga-verify/plan@{_PLAN_VERSION}"


@dataclass(frozen=True)
class FaultPlan:
    """The faults of one execution, in delivery order; everything else is delivered normally."""

    faults: tuple[Fault, ...] = ()
    """At most one fault per delivery point."""
    seed: int = 0
    """Seeds the world's private random source (network latency jitter)."""
    saga: str | None = None
    """Where the saga lives, ``"package.module:attribute"``, so a plan file replays on its own."""
    violated: tuple[str, ...] = field(default=(), compare=False)
    """Names of the invariants this plan broke when it was saved (informational)."""

    def __post_init__(self) -> None:
        seen: set[DeliveryPoint] = set()
        for fault in self.faults:
            if not isinstance(fault, Fault):
                raise PlanError(f"a plan holds faults, got {fault!r}")
            if fault.at in seen:
                raise PlanError(f"two faults at {fault.at}: a delivery point takes at most one")
            seen.add(fault.at)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise PlanError(f"seed must be a whole number, got {self.seed!r}")

    def __len__(self) -> int:
        return len(self.faults)

    def __str__(self) -> str:
        if not self.faults:
            return "no faults"
        return "; ".join(str(f) for f in self.faults)

    # -- JSON --------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"format": PLAN_FORMAT}
        if self.saga:
            data["saga"] = self.saga
        data["seed"] = self.seed
        data["faults"] = [f.to_json() for f in self.faults]
        if self.violated:
            data["violated"] = list(self.violated)
        return data

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, data: object, *, source: str = "plan") -> FaultPlan:
        if not isinstance(data, dict):
            raise PlanError(f"{source}: a plan is a JSON object with 'faults', got {type(data).__name__}")
        fmt = data.get("format", PLAN_FORMAT)
        if fmt != PLAN_FORMAT:
            newer = re.fullmatch(r"saga-verify/plan@([0-9]+)", fmt) if isinstance(fmt, str) else None
            if newer and int(newer.group(1)) > _PLAN_VERSION:
                raise PlanError(
                    f"{source}: written in plan format {fmt!r}, newer than this saga-verify reads "
                    f"({PLAN_FORMAT!r}); upgrade saga-verify to use it"
                )
            raise PlanError(f"{source}: unknown plan format {fmt!r}; this version reads {PLAN_FORMAT!r}")
        known = {"format", "saga", "seed", "faults", "violated"}
        extra = set(data) - known
        if extra:
            raise PlanError(f"{source}: unknown field(s) {sorted(extra)}; a plan has {sorted(known)}")
        faults = data.get("faults", [])
        if not isinstance(faults, list):
            raise PlanError(f"{source}: 'faults' must be a list, got {type(faults).__name__}")
        saga = data.get("saga")
        if saga is not None and not isinstance(saga, str):
            raise PlanError(f"{source}: 'saga' must be text like 'package.module:attribute', got {saga!r}")
        violated = data.get("violated", [])
        if not isinstance(violated, list) or not all(isinstance(v, str) for v in violated):
            raise PlanError(f"{source}: 'violated' must be a list of invariant names")
        parsed = tuple(fault_from_json(f, f"{source}: faults[{i}]") for i, f in enumerate(faults))
        try:
            return cls(parsed, seed=data.get("seed", 0), saga=saga, violated=tuple(violated))
        except PlanError as exc:
            raise PlanError(f"{source}: {exc}") from None

    @classmethod
    def loads(cls, text: str, *, source: str = "plan") -> FaultPlan:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PlanError(f"{source}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
        return cls.from_json(data, source=source)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FaultPlan:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise PlanError(f"plan file {str(p)!r} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise PlanError(f"plan file {str(p)!r} cannot be read: {exc}") from None
        return cls.loads(text, source=str(p))

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the plan atomically: a reader sees the old file or the whole new one."""
        p = Path(path)
        write_atomically(p, self.dumps())
        return p

    # -- use ---------------------------------------------------------------------------------
    def validate(self, saga: Saga) -> None:
        """Raise PlanError if a fault names a participant or operation the saga does not have,
        or refuses where the step declares no refusal."""
        operations = saga.operations
        for fault in self.faults:
            key = (fault.at.participant, fault.at.operation)
            if key not in operations:
                names = [f"{p}.{o}" for p, o in sorted(operations)]
                wanted = f"{key[0]}.{key[1]}"
                hint = difflib.get_close_matches(wanted, names, n=1)
                suggestion = f" (did you mean {hint[0]}?)" if hint else ""
                raise PlanError(
                    f"plan names {wanted}, which saga {saga.name!r} does not have{suggestion}; "
                    f"its operations are: {', '.join(names)}"
                )
            if isinstance(fault, Crash) and key[0] not in saga.restartable:
                raise PlanError(
                    f"plan crashes {fault.at}, but no step of {key[0]} declares how it restarts; "
                    "give its Step a restart= hook or use another fault kind"
                )
            if isinstance(fault, Refuse) and key not in saga.refusable:
                raise PlanError(
                    f"plan refuses {fault.at}, but step {key[0]}.{key[1]} declares no refusal; "
                    "give the Step a refuse= hook or use another fault kind"
                )

    def by_point(self) -> tuple[Mapping[tuple[str, str, int], Fault], Mapping[tuple[str, str], Outage]]:
        """Faults keyed for lookup at delivery time, and outages by operation."""
        exact: dict[tuple[str, str, int], Fault] = {}
        outages: dict[tuple[str, str], Outage] = {}
        for f in self.faults:
            if isinstance(f, Outage):
                op = (f.at.participant, f.at.operation)
                if op not in outages or f.at.attempt < outages[op].at.attempt:
                    outages[op] = f
            else:
                exact[(f.at.participant, f.at.operation, f.at.attempt)] = f
        return exact, outages

    def with_faults(self, faults: Iterable[Fault]) -> FaultPlan:
        return FaultPlan(tuple(faults), seed=self.seed, saga=self.saga)
