"""Runtime expressions and criteria: the specification's examples parse, malformed ones are refused
with the reason, values keep their types, and conditions are evaluated without running code."""

from __future__ import annotations

import pytest

from saga_verify.arazzo._criteria import ConditionError, parse_criterion
from saga_verify.arazzo._expressions import (
    MISSING,
    Context,
    Expression,
    ExpressionError,
    Message,
    Template,
    evaluate,
    parse_expression,
    parse_value,
    render,
)


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("$method", ("method", None, None, None, None)),
        ("$statusCode", ("statusCode", None, None, None, None)),
        ("$request.header.accept", ("request", "header", "accept", None, None)),
        ("$request.path.id", ("request", "path", "id", None, None)),
        ("$request.body#/user/uuid", ("request", "body", None, None, "/user/uuid")),
        ("$response.body#/status", ("response", "body", None, None, "/status")),
        ("$response.body", ("response", "body", None, None, None)),
        ("$response.header.Server", ("response", "header", "Server", None, None)),
        ("$inputs.username", ("inputs", None, "username", None, None)),
        ("$steps.someStepId.outputs.pets", ("steps", None, "someStepId", "pets", None)),
        ("$steps.someStepId.outputs.pets#/0/id", ("steps", None, "someStepId", "pets", "/0/id")),
        ("$outputs.bar", ("outputs", None, "bar", None, None)),
        ("$components.parameters.foo", ("components", "parameters", "foo", None, None)),
        ("$sourceDescriptions.payment.charge", ("sourceDescriptions", None, "payment", "charge", None)),
    ],
)
def test_the_specifications_examples_parse(text: str, parts: tuple[str | None, ...]) -> None:
    expression = parse_expression(text)
    assert (expression.root, expression.source, expression.name, expression.member, expression.pointer) == parts
    assert str(expression) == text


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("$order.id", "$order is not a runtime expression"),
        ("$steps.reserve", "a step is read as $steps.<stepId>.outputs.<name>"),
        ("$steps.reserve.output.id", "a step is read as $steps.<stepId>.outputs.<name>"),
        ("$steps.re serve.outputs.id", "'re serve' is not a step id"),
        ("$response.query.page", "$response reads header or body, not 'query'"),
        ("$response.body/id", "$response.body is followed by '#' and a JSON pointer"),
        ("$inputs.order#id", "the JSON pointer after '#' must start with '/'"),
        ("$response.body#/a~2b", "a '~' in a JSON pointer must be written ~0"),
        ("$statusCode.value", "$statusCode takes nothing after it"),
        ("$inputs", "$inputs must be followed by '.'"),
    ],
)
def test_malformed_expressions_say_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(ExpressionError) as info:
        parse_expression(text)
    assert info.value.expression == text
    assert problem in info.value.problem


def test_values_keep_their_types_and_templates_write_them_in() -> None:
    value = parse_value({"id": "$inputs.order_id", "qty": "$inputs.qty", "key": "{$inputs.order_id}:{$inputs.qty}", "plain": "text"})
    assert isinstance(value["id"], Expression)
    assert isinstance(value["key"], Template)
    context = Context({"order_id": "o-1", "qty": 2}, {})
    assert render(value, context) == {"id": "o-1", "qty": 2, "key": "o-1:2", "plain": "text"}


def test_an_unclosed_embedded_expression_is_refused() -> None:
    with pytest.raises(ExpressionError, match=r"an embedded expression is written \{\$\.\.\.\}"):
        parse_value("order {$inputs.order_id")


