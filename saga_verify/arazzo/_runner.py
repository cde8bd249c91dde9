"""Running a workflow as a saga's code: each step's request is built from its runtime expressions and
sent through the httpx client the harness gives for its service (so every fault and runtime
applies), its reply judged by its success criteria, and its actions followed: retries wait on the
virtual clock, gotos jump, ends end. What the run did decides the saga's outcome."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from ..errors import SagaDefinitionError
from ._document import Action, Workflow, WorkflowStep
from ._expressions import MISSING, Context, Message, evaluate, missing_in, render, resolve_pointer
from ._graph import Shape


class HandoffError(RuntimeError):
    """A request read a value that is not there when it ran (a handoff the static checks flag)."""


@dataclass
class _Attempt:
    """One call of a step."""

    response: Message | None
    maybe_applied: bool
    """No reply came to a request that went out (a timeout, a broken connection) or the service
    failed (5xx): it may have taken effect."""
    success: bool = False


@dataclass
class _Visit:
    """What a step did the last time it ran to the end of its retries."""

    success: bool
    maybe_applied: bool


@dataclass
class _State:
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    visits: dict[str, _Visit] = field(default_factory=dict)
    compensations: list[tuple[str, bool]] = field(default_factory=list)


class WorkflowRun:
    """The saga's ``run(services, input)`` for one workflow."""

    def __init__(self, workflow: Workflow, shape: Shape) -> None:
        self.workflow = workflow
        self.shape = shape
        self.sources = {name: str(path) for name, path in workflow.sources.items()}
        self.irreversible = shape.irreversible(workflow)

    def __call__(self, services: Any, inputs: Any) -> dict[str, Any]:
        import httpx

        workflow, state = self.workflow, _State()
        inputs = dict(inputs) if isinstance(inputs, Mapping) else {}
        step: WorkflowStep | None = workflow.steps[0]
        retries: dict[int, int] = {}
        maybe_applied = False
        last = (workflow.steps[0].id, False)
        while step is not None:
            client = services[step.operation.source]
            if not isinstance(client, httpx.Client):
                raise SagaDefinitionError(
                    f"workflow {workflow.id!r} calls {step.operation.source} over HTTP, but on sim that service runs as "
                    "its Python model: declare it without model= (an app, a command or an image), or run on asgi, "
                    "process or container"
                )
            attempt, context = self._call(step, client, inputs, state)
            # The last reply decides: an answer settles what earlier lost attempts left open.
            maybe_applied = attempt.maybe_applied if attempt.response is not None else maybe_applied or attempt.maybe_applied
            action = self._choose(step, attempt, context, retries)
            if action is not None and action.type == "retry":
                retries[id(action)] = retries.get(id(action), 0) + 1
                services.clock.sleep(_retry_after(action, attempt.response))
                continue
            self._settle(step, attempt.success, maybe_applied, state)
            retries, maybe_applied, last = {}, False, (step.id, attempt.success)
            if action is None:
                step = workflow.after(step) if attempt.success else None
            elif action.type == "goto" and action.step is not None:
                step = workflow.step(action.step)
            else:
                step = None
        return {"status": self._outcome(state, last), "outputs": state.outputs}

    # -- one call ----------------------------------------------------------------------------------
    def _call(self, step: WorkflowStep, client: Any, inputs: Mapping[str, Any], state: _State) -> tuple[_Attempt, Context]:
        import httpx

        context = Context(inputs, state.outputs, self.sources)
        request = self._request(step, context)
        context.request = request
        try:
            response = client.send(self._http(step, request, client))
        except (httpx.ConnectError, httpx.ConnectTimeout):
            attempt = _Attempt(None, maybe_applied=False)  # not delivered: nothing happened
        except httpx.TransportError:
            attempt = _Attempt(None, maybe_applied=True)
        else:
            try:
                body: Any = response.json()
            except ValueError:
                body = response.text if response.content else MISSING
            reply = Message(headers=dict(response.headers), body=body, status=response.status_code)
            attempt = _Attempt(reply, maybe_applied=response.status_code >= 500)
        context.response = attempt.response
        outputs = {}
        for name, expression in step.outputs.items():
            value = evaluate(expression, context)
            if value is not MISSING:
                outputs[name] = value
        state.outputs[step.id] = outputs
        if attempt.response is not None:
            if step.success_criteria:
                attempt.success = all(c.holds(context) for c in step.success_criteria)
            else:
                attempt.success = 200 <= (attempt.response.status or 0) < 300
        return attempt, context

    def _request(self, step: WorkflowStep, context: Context) -> Message:
        operation = step.operation
        values: dict[str, dict[str, Any]] = {"path": {}, "query": {}, "header": {}, "cookie": {}}
        for parameter in step.parameters:
            value = render(parameter.value, context)
            if missing_in(value):
                raise HandoffError(f"step {step.id!r}: parameter {parameter.name!r} reads {parameter.value} and nothing is there")
            values[parameter.location][parameter.name] = value
        body: Any = MISSING
        if step.request_body is not None:
            body = render(step.request_body.payload, context)
            for target, replacement in step.request_body.replacements:
                body = _replace(body, target, render(replacement, context))
            holes = missing_in(body)
            if holes:
                raise HandoffError(f"step {step.id!r}: the request body reads nothing at {', '.join(h or '/' for h in holes)}")
        path = operation.path
        for name, value in values["path"].items():
            path = path.replace("{" + name + "}", quote(value if isinstance(value, str) else json.dumps(value), safe=""))
        headers = {k: _text(v) for k, v in values["header"].items()}
        if values["cookie"]:
            headers["Cookie"] = "; ".join(f"{k}={_text(v)}" for k, v in values["cookie"].items())
        return Message(
            headers=headers,
            body=body,
            query=values["query"],
            path=values["path"],
            url=path,
            method=operation.method,
        )

    def _http(self, step: WorkflowStep, request: Message, client: Any) -> Any:
        headers = dict(request.headers)
        query = {k: _text(v) for k, v in request.query.items()}
        kwargs: dict[str, Any] = {"headers": headers, "params": query or None}
        if request.body is not MISSING:
            media = (step.request_body.content_type if step.request_body else None) or "application/json"
            if isinstance(request.body, (str, bytes)):
                kwargs["content"] = request.body
                headers.setdefault("Content-Type", media)
            elif "json" in media:
                kwargs["json"] = request.body
            elif media == "application/x-www-form-urlencoded":
                kwargs["data"] = request.body
            else:
                kwargs["content"] = json.dumps(request.body)
                headers.setdefault("Content-Type", media)
        return client.build_request(request.method, request.url, **kwargs)

    # -- what next ---------------------------------------------------------------------------------
    def _choose(self, step: WorkflowStep, attempt: _Attempt, context: Context, retries: dict[int, int]) -> Action | None:
        """The first action whose criteria hold (a retry whose limit is spent is passed over)."""
        for action in step.on_success if attempt.success else step.on_failure:
            if action.type == "retry" and retries.get(id(action), 0) >= action.retry_limit:
                continue
            if all(c.holds(context) for c in action.criteria):
                return action
        return None

    def _settle(self, step: WorkflowStep, success: bool, maybe_applied: bool, state: _State) -> None:
        state.visits[step.id] = _Visit(success, maybe_applied)
        if step.id in self.shape.compensating and self.shape.undone_by(step.id) is not None:
            state.compensations.append((step.id, success))

    def _outcome(self, state: _State, last: tuple[str, bool]) -> str:
        """``failed`` if something that may have taken effect was left standing (its compensation
        failed, or never ran); ``compensated`` if the run went back and left nothing in effect;
        ``completed`` if it went forward to the end: every step with a compensation succeeded and
        the run ended on a success, or on the failure of an irreversible step (which comes after
        every step that can be undone: the saga stands without it)."""
        standing = {
            f for f in self.shape.compensation if f in state.visits and (state.visits[f].success or state.visits[f].maybe_applied)
        }
        if any(not ok and self.shape.undone_by(c) in standing for c, ok in state.compensations):
            return "failed"  # a compensation of what may have taken effect could not be made
        last_step, last_success = last
        forward = all(f in state.visits and state.visits[f].success for f in self.shape.compensation)
        if not state.compensations and forward and (last_success or last_step in self.irreversible):
            return "completed"
        undone = {self.shape.undone_by(c) for c, ok in state.compensations if ok}
        return "failed" if standing - undone else "compensated"

def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _retry_after(action: Action, response: Message | None) -> float:
    """The wait before a retry: the reply's ``Retry-After`` (in seconds) overrules the action's."""
    if response is not None:
        header = response.header("Retry-After")
        if isinstance(header, str) and header.strip().isdigit():
            return float(header.strip())
    return action.retry_after


def _replace(body: Any, target: str, value: Any) -> Any:
    """``body`` with the place a JSON pointer names set to ``value``."""
    if not target or target == "/":
        return value
    *parents, last = [t.replace("~1", "/").replace("~0", "~") for t in target[1:].split("/")]
    holder = resolve_pointer(body, "/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parents)) if parents else body
    if isinstance(holder, dict):
        holder[last] = value
    elif isinstance(holder, list) and last.isdigit() and int(last) < len(holder):
        holder[int(last)] = value
    return body
