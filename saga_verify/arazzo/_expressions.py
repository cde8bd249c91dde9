"""Arazzo runtime expressions (``$steps.reserveStock.outputs.reservationId``, ``$response.body#/id``,
``{$inputs.order_id}`` inside a string): parsed by the specification's grammar, so one that does
not parse is an error before anything runs, and evaluated against one step's context."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

#: What an expression reads when there is nothing there (a step that gave no reply, an output not
#: set): distinct from JSON null, which a service may answer.
MISSING: Any = type("Missing", (), {"__repr__": lambda self: "MISSING", "__bool__": lambda self: False})()

_STEP_ID = re.compile(r"[A-Za-z0-9_\-]+")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_ROOTS = ("url", "method", "statusCode", "request", "response", "inputs", "outputs", "steps", "workflows", "sourceDescriptions", "components")
_EMBEDDED = re.compile(r"\{(\$[^{}]*)\}")


class ExpressionError(ValueError):
    """A runtime expression that does not parse; ``expression`` is its text."""

    def __init__(self, expression: str, problem: str) -> None:
        super().__init__(problem)
        self.expression = expression
        self.problem = problem


@dataclass(frozen=True)
class Expression:
    """One parsed runtime expression."""

    text: str
    root: str
    """What it reads: ``statusCode``, ``request``, ``response``, ``inputs``, ``steps``, ..."""
    source: str | None = None
    """For ``$request`` and ``$response``: ``header``, ``query``, ``path`` or ``body``."""
    name: str | None = None
    """The header, parameter, input, output or step it names (for ``$steps``: the step)."""
    member: str | None = None
    """For ``$steps``: the output; for ``$sourceDescriptions``: what of the source (``url``, an operationId)."""
    pointer: str | None = None
    """The JSON pointer after ``#``, if any."""

    @property
    def step_output(self) -> tuple[str, str] | None:
        """The (step, output) a ``$steps`` expression reads."""
        if self.root == "steps" and self.name is not None and self.member is not None:
            return self.name, self.member
        return None

    @property
    def reads_reply(self) -> bool:
        """Whether it needs the reply of the step it is evaluated in."""
        return self.root in ("statusCode", "response")

    def __str__(self) -> str:
        return self.text


def _pointer(text: str, expression: str) -> str:
    if text and not text.startswith("/"):
        raise ExpressionError(expression, f"the JSON pointer after '#' must start with '/', got {text!r}")
    if re.search(r"~(?![01])", text):
        raise ExpressionError(expression, "a '~' in a JSON pointer must be written ~0 ('~') or ~1 ('/')")
    return text


def parse_expression(text: str) -> Expression:
    """Parse one runtime expression; `ExpressionError` says what is wrong with it."""
    if not isinstance(text, str) or not text.startswith("$"):
        raise ExpressionError(str(text), "a runtime expression starts with '$'")
    head, dot, rest = text[1:].partition(".")
    if head not in _ROOTS:
        raise ExpressionError(text, f"${head} is not a runtime expression; they start with {', '.join('$' + r for r in _ROOTS)}")
    if head in ("url", "method", "statusCode"):
        if dot:
            raise ExpressionError(text, f"${head} takes nothing after it")
        return Expression(text, head)
    if not dot or not rest:
        raise ExpressionError(text, f"${head} must be followed by '.' and what it reads")
    if head in ("request", "response"):
        return _parse_message(text, head, rest)
    if head == "steps":
        step, _, after = rest.partition(".")
        if not _STEP_ID.fullmatch(step):
            raise ExpressionError(text, f"{step!r} is not a step id (letters, digits, '_' and '-')")
        if not after.startswith("outputs.") or len(after) == len("outputs."):
            raise ExpressionError(text, "a step is read as $steps.<stepId>.outputs.<name>")
        name, _, pointer = after[len("outputs.") :].partition("#")
        return Expression(text, head, name=step, member=name, pointer=_pointer(pointer, text) if "#" in after else None)
    if head in ("inputs", "outputs"):
        name, hash_, pointer = rest.partition("#")
        if not name:
            raise ExpressionError(text, f"${head} needs a name")
        return Expression(text, head, name=name, pointer=_pointer(pointer, text) if hash_ else None)
    if head == "sourceDescriptions":
        name, _, member = rest.partition(".")
        if not name or not member:
            raise ExpressionError(text, "a source is read as $sourceDescriptions.<name>.<operationId or url>")
        return Expression(text, head, name=name, member=member)
    if head == "components":
        kind, _, name = rest.partition(".")
        if not kind or not name:
            raise ExpressionError(text, "a component is read as $components.<kind>.<name>")
        return Expression(text, head, source=kind, name=name)
    name, _, member = rest.partition(".")  # $workflows.<id>.inputs|outputs.<name>
    return Expression(text, head, name=name, member=member or None)


def _parse_message(text: str, head: str, rest: str) -> Expression:
    source, _, name = rest.partition(".")
    if source.startswith("body"):
        after = source[4:] + (("." + name) if name else "")
        if after and not after.startswith("#"):
            raise ExpressionError(text, f"${head}.body is followed by '#' and a JSON pointer, got {after!r}")
        return Expression(text, head, source="body", pointer=_pointer(after[1:], text) if after else None)
    allowed = ("header",) if head == "response" else ("header", "query", "path")
    if source not in allowed:
        raise ExpressionError(text, f"${head} reads {', '.join(allowed)} or body, not {source!r}")
    if not name:
        raise ExpressionError(text, f"${head}.{source} needs a name")
    if source == "header" and not _TOKEN.fullmatch(name):
        raise ExpressionError(text, f"{name!r} is not a header name")
    return Expression(text, head, source=source, name=name)


