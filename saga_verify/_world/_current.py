"""The execution running in this context: how steps declared at module level (task decorators,
step classes registered once) reach their services, and how library clocks know whose virtual
time to read. A context variable, so it follows the saga into the tasks it starts and stays out
of every other thread."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from ..errors import SagaDefinitionError

#: The `World` whose saga runs in this context, or None.
CURRENT: ContextVar[Any] = ContextVar("saga_verify_execution", default=None)


def current_services() -> Any:
    """The services of the execution running here: what ``run(services, input)`` received, for
    code that is not handed it (a step declared at module level, a step class a library
    instantiates). Works in the saga's code, in whatever it calls, and in the tasks it starts."""
    world = CURRENT.get()
    if world is None:
        raise SagaDefinitionError(
            "current_services() was called outside a saga execution: it answers only while saga-verify "
            "runs a saga (inside run(), in what it calls, or in an asyncio task it started)"
        )
    return world.services
