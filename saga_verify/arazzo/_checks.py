"""The static checks of a workflow, before anything runs: every handoff reads a step that ran (and
replied) earlier on every path and an output it declares; every request matches its operation's
schema; every side effect has a compensation path; an irreversible step comes after every step that
can still fail; a retried non-idempotent operation carries an idempotency key."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ._document import NON_IDEMPOTENT_METHODS, Operation, Workflow, WorkflowStep, local_ref
from ._expressions import MISSING, Context, Expression, Template, evaluate, expressions_in
from ._graph import Edge, Shape, shape


@dataclass(frozen=True, order=True)
class Finding:
    """One thing the static checks found wrong with a workflow."""

    file: str
    step: str
    """The step it is about."""
    check: str
    """``handoff``, ``request``, ``compensation``, ``irreversible``, ``retry-key`` or ``unreachable``."""
    expression: str | None
    """The runtime expression, parameter or action it is about, if any."""
    message: str

    def __str__(self) -> str:
        about = f" {self.expression}:" if self.expression else ""
        return f"{self.file}: step {self.step!r}:{about} {self.message} [{self.check}]"


def run_checks(workflow: Workflow, inputs: Any = None) -> tuple[Finding, ...]:
    """Every finding of every check, in document order."""
    found = shape(workflow)
    checks = _Checks(workflow, found, inputs if isinstance(inputs, Mapping) else workflow.example_input)
    findings = [*checks.unreachable(), *checks.handoffs(), *checks.requests(), *checks.compensation_paths(), *checks.irreversible_last(), *checks.retry_keys()]
    order = {s.id: s.index for s in workflow.steps}
    return tuple(sorted(dict.fromkeys(findings), key=lambda f: (order.get(f.step, -1), f.check, f.expression or "", f.message)))


def _path(steps: list[tuple[str, Edge | None]]) -> str:
    """``a -[onSuccess 'x']-> b -> c`` for a message."""
    out = steps[0][0]
    for target, edge in steps[1:]:
        label = "" if edge is None or edge.via == "next in the document" else f"[{edge.via}]"
        out += f" -{label}-> {target}" if label else f" -> {target}"
    return out


class _Checks:
    def __init__(self, workflow: Workflow, shape: Shape, inputs: Mapping[str, Any] | None) -> None:
        self.workflow = workflow
        self.shape = shape
        self.inputs = inputs
        self.file = str(workflow.file)
        self.out: dict[str, list[Edge]] = {}
        for edge in shape.edges:
            self.out.setdefault(edge.source, []).append(edge)

    def finding(self, step: str, check: str, expression: str | None, message: str) -> Finding:
        return Finding(self.file, step, check, expression, message)

    def reachable(self) -> list[WorkflowStep]:
        return [s for s in self.workflow.steps if s.id not in self.shape.unreachable]

    def unreachable(self) -> Iterator[Finding]:
        for step in self.shape.unreachable:
            yield self.finding(step, "unreachable", None, "no path from the first step reaches it: it never runs")

    # -- handoffs ------------------------------------------------------------------------------------
    def _available(self) -> dict[str, frozenset[tuple[str, str]]]:
        """For each step, the outputs set on every path that reaches it: a step's outputs after it
        succeeded, and after it failed only those that do not read its reply."""
        everything = frozenset((s.id, o) for s in self.workflow.steps for o in s.outputs)
        start = self.workflow.steps[0].id
        available = {s.id: everything for s in self.workflow.steps}
        available[start] = frozenset()
        queue = deque(s.id for s in self.workflow.steps)
        while queue:
            source = queue.popleft()
            step = self.workflow.step(source)
            for edge in self.out.get(source, []):
                if edge.target is None:
                    continue
                kept = {(source, o) for o, e in step.outputs.items() if edge.outcome == "success" or not e.reads_reply}
                after = (available[source] - {(source, o) for o in step.outputs}) | kept
                if edge.target == start:
                    continue  # the workflow starts with nothing; a way back to the start keeps that
                narrowed = available[edge.target] & after
                if narrowed != available[edge.target]:
                    available[edge.target] = narrowed
                    queue.append(edge.target)
        return available

    def _witness(self, target: str, needed: tuple[str, str]) -> str:
        """A path from the first step to ``target`` on which ``needed`` is not set."""
        producer, output = needed
        start = self.workflow.steps[0].id
        origin: dict[tuple[str, bool], tuple[tuple[str, bool], Edge] | None] = {(start, False): None}
        queue = deque([(start, False)])
        while queue:
            node, have = queue.popleft()
            if node == target and not have:
                break
            expression = self.workflow.step(node).outputs.get(output) if node == producer else None
            for edge in self.out.get(node, []):
                if edge.target is None:
                    continue
                now = have
                if node == producer:
                    now = expression is not None and (edge.outcome == "success" or not expression.reads_reply)
                following = (edge.target, now)
                if following not in origin:
                    origin[following] = ((node, have), edge)
                    queue.append(following)
        if (target, False) not in origin:
            return target
        path: list[tuple[str, Edge | None]] = []
        at: tuple[str, bool] | None = (target, False)
        while at is not None:
            back = origin[at]
            path.append((at[0], back[1] if back else None))  # the step, and the edge that led into it
            at = back[0] if back else None
        return _path(path[::-1])

    def handoffs(self) -> Iterator[Finding]:
        available = self._available()
        declared_inputs = self.workflow.inputs.get("properties")
        for step in self.reachable():
            before_request = [*(p.value for p in step.parameters), *([step.request_body.payload, *(v for _, v in step.request_body.replacements)] if step.request_body else [])]
            after_reply = [*(e for c in step.success_criteria for e in c.expressions), *(e for a in (*step.on_success, *step.on_failure) for c in a.criteria for e in c.expressions), *step.outputs.values()]
            for when, values in (("request", before_request), ("reply", after_reply)):
                for expression in (e for v in values for e in expressions_in(v)):
                    yield from self._handoff(step, expression, when, available[step.id], declared_inputs)

    def _handoff(self, step: WorkflowStep, expression: Expression, when: str, available: frozenset[tuple[str, str]], declared_inputs: Any) -> Iterator[Finding]:
        text = expression.text
        if expression.root == "inputs" and isinstance(declared_inputs, Mapping) and expression.name not in declared_inputs:
            yield self.finding(step.id, "handoff", text, f"the workflow's inputs declare no {expression.name!r} (they declare: {', '.join(declared_inputs) or 'nothing'})")
        if when == "request" and expression.root in ("statusCode", "response"):
            yield self.finding(step.id, "handoff", text, "reads the reply in the request that asks for it")
        needed = expression.step_output
        if needed is None:
            return
        producer, output = needed
        ids = [s.id for s in self.workflow.steps]
        if producer not in ids:
            yield self.finding(step.id, "handoff", text, f"reads step {producer!r}, which the workflow does not have")
            return
        declared = self.workflow.step(producer).outputs
        if output not in declared:
            listed = ", ".join(declared) or "none"
            yield self.finding(step.id, "handoff", text, f"step {producer!r} declares no output {output!r} (its outputs: {listed})")
            return
        if producer == step.id and when == "reply":
            return  # its own outputs of this very call
        if needed not in available:
            replied = " and replied" if declared[output].reads_reply else ""
            yield self.finding(
                step.id,
                "handoff",
                text,
                f"step {producer!r} may not have run{replied} before this step: {self._witness(step.id, needed)}",
            )

    # -- requests against the operation's schema ---------------------------------------------------
    def requests(self) -> Iterator[Finding]:
        for step in self.reachable():
            yield from self._request(step)

    def _request(self, step: WorkflowStep) -> Iterator[Finding]:
        operation = step.operation
        declared = {(str(p.get("name")).lower() if p.get("in") == "header" else str(p.get("name")), p.get("in")): p for p in operation.spec.get("parameters", [])}
        given = {(p.name.lower() if p.location == "header" else p.name, p.location): p for p in step.parameters}
        for key, parameter in given.items():
            spec = declared.get(key)
            if spec is None:
                yield self.finding(step.id, "request", f"parameter {parameter.name!r}", f"{operation} has no {parameter.location} parameter {parameter.name!r}")
                continue
            if isinstance(spec.get("schema"), Mapping):
                yield from self._validate(step, operation, spec["schema"], parameter.value, f"parameter {parameter.name!r}")
        for key, spec in declared.items():
            if key not in given and (spec.get("required") or spec.get("in") == "path"):
                yield self.finding(step.id, "request", f"parameter {spec.get('name')!r}", f"{operation} requires the {spec.get('in')} parameter {spec.get('name')!r}; the step does not send it")
        body = operation.spec.get("requestBody")
        if step.request_body is None:
            if isinstance(body, Mapping) and body.get("required"):
                yield self.finding(step.id, "request", "requestBody", f"{operation} requires a request body; the step sends none")
            return
        if not isinstance(body, Mapping):
            yield self.finding(step.id, "request", "requestBody", f"{operation} takes no request body")
            return
        content = body.get("content") or {}
        media = step.request_body.content_type or next(iter(content), "application/json")
        if media not in content:
            yield self.finding(step.id, "request", "requestBody.contentType", f"{operation} takes {', '.join(content) or 'no content'}, not {media}")
            return
        schema = content[media].get("schema") if isinstance(content[media], Mapping) else None
        if isinstance(schema, Mapping) and "json" in media:
            yield from self._validate(step, operation, schema, step.request_body.payload, "requestBody.payload")

    def _validate(self, step: WorkflowStep, operation: Operation, schema: Mapping[str, Any], value: Any, label: str) -> Iterator[Finding]:
        placeholders: dict[tuple[Any, ...], bool] = {}
        instance = self._placeholder(value, (), placeholders)
        for error in _validator(operation, schema).iter_errors(instance):
            at = tuple(error.absolute_path)
            within = next((where for where in placeholders if at[: len(where)] == where), None)
            if within is not None and not (placeholders[within] and error.validator == "type" and at == within):
                continue  # a value known only when the workflow runs (of a known type, only its type is checked)
            where = "/".join(str(p) for p in at)
            yield self.finding(step.id, "request", f"{label}{'/' + where if where else ''}", f"does not match {operation}: {error.message}")

    def _placeholder(self, value: Any, at: tuple[Any, ...], unknown: dict[tuple[Any, ...], bool]) -> Any:
        """``value`` with what is known before the run filled in: the inputs, and for a step's
        output a value of the type its operation's reply schema gives (or nothing, noted unknown)."""
        if isinstance(value, Expression):
            if value.root == "inputs" and self.inputs is not None:
                found = evaluate(value, Context(self.inputs, {}))
                if found is not MISSING:
                    return found
            kind = self._output_type(value)
            unknown[at] = kind is not None
            return _OF_TYPE.get(kind or "")
        if isinstance(value, Template):
            parts = [p if isinstance(p, str) else self._text(p) for p in value.parts]
            if any(p is None for p in parts):
                unknown[at] = False
            return "".join(p or "" for p in parts)
        if isinstance(value, Mapping):
            return {k: self._placeholder(v, (*at, k), unknown) for k, v in value.items()}
        if isinstance(value, list):
            return [self._placeholder(v, (*at, i), unknown) for i, v in enumerate(value)]
        return value

    def _text(self, expression: Expression) -> str | None:
        if expression.root == "inputs" and self.inputs is not None:
            found = evaluate(expression, Context(self.inputs, {}))
            if found is not MISSING:
                return found if isinstance(found, str) else str(found)
        return None

    def _output_type(self, expression: Expression) -> str | None:
        """The JSON type a ``$steps`` expression reads, from its producer's reply schema."""
        needed = expression.step_output
        if needed is None or needed[0] not in {s.id for s in self.workflow.steps}:
            return None
        producer = self.workflow.step(needed[0])
        source = producer.outputs.get(needed[1])
        if source is None or source.root != "response" or source.source != "body" or expression.pointer:
            return None
        operation = producer.operation
        for status, reply in (operation.spec.get("responses") or {}).items():
            if not str(status).startswith("2") or not isinstance(reply, Mapping):
                continue
            for media in (reply.get("content") or {}).values():
                schema = _schema_at(operation.document, media.get("schema") if isinstance(media, Mapping) else None, source.pointer or "")
                if isinstance(schema, Mapping) and isinstance(schema.get("type"), str):
                    return str(schema["type"])
        return None

    # -- compensation paths and the irreversible step -----------------------------------------------
    def compensation_paths(self) -> Iterator[Finding]:
        """Once a step with a compensation may have taken effect, every way back must run its
        compensation: a failure of any step but an irreversible one goes back."""
        irreversible = self.shape.irreversible(self.workflow)
        for forward, compensation in self.shape.compensation.items():
            start: list[tuple[str, bool, list[tuple[str, Edge | None]]]] = []
            for edge in self.out.get(forward, []):
                if edge.retry or (edge.outcome == "failure" and edge.refusal):
                    continue  # a retry runs it again; a refusal means it did not happen
                owed = edge.outcome == "failure"
                start.append((edge.target or "", owed, [(forward, None), (edge.target or "the end", edge)]))
            seen: set[tuple[str, bool]] = set()
            queue = deque(start)
            while queue:
                node, owed, path = queue.popleft()
                if node == compensation:
                    continue
                if node == "":
                    if owed:
                        yield self.finding(
                            forward,
                            "compensation",
                            None,
                            f"may stay in effect: after it, this path goes back without {compensation!r} undoing it: {_path(path)}",
                        )
                        break
                    continue
                if (node, owed) in seen:
                    continue
                seen.add((node, owed))
                for edge in self.out.get(node, []):
                    if edge.retry:
                        continue
                    now = owed or (edge.outcome == "failure" and node not in irreversible)
                    queue.append((edge.target or "", now, [*path, (edge.target or "the end", edge)]))
        for forward in self.shape.forward:
            step = self.workflow.step(forward)
            if step.operation.side_effect and forward not in self.shape.compensation and forward not in irreversible:
                yield self.finding(forward, "compensation", None, f"{step.operation} changes state and no step undoes it")

    def irreversible_last(self) -> Iterator[Finding]:
        """Nothing that can fail, nor any compensation, may run after an irreversible step."""
        irreversible = self.shape.irreversible(self.workflow)
        for step_id in sorted(irreversible, key=lambda s: self.workflow.step(s).index):
            after = [e for e in self.out.get(step_id, []) if not e.retry and e.target is not None]
            origin: dict[str, tuple[str, Edge]] = {}
            queue = deque(e.target for e in after if e.target is not None)
            for edge in after:
                origin.setdefault(edge.target or "", (step_id, edge))
            seen: set[str] = set()
            while queue:
                node = queue.popleft()
                if node in seen:
                    continue
                seen.add(node)
                later = self.workflow.step(node)
                if later.operation.side_effect and node not in irreversible and node != step_id:
                    path: list[tuple[str, Edge | None]] = [(node, origin[node][1])]
                    back = origin[node][0]
                    while back != step_id:
                        path.append((back, origin[back][1]))
                        back = origin[back][0]
                    path.append((step_id, None))
                    path.reverse()
                    role = "compensates" if node in self.shape.compensating else "can still fail and be undone"
                    yield self.finding(
                        step_id,
                        "irreversible",
                        None,
                        f"is irreversible (no step undoes {self.workflow.step(step_id).operation}), yet {node!r} {role} after it: {_path(path)}",
                    )
                    break
                for edge in self.out.get(node, []):
                    if edge.target is not None and not edge.retry:
                        origin.setdefault(edge.target, (node, edge))
                        queue.append(edge.target)

    def retry_keys(self) -> Iterator[Finding]:
        for step in self.reachable():
            method = step.operation.method
            retried = [e for e in self.out.get(step.id, []) if e.retry or e.target == step.id]
            if method not in NON_IDEMPOTENT_METHODS or not step.operation.side_effect or not retried:
                continue
            key = step.idempotency_key
            via = retried[0].via
            if key is None:
                yield self.finding(
                    step.id,
                    "retry-key",
                    via,
                    f"retries {step.operation}, which is not idempotent, without an idempotency key: a retry after a lost reply applies it twice",
                )
            elif any(e.reads_reply for e in expressions_in(key.value)):
                yield self.finding(step.id, "retry-key", f"parameter {key.name!r}", "its idempotency key reads the reply, so it changes between attempts")


