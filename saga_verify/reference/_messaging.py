"""The order saga orchestrated by messaging: an orchestrator sends each participant a command on the
bus and waits for the reply that names that command as its cause, under a deadline it sets itself
(a deferred timeout message); the participants (inventory, payment, shipping, notification) act on
commands and reply through their outbox.

Policy, and why:
- the orchestrator acts on a reply only while it awaits that very command; a reply delivered twice,
  or late after it moved on or began compensating, is ignored: a message on an at-least-once bus
  can come again, and any time;
- a command whose deadline passes has an unknown outcome: it is compensated as if it had happened
  (the compensations undo whatever the order holds, and leave a tombstone so that a late command
  is refused rather than applied);
- a compensation whose deadline passes is sent again (it is harmless twice), up to
  ``COMPENSATION_ATTEMPTS`` times; then the saga says "failed" (an operator must act);
- every receiver checks the envelope first, deduplicates by message id in the same commit as its
  effect, and publishes through its outbox.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from saga_verify import Choreography, Handler, Invariant, Violation
from saga_verify.invariants import choreography_invariants

from ._choreographed import ChoreographedService, outbox_published_invariant
from ._choreography_events import envelope
from ._messaging_events import command, invalid, reply_type

#: What every execution places.
ORDER = {"order_id": "order-1", "sku": "sku-1", "qty": 2, "amount": 100}
#: Virtual seconds the orchestrator waits for a reply before it gives up on a command: shorter than
#: the bus's redelivery delay (5 s), so a command or reply that has to be redelivered comes late,
#: after the orchestrator moved on; the search reaches that with a single fault.
REPLY_TIMEOUT = 3.0
COMPENSATION_ATTEMPTS = 3
#: The forward steps and their compensations, in order; the notification comes last, only once
#: every other step succeeded, and is never undone.
STEPS = (("inventory.reserve", "inventory.release"), ("payment.charge", "payment.refund"), ("shipping.create", "shipping.cancel"))
NOTIFY = "notification.send"
TIMEOUT = "order.timeout"


class MessagingService(ChoreographedService):
    """A receiver of commands or replies: check, deduplicate by message id, act and save what it
    sends in one commit, then publish (deferred messages after their delay)."""

    def consume(self, message: Any, bus: Any, expected: str, effect: Any) -> None:
        problem = invalid(message, expected)
        if problem is not None:
            bus.reject(problem)
            return
        if message["id"] in self.state["processed"]:
            self.relay(bus)  # a copy: acted on before, but what it caused may still wait
            return
        for row in effect(message, bus.now):
            self.state["outbox"].append(row)
        self.state["processed"].append(message["id"])
        self.commit()
        self.relay(bus)

    def relay(self, bus: Any) -> None:
        unsent = [row for row in self.state["outbox"] if not row["sent"]]
        for row in unsent:
            bus.publish(row["event"], after=row.get("after", 0.0))
            row["sent"] = True
        if unsent:
            self.commit()


class Participant(MessagingService):
    """A participant: one forward command and its compensation, each answered by a reply."""

    forward = "participant.do"
    undo: str | None = None

    def initial(self) -> dict[str, Any]:
        return {"effects": [], "tombstones": []}

    def reply(self, message: Mapping[str, Any], status: str, detail: str, now: float) -> dict[str, Any]:
        reply = envelope(
            reply_type(message["type"]),
            source=self.name,
            correlation_id=message["correlation_id"],
            causation_id=message["id"],
            key=f"{message['id']}:reply",
            data={"status": status, "detail": detail},
            now=now,
        )
        return {"event": reply, "sent": False}

    def do(self, message: dict[str, Any], now: float) -> list[dict[str, Any]]:
        order_id = message["data"]["order_id"]
        if order_id in self.state["tombstones"]:
            return [self.reply(message, "refused", "cancelled before it arrived", now)]
        if self.take_refusal():
            return [self.reply(message, "refused", f"{self.name} refused the order", now)]
        effect = {"id": f"{self.name}-{order_id}-{len(self.state['effects']) + 1}", "order_id": order_id, "undone": False}
        self.state["effects"].append(effect)
        return [self.reply(message, "ok", effect["id"], now)]

    def undo_effects(self, message: dict[str, Any], now: float) -> list[dict[str, Any]]:
        order_id = message["data"]["order_id"]
        undone = [e for e in self.state["effects"] if e["order_id"] == order_id and not e["undone"]]
        for effect in undone:
            effect["undone"] = True
        if order_id not in self.state["tombstones"]:
            self.state["tombstones"].append(order_id)  # a forward command arriving later is refused
        return [self.reply(message, "ok", ", ".join(e["id"] for e in undone) or "nothing to undo", now)]


class Inventory(Participant):
    name, forward, undo = "inventory", "inventory.reserve", "inventory.release"

    def reserve(self, message: Any, bus: Any) -> None:
        self.consume(message, bus, self.forward, self.do)

    def release(self, message: Any, bus: Any) -> None:
        self.consume(message, bus, "inventory.release", self.undo_effects)


class Payment(Participant):
    name, forward, undo = "payment", "payment.charge", "payment.refund"

    def charge(self, message: Any, bus: Any) -> None:
        self.consume(message, bus, self.forward, self.do)

    def refund(self, message: Any, bus: Any) -> None:
        self.consume(message, bus, "payment.refund", self.undo_effects)


class Shipping(Participant):
    name, forward, undo = "shipping", "shipping.create", "shipping.cancel"

    def create(self, message: Any, bus: Any) -> None:
        self.consume(message, bus, self.forward, self.do)

    def cancel(self, message: Any, bus: Any) -> None:
        self.consume(message, bus, "shipping.cancel", self.undo_effects)


class Notification(Participant):
    name, forward = "notification", "notification.send"

    def send(self, message: Any, bus: Any) -> None:
        self.consume(message, bus, self.forward, self.do)


class Orchestrator(MessagingService):
    """The order service: runs each order's saga by commands and replies, one command awaited at
    a time, each under its own deadline."""

    name = "order"

    def initial(self) -> dict[str, Any]:
        return {"orders": {}}

    def status(self, order_id: str) -> str:
        found = self.state["orders"].get(order_id)
        return str(found["status"]) if found is not None else "unknown"

    def place(self, order: Mapping[str, Any], bus: Any) -> None:
        order_id = order["order_id"]
        if order_id not in self.state["orders"]:
            saga = {"order": dict(order), "status": "running", "step": 0, "awaiting": None, "sent": 0, "undo": [], "tries": 0}
            self.state["orders"][order_id] = saga
            self.state["outbox"] += self.send(order_id, saga, STEPS[0][0], None, bus.now)
            self.commit()
        self.relay(bus)

    # -- sending -----------------------------------------------------------------------------
    def send(self, order_id: str, saga: dict[str, Any], command_type: str, cause: str | None, now: float) -> list[dict[str, Any]]:
        """The command (with a fresh id: each send is a new message) and its deadline, to be
        published together; the saga now awaits that command's reply."""
        saga["sent"] += 1
        command_id = f"{order_id}:command-{saga['sent']}"
        data: dict[str, Any] = {"order_id": order_id}
        if command_type == "inventory.reserve":
            data.update(sku=saga["order"]["sku"], qty=saga["order"]["qty"])
        elif command_type == "payment.charge":
            data.update(amount=saga["order"]["amount"])
        message = command(command_type, source=self.name, correlation_id=order_id, causation_id=cause, command_id=command_id, data=data, now=now)
        deadline = envelope(
            TIMEOUT, source=self.name, correlation_id=order_id, causation_id=command_id, key=f"{command_id}:timeout",
            data={"command_id": command_id}, now=now,
        )
        saga["awaiting"] = command_id
        return [{"event": message, "sent": False}, {"event": deadline, "sent": False, "after": REPLY_TIMEOUT}]

    # -- receiving ---------------------------------------------------------------------------
    def answers(self, saga: dict[str, Any], message: Mapping[str, Any]) -> bool:
        """Whether the reply answers the command the saga awaits (not a copy of one it already
        acted on, not a late one it gave up on)."""
        return bool(message["causation_id"] == saga["awaiting"])

    def on_reply(self, message: dict[str, Any], now: float) -> list[dict[str, Any]]:
        order_id = message["correlation_id"]
        saga = self.state["orders"].get(order_id)
        if saga is None or not self.answers(saga, message):
            return []
        saga["awaiting"] = None
        ok = message["data"]["status"] == "ok"
        if saga["status"] == "running":
            _forward, compensation = STEPS[saga["step"]]
            if not ok:
                return self.compensate(order_id, saga, message["id"], now)
            saga["undo"].insert(0, compensation)
            return self.advance(order_id, saga, message["id"], now)
        if saga["status"] == "compensating":
            saga["undo"].pop(0)
            saga["tries"] = 0
            return self.compensate(order_id, saga, message["id"], now)
        return []  # the notification's answer: the order stands whatever it says

    def advance(self, order_id: str, saga: dict[str, Any], cause: str, now: float) -> list[dict[str, Any]]:
        saga["step"] += 1
        if saga["step"] < len(STEPS):
            return self.send(order_id, saga, STEPS[saga["step"]][0], cause, now)
        saga["status"] = "completed"
        return self.send(order_id, saga, NOTIFY, cause, now)

    def compensate(self, order_id: str, saga: dict[str, Any], cause: str, now: float) -> list[dict[str, Any]]:
        """Send the next compensation, or end the saga compensated."""
        saga["status"] = "compensating"
        if not saga["undo"]:
            saga["status"] = "compensated"
            return []
        saga["tries"] += 1
        if saga["tries"] > COMPENSATION_ATTEMPTS:
            saga["status"] = "failed"
            return []
        return self.send(order_id, saga, saga["undo"][0], cause, now)

    def on_timeout(self, message: dict[str, Any], now: float) -> list[dict[str, Any]]:
        order_id = message["correlation_id"]
        saga = self.state["orders"].get(order_id)
        if saga is None or saga["awaiting"] != message["data"]["command_id"]:
            return []  # answered in time
        saga["awaiting"] = None
        if saga["status"] == "running":
            return self.gave_up(order_id, saga, message["id"], now)
        if saga["status"] == "compensating":
            return self.compensate(order_id, saga, message["id"], now)  # the same compensation again
        return []  # the notification: it stays on the bus until delivered

    def gave_up(self, order_id: str, saga: dict[str, Any], cause: str, now: float) -> list[dict[str, Any]]:
        """No reply in time: the step may have happened; undo it with the others."""
        saga["undo"].insert(0, STEPS[saga["step"]][1])
        return self.compensate(order_id, saga, cause, now)

    # -- subscriptions -----------------------------------------------------------------------
    def on_reserved(self, message: Any, bus: Any) -> None:
        self.consume(message, bus, "inventory.reserve.reply", self.on_reply)

    def on_charged(self, message: Any, bus: Any) -> None:
        self.consume(message, bus, "payment.charge.reply", self.on_reply)

    def on_shipped(self, message: Any, bus: Any) -> None:
        self.consume(message, bus, "shipping.create.reply", self.on_reply)

    def on_notified(self, message: Any, bus: Any) -> None:
        self.consume(message, bus, "notification.send.reply", self.on_reply)

    def on_released(self, message: Any, bus: Any) -> None:
        self.consume(message, bus, "inventory.release.reply", self.on_reply)

    def on_refunded(self, message: Any, bus: Any) -> None:
        self.consume(message, bus, "payment.refund.reply", self.on_reply)

    def on_cancelled(self, message: Any, bus: Any) -> None:
        self.consume(message, bus, "shipping.cancel.reply", self.on_reply)

    def on_deadline(self, message: Any, bus: Any) -> None:
        self.consume(message, bus, TIMEOUT, self.on_timeout)


