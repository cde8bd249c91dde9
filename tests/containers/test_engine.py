"""Finding a Docker engine: a missing one is reported with a way to get one, at once, and the
container tests skip on it, or fail when CI requires an engine; where an engine publishes ports
follows from where it is, not from settings of this machine."""

from __future__ import annotations

import sys
from pathlib import Path

import engine_guard
import pytest

import saga_verify.containers
from saga_verify import SagaVerifyError
from saga_verify.containers import ContainerEngineError, engine_problem, ensure_service_image
from saga_verify.containers._engine import Published, published_for


def test_without_the_docker_sdk_the_problem_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "docker", None)  # `import docker` raises ImportError
    problem = engine_problem()
    assert problem is not None
    assert "the Docker SDK (the `docker` package) is not installed" in problem
    assert "pip install 'saga-verify[containers]'" in problem


@pytest.mark.parametrize(
    ("base_url", "ssh_host", "expected"),
    [
        ("http+docker://localhost", None, Published("127.0.0.1", "127.0.0.1")),  # a unix socket
        ("http+docker://localnpipe", None, Published("127.0.0.1", "127.0.0.1")),  # a named pipe
        ("http://10.1.2.3:2375", None, Published("0.0.0.0", "10.1.2.3")),  # tcp://, elsewhere
        ("https://docker.example:2376", None, Published("0.0.0.0", "docker.example")),
        ("http://127.0.0.2:2375", None, Published("127.0.0.2", "127.0.0.2")),  # tcp:// on this machine
        ("http://localhost:2375", None, Published("127.0.0.1", "127.0.0.1")),
        ("http+docker://ssh", "deploy@build-box:2222", Published("0.0.0.0", "build-box")),
        ("http://[fd00::5]:2375", None, Published("0.0.0.0", "fd00::5")),
    ],
)
def test_ports_are_published_where_the_engine_is(base_url: str, ssh_host: str | None, expected: Published) -> None:
    assert published_for(base_url, ssh_host) == expected


def test_a_published_url_brackets_an_ipv6_host() -> None:
    assert Published("0.0.0.0", "fd00::5").url(32768) == "http://[fd00::5]:32768"
    assert Published("127.0.0.1", "127.0.0.1").url(8000) == "http://127.0.0.1:8000"


def test_an_engine_whose_host_cannot_be_told_is_an_error() -> None:
    with pytest.raises(ContainerEngineError, match="cannot tell which host"):
        published_for("http+docker://ssh", None)


def test_an_engine_that_does_not_answer_is_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    problem = engine_problem()
    with pytest.raises(ContainerEngineError) as caught:
        ensure_service_image()
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
