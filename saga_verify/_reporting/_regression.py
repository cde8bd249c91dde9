"""Regression tests from failures: a readable pytest test that replays a plan against the saga it
broke and asserts that the invariants it broke hold now, appended to a test file (as
Hypothesis' ``@example`` pins a case it found)."""

from __future__ import annotations

import hashlib
import json
import re
import textwrap
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

from .._files import write_atomically
from ..errors import OptionError
from ..faults import Fault, FaultPlan

_MARKER = "# saga-verify regression "
_HEADER = '"""Regression tests pinned from saga-verify failures: each replays a plan that once broke an invariant."""\n'


def regression_id(plan: FaultPlan, saga_ref: str) -> str:
    """What identifies a regression: the saga, the seed and the faults, whatever file they came from."""
    canonical = json.dumps({"saga": saga_ref, "seed": plan.seed, "faults": [f.to_json() for f in plan.faults]}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:10]


def _identifier(text: str) -> str:
    return re.sub(r"\W+", "_", text).strip("_").lower() or "saga"


def _literal(value: object) -> str:
    # JSON's double-quoted strings are also Python's; numbers as Python writes them.
    return json.dumps(value) if isinstance(value, str) else repr(value)


def _tuple(names: Sequence[str]) -> str:
    items = ", ".join(_literal(n) for n in names)
    return f"({items},)" if len(names) == 1 else f"({items})"


def _fault_code(fault: Fault) -> str:
    at = fault.at
    params = "".join(f", {f.name}={_literal(getattr(fault, f.name))}" for f in fields(fault)[1:])
    return f"{type(fault).__name__}(DeliveryPoint({_literal(at.participant)}, {_literal(at.operation)}, {at.attempt}){params})"


def regression_test(plan: FaultPlan, *, saga_ref: str, saga_name: str, invariants: Sequence[str], source: str | None = None) -> tuple[str, str]:
    """The name and source of a test that replays ``plan`` against the saga at ``saga_ref`` and
    asserts that ``invariants`` hold (every invariant, when none is named)."""
    module, _, attribute = saga_ref.partition(":")
    if not module or not attribute.isidentifier():
        raise OptionError(f"cannot write a regression test for saga {saga_ref!r}: name it as package.module:attribute")
    rid = regression_id(plan, saga_ref)
    focus = invariants[0] if invariants else "invariants"
    name = f"test_{_identifier(saga_name)}_{_identifier(focus)}_{rid}"
    kinds = sorted({type(f).__name__ for f in plan.faults})
    imports = [
        "    from saga_verify import FaultPlan, replay",
        f"    from saga_verify.faults import {', '.join(['DeliveryPoint', *kinds])}" if kinds else "",
        f"    from {module} import {attribute}" + ("" if attribute == "saga" else " as saga"),
    ]
    faults = "".join(f"            {_fault_code(f)},\n" for f in plan.faults)
    origin = f" (from {source})" if source else ""
    if invariants:
        doc = f"Saga {saga_name!r} broke {', '.join(invariants)} under this plan{origin}; {'they' if len(invariants) > 1 else 'it'} must hold now."
    else:
        doc = f"Saga {saga_name!r} under this plan{origin}: every invariant must hold."
    if invariants:
        check = (
            f"    broken = [str(v) for v in violations if v.invariant in {_tuple(invariants)}]\n"
            '    assert not broken, "\\n".join(broken)\n'
        )
    else:
        check = '    assert not violations, "\\n".join(str(v) for v in violations)\n'
    text = (
        f"{_MARKER}{rid}: {saga_ref} under {plan}\n"
        f"def {name}() -> None:\n"
        + textwrap.fill(
            f'"""{doc}"""',
            width=100,
            initial_indent="    ",
            subsequent_indent="    ",
            break_long_words=False,
            break_on_hyphens=False,
        )
        + "\n"
        + "\n".join(line for line in imports if line)
        + "\n\n"
        + (f"    plan = FaultPlan(\n        (\n{faults}        ),\n        seed={plan.seed},\n    )\n" if plan.faults else f"    plan = FaultPlan(seed={plan.seed})  # no faults{': it broke on a good day' if invariants else ''}\n")
        + "    _execution, violations = replay(saga, plan)\n"
        + check
    )
    return name, text


def append_regression(path: str | Path, plan: FaultPlan, *, saga_ref: str, saga_name: str, invariants: Sequence[str], source: str | None = None) -> str:
    """Append the regression test to ``path`` (created if missing), atomically; return its name.
    Refuse a file that is not Python, cannot be read, or already holds the same regression."""
    target = Path(path)
    if target.suffix != ".py":
        raise OptionError(f"test file {str(target)!r} is not a Python file: give a path ending in .py")
    if target.is_dir():
        raise OptionError(f"test file {str(target)!r} is a folder: give a path ending in .py")
    try:
        existing = target.read_text(encoding="utf-8") if target.exists() else ""
    except (OSError, UnicodeDecodeError) as exc:
        raise OptionError(f"test file {str(target)!r} cannot be read: {exc}") from None
    name, block = regression_test(plan, saga_ref=saga_ref, saga_name=saga_name, invariants=invariants, source=source)
    rid = regression_id(plan, saga_ref)
    for number, line in enumerate(existing.splitlines(), 1):
        if line.startswith(f"{_MARKER}{rid}") or re.match(rf"\s*def {re.escape(name)}\(", line):
            raise OptionError(
                f"test file {str(target)!r} already holds this regression ({name}, line {number}): "
                f"{saga_ref} under {plan}"
            )
    text = (existing.rstrip("\n") + "\n\n\n" if existing.strip() else _HEADER + "\n\n") + block
    try:
        compile(text, str(target), "exec")
    except SyntaxError as exc:
        raise OptionError(f"test file {str(target)!r} is not valid Python (line {exc.lineno}: {exc.msg}); fix it first") from None
    try:
        write_atomically(target, text)
    except OSError as exc:
        raise OptionError(f"test file {str(target)!r} cannot be written: {exc.strerror or exc}") from None
    return name