def _refuse(service: Any) -> None:
    service.refuse_next()


def _restart(service: Any) -> None:
    service.restart()


#: Who receives which message: the participants their commands, the orchestrator every reply.
HANDLERS = (
    Handler("inventory", "inventory.reserve", "reserve", refuse=_refuse),
    Handler("payment", "payment.charge", "charge", refuse=_refuse),
    Handler("shipping", "shipping.create", "create", refuse=_refuse),
    Handler("notification", "notification.send", "send"),
    Handler("inventory", "inventory.release", "release"),
    Handler("payment", "payment.refund", "refund"),
    Handler("shipping", "shipping.cancel", "cancel"),
    Handler("order", "inventory.reserve.reply", "on_reserved"),
    Handler("order", "payment.charge.reply", "on_charged"),
    Handler("order", "shipping.create.reply", "on_shipped"),
    Handler("order", "notification.send.reply", "on_notified"),
    Handler("order", "inventory.release.reply", "on_released"),
    Handler("order", "payment.refund.reply", "on_refunded"),
    Handler("order", "shipping.cancel.reply", "on_cancelled"),
    Handler("order", TIMEOUT, "on_deadline"),
)
SERVICES = ("order", "inventory", "payment", "shipping", "notification")


def outcome(services: Mapping[str, Any], correlation_id: str) -> str:
    """How the order stands at the orchestrator."""
    return str(services["order"].status(correlation_id))


