"""The HTML report: one self-contained page (styles inline, diagrams as inline SVG, no script,
nothing fetched) with, per saga, its verdict, the bound proven, the coverage matrix and, per
failure, the sequence diagram, the broken invariants with their evidence, the timeline, the plan
and the lines that replay it."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from .._files import unwritable_folder, write_atomically
from .._world import LedgerRow, Moment, TraceEntry
from ..errors import OptionError
from ._diagram import legend, sequence_diagram
from ._matrix import coverage_table
from ._timeline import MOMENT_MARK, OUTCOME_TEXT, RECOVERY_TEXT, compact

if TYPE_CHECKING:
    from .._exploration import ExplorationResult, Failure

#: The file a report folder holds.
REPORT_FILE = "report.html"


@dataclass(frozen=True)
class SagaSection:
    """One saga's part of a report."""

    result: ExplorationResult
    context: tuple[str, ...] = ()
    """Lines that place it: the test that ran it, the bug a reference variant carries."""
    key: str = ""
    """Makes its anchors unique on a page that gathers sections from several processes."""


class RenderedSection(NamedTuple):
    """A section as HTML: its line in the summary table and its body (plain strings, so that
    pytest-xdist workers can hand them to the controller)."""

    summary: str
    body: str
    broken: bool


def verdict(result: ExplorationResult) -> str:
    return "holds" if result.ok else "broken"


def bound_proven(result: ExplorationResult) -> str:
    """What the search proved, in words: the exhaustive bound it reached, if any."""
    plans = result.sweep_executions
    k = result.sweep_faults
    first = result.failures[0] if result.failures else None
    if first is not None and first.found_by == "baseline":
        return "it breaks with no fault at all: nothing is proven"
    if result.sweep_complete:
        # The search goes on after a failure, so a complete sweep may have broken something.
        over = f"every plan of up to {k} fault{'s' if k != 1 else ''} over the calls its executions make"
        text = f"{over} holds ({plans} plans)" if result.ok else f"{over} was tried ({plans} plans)"
    elif first is not None and first.found_by == "sweep":
        faults = len(first.plan.faults)
        text = (
            f"every plan of fewer than {faults} faults holds (the sweep tried each of them first)"
            if faults > 1
            else "one fault breaks it; the fault-free run holds"
        )
    elif k > 0:
        text = f"no exhaustive bound: the sweep stopped at its budget after {plans} plans of up to {k} faults"
    else:
        text = "no exhaustive bound (the sweep was off)"
    if result.ok and result.hypothesis_examples:
        text += f"; {result.hypothesis_examples} Hypothesis examples beyond it found nothing"
    return text


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-") or "saga"


def _evidence_sets(failure: Failure) -> tuple[set[int], set[int]]:
    entries: set[int] = set()
    rows: set[int] = set()
    for violation in failure.violations:
        for item in violation.evidence:
            if isinstance(item, TraceEntry):
                entries.add(item.seq)
            elif isinstance(item, LedgerRow):
                rows.add(item.seq)
    return entries, rows


def _evidence_list(failure: Failure, prefix: str) -> str:
    items = []
    for violation in failure.violations:
        evidence = []
        for item in violation.evidence:
            if isinstance(item, LedgerRow):
                link = f' <a href="#{prefix}-e{item.delivery}">delivery #{item.delivery}</a>' if item.delivery >= 0 else ""
                evidence.append(f'<li class="evidence"><span class="tag">ledger</span> <code>{escape(str(item))}</code>{link}</li>')
            elif isinstance(item, TraceEntry):
                outcome = OUTCOME_TEXT.get(item.outcome, item.outcome)
                evidence.append(
                    f'<li class="evidence"><span class="tag">trace</span> <a href="#{prefix}-e{item.seq}">#{item.seq}</a> '
                    f"<code>{escape(item.point)}</code> → {escape(outcome)}</li>"
                )
            else:
                evidence.append(f'<li class="evidence"><code>{escape(str(item))}</code></li>')
        listed = f'<ul class="evidence-list">{"".join(evidence)}</ul>' if evidence else ""
        items.append(
            f'<li class="violation"><strong class="invariant">{escape(violation.invariant)}</strong>: '
            f"{escape(violation.message)}{listed}</li>"
        )
    return f'<ul class="violations">{"".join(items)}</ul>'


