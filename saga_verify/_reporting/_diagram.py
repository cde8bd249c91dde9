"""Sequence diagrams of one execution as inline SVG: a lifeline for the saga and for each
participant, one row per delivery, every kind of fault drawn in its own way, compensations in
their own colour, and the ledger effects each delivery caused beside it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import escape
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .._world import Execution, LedgerRow, TraceEntry

# Geometry (px).
_TIME_COLUMN = 70
_LANE = 150
_HEAD_HEIGHT = 30
_TOP = 14
_ROW = 50
_EFFECTS_COLUMN = 240
_FONT = "font-family:'DejaVu Sans',Verdana,sans-serif"
_MONO = "font-family:'DejaVu Sans Mono',Menlo,monospace"
#: A diagram of a longer execution draws the start, the end, the evidence and the faults only.
MAX_ROWS = 30

#: How each kind of arrow looks: stroke colour, dash pattern.
STYLES: dict[str, tuple[str, str]] = {
    "forward": ("#263238", ""),
    "compensation": ("#00796b", ""),
    "reply": ("#546e7a", "5 3"),
    "fault": ("#c62828", ""),
    "lost": ("#c62828", "5 3"),
    "refusal": ("#b26a00", "5 3"),
    "copy": ("#6a1b9a", "2 3"),
    "late": ("#d35400", "2 3"),
    "paused": ("#1565c0", ""),
}

#: What each mark means, for the legend.
LEGEND: tuple[tuple[str, str], ...] = (
    ("forward", "forward step"),
    ("compensation", "compensation"),
    ("reply", "reply"),
    ("fault", "not delivered (fail, outage, timeout)"),
    ("lost", "applied, reply lost"),
    ("refusal", "business refusal"),
    ("copy", "duplicate copy"),
    ("late", "held request lands late"),
    ("paused", "participant paused"),
)


@dataclass(frozen=True)
class _Lanes:
    saga_x: float
    xs: dict[str, float]
    effects_x: float
    width: float


def _lanes(participants: Sequence[str]) -> _Lanes:
    saga_x = _TIME_COLUMN + _LANE / 2
    xs = {name: saga_x + _LANE * (i + 1) for i, name in enumerate(participants)}
    effects_x = saga_x + _LANE * len(participants) + _LANE / 2 + 8
    return _Lanes(saga_x, xs, effects_x, effects_x + _EFFECTS_COLUMN)


def _short(value: Any, limit: int = 30) -> str:
    from ._timeline import compact

    text = compact(value) if value is not None else ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _text(x: float, y: float, content: str, *, cls: str = "", anchor: str = "start", size: int = 11, fill: str = "#263238", mono: bool = False, weight: str = "normal") -> str:
    font = _MONO if mono else _FONT
    klass = f' class="{cls}"' if cls else ""
    return (
        f'<text x="{x:.1f}" y="{y:.1f}"{klass} text-anchor="{anchor}" font-size="{size}" fill="{fill}" '
        f'font-weight="{weight}" style="{font};paint-order:stroke;stroke:#fff;stroke-width:3px;stroke-linejoin:round">'
        f"{escape(content)}</text>"
    )


def _arrow(x1: float, x2: float, y: float, style: str, prefix: str, *, head: bool = True) -> str:
    colour, dash = STYLES[style]
    dashed = f' stroke-dasharray="{dash}"' if dash else ""
    marker = f' marker-end="url(#{prefix}-head-{style})"' if head else ""
    return f'<line x1="{x1:.1f}" y1="{y:.1f}" x2="{x2:.1f}" y2="{y:.1f}" stroke="{colour}" stroke-width="1.6"{dashed}{marker}/>'


def _cross(x: float, y: float, colour: str = "#c62828") -> str:
    d = 5
    return (
        f'<path d="M{x - d:.1f},{y - d:.1f} L{x + d:.1f},{y + d:.1f} M{x - d:.1f},{y + d:.1f} L{x + d:.1f},{y - d:.1f}" '
        f'stroke="{colour}" stroke-width="2.4" fill="none"/>'
    )


def _burst(x: float, y: float) -> str:
    points = []
    import math

    for i in range(16):
        r = 11 if i % 2 == 0 else 5
        a = math.pi * i / 8
        points.append(f"{x + r * math.cos(a):.1f},{y + r * math.sin(a):.1f}")
    return f'<polygon points="{" ".join(points)}" fill="#c62828" stroke="#fff" stroke-width="1"/>'


def _defs(prefix: str) -> str:
    heads = []
    for style, (colour, _dash) in STYLES.items():
        heads.append(
            f'<marker id="{prefix}-head-{style}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="8" '
            f'markerHeight="8" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="{colour}"/></marker>'
        )
    hatch = (
        f'<pattern id="{prefix}-frozen" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
        '<rect width="6" height="6" fill="#e3f2fd"/><line x1="0" y1="0" x2="0" y2="6" stroke="#1565c0" stroke-width="2"/></pattern>'
    )
    return "<defs>" + "".join(heads) + hatch + "</defs>"


def _timeout_of(execution: Execution, entry: TraceEntry) -> float:
    """How long the caller of this entry waited: its step's ``timeout=``, or the saga's."""
    for step in execution.saga.steps:
        if step.participant == entry.participant and entry.operation in (step.action, step.compensation) and step.timeout is not None:
            return step.timeout
    return execution.saga.call_timeout


def _is_compensation(execution: Execution, participant: str, operation: str) -> bool:
    return any(s.participant == participant and s.compensation == operation for s in execution.saga.steps)


def _fault_label(entry: TraceEntry) -> str:
    return f"{entry.fault} at {entry.point}"


def sequence_diagram(
    execution: Execution,
    *,
    prefix: str = "d",
    evidence_entries: Iterable[int] = (),
    evidence_rows: Iterable[int] = (),
) -> str:
    """The execution as an SVG sequence diagram. ``prefix`` keeps the ids of several diagrams on
    one page apart; ``evidence_entries`` (trace seqs) and ``evidence_rows`` (ledger row seqs) are
    highlighted."""
    saga = execution.saga
    participants = list(saga.participant_names)
    for entry in execution.trace:
        if entry.participant not in participants:
            participants.append(entry.participant)
    lanes = _lanes(participants)
    marked_entries = set(evidence_entries)
    marked_rows = set(evidence_rows)
    rows_by_delivery: dict[int, list[LedgerRow]] = {}
    for row in execution.rows():
        rows_by_delivery.setdefault(row.delivery, []).append(row)

    body_top = _TOP + _HEAD_HEIGHT + 16
    # A saga that retries forever makes hundreds of calls: draw the start, the end, the evidence
    # and the injected faults, and say how many rows between them are left to the timeline.
    planned = {str(f) for f in execution.faults}
    kept = [
        e
        for i, e in enumerate(execution.trace)
        if len(execution.trace) <= MAX_ROWS
        or i < MAX_ROWS * 2 // 3
        or i >= len(execution.trace) - MAX_ROWS // 5
        or e.seq in marked_entries
        or (e.fault and _fault_label(e) in planned)
    ]
    row_of: dict[int, int] = {}
    gaps: list[tuple[int, int]] = []  # (row, deliveries not drawn before it)
    previous = -1
    for e in kept:
        if e.seq > previous + 1:
            gaps.append((len(row_of) + len(gaps), e.seq - previous - 1))
        row_of[e.seq] = len(row_of) + len(gaps)
        previous = e.seq
    n = len(row_of) + len(gaps)
    outcome_y = body_top + n * _ROW + 14
    height = outcome_y + 44
    parts: list[str] = []

    # Frozen bands first, under everything else: from the call that paused a participant to the
    # row where what waited in it landed.
    for entry in kept:
        if entry.fault and entry.fault.startswith("pause") and entry.outcome in ("frozen", "ok"):
            landed = [row_of[e.seq] for e in kept if e.participant == entry.participant and e.outcome == "late" and e.fault == entry.fault]
            end = max(landed, default=row_of[entry.seq])
            x = lanes.xs[entry.participant]
            y1 = body_top + row_of[entry.seq] * _ROW + 8
            y2 = body_top + end * _ROW + _ROW - 8
            parts.append(
                f'<rect class="frozen" x="{x - 9:.1f}" y="{y1:.1f}" width="18" height="{y2 - y1:.1f}" '
                f'fill="url(#{prefix}-frozen)" stroke="#1565c0" stroke-width="1"><title>{escape(entry.participant)} paused '
                f"({escape(entry.fault)})</title></rect>"
            )

    # Evidence rows: a band behind the row.
    for entry in kept:
        if entry.seq in marked_entries or any(r.seq in marked_rows for r in rows_by_delivery.get(entry.seq, ())):
            y = body_top + row_of[entry.seq] * _ROW
            parts.append(f'<rect class="evidence-row" x="2" y="{y:.1f}" width="{lanes.width - 4:.1f}" height="{_ROW:.1f}" fill="#fff8c5" rx="3"/>')

    # Lifelines and heads.
    bottom = outcome_y - 4
    heads = [("saga", "saga", lanes.saga_x)] + [(p, p, lanes.xs[p]) for p in participants]
    for key, label, x in heads:
        parts.append(
            f'<g class="lifeline" data-lifeline="{escape(key, quote=True)}">'
            f'<line x1="{x:.1f}" y1="{_TOP + _HEAD_HEIGHT:.1f}" x2="{x:.1f}" y2="{bottom:.1f}" stroke="#90a4ae" stroke-width="1.2" stroke-dasharray="6 4"/>'
            f'<rect x="{x - _LANE / 2 + 10:.1f}" y="{_TOP:.1f}" width="{_LANE - 20:.1f}" height="{_HEAD_HEIGHT}" rx="5" '
            f'fill="{"#263238" if key == "saga" else "#eceff1"}" stroke="#263238" stroke-width="1"/>'
            + _text(x, _TOP + 19, _short(label, 24), anchor="middle", size=12, fill="#fff" if key == "saga" else "#263238", weight="bold").replace(
                "stroke:#fff;", "stroke:none;"
            )
            + "</g>"
        )
    parts.append(_text(8, _TOP + 19, "virtual s", size=10, fill="#78909c"))
    parts.append(_text(lanes.effects_x, _TOP + 19, "ledger effects", size=11, fill="#546e7a", weight="bold"))

    for entry in kept:
        parts.append(_entry(entry, execution, lanes, body_top + row_of[entry.seq] * _ROW, prefix, rows_by_delivery.get(entry.seq, []), marked_rows))
    for gap_row, skipped in gaps:
        y_gap = body_top + gap_row * _ROW + _ROW / 2 + 4
        parts.append(
            f'<g class="gap">{_text(lanes.saga_x + 8, y_gap, f"⋮  {skipped} more deliveries, in the timeline below", size=12, fill="#546e7a", weight="bold")}</g>'
        )

    ending = execution.status
    if execution.halted:
        ending = f"halted: {execution.halted}"
    elif execution.error is not None:
        ending = f"raised {type(execution.error).__name__}"
    ending = _short(f"⇒ {ending}", 60)
    box = max(_LANE - 20, len(ending) * 7.5 + 24)
    parts.append(
        f'<g class="outcome"><rect x="{lanes.saga_x - _LANE / 2 + 10:.1f}" y="{outcome_y:.1f}" width="{box:.1f}" height="26" rx="13" '
        f'fill="#fff" stroke="#263238" stroke-width="1.4"/>'
        + _text(lanes.saga_x - _LANE / 2 + 10 + box / 2, outcome_y + 17, ending, anchor="middle", size=12, weight="bold")
        + "</g>"
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="sequence" id="{prefix}" width="{lanes.width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {lanes.width:.0f} {height:.0f}" role="img" aria-label="sequence diagram of saga {escape(saga.name, quote=True)}">'
        + _defs(prefix)
        + "".join(parts)
        + "</svg>"
    )


def _entry(
    entry: TraceEntry,
    execution: Execution,
    lanes: _Lanes,
    top: float,
    prefix: str,
    rows: list[LedgerRow],
    marked_rows: set[int],
) -> str:
    x_s = lanes.saga_x
    x_p = lanes.xs[entry.participant]
    # "In the network": just before the participant, never on another participant's lifeline.
    mid = x_p - _LANE * 0.42
    y_req = top + 18
    y_rep = top + 36
    compensation = _is_compensation(execution, entry.participant, entry.operation)
    style = "compensation" if compensation else "forward"
    call = f"{entry.operation} #{entry.attempt}"
    if compensation:
        call += " (compensation)"
    outcome = entry.outcome
    fault = entry.fault
    out: list[str] = [_text(8, y_req + 4, f"t={entry.time:.3f}", size=10, fill="#78909c", mono=True)]
    tip = escape(f"#{entry.seq} {entry.point} key={entry.key} request: {_short(entry.request, 200)} -> {outcome}: {_short(entry.reply, 200)}")
    out.append(f"<title>{tip}</title>")
    # The fault decided at this call is marked where it happened; copies and late landings are
    # its consequences, drawn as arrows out of the network.
    mark = ""
    if fault and outcome not in ("late", "copy"):
        mark = f' data-fault="{escape(_fault_label(entry), quote=True)}"'

    def badge(x: float, y: float, text: str, colour: str) -> str:
        return f'<g class="fault"{mark}>' + _text(x, y, text, size=11, fill=colour, weight="bold") + "</g>"

    if (entry.participant, entry.operation) in execution.saga.events:
        # An event the participant sent: it travels the other way, from the participant to the saga.
        words = {"event": "event arrives", "copy": "event arrives again (copy)", "dropped": "event lost"}[outcome]
        out.append(_text(x_s + 8, y_req - 6, f"{entry.operation} #{entry.attempt}: {words}", fill=STYLES["reply"][0]))
        if outcome == "dropped":
            out.append(_arrow(x_p, mid + 6, y_req, "lost", prefix, head=False))
            out.append(f'<g class="fault fault-drop"{mark}>{_cross(mid, y_req)}</g>')
            out.append(badge(x_s + 8, y_rep + 4, f"✕ {fault}: the saga never receives it", STYLES["fault"][0]))
        else:
            out.append(_arrow(x_p, x_s + 2, y_req, "copy" if outcome == "copy" else "reply", prefix))
            if fault and outcome == "event":
                out.append(badge(x_p + 12, y_req + 4, f"◷ {fault}" if fault.startswith("delay") else f"\u00d72 {fault}", STYLES["late"][0]))
    elif outcome in ("late", "copy"):
        # What landed, by the fault that caused it: a late outcome may be a duplicate's copy.
        if outcome == "copy" or (fault or "").startswith("duplicate"):
            kind, words = "copy", "duplicate copy lands" + (" late" if outcome == "late" else "")
        elif (fault or "").startswith("pause"):
            kind, words = "late", "lands at the thaw"
        else:
            kind, words = "late", "held request lands"
        # Out of the network, not from the saga: nobody sent it again.
        start = mid
        out.append(f'<circle cx="{start:.1f}" cy="{y_req:.1f}" r="3.5" fill="{STYLES[kind][0]}"/>')
        out.append(_arrow(start, x_p - 3, y_req, kind, prefix))
        out.append(_text(start, y_req - 6, f"{call}: {words}", fill=STYLES[kind][0]))
        landing = "landed-late" if outcome == "late" else "landed-at-once"
        out.append(f'<g class="consequence {kind} {landing}" data-consequence="{escape(_fault_label(entry), quote=True)}"></g>')
    elif outcome in ("failed", "timed-out"):
        stop = x_p - 14 if outcome == "failed" else mid
        out.append(_arrow(x_s, stop - 6, y_req, "fault", prefix, head=False))
        out.append(f'<g class="fault fault-{escape(outcome)}"{mark}>{_cross(stop, y_req)}</g>')
        out.append(_text(x_s + 8, y_req - 6, call, fill=STYLES[style][0]))
        seen = "ConnectionError" if outcome == "failed" else f"TimeoutError after {_timeout_of(execution, entry):g} s"
        out.append(badge(x_s + 8, y_rep + 4, f"✕ {fault}: caller sees {seen}", STYLES["fault"][0]))
    elif outcome == "unsent":
        # The coordinator died on its own lane: nothing left it.
        out.append(f'<g class="fault fault-coordinator-crash"{mark}>{_burst(x_s, y_req)}</g>')
        out.append(_text(x_s + 14, y_req - 6, call, fill=STYLES[style][0]))
        out.append(badge(x_s + 14, y_req + 4, "coordinator dies before sending; a fresh one recovers", STYLES["fault"][0]))
    elif outcome == "held":
        out.append(_arrow(x_s, mid - 10, y_req, style, prefix, head=False))
        out.append(
            f'<g class="fault fault-held"{mark}><rect x="{mid - 10:.1f}" y="{y_req - 7:.1f}" width="20" height="14" rx="3" '
            f'fill="#fff3e0" stroke="{STYLES["late"][0]}" stroke-width="1.6"/></g>'
        )
        out.append(_text(x_s + 8, y_req - 6, call, fill=STYLES[style][0]))
        out.append(badge(mid + 14, y_req + 4, f"held: {fault}", STYLES["late"][0]))
        out.append(_text(x_s + 8, y_rep + 4, f"caller sees TimeoutError after {_timeout_of(execution, entry):g} s", size=10, fill="#78909c"))
    elif outcome == "frozen":
        out.append(_arrow(x_s, x_p - 10, y_req, style, prefix))
        out.append(_text(x_s + 8, y_req - 6, call, fill=STYLES[style][0]))
        if fault:
            out.append(badge(x_p + 12, y_req + 4, f"❄ {fault}", STYLES["paused"][0]))
        else:
            out.append(_text(x_p + 12, y_req + 4, "waits: paused", size=10, fill=STYLES["paused"][0]))
        out.append(_text(x_s + 8, y_rep + 4, f"caller sees TimeoutError after {_timeout_of(execution, entry):g} s", size=10, fill="#78909c"))
    else:
        # Delivered: ok, reply-lost, crashed, raised.
        out.append(_arrow(x_s, x_p - 2, y_req, style, prefix))
        label = call
        out.append(_text(x_s + 8, y_req - 6, label, fill=STYLES[style][0]))
        reply = _short(entry.reply, 34)
        if outcome == "reply-lost":
            out.append(_arrow(x_p, mid + 6, y_rep, "lost", prefix, head=False))
            out.append(f'<g class="fault fault-lose-reply"{mark}>{_cross(mid, y_rep)}</g>')
            out.append(badge(x_s + 8, y_rep + 13, f"✕ {fault}: applied, reply lost; caller sees TimeoutError", STYLES["fault"][0]))
        elif outcome == "crashed":
            out.append(f'<g class="fault fault-crash"{mark}>{_burst(x_p, y_req)}</g>')
            out.append(badge(x_p + 14, y_req + 4, "crash: dies, restarts from its store", STYLES["fault"][0]))
            out.append(_text(x_s + 8, y_rep + 4, "caller sees ConnectionResetError", size=10, fill="#78909c"))
        elif outcome == "unread":
            out.append(_arrow(x_p, x_s + 10, y_rep, "lost", prefix, head=False))
            out.append(f'<g class="fault fault-coordinator-crash"{mark}>{_burst(x_s, y_rep)}</g>')
            out.append(badge(x_s + 14, y_rep + 13, "applied; the coordinator died before reading the reply; a fresh one recovers", STYLES["fault"][0]))
        elif outcome == "raised":
            out.append(_arrow(x_p, x_s + 2, y_rep, "fault", prefix))
            out.append(_text(x_s + 8, y_rep + 12, f"raised {reply}", size=10, fill=STYLES["fault"][0]))
            if fault:  # a message that arrived mangled: what its consumer raised on
                out.append(badge(x_p + 12, y_req + 4, f"☣ {fault}", STYLES["fault"][0]))
        elif fault and fault.startswith("refuse"):
            out.append(_arrow(x_p, x_s + 2, y_rep, "refusal", prefix))
            out.append(badge(x_s + 8, y_rep + 13, f"⊘ refused: {reply}", STYLES["refusal"][0]))
        else:
            out.append(_arrow(x_p, x_s + 2, y_rep, "reply", prefix))
            out.append(_text(x_s + 8, y_rep + 13, reply, size=10, fill=STYLES["reply"][0], mono=True))
            if fault and fault.startswith("duplicate"):
                out.append(badge(x_p + 12, y_req + 4, f"\u00d72 {fault}", STYLES["copy"][0]))
            elif fault and fault.startswith("delay"):
                out.append(badge(x_p + 12, y_req + 4, f"◷ {fault}", STYLES["late"][0]))
            elif fault and fault.startswith("pause"):
                out.append(badge(x_p + 12, y_req + 4, f"❄ {fault}", STYLES["paused"][0]))
            elif fault:
                out.append(badge(x_p + 12, y_req + 4, fault, STYLES["fault"][0]))
    # What took effect, beside the row; a small square on the lifeline where it happened.
    for i, row in enumerate(rows[:2]):
        marked = row.seq in marked_rows
        colour = STYLES["compensation"][0] if _is_compensation(execution, row.participant, row.action) else "#263238"
        out.append(
            f'<rect class="effect{" evidence" if marked else ""}" x="{x_p - 4:.1f}" y="{y_req + 6 + i * 8:.1f}" width="8" height="6" '
            f'fill="{colour}"/>'
        )
        amount = int(row.amount) if float(row.amount).is_integer() else row.amount
        text = f"{row.participant}: {row.action} {amount}{' ' + row.ref if row.ref else ''}"
        if marked:
            out.append(
                f'<rect class="evidence-effect" x="{lanes.effects_x - 4:.1f}" y="{y_req - 8 + i * 15:.1f}" width="{_EFFECTS_COLUMN - 10}" '
                f'height="15" fill="#ffe082" rx="3"/>'
            )
        out.append(_text(lanes.effects_x, y_req + 3 + i * 15, _short(text, 38), size=11, fill=colour, mono=True, weight="bold" if marked else "normal"))
    if len(rows) > 2:
        out.append(_text(lanes.effects_x, y_req + 33, f"… and {len(rows) - 2} more", size=10, fill="#78909c"))
    return f'<g class="delivery" data-seq="{entry.seq}" data-outcome="{escape(outcome, quote=True)}">' + "".join(out) + "</g>"


def legend(prefix: str = "legend") -> str:
    """A key to the marks the diagrams use."""
    width = 250
    rows = len(LEGEND) + 2
    height = 22 * ((rows + 2) // 3) + 10
    parts = [_defs(prefix)]
    for i, (style, meaning) in enumerate(LEGEND):
        col, row = i % 3, i // 3
        x = 10 + col * width
        y = 18 + row * 22
        if style == "paused":
            parts.append(f'<rect x="{x:.1f}" y="{y - 7:.1f}" width="40" height="14" fill="url(#{prefix}-frozen)" stroke="#1565c0"/>')
        else:
            parts.append(_arrow(x, x + 40, y, style, prefix))
        parts.append(_text(x + 50, y + 4, meaning, size=11))
    i = len(LEGEND)
    x, y = 10 + (i % 3) * width, 18 + (i // 3) * 22
    parts.append(_cross(x + 20, y) + _text(x + 50, y + 4, "lost on the way", size=11))
    i += 1
    x, y = 10 + (i % 3) * width, 18 + (i // 3) * 22
    parts.append(_burst(x + 20, y) + _text(x + 50, y + 4, "participant crashed", size=11))
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="legend" width="{3 * width + 10}" height="{height}" '
        f'viewBox="0 0 {3 * width + 10} {height}" role="img" aria-label="legend">' + "".join(parts) + "</svg>"
    )