def messaging_saga(name: str, ref: str, orchestrator: type[Orchestrator] = Orchestrator) -> Choreography:
    """The messaging order saga (with another orchestrator, for a broken variant)."""
    classes: dict[str, type[MessagingService]] = {
        "order": orchestrator,
        "inventory": Inventory,
        "payment": Payment,
        "shipping": Shipping,
        "notification": Notification,
    }

    def services() -> dict[str, object]:
        return {service: cls() for service, cls in classes.items()}

    return Choreography(
        name=name,
        services=services,
        handlers=HANDLERS,
        start="order.place",
        outcome=outcome,
        input=ORDER,
        restart=dict.fromkeys(SERVICES, _restart),
        relay="relay",
        invariants=order_invariants(),
        ref=ref,
    )


# -- what the order saga promises, read from the services --------------------------------------
def _effects(execution: Any) -> dict[str, list[dict[str, Any]]]:
    services, order_id = execution.participants, execution.correlation_id
    return {
        name: [e for e in services[name].saved["effects"] if e["order_id"] == order_id]
        for name in ("inventory", "payment", "shipping", "notification")
    }


def _no_double_effect(execution: Any) -> list[Violation]:
    return [
        Violation(f"the order has {len(rows)} {name} effects, not one: {', '.join(e['id'] for e in rows)}")
        for name, rows in _effects(execution).items()
        if len(rows) > 1
    ]


