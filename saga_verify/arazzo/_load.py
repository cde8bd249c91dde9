"""An Arazzo workflow as a `Saga`: its forward steps with the compensating steps that undo them, the
services it calls (a `System` reached over HTTP), the hooks of the refuse and crash faults, and
the run that follows the document; the static checks stand before it."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from .._saga import Saga, Step
from .._system import System
from ..errors import SagaDefinitionError
from ._checks import Finding, run_checks
from ._document import ArazzoError, Workflow, fail, read_workflow
from ._graph import shape
from ._runner import WorkflowRun


class WorkflowCheckError(ArazzoError):
    """The static checks found something wrong with a workflow; ``findings`` lists them."""

    def __init__(self, workflow: Workflow, findings: tuple[Finding, ...]) -> None:
        lines = "\n".join(f"  - {f}" for f in findings)
        super().__init__(
            f"workflow {workflow.id!r} of {workflow.file} fails {len(findings)} static check{'s' if len(findings) != 1 else ''}:\n{lines}"
        )
        self.findings = findings


def check(source: str | Path, workflow: str | None = None, *, input: Any = None) -> tuple[Finding, ...]:
    """The static checks of one workflow of an Arazzo document (``source`` is its path, or
    ``path#workflowId``), before anything runs. Raises `ArazzoError` for a document that cannot be
    read; returns the findings (empty when it passes)."""
    read = read_workflow(source, workflow)
    return run_checks(read, input if input is not None else read.example_input)


def load(
    source: str | Path,
    workflow: str | None = None,
    *,
    participants: System | Callable[[], System] | None = None,
    input: Any = None,
    hooks: Iterable[Step] | None = None,
    strict: bool = True,
    name: str | None = None,
    ref: str | None = None,
) -> Saga:
    """The saga one workflow of an Arazzo document describes (``source`` is its path, or
    ``path#workflowId``; ``workflow`` names it when the document holds several).

    ``participants`` is the `System` whose services the workflow's source descriptions name
    (default: the one the document's ``x-saga-verify.participants`` names, as
    ``package.module:attribute``); its services must be reached over HTTP on every runtime used.
    ``input`` is the workflow's inputs (default: the first of its inputs schema's ``examples``).
    ``hooks`` are `Step` values whose ``refuse=`` and ``restart=`` hooks the workflow's steps of the
    same participant and action take (default: ``x-saga-verify.hooks``). With ``strict`` (the
    default) a workflow that fails a static check raises `WorkflowCheckError`."""
    read = read_workflow(source, workflow)
    if input is None:
        input = read.example_input
    _check_input(read, input)
    if strict:
        findings = run_checks(read, input)
        if findings:
            raise WorkflowCheckError(read, findings)
    found = shape(read)
    system = _system(read, participants)
    hooked = {(s.participant, s.action): s for s in (_hooks(read, hooks) or ())}
    steps = []
    for step_id in found.forward:
        step = read.step(step_id)
        compensation = found.compensation.get(step_id)
        undo = read.step(compensation).operation if compensation else None
        hook = hooked.pop((step.operation.source, step.operation.operation_id), None)
        if hook is not None and hook.compensation != (undo.operation_id if undo else None):
            raise fail(
                read.file,
                f"the hooks give {hook} the compensation {hook.compensation!r}; the workflow undoes it with "
                f"{undo.operation_id if undo else 'nothing'!r}",
                step=step_id,
            )
        steps.append(
            _step(read, step_id, step.operation.source, step.operation.operation_id, undo.operation_id if undo else None, hook)
        )
    if hooked:
        raise fail(read.file, f"the hooks name {', '.join(map(str, hooked.values()))}, which no forward step of workflow {read.id!r} calls")
    _check_routes(read, system)
    try:
        return Saga(name or read.id, steps=steps, participants=system, run=WorkflowRun(read, found), input=input, ref=ref)
    except SagaDefinitionError as exc:
        raise fail(read.file, f"workflow {read.id!r} does not make a saga: {exc}") from None


def _step(read: Workflow, step_id: str, participant: str, action: str, compensation: str | None, hook: Step | None) -> Step:
    try:
        return Step(participant, action, compensation, refuse=hook.refuse if hook else None, restart=hook.restart if hook else None)
    except SagaDefinitionError as exc:
        raise fail(read.file, str(exc), step=step_id) from None


def _check_input(read: Workflow, value: Any) -> None:
    if not read.inputs:
        return
    import jsonschema  # type: ignore[import-untyped]

    errors = sorted(jsonschema.Draft202012Validator(read.inputs).iter_errors(value), key=lambda e: list(e.absolute_path))
    if errors:
        where = "/".join(str(p) for p in errors[0].absolute_path)
        shown = "no input (give input=, or examples in the inputs schema)" if value is None else f"input {value!r}"
        raise fail(read.file, f"workflow {read.id!r} gets {shown}, which does not match its inputs schema{' at ' + where if where else ''}: {errors[0].message}")


def _named(read: Workflow, key: str) -> Any:
    """What ``x-saga-verify.<key>`` names, imported (``package.module:attribute``)."""
    text = read.binding.get(key)
    if text is None:
        return None
    if not isinstance(text, str) or ":" not in text:
        raise fail(read.file, f"x-saga-verify.{key} must name package.module:attribute, got {text!r}")
    module_name, _, attribute = text.partition(":")
    try:
        value: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise fail(read.file, f"x-saga-verify.{key} names {text!r}, but module {module_name!r} does not import ({exc})") from None
    for part in attribute.split("."):
        if not hasattr(value, part):
            raise fail(read.file, f"x-saga-verify.{key} names {text!r}, but {module_name!r} has no {attribute!r}")
        value = getattr(value, part)
    return value


def _system(read: Workflow, given: System | Callable[[], System] | None) -> System:
    value: Any = given if given is not None else _named(read, "participants")
    if value is None:
        raise fail(
            read.file,
            f"workflow {read.id!r} calls {', '.join(read.sources)}, but nothing says where they run: pass participants=System(...) "
            "or name one in the document's x-saga-verify.participants",
        )
    if not isinstance(value, System) and callable(value):
        value = value()
    if not isinstance(value, System):
        raise fail(read.file, f"the participants of workflow {read.id!r} must be a saga_verify.System, got {type(value).__name__}")
    return value


def _hooks(read: Workflow, given: Iterable[Step] | None) -> list[Step] | None:
    value: Any = given if given is not None else _named(read, "hooks")
    if value is None:
        return None
    if callable(value) and not isinstance(value, Iterable):
        value = value()
    steps = list(value) if isinstance(value, Iterable) else None
    if steps is None or not all(isinstance(s, Step) for s in steps):
        raise fail(read.file, f"the hooks of workflow {read.id!r} must be saga_verify.Step values, got {value!r}")
    return steps


def _check_routes(read: Workflow, system: System) -> None:
    """Each operation the workflow calls must be the route its service declares for it: the
    harness names a delivery by the route a request matches."""
    for step in read.steps:
        operation = step.operation
        service = system.services.get(operation.source)
        if service is None:
            raise fail(
                read.file,
                f"calls source {operation.source!r}, which the System does not declare (it declares {', '.join(system.services)})",
                step=step.id,
            )
        routes: Mapping[str, str] = service.routes or {}
        declared = routes.get(operation.operation_id)
        if declared is not None and declared != operation.route:
            raise fail(
                read.file,
                f"calls {operation}, but service {operation.source!r} declares {operation.operation_id!r} as {declared!r}",
                step=step.id,
            )
