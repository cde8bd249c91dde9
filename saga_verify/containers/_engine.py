"""The Docker engine, reached through the Docker SDK (the ``docker`` package testcontainers brings),
configured as the ``docker`` command is (``DOCKER_HOST``, ``DOCKER_TLS_VERIFY``, ``DOCKER_CERT_PATH``,
the current context): whether one answers, a client for it, and where its published ports are."""

from __future__ import annotations

import gc
import ipaddress
import os
import threading
import warnings
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..errors import SagaVerifyError

__all__ = [
    "ENGINE_SCRIPT",
    "ContainerEngineError",
    "Published",
    "engine",
    "engine_problem",
    "published",
    "published_for",
    "require_engine",
]

#: Installs and starts an engine on a machine without one (Debian; as root).
ENGINE_SCRIPT = "fixtures/containers/docker-engine.sh"

_ANSWER_TIMEOUT = 15.0
#: Seconds an API call may take (the long ones, builds and imports, set their own).
API_TIMEOUT = 120.0
_HOW = (
    f"start one with `{ENGINE_SCRIPT} start` (as root: it installs Debian's docker.io if needed), "
    "or point DOCKER_HOST at an engine that runs"
)
_NO_SDK = "the Docker SDK (the `docker` package) is not installed: pip install 'saga-verify[containers]'"


class ContainerEngineError(SagaVerifyError):
    """No Docker engine answers, or the engine could not do what was asked of it."""


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def _connect(timeout: float) -> Any:
    """A client of the engine the environment names, which has answered; raises what the SDK raises."""
    import docker

    client = docker.from_env(timeout=timeout)  # asks the engine for its API version
    try:
        client.ping()
    except BaseException:
        client.close()
        raise
    return client


def _try_connect(timeout: float) -> tuple[Any, str | None]:
    """A client of the engine, or None and why none answers."""
    problem = None
    with warnings.catch_warnings():
        # The SDK leaves the socket of a connection that failed open: it is closed here, quietly,
        # once the error that holds it is gone.
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            return _connect(timeout), None
        except Exception as error:  # the SDK wraps some transport errors and not others
            problem = f"no Docker engine answers ({_last_line(str(error))}): {_HOW}"
        gc.collect()
    return None, problem


def engine_problem() -> str | None:
    """Why no Docker engine can be used here, saying how to get one; None when one answers."""
    try:
        import docker  # noqa: F401
    except ImportError:
        return _NO_SDK
    client, problem = _try_connect(_ANSWER_TIMEOUT)
    if client is not None:
        client.close()
    return problem


def require_engine() -> None:
    """Raise `ContainerEngineError` with `engine_problem`'s reason unless an engine answers."""
    problem = engine_problem()
    if problem is not None:
        raise ContainerEngineError(problem)


_ENVIRONMENT = ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_CONTEXT")
_clients: dict[tuple[object, ...], Any] = {}
_clients_lock = threading.Lock()


def engine() -> Any:
    """The ``docker.DockerClient`` of this process for the engine the environment names (one per
    process and setting, made on first use); `ContainerEngineError` when no engine answers."""
    key = (os.getpid(), *(os.environ.get(name) for name in _ENVIRONMENT))
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            try:
                import docker  # noqa: F401
            except ImportError:
                raise ContainerEngineError(_NO_SDK) from None
            client, problem = _try_connect(API_TIMEOUT)
            if client is None:
                raise ContainerEngineError(problem)
            _clients[key] = client
        return client


@dataclass(frozen=True)
class Published:
    """Where a container's published ports are: the address the engine binds them to, on its own
    machine, and the host this process reaches them at."""

    bind: str
    host: str

    def url(self, port: int) -> str:
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{shown}:{port}"


#: An engine on this machine (a unix socket, a named pipe): ports on loopback only.
LOCAL = Published("127.0.0.1", "127.0.0.1")


def published_for(base_url: str, ssh_host: str | None = None) -> Published:
    """Where the ports of an engine at ``base_url`` (a Docker SDK client's ``api.base_url``) are
    published: on loopback for an engine behind a local socket; on every address of the engine's
    machine otherwise, reached at its host name (``ssh_host`` for an engine over ssh, which the
    SDK's base URL does not name)."""
    parts = urlsplit(base_url)
    if parts.scheme == "http+docker":
        if parts.hostname != "ssh":
            return LOCAL
        host = (ssh_host or "").rpartition("@")[2]
        host = urlsplit(f"//{host}").hostname or ""
    else:
        host = parts.hostname or ""
    if not host:
        raise ContainerEngineError(f"cannot tell which host the Docker engine at {base_url!r} runs on")
    if host == "localhost":
        return LOCAL
    if _loopback(host):
        # Over TCP, but on this machine: its ports are reached at the address it was reached at.
        return Published(host, host)
    return Published("0.0.0.0", host)


def published() -> Published:
    """Where the engine this process talks to publishes ports (see `published_for`)."""
    client = engine()
    adapter = getattr(client.api, "_custom_adapter", None)
    ssh_host = getattr(adapter, "ssh_host", None)
    return published_for(str(client.api.base_url), ssh_host if isinstance(ssh_host, str) else None)


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
