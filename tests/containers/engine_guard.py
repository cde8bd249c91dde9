"""What the container tests share beyond the library (`saga_verify.containers.session_leftovers`,
`remove_session` and the plugin's `require_docker`): a session id, and the engine's Docker SDK
client."""

from __future__ import annotations

import uuid
from typing import Any

from saga_verify._pytest_plugin import require_docker
from saga_verify.containers import remove_session
from saga_verify.containers import session_leftovers as leftovers
from saga_verify.containers._engine import engine

__all__ = ["api", "leftovers", "new_session_id", "remove_session", "require_docker"]


def new_session_id() -> str:
    return uuid.uuid4().hex[:12]


def api() -> Any:
    """The low-level Docker SDK client (``docker.APIClient``) of the engine the library uses."""
    return engine().api
