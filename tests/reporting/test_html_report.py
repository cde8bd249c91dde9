"""The HTML report as a file: self-contained, well-formed diagrams that draw each fault its own
way, compensations in their colour, evidence highlighted, the coverage matrix, the bound proven,
and a folder that cannot be written refused before anything is written."""

from __future__ import annotations

import dataclasses
import html
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import hypothesis
import pytest

from saga_verify import FaultPlan, Step, explore, run_plan
from saga_verify._reporting import SagaSection, bound_proven, render_section, sequence_diagram, write_report
from saga_verify._reporting._diagram import STYLES
from saga_verify.errors import OptionError
from saga_verify.reference import (
    charge_without_key,
    fresh_key_on_retry,
    lost_reply_not_compensated,
    notify_before_pivot,
    order_saga,
    unbounded_retry,
)

SVG = "{http://www.w3.org/2000/svg}"


def _no_db() -> hypothesis.settings:
    return hypothesis.settings(database=None)


def _plan(*faults: str) -> FaultPlan:
    items = []
    for text in faults:
        kind, _, rest = text.partition(" at ")
        name, *params = kind.split()
        fields = dict(p.split("=") for p in params)
        items.append({"kind": name, "at": rest, **{k: float(v) for k, v in fields.items()}})
    return FaultPlan.from_json({"faults": items})


def _svgs(page: str) -> list[ET.Element]:
    return [ET.fromstring(svg) for svg in re.findall(r"<svg .*?</svg>", page, re.S)]


@pytest.fixture(scope="module")
def results():
    return [
        explore(order_saga, settings=_no_db(), report_dir=None, max_examples=10),
        # Each stopped at its first failure: the bound of such a search is what these pages show.
        explore(fresh_key_on_retry, settings=_no_db(), report_dir=None, all_failures=False),
        explore(lost_reply_not_compensated, settings=_no_db(), report_dir=None, all_failures=False),
        explore(notify_before_pivot, settings=_no_db(), report_dir=None, all_failures=False),
    ]


@pytest.fixture(scope="module")
def page(results, tmp_path_factory) -> str:
    path = write_report(tmp_path_factory.mktemp("html"), [SagaSection(r) for r in results], subtitle="test")
    return path.read_text(encoding="utf-8")


def test_the_page_needs_nothing_from_outside(page) -> None:
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page.lower()
    assert "<link" not in page.lower()
    assert "@import" not in page
    # Every reference is inside the page: anchors and the diagrams' own markers and patterns.
    assert re.findall(r'\b(?:src|href)="(?!#)', page) == []
    assert re.findall(r"url\((?!#)", page) == []
    # The only URL is the SVG namespace, which names and fetches nothing.
    assert set(re.findall(r"https?://[^\s\"'<>)]+", page)) == {"http://www.w3.org/2000/svg"}
    assert "Content-Security-Policy" in page


def test_every_diagram_is_well_formed_svg_with_a_lifeline_per_participant(page, results) -> None:
    diagrams = [svg for svg in _svgs(page) if "sequence" in svg.get("class", "")]
    failures = [f for r in results for f in r.failures]
    assert len(diagrams) == len(failures) == 3
    for svg in diagrams:
        lifelines = [g.get("data-lifeline") for g in svg.iter(f"{SVG}g") if g.get("data-lifeline")]
        assert lifelines == ["saga", "inventory", "payment", "shipping", "notification"]


def test_each_failure_has_its_plan_replay_evidence_and_timeline(page, results) -> None:
    failure = results[1].failures[0]
    assert "lose-reply at shipping.create#1" in page
    assert f'<pre class="plan">{html.escape(failure.plan.dumps())}</pre>' in page
    assert "saga_verify.replay(saga, saga_verify.FaultPlan.loads(" in page  # no plan file: the Python line
    assert "no_double_create</strong>: shipping.create took effect 2 times for order-1" in page
    # The ledger rows that show it are highlighted in the evidence, the timeline and the diagram.
    section = page[page.index("saga fresh_key_on_retry") :]
    section = section[: section.index("</section></section>")]
    assert len(re.findall(r'<li class="evidence">', section)) == 2
    highlighted = re.findall(r'<tr id="[^"]+-e(\d+)" class="[^"]*\bevidence\b', section)
    assert highlighted == ["2", "3"]
    assert section.count('class="evidence-row"') == 2


def _drawn(execution) -> set[str]:
    """The marks a diagram uses: element classes and arrow heads."""
    svg = sequence_diagram(execution, prefix="x")
    classes = set(re.findall(r'class="([^"]+)"', svg))
    heads = set(re.findall(r'marker-end="url\(#x-head-([a-z]+)\)"', svg))
    return {f"class:{c}" for c in classes} | {f"head:{h}" for h in heads}


