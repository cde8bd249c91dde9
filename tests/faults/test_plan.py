"""Fault plans: printing, JSON, files (atomic saves, readable load errors) and validation."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from saga_verify import FaultPlan, Saga, Step
from saga_verify.errors import PlanError
from saga_verify.faults import Delay, DeliveryPoint, Duplicate, FailBeforeEffect, LoseReply, Outage, Refuse, Timeout
from saga_verify.reference import order_saga

P = DeliveryPoint.parse

PLAN = FaultPlan(
    (
        LoseReply(P("payment.charge#1")),
        Timeout(P("payment.charge#2")),
        Duplicate(P("shipping.create#1"), lag=30.0),
        Delay(P("inventory.reserve#1"), seconds=0.5),
        Refuse(P("shipping.create#2")),
        Outage(P("payment.refund#1")),
        FailBeforeEffect(P("notification.send#3")),
    ),
    seed=42,
    saga="order",
    saga_ref="saga_verify.reference:order_saga",
    violated=("no_double_charge", "full_compensation"),
)


def _temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# -- printing and shape ------------------------------------------------------------------------


def test_str_lists_faults_in_order() -> None:
    plan = FaultPlan((LoseReply(P("payment.charge#1")), Duplicate(P("payment.refund#1"), lag=30.0)))
    assert str(plan) == "lose-reply at payment.charge#1; duplicate lag=30 at payment.refund#1"
    assert str(FaultPlan()) == "no faults"
    assert len(plan) == 2
    assert len(FaultPlan()) == 0


def test_two_faults_at_one_point_are_rejected() -> None:
    with pytest.raises(PlanError, match=r"two faults at payment.charge#1"):
        FaultPlan((LoseReply(P("payment.charge#1")), Timeout(P("payment.charge"))))
    # the same operation at another attempt is another point
    assert len(FaultPlan((LoseReply(P("payment.charge#1")), Timeout(P("payment.charge#2"))))) == 2


def test_a_plan_holds_faults_and_a_whole_seed() -> None:
    with pytest.raises(PlanError, match="a plan holds faults"):
        FaultPlan(("lose-reply at payment.charge#1",))  # type: ignore[arg-type]
    with pytest.raises(PlanError, match="seed must be a whole number"):
        FaultPlan(seed=1.5)  # type: ignore[arg-type]
    with pytest.raises(PlanError, match="seed must be a whole number"):
        FaultPlan(seed=True)


def test_violated_does_not_take_part_in_equality() -> None:
    faults = (LoseReply(P("payment.charge#1")),)
    assert FaultPlan(faults, violated=("no_double_charge",)) == FaultPlan(faults)
    assert FaultPlan(faults, seed=1) != FaultPlan(faults, seed=2)
    assert FaultPlan(faults, saga="a") != FaultPlan(faults, saga="b")
    assert FaultPlan(faults, saga="a", saga_ref="m:a") != FaultPlan(faults, saga="a", saga_ref="m:b")


def test_with_faults_keeps_seed_and_saga() -> None:
    smaller = PLAN.with_faults(PLAN.faults[:1])
    assert smaller.faults == PLAN.faults[:1]
    assert (smaller.seed, smaller.saga, smaller.saga_ref) == (42, "order", "saga_verify.reference:order_saga")


def test_by_point_keys_exact_faults_and_earliest_outage_per_operation() -> None:
    plan = FaultPlan((LoseReply(P("payment.charge#1")), Outage(P("payment.refund#3")), Outage(P("payment.refund#2"))))
    exact, outages = plan.by_point()
    assert dict(exact) == {("payment", "charge", 1): LoseReply(P("payment.charge#1"))}
    assert dict(outages) == {("payment", "refund"): Outage(P("payment.refund#2"))}


# -- JSON --------------------------------------------------------------------------------------


def test_to_json_form() -> None:
    plan = FaultPlan((Duplicate(P("payment.charge#1"), lag=30.0),), seed=7, saga="checkout", saga_ref="pkg.mod:saga", violated=("x",))
    assert plan.to_json() == {
        "format": "saga-verify/plan@2",
        "saga": {"name": "checkout", "ref": "pkg.mod:saga"},
        "seed": 7,
        "faults": [{"kind": "duplicate", "at": "payment.charge#1", "lag": 30.0}],
        "violated": ["x"],
    }
    assert FaultPlan().to_json() == {"format": "saga-verify/plan@2", "seed": 0, "faults": []}
    assert FaultPlan(saga="checkout").to_json()["saga"] == {"name": "checkout"}


def test_an_older_plan_names_where_its_saga_lives() -> None:
    plan = FaultPlan.from_json({"format": "saga-verify/plan@1", "saga": "pkg.mod:saga", "faults": []})
    assert (plan.saga, plan.saga_ref) == (None, "pkg.mod:saga")


def test_json_round_trip() -> None:
    again = FaultPlan.from_json(json.loads(json.dumps(PLAN.to_json())))
    assert again == PLAN
    assert again.violated == PLAN.violated
    assert again.faults == PLAN.faults


def test_dumps_loads_round_trip() -> None:
    text = PLAN.dumps()
    assert text.endswith("\n")
    again = FaultPlan.loads(text)
    assert again == PLAN
    assert again.violated == PLAN.violated
    assert again.dumps() == text


def test_empty_plan_round_trips() -> None:
    assert FaultPlan.loads(FaultPlan().dumps()) == FaultPlan()


def test_from_json_defaults() -> None:
    # format, seed, saga and violated are optional: a hand-written plan may list faults only
    plan = FaultPlan.from_json({"faults": [{"kind": "timeout", "at": "payment.charge"}]})
    assert plan == FaultPlan((Timeout(P("payment.charge#1")),))
    assert (plan.seed, plan.saga, plan.violated) == (0, None, ())


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ([], "a plan is a JSON object with 'faults', got list"),
        (
            {"format": "saga-verify/plan@9", "faults": []},
            "written in plan format 'saga-verify/plan@9', newer than this saga-verify reads ('saga-verify/plan@2'); upgrade",
        ),
        ({"format": "saga-verify/plan@0", "faults": []}, "unknown plan format 'saga-verify/plan@0'"),
        ({"faults": [], "fautls": []}, "unknown field(s) ['fautls']"),
        ({"faults": {"kind": "fail"}}, "'faults' must be a list, got dict"),
        ({"faults": [], "saga": 3}, "'saga' must be an object with the saga's 'name' and where it lives"),
        ({"faults": [], "saga": {"name": "x", "where": 1}}, "'saga' takes 'name' and 'ref', not ['where']"),
        ({"faults": [], "saga": {"name": "x", "ref": "no colon"}}, "saga 'ref' must look like 'package.module:attribute'"),
        ({"format": "saga-verify/plan@1", "faults": [], "saga": 3}, "'saga' must be text like 'package.module:attribute'"),
        ({"faults": [], "violated": "x"}, "'violated' must be a list of invariant names"),
        ({"faults": [{"kind": "fail", "at": "a.b", "lag": 1}]}, "faults[0]: fail takes no field(s) ['lag']"),
    ],
)
def test_from_json_errors_name_the_source(data: object, expected: str) -> None:
    with pytest.raises(PlanError) as info:
        FaultPlan.from_json(data, source="my-plan.json")
    assert str(info.value).startswith("my-plan.json: ")
    assert expected in str(info.value)


def test_loads_reports_bad_json_with_line_and_column() -> None:
    with pytest.raises(PlanError) as info:
        FaultPlan.loads('{"faults": [\n  {"kind": "fail",}\n]}', source="inline")
    assert str(info.value).startswith("inline: not valid JSON")
    assert "line 2" in str(info.value)


# -- files -------------------------------------------------------------------------------------


def test_save_load_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    returned = PLAN.save(path)
    assert returned == path
    loaded = FaultPlan.load(path)
    assert loaded == PLAN
    assert loaded.violated == PLAN.violated
    assert path.read_text(encoding="utf-8") == PLAN.dumps()


def test_save_accepts_a_string_path_and_makes_folders(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "plan.json"
    PLAN.save(str(path))
    assert FaultPlan.load(str(path)) == PLAN


def test_save_replaces_an_existing_file_completely(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    PLAN.save(path)
    small = FaultPlan((Timeout(P("payment.charge#1")),))
    small.save(path)
    # nothing of the longer old file is left behind its end
    assert path.read_text(encoding="utf-8") == small.dumps()
    assert FaultPlan.load(path) == small
    assert _temp_files(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.json"]


def test_save_writes_through_a_temporary_file_and_renames_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "plan.json"
    renames: list[tuple[str, str, str]] = []
    real_replace = os.replace

    def spy(src: str, dst: str) -> None:
        # at the moment of the rename the whole new text is already in the temporary file
        renames.append((str(src), str(dst), Path(src).read_text(encoding="utf-8")))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    PLAN.save(path)
    assert len(renames) == 1
    src, dst, text = renames[0]
    assert Path(dst) == path
    assert Path(src).parent == tmp_path  # same folder, so the rename is atomic
    assert Path(src) != path
    assert text == PLAN.dumps()
    assert _temp_files(tmp_path) == []


def test_a_failed_save_keeps_the_old_file_and_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "plan.json"
    old = FaultPlan((Timeout(P("payment.charge#1")),), seed=1)
    old.save(path)
    before = path.read_bytes()

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk on fire"):
        PLAN.save(path)
    assert path.read_bytes() == before
    assert FaultPlan.load(path) == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.json"]


def test_load_of_a_missing_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    with pytest.raises(PlanError) as info:
        FaultPlan.load(path)
    assert str(path) in str(info.value)
    assert "does not exist" in str(info.value)


def test_load_of_a_folder_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(PlanError) as info:
        FaultPlan.load(tmp_path)
    assert str(tmp_path) in str(info.value)
    assert "cannot be read" in str(info.value)


def test_load_of_binary_garbage_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(PlanError) as info:
        FaultPlan.load(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{not json", "not valid JSON"),
        ('{"format": "other/plan@1", "faults": []}', "unknown plan format 'other/plan@1'"),
        ('{"faults": [], "seeds": 3}', "unknown field(s) ['seeds']"),
        ('{"faults": [{"kind": "explode", "at": "payment.charge#1"}]}', "faults[0]: unknown fault kind 'explode'"),
        ("[1, 2]", "a plan is a JSON object"),
    ],
)
def test_load_errors_name_the_path(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PlanError) as info:
        FaultPlan.load(path)
    assert str(path) in str(info.value)
    assert expected in str(info.value)


@pytest.mark.parametrize(
    ("faults", "seed", "expected"),
    [
        ([{"kind": "fail", "at": "payment-charge"}], 0, "payment-charge"),
        ([{"kind": "duplicate", "at": "payment.charge#1", "lag": -1}], 0, "lag"),
        ([{"kind": "fail", "at": "payment.charge#1"}, {"kind": "timeout", "at": "payment.charge"}], 0, "two faults"),
        ([], "7", "seed"),
    ],
    ids=["bad-point", "negative-lag", "two-faults-one-point", "text-seed"],
)
def test_every_load_error_names_the_path(tmp_path: Path, faults: list[object], seed: object, expected: str) -> None:
    # A plan file with a mistake inside a fault (or its seed) must say which file, like every
    # other load error does; a CI log holding several replayed plans is otherwise a guessing game.
    path = tmp_path / "plan-with-a-mistake.json"
    path.write_text(json.dumps({"seed": seed, "faults": faults}), encoding="utf-8")
    with pytest.raises(PlanError) as info:
        FaultPlan.load(path)
    assert expected in str(info.value)
    assert str(path) in str(info.value)


# -- validation against a saga -----------------------------------------------------------------


def test_a_plan_over_the_sagas_operations_validates() -> None:
    PLAN.validate(order_saga)  # raises nothing
    FaultPlan().validate(order_saga)


def test_a_plan_of_another_saga_does_not_validate() -> None:
    plan = FaultPlan(PLAN.faults, saga="checkout", saga_ref="shop.saga:checkout")
    with pytest.raises(PlanError, match=r"this plan is for saga 'checkout', not 'order': replay it against 'checkout' \(shop\.saga:checkout\)"):
        plan.validate(order_saga)


def test_validate_names_an_unknown_operation_and_suggests() -> None:
    plan = FaultPlan((LoseReply(P("payment.charg#1")),))
    with pytest.raises(PlanError) as info:
        plan.validate(order_saga)
    message = str(info.value)
    assert "payment.charg" in message
    assert "'order'" in message
    assert "did you mean payment.charge?" in message
    assert "inventory.release" in message  # and lists what the saga does have


def test_validate_names_an_unknown_participant_and_suggests() -> None:
    plan = FaultPlan((Timeout(P("paymnet.refund#2")),))
    with pytest.raises(PlanError) as info:
        plan.validate(order_saga)
    assert "paymnet.refund" in str(info.value)
    assert "did you mean payment.refund?" in str(info.value)


def test_validate_without_a_close_match_makes_no_suggestion() -> None:
    with pytest.raises(PlanError) as info:
        FaultPlan((Timeout(P("warehouse.teleport#1")),)).validate(order_saga)
    assert "warehouse.teleport" in str(info.value)
    assert "did you mean" not in str(info.value)


@pytest.mark.parametrize("point", ["payment.refund#1", "notification.send#1", "inventory.release#1"])
def test_refuse_needs_a_refuse_hook(point: str) -> None:
    with pytest.raises(PlanError) as info:
        FaultPlan((Refuse(P(point)),)).validate(order_saga)
    assert f"refuses {point}" in str(info.value)
    assert "refuse= hook" in str(info.value)


@pytest.mark.parametrize("point", ["inventory.reserve#1", "payment.charge#2", "shipping.create#1"])
def test_refuse_is_allowed_where_the_step_declares_it(point: str) -> None:
    FaultPlan((Refuse(P(point)),)).validate(order_saga)


def test_validate_reads_the_saga_not_the_reference() -> None:
    class Svc:
        def go(self) -> str:
            return "ok"

    tiny = Saga("tiny", steps=[Step("svc", "go")], participants=lambda: {"svc": Svc()}, run=lambda s, i: "completed")
    FaultPlan((LoseReply(P("svc.go#1")),)).validate(tiny)
    with pytest.raises(PlanError, match=r"plan names payment.charge, which saga 'tiny' does not have"):
        FaultPlan((LoseReply(P("payment.charge#1")),)).validate(tiny)
    with pytest.raises(PlanError, match="declares no refusal"):
        FaultPlan((Refuse(P("svc.go#1")),)).validate(tiny)