def _effect(row: LedgerRow) -> str:
    amount = int(row.amount) if float(row.amount).is_integer() else row.amount
    return f"{row.action} {amount}" + (f" {row.ref}" if row.ref else "")


def _moment_row(moment: Moment) -> str:
    return (
        f'<tr class="moment moment-{escape(moment.kind)}"><td class="num"></td><td class="num">{moment.time:.3f}</td>'
        f'<td colspan="6"><em>{escape(MOMENT_MARK.get(moment.kind, moment.kind))}</em>: {escape(moment.text)}</td></tr>'
    )


def _timeline_table(failure: Failure, prefix: str, entries: set[int], rows: set[int]) -> str:
    execution = failure.execution
    effects: dict[int, list[LedgerRow]] = {}
    for row in execution.rows():
        effects.setdefault(row.delivery, []).append(row)
    compensations = {(s.participant, s.compensation) for s in execution.saga.steps if s.compensation}
    lines = []
    moments = list(execution.moments)
    recoveries = 0
    for e in execution.trace:
        # Waits, back-offs and the deadline, between the deliveries, in time order.
        while moments and moments[0].time < e.time:
            lines.append(_moment_row(moments.pop(0)))
        classes = []
        if (e.participant, e.operation) in compensations:
            classes.append("compensation")
        if e.fault:
            classes.append("faulted")
        caused = effects.get(e.seq, [])
        if e.seq in entries or any(r.seq in rows for r in caused):
            classes.append("evidence")
        request = compact(e.request) + (f" key={e.key}" if e.key and "idempotency_key" not in str(e.request) else "")
        effect_text = "<br>".join(
            f'<span class="{"evidence-effect" if r.seq in rows else ""}">{escape(_effect(r))}</span>' for r in caused
        )
        lines.append(
            f'<tr id="{prefix}-e{e.seq}" class="{" ".join(classes)}"><td class="num">{e.seq}</td><td class="num">{e.time:.3f}</td>'
            f"<td><code>{escape(e.point)}</code></td><td><code>{escape(request)}</code></td>"
            f"<td>{escape(OUTCOME_TEXT.get(e.outcome, e.outcome))}</td><td><code>{escape(compact(e.reply) if e.reply is not None else '')}</code></td>"
            f'<td class="fault-cell">{escape(e.fault or "")}</td><td>{effect_text}</td></tr>'
        )
        if e.outcome in ("unsent", "unread"):
            recoveries += 1
            lines.append(f'<tr class="recovery"><td colspan="8">{escape(RECOVERY_TEXT.format(n=recoveries).strip(" ~"))}</td></tr>')
    lines += [_moment_row(m) for m in moments]
    ending = execution.status
    if execution.halted:
        ending = f"halted: {execution.halted}"
    elif execution.error is not None:
        ending = f"crashed: {type(execution.error).__name__}: {execution.error}"
    return (
        '<table class="timeline"><thead><tr><th>#</th><th>t (s)</th><th>call</th><th>request</th><th>outcome</th>'
        "<th>reply</th><th>fault</th><th>took effect</th></tr></thead>"
        f'<tbody>{"".join(lines)}</tbody><tfoot><tr><td colspan="8">saga outcome: <strong>{escape(ending)}</strong> '
        f"(instance {escape(execution.correlation_id)})</td></tr></tfoot></table>"
    )


def _failure_html(failure: Failure, prefix: str, index: int) -> str:
    entries, rows = _evidence_sets(failure)
    plan = failure.plan
    faults = "".join(f"<li><code>{escape(str(f))}</code></li>" for f in plan.faults) or "<li>none: it breaks on a good day</li>"
    count = len(plan.faults)
    commands = "\n".join(failure.replay_commands)
    file_line = f"<p>Plan file: <code>{escape(str(failure.plan_path))}</code></p>" if failure.plan_path else ""
    return (
        f'<section class="failure" id="{prefix}">'
        f'<h3>Failure {index}: broke {escape(", ".join(failure.invariants))}</h3>'
        f'<p class="found">Minimal plan ({count} fault{"s" if count != 1 else ""}), found by {escape(failure.found_by)} after '
        f"{failure.examples} execution{'s' if failure.examples != 1 else ''}; minimised in {failure.shrink_seconds:.3f} s.</p>"
        f'<ol class="plan-faults">{faults}</ol>'
        f'<h4>Sequence diagram</h4><div class="diagram">{sequence_diagram(failure.execution, prefix=prefix + "-svg", evidence_entries=entries, evidence_rows=rows)}</div>'
        f"<h4>Broken invariants</h4>{_evidence_list(failure, prefix)}"
        f"<h4>Timeline</h4>{_timeline_table(failure, prefix, entries, rows)}"
        f'<h4>Plan</h4>{file_line}<pre class="plan">{escape(plan.dumps())}</pre>'
        f'<h4>Replay</h4><pre class="replay">{escape(commands)}</pre>'
        "</section>"
    )


