"""Commands and replies on the bus: a command names the type its reply comes back as, a reply names
its command as its cause, a service defers a message to itself (its deadline); the plan's faults
reach replies as they reach events, and the timeline tells commands, replies and deadlines apart."""

from __future__ import annotations

from typing import Any

import pytest

from saga_verify import Choreography, FaultPlan, Handler, run_plan
from saga_verify._reporting import render_timeline
from saga_verify.faults import DeliveryPoint, Duplicate

#: The requester's patience: shorter than the late copy the plans below hold back (30 s).
PATIENCE = 10.0


class Requester:
    """Sends one command, defers its own deadline, and notes what came back when."""

    def __init__(self) -> None:
        self.replies: list[tuple[str, float]] = []
        self.deadlines: list[float] = []

    def start(self, order: Any, bus: Any) -> None:
        bus.publish({"type": "do", "id": "cmd-1", "correlation_id": "c", "causation_id": None, "reply_to": "done"})
        bus.publish({"type": "deadline", "id": "t-1", "correlation_id": "c", "causation_id": "cmd-1"}, after=PATIENCE)

    def on_done(self, message: Any, bus: Any) -> None:
        self.replies.append((message["id"], bus.now))

    def on_deadline(self, message: Any, bus: Any) -> None:
        self.deadlines.append(bus.now)

    def relay(self, bus: Any) -> None:
        pass


class Responder:
    def do(self, message: Any, bus: Any) -> None:
        bus.publish({"type": "done", "id": "reply-1", "correlation_id": "c", "causation_id": message["id"]})

    def relay(self, bus: Any) -> None:
        pass


def request_reply() -> Choreography:
    return Choreography(
        name="request_reply",
        services=lambda: {"asker": Requester(), "worker": Responder()},
        handlers=(Handler("worker", "do", "do"), Handler("asker", "done", "on_done"), Handler("asker", "deadline", "on_deadline")),
        start="asker.start",
        outcome=lambda services, corr: "completed" if services["asker"].replies else "pending",
        correlation_id="c",
        invariants=(),
    )


def run(*faults: Any) -> Any:
    return run_plan(request_reply().saga, FaultPlan(tuple(faults)))


def test_commands_replies_and_deferred_messages_are_told_apart() -> None:
    execution = run()
    assert execution.bus is not None
    assert [(m.id, m.role) for m in execution.bus.messages] == [("cmd-1", "command"), ("t-1", "deferred"), ("reply-1", "reply")]
    deadline = execution.bus.messages[1]
    assert deadline.due == pytest.approx(deadline.time + PATIENCE)
    asker = execution.participants["asker"]
    assert [reply for reply, _ in asker.replies] == ["reply-1"]
    # The deadline is delivered no sooner than it was deferred for, after the reply.
    assert asker.deadlines
    assert asker.deadlines[0] >= deadline.due > asker.replies[0][1]
    kinds = [m.kind for m in execution.moments]
    assert {"sent", "deferred", "replied"} <= set(kinds)
    timeline = render_timeline(execution)
    assert "SENT COMMAND: asker sent command do cmd-1 (to worker.do; reply as done)" in timeline
    assert "REPLIED: worker replied done reply-1 to command cmd-1 (to asker.on_done)" in timeline
    assert "reply-to=done" in timeline
    assert f"after={PATIENCE:g}s" in timeline
    assert "DELIVERED: reply done reply-1 -> asker.on_done" in timeline


def test_a_message_naming_a_cause_that_is_no_command_is_an_event() -> None:
    execution = run()
    assert execution.bus is not None
    # The deadline names the command as its cause, but it is not of the command's reply type.
    assert execution.bus.messages[1].role == "deferred"
    assert all(m.role == "event" for m in run_plan(_events_only().saga).bus.messages)


