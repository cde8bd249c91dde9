"""The README's "Verify your own saga" block, run as a user would run it: a pytest file in a
project with its own saga and participants."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

# Imported here, before any in-process pytester run: a run unloads the modules it imported, while
# saga_verify's lazily cached names would still point at the classes of the unloaded copies.
import saga_verify._exploration  # noqa: F401

README = Path(__file__).resolve().parent.parent / "README.md"

SERVICES = '''
from saga_verify import Ledger


class Inventory:
    def __init__(self):
        self.ledger, self.replies, self.reserved, self.released = Ledger(), {}, set(), set()

    def reserve(self, order_id, sku, idempotency_key):
        if idempotency_key in self.released:  # released before it arrived: a tombstone
            return {"status": "refused"}
        if idempotency_key not in self.replies:
            self.reserved.add(idempotency_key)
            self.ledger.record("reserve", 1, sku)
            self.replies[idempotency_key] = {"status": "ok"}
        return self.replies[idempotency_key]

    def release(self, reserve_key, idempotency_key):
        self.released.add(reserve_key)
        if reserve_key in self.reserved:
            self.reserved.discard(reserve_key)
            self.ledger.record("release", 1)
        return {"status": "ok"}


class Payment:
    def __init__(self):
        self.ledger, self.replies, self.charged, self.refunded = Ledger(), {}, set(), set()

    def charge(self, order_id, amount, idempotency_key=None):
        if idempotency_key in self.refunded:
            return {"status": "refused"}
        if idempotency_key is None or idempotency_key not in self.replies:
            self.charged.add(idempotency_key)
            self.ledger.record("charge", amount)
            self.replies[idempotency_key] = {"status": "ok"}
        return self.replies[idempotency_key]

    def refund(self, charge_key, amount, idempotency_key):
        self.refunded.add(charge_key)
        if charge_key in self.charged:
            self.charged.discard(charge_key)
            self.ledger.record("refund", amount)
        return {"status": "ok"}
'''

SAGA = '''
def call(fn, **request):
    for attempt in range(3):
        try:
            return fn(**request)
        except (ConnectionError, TimeoutError):
            continue
    return None


def undo(*compensations):
    made = [call(fn, **request) is not None for fn, request in compensations]
    return "compensated" if all(made) else "failed"


def place_order(services, order):
    oid = order["order_id"]
    release = (services.inventory.release, {"reserve_key": oid + ":reserve", "idempotency_key": oid + ":release"})
    refund = (services.payment.refund, {"charge_key": {refund_key}, "amount": order["amount"], "idempotency_key": oid + ":refund"})
    if call(services.inventory.reserve, order_id=oid, sku=order["sku"], idempotency_key=oid + ":reserve") is None:
        return undo(release)
    if call(services.payment.charge, order_id=oid, amount=order["amount"], {charge_key}) is None:
        return undo(refund, release)
    return "completed"
'''


def readme_block() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Verify your own saga", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None, "README lost its 'Verify your own saga' example"
    return match.group(1)


def test_readme_example_is_at_most_15_lines() -> None:
    lines = [line for line in readme_block().splitlines() if line.strip()]
    assert len(lines) <= 15


def _project(pytester: pytest.Pytester, charge_key: str, refund_key: str) -> None:
    pytester.mkpydir("shop")
    pytester.path.joinpath("shop", "services.py").write_text(SERVICES)
    pytester.path.joinpath("shop", "saga.py").write_text(SAGA.replace("{charge_key}", charge_key).replace("{refund_key}", refund_key))
    pytester.makepyfile(test_order=readme_block())
    pytester.syspathinsert()


def test_readme_example_passes_for_a_correct_saga(pytester: pytest.Pytester) -> None:
    _project(pytester, 'idempotency_key=oid + ":charge"', 'oid + ":charge"')
    result = pytester.runpytest("-p", "no:cacheprovider", f"--saga-report-dir={pytester.path / 'plans'}", "--saga-seed=1")
    result.assert_outcomes(passed=1)


def test_readme_example_catches_a_charge_without_key(pytester: pytest.Pytester) -> None:
    _project(pytester, "", "None")
    result = pytester.runpytest("-p", "no:cacheprovider", f"--saga-report-dir={pytester.path / 'plans'}", "--saga-seed=1")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*saga 'order' broke no_double_charge*", "*1. lose-reply at payment.charge#1*", "*--saga-replay=*"])


# -- "Your own services, on every runtime" ---------------------------------------------------------
SHOP = Path(__file__).resolve().parent.parent / "fixtures" / "shop"


def services_block() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Your own services, on every runtime", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None, "README lost its 'Your own services' example"
    return match.group(1)


def _shop(pytester: pytest.Pytester, bug: bool) -> None:
    for path in SHOP.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            target = pytester.path / path.relative_to(SHOP)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    block = services_block()
    if bug:
        block = block.replace("from shop.checkout import place_order", "from shop.checkout import place_order_without_a_charge_key as place_order")
    pytester.makepyfile(test_shop=block)


def _run(pytester: pytest.Pytester, runtime: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", f"--saga-runtime={runtime}", f"--saga-report-dir={pytester.path / 'plans'}", "--saga-seed=1",
        "--saga-max-examples=20",
    )


RUNTIMES = ["sim", "asgi", "process", pytest.param("container", marks=pytest.mark.slow)]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_shop_holds_on_every_runtime(pytester: pytest.Pytester, runtime: str) -> None:
    if runtime == "container":
        from saga_verify._pytest_plugin import require_docker

        require_docker()
    _shop(pytester, bug=False)
    result = _run(pytester, runtime)
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_shops_unkeyed_charge_fails_on_every_runtime_with_the_same_plan(pytester: pytest.Pytester, runtime: str) -> None:
    if runtime == "container":
        from saga_verify._pytest_plugin import require_docker

        require_docker()
    _shop(pytester, bug=True)
    result = _run(pytester, runtime)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*saga 'checkout' broke no_double_charge*", "*1. lose-reply at payment.charge#1*"])


# -- "Arazzo workflows" ------------------------------------------------------------------------------
ROOT = Path(__file__).resolve().parent.parent


def arazzo_block() -> str:
    section = README.read_text(encoding="utf-8").split("## Arazzo workflows", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None, "README lost its 'Arazzo workflows' example"
    return match.group(1)


def test_the_arazzo_example_is_a_few_lines() -> None:
    assert len([line for line in arazzo_block().splitlines() if line.strip()]) <= 8


def test_the_arazzo_example_verifies_the_reference_workflow(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(ROOT)  # the block names the workflow relative to the project
    namespace: dict[str, object] = {}
    exec(compile(arazzo_block(), "README.md", "exec"), namespace)
    assert namespace["order"].name == "placeOrder"  # type: ignore[attr-defined]


def test_the_arazzo_example_fails_for_a_retry_without_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    from saga_verify import SagaViolationError

    monkeypatch.chdir(ROOT)
    block = arazzo_block().replace('"contracts/arazzo/order.arazzo.yaml"', '"fixtures/arazzo/charge_retry_without_key.arazzo.yaml", strict=False')
    block = block.replace('verify(order, runtime="asgi")', 'verify(order, runtime="asgi", report_dir=None)')
    with pytest.raises(SagaViolationError) as info:
        exec(compile(block, "README.md", "exec"), {})
    # Every distinct broken invariant has its report (a group of them when there are several).
    reports = [str(e) for e in getattr(info.value, "exceptions", [info.value])]
    assert any("1. lose-reply at payment.charge#1" in report for report in reports), reports


# -- "Durable sagas: deadlines, retries and waiting for a webhook" ---------------------------------
def webhook_block() -> str:
    section = README.read_text(encoding="utf-8").split("### Deadlines, retries and waiting for a webhook", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None, "README lost its webhook example"
    return match.group(1)


def test_the_webhook_example_holds(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # where verify writes what it finds
    namespace: dict[str, object] = {}
    exec(compile(webhook_block(), "README.md", "exec"), namespace)
    assert namespace["saga"].deadline == 120  # type: ignore[attr-defined]


def test_the_webhook_example_without_a_timeout_waits_for_ever_on_a_dropped_webhook(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from saga_verify import SagaViolationError

    monkeypatch.chdir(tmp_path)
    block = webhook_block()
    assert 'services.wait_for("payment.paid", timeout=60)' in block
    block = block.replace('services.wait_for("payment.paid", timeout=60)', 'services.wait_for("payment.paid")')
    with pytest.raises(SagaViolationError) as info:
        exec(compile(block, "README.md", "exec"), {})
    reports = [str(e) for e in getattr(info.value, "exceptions", [info.value])]
    assert any("1. drop at payment.paid#1" in r and "within_deadline" in r for r in reports), reports


# -- "Durable sagas: coordinator crash and recovery" -----------------------------------------------------------------------------
def durable_blocks() -> tuple[str, str]:
    section = README.read_text(encoding="utf-8").split("### Coordinator crash and recovery", 1)[1]
    section = re.split(r"\n##+ ", section, maxsplit=1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 2, "README lost a 'Durable sagas' example"
    return blocks[0], blocks[1]


def _durable_project(pytester: pytest.Pytester, saga_code: str) -> pytest.RunResult:
    pytester.mkpydir("shop")
    pytester.path.joinpath("shop", "services.py").write_text(SERVICES)
    pytester.path.joinpath("shop", "durable.py").write_text(saga_code)
    pytester.makepyfile(test_durable=durable_blocks()[1])
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--saga-report-dir={pytester.path / 'plans'}", "--saga-seed=1")


def test_the_durable_declaration_is_a_few_lines() -> None:
    lines = [line.strip() for line in durable_blocks()[1].splitlines() if line.strip()]
    assert len(lines) <= 16
    assert [line for line in lines if line.startswith("durable=")] == ["durable=Durable(store=open_db, close=lambda db: db.close()),"]


def test_the_durable_sqlite_saga_holds_with_coordinator_crashes(pytester: pytest.Pytester) -> None:
    result = _durable_project(pytester, durable_blocks()[0])
    result.assert_outcomes(passed=1)


def test_a_key_minted_without_writing_it_first_is_caught_by_a_coordinator_crash(pytester: pytest.Pytester) -> None:
    saga_code = durable_blocks()[0]
    persisted = 'charge = key_for(db, "charge", f"{oid}:charge:{run}")'
    assert persisted in saga_code
    result = _durable_project(pytester, saga_code.replace(persisted, 'charge = f"{oid}:charge:{run}"'))
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*saga 'durable-order' broke no_double_charge*", "*1. coordinator-crash-after at payment.charge#1*"])
# -- "Durable sagas: a saga library that runs steps from a scheduler" ----------------------------------------------------
def _statements(code: str) -> list[str]:
    return [line.split("#", 1)[0].strip() for line in code.splitlines() if line.split("#", 1)[0].strip()]


def test_the_scheduler_example_is_the_adapter_the_guide_verifies() -> None:
    section = README.read_text(encoding="utf-8").split("### A saga library that runs steps from a scheduler", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None, "README lost its durable scheduler example"
    block = _statements(match.group(1))
    assert len(block) <= 12
    guide = _statements((Path(__file__).parent / "guide" / "test_durable_scheduler.py").read_text(encoding="utf-8"))
    worker = block[1 : block.index("return outcome") + 1]
    # The guide builds the worker for either scheduler class; the README names the correct one.
    worker[0] = worker[0].replace("DurableScheduler(", "scheduler(")
    assert all(line in guide for line in worker), [line for line in worker if line not in guide]
    assert "order = verified(\"durable_scheduler\", DurableScheduler)" in guide


# -- "Several actors" --------------------------------------------------------------------------
def actors_block() -> str:
    section = README.read_text(encoding="utf-8").split("### Several actors", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None, "README lost its several-actors example"
    return match.group(1)


def test_the_actors_example_finds_the_lamp_sold_twice_with_one_switch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from saga_verify import SagaViolationError

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SagaViolationError) as info:
        exec(compile(actors_block(), "README.md", "exec"), {})
    reports = [str(e) for e in getattr(info.value, "exceptions", [info.value])]
    assert len(reports) == 1
    assert "1. switch at inventory.take#1" in reports[0]
    assert "stock never sold twice" in reports[0]
    assert "SWITCH: o-1 stops before inventory.take#1; o-2 moves" in reports[0]


# -- "Leases and fencing" --------------------------------------------------------------------------
def lease_block() -> str:
    section = README.read_text(encoding="utf-8").split("### Leases and fencing", 1)[1]
    section = re.split(r"\n##+ ", section, maxsplit=1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None, "README lost its stock-never-sold-twice example"
    return match.group(1)


def test_the_readme_stock_invariant_judges_as_the_reference_one() -> None:
    from saga_verify import FaultPlan, replay
    from saga_verify.faults import DeliveryPoint, Switch
    from saga_verify.invariants import check
    from saga_verify.reference import check_then_act_oversell, durable_two_orders, stock_never_sold_twice

    shown: dict[str, object] = {}
    exec(compile(lease_block(), "README.md", "exec"), shown)
    readme_invariant = shown["stock_never_sold_twice"]
    plan = FaultPlan((Switch(DeliveryPoint("inventory", "reserve", 1)),))
    oversold, _ = replay(check_then_act_oversell, plan)
    held, _ = replay(durable_two_orders, plan)
    for execution, broken in ((oversold, True), (held, False)):
        for inv in (readme_invariant, stock_never_sold_twice):
            assert bool(check(execution, [inv])) is broken, (inv, execution.saga.name)  # type: ignore[list-item]
    assert [v.message for v in check(oversold, [readme_invariant])] == ["2 in stock, sold to order-1, order-2"]  # type: ignore[list-item]
# -- "Choreography" -------------------------------------------------------------------------------
def choreography_block() -> str:
    section = README.read_text(encoding="utf-8").split("## Choreography", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None, "README lost its choreography example"
    return match.group(1)


DEDUPE = 'if event["id"] not in self.seen:                # at least once: deduplicate by event id'


def test_the_choreography_example_is_a_few_lines() -> None:
    assert len(choreography_block().strip().splitlines()) <= 32


def test_the_choreography_example_holds(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # where verify writes what it finds
    namespace: dict[str, object] = {}
    exec(compile(choreography_block(), "README.md", "exec"), namespace)
    assert namespace["shop"].saga.choreography is namespace["shop"]  # type: ignore[attr-defined]


def test_the_choreography_example_without_its_dedupe_reserves_twice_on_a_duplicate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from saga_verify import SagaViolationError

    monkeypatch.chdir(tmp_path)
    block = choreography_block()
    assert DEDUPE in block
    with pytest.raises(SagaViolationError) as info:
        exec(compile(block.replace(DEDUPE, "if True:"), "README.md", "exec"), {})
    assert "broke reserved_once" in str(info.value)
    assert "1. duplicate lag=0 at orders.place#1" in str(info.value)
