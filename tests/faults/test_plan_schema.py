"""contracts/plan.schema.json is the published shape of plan files: every plan saga-verify writes
conforms to it, and what it rejects the loader rejects too."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given

from saga_verify import FaultPlan
from saga_verify.errors import PlanError
from saga_verify.faults import fault_plans
from saga_verify.reference import order_saga

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "contracts" / "plan.schema.json").read_text(encoding="utf-8"))
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def test_schema_is_valid() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("path", sorted((ROOT / "fixtures" / "corpus").glob("*.json")), ids=lambda p: p.stem)
def test_corpus_plans_conform(path: Path) -> None:
    VALIDATOR.validate(json.loads(path.read_text(encoding="utf-8")))


@given(fault_plans(order_saga, max_faults=4))
def test_every_generated_plan_conforms(plan: FaultPlan) -> None:
    VALIDATOR.validate(json.loads(plan.dumps()))


@pytest.mark.parametrize(
    "document",
    [
        {"format": "saga-verify/plan@1", "seed": 0, "faults": [{"kind": "explode", "at": "payment.charge#1"}]},
        {"format": "saga-verify/plan@1", "seed": 0, "faults": [{"kind": "fail", "at": "payment"}]},
        {"format": "saga-verify/plan@1", "seed": 0, "faults": [{"kind": "delay", "at": "payment.charge#1", "seconds": -1}]},
        {"format": "saga-verify/plan@1", "seed": 0, "faults": [{"kind": "fail", "at": "payment.charge#1", "lag": 3}]},
        {"format": "saga-verify/plan@2", "seed": 0, "faults": []},
        {"format": "saga-verify/plan@1", "seed": 0, "faults": [], "extra": 1},
    ],
)
def test_schema_and_loader_reject_the_same_documents(document: dict[str, object]) -> None:
    assert not VALIDATOR.is_valid(document)
    with pytest.raises(PlanError):
        FaultPlan.from_json(document)