def _events_only() -> Choreography:
    class Start:
        def start(self, order: Any, bus: Any) -> None:
            bus.publish({"type": "a", "id": "a1", "correlation_id": "c", "causation_id": None})

        def on_a(self, message: Any, bus: Any) -> None:
            bus.publish({"type": "b", "id": "b1", "correlation_id": "c", "causation_id": "a1"})

        def on_b(self, message: Any, bus: Any) -> None:
            pass

    return Choreography(
        name="events", services=lambda: {"s": Start()}, handlers=(Handler("s", "a", "on_a"), Handler("s", "b", "on_b")),
        start="s.start", outcome=lambda services, corr: "completed", correlation_id="c", invariants=(),
    )


def test_a_reply_delivered_twice_reaches_the_requester_twice() -> None:
    execution = run(Duplicate(DeliveryPoint.parse("asker.on_done#1"), lag=0.0))
    assert [reply for reply, _ in execution.participants["asker"].replies] == ["reply-1", "reply-1"]


def test_a_reply_the_broker_takes_twice_comes_again_late_after_the_deadline() -> None:
    execution = run(Duplicate(DeliveryPoint.parse("worker.publish#1"), lag=30.0))
    asker = execution.participants["asker"]
    (first, early), (second, late) = asker.replies
    assert first == second == "reply-1"
    assert early < asker.deadlines[0] < late  # the copy came after the requester had moved on


class LongPatience(Requester):
    """Defers its deadline past the moment the network lands a held copy, and publishes a note of
    every reply it gets."""

    def __init__(self) -> None:
        super().__init__()
        self.notes: list[float] = []

    def start(self, order: Any, bus: Any) -> None:
        bus.publish({"type": "do", "id": "cmd-1", "correlation_id": "c", "causation_id": None, "reply_to": "done"})
        bus.publish({"type": "deadline", "id": "t-1", "correlation_id": "c", "causation_id": "cmd-1"}, after=100.0)

    def on_done(self, message: Any, bus: Any) -> None:
        super().on_done(message, bus)
        bus.publish({"type": "noted", "id": f"n{len(self.replies)}", "correlation_id": "c", "causation_id": message["id"]})

    def on_noted(self, message: Any, bus: Any) -> None:
        self.notes.append(bus.now)


def test_what_a_late_copy_publishes_is_delivered_before_a_message_deferred_past_it() -> None:
    choreography = Choreography(
        name="long_patience",
        services=lambda: {"asker": LongPatience(), "worker": Responder()},
        handlers=(*request_reply().handlers, Handler("asker", "noted", "on_noted")),
        start="asker.start",
        outcome=lambda services, corr: "completed",
        correlation_id="c",
        invariants=(),
    )
    execution = run_plan(choreography.saga, FaultPlan((Duplicate(DeliveryPoint.parse("asker.on_done#1"), lag=30.0),)))
    asker = execution.participants["asker"]
    assert len(asker.replies) == len(asker.notes) == 2
    # The late copy lands at its time (about 30 s), and what it publishes is delivered then, not
    # when the bus next has something due (the deadline at 100 s).
    assert 29 < asker.replies[1][1] < asker.notes[1] < 31 < asker.deadlines[0]


@pytest.mark.parametrize("after", [-1, float("nan"), float("inf"), "10", True])
def test_a_deferral_must_be_a_number_of_seconds(after: Any) -> None:
    class BadAfter(Requester):
        def start(self, order: Any, bus: Any) -> None:
            bus.publish({"type": "deadline", "id": "t-1", "correlation_id": "c", "causation_id": None}, after=after)

    choreography = Choreography(
        name="bad_after", services=lambda: {"asker": BadAfter(), "worker": Responder()}, handlers=request_reply().handlers,
        start="asker.start", outcome=lambda services, corr: "pending", correlation_id="c", invariants=(),
    )
    execution = run_plan(choreography.saga)
    assert execution.bus is not None
    assert execution.bus.messages == ()
    [failed] = [m for m in execution.moments if m.kind == "start-failed"]
    assert "publish after= must be a number of seconds >= 0" in failed.text