def test_evaluation_reads_steps_replies_and_pointers() -> None:
    context = Context(
        {"order": {"lines": [{"sku": "a/b"}]}},
        {"reserve": {"id": "res-1"}},
        response=Message(headers={"Retry-After": "3"}, body={"a/b": 1, "items": [10, 20]}, status=201),
    )
    assert evaluate(parse_expression("$steps.reserve.outputs.id"), context) == "res-1"
    assert evaluate(parse_expression("$inputs.order#/lines/0/sku"), context) == "a/b"
    assert evaluate(parse_expression("$response.body#/a~1b"), context) == 1
    assert evaluate(parse_expression("$response.body#/items/1"), context) == 20
    assert evaluate(parse_expression("$response.header.retry-after"), context) == "3"  # headers ignore case
    assert evaluate(parse_expression("$statusCode"), context) == 201
    # What is not there is MISSING, not None: a service may answer null.
    assert evaluate(parse_expression("$steps.charge.outputs.id"), context) is MISSING
    assert evaluate(parse_expression("$response.body#/items/5"), context) is MISSING
    assert evaluate(parse_expression("$statusCode"), Context({}, {})) is MISSING


def _holds(condition: str, status: int | None = None, body: object = None, inputs: dict[str, object] | None = None) -> bool:
    reply = None if status is None else Message(status=status, body=body)
    return parse_criterion({"condition": condition}).holds(Context(inputs or {}, {}, response=reply))


def test_simple_conditions() -> None:
    assert _holds("$statusCode == 409 || $statusCode == 422", 422)
    assert not _holds("$statusCode == 409 || $statusCode == 422", 201)
    assert not _holds("$statusCode == 409 || $statusCode == 422")  # no reply: no status
    assert _holds("$statusCode >= 200 && $statusCode < 300", 204)
    assert _holds("!($statusCode == 200)", 500)
    assert _holds("$statusCode == null")  # what is not there compares as null
    assert not _holds("$statusCode < 300")  # ...and orders with nothing
    assert _holds("$response.body#/status == 'OK'", 200, {"status": "ok"})  # strings ignore case
    assert _holds("$response.body#/reason == 'it''s gone'", 409, {"reason": "It's gone"})
    assert _holds("$inputs.qty == '2'", inputs={"qty": 2})  # a number equals its text
    assert not _holds("$inputs.flag == 1", inputs={"flag": True})  # but a boolean is no number
    assert _holds("$response.body#/items[1] == 20", 200, {"items": [10, 20]})
    assert _holds("$response.body#/ok", 200, {"ok": True})


def test_and_binds_tighter_than_or() -> None:
    assert _holds("$statusCode == 1 && $statusCode == 2 || $statusCode == 201", 201)
    assert not _holds("$statusCode == 201 && ($statusCode == 1 || $statusCode == 2)", 201)


def test_regex_criteria_apply_to_their_context() -> None:
    criterion = parse_criterion({"context": "$statusCode", "condition": "^2\\d\\d$", "type": "regex"})
    assert criterion.holds(Context({}, {}, response=Message(status=201)))
    assert not criterion.holds(Context({}, {}, response=Message(status=409)))
    assert not criterion.holds(Context({}, {}))


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ({"condition": "$statusCode =="}, "the condition ends too soon"),
        ({"condition": "$statusCode == 201 201"}, "unexpected '201'"),
        ({"condition": "$status == 201"}, "$status is not a runtime expression"),
        ({"condition": "'unclosed == 1"}, "cannot read"),
        ({"condition": "^2", "type": "regex"}, "a regex criterion needs a context"),
        ({"condition": "(", "context": "$statusCode", "type": "regex"}, "not a regular expression"),
        ({"condition": "$[?count(@.pets) > 0]", "context": "$response.body", "type": "jsonpath"}, "jsonpath criteria are not supported"),
    ],
)
def test_conditions_that_do_not_parse_say_why(raw: dict[str, str], problem: str) -> None:
    with pytest.raises(ConditionError, match=problem.replace("$", r"\$").replace("(", r"\(").replace("[", r"\[")):
        parse_criterion(raw)


def test_a_condition_cannot_run_code() -> None:
    # Documents are often written by others: a condition is parsed, never handed to eval.
    for condition in ("__import__('os').system('true')", "$statusCode == 201 or exit()", "[x for x in ()]"):
        with pytest.raises(ConditionError):
            parse_criterion({"condition": condition})
