"""Fixtures of the container tests. Nothing here touches the engine at import or collection time:
without an engine every test that needs one is skipped (or fails under ``REQUIRE_DOCKER=1``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from engine_guard import new_session_id, remove_session, require_docker

from saga_verify.containers import SESSION_LABEL, ServiceImage, ensure_service_image


@pytest.fixture(scope="session")
def docker_engine() -> None:
    require_docker()


@pytest.fixture(scope="session")
def session_labels(docker_engine: None) -> Iterator[dict[str, str]]:
    """Labels for whatever a test creates in the engine; all of it is removed after the session,
    and none of it may remain."""
    session_id = new_session_id()
    yield {SESSION_LABEL: session_id}
    left = remove_session(session_id)
    assert not any(left.values()), f"left behind by session {session_id}: {left}"


@pytest.fixture(scope="session")
def service_image(docker_engine: None) -> ServiceImage:
    return ensure_service_image()
