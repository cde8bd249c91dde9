"""The fault alphabet: delivery points, how faults print, and their JSON form."""

from __future__ import annotations

import json
import math

import pytest

from saga_verify.errors import PlanError
from saga_verify.faults import (
    FAULT_KINDS,
    Delay,
    DeliveryPoint,
    Duplicate,
    FailBeforeEffect,
    LoseReply,
    Outage,
    Pause,
    Refuse,
    Timeout,
)
from saga_verify.faults._kinds import fault_from_json

AT = DeliveryPoint("payment", "charge", 1)

# One fault of every kind, with non-default parameters where a kind has any.
EVERY_KIND = (
    FailBeforeEffect(AT),
    Timeout(AT),
    LoseReply(AT),
    Refuse(AT),
    Duplicate(AT),
    Duplicate(AT, lag=30.0),
    Duplicate(AT, lag=0.25),
    Delay(AT),
    Delay(AT, seconds=0.5),
    Outage(DeliveryPoint("payment", "refund", 2)),
)


# -- delivery points ---------------------------------------------------------------------------


def test_parse_reads_participant_operation_and_attempt() -> None:
    point = DeliveryPoint.parse("payment.charge#2")
    assert point == DeliveryPoint("payment", "charge", 2)
    assert (point.participant, point.operation, point.attempt) == ("payment", "charge", 2)


def test_parse_defaults_the_attempt_to_one() -> None:
    assert DeliveryPoint.parse("inventory.reserve") == DeliveryPoint("inventory", "reserve", 1)


def test_parse_ignores_surrounding_space_and_accepts_dashes() -> None:
    assert DeliveryPoint.parse("  order-svc.place_order#3 ") == DeliveryPoint("order-svc", "place_order", 3)


def test_str_is_what_parse_reads() -> None:
    point = DeliveryPoint("shipping", "cancel", 4)
    assert str(point) == "shipping.cancel#4"
    assert DeliveryPoint.parse(str(point)) == point


@pytest.mark.parametrize(
    "text",
    [
        "payment",
        "payment.charge#",
        "payment.charge#x",
        ".charge#1",
        "payment.#1",
        "payment.charge.extra",
        "1pay.charge",
        "",
    ],
)
def test_parse_rejects_bad_text_naming_it(text: str) -> None:
    with pytest.raises(PlanError) as info:
        DeliveryPoint.parse(text)
    assert repr(text) in str(info.value)
    assert "payment.charge#1" in str(info.value)  # shows the form it wants


def test_parse_rejects_attempt_zero() -> None:
    with pytest.raises(PlanError, match=r"'payment.charge#0'.*attempts count from 1"):
        DeliveryPoint.parse("payment.charge#0")


@pytest.mark.parametrize("value", [None, 3, ("payment", "charge")])
def test_parse_rejects_non_text(value: object) -> None:
    with pytest.raises(PlanError, match="must be text"):
        DeliveryPoint.parse(value)


def test_points_sort_by_participant_operation_then_attempt() -> None:
    points = [
        DeliveryPoint.parse(t)
        for t in ("payment.refund#1", "payment.charge#2", "inventory.reserve#1", "payment.charge#1")
    ]
    assert [str(p) for p in sorted(points)] == [
        "inventory.reserve#1",
        "payment.charge#1",
        "payment.charge#2",
        "payment.refund#1",
    ]


# -- printing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "text"),
    [
        (FailBeforeEffect(AT), "fail at payment.charge#1"),
        (Timeout(AT), "timeout at payment.charge#1"),
        (LoseReply(AT), "lose-reply at payment.charge#1"),
        (Refuse(AT), "refuse at payment.charge#1"),
        (Duplicate(AT), "duplicate lag=0 at payment.charge#1"),
        (Duplicate(AT, lag=30.0), "duplicate lag=30 at payment.charge#1"),
        (Duplicate(AT, lag=0.25), "duplicate lag=0.25 at payment.charge#1"),
        (Delay(AT, seconds=30.0), "delay seconds=30 at payment.charge#1"),
        (Delay(AT, seconds=0.5), "delay seconds=0.5 at payment.charge#1"),
        (Outage(DeliveryPoint("payment", "refund", 2)), "outage at payment.refund#2"),
        (Pause(AT, seconds=60.0), "pause seconds=60 at payment.charge#1"),
    ],
)
def test_str_of_each_kind(fault: object, text: str) -> None:
    assert str(fault) == text


def test_every_kind_has_a_distinct_name_and_a_meaning() -> None:
    names = [k.kind for k in FAULT_KINDS]
    assert names == [
        "fail", "drop", "timeout", "lose-reply", "refuse", "duplicate", "delay", "outage", "pause", "crash",
        "coordinator-crash-before", "coordinator-crash-after", "switch", "corrupt",
    ]
    assert all(k.meaning for k in FAULT_KINDS)


def test_faults_compare_and_hash_as_values() -> None:
    assert Duplicate(AT, lag=30.0) == Duplicate(AT, lag=30)
    assert Duplicate(AT, lag=30.0) != Duplicate(AT, lag=0.0)
    assert LoseReply(AT) != Timeout(AT)  # same place, another decision
    assert len({LoseReply(AT), LoseReply(DeliveryPoint.parse("payment.charge#1"))}) == 1


