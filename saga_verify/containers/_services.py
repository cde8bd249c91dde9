"""Services as containers: started with testcontainers on a private network, labelled with the
run's session, reached on 127.0.0.1, killed, restarted and frozen on request, and removed
without a trace.

A `ContainerSession` owns one run's containers and its network (testcontainers ``Network``, not
compose). Everything it creates carries the label ``saga-verify.session=<id>``; `close` removes
it all (also when this object is dropped or the interpreter exits), and `remove_session` removes
what a killed run left, by that label. testcontainers' own reaper (Ryuk) is off: its image
cannot be pulled without a registry.

A `ServiceContainer` is one container serving HTTP on a port inside it, published on
127.0.0.1 at a port the engine picks. After a restart the engine publishes it at another port:
`url` reads it again. Its faults are the ones only containers have: `kill` (with a signal),
`start` again, `restart` (kill, start, wait until it answers), `pause` and `unpause` (frozen:
connections are accepted, nothing is answered).
"""

from __future__ import annotations

import atexit
import os
import socket
import threading
import time
import uuid
import weakref
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import httpx

from ..errors import SagaVerifyError
from ._engine import ContainerEngineError, docker, require_engine
from ._images import SERVICE_PORT, SESSION_LABEL

if TYPE_CHECKING:
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.network import Network

__all__ = [
    "ContainerParticipant",
    "ContainerSession",
    "ContainerStartError",
    "ServiceContainer",
    "remove_orphaned_sessions",
    "remove_session",
    "session_leftovers",
]

#: How long a service may take to answer its ready check after its container started.
READY_TIMEOUT = 30.0

# Settings testcontainers reads when it is first imported (a user's own settings win):
# no reaper (its image cannot be pulled here); the engine's host as the containers' host, and
# loopback for it (a /.dockerenv file would otherwise make testcontainers think it runs inside a
# container and look for a gateway).
_TESTCONTAINERS_SETTINGS = {
    "TESTCONTAINERS_RYUK_DISABLED": "true",
    "TESTCONTAINERS_CONNECTION_MODE": "docker_host",
    "TC_HOST": "127.0.0.1",
}


class ContainerStartError(SagaVerifyError, RuntimeError):
    """A container did not start, or its service did not become ready; the message names the
    service, the image and the end of what the container wrote. Whatever was started is removed."""


def _testcontainers() -> tuple[type[DockerContainer], type[Network]]:
    for name, value in _TESTCONTAINERS_SETTINGS.items():
        os.environ.setdefault(name, value)
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.network import Network

    return DockerContainer, Network


