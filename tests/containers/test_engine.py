"""Finding a Docker engine: a missing one is reported with a way to get one, at once, and the
container tests skip on it, or fail when CI requires an engine."""

from __future__ import annotations

import time
from pathlib import Path

import engine_guard
import pytest

import saga_verify.containers
from saga_verify import SagaVerifyError
from saga_verify.containers import ContainerEngineError, engine_problem, ensure_service_image


def test_no_docker_command_says_how_to_get_an_engine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    problem = engine_problem()
    assert problem is not None
    assert "no `docker` command" in problem
    assert "fixtures/containers/docker-engine.sh start" in problem


def test_an_engine_that_does_not_answer_is_reported_at_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    started = time.monotonic()
    problem = engine_problem()
    with pytest.raises(ContainerEngineError) as caught:
        ensure_service_image()
    assert time.monotonic() - started < 10
    assert problem is not None
    assert "no Docker engine answers" in problem
    assert "fixtures/containers/docker-engine.sh start" in problem
    assert str(caught.value) == problem
    assert isinstance(caught.value, SagaVerifyError)


def test_no_engine_skips_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(saga_verify.containers, "engine_problem", lambda: "no engine here: start one")
    monkeypatch.delenv("REQUIRE_DOCKER", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no engine here: start one"):
        engine_guard.require_docker()


def test_no_engine_fails_when_ci_requires_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(saga_verify.containers, "engine_problem", lambda: "no engine here: start one")
    monkeypatch.setenv("REQUIRE_DOCKER", "1")
    with pytest.raises(pytest.fail.Exception, match="REQUIRE_DOCKER=1, but no engine here: start one"):
        engine_guard.require_docker()


def test_an_engine_that_answers_lets_tests_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(saga_verify.containers, "engine_problem", lambda: None)
    monkeypatch.setenv("REQUIRE_DOCKER", "1")
    engine_guard.require_docker()