def render_section(section: SagaSection) -> RenderedSection:
    """One saga: its summary line and its body."""
    result = section.result
    name = result.saga.name
    anchor = f"saga-{_slug(name)}-" + hashlib.sha256(f"{section.key}|{name}".encode()).hexdigest()[:8]
    state = verdict(result)
    bound = bound_proven(result)
    invariants = sorted({i for f in result.failures for i in f.invariants})
    plan = str(result.failures[0].plan) if result.failures else "-"
    summary = (
        f'<tr class="{state}"><td><a href="#{anchor}">{escape(name)}</a></td><td><span class="verdict {state}">{state}</span></td>'
        f"<td>{escape(', '.join(invariants) or '-')}</td><td><code>{escape(plan)}</code></td><td class=\"num\">{result.executions}</td>"
        f"<td>{escape(bound)}</td></tr>"
    )
    context = "".join(f"<p class=\"context\">{escape(line)}</p>" for line in section.context)
    facts = (
        '<dl class="facts">'
        f'<dt>verdict</dt><dd><span class="verdict {state}">{state}</span>'
        + (f" ({escape(', '.join(invariants))})" if invariants else "")
        + "</dd>"
        f"<dt>bound proven</dt><dd>{escape(bound)}</dd>"
        f"<dt>searched</dt><dd>{result.executions} executions: {result.sweep_executions} in the sweep, "
        f"{result.hypothesis_examples} from Hypothesis, in {result.seconds:.2f} s</dd>"
        f"<dt>seed</dt><dd>{escape(str(result.seed))}</dd>"
        "</dl>"
    )
    # A wide matrix (a choreography has a column per handler and per publish) scrolls on its own.
    matrix = f'<div class="wide">{coverage_table(result.coverage)}</div>' if result.coverage is not None else "<p>No coverage was recorded.</p>"
    if not result.ok:
        matrix += '<p class="context">The search stops at its first failure and minimises it: what it had not tried by then stays open.</p>'
    failures = "".join(_failure_html(f, f"{anchor}-f{i}", i) for i, f in enumerate(result.failures, 1))
    body = (
        f'<section class="saga {state}" id="{anchor}" data-saga="{escape(name, quote=True)}"><h2>saga {escape(name)} <span class="verdict {state}">{state}</span></h2>'
        f"{context}{facts}<h3>Fault coverage</h3>{matrix}{failures}</section>"
    )
    return RenderedSection(summary, body, not result.ok)


