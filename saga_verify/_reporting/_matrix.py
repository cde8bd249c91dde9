"""The coverage matrix as an HTML table: a row per fault kind, a column per operation, and in
each cell how many plans put that fault there and how many of them broke an invariant. A cell the
search could have tried and never did stands out; one it cannot try (no hook) is greyed."""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .._exploration import Coverage


def _why_not(coverage: Coverage, kind: str, participant: str, operation: str) -> str:
    """Why the search never puts ``kind`` at this operation."""
    saga = coverage.saga
    if (participant, operation) in saga.events:
        return "an event's arrival can only be dropped, duplicated, delayed or lost from then on"
    if kind == "drop":
        return "only an event's arrival is dropped (a call that is not delivered is 'fail')"
    if kind == "refuse":
        if coverage.is_compensation(participant, operation):
            return "a compensation is never refused: only a step's action declares refuse="
        return f"no refuse= hook on step {participant}.{operation}"
    if kind == "crash":
        return f"no step of {participant} declares restart="
    if kind == "pause" and not saga.pauses:
        return "searches try pauses only for Saga(pauses=True)"
    return "not in the search's alphabet for this operation"


def coverage_table(coverage: Coverage) -> str:
    """The matrix, with a caption that counts what was tried and names what never was."""
    operations = coverage.operations
    participants: list[tuple[str, int]] = []
    for participant, _operation in operations:
        if participants and participants[-1][0] == participant:
            participants[-1] = (participant, participants[-1][1] + 1)
        else:
            participants.append((participant, 1))
    head1 = "".join(f'<th colspan="{span}" class="participant">{escape(name)}</th>' for name, span in participants)
    head2 = "".join(
        f'<th class="op{" compensation" if coverage.is_compensation(p, o) else ""}">{escape(o)}</th>' for p, o in operations
    )
    body = []
    for kind in coverage.kinds:
        cells = []
        empty_row = True
        for participant, operation in operations:
            cell = coverage.cell(kind, participant, operation)
            where = f"{kind} at {participant}.{operation}"
            if cell.plans:
                empty_row = False
                if cell.broke:
                    title = f"{where}: {cell.plans} plan(s), {cell.broke} broke an invariant"
                    content = f'{cell.plans}<span class="broke">✗{cell.broke}</span>'
                    klass = "broke"
                else:
                    title = f"{where}: {cell.plans} plan(s), none broke an invariant"
                    content = str(cell.plans)
                    klass = "held"
            elif cell.searched:
                empty_row = False
                title = f"{where}: never tried (the search could, and no plan did)"
                content = "0"
                klass = "never"
            else:
                title = f"{where}: not searched: {_why_not(coverage, kind, participant, operation)}"
                content = ""
                klass = "cannot"
            cells.append(
                f'<td class="{klass}" data-kind="{escape(kind)}" data-operation="{escape(participant)}.{escape(operation)}" '
                f'title="{escape(title, quote=True)}">{content}</td>'
            )
        note = ' <span class="row-note">never searched</span>' if empty_row else ""
        body.append(f'<tr class="{"empty-row" if empty_row else ""}"><th class="kind">{escape(kind)}{note}</th>{"".join(cells)}</tr>')
    never = coverage.never_tried()
    if never:
        shown = ", ".join(never[:8]) + (f" and {len(never) - 8} more" if len(never) > 8 else "")
        never_text = f'<p class="never-tried">Never tried ({len(never)}): {escape(shown)}.</p>'
    else:
        never_text = '<p class="never-tried none">Every fault the search may put at an operation was tried at least once.</p>'
    caption = (
        f"{coverage.executions} executions checked, {coverage.broken} broke an invariant. "
        "A cell counts the plans that put that fault at that operation (any attempt); ✗ counts those that broke something."
    )
    return (
        '<div class="coverage">'
        f'<table class="matrix"><caption>{escape(caption)}</caption>'
        f'<thead><tr><th rowspan="2" class="corner">fault \\ operation</th>{head1}</tr><tr>{head2}</tr></thead>'
        f'<tbody>{"".join(body)}</tbody></table>{never_text}</div>'
    )