class ServiceContainer:
    """One service in a container, published on 127.0.0.1."""

    def __init__(
        self,
        session: ContainerSession,
        name: str,
        image: str,
        command: Sequence[str],
        *,
        port: int = SERVICE_PORT,
        env: Mapping[str, str] | None = None,
        ready_path: str = "/health",
        ready_timeout: float = READY_TIMEOUT,
    ) -> None:
        self.session = session
        #: The service's name: its network alias too, so other containers reach it as ``http://NAME:PORT``.
        self.name = name
        self.image = image
        self.command = list(command)
        self.port = port
        self.env = dict(env or {})
        self.ready_path = ready_path
        self.ready_timeout = ready_timeout
        self._container: DockerContainer | None = None
        self._host_port: int | None = None
        self.paused = False

    # -- where it is --------------------------------------------------------------------------
    @property
    def id(self) -> str:
        if self._container is None:
            raise ContainerStartError(f"the {self.name} container is not started")
        return self._container.get_container_id()

    @property
    def host_port(self) -> int:
        """The port on 127.0.0.1 where the engine publishes the service (it changes on restart)."""
        if self._host_port is None:
            self._host_port = self._read_host_port()
        return self._host_port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.host_port}"

    @property
    def network_url(self) -> str:
        """How other containers on the session's network reach it."""
        return f"http://{self.name}:{self.port}"

    def _read_host_port(self) -> int:
        done = docker(["port", self.id, f"{self.port}/tcp"], timeout=30)
        for line in done.stdout.splitlines():
            host, _, port = line.strip().rpartition(":")
            if host in ("127.0.0.1", "0.0.0.0") and port.isdigit():
                return int(port)
        raise ContainerStartError(
            f"the {self.name} container publishes no port for {self.port}/tcp on 127.0.0.1 "
            f"({done.stdout.strip() or done.stderr.strip() or 'nothing'}); {self._state()}"
        )

    # -- start and stop -------------------------------------------------------------------------
    def start(self) -> ServiceContainer:
        """Create and start the container, then wait until the service answers."""
        container_class, _ = _testcontainers()
        network = self.session.network()
        container = container_class(self.image)
        if self.command:  # none: the image's own command (an empty one would replace it with nothing)
            container.with_command(self.command)
        container = (
            container
            .with_network(network)
            .with_network_aliases(self.name)
            .with_kwargs(labels={**self.session.labels, f"{SESSION_LABEL}.service": self.name})
        )
        for key, value in self.env.items():
            container.with_env(key, value)
        # Published on loopback only, at a port the engine picks. (testcontainers' with_bind_ports
        # cannot name a host address; the engine's API takes (address, port).)
        container.ports[f"{self.port}/tcp"] = ("127.0.0.1", None)  # type: ignore[assignment]
        self._container = container
        try:
            container.start()
        except Exception as error:
            raise self._fail(f"could not be started ({type(error).__name__}: {_first_line(str(error))})") from error
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until ``GET ready_path`` answers 2xx; `ContainerStartError` (with the container's
        last output) if the container stops or ``timeout`` seconds pass first."""
        limit = self.ready_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        problem = "no answer"
        self._host_port = None
        while True:
            state = self._status()
            if state not in ("running", "created", "restarting"):
                raise self._fail(f"stopped ({state}) before its service answered GET {self.ready_path}")
            try:
                response = httpx.get(f"{self.url}{self.ready_path}", timeout=max(0.1, min(2.0, deadline - time.monotonic())))
                if 200 <= response.status_code < 300:
                    return
                problem = f"it answered {response.status_code} {response.text[:200]!r}"
            except (httpx.TransportError, ContainerStartError) as error:
                problem = f"{type(error).__name__}: {_first_line(str(error))}"
                self._host_port = None
            if time.monotonic() >= deadline:
                raise self._fail(f"did not answer GET {self.ready_path} within {limit:g} s ({problem})")
            time.sleep(0.05)

    def kill(self, signal: str = "KILL") -> None:
        """Kill the container's process (it stays, stopped, until `start_again`)."""
        self.paused = False
        done = docker(["kill", "--signal", signal, self.id], timeout=30)
        if done.returncode != 0:
            raise ContainerEngineError(f"could not kill the {self.name} container: {done.stderr.strip()}")
        self._host_port = None

    def start_again(self) -> None:
        """Start the killed or stopped container again and wait until it answers."""
        done = docker(["start", self.id], timeout=60)
        if done.returncode != 0:
            raise ContainerEngineError(f"could not start the {self.name} container again: {done.stderr.strip()}")
        self._host_port = None
        self.wait_ready()

    def restart(self, signal: str = "KILL") -> None:
        """Kill it, start it again, wait until it answers: what its store kept is what it has."""
        self.kill(signal)
        self.start_again()

    def pause(self) -> None:
        """Freeze every process in it: connections are accepted, nothing is answered."""
        done = docker(["pause", self.id], timeout=30)
        if done.returncode != 0:
            raise ContainerEngineError(f"could not pause the {self.name} container: {done.stderr.strip()}")
        self.paused = True

    def unpause(self) -> None:
        done = docker(["unpause", self.id], timeout=30)
        if done.returncode != 0:
            raise ContainerEngineError(f"could not unpause the {self.name} container: {done.stderr.strip()}")
        self.paused = False

    def remove(self) -> None:
        """Remove the container (and its anonymous volumes). Idempotent."""
        container, self._container = self._container, None
        if container is None:
            return
        try:
            container.stop(force=True, delete_volume=True)
        except Exception:
            # Gone already, or the engine is: close() of the session removes by label anyway.
            pass

    # -- what went wrong ------------------------------------------------------------------------
    def _created(self) -> str | None:
        """The container's id, or None if the engine never created it."""
        wrapped = getattr(self._container, "_container", None)
        return getattr(wrapped, "id", None)

    def _status(self) -> str:
        container_id = self._created()
        if container_id is None:
            return "not created"
        done = docker(["inspect", "--format", "{{.State.Status}}", container_id], timeout=30)
        return done.stdout.strip() if done.returncode == 0 else "gone"

    def _state(self) -> str:
        return f"the container is {self._status()}"

    def logs_tail(self, lines: int = 20) -> str:
        container_id = self._created()
        if container_id is None:
            return ""
        done = docker(["logs", "--tail", str(lines), container_id], timeout=30)
        return (done.stdout + done.stderr).strip()

    def _fail(self, what: str) -> ContainerStartError:
        tail = ""
        try:
            tail = self.logs_tail()
        except ContainerEngineError:
            pass
        error = ContainerStartError(
            f"the {self.name} service (image {self.image}) {what}"
            + (f"; the container's output ends with:\n{tail}" if tail else "; the container wrote nothing")
        )
        self.remove()
        return error

    def __repr__(self) -> str:
        where = self.url if self._container is not None and self._host_port is not None else "not running"
        return f"<ServiceContainer {self.name} ({self.image}): {where}>"


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), text.strip())