def test_moved_to_keeps_the_decision() -> None:
    moved = Delay(AT, seconds=2.0).moved_to(DeliveryPoint("shipping", "create", 3))
    assert moved == Delay(DeliveryPoint("shipping", "create", 3), seconds=2.0)


# -- JSON --------------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", EVERY_KIND, ids=str)
def test_json_round_trip_of_every_kind(fault: object) -> None:
    data = fault.to_json()  # type: ignore[attr-defined]
    # through real JSON text, as a plan file does
    again = fault_from_json(json.loads(json.dumps(data)))
    assert again == fault
    assert type(again) is type(fault)
    assert str(again) == str(fault)


def test_json_form_is_kind_at_and_parameters() -> None:
    assert LoseReply(AT).to_json() == {"kind": "lose-reply", "at": "payment.charge#1"}
    assert Duplicate(AT, lag=30.0).to_json() == {"kind": "duplicate", "at": "payment.charge#1", "lag": 30.0}
    assert Delay(AT, seconds=0.5).to_json() == {"kind": "delay", "at": "payment.charge#1", "seconds": 0.5}


def test_json_without_a_parameter_takes_its_default() -> None:
    assert fault_from_json({"kind": "duplicate", "at": "payment.charge"}) == Duplicate(AT, lag=0.0)
    assert fault_from_json({"kind": "delay", "at": "payment.charge#1"}) == Delay(AT, seconds=30.0)


def test_unknown_kind_lists_the_known_kinds() -> None:
    with pytest.raises(PlanError) as info:
        fault_from_json({"kind": "explode", "at": "payment.charge#1"}, "faults[2]")
    message = str(info.value)
    assert "faults[2]" in message
    assert "'explode'" in message
    for kind in ("fail", "timeout", "lose-reply", "refuse", "duplicate", "delay", "outage", "crash"):
        assert kind in message


def test_missing_kind_is_an_unknown_kind() -> None:
    with pytest.raises(PlanError, match=r"faults\[0\]: unknown fault kind None; known kinds: fail"):
        fault_from_json({"at": "payment.charge#1"}, "faults[0]")


def test_missing_at_says_what_it_is() -> None:
    with pytest.raises(PlanError) as info:
        fault_from_json({"kind": "timeout"}, "faults[1]")
    assert "faults[1]" in str(info.value)
    assert "missing 'at'" in str(info.value)


def test_extra_fields_are_named_with_what_the_kind_takes() -> None:
    with pytest.raises(PlanError) as info:
        fault_from_json({"kind": "fail", "at": "payment.charge#1", "lag": 3}, "faults[0]")
    assert "faults[0]" in str(info.value)
    assert "fail takes no field(s) ['lag']" in str(info.value)
    with pytest.raises(PlanError) as info:
        fault_from_json({"kind": "duplicate", "at": "payment.charge#1", "seconds": 3, "colour": "red"})
    assert "['colour', 'seconds']" in str(info.value)
    assert "['lag']" in str(info.value)  # what duplicate does take


@pytest.mark.parametrize("data", [None, [], "fail at payment.charge#1", 7])
def test_a_fault_must_be_an_object(data: object) -> None:
    with pytest.raises(PlanError, match=r"faults\[4\]: expected an object"):
        fault_from_json(data, "faults[4]")


@pytest.mark.parametrize(
    ("kind", "field", "value"),
    [
        ("duplicate", "lag", -1.0),
        ("duplicate", "lag", math.nan),
        ("duplicate", "lag", math.inf),
        ("delay", "seconds", -0.5),
        ("delay", "seconds", math.nan),
        ("delay", "seconds", "30"),
        ("delay", "seconds", True),
    ],
)
def test_bad_seconds_name_the_field(kind: str, field: str, value: object) -> None:
    with pytest.raises(PlanError) as info:
        fault_from_json({"kind": kind, "at": "payment.charge#1", field: value})
    message = str(info.value)
    assert field in message
    assert "payment.charge#1" in message
    assert repr(value) in message


def test_bad_seconds_are_refused_by_the_constructors_too() -> None:
    with pytest.raises(PlanError, match="lag must be finite and >= 0"):
        Duplicate(AT, lag=-3)
    with pytest.raises(PlanError, match="seconds must be finite and >= 0"):
        Delay(AT, seconds=math.nan)


def test_nan_seconds_from_json_text_are_refused() -> None:
    # Python's json reads NaN; a plan must not carry it into a world.
    data = json.loads('{"kind": "delay", "at": "payment.charge#1", "seconds": NaN}')
    with pytest.raises(PlanError, match="seconds"):
        fault_from_json(data)


def test_a_bad_delivery_point_names_where_it_is() -> None:
    # Every other error of fault_from_json starts with `where`; a bad 'at' must too, or a person
    # reading a plan of many faults cannot tell which one is wrong.
    with pytest.raises(PlanError) as info:
        fault_from_json({"kind": "fail", "at": "payment-charge"}, "faults[3]")
    assert "'payment-charge'" in str(info.value)
    assert "faults[3]" in str(info.value)
