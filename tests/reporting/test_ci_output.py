"""What CI reads from a pytest run: JUnit XML properties on each saga test, one GitHub Actions
annotation per failure (only under GitHub Actions), from pytest-xdist workers too."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

# In-process pytester runs unload what they imported; keep one copy of the library for all.
import saga_verify._exploration
import saga_verify.reference  # noqa: F401
from saga_verify._reporting._ci import annotation

TESTS = """
from saga_verify import reference


def test_correct(saga_verify):
    saga_verify(reference.order_saga, max_examples=0)


def test_broken(saga_verify):
    saga_verify(reference.charge_without_key, max_examples=0)
"""

#: What the sweep finds broken in charge_without_key, whatever the seed: each failure's invariants
#: and minimal plan, smallest first.
BROKEN = [
    ("no_double_charge", "lose-reply at payment.charge#1"),
    ("full_compensation", "refuse at shipping.create#1"),
    ("all_or_nothing", "refuse at shipping.create#1; outage at inventory.release#1"),
    ("full_compensation, no_forward_after_compensation", "delay seconds=30 at payment.charge#1; refuse at payment.charge#2"),
]


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(test_sagas=TESTS)
    return pytester


def _properties(junit) -> dict[str, list[tuple[str, str]]]:
    tree = ET.parse(junit)
    return {
        case.get("name"): [(p.get("name"), p.get("value")) for p in case.iter("property")]
        for case in tree.iter("testcase")
    }


def test_each_saga_test_records_seed_verdict_plan_and_replay(project, monkeypatch) -> None:
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    result = project.runpytest("--junitxml=junit.xml", "--saga-seed=7", "--saga-report-dir=plans", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    assert "::error" not in result.stdout.str()  # not under GitHub Actions: no annotations
    props = _properties(project.path / "junit.xml")
    plan_files = _plan_files(project)
    assert props["test_correct"] == [
        ("saga_verify.saga", "order"),
        ("saga_verify.seed", "7"),
        ("saga_verify.verdict", "holds"),
        ("saga_verify.bound", "every plan of up to 2 faults over the calls its executions make holds (744 plans)"),
        ("saga_verify.location", "test_sagas.py:5"),
    ]
    assert props["test_broken"] == [
        ("saga_verify.saga", "charge_without_key"),
        ("saga_verify.seed", "7"),
        ("saga_verify.verdict", "broken"),
        ("saga_verify.bound", "every plan of up to 2 faults over the calls its executions make was tried (744 plans)"),
        ("saga_verify.location", "test_sagas.py:9"),
    ] + [
        prop
        for (broken, plan), plan_file in zip(BROKEN, plan_files, strict=True)
        for prop in (
            ("saga_verify.broken", broken),
            ("saga_verify.plan", plan),
            ("saga_verify.replay", f"saga-verify replay {plan_file}"),
        )
    ]


def _plan_files(project: pytest.Pytester) -> list[str]:
    """The plan file of each failure in BROKEN, in its order (each file names its first invariant
    and holds its plan)."""
    from saga_verify import FaultPlan

    written = {str(FaultPlan.load(p)): str(p) for p in (project.path / "plans").iterdir()}
    assert sorted(written) == sorted(plan for _, plan in BROKEN)
    return [written[plan] for _, plan in BROKEN]


def test_junit_properties_need_no_legacy_junit_family(project) -> None:
    # pytest's record_property fixture warns under the default xunit2 family, and with warnings as
    # errors that would fail the test: the plugin adds to the same user properties without it.
    result = project.runpytest_subprocess(
        "--junitxml=junit.xml", "-W", "error", "-o", "junit_family=xunit2", "-k", "correct", "-p", "no:cacheprovider", "-p", "no:schemathesis"
    )
    result.assert_outcomes(passed=1)
    assert ("saga_verify.verdict", "holds") in _properties(project.path / "junit.xml")["test_correct"]


def test_one_annotation_per_failure_under_github_actions(project, monkeypatch) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    result = project.runpytest("--saga-report-dir=plans", "--saga-seed=3", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    lines = [line for line in result.stdout.lines if line.startswith("::")]
    assert lines == [
        f"::error file=test_sagas.py,line=9,title=saga charge_without_key broke {broken.replace(',', '%2C')}::"
        f"saga 'charge_without_key' broke {broken} under: {plan}%0A"
        f"Reproduce with: saga-verify replay {plan_file}"
        for (broken, plan), plan_file in zip(BROKEN, _plan_files(project), strict=True)
    ]


def test_annotations_and_properties_come_back_from_xdist_workers(project, monkeypatch) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    result = project.runpytest_subprocess(
        "-n", "2", "--junitxml=junit.xml", "--saga-report-dir=plans", "-p", "no:cacheprovider", "-p", "no:schemathesis"
    )
    result.assert_outcomes(passed=1, failed=1)
    lines = [line for line in result.stdout.lines if line.startswith("::error")]
    assert len(lines) == len(BROKEN)
    assert lines[0].startswith("::error file=test_sagas.py,line=9,title=saga charge_without_key broke no_double_charge::")
    props = _properties(project.path / "junit.xml")
    assert ("saga_verify.verdict", "broken") in props["test_broken"]
    assert ("saga_verify.verdict", "holds") in props["test_correct"]


def test_annotation_escapes_what_github_reads_as_syntax() -> None:
    assert annotation(file="a,b:c.py", line=3, title="t: x, y", message="50% done\nnext") == (
        "::error file=a%2Cb%3Ac.py,line=3,title=t%3A x%2C y::50%25 done%0Anext"
    )