class ContainerSession:
    """One run's containers and its private network, all labelled with the session id."""

    def __init__(self, session_id: str | None = None) -> None:
        require_engine()
        # What an earlier run on this machine could not remove (it was killed): gone now.
        remove_orphaned_sessions()
        self.id = session_id or uuid.uuid4().hex[:12]
        self._network: Network | None = None
        self._services: dict[str, ServiceContainer] = {}
        self._participants: dict[str, ContainerParticipant] = {}
        self._images: list[str] = []
        self._gateway: str | None = None
        self._lock = threading.Lock()
        self._owner = os.getpid()
        self._finalizer = weakref.finalize(self, _remove_if_owner, self.id, self._owner)
        atexit.register(self._finalizer)

    @property
    def labels(self) -> dict[str, str]:
        """What marks everything the session creates: its id, and the process that owns it."""
        return {SESSION_LABEL: self.id, OWNER_LABEL: _owner()}

    def network(self) -> Network:
        """The session's network (created on first use)."""
        with self._lock:
            if self._network is None:
                _, network_class = _testcontainers()
                network = network_class(docker_network_kw={"labels": self.labels})
                network.name = f"saga-verify-{self.id}"
                try:
                    network.create()
                except Exception as error:
                    raise ContainerEngineError(f"could not create the network {network.name}: {error}") from error
                self._network = network
            return self._network

    @property
    def services(self) -> Mapping[str, ServiceContainer]:
        return dict(self._services)

    def gateway(self) -> str:
        """The address of this machine on the session's network: containers reach what listens
        there (the fault proxies), and so does this process."""
        if self._gateway is None:
            network = self.network()
            done = docker(["network", "inspect", "--format", "{{range .IPAM.Config}}{{.Gateway}} {{end}}", network.name], timeout=30)
            gateways = done.stdout.split()
            if done.returncode != 0 or not gateways:
                raise ContainerEngineError(f"the network {network.name} has no gateway address: {done.stderr.strip() or done.stdout.strip()}")
            self._gateway = gateways[0]
        return self._gateway

    def build(
        self,
        dockerfile: str | os.PathLike[str],
        context: str | os.PathLike[str] | None = None,
        build_args: Mapping[str, str] | None = None,
    ) -> str:
        """Build an image from ``dockerfile`` (its folder is the context unless ``context`` is
        given; ``build_args`` for its ``ARG``s), labelled with the session and removed with it; its tag."""
        from pathlib import Path

        path = Path(dockerfile)
        if not path.is_file():
            raise ContainerStartError(f"Dockerfile {path} does not exist")
        tag = f"saga-verify/participant-{self.id}:{len(self._images) + 1}"
        where = Path(context) if context is not None else path.parent
        done = docker(
            [
                "build", "--quiet", "--label", f"{SESSION_LABEL}={self.id}", "--label", f"{OWNER_LABEL}={_owner()}",
                "-f", str(path), "-t", tag,
                *(part for name, value in (build_args or {}).items() for part in ("--build-arg", f"{name}={value}")),
                str(where),
            ],
            timeout=1800,
        )
        if done.returncode != 0:
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
            raise ContainerStartError(f"the image of {path} could not be built; docker build says:\n{tail}")
        self._images.append(tag)
        return tag

    def participant(
        self,
        name: str,
        image: str | None = None,
        command: Sequence[str] = (),
        *,
        dockerfile: str | os.PathLike[str] | None = None,
        context: str | os.PathLike[str] | None = None,
        port: int = SERVICE_PORT,
        env: Mapping[str, str] | None = None,
        ready_path: str = "/health",
        ready_timeout: float = READY_TIMEOUT,
        decide: Any = None,
    ) -> ContainerParticipant:
        """Start a participant from ``image`` (or built from ``dockerfile``) with a fault proxy of
        its own in front of it (`saga_verify.proxy.FaultProxy`, ``decide`` its decisions). Hand
        ``.url`` to whoever calls it: this process, or other containers of the session."""
        if (image is None) == (dockerfile is None):
            raise ContainerStartError(f"participant {name!r}: give an image or a Dockerfile, not {'both' if image else 'neither'}")
        tag = image if image is not None else self.build(dockerfile, context)  # type: ignore[arg-type]
        container = self.start(name, tag, command, port=port, env=env, ready_path=ready_path, ready_timeout=ready_timeout)
        try:
            from ..proxy import FaultProxy

            proxy = FaultProxy(container.url, decide, host=self.gateway()).start()
        except BaseException:
            container.remove()
            self._services.pop(name, None)
            raise
        participant = ContainerParticipant(container, proxy)
        self._participants[name] = participant
        return participant

    def start(
        self,
        name: str,
        image: str,
        command: Sequence[str] = (),
        *,
        port: int = SERVICE_PORT,
        env: Mapping[str, str] | None = None,
        ready_path: str = "/health",
        ready_timeout: float = READY_TIMEOUT,
    ) -> ServiceContainer:
        """Start ``image`` as the service ``name`` (its network alias), and wait until it answers."""
        if self.closed:
            raise ContainerStartError(f"session {self.id} is closed")
        if name in self._services:
            raise ContainerStartError(f"session {self.id} runs a service named {name!r} already")
        service = ServiceContainer(
            self, name, image, command, port=port, env=env, ready_path=ready_path, ready_timeout=ready_timeout
        )
        self._services[name] = service
        try:
            service.start()
        except BaseException:
            self._services.pop(name, None)
            raise
        return service

    def start_all(self, services: Mapping[str, tuple[str, Sequence[str]]], **options: Any) -> dict[str, ServiceContainer]:
        """Start several (name -> (image, command)); if one fails, every one started is removed."""
        started: dict[str, ServiceContainer] = {}
        try:
            for name, (image, command) in services.items():
                started[name] = self.start(name, image, command, **options)
        except BaseException:
            for service in started.values():
                service.remove()
                self._services.pop(service.name, None)
            raise
        return started

    def close(self) -> None:
        """Remove every container, image and the network of the session. Idempotent."""
        for participant in list(self._participants.values()):
            participant.proxy.close()
        self._participants.clear()
        for service in list(self._services.values()):
            service.remove()
        self._services.clear()
        if self._network is not None:
            try:
                self._network.remove()
            except Exception:
                pass  # removed by label below
            self._network = None
        for tag in self._images:
            docker(["image", "rm", "--force", tag], timeout=60)
        self._images.clear()
        self._finalizer()

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def __enter__(self) -> ContainerSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _remove_if_owner(session_id: str, owner: int) -> None:
    if os.getpid() == owner:
        remove_session(session_id)