def _services_agree(execution: Any) -> list[Violation]:
    """When the bus is quiet, the orchestrator's word and the participants' effects match."""
    if execution.halted or (execution.bus is not None and any(d.rejected for d in execution.bus.dead_letters)):
        return []  # not quiet, or a message nobody could read waits for a person
    status = execution.participants["order"].status(execution.correlation_id)
    held = {name: [e for e in rows if not e["undone"]] for name, rows in _effects(execution).items()}
    if status == "completed":
        return [
            Violation(f"the orchestrator completed the order, but {name} holds no effect of it")
            for name, rows in held.items()
            if not rows and name != "notification"
        ]
    if status in ("compensated", "unknown"):
        return [
            Violation(f"the orchestrator says {status!r}, but {name}'s {', '.join(e['id'] for e in rows)} is still in effect")
            for name, rows in held.items()
            if rows
        ]
    return []  # failed (an operator must act), or not ended (another invariant says so)


no_double_effect = Invariant("no_double_effect", _no_double_effect, "one reservation, one charge, one shipment, one notification per order at most")
services_agree = Invariant(
    "services_agree",
    _services_agree,
    "when the bus is quiet the orchestrator's outcome and the participants' effects agree: completed with every effect, "
    "compensated with none left in effect",
)
outbox_published = outbox_published_invariant("message")


def order_invariants() -> tuple[Invariant, ...]:
    """What the messaging order saga must hold: every choreography's promises and the order's."""
    return (*choreography_invariants(), no_double_effect, services_agree, outbox_published)