_OF_TYPE: dict[str, Any] = {"string": "", "integer": 0, "number": 0, "boolean": False, "object": {}, "array": [], "null": None}


def _schema_at(document: Mapping[str, Any], schema: Any, pointer: str) -> Any:
    """The subschema a JSON pointer into an instance of ``schema`` lands in (local refs followed)."""
    schema = local_ref(document, schema)
    for raw in list(pointer.split("/")[1:]) if pointer else []:
        token = raw.replace("~1", "/").replace("~0", "~")
        if not isinstance(schema, Mapping):
            return None
        if isinstance(schema.get("properties"), Mapping) and token in schema["properties"]:
            schema = local_ref(document, schema["properties"][token])
        elif token.isdigit() and isinstance(schema.get("items"), Mapping):
            schema = local_ref(document, schema["items"])
        else:
            return None
    return schema


def _validator(operation: Operation, schema: Mapping[str, Any]) -> Any:
    """A JSON Schema validator for ``schema``, a part of the operation's OpenAPI document: the
    document's components go along, so that its local references resolve."""
    import jsonschema  # type: ignore[import-untyped]

    rooted = {**schema, "components": operation.document.get("components") or {}}
    if str(operation.document.get("openapi", "")).startswith("3.1"):
        return jsonschema.Draft202012Validator(rooted)
    return jsonschema.Draft4Validator(rooted)
