"""Reading an Arazzo document: parse it, validate it against the specification's JSON Schema, load
the OpenAPI documents it references, resolve each step's operation and parse every runtime
expression and criterion. Anything that cannot be read is an `ArazzoError` naming the file, the
step and the expression; what is read is a `Workflow` of frozen values."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from ..errors import SagaDefinitionError
from ._criteria import ConditionError, Criterion, parse_criterion
from ._expressions import Expression, ExpressionError, parse_expression, parse_value

_SCHEMA = Path(__file__).with_name("schema") / "arazzo-1.0.schema.yaml"
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
#: Methods that change nothing (RFC 9110 "safe"): a step that calls one has no side effect.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
#: Methods whose repeat may apply twice (RFC 9110 "idempotent" excludes them).
NON_IDEMPOTENT_METHODS = frozenset({"POST", "PATCH"})


class ArazzoError(SagaDefinitionError):
    """An Arazzo document that cannot be used: it does not parse or does not validate against the
    specification's schema, an OpenAPI source is missing, an operation is unknown, a runtime
    expression or criterion does not parse. The message names the file, the step and the expression."""


def fail(file: Path | str, problem: str, *, step: str | None = None, at: str | None = None) -> ArazzoError:
    where = str(file)
    if step is not None:
        where += f": step {step!r}"
    if at is not None:
        where += f", {at}"
    return ArazzoError(f"{where}: {problem}")


@dataclass(frozen=True)
class Operation:
    """An OpenAPI operation a step calls."""

    source: str
    """The source description's name (the service that serves it)."""
    operation_id: str
    method: str
    path: str
    spec: Mapping[str, Any] = field(repr=False)
    """The operation object, with its path item's parameters merged in and local refs resolved."""
    document: Mapping[str, Any] = field(repr=False)
    pointer: str = ""
    """Where the operation object sits in ``document`` (a JSON pointer)."""

    @property
    def route(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def side_effect(self) -> bool:
        return self.method not in SAFE_METHODS

    def __str__(self) -> str:
        return f"{self.source}.{self.operation_id} ({self.route})"


@dataclass(frozen=True)
class Action:
    """A success or failure action of a step."""

    name: str
    type: str
    """``end``, ``goto`` or ``retry``."""
    step: str | None = None
    """The step a ``goto`` transfers to."""
    retry_after: float = 0.0
    retry_limit: int = 1
    criteria: tuple[Criterion, ...] = ()


@dataclass(frozen=True)
class Parameter:
    name: str
    location: str
    """``path``, ``query``, ``header`` or ``cookie``."""
    value: Any
    """A literal, an `Expression` or a `Template` (or a structure of them)."""


@dataclass(frozen=True)
class RequestBody:
    content_type: str | None
    payload: Any
    replacements: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class WorkflowStep:
    """One step of the workflow, every expression in it parsed."""

    id: str
    index: int
    operation: Operation
    parameters: tuple[Parameter, ...]
    request_body: RequestBody | None
    success_criteria: tuple[Criterion, ...]
    on_success: tuple[Action, ...]
    on_failure: tuple[Action, ...]
    outputs: Mapping[str, Expression]
    compensates: str | None = None
    """The forward step this one undoes, when the document says so (``x-compensates``)."""

    @property
    def idempotency_key(self) -> Parameter | None:
        """The header that carries its idempotency key, if it sends one."""
        declared = {
            p.get("name", "").lower()
            for p in self.operation.spec.get("parameters", [])
            if isinstance(p, Mapping) and p.get("in") == "header" and "idempotency" in str(p.get("name", "")).lower()
        }
        return next(
            (p for p in self.parameters if p.location == "header" and (p.name.lower() == "idempotency-key" or p.name.lower() in declared)),
            None,
        )


@dataclass(frozen=True)
class Workflow:
    """One workflow of an Arazzo document, read and resolved."""

    file: Path
    id: str
    steps: tuple[WorkflowStep, ...]
    inputs: Mapping[str, Any] = field(repr=False)
    """The JSON Schema of its inputs (empty when it declares none)."""
    sources: Mapping[str, Path] = field(repr=False)
    binding: Mapping[str, Any] = field(repr=False, default_factory=dict)
    """``x-saga-verify`` of the document, overridden by the workflow's: where its services are declared."""

    def step(self, step_id: str) -> WorkflowStep:
        return next(s for s in self.steps if s.id == step_id)

    def after(self, step: WorkflowStep) -> WorkflowStep | None:
        """The step that follows ``step`` in the document (None after the last)."""
        return self.steps[step.index + 1] if step.index + 1 < len(self.steps) else None

    @property
    def example_input(self) -> Any:
        examples = self.inputs.get("examples")
        return examples[0] if isinstance(examples, list) and examples else None


# -- reading ---------------------------------------------------------------------------------------
def _load_file(path: Path, what: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise fail(path, f"{what} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(path, f"{what} cannot be read: {exc}") from None
    if path.suffix == ".json":
        try:
            return json.loads(text)
        except ValueError as exc:
            raise fail(path, f"{what} is not valid JSON: {exc}") from None
    import yaml  # type: ignore[import-untyped]

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise fail(path, f"{what} is not valid YAML{line}: {problem}") from None


@cache
def _arazzo_validator() -> Any:
    import jsonschema  # type: ignore[import-untyped]
    import yaml

    return jsonschema.Draft202012Validator(yaml.safe_load(_SCHEMA.read_text(encoding="utf-8")))


def _location(document: Any, path: list[Any]) -> tuple[str | None, str]:
    """The step (if the path is inside one) and a readable path for a schema error."""
    step = None
    if len(path) >= 4 and path[0] == "workflows" and path[2] == "steps":
        try:
            step = document["workflows"][path[1]]["steps"][path[3]].get("stepId")
        except (LookupError, AttributeError, TypeError):
            step = None
    shown = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")
    return (str(step) if step is not None else None), shown or "the document"


def _validate(path: Path, document: Any) -> None:
    import jsonschema

    if not isinstance(document, Mapping):
        raise fail(path, f"an Arazzo document is a mapping, got {type(document).__name__}")
    if "openapi" in document and "arazzo" not in document:
        raise fail(path, "this is an OpenAPI document, not an Arazzo one (it has no 'arazzo' field)")
    errors = list(_arazzo_validator().iter_errors(document))
    if not errors:
        return
    error = jsonschema.exceptions.best_match(errors)
    deepest = error
    while deepest.context:
        deepest = jsonschema.exceptions.best_match(deepest.context)
    step, shown = _location(document, list(deepest.absolute_path))
    raise fail(path, f"does not validate against the Arazzo 1.0 schema at {shown}: {deepest.message}", step=step)


def read_workflow(source: str | Path, workflow: str | None = None) -> Workflow:
    """Read ``source`` (a path, or ``path#workflowId``) and resolve one of its workflows."""
    text = str(source)
    if workflow is None and "#" in text:
        text, _, workflow = text.rpartition("#")
    path = Path(text)
    document = _load_file(path, "the Arazzo document")
    _validate(path, document)
    workflows = {w["workflowId"]: w for w in document["workflows"]}
    if workflow is None:
        if len(workflows) > 1:
            raise fail(path, f"holds several workflows ({', '.join(workflows)}); name one as {path}#<workflowId>")
        workflow = next(iter(workflows))
    raw = workflows.get(workflow)
    if raw is None:
        raise fail(path, f"has no workflow {workflow!r}; it has {', '.join(workflows)}")
    if raw.get("dependsOn"):
        raise fail(path, f"workflow {workflow!r} depends on other workflows; saga-verify runs one workflow on its own")
    sources = _sources(path, document)
    components = document.get("components") or {}
    operations = _index(sources)
    steps = tuple(_step(path, index, s, raw, sources, operations, components) for index, s in enumerate(raw["steps"]))
    ids = [s.id for s in steps]
    duplicate = next((i for i in ids if ids.count(i) > 1), None)
    if duplicate is not None:
        raise fail(path, "stepId is used twice in the workflow; each step needs its own", step=duplicate)
    for step in steps:
        for action in (*step.on_success, *step.on_failure):
            if action.step is not None and action.step not in ids:
                raise fail(path, f"action {action.name!r} goes to step {action.step!r}, which the workflow does not have", step=step.id)
        if step.compensates is not None and step.compensates not in ids:
            raise fail(path, f"x-compensates names step {step.compensates!r}, which the workflow does not have", step=step.id)
    binding = {**(document.get("x-saga-verify") or {}), **(raw.get("x-saga-verify") or {})}
    inputs = raw.get("inputs") or {}
    if "$ref" in inputs:
        inputs = _component(path, components, inputs["$ref"], None) if isinstance(inputs["$ref"], str) else {}
    return Workflow(path, workflow, steps, inputs, {n: s[0] for n, s in sources.items()}, binding)


def _sources(path: Path, document: Mapping[str, Any]) -> dict[str, tuple[Path, Mapping[str, Any]]]:
    out = {}
    for source in document["sourceDescriptions"]:
        name, url, kind = source["name"], source["url"], source.get("type", "openapi")
        if kind != "openapi":
            raise fail(path, f"source {name!r} is an {kind} description; saga-verify calls OpenAPI operations only")
        if "://" in url:
            raise fail(path, f"source {name!r} is at {url}: saga-verify reads local files only (give a path relative to the document)")
        where = (path.parent / url).resolve()
        if not where.is_file():
            raise fail(path, f"source {name!r}: the OpenAPI document {url} ({where}) does not exist")
        loaded = _load_file(where, f"the OpenAPI document of source {name!r}")
        if not isinstance(loaded, Mapping) or not str(loaded.get("openapi", "")).startswith("3.") or not isinstance(loaded.get("paths"), Mapping):
            raise fail(where, f"the source {name!r} of {path} is not an OpenAPI 3 document (it needs 'openapi: 3.x' and 'paths')")
        out[name] = (where, loaded)
    return out


def local_ref(document: Mapping[str, Any], value: Any) -> Any:
    """Follow a local ``$ref`` of an OpenAPI document (to a parameter, a request body)."""
    seen = 0
    while isinstance(value, Mapping) and isinstance(value.get("$ref"), str) and value["$ref"].startswith("#/") and seen < 20:
        target: Any = document
        for raw in value["$ref"][2:].split("/"):
            token = raw.replace("~1", "/").replace("~0", "~")
            target = target.get(token) if isinstance(target, Mapping) else None
        value, seen = target, seen + 1
    return value


def _index(sources: Mapping[str, tuple[Path, Mapping[str, Any]]]) -> dict[str, list[Operation]]:
    """Every operation of every source, by source."""
    operations: dict[str, list[Operation]] = {}
    for name, (_, document) in sources.items():
        for route, item in document["paths"].items():
            if not isinstance(item, Mapping):
                continue
            for method in _METHODS:
                spec = item.get(method)
                if isinstance(spec, Mapping):
                    operations.setdefault(name, []).append(_make_operation(name, document, route, method, item, spec))
    return operations


def _operation(path: Path, step: Mapping[str, Any], sources: Mapping[str, tuple[Path, Mapping[str, Any]]], operations: Mapping[str, list[Operation]]) -> Operation:
    step_id = step["stepId"]
    if "workflowId" in step:
        raise fail(path, f"calls workflow {step['workflowId']!r}; saga-verify runs operation steps (nested workflows are not supported)", step=step_id)
    if "operationPath" in step:
        return _by_path(path, step_id, step["operationPath"], sources, operations)
    text = step.get("operationId")
    if not isinstance(text, str):
        raise fail(path, "names no operation: give it an operationId or an operationPath", step=step_id)
    wanted, scope = text, list(sources)
    if text.startswith("$"):
        try:
            expression = parse_expression(text)
        except ExpressionError as exc:
            raise fail(path, f"operationId {text!r} does not parse: {exc.problem}", step=step_id) from None
        if expression.root != "sourceDescriptions" or expression.member in (None, "url"):
            raise fail(path, f"operationId {text!r} must be an operationId or $sourceDescriptions.<name>.<operationId>", step=step_id)
        if expression.name not in sources:
            raise fail(path, f"operationId {text!r} names source {expression.name!r}; the document has {', '.join(sources)}", step=step_id)
        wanted, scope = str(expression.member), [str(expression.name)]
    found = [op for name in scope for op in operations.get(name, []) if op.operation_id == wanted]
    if not found:
        known = "; ".join(f"{name} ({sources[name][0].name}): {', '.join(o.operation_id for o in operations.get(name, []))}" for name in scope)
        raise fail(path, f"operationId {wanted!r} is in none of the OpenAPI documents: {known}", step=step_id)
    if len(found) > 1:
        names = ", ".join(op.source for op in found)
        raise fail(path, f"operationId {wanted!r} is in several sources ({names}): write it as $sourceDescriptions.<name>.{wanted}", step=step_id)
    return found[0]


def _make_operation(source: str, document: Mapping[str, Any], route: str, method: str, item: Mapping[str, Any], spec: Mapping[str, Any]) -> Operation:
    merged: dict[tuple[str, str], Any] = {}
    for raw in (*item.get("parameters", []), *spec.get("parameters", [])):
        parameter = local_ref(document, raw)
        if isinstance(parameter, Mapping):
            merged[(str(parameter.get("name")), str(parameter.get("in")))] = parameter
    resolved = {**spec, "parameters": list(merged.values())}
    if "requestBody" in spec:
        resolved["requestBody"] = local_ref(document, spec["requestBody"])
    pointer = "/paths/" + route.replace("~", "~0").replace("/", "~1") + "/" + method
    operation_id = str(spec.get("operationId") or f"{method.upper()} {route}")
    return Operation(source, operation_id, method.upper(), route, resolved, document, pointer)


def _by_path(path: Path, step_id: str, text: Any, sources: Mapping[str, tuple[Path, Mapping[str, Any]]], operations: Mapping[str, list[Operation]]) -> Operation:
    head, hash_, pointer = str(text).partition("#")
    if not (head.startswith("{$") and head.endswith("}")) or not hash_:
        raise fail(path, f"operationPath {text!r} must read '{{$sourceDescriptions.<name>.url}}#<JSON pointer to the operation>'", step=step_id)
    try:
        expression = parse_expression(head[1:-1])
    except ExpressionError as exc:
        raise fail(path, f"operationPath {text!r} does not parse: {exc.problem}", step=step_id) from None
    if expression.root != "sourceDescriptions" or expression.member != "url" or expression.name not in sources:
        raise fail(path, f"operationPath {text!r} must start with {{$sourceDescriptions.<name>.url}} of one of {', '.join(sources)}", step=step_id)
    for op in operations.get(str(expression.name), []):
        if op.pointer == pointer:
            return op
    raise fail(path, f"operationPath {text!r} points at no operation of source {expression.name!r}", step=step_id)


def _component(path: Path, components: Mapping[str, Any], reference: str, step: str | None) -> Any:
    try:
        expression = parse_expression(reference)
    except ExpressionError as exc:
        raise fail(path, f"reference {reference!r} does not parse: {exc.problem}", step=step) from None
    found = (components.get(expression.source or "") or {}).get(expression.name or "") if expression.root == "components" else None
    if found is None:
        raise fail(path, f"reference {reference!r} names nothing in the document's components", step=step)
    return found


def _reusable(path: Path, components: Mapping[str, Any], raw: Any, step: str) -> Any:
    if isinstance(raw, Mapping) and "reference" in raw:
        found = _component(path, components, raw["reference"], step)
        return {**found, "value": raw["value"]} if "value" in raw else found
    return raw


def _parsed(path: Path, value: Any, step: str, at: str) -> Any:
    try:
        return parse_value(value)
    except ExpressionError as exc:
        raise fail(path, f"runtime expression {exc.expression!r} does not parse: {exc.problem}", step=step, at=at) from None


def _criteria(path: Path, raw: Any, step: str, at: str) -> tuple[Criterion, ...]:
    out = []
    for index, item in enumerate(raw or []):
        try:
            out.append(parse_criterion(item))
        except ConditionError as exc:
            raise fail(path, f"condition {item.get('condition')!r} does not parse: {exc}", step=step, at=f"{at}[{index}]") from None
        except ExpressionError as exc:
            raise fail(path, f"runtime expression {exc.expression!r} does not parse: {exc.problem}", step=step, at=f"{at}[{index}].context") from None
    return tuple(out)


def _actions(path: Path, components: Mapping[str, Any], raw: Any, inherited: Any, step: str, at: str) -> tuple[Action, ...]:
    own = [_reusable(path, components, a, step) for a in raw or []]
    names = {a.get("name") for a in own}
    # A workflow's actions apply to every step; a step may override one by name, never remove it.
    merged = own + [a for a in (_reusable(path, components, a, step) for a in inherited or []) if a.get("name") not in names]
    out = []
    for index, action in enumerate(merged):
        if action.get("workflowId") is not None:
            raise fail(path, f"action {action.get('name')!r} goes to a workflow; saga-verify runs one workflow on its own", step=step, at=f"{at}[{index}]")
        if action.get("type") == "retry" and action.get("stepId") is not None:
            raise fail(path, f"retry action {action.get('name')!r} runs step {action.get('stepId')!r} first; saga-verify retries the step itself only", step=step, at=f"{at}[{index}]")
        out.append(
            Action(
                str(action.get("name")),
                str(action.get("type")),
                action.get("stepId"),
                float(action.get("retryAfter", 0) or 0),
                int(action.get("retryLimit", 1)),
                _criteria(path, action.get("criteria"), step, f"{at}[{index}].criteria"),
            )
        )
    return tuple(out)


def _step(
    path: Path,
    index: int,
    raw: Mapping[str, Any],
    workflow: Mapping[str, Any],
    sources: Mapping[str, tuple[Path, Mapping[str, Any]]],
    operations: Mapping[str, list[Operation]],
    components: Mapping[str, Any],
) -> WorkflowStep:
    step_id = raw["stepId"]
    operation = _operation(path, raw, sources, operations)
    parameters: dict[tuple[str, str], Parameter] = {}
    for where, items in (("workflow parameters", workflow.get("parameters")), ("parameters", raw.get("parameters"))):
        for number, item in enumerate(items or []):
            parameter = _reusable(path, components, item, step_id)
            location = parameter.get("in")
            if location is None:
                raise fail(path, f"parameter {parameter.get('name')!r} says not where it goes: give it in: path, query, header or cookie", step=step_id, at=f"{where}[{number}]")
            value = _parsed(path, parameter.get("value"), step_id, f"parameter {parameter.get('name')!r}")
            parameters[(str(parameter["name"]).lower() if location == "header" else str(parameter["name"]), location)] = Parameter(str(parameter["name"]), location, value)
    body = None
    if isinstance(raw.get("requestBody"), Mapping):
        request = raw["requestBody"]
        replacements = tuple(
            (str(r["target"]), _parsed(path, r.get("value"), step_id, f"requestBody.replacements[{i}]"))
            for i, r in enumerate(request.get("replacements") or [])
        )
        body = RequestBody(request.get("contentType"), _parsed(path, request.get("payload"), step_id, "requestBody.payload"), replacements)
    outputs = {}
    for name, text in (raw.get("outputs") or {}).items():
        if not isinstance(text, str) or not text.startswith("$"):
            raise fail(path, f"output {name!r} must be a runtime expression, got {text!r}", step=step_id, at=f"outputs.{name}")
        outputs[name] = _parsed(path, text, step_id, f"outputs.{name}")
    compensates = raw.get("x-compensates")
    return WorkflowStep(
        step_id,
        index,
        operation,
        tuple(parameters.values()),
        body,
        _criteria(path, raw.get("successCriteria"), step_id, "successCriteria"),
        _actions(path, components, raw.get("onSuccess"), workflow.get("successActions"), step_id, "onSuccess"),
        _actions(path, components, raw.get("onFailure"), workflow.get("failureActions"), step_id, "onFailure"),
        outputs,
        str(compensates) if compensates is not None else None,
    )
