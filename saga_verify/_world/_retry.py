"""Retries with a budget: ``services.retry`` calls a step's operation again after a transport
error, waiting a bounded exponential back-off with jitter drawn from the plan's seed, on
virtual time, at most as many times as the step's ``retries=`` allows and never past the saga's
deadline."""

from __future__ import annotations

from typing import Any

from .._saga import Step
from ..errors import SagaDefinitionError


def backoff_wait(step: Step, retry: int, draw: float) -> float:
    """The wait before retry number ``retry`` (1 for the first) of ``step``: ``backoff`` doubled
    per retry, capped at ``max_backoff``, then jittered into its upper half by ``draw`` (0 <= draw
    < 1) so that callers that failed together do not retry together."""
    ceiling = min(step.max_backoff, step.backoff * 2.0 ** (retry - 1))
    return ceiling * (0.5 + 0.5 * draw)


def retry(world: Any, call: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Call ``call`` (an operation of a participant, ``services.payment.charge``) with the same
    arguments until it answers, within its step's retry budget. A reply is returned whatever it
    says (a refusal is an answer); the last transport error is raised when the budget is spent or
    the next wait would pass the deadline."""
    step = getattr(call, "step", None)
    if not isinstance(step, Step) or id(getattr(call, "world", None)) != id(world):
        raise world.fail(
            SagaDefinitionError(
                f"services.retry takes an operation of a participant, such as services.payment.charge; got {call!r}"
            )
        )
    if getattr(call, "is_async", False):
        raise world.fail(SagaDefinitionError(f"services.retry: {call!r} is async def; retry it with 'await services.aretry(...)'"))
    if step.retries is None:
        raise world.fail(
            SagaDefinitionError(f"services.retry({call.participant}.{call.operation}): step {step} declares no retry budget; give it retries=")
        )
    name = f"{call.participant}.{call.operation}"
    attempt = 0
    while True:
        try:
            return call(*args, **kwargs)
        except OSError:
            attempt += 1
            wait = _next_wait(world, step, name, attempt)
            if wait is None:
                raise
        world.clock.sleep(wait)


async def aretry(world: Any, call: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """`retry` for an ``async def`` saga: the back-off sleeps on its event loop's virtual time."""
    import asyncio

    step = getattr(call, "step", None)
    if not isinstance(step, Step) or id(getattr(call, "world", None)) != id(world):
        raise world.fail(
            SagaDefinitionError(f"services.aretry takes an operation of a participant, such as services.payment.charge; got {call!r}")
        )
    if step.retries is None:
        raise world.fail(
            SagaDefinitionError(f"services.aretry({call.participant}.{call.operation}): step {step} declares no retry budget; give it retries=")
        )
    name = f"{call.participant}.{call.operation}"
    attempt = 0
    while True:
        try:
            reply = call(*args, **kwargs)
            return await reply if asyncio.iscoroutine(reply) else reply
        except OSError:
            attempt += 1
            wait = _next_wait(world, step, name, attempt)
            if wait is None:
                raise
        await asyncio.sleep(wait)


def _next_wait(world: Any, step: Step, name: str, retry: int) -> float | None:
    """The back-off before retry number ``retry``, noted on the timeline; None (and why, noted)
    when the budget is spent or, for a step's action, the wait would pass the deadline. A
    compensation has the same budget as its action."""
    now = world.clock.now()
    budget = step.retries
    assert budget is not None  # checked before the first call
    if retry > budget:
        world.note(now, "gave-up", f"{name} failed; its retry budget ({budget}) is spent: the saga gets the error")
        return None
    wait = backoff_wait(step, retry, world.random())
    deadline = world.saga.deadline
    # Past the deadline the saga may still compensate: only a forward step stops at it.
    if deadline is not None and now + wait > deadline and name.partition(".")[2] == step.action:
        world.note(now, "gave-up", f"{name} failed; a retry after {wait:.3f}s would pass the deadline (t={deadline:g}): the saga gets the error")
        return None
    world.note(now, "backoff", f"{name} failed; back-off {wait:.3f}s before retry {retry}")
    return wait
