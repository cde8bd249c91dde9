"""``saga-verify replay PLAN --emit-test FILE``: a readable pytest test that replays the plan and
asserts that the invariants it broke hold; it fails while the bug is there and passes once it is
fixed. Bad input is refused with the name of what is wrong, and the test file is left as it was."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

# In-process pytester runs unload what they imported; keep one copy of the library for all.
import saga_verify._exploration  # noqa: F401
from saga_verify import FaultPlan
from saga_verify._cli import main

CHECKOUT = '''
from saga_verify import Ledger, Saga, Step


class Payment:
    def __init__(self):
        self.ledger, self.replies = Ledger(), {}

    def charge(self, amount, idempotency_key=None):
        if idempotency_key is None or idempotency_key not in self.replies:
            self.ledger.record("charge", amount)
            self.replies[idempotency_key] = {"status": "ok"}
        return self.replies[idempotency_key]

    def refund(self, idempotency_key=None):
        return {"status": "ok"}


def run(services, order):
    for _attempt in range(3):
        try:
            services.payment.charge(amount=order["amount"]{key})
            return "completed"
        except (ConnectionError, TimeoutError):
            continue
    return "failed"


checkout = Saga(
    "checkout",
    steps=[Step("payment", "charge", compensation="refund")],
    participants=lambda: {"payment": Payment()},
    run=run,
    input={"order_id": "o-1", "amount": 100},
)
'''
BUGGY = CHECKOUT.replace("{key}", "")
FIXED = CHECKOUT.replace("{key}", ', idempotency_key=order["order_id"] + ":charge"')


def run(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1


@pytest.fixture
def shop(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    pytester.makepyfile(checkout_saga=BUGGY)
    pytester.syspathinsert()
    monkeypatch.chdir(pytester.path)
    # The emitted tests run in a fresh process, as a user runs them, and import the saga from here.
    monkeypatch.setenv("PYTHONPATH", str(pytester.path))
    return pytester


def _found_plan(shop: pytest.Pytester) -> Path:
    assert run(["explore", "checkout_saga:checkout", "--report-dir", "plans", "--max-examples", "0"]) == 1
    (plan,) = (shop.path / "plans").glob("checkout-no_double_charge-*.json")  # the double charge's
    return plan


def test_the_emitted_test_fails_while_the_bug_is_there_and_passes_once_it_is_fixed(shop, capsys) -> None:
    plan = _found_plan(shop)
    capsys.readouterr()
    target = shop.path / "tests" / "test_regressions.py"
    assert run(["replay", str(plan.relative_to(shop.path)), "--emit-test", "tests/test_regressions.py"]) == 1
    out = capsys.readouterr().out
    text = target.read_text(encoding="utf-8")
    (name,) = [line[4:].split("(")[0] for line in text.splitlines() if line.startswith("def ")]
    assert out.rstrip().endswith(f"Appended {name} to tests/test_regressions.py")
    assert name.startswith("test_checkout_no_double_charge_")
    # It reads as a test a person would write.
    assert "from checkout_saga import checkout as saga" in text
    assert 'LoseReply(DeliveryPoint("payment", "charge", 1)),' in text
    assert 'v.invariant in ("no_double_charge",)' in text
    assert f"(from {plan.relative_to(shop.path)})" in text.replace("\n    ", " ")

    failing = shop.runpytest_subprocess(str(target), "-p", "no:cacheprovider", "-p", "no:schemathesis")
    failing.assert_outcomes(failed=1)
    failing.stdout.fnmatch_lines(["*no_double_charge: payment.charge took effect 2 times for o-1*"])

    (shop.path / "checkout_saga.py").write_text(FIXED, encoding="utf-8")
    passing = shop.runpytest_subprocess(str(target), "-p", "no:cacheprovider", "-p", "no:schemathesis")
    passing.assert_outcomes(passed=1)


def test_a_second_regression_is_appended_after_the_first(shop, capsys) -> None:
    plan = _found_plan(shop)
    other = FaultPlan.from_json({"saga": {"name": "checkout", "ref": "checkout_saga:checkout"}, "faults": [{"kind": "duplicate", "at": "payment.charge#1"}]})
    other_file = other.save(shop.path / "other.json")
    target = shop.path / "test_regressions.py"
    assert run(["replay", str(plan), "--emit-test", str(target)]) == 1
    assert run(["replay", str(other_file), "--emit-test", str(target)]) == 1
    text = target.read_text(encoding="utf-8")
    assert text.count("\ndef test_checkout_") == 2
    assert text.startswith('"""Regression tests pinned from saga-verify failures')
    tests = [node.name for node in ast.parse(text).body if isinstance(node, ast.FunctionDef)]
    assert len(tests) == len(set(tests)) == 2
    assert tests[1].startswith("test_checkout_no_double_charge_")  # the second plan also charges twice


