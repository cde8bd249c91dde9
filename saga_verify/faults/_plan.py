"""Fault plans: the list of faults for one execution, as data that prints, saves and replays."""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._files import write_atomically
from ..errors import PlanError
from ._kinds import (
    COORDINATOR_CRASHES,
    EVENT_KINDS,
    FAULT_KINDS,
    POINT_PATTERN,
    Corrupt,
    Crash,
    DeliveryPoint,
    Fault,
    Outage,
    Refuse,
    Switch,
    fault_from_json,
)

if TYPE_CHECKING:
    from .._saga import Saga

_PLAN_VERSION = 2
PLAN_FORMAT = f"saga-verify/plan@{_PLAN_VERSION}"
#: Plans written before a plan named its saga by name: ``saga`` is where it lives, if anything.
_OLDER_FORMAT = "saga-verify/plan@1"
_REF_PATTERN = r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$"


@dataclass(frozen=True)
class FaultPlan:
    """The faults of one execution, in delivery order; everything else is delivered normally."""

    faults: tuple[Fault, ...] = ()
    """At most one fault per delivery point."""
    seed: int = 0
    """Seeds the world's private random source (network latency jitter)."""
    saga: str | None = None
    """The name of the saga the plan is for: a replay against another saga is refused."""
    saga_ref: str | None = None
    """Where that saga lives, ``"package.module:attribute"``, so a plan file replays on its own."""
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
        if self.saga is not None and (not isinstance(self.saga, str) or not self.saga.strip()):
            raise PlanError(f"saga must be the saga's name, got {self.saga!r}")
        if self.saga_ref is not None and (not isinstance(self.saga_ref, str) or not re.match(_REF_PATTERN, self.saga_ref)):
            raise PlanError(f"saga ref must look like 'package.module:attribute', got {self.saga_ref!r}")

    def __len__(self) -> int:
        return len(self.faults)

    def __str__(self) -> str:
        if not self.faults:
            return "no faults"
        return "; ".join(str(f) for f in self.faults)

    def for_saga(self, saga: Saga) -> FaultPlan:
        """The same faults, named as ``saga``'s plan."""
        return FaultPlan(self.faults, seed=self.seed, saga=saga.name, saga_ref=saga.ref, violated=self.violated)

    # -- JSON --------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"format": PLAN_FORMAT}
        named = {"name": self.saga, "ref": self.saga_ref}
        if self.saga is not None or self.saga_ref is not None:
            data["saga"] = {k: v for k, v in named.items() if v is not None}
        data["seed"] = self.seed
        data["faults"] = [f.to_json() for f in self.faults]
        if self.violated:
            data["violated"] = list(self.violated)
        return data

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, data: object, *, source: str = "plan") -> FaultPlan:
        """Read a plan file's JSON; what `plan_schema` rejects, this rejects too, naming why."""
        if not isinstance(data, dict):
            raise PlanError(f"{source}: a plan is a JSON object with 'faults', got {type(data).__name__}")
        for name in _REQUIRED:
            if name not in data:
                raise PlanError(f"{source}: missing {name!r} ({_FIELDS[name][1]})")
        fmt = data.get("format", PLAN_FORMAT)
        if fmt not in (PLAN_FORMAT, _OLDER_FORMAT):
            newer = re.fullmatch(r"saga-verify/plan@([0-9]+)", fmt) if isinstance(fmt, str) else None
            if newer and int(newer.group(1)) > _PLAN_VERSION:
                raise PlanError(
                    f"{source}: written in plan format {fmt!r}, newer than this saga-verify reads "
                    f"({PLAN_FORMAT!r}); upgrade saga-verify to use it"
                )
            raise PlanError(f"{source}: unknown plan format {fmt!r}; this version reads {PLAN_FORMAT!r} (and {_OLDER_FORMAT!r})")
        extra = set(data) - set(_FIELDS)
        if extra:
            raise PlanError(f"{source}: unknown field(s) {sorted(extra)}; a plan has {sorted(_FIELDS)}")
        faults = data["faults"]
        if not isinstance(faults, list):
            raise PlanError(f"{source}: 'faults' must be a list, got {type(faults).__name__}")
        saga_name, saga_ref = _read_saga(data.get("saga"), fmt, source)
        violated = data.get("violated", [])
        if not isinstance(violated, list) or not all(isinstance(v, str) for v in violated):
            raise PlanError(f"{source}: 'violated' must be a list of invariant names")
        parsed = tuple(fault_from_json(f, f"{source}: faults[{i}]") for i, f in enumerate(faults))
        seed = data.get("seed", 0)
        if isinstance(seed, float) and seed.is_integer():
            seed = int(seed)  # JSON has one kind of number: 7.0 is the whole number 7
        try:
            return cls(parsed, seed=seed, saga=saga_name, saga_ref=saga_ref, violated=tuple(violated))
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
        """Raise PlanError if the plan is another saga's, a fault names a participant or
        operation the saga does not have, or refuses or crashes where no step says how."""
        if self.saga is not None and self.saga != saga.name:
            raise PlanError(
                f"this plan is for saga {self.saga!r}, not {saga.name!r}: replay it against {self.saga!r}"
                + (f" ({self.saga_ref})" if self.saga_ref else "")
            )
        operations = saga.operations
        events = saga.events
        for fault in self.faults:
            key = (fault.at.participant, fault.at.operation)
            if key in events:
                if fault.kind not in EVENT_KINDS:
                    raise PlanError(
                        f"plan puts {fault.kind} at {fault.at}, an event's arrival: an event can only be dropped, "
                        "duplicated, delayed, or lost from then on (outage)"
                    )
                continue
            if fault.kind == "drop":
                raise PlanError(
                    f"plan drops {fault.at}, which is no event of saga {saga.name!r}: drop is for events "
                    "(a Step's events=); a call that is not delivered is 'fail'"
                )
            if key not in operations:
                names = [f"{p}.{o}" for p, o in sorted(operations)] + [f"{p}.{e} (event)" for p, e in events]
                wanted = f"{key[0]}.{key[1]}"
                hint = difflib.get_close_matches(wanted, names, n=1)
                suggestion = f" (did you mean {hint[0]}?)" if hint else ""
                raise PlanError(
                    f"plan names {wanted}, which saga {saga.name!r} does not have{suggestion}; "
                    f"its operations are: {', '.join(names)}"
                )
            if isinstance(fault, Corrupt) and (saga.choreography is None or not saga.choreography.handles(*key)):
                raise PlanError(
                    f"plan corrupts {fault.at}, which is no delivery of a message to a choreography's handler; "
                    "corrupt is for where a Handler receives a message"
                )
            if isinstance(fault, Switch) and not saga.actors:
                raise PlanError(
                    f"plan puts a switch at {fault.at}, but saga {saga.name!r} has no other actors to switch to; "
                    "declare them with Saga(actors=(Actor(...), ...)) or use another fault kind"
                )
            if isinstance(fault, Crash) and key[0] not in saga.restartable:
                raise PlanError(
                    f"plan crashes {fault.at}, but no step of {key[0]} declares how it restarts; "
                    "give its Step a restart= hook or use another fault kind"
                )
            if isinstance(fault, COORDINATOR_CRASHES) and saga.durable is None:
                raise PlanError(
                    f"plan crashes the coordinator at {fault.at}, but saga {saga.name!r} declares no durable store "
                    "to recover from; give the Saga durable=Durable(store=..., recover=...) or use another fault kind"
                )
            if isinstance(fault, COORDINATOR_CRASHES) and saga.actors and saga.is_async:
                raise PlanError(
                    f"plan crashes the coordinator at {fault.at}, but saga {saga.name!r} runs several async actors, and a "
                    "coordinator crash among async actors is not supported yet (plain-Python actors take it)"
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
        return FaultPlan(tuple(faults), seed=self.seed, saga=self.saga, saga_ref=self.saga_ref)


#: A plan file's fields: name -> (required, what it holds, its JSON Schema). The loader and
#: `plan_schema` both read this table, so the published schema cannot drift from the loader.
_FIELDS: dict[str, tuple[bool, str, dict[str, Any]]] = {
    "format": (False, f"the plan-file format; {PLAN_FORMAT} when absent", {"enum": [PLAN_FORMAT, _OLDER_FORMAT]}),
    "saga": (
        False,
        "the saga the plan is for: its name, and where it lives",
        {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "minLength": 1, "description": "the saga's name"},
                "ref": {"type": "string", "pattern": _REF_PATTERN, "description": "package.module:attribute of the saga"},
            },
        },
    ),
    "seed": (False, "seeds the world's private random source; 0 when absent", {"type": "integer"}),
    "faults": (True, "the faults, at most one per delivery point", {"type": "array"}),
    "violated": (False, "invariants the plan broke when it was saved", {"type": "array", "items": {"type": "string"}}),
}
_REQUIRED = tuple(name for name, (required, _, _) in _FIELDS.items() if required)


