"""The proxy's actions and decision tables are values: they compare, hash and print, refuse bad
seconds, and a table answers by request number or by the harness's delivery header."""

from __future__ import annotations

import pytest

from saga_verify.errors import OptionError
from saga_verify.proxy import (
    Delay,
    DropRequest,
    DropResponse,
    Duplicate,
    Pass,
    ProxiedRequest,
    ProxyAction,
    Stall,
    scripted,
    scripted_by_delivery,
)


def test_actions_are_values() -> None:
    actions: list[ProxyAction] = [
        Pass(),
        Delay(0.5),
        Delay(2.0),
        DropRequest(),
        DropResponse(),
        DropResponse(then=lambda: None),
        Duplicate(),
        Duplicate(lag=0),
        Duplicate(lag=2),
        Duplicate(lag=0.5),
        Stall(),
    ]
    assert [str(a) for a in actions] == [
        "pass",
        "delay seconds=0.5",
        "delay seconds=2",
        "drop-request",
        "drop-response",
        "drop-response",
        "duplicate",
        "duplicate",
        "duplicate lag=2",
        "duplicate lag=0.5",
        "stall",
    ]
    assert Delay(1) == Delay(1.0)
    assert DropResponse(then=print) == DropResponse()
    assert hash(DropResponse(then=print)) == hash(DropResponse())
    assert repr(DropResponse(then=print)) == "DropResponse()"
    assert Duplicate(lag=0) == Duplicate()
    assert repr(Duplicate(lag=0.5)) == "Duplicate(lag=0.5)"
    distinct: list[ProxyAction] = [Pass(), Delay(0), DropRequest(), DropResponse(), Duplicate(), Duplicate(1), Stall()]
    assert len(set(distinct)) == 7
    for bad in (-1, float("nan"), float("inf"), True, "1"):
        with pytest.raises(OptionError, match="Delay"):
            Delay(bad)  # type: ignore[arg-type]
        with pytest.raises(OptionError, match="Duplicate"):
            Duplicate(lag=bad)  # type: ignore[arg-type]


def test_scripted_tables() -> None:
    def request(seq: int, delivery: int | None = None) -> ProxiedRequest:
        return ProxiedRequest(seq, "POST", "/charges", (("Idempotency-Key", "k"),), b"", delivery)

    decide = scripted({2: DropResponse(), 4: Stall()}, default=Duplicate())
    assert [decide(request(n)) for n in (1, 2, 3, 4)] == [Duplicate(), DropResponse(), Duplicate(), Stall()]
    by_delivery = scripted_by_delivery({7: Delay(1)})
    assert [by_delivery(request(1, d)) for d in (7, 8, None)] == [Delay(1), Pass(), Pass()]
    assert request(1).header("idempotency-key") == "k"
    assert request(1).header("host") is None
    with pytest.raises(OptionError, match="numbered from 1"):
        scripted({0: Pass()})
    with pytest.raises(OptionError, match="not a proxy action"):
        scripted({1: "drop"})  # type: ignore[dict-item]
    with pytest.raises(OptionError, match="default"):
        scripted_by_delivery({}, default=None)  # type: ignore[arg-type]