def _refused(capsys, argv: list[str]) -> str:
    capsys.readouterr()
    assert run(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    return err


def test_the_same_regression_twice_is_refused_and_the_file_is_unchanged(shop, capsys) -> None:
    plan = _found_plan(shop)
    target = shop.path / "test_regressions.py"
    assert run(["replay", str(plan), "--emit-test", str(target)]) == 1
    before = target.read_bytes()
    err = _refused(capsys, ["replay", str(plan), "--emit-test", str(target)])
    assert err.startswith(f"saga-verify: error: test file {str(target)!r} already holds this regression (test_checkout_no_double_charge_")
    assert ", line 4): checkout_saga:checkout under lose-reply at payment.charge#1" in err
    assert target.read_bytes() == before


def test_a_plan_of_another_saga_is_refused(shop, capsys) -> None:
    plan = _found_plan(shop)
    target = shop.path / "test_regressions.py"
    err = _refused(capsys, ["replay", str(plan), "--saga", "saga_verify.reference:order_saga", "--emit-test", str(target)])
    assert err == (
        f"saga-verify: error: plan file {str(plan)!r} does not fit saga 'saga_verify.reference:order_saga': this plan is for "
        "saga 'checkout', not 'order': replay it against 'checkout' (checkout_saga:checkout)\n"
    )
    foreign = FaultPlan.from_json({"saga": {"name": "checkout", "ref": "checkout_saga:checkout"}, "faults": [{"kind": "fail", "at": "shipping.create#1"}]})
    foreign_file = foreign.save(shop.path / "foreign.json")
    err = _refused(capsys, ["replay", str(foreign_file), "--emit-test", str(target)])
    assert err.startswith(
        f"saga-verify: error: plan file {str(foreign_file)!r} does not fit saga 'checkout_saga:checkout': plan names shipping.create"
    )
    assert not target.exists()


def test_a_plan_in_a_newer_format_is_refused(shop, capsys) -> None:
    newer = shop.path / "newer.json"
    newer.write_text(json.dumps({"format": "saga-verify/plan@3", "saga": {"name": "checkout"}, "faults": []}), encoding="utf-8")
    target = shop.path / "test_regressions.py"
    err = _refused(capsys, ["replay", str(newer), "--emit-test", str(target)])
    assert err == (
        f"saga-verify: error: {newer}: written in plan format 'saga-verify/plan@3', newer than this saga-verify "
        "reads ('saga-verify/plan@2'); upgrade saga-verify to use it\n"
    )
    assert not target.exists()


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("regressions.txt", None, "is not a Python file: give a path ending in .py"),
        ("broken.py", "def oops(:\n", "is not valid Python (line 1: "),
        ("latin1.py", b"x = '\xe9'\n", "cannot be read: "),
    ],
)
def test_a_test_file_that_cannot_take_a_test_is_refused(shop, capsys, name, content, message) -> None:
    plan = _found_plan(shop)
    target = shop.path / name
    if isinstance(content, str):
        target.write_text(content, encoding="utf-8")
    elif isinstance(content, bytes):
        target.write_bytes(content)
    before = target.read_bytes() if target.exists() else None
    err = _refused(capsys, ["replay", str(plan), "--emit-test", str(target)])
    assert err.startswith(f"saga-verify: error: test file {str(target)!r} ")
    assert message in err
    assert (target.read_bytes() if target.exists() else None) == before
    assert [p.name for p in shop.path.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def test_a_folder_as_test_file_is_refused(shop, capsys) -> None:
    plan = _found_plan(shop)
    folder = shop.path / "tests.py"
    folder.mkdir()
    err = _refused(capsys, ["replay", str(plan), "--emit-test", str(folder)])
    assert err == f"saga-verify: error: test file {str(folder)!r} is a folder: give a path ending in .py\n"


def test_the_readme_shows_what_is_emitted() -> None:
    import hashlib
    import re

    from saga_verify._reporting import regression_test

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    shown = re.search(r"\*\*Regression tests\.\*\*.*?```python\n(.*?)```", readme, re.S)
    assert shown is not None, "README lost its regression test example"
    plan = FaultPlan.from_json(
        {"saga": {"name": "order", "ref": "shop.saga:order_saga"}, "faults": [{"kind": "lose-reply", "at": "payment.charge#1"}], "violated": ["no_double_charge"]}
    )
    digest = hashlib.sha256(plan.dumps().encode()).hexdigest()[:8]
    _name, text = regression_test(
        plan, saga_ref="shop.saga:order_saga", saga_name="order", invariants=["no_double_charge"], source=f".saga-verify/order-no_double_charge-{digest}.json"
    )
    assert shown.group(1) == text