class ContainerParticipant:
    """A participant in a container, behind a fault proxy of its own. ``url`` is the proxy's;
    after a restart the proxy follows the container to its new port."""

    def __init__(self, container: ServiceContainer, proxy: Any) -> None:
        self.container = container
        #: The `saga_verify.proxy.FaultProxy` in front of it: set ``proxy.decide``, read ``proxy.records``.
        self.proxy = proxy

    @property
    def name(self) -> str:
        return self.container.name

    @property
    def url(self) -> str:
        """Where to call it (through the proxy), from this process or from the session's containers."""
        return str(self.proxy.url)

    @property
    def direct_url(self) -> str:
        """The container itself, on 127.0.0.1, with no proxy in between."""
        return self.container.url

    def kill(self, signal: str = "KILL") -> None:
        self.container.kill(signal)

    def start_again(self) -> None:
        self.container.start_again()
        self.proxy.retarget(self.container.url)

    def restart(self, signal: str = "KILL") -> None:
        self.container.restart(signal)
        self.proxy.retarget(self.container.url)

    def pause(self) -> None:
        self.container.pause()

    def unpause(self) -> None:
        self.container.unpause()

    def __repr__(self) -> str:
        return f"<ContainerParticipant {self.name}: {self.url} -> {self.container!r}>"


