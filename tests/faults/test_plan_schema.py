"""contracts/plan.schema.json is the published shape of plan files. It is generated from the
loader's own field table (``saga-verify plan-schema``), every plan saga-verify writes conforms to
it, and the schema and the loader accept and reject the same documents."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from saga_verify import FaultPlan
from saga_verify._cli import main
from saga_verify.errors import PlanError
from saga_verify.faults import fault_plans
from saga_verify.faults._plan import plan_schema
from saga_verify.reference import order_saga, timed_order_saga

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "contracts" / "plan.schema.json").read_text(encoding="utf-8"))
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def test_schema_is_valid() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_the_published_schema_is_the_one_the_loader_makes(capsys: pytest.CaptureFixture[str]) -> None:
    assert plan_schema() == SCHEMA, "contracts/plan.schema.json is stale: saga-verify plan-schema > contracts/plan.schema.json"
    assert main(["plan-schema"]) == 0
    assert json.loads(capsys.readouterr().out) == SCHEMA


@pytest.mark.parametrize("path", sorted((ROOT / "fixtures" / "corpus").glob("*.json")), ids=lambda p: p.stem)
def test_corpus_plans_conform(path: Path) -> None:
    VALIDATOR.validate(json.loads(path.read_text(encoding="utf-8")))


@given(fault_plans(order_saga, max_faults=4))
def test_every_generated_plan_conforms(plan: FaultPlan) -> None:
    VALIDATOR.validate(json.loads(plan.dumps()))


@given(fault_plans(timed_order_saga, max_faults=4))
def test_every_generated_plan_with_event_faults_conforms_and_round_trips(plan: FaultPlan) -> None:
    VALIDATOR.validate(json.loads(plan.dumps()))
    assert FaultPlan.loads(plan.dumps()) == plan
    plan.validate(timed_order_saga)


@pytest.mark.parametrize(
    "document",
    [
        {"format": "saga-verify/plan@2", "seed": 0, "faults": [{"kind": "explode", "at": "payment.charge#1"}]},
        {"faults": [{"kind": "fail", "at": "payment"}]},
        {"faults": [{"kind": "fail", "at": "payment.charge#0"}]},
        {"faults": [{"kind": "fail", "at": " payment.charge#1"}]},
        {"faults": [{"kind": "delay", "at": "payment.charge#1", "seconds": -1}]},
        {"faults": [{"kind": "fail", "at": "payment.charge#1", "lag": 3}]},
        {"faults": [{"kind": "drop", "at": "payment.paid#1", "seconds": 3}]},
        {"format": "saga-verify/plan@9", "faults": []},
        {"faults": [], "extra": 1},
        {"seed": 0},
        {"faults": [], "seed": True},
        {"faults": [], "saga": "pkg.mod:saga"},
        {"format": "saga-verify/plan@1", "faults": [], "saga": {"name": "order"}},
        {"faults": [], "saga": {}},
        {"faults": [], "saga": {"name": ""}},
    ],
)
def test_schema_and_loader_reject_the_same_documents(document: dict[str, object]) -> None:
    assert not VALIDATOR.is_valid(document)
    with pytest.raises(PlanError):
        FaultPlan.from_json(document)


@pytest.mark.parametrize(
    "document",
    [
        {"faults": []},
        {"faults": [{"kind": "timeout", "at": "payment.charge"}]},
        {"faults": [{"kind": "drop", "at": "payment.paid#1"}, {"kind": "delay", "at": "payment.paid#2", "seconds": 120}]},
        {"format": "saga-verify/plan@1", "saga": "pkg.mod:saga", "seed": 3, "faults": []},
        {"format": "saga-verify/plan@2", "saga": {"name": "order"}, "faults": [], "violated": ["x"]},
        {"faults": [], "seed": 7.0},
        {"faults": [], "saga": {"ref": "pkg.mod:saga"}},
    ],
)
def test_schema_and_loader_accept_the_same_documents(document: dict[str, object]) -> None:
    VALIDATOR.validate(document)
    FaultPlan.from_json(document)


_value = st.recursive(st.none() | st.booleans() | st.integers(-3, 3) | st.floats(-1, 40, allow_nan=False) | st.text(max_size=12), lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=6), inner, max_size=2), max_leaves=4)
_fault = st.fixed_dictionaries(
    {"kind": st.sampled_from(["fail", "delay", "duplicate", "pause", "drop", "explode"]), "at": st.sampled_from(["payment.charge#1", "payment.charge", "a.b#2", "payment#1", "a.b#0"])},
    optional={"lag": st.sampled_from([0, 1.5, -1, "x"]), "seconds": st.sampled_from([30, 0.5, -2, None])},
)
_document = st.fixed_dictionaries(
    {},
    optional={
        "format": st.sampled_from(["saga-verify/plan@2", "saga-verify/plan@1", "other"]),
        "faults": st.lists(_fault, max_size=2) | _value,
        "seed": st.integers(-2, 2) | _value,
        "saga": st.sampled_from([{"name": "order"}, {"name": "order", "ref": "m.n:order"}, "m.n:order", {"ref": "m:o"}, {"name": ""}]) | _value,
        "violated": st.lists(st.text(max_size=3), max_size=2) | _value,
        "stray": _value,
    },
)


@settings(max_examples=400)
@given(_document)
def test_schema_and_loader_agree_on_any_document(document: dict[str, Any]) -> None:
    try:
        FaultPlan.from_json(document)
        loaded = True
    except PlanError as error:
        loaded = False
        if "a delivery point takes at most one" in str(error):
            return  # the one rule JSON Schema cannot say (its description says it)
    assert VALIDATOR.is_valid(document) == loaded
