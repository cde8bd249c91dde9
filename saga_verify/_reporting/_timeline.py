"""Reports a person reads top to bottom: the minimal plan, the timeline of the execution under
it, what broke with its evidence, and the line that replays it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .._world import LedgerRow, Moment, TraceEntry

if TYPE_CHECKING:
    from .._exploration import ExplorationResult, Failure
    from .._world import Execution

OUTCOME_TEXT = {
    "ok": "ok",
    "failed": "FAILED (connection error, not delivered)",
    "timed-out": "TIMED OUT (not delivered)",
    "reply-lost": "REPLY LOST (applied; caller timed out)",
    "crashed": "CRASHED (applied; died before replying, restarted; caller saw a reset)",
    "frozen": "FROZEN (participant paused; caller timed out; lands at the thaw)",
    "held": "HELD (caller timed out; lands later)",
    "late": "LANDED LATE",
    "copy": "DUPLICATE COPY",
    "raised": "RAISED",
    "event": "EVENT ARRIVED",
    "dropped": "EVENT LOST (dropped on its way; the saga never receives it)",
    "unsent": "COORDINATOR DIED before sending it (not delivered)",
    "unread": "COORDINATOR DIED before reading the reply (applied)",
}

#: How each kind of moment on the timeline is marked (waits, back-offs, the deadline).
MOMENT_MARK = {
    "wait": "waits",
    "received": "wakes",
    "wait-timeout": "WAIT TIMED OUT",
    "wait-forever": "WAITS FOR EVER",
    "backoff": "backs off",
    "gave-up": "GIVES UP",
    "deadline": "DEADLINE",
    "switch": "SWITCH",
    "actor": "actor",
    # A choreography's messages on the bus.
    "published": "PUBLISHED",
    "sent": "SENT COMMAND",
    "replied": "REPLIED",
    "deferred": "DEFERRED",
    "delivered": "DELIVERED",
    "redelivered": "REDELIVERED",
    "acked": "ACKNOWLEDGED EARLY",
    "dead-lettered": "DEAD-LETTERED",
    # Over a real broker (saga_verify.broker): how a delivery that was not processed goes back.
    "nacked": "NOT ACKNOWLEDGED",
    "start-failed": "START FAILED",
}
#: What follows a call at which the coordinator died.
RECOVERY_TEXT = "  ~~~~ coordinator crashed: a fresh coordinator, with nothing of the old one's memory, reopens the store and recovers (recovery {n})"


def compact(value: Any) -> str:
    """A request or reply on one line: ``status=ok charge_id=ch-1``."""
    if isinstance(value, dict):
        parts = []
        for k, v in value.items():
            name = "key" if k == "idempotency_key" else str(k)
            parts.append(f"{name}={compact(v)}")
        return " ".join(parts)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(compact(v) for v in value) + "]"
    return str(value)


def message_text(request: Any) -> str | None:
    """A choreography's message as a delivery or a publish carries it, on one line: its type, id,
    correlation and cause; a mangled one as the text that arrived. None for other requests."""
    if not isinstance(request, dict) or not isinstance(request.get("args"), list) or len(request["args"]) != 1:
        return None
    if set(request) - {"args", "bus", "after"}:
        return None
    message = request["args"][0]
    if isinstance(message, str):
        return f"MANGLED {message[:40]!r}..."
    if not isinstance(message, dict) or "type" not in message:
        return None
    fields = (("id", "id"), ("correlation_id", "corr"), ("causation_id", "cause"))
    text = f"{message.get('type')} " + " ".join(f"{label}={message.get(k, '-')}" for k, label in fields)
    if "reply_to" in message:
        text += f" reply-to={message['reply_to']}"  # a command
    if "after" in request:
        text += f" after={request['after']:g}s"  # deferred
    return text


def render_entry(entry: TraceEntry) -> str:
    outcome = OUTCOME_TEXT.get(entry.outcome, entry.outcome)
    reply = "" if entry.reply is None else f": {compact(entry.reply)}"
    fault = f"   <- {entry.fault}" if entry.fault else ""
    request = message_text(entry.request) or compact(entry.request)
    if entry.key is not None and not (isinstance(entry.request, dict) and "idempotency_key" in entry.request):
        request += f" key={entry.key}"  # an HTTP header: not part of the request body
    return (
        f"  #{entry.seq:<3} t={entry.time:8.3f}  {entry.point:<24} {request}\n"
        f"  {'':4} {'':10}  -> {outcome}{reply}{fault}"
    )


def render_moment(moment: Moment) -> str:
    """A wait, a back-off or the deadline, between the deliveries: ``~~ t= 60.011 WAIT TIMED OUT ...``."""
    return f"  ~~   t={moment.time:8.3f}  {MOMENT_MARK.get(moment.kind, moment.kind)}: {moment.text}"


def render_timeline(execution: Execution) -> str:
    actors = execution.actors
    if actors:
        cast = ", ".join(a.name if a.name == a.correlation_id else f"{a.name} (instance {a.correlation_id})" for a in actors)
        lines = [f"Timeline (virtual seconds; actors {cast}):"]
    else:
        lines = [f"Timeline (virtual seconds; saga instance {execution.correlation_id}):"]
    moments = list(execution.moments)
    recoveries = 0
    for entry in execution.trace:
        # A moment goes before the first delivery later than it, so the timeline reads in time order.
        while moments and moments[0].time < entry.time:
            lines.append(render_moment(moments.pop(0)))
        # With several actors, each delivery says whose saga instance it serves.
        lines.append(render_entry(entry) if not actors else render_entry(entry).replace("\n", f"  [{entry.correlation_id}]\n", 1))
        if entry.outcome in ("unsent", "unread"):
            recoveries += 1
            lines.append(RECOVERY_TEXT.format(n=recoveries))
    lines += [render_moment(m) for m in moments]
    ending = execution.status
    if execution.halted:
        ending = f"halted: {execution.halted}"
    elif execution.error is not None:
        ending = f"crashed: {type(execution.error).__name__}: {execution.error}"
    lines.append(f"  => saga outcome: {ending}")
    if actors:
        lines.append("  => actors: " + "; ".join(f"{a.name}: {a.status}" for a in actors))
    return "\n".join(lines)


def _evidence(items: Iterable[Any]) -> list[str]:
    out = []
    for item in items:
        if isinstance(item, LedgerRow):
            out.append(f"      ledger  {item}")
        elif isinstance(item, TraceEntry):
            out.append(f"      trace   #{item.seq} {item.point} -> {OUTCOME_TEXT.get(item.outcome, item.outcome)}")
        else:
            out.append(f"      {item}")
    return out


def render_failure(failure: Failure) -> str:
    plan = failure.plan
    count = len(plan.faults)
    lines = [
        f"saga {failure.saga.name!r} broke {', '.join(failure.invariants)}",
        f"  minimal plan ({count} fault{'s' if count != 1 else ''}):"
        + ("" if plan.faults else " none: it breaks on a good day"),
    ]
    lines += [f"    {i}. {fault}" for i, fault in enumerate(plan.faults, 1)]
    lines.append(
        f"  found by {failure.found_by} after {failure.examples} execution{'s' if failure.examples != 1 else ''}; "
        f"minimised in {failure.shrink_seconds:.3f} s"
    )
    lines.append("")
    lines.append(render_timeline(failure.execution))
    lines.append("")
    lines.append("Broken:")
    for violation in failure.violations:
        lines.append(f"  {violation.invariant}: {violation.message}")
        lines += _evidence(violation.evidence)
    lines.append("")
    commands = failure.replay_commands
    lines.append(f"Reproduce with: {commands[0]}")
    lines += [f"            or: {c}" for c in commands[1:]]
    return "\n".join(lines)


def render_result(result: ExplorationResult) -> str:
    if result.ok:
        held = (
            f"saga {result.saga.name!r} held every invariant over {result.executions} executions "
            f"({result.sweep_executions} in the sweep, {result.hypothesis_examples} from Hypothesis) "
            f"in {result.seconds:.2f} s"
        )
        proven = render_sweep(result)
        return f"{held}\n{proven}" if proven else held
    parts = [render_failure(f) for f in result.failures]
    if len(parts) > 1:
        return distinct_head(result) + "\n\n" + "\n\n".join(parts)
    return parts[0]


def distinct_head(result: ExplorationResult) -> str:
    """The first line of a report of several failures."""
    return f"{len(result.failures)} distinct broken invariants in saga {result.saga.name!r}:"


def render_sweep(result: ExplorationResult) -> str:
    """What the exhaustive sweep proved, in a sentence (empty when it did not run)."""
    k = result.sweep_faults
    if k == 0:
        return ""
    faults = f"{k} fault{'s' if k != 1 else ''}"
    if result.sweep_complete:
        return f"  every plan of up to {faults} over these calls holds ({result.sweep_executions} plans)"
    return (
        f"  the sweep stopped at its budget after {result.sweep_executions} plans: not every plan of up to {faults} "
        "was tried (raise sweep_budget, or --sweep-budget, to go further)"
    )


def render_execution(execution: Execution, violations: Iterable[Any]) -> str:
    """A replayed execution: its timeline and what it broke."""
    lines = [render_timeline(execution), ""]
    found = list(violations)
    if not found:
        lines.append("Every invariant held.")
    else:
        lines.append("Broken:")
        for v in found:
            lines.append(f"  {v.invariant}: {v.message}")
            lines += _evidence(v.evidence)
    return "\n".join(lines)
