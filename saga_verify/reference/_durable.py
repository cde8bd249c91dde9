"""The durable order saga: the orchestrated order saga with a write-ahead saga log, so that a
coordinator that dies anywhere is replaced by one that finishes the order, neither charging twice
nor leaving a charge behind.

The log, per order:
- ``started`` (with the order) when an order is first placed; a start command for an order the log
  already holds is idempotent: an ended order answers its outcome, an unfinished one is resumed;
- ``resumed`` each time a coordinator takes an order up again: its count is the coordinator's
  epoch, part of every idempotency key it mints;
- ``intent`` (step, key) *before* each call, ``outcome`` (step, status, reply) after it: a call
  whose intent has no outcome may have taken effect, and is retried with the key of its intent;
- ``compensating`` once the saga turns back; compensations write intents and outcomes too;
- ``ended`` (status).

Recovery reads the log and goes on from where it says: forward, or compensating.

Only the holder of an order's lease works on it. A coordinator acquires the lease (virtual time,
`LEASE_SECONDS`, extended by each of its writes) before it writes anything, and every write
carries its fencing token: once another coordinator acquired the lease, the log refuses the
first one's writes (`LeaseLost`) and it stops. Since every call with a new key is preceded by
the write of its intent, a coordinator taken over can at most repeat a call it had logged, under
the same key, which the participants answer as before. A start command for an order whose lease
is live answers "in progress"; a recovering coordinator (after a crash, or taking over) waits on
virtual time for the lease to expire, then takes it with a higher token.
"""

from __future__ import annotations

from typing import Any

from ._orchestrated import GaveUp, OrderSaga, Reply, StepFailed
from ._saga_log import LeaseLost, SagaLog

#: The compensatable forward steps, in order (the notification, irreversible, comes after them).
FORWARD = ("reserve", "charge", "ship")
#: The compensation of each.
_UNDO = {"reserve": "release", "charge": "refund", "ship": "cancel"}
#: How long (virtual seconds) a lease lasts after the holder's last write.
LEASE_SECONDS = 30.0
#: What a start command answers while another coordinator holds the order's lease.
IN_PROGRESS = "in progress"
#: What a coordinator answers once another took its order over.
SUPERSEDED = "superseded"


