"""Broken variants of the order saga orchestrated by messaging, one bug each: the ways an
orchestrator goes wrong when its replies come over an at-least-once bus, twice or late. The search
must find every one."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from saga_verify import Choreography

from ._messaging import STEPS, Orchestrator, messaging_saga
from ._messaging_events import reply_type

_HERE = __name__.rpartition(".")[0]


class ReplyNotDeduplicated(Orchestrator):
    """The orchestrator acts on every copy of a reply, by its type, without checking it still awaits that command: a reply delivered twice sends the next command twice, and the next step takes effect twice."""

    def consume(self, message: Any, bus: Any, expected: str, effect: Any) -> None:
        if isinstance(message, dict):
            # Replies are "answers, not events": no dedupe by id for them.
            self.state["processed"] = [p for p in self.state["processed"] if p != message.get("id")]
        super().consume(message, bus, expected, effect)

    def answers(self, saga: dict[str, Any], message: Mapping[str, Any]) -> bool:
        forward = [reply_type(step) for step, _ in STEPS]
        if message["type"] in forward and saga["status"] == "running":
            saga["step"] = forward.index(message["type"])  # the step this reply is about
            return True
        return super().answers(saga, message)


class TimeoutForgetsStep(Orchestrator):
    """On a command's deadline the orchestrator treats the step as not done and compensates only the steps confirmed: a charge whose reply comes late is never refunded."""

    def gave_up(self, order_id: str, saga: dict[str, Any], cause: str, now: float) -> list[dict[str, Any]]:
        return self.compensate(order_id, saga, cause, now)


class LateReplyResumes(Orchestrator):
    """The orchestrator takes a forward step's late success while it compensates and resumes the order: a step confirmed after its deadline, and already undone, ends in a completed order without it."""

    def answers(self, saga: dict[str, Any], message: Mapping[str, Any]) -> bool:
        step = saga["step"]
        late = saga["status"] == "compensating" and message["type"] == reply_type(STEPS[step][0]) and message["data"]["status"] == "ok"
        if late and message["causation_id"] in self.sent(saga):
            saga["status"] = "running"  # "it went through after all"
            saga["undo"] = [c for c in saga["undo"] if c != STEPS[step][1]]
            return True
        return super().answers(saga, message)

    @staticmethod
    def sent(saga: dict[str, Any]) -> set[str]:
        """Every command it sent for the order."""
        order_id = saga["order"]["order_id"]
        return {f"{order_id}:command-{n}" for n in range(1, saga["sent"] + 1)}


reply_not_deduplicated = messaging_saga("reply_not_deduplicated", f"{_HERE}:reply_not_deduplicated", ReplyNotDeduplicated)
timeout_forgets_step = messaging_saga("timeout_forgets_step", f"{_HERE}:timeout_forgets_step", TimeoutForgetsStep)
late_reply_resumes = messaging_saga("late_reply_resumes", f"{_HERE}:late_reply_resumes", LateReplyResumes)
correct = messaging_saga("messaging_order", f"{_HERE}:messaging_order_saga")

#: Every broken variant with the class that carries its bug.
BROKEN: tuple[tuple[Choreography, type], ...] = (
    (reply_not_deduplicated, ReplyNotDeduplicated),
    (timeout_forgets_step, TimeoutForgetsStep),
    (late_reply_resumes, LateReplyResumes),
)