def test_every_kind_of_fault_is_drawn_its_own_way() -> None:
    pausing = dataclasses.replace(order_saga, pauses=True)
    plain = _drawn(run_plan(order_saga))
    plans = {
        "fail": (order_saga, "fail at payment.charge#1"),
        "timeout": (order_saga, "timeout at payment.charge#1"),
        "lose-reply": (order_saga, "lose-reply at payment.charge#1"),
        "refuse": (order_saga, "refuse at payment.charge#1"),
        "duplicate": (order_saga, "duplicate lag=0 at payment.charge#1"),
        "late copy": (order_saga, "duplicate lag=30 at payment.charge#1"),
        "held": (order_saga, "delay seconds=30 at payment.charge#1"),
        "crash": (order_saga, "crash at payment.charge#1"),
        "pause": (pausing, "pause seconds=30 at payment.charge#1"),
    }
    signatures = {}
    for name, (saga, fault) in plans.items():
        execution = run_plan(saga, _plan(fault))
        svg = sequence_diagram(execution, prefix="x")
        # The fault is marked where it was decided.
        assert f'data-fault="{execution.faults[0]}"' in svg, name
        signatures[name] = frozenset(_drawn(execution) - plain)
        assert signatures[name], f"{name} is drawn like a fault-free run"
    assert len(set(signatures.values())) == len(signatures), signatures
    assert "class:frozen" in signatures["pause"]
    assert "class:fault fault-crash" in signatures["crash"]
    assert "head:refusal" in signatures["refuse"]
    assert "head:copy" in signatures["duplicate"]
    assert "head:copy" in signatures["late copy"]
    assert "class:consequence copy landed-late" in signatures["late copy"]
    assert "class:consequence copy landed-at-once" in signatures["duplicate"]
    assert "head:late" in signatures["held"]


def test_compensations_are_drawn_in_their_own_colour() -> None:
    execution = run_plan(order_saga, _plan("refuse at shipping.create#1"))
    svg = sequence_diagram(execution, prefix="c")
    rows = re.findall(r'<g class="delivery" data-seq="(\d+)".*?</g>(?=<g class="delivery"|<g class="outcome")', svg, re.S)
    assert rows
    colour = STYLES["compensation"][0]
    for entry in execution.trace:
        row = re.search(rf'<g class="delivery" data-seq="{entry.seq}".*?marker-end="url\(#c-head-(\w+)\)"', svg, re.S)
        assert row is not None
        compensation = entry.operation in ("release", "refund", "cancel")
        assert (row.group(1) == "compensation") == compensation, entry.point
    assert svg.count(f'stroke="{colour}"') >= 2  # refund and release


def test_a_long_execution_is_drawn_in_part_and_keeps_its_fault_and_evidence() -> None:
    failure = explore(unbounded_retry, settings=_no_db(), report_dir=None).failures[0]
    assert len(failure.execution.trace) > 100
    svg = sequence_diagram(failure.execution, prefix="u", evidence_entries=[e.seq for v in failure.violations for e in v.evidence if hasattr(e, "point")])
    drawn = re.findall(r'<g class="delivery" data-seq="(\d+)"', svg)
    assert 20 < len(drawn) < 50
    assert "0" in drawn
    assert str(len(failure.execution.trace) - 1) in drawn
    assert re.search(r"⋮  \d+ more deliveries, in the timeline below", svg)
    assert f'data-fault="{failure.plan.faults[0]}"' in svg
    ET.fromstring(svg)


def test_coverage_matrix_tells_tried_broken_never_tried_and_impossible(page) -> None:
    assert re.search(r'<td class="held" data-kind="lose-reply" data-operation="payment.charge"', page)
    assert re.search(r'<td class="broke" data-kind="lose-reply" data-operation="shipping.create"[^>]*>\d+<span class="broke">✗\d+', page)
    assert re.search(r'<td class="never" data-kind="[a-z-]+" data-operation="shipping.cancel" title="[^"]+never tried', page)
    assert re.search(r'<td class="cannot" data-kind="refuse" data-operation="payment.refund" title="[^"]*a compensation is never refused', page)
    assert re.search(r'<td class="cannot" data-kind="pause" data-operation="payment.charge" title="[^"]*Saga\(pauses=True\)', page)


def test_a_saga_without_refusals_shows_an_empty_refuse_row() -> None:
    steps = [Step(s.participant, s.action, s.compensation, restart=s.restart) for s in order_saga.steps]
    saga = dataclasses.replace(order_saga, name="no_refusals", steps=steps)
    section = render_section(SagaSection(explore(saga, settings=_no_db(), report_dir=None, max_examples=0))).body
    row = re.search(r'<tr class="empty-row"><th class="kind">refuse <span class="row-note">never searched</span></th>(.*?)</tr>', section)
    assert row is not None
    assert row.group(1).count('class="cannot"') == 7
    assert "no refuse= hook on step payment.charge" in row.group(1)