class DurableOrderSaga(OrderSaga):
    """One order's durable saga; ``run`` places (or resumes) it and returns its outcome.
    ``owner`` names the coordinator in the lease; ``wait``: wait for a live lease to expire (a
    recovering coordinator) rather than answer "in progress" (a start command); ``holder_dead``:
    the holder is known dead, so its lease is taken at once."""

    def __init__(
        self, services: Any, order: dict[str, Any], owner: str = "coordinator", wait: bool = False, holder_dead: bool = False
    ) -> None:
        super().__init__(services, order)
        self.log: SagaLog = services.store
        self.entries: list[dict[str, Any]] = []
        self.epoch = 0
        self.owner = owner
        self.wait = wait
        #: The lease's holder is known dead (a service started again by its supervisor after its
        #: only process died): its lease counts as expired, and is taken with a higher token.
        self.holder_dead = holder_dead
        #: The fencing token of this coordinator's lease, once it holds one.
        self.token: int | None = None

    # -- the log -------------------------------------------------------------------------------
    def write(self, entry: dict[str, Any]) -> None:
        self.log.append(self.order_id, entry, token=self.token, until=self.services.clock.now() + LEASE_SECONDS)
        self.entries.append(entry)

    def take_lease(self) -> bool:
        """Acquire the order's lease (waiting for a live one to expire if ``wait``)."""
        clock = self.services.clock
        while True:
            now = clock.now()
            token = self.log.acquire(self.order_id, self.owner, now, now + LEASE_SECONDS)
            if token is not None:
                self.token = token
                return True
            held = self.log.lease(self.order_id)
            if held is not None and self.holder_dead:
                token = self.log.acquire(self.order_id, self.owner, held.expires, now + LEASE_SECONDS)
                if token is not None:
                    self.token = token
                    return True
            if not self.wait or held is None:
                return False
            clock.sleep(max(held.expires - now, 0.0))

    def recorded(self, kind: str, step: str) -> dict[str, Any] | None:
        """The last entry of ``kind`` for ``step``."""
        return next((e for e in reversed(self.entries) if e["type"] == kind and e.get("step") == step), None)

    def mint(self, step: str) -> str:
        return f"{self.order_id}:{step}:{self.epoch}"

    def status(self) -> str | None:
        ended = next((e for e in self.entries if e["type"] == "ended"), None)
        return None if ended is None else str(ended["status"])

    # -- the saga ------------------------------------------------------------------------------
    def run(self) -> str:
        self.entries = self.known()
        done = self.status()
        if done is not None:
            return done  # the start command again, for an order already decided: its outcome
        if not self.take_lease():
            return IN_PROGRESS  # another coordinator holds the order: the start is answered, not run
        # Read again under the lease: the last holder may have written since.
        self.entries = self.known()
        done = self.status()
        if done is not None:
            return done
        try:
            if not self.entries:
                self.write({"type": "started", "order": self.order})
            else:
                self.write({"type": "resumed"})
            # Every coordinator that began or took up the order so far, this one included, less one.
            self.epoch = sum(e["type"] in ("started", "resumed") for e in self.log.entries(self.order_id)) - 1
            return self.go_on()
        except LeaseLost:
            return SUPERSEDED  # taken over: the coordinator that holds the lease finishes the order

    def known(self) -> list[dict[str, Any]]:
        """What the log holds of this order."""
        return self.log.entries(self.order_id)

    def go_on(self) -> str:
        """Carry on from where the log says the order is."""
        if not self.compensating():
            try:
                for step in FORWARD:
                    self.forward(step)
            except StepFailed:
                self.write({"type": "compensating"})
            else:
                self.notify()
                return self.end("completed")
        return self.end(self.compensate())

    def compensating(self) -> bool:
        return any(e["type"] == "compensating" for e in self.entries)

    def end(self, status: str) -> str:
        self.write({"type": "ended", "status": status})
        return status

    def forward(self, step: str) -> None:
        outcome = self.recorded("outcome", step)
        if outcome is not None:
            if outcome["status"] == "ok":
                if step == "reserve":
                    self.reservation_id = outcome["reply"]["reservation_id"]
                return
            raise StepFailed(outcome["status"])
        # An intent logged by a coordinator that died: its call may have taken effect, whatever
        # this coordinator's own attempts find.
        inherited = self.recorded("intent", step) is not None
        reply = self.call(step, self.key_for(step), self.request(step), inherited)
        if step == "reserve":
            self.reservation_id = reply["reservation_id"]

    def key_for(self, step: str) -> str:
        """The key of the step's intent: written before the first call, reused on recovery."""
        intent = self.recorded("intent", step)
        if intent is not None:
            return str(intent["key"])
        key = self.mint(step)
        self.write({"type": "intent", "step": step, "key": key})
        return key

    def request(self, step: str) -> dict[str, Any]:
        if step == "reserve":
            return {"order_id": self.order_id, "sku": self.order["sku"], "qty": self.order["qty"]}
        if step == "charge":
            return {"order_id": self.order_id, "amount": self.order["amount"]}
        return {"order_id": self.order_id, "reservation_id": self.reservation_id}

    def operation(self, step: str) -> Any:
        services = self.services
        return {
            "reserve": services.inventory.reserve,
            "charge": services.payment.charge,
            "ship": services.shipping.create,
            "release": services.inventory.release,
            "refund": services.payment.refund,
            "cancel": services.shipping.cancel,
            "notify": services.notification.send,
        }[step]

    def call(self, step: str, key: str, request: dict[str, Any], inherited: bool = False) -> Reply:
        """A forward call under its intent; its outcome is logged after it. ``inherited``: the
        intent was logged by an earlier coordinator."""
        try:
            reply = self.retry(self.operation(step), **request, idempotency_key=key)
        except GaveUp as gave_up:
            unknown = gave_up.maybe_applied or inherited
            self.write({"type": "outcome", "step": step, "status": "unknown" if unknown else "not-delivered"})
            raise StepFailed(step) from gave_up
        if reply.get("status") != "ok":
            self.write({"type": "outcome", "step": step, "status": "refused"})
            raise StepFailed(reply.get("reason"))
        self.write({"type": "outcome", "step": step, "status": "ok", "reply": reply})
        return reply

    def notify(self) -> None:
        if self.recorded("outcome", "notify") is not None:
            return
        key = self.key_for("notify")
        try:
            self.retry(self.operation("notify"), order_id=self.order_id, message=f"order {self.order_id} is on its way", idempotency_key=key)
        except GaveUp:
            self.notification_pending = True  # left to an outbox: the order stands
        self.write({"type": "outcome", "step": "notify", "status": "sent" if not self.notification_pending else "pending"})

    # -- compensations -------------------------------------------------------------------------
    def may_be_in_effect(self, step: str) -> bool:
        """A step whose intent was written may have taken effect, unless its outcome says not."""
        if self.recorded("intent", step) is None:
            return False
        outcome = self.recorded("outcome", step)
        return outcome is None or outcome["status"] in ("ok", "unknown")

    def compensate(self) -> str:
        complete = True
        for step in reversed(FORWARD):
            undo = _UNDO[step]
            if not self.may_be_in_effect(step) or self.recorded("outcome", undo) is not None:
                continue
            key = self.key_for(undo)
            forward_key = str(self.recorded("intent", step)["key"])  # type: ignore[index]  # may_be_in_effect saw it
            try:
                self.retry(self.operation(undo), **self.undo_request(step, forward_key), idempotency_key=key)
            except GaveUp:
                complete = False
                continue
            self.write({"type": "outcome", "step": undo, "status": "ok"})
        return "compensated" if complete else "failed"

    # -- recovery ------------------------------------------------------------------------------
    @staticmethod
    def resumable(log: SagaLog) -> list[str]:
        """The orders a fresh coordinator takes up."""
        return log.unfinished()

    @classmethod
    def outcome_in(cls, log: SagaLog, services: Any, order: dict[str, Any]) -> str:
        """What the log says of ``order`` after recovery (placing it if the log never saw it:
        its start command is still owed)."""
        entries = log.entries(order["order_id"])
        ended = next((e for e in entries if e["type"] == "ended"), None)
        if ended is not None:
            return str(ended["status"])
        if not entries:
            return str(cls(services, order, owner="recovery", wait=True).run())
        # Known and not ended: where the log left it.
        return "compensating" if any(e["type"] == "compensating" for e in entries) else "running"

    def undo_request(self, step: str, forward_key: str) -> dict[str, Any]:
        name = {"reserve": "reserve_key", "charge": "charge_key", "ship": "shipment_key"}[step]
        return {name: forward_key}


def recover_orders(saga_class: type[DurableOrderSaga], services: Any, order: dict[str, Any]) -> str:
    """What a fresh coordinator runs: take up every order the log left unfinished, then answer
    for ``order``."""
    log: SagaLog = services.store
    for saga_id in saga_class.resumable(log):
        started = log.entries(saga_id)[0]
        saga_class(services, started["order"], owner="recovery", wait=True).run()
    return saga_class.outcome_in(log, services, order)
