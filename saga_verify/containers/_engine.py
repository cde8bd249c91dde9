"""The Docker engine, reached through the ``docker`` command (so ``DOCKER_HOST`` and contexts
work as they do in a shell): whether one answers, and running one command against it."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence

from ..errors import SagaVerifyError

__all__ = ["ENGINE_SCRIPT", "ContainerEngineError", "docker", "engine_problem", "require_engine"]

#: Installs and starts an engine on a machine without one (Debian; as root).
ENGINE_SCRIPT = "fixtures/containers/docker-engine.sh"

_ANSWER_TIMEOUT = 15.0
_HOW = (
    f"start one with `{ENGINE_SCRIPT} start` (as root: it installs Debian's docker.io if needed), "
    "or point DOCKER_HOST at an engine that runs"
)


class ContainerEngineError(SagaVerifyError):
    """No Docker engine answers, or the engine could not do what was asked of it."""


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def engine_problem() -> str | None:
    """Why no Docker engine can be used here, saying how to get one; None when one answers."""
    if shutil.which("docker") is None:
        return (
            "no `docker` command on PATH: install Docker (on Debian: apt-get install docker.io), "
            f"or run `{ENGINE_SCRIPT} start` as root, which installs and starts an engine"
        )
    try:
        done = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"],
            capture_output=True,
            text=True,
            timeout=_ANSWER_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"the Docker engine did not answer `docker version` within {_ANSWER_TIMEOUT:g} s: {_HOW}"
    except OSError as error:
        return f"`docker` cannot be run ({error}): install Docker or run `{ENGINE_SCRIPT} start` as root"
    if done.returncode != 0 or not done.stdout.strip():
        return f"no Docker engine answers ({_last_line(done.stderr)}): {_HOW}"
    return None


def require_engine() -> None:
    """Raise `ContainerEngineError` with `engine_problem`'s reason unless an engine answers."""
    problem = engine_problem()
    if problem is not None:
        raise ContainerEngineError(problem)


def docker(args: Sequence[str], *, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run ``docker ARGS`` and return what it did (the caller reads the exit status); a command
    that cannot be run or does not finish in ``timeout`` seconds raises `ContainerEngineError`."""
    command = ["docker", *args]
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise ContainerEngineError(f"`{' '.join(command)}` did not finish within {timeout:g} s") from None
    except OSError as error:
        raise ContainerEngineError(f"`docker` cannot be run ({error}): install Docker or run `{ENGINE_SCRIPT} start`") from None