def test_bound_proven_says_what_was_proven(results) -> None:
    holds, fresh_key, lost_reply, on_a_good_day = results
    assert bound_proven(holds).startswith("every plan of up to 2 faults over the calls its executions make holds (744 plans)")
    assert bound_proven(holds).endswith("; 10 Hypothesis examples beyond it found nothing")
    assert bound_proven(fresh_key) == "one fault breaks it; the fault-free run holds"
    assert bound_proven(lost_reply) == "every plan of fewer than 2 faults holds (the sweep tried each of them first)"
    assert bound_proven(on_a_good_day) == "it breaks with no fault at all: nothing is proven"
    every = explore(fresh_key_on_retry, settings=_no_db(), report_dir=None, max_examples=0)
    assert bound_proven(every) == "every plan of up to 2 faults over the calls its executions make was tried (744 plans)"
    cut = explore(order_saga, settings=_no_db(), report_dir=None, sweep_budget=100, max_examples=0)
    assert bound_proven(cut) == "no exhaustive bound: the sweep stopped at its budget after 100 plans of up to 2 faults"
    off = explore(order_saga, settings=_no_db(), report_dir=None, sweep_faults=0, max_examples=3)
    assert bound_proven(off) == "no exhaustive bound (the sweep was off); 3 Hypothesis examples beyond it found nothing"


def test_names_are_escaped(tmp_path) -> None:
    saga = dataclasses.replace(charge_without_key, name="<script>alert(1)</script>")
    path = write_report(tmp_path, [SagaSection(explore(saga, settings=_no_db(), report_dir=None))])
    text = path.read_text(encoding="utf-8")
    assert "<script" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    for svg in _svgs(text):
        assert svg is not None


def test_a_folder_under_a_file_is_refused_and_nothing_is_written(tmp_path, results) -> None:
    blocker = tmp_path / "taken"
    blocker.write_text("a file", encoding="utf-8")
    with pytest.raises(OptionError) as info:
        write_report(blocker / "reports", [SagaSection(results[0])])
    assert str(info.value) == f"report folder {str(blocker / 'reports')!r} cannot be written: {str(blocker)!r} is a file, not a folder"
    assert blocker.read_text(encoding="utf-8") == "a file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_a_report_file_that_is_a_folder_is_refused(tmp_path, results) -> None:
    (tmp_path / "report.html").mkdir()
    with pytest.raises(OptionError, match=r"cannot be written: '.*report\.html' is a folder"):
        write_report(tmp_path, [SagaSection(results[0])])
    assert list((tmp_path / "report.html").iterdir()) == []


def test_the_report_replaces_an_older_one_whole(tmp_path, results) -> None:
    first = write_report(tmp_path, [SagaSection(results[0])])
    second = write_report(tmp_path, [SagaSection(results[1])])
    assert first == second == tmp_path / "report.html"
    text = second.read_text(encoding="utf-8")
    assert "saga fresh_key_on_retry" in text
    assert "saga order " not in text
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]  # no temporary file left behind


def test_sections_rendered_apart_keep_their_anchors_apart(results) -> None:
    one = render_section(SagaSection(results[1], key="tests/a.py::test_x#1"))
    two = render_section(SagaSection(results[1], key="tests/b.py::test_y#1"))
    ids = lambda html: set(re.findall(r'id="([^"]+)"', html))  # noqa: E731
    assert ids(one.body)
    assert not ids(one.body) & ids(two.body)


def test_report_dir_path_is_accepted_as_text(tmp_path, results) -> None:
    path = write_report(str(tmp_path / "new" / "folder"), [SagaSection(results[0])])
    assert path == Path(tmp_path / "new" / "folder" / "report.html")
    assert path.is_file()


def test_events_are_drawn_from_their_participant_and_waits_are_rows_of_the_timeline() -> None:
    from saga_verify.reference import timed_order_saga, timeout_without_compensation

    plain = _drawn(run_plan(timed_order_saga))
    lost = run_plan(timed_order_saga, _plan("drop at payment.paid#1"))
    svg = sequence_diagram(lost, prefix="x")
    assert 'data-fault="drop at payment.paid#1"' in svg
    assert "class:fault fault-drop" in _drawn(lost) - plain
    assert "paid #1: event lost" in svg
    assert "paid #1: event arrives" in sequence_diagram(run_plan(timed_order_saga), prefix="y")
    result = explore(timeout_without_compensation, settings=hypothesis.settings(database=None), report_dir=None, all_failures=False)
    body = render_section(SagaSection(result, ("a timing bug",), key="timed")).body
    assert '<tr class="moment moment-wait">' in body
    assert '<tr class="moment moment-wait-timeout">' in body
    assert "WAIT TIMED OUT" in body