# -- where expressions hide in a document's values ---------------------------------------------------
@dataclass(frozen=True)
class Template:
    """A string with embedded expressions: ``'{$inputs.order_id}:reserve'``."""

    text: str
    parts: tuple[str | Expression, ...]


def parse_value(value: Any) -> Any:
    """A document value with every expression parsed: a string that starts with ``$`` becomes an
    `Expression`, one with ``{$...}`` inside a `Template`; mappings and lists are walked."""
    if isinstance(value, str):
        if value.startswith("$"):
            return parse_expression(value)
        if "{$" in value:
            parts: list[str | Expression] = []
            at = 0
            for match in _EMBEDDED.finditer(value):
                parts.append(value[at : match.start()])
                parts.append(parse_expression(match.group(1)))
                at = match.end()
            parts.append(value[at:])
            if value.count("{$") != sum(isinstance(p, Expression) for p in parts):
                raise ExpressionError(value, "an embedded expression is written {$...} and closed by '}'")
            return Template(value, tuple(p for p in parts if p != ""))
        return value
    if isinstance(value, Mapping):
        return {k: parse_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [parse_value(v) for v in value]
    return value


def expressions_in(value: Any) -> Iterator[Expression]:
    """Every expression in a parsed value."""
    if isinstance(value, Expression):
        yield value
    elif isinstance(value, Template):
        yield from (p for p in value.parts if isinstance(p, Expression))
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from expressions_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from expressions_in(item)


# -- evaluation ----------------------------------------------------------------------------------------
@dataclass
class Message:
    """A request or a reply as expressions read it."""

    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = MISSING
    query: Mapping[str, Any] = field(default_factory=dict)
    path: Mapping[str, Any] = field(default_factory=dict)
    status: int | None = None
    url: str | None = None
    method: str | None = None

    def header(self, name: str) -> Any:
        lowered = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == lowered), MISSING)


@dataclass
class Context:
    """What one step's expressions can read."""

    inputs: Mapping[str, Any]
    steps: Mapping[str, Mapping[str, Any]]
    sources: Mapping[str, str] = field(default_factory=dict)
    request: Message | None = None
    response: Message | None = None
    outputs: Mapping[str, Any] = field(default_factory=dict)


def resolve_pointer(value: Any, pointer: str | None) -> Any:
    """The part of ``value`` a JSON pointer names, or MISSING."""
    if not pointer:
        return value
    for raw in pointer[1:].split("/"):
        token = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(value, Mapping) and token in value:
            value = value[token]
        elif isinstance(value, list) and token.isdigit() and int(token) < len(value):
            value = value[int(token)]
        else:
            return MISSING
    return value


def evaluate(expression: Expression, context: Context) -> Any:
    """The value ``expression`` reads in ``context`` (types preserved), or MISSING."""
    root = expression.root
    if root == "inputs":
        return resolve_pointer(context.inputs.get(expression.name or "", MISSING), expression.pointer)
    if root == "steps":
        outputs = context.steps.get(expression.name or "")
        if outputs is None:
            return MISSING
        return resolve_pointer(outputs.get(expression.member or "", MISSING), expression.pointer)
    if root == "outputs":
        return resolve_pointer(context.outputs.get(expression.name or "", MISSING), expression.pointer)
    if root == "statusCode":
        status = context.response.status if context.response is not None else None
        return MISSING if status is None else status
    if root in ("request", "response"):
        message = context.request if root == "request" else context.response
        if message is None:
            return MISSING
        if expression.source == "body":
            return resolve_pointer(message.body, expression.pointer)
        if expression.source == "header":
            return message.header(expression.name or "")
        return (message.query if expression.source == "query" else message.path).get(expression.name or "", MISSING)
    if root in ("url", "method"):
        message = context.request
        value = None if message is None else (message.url if root == "url" else message.method)
        return MISSING if value is None else value
    if root == "sourceDescriptions" and expression.member == "url":
        return context.sources.get(expression.name or "", MISSING)
    return MISSING


def render(value: Any, context: Context) -> Any:
    """A parsed value with its expressions evaluated: an expression gives its value (MISSING if
    there is none), a template the text with each value written in."""
    if isinstance(value, Expression):
        return evaluate(value, context)
    if isinstance(value, Template):
        out = []
        for part in value.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            found = evaluate(part, context)
            if found is MISSING:
                return MISSING
            out.append(found if isinstance(found, str) else json.dumps(found))
        return "".join(out)
    if isinstance(value, Mapping):
        return {k: render(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, context) for v in value]
    return value


def missing_in(value: Any) -> list[str]:
    """Where a rendered value holds MISSING (JSON-pointer-like paths), for error messages."""
    if value is MISSING:
        return [""]
    if isinstance(value, Mapping):
        return [f"/{k}{p}" for k, v in value.items() for p in missing_in(v)]
    if isinstance(value, list):
        return [f"/{i}{p}" for i, v in enumerate(value) for p in missing_in(v)]
    return []