def _read_saga(value: object, fmt: object, source: str) -> tuple[str | None, str | None]:
    if value is None:
        return None, None
    if fmt == _OLDER_FORMAT:
        # An older plan named only where its saga lives.
        if not isinstance(value, str) or not re.match(_REF_PATTERN, value):
            raise PlanError(f"{source}: 'saga' must be text like 'package.module:attribute', got {value!r}")
        return None, value
    if not isinstance(value, dict) or not value:
        raise PlanError(f"{source}: 'saga' must be an object with the saga's 'name' and where it lives ('ref'), got {value!r}")
    extra = set(value) - {"name", "ref"}
    if extra:
        raise PlanError(f"{source}: 'saga' takes 'name' and 'ref', not {sorted(extra)}")
    name = value.get("name")
    if name is not None and (not isinstance(name, str) or not name):
        raise PlanError(f"{source}: saga 'name' must be the saga's name, got {name!r}")
    ref = value.get("ref")
    if ref is not None and (not isinstance(ref, str) or not re.match(_REF_PATTERN, ref)):
        raise PlanError(f"{source}: saga 'ref' must look like 'package.module:attribute', got {ref!r}")
    return name, ref


def plan_schema() -> dict[str, Any]:
    """The JSON Schema of plan files, made from the loader's own field table and the fault kinds:
    ``contracts/plan.schema.json`` is this, written out (``saga-verify plan-schema``)."""
    kinds = [cls.kind for cls in FAULT_KINDS]
    params: dict[str, dict[str, Any]] = {}
    conditions = []
    for cls in FAULT_KINDS:
        names = [f.name for f in fields(cls) if f.name != "at"]
        for name in names:
            params[name] = {"type": "number", "minimum": 0}
        others = sorted({f.name for k in FAULT_KINDS for f in fields(k)} - {"at", *names})
        if others:
            conditions.append({"if": {"properties": {"kind": {"const": cls.kind}}}, "then": {"not": {"anyOf": [{"required": [o]} for o in others]}}})
    fault = {
        "type": "object",
        "required": ["kind", "at"],
        "additionalProperties": False,
        "properties": {
            "kind": {"enum": kinds},
            "at": {"type": "string", "pattern": POINT_PATTERN, "description": "participant.operation#attempt (attempt 1 when left out)"},
            **dict(sorted(params.items())),
        },
        "allOf": conditions,
    }
    properties = {name: {**schema, "description": what} for name, (_, what, schema) in _FIELDS.items()}
    properties["faults"] = {**properties["faults"], "items": fault}
    # Its shape depends on the format (see allOf): an object now, where it lives in plan@1.
    properties["saga"] = {"description": "the saga the plan is for (in plan@1: where it lives, package.module:attribute)"}
    older_saga = {"type": "string", "pattern": _REF_PATTERN}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": PLAN_FORMAT,
        "title": "saga-verify fault plan",
        "description": "The faults of one execution, as written by a search and read by `saga-verify replay`.",
        "type": "object",
        "required": list(_REQUIRED),
        "additionalProperties": False,
        "properties": properties,
        "allOf": [
            {
                "if": {"required": ["format"], "properties": {"format": {"const": _OLDER_FORMAT}}},
                "then": {"properties": {"saga": older_saga}},
                "else": {"properties": {"saga": _FIELDS["saga"][2]}},
            }
        ],
    }