_STYLE = """
body{font-family:'DejaVu Sans',Verdana,sans-serif;margin:0;color:#263238;background:#fafafa;font-size:14px}
header{background:#263238;color:#fff;padding:18px 28px}
header h1{margin:0 0 4px;font-size:22px}
header p{margin:0;color:#cfd8dc}
main{padding:8px 28px 40px}
h2{font-size:19px;margin:0 0 8px}
h3{font-size:16px;margin:22px 0 8px}
h4{font-size:14px;margin:16px 0 6px;color:#455a64}
section.saga{background:#fff;border:1px solid #cfd8dc;border-radius:8px;padding:16px 20px;margin:18px 0}
section.saga.broken{border-left:6px solid #c62828}
section.saga.holds{border-left:6px solid #2e7d32}
section.failure{border-top:1px solid #eceff1;margin-top:14px}
.verdict{display:inline-block;padding:1px 9px;border-radius:10px;font-size:12px;font-weight:bold;color:#fff;vertical-align:middle}
.verdict.holds{background:#2e7d32}.verdict.broken{background:#c62828}
table{border-collapse:collapse}
td,th{border:1px solid #e0e0e0;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#eceff1}
td.num{text-align:right;font-variant-numeric:tabular-nums}
code,pre{font-family:'DejaVu Sans Mono',Menlo,monospace;font-size:12px}
pre{background:#f5f5f5;border:1px solid #e0e0e0;padding:8px 10px;overflow-x:auto}
dl.facts{display:grid;grid-template-columns:max-content auto;gap:3px 14px;margin:6px 0}
dl.facts dt{font-weight:bold;color:#546e7a}dl.facts dd{margin:0}
p.context{margin:2px 0;color:#546e7a}
.diagram{overflow-x:auto;border:1px solid #eceff1;background:#fff}
.wide{overflow-x:auto}
table.summary td{font-size:13px}
table.matrix td{text-align:center;min-width:58px;font-variant-numeric:tabular-nums}
table.matrix th.op.compensation{color:#00796b}
table.matrix th.kind{white-space:nowrap}
table.matrix caption{caption-side:bottom;text-align:left;color:#607d8b;font-size:12px;padding-top:4px}
td.held{background:#e8f5e9}
td.broke{background:#ffcdd2;font-weight:bold}
td.broke span.broke{color:#b71c1c;margin-left:4px}
td.never{background:#fff;outline:2px dashed #ef6c00;outline-offset:-3px;color:#ef6c00;font-weight:bold}
td.cannot{background:repeating-linear-gradient(45deg,#f5f5f5,#f5f5f5 4px,#e0e0e0 4px,#e0e0e0 6px)}
tr.empty-row th.kind{color:#ef6c00}
span.row-note{font-weight:normal;font-size:11px;color:#ef6c00}
p.never-tried{color:#e65100}p.never-tried.none{color:#2e7d32}
table.timeline td{font-size:12px}
table.timeline td:last-child{white-space:nowrap}
table.timeline tr.compensation td:nth-child(3){color:#00796b}
table.timeline tr.faulted td.fault-cell{color:#c62828;font-weight:bold}
table.timeline tr.evidence td{background:#fff8c5}
span.evidence-effect{background:#ffe082;font-weight:bold}
li.evidence{background:#fff8c5;margin:2px 0;padding:1px 4px;list-style:none}
span.tag{font-size:11px;color:#607d8b;text-transform:uppercase}
strong.invariant{color:#c62828}
.legend-box{margin:10px 0 0}
"""


def render_page(sections: Sequence[RenderedSection], *, title: str, subtitle: str) -> str:
    """The whole report: a summary of every saga, the legend, then each saga's section."""
    broken = sum(s.broken for s in sections)
    counts = f"{len(sections)} saga{'s' if len(sections) != 1 else ''}, {broken} broken"
    summary = (
        '<table class="summary"><thead><tr><th>saga</th><th>verdict</th><th>broken invariants</th><th>minimal plan</th>'
        f'<th>executions</th><th>bound proven</th></tr></thead><tbody>{"".join(s.summary for s in sections)}</tbody></table>'
        if sections
        else "<p>No saga was explored.</p>"
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        # Nothing may load from anywhere: the report is read offline, from CI artefacts too.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<header><h1>{escape(title)}</h1><p>{escape(subtitle)} · {escape(counts)}</p></header>"
        f'<main>{summary}<div class="legend-box">{legend()}</div>{"".join(s.body for s in sections)}</main>'
        "</body></html>\n"
    )


def check_report_dir(directory: str | os.PathLike[str]) -> Path:
    """Raise OptionError naming the folder if a report cannot be written there; create nothing."""
    path = Path(directory)
    problem = unwritable_folder(path)
    target = path / REPORT_FILE
    if problem is None and target.is_dir():
        problem = f"{str(target)!r} is a folder"
    if problem is not None:
        raise OptionError(f"report folder {str(path)!r} cannot be written: {problem}")
    return path


def write_report(
    directory: str | os.PathLike[str],
    sections: Iterable[SagaSection | RenderedSection],
    *,
    title: str = "saga-verify report",
    subtitle: str = "",
) -> Path:
    """Render the sections into one page and write it atomically as ``directory/report.html``."""
    path = check_report_dir(directory)
    rendered = [s if isinstance(s, RenderedSection) else render_section(s) for s in sections]
    page = render_page(rendered, title=title, subtitle=subtitle)
    target = path / REPORT_FILE
    try:
        write_atomically(target, page)
    except OSError as exc:
        raise OptionError(f"report folder {str(path)!r} cannot be written: {exc.strerror or exc}") from None
    return target