#: The label that names the process owning a session: ``hostname:pid``.
OWNER_LABEL = f"{SESSION_LABEL}.owner"


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_orphaned_sessions() -> list[str]:
    """Remove the sessions whose owning process, on this machine, is gone (a run killed before
    it could clean up); the ids removed. Sessions of live processes and other machines stay."""
    host = socket.gethostname()
    try:
        found = set()
        for kind in (["ps", "--all"], ["network", "ls"]):
            done = docker([*kind, "--filter", f"label={OWNER_LABEL}", "--format", f'{{{{.Label "{SESSION_LABEL}"}}}} {{{{.Label "{OWNER_LABEL}"}}}}'], timeout=30)
            for line in done.stdout.splitlines():
                session, _, owner = line.strip().partition(" ")
                owner_host, _, pid = owner.rpartition(":")
                if session and owner_host == host and pid.isdigit() and not _alive(int(pid)):
                    found.add(session)
    except ContainerEngineError:
        return []
    for session in sorted(found):
        remove_session(session)
    return sorted(found)


def session_leftovers(session_id: str) -> dict[str, list[str]]:
    """The containers, networks and images in the engine labelled with ``session_id``."""
    label = f"label={SESSION_LABEL}={session_id}"
    return {
        "containers": docker(["ps", "--all", "--quiet", "--filter", label], timeout=30).stdout.split(),
        "networks": docker(["network", "ls", "--quiet", "--filter", label], timeout=30).stdout.split(),
        "images": docker(["image", "ls", "--all", "--quiet", "--filter", label], timeout=30).stdout.split(),
    }


def remove_session(session_id: str) -> dict[str, list[str]]:
    """Remove every container, network and image labelled with ``session_id``; what is left
    (nothing, unless the engine refused)."""
    try:
        found = session_leftovers(session_id)
        if found["containers"]:
            docker(["rm", "--force", "--volumes", *found["containers"]], timeout=60)
        if found["networks"]:
            docker(["network", "rm", *found["networks"]], timeout=60)
        # A labelled image's build steps carry the label too, and a child goes before its
        # parent: remove what can be removed until nothing more can.
        images = list(dict.fromkeys(found["images"]))
        while images:
            kept = [image for image in images if docker(["image", "rm", "--force", image], timeout=60).returncode != 0]
            if len(kept) == len(images):
                break
            images = kept
        return session_leftovers(session_id)
    except ContainerEngineError:
        return {"containers": [], "networks": [], "images": []}


def sessions_running() -> Iterator[str]:
    """The session ids that have containers or networks in the engine."""
    done = docker(["ps", "--all", "--format", f'{{{{.Label "{SESSION_LABEL}"}}}}'], timeout=30)
    yield from sorted({line.strip() for line in done.stdout.splitlines() if line.strip()})
