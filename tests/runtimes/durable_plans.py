"""Plans that crash the durable saga's coordinator, and what a replay of one on a runtime must share
with its replay in simulation: the status, the broken invariants, every delivery's outcome
(crashes and recoveries included) and the effects the participants recorded."""

from __future__ import annotations

from typing import Any

import hypothesis

from saga_verify import FaultPlan, Saga, explore, replay
from saga_verify.reference import durable_order_saga, durable_variants

#: Crashes the search would not pick first: during compensation, then during the recovery that
#: resumes it; and one before a call, then one after the recovery's retry of it was applied.
HAND_MADE = (
    '[{"kind": "refuse", "at": "shipping.create#1"}, {"kind": "coordinator-crash-after", "at": "payment.refund#1"},'
    ' {"kind": "coordinator-crash-before", "at": "inventory.release#1"}]',
    '[{"kind": "coordinator-crash-before", "at": "payment.charge#1"}, {"kind": "coordinator-crash-after", "at": "payment.charge#2"}]',
)


def durable_plans() -> list[tuple[Saga, FaultPlan]]:
    """Each durable variant with the minimal plan the search finds for it in simulation, and the
    correct durable saga under those plans and the hand-made ones."""
    cases: list[tuple[Saga, FaultPlan]] = []
    for variant in durable_variants():
        if not variant.broken or variant.runtimes == ("sim",):
            continue  # the variants among actors run on sim only
        found = explore(variant.saga, settings=hypothesis.settings(database=None), report_dir=None, seed=0)
        assert not found.ok, f"the search missed {variant.name}"
        plan = found.failures[0].plan
        cases += [(variant.saga, plan), (durable_order_saga, plan.for_saga(durable_order_saga))]
    cases += [(durable_order_saga, FaultPlan.loads(f'{{"faults": {faults}}}')) for faults in HAND_MADE]
    return cases


def shape(saga: Saga, plan: FaultPlan, runtime: str) -> dict[str, Any]:
    execution, violations = replay(saga, plan, runtime=runtime)
    return {
        "status": execution.status,
        "broken": sorted(v.invariant for v in violations),
        "deliveries": [(e.participant, e.operation, e.outcome) for e in execution.trace if e.operation],
        "effects": [(r.participant, r.action) for r in execution.rows()],
    }


def assert_durable_plans_replay_as_in_simulation(runtime: str) -> None:
    for saga, plan in durable_plans():
        assert any(f.kind.startswith("coordinator-crash") for f in plan.faults), plan
        simulated = shape(saga, plan, "sim")
        # The broken variants break something, the correct saga nothing: the comparison has teeth.
        assert bool(simulated["broken"]) == (saga is not durable_order_saga), (saga.name, plan, simulated)
        assert shape(saga, plan, runtime) == simulated, f"{saga.name} under {plan}"
