"""Arazzo criteria: ``simple`` conditions (``$statusCode == 409 || $statusCode == 422``) parsed into a
small tree and evaluated without ``eval``, so a document cannot run code; and ``regex`` conditions
applied to a context expression."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ._expressions import MISSING, Context, Expression, ExpressionError, evaluate, parse_expression

_TOKENS = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^']|'')*')
      | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
      | (?P<op>==|!=|<=|>=|&&|\|\||[<>!()\[\]])
      | (?P<expression>\$[^\s=!<>&|()\[\]]+)
      | (?P<word>[A-Za-z_]\w*)
    )""",
    re.X,
)


class ConditionError(ValueError):
    """A condition that does not parse."""


@dataclass(frozen=True)
class _Node:
    kind: str
    """``literal``, ``expression``, ``index``, ``not``, ``and``, ``or`` or a comparison operator."""
    value: Any = None
    children: tuple[_Node, ...] = ()


def _tokens(text: str) -> list[tuple[str, str]]:
    out, at = [], 0
    while at < len(text):
        match = _TOKENS.match(text, at)
        if match is None or match.end() == at:
            if text[at:].strip() == "":
                break
            raise ConditionError(f"cannot read {text[at:].strip()[:30]!r}")
        kind = match.lastgroup
        assert kind is not None
        out.append((kind, match.group(kind)))
        at = match.end()
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.at = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token is None or (value is not None and token[1] != value):
            raise ConditionError(f"expected {value!r}" if value else "the condition ends too soon")
        self.at += 1
        return token

    def parse(self) -> _Node:
        node = self.either()
        if self.peek() is not None:
            raise ConditionError(f"unexpected {self.peek()[1]!r}")  # type: ignore[index]
        return node

    def either(self) -> _Node:
        node = self.both()
        while self.peek() == ("op", "||"):
            self.take()
            node = _Node("or", children=(node, self.both()))
        return node

    def both(self) -> _Node:
        node = self.unary()
        while self.peek() == ("op", "&&"):
            self.take()
            node = _Node("and", children=(node, self.unary()))
        return node

    def unary(self) -> _Node:
        if self.peek() == ("op", "!"):
            self.take()
            return _Node("not", children=(self.unary(),))
        left = self.primary()
        token = self.peek()
        if token is not None and token[0] == "op" and token[1] in ("==", "!=", "<", "<=", ">", ">="):
            self.take()
            return _Node(token[1], children=(left, self.primary()))
        return left

    def primary(self) -> _Node:
        kind, text = self.take()
        if text == "(" and kind == "op":
            node = self.either()
            self.take(")")
        elif kind == "string":
            node = _Node("literal", text[1:-1].replace("''", "'"))
        elif kind == "number":
            node = _Node("literal", json.loads(text))
        elif kind == "word" and text in ("true", "false", "null"):
            node = _Node("literal", {"true": True, "false": False, "null": None}[text])
        elif kind == "expression":
            try:
                node = _Node("expression", parse_expression(text))
            except ExpressionError as exc:
                raise ConditionError(f"{text}: {exc.problem}") from None
        else:
            raise ConditionError(f"unexpected {text!r}")
        while self.peek() == ("op", "["):
            self.take()
            kind, index = self.take()
            if kind != "number" or not index.isdigit():
                raise ConditionError(f"an index is a whole number, got {index!r}")
            self.take("]")
            node = _Node("index", int(index), (node,))
        return node


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _equal(left: Any, right: Any) -> bool:
    """Loose equality as the specification asks: strings compare case-insensitively, a number
    equals the same number written as text."""
    left, right = (None if v is MISSING else v for v in (left, right))
    if isinstance(left, str) and isinstance(right, str):
        return left.casefold() == right.casefold()
    if isinstance(left, bool) or isinstance(right, bool):
        return left is right
    a, b = _number(left), _number(right)
    if a is not None and b is not None and (isinstance(left, (int, float)) or isinstance(right, (int, float))):
        return a == b
    return bool(left == right)


def _order(op: str, left: Any, right: Any) -> bool:
    if isinstance(left, str) and isinstance(right, str):
        a: Any = left.casefold()
        b: Any = right.casefold()
    else:
        a, b = _number(left), _number(right)
        if a is None or b is None:
            return False
    compare: dict[str, Callable[[Any, Any], bool]] = {
        "<": lambda x, y: x < y, "<=": lambda x, y: x <= y, ">": lambda x, y: x > y, ">=": lambda x, y: x >= y
    }
    return compare[op](a, b)


def _value(node: _Node, context: Context) -> Any:
    kind = node.kind
    if kind == "literal":
        return node.value
    if kind == "expression":
        return evaluate(node.value, context)
    if kind == "index":
        found = _value(node.children[0], context)
        return found[node.value] if isinstance(found, list) and node.value < len(found) else MISSING
    return _truth(node, context)


def _truth(node: _Node, context: Context) -> bool:
    kind = node.kind
    if kind == "or":
        return any(_truth(c, context) for c in node.children)
    if kind == "and":
        return all(_truth(c, context) for c in node.children)
    if kind == "not":
        return not _truth(node.children[0], context)
    if kind in ("==", "!="):
        equal = _equal(_value(node.children[0], context), _value(node.children[1], context))
        return equal if kind == "==" else not equal
    if kind in ("<", "<=", ">", ">="):
        return _order(kind, _value(node.children[0], context), _value(node.children[1], context))
    found = _value(node, context)
    return found is True or (found not in (MISSING, None, False) and bool(found))


def _walk(node: _Node) -> Iterator[_Node]:
    yield node
    for child in node.children:
        yield from _walk(child)


@dataclass(frozen=True)
class Criterion:
    """One criterion of a step's ``successCriteria`` or of an action's ``criteria``."""

    condition: str
    kind: str
    """``simple`` or ``regex``."""
    context: Expression | None = None
    tree: _Node | None = None
    pattern: re.Pattern[str] | None = None

    @property
    def expressions(self) -> tuple[Expression, ...]:
        found = [self.context] if self.context is not None else []
        if self.tree is not None:
            found += [n.value for n in _walk(self.tree) if n.kind == "expression"]
        return tuple(found)

    def holds(self, context: Context) -> bool:
        if self.pattern is not None:
            assert self.context is not None
            value = evaluate(self.context, context)
            if value is MISSING or value is None:
                return False
            text = value if isinstance(value, str) else json.dumps(value)
            return self.pattern.search(text) is not None
        assert self.tree is not None
        return _truth(self.tree, context)


def parse_criterion(raw: Any) -> Criterion:
    """A criterion object of the document; `ConditionError` (or `ExpressionError`) says what is wrong."""
    condition = raw.get("condition")
    kind = raw.get("type", "simple")
    context_text = raw.get("context")
    context = parse_expression(context_text) if isinstance(context_text, str) else None
    if isinstance(kind, dict) or kind in ("jsonpath", "xpath"):
        shown = kind.get("type") if isinstance(kind, dict) else kind
        raise ConditionError(f"{shown} criteria are not supported by saga-verify; write a simple or regex condition")
    if kind == "regex":
        if context is None:
            raise ConditionError("a regex criterion needs a context (the expression it applies to)")
        try:
            return Criterion(condition, kind, context, pattern=re.compile(condition))
        except re.error as exc:
            raise ConditionError(f"not a regular expression: {exc}") from None
    return Criterion(condition, "simple", context, tree=_Parser(condition).parse())
