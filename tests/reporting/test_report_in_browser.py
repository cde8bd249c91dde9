"""The demo's HTML report opened in a real headless Chromium (Debian's): it renders without an
error and fetches nothing, each failure's diagram has one lifeline per participant and marks the
faults its plan injected, and a screenshot is produced."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from headless_chromium import CHROMIUM, Chromium, png_size

from saga_verify import FaultPlan
from saga_verify.reference import choreographed_variants, durable_variants, messaging_variants, variants

#: Where a browser is part of the set-up (CI, `make test`), its absence fails instead of skipping.
REQUIRE_CHROMIUM = "REQUIRE_CHROMIUM"
SCRIPT = Path(sys.executable).with_name("saga-verify")


def _require_chromium() -> None:
    if CHROMIUM.exists():
        return
    problem = f"{CHROMIUM} is missing: fixtures/browser/install-chromium.sh installs Debian's chromium (make test runs it)"
    if os.environ.get(REQUIRE_CHROMIUM) == "1":
        pytest.fail(f"{REQUIRE_CHROMIUM}=1, but {problem}", pytrace=False)
    pytest.skip(problem)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo run as a user runs it, with its JSON rows and its HTML report."""
    folder = tmp_path_factory.mktemp("demo")
    completed = subprocess.run(
        [str(SCRIPT), "demo", "--json", "--html", str(folder / "html"), "--report-dir", str(folder / "plans")],
        capture_output=True,
        text=True,
        check=False,
        cwd=folder,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    report = folder / "html" / "report.html"
    assert completed.stderr == f"HTML report: {report}\n"
    return json.loads(completed.stdout), report


@pytest.fixture(scope="module")
def page(demo):
    _require_chromium()
    _rows, report = demo
    with Chromium(timeout=120) as browser:
        yield browser.open(report.as_uri())


def test_the_report_renders_without_errors_and_fetches_nothing(page, demo) -> None:
    _rows, report = demo
    assert page.problems == []
    assert page.requests == [report.as_uri()]
    assert page.evaluate("document.scripts.length") == 0
    assert page.evaluate("document.title") == "saga-verify demo"
    sizes = page.evaluate("[...document.querySelectorAll('svg')].map(s => [s.getBoundingClientRect().width, s.getBoundingClientRect().height])")
    broken = [v for v in (*variants(), *durable_variants(), *choreographed_variants(), *messaging_variants()) if v.broken]
    assert len(sizes) == 1 + len(broken) == 1 + 30  # the legend and one diagram per broken variant
    assert all(w > 300 and h > 90 for w, h in sizes), sizes


FAILURES_JS = """
[...document.querySelectorAll('section.failure')].map(failure => {
  const svg = failure.querySelector('svg.sequence');
  const box = el => { const r = el.getBoundingClientRect(); return [r.width, r.height]; };
  return {
    saga: failure.closest('section.saga').dataset.saga,
    lifelines: [...svg.querySelectorAll('[data-lifeline]')].map(g => [g.dataset.lifeline, ...box(g)]),
    faults: [...svg.querySelectorAll('[data-fault]')].map(g => [g.dataset.fault, ...box(g), getComputedStyle(g).visibility]),
  };
})
"""


def test_each_failure_has_one_lifeline_per_participant_and_marks_its_injected_faults(page, demo) -> None:
    rows, _report = demo
    participants = {v.name: list(v.saga.participant_names) for v in (*variants(), *durable_variants(), *choreographed_variants(), *messaging_variants())}
    plans = {r["saga"]: FaultPlan.from_json(r["plan"]) for r in rows if r["plan"] is not None}
    drawn = page.evaluate(FAILURES_JS)
    assert sorted(d["saga"] for d in drawn) == sorted(plans)  # the correct saga has none
    for diagram in drawn:
        saga = diagram["saga"]
        names = [name for name, _w, _h in diagram["lifelines"]]
        assert names == ["saga", *participants[saga]], saga
        # Each lifeline is drawn: a head and a line down the diagram.
        assert all(w > 50 and h > 100 for _name, w, h in diagram["lifelines"]), (saga, diagram["lifelines"])
        marks = {fault: (w, h, visibility) for fault, w, h, visibility in diagram["faults"]}
        for fault in plans[saga].faults:
            assert str(fault) in marks, (saga, str(fault), sorted(marks))
            width, height, visibility = marks[str(fault)]
            assert min(width, height) > 0, (saga, str(fault), marks[str(fault)])
            assert visibility == "visible", (saga, str(fault))
        if not plans[saga].faults:
            assert marks == {}  # it breaks with no fault: nothing is marked as injected


def test_a_screenshot_is_produced(page, tmp_path) -> None:
    whole = page.screenshot(tmp_path / "report.png")
    width, height = png_size(whole)
    assert width == 1280
    assert height > 5000  # twelve sagas, eleven diagrams
    diagram = page.screenshot(tmp_path / "diagram.png", "section.failure svg.sequence")
    expected = page.evaluate("(() => { const r = document.querySelector('section.failure svg.sequence').getBoundingClientRect(); return [Math.round(r.width), Math.round(r.height)]; })()")
    assert list(png_size(diagram)) == expected
    assert diagram.stat().st_size > 10_000
