"""Services as containers: started with testcontainers on a private network, labelled with the
run's session, reached where the engine publishes them, killed, restarted and frozen on request,
and removed without a trace.

A `ContainerSession` owns one run's containers and its network (testcontainers ``Network``, not
compose). Everything it creates carries the label ``saga-verify.session=<id>``; `close` removes
it all (also when this object is dropped or the interpreter exits), and `remove_session` removes
what a killed run left, by that label. testcontainers is used as its settings say (its reaper,
Ryuk, included): nothing here changes the process's environment. Without a registry Ryuk's image
cannot be pulled; set ``TESTCONTAINERS_RYUK_DISABLED=true`` there (the session label does the
cleaning).

A `ServiceContainer` is one container serving HTTP on a port inside it, published at a port the
engine picks: on 127.0.0.1 for an engine on this machine, else on the engine's host (see
`saga_verify.containers._engine.published`). After a restart the engine publishes it at another
port: `url` reads it again. Its faults are the ones only containers have: `kill` (with a signal),
`start` again, `restart` (kill, start, wait until it answers), `replace` (kill, remove, start a
new container: only its volumes are left), `pause` and `unpause` (frozen: connections are
accepted, nothing is answered). Its ``volumes`` are named volumes of the session (labelled,
removed with it), which outlive any one container of the service.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import socket
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from ..errors import SagaVerifyError
from ._engine import ContainerEngineError, Published, engine, published, require_engine
from ._images import SERVICE_PORT, SESSION_LABEL, build_image

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

_T = TypeVar("_T")


class ContainerStartError(SagaVerifyError, RuntimeError):
    """A container did not start, or its service did not become ready; the message names the
    service, the image and the end of what the container wrote. Whatever was started is removed."""


def _testcontainers() -> tuple[type[DockerContainer], type[Network]]:
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.network import Network

    return DockerContainer, Network


def _reaper_hint() -> str:
    """What to do when testcontainers' reaper may be why a start failed; empty when it is off."""
    try:
        from testcontainers.core.config import testcontainers_config
    except ImportError:
        return ""
    if testcontainers_config.ryuk_disabled:
        return ""
    return (
        "; testcontainers starts its reaper (Ryuk) first, from an image a registry must provide: "
        "where none is reachable, set TESTCONTAINERS_RYUK_DISABLED=true (saga-verify removes what it "
        "starts by its session label)"
    )


def _engine_call(what: str, call: Callable[[], _T]) -> _T:
    """``call()`` against the engine; its failure as `ContainerEngineError` saying ``what`` failed."""
    import docker.errors

    try:
        return call()
    except docker.errors.DockerException as error:
        reason = getattr(error, "explanation", None) or error
        raise ContainerEngineError(f"{what}: {reason}") from None


class ServiceContainer:
    """One service in a container, published where the engine is (127.0.0.1 for one on this machine)."""

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
        volumes: Mapping[str, str] | None = None,
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
        #: Path in the container -> the session's named volume mounted there.
        self.volumes = {path: session.volume(f"{name}-{short}") for short, path in (volumes or {}).items()}
        self._container: DockerContainer | None = None
        self._host_port: int | None = None
        self._published: Published = session.published
        self.paused = False

    # -- where it is --------------------------------------------------------------------------
    @property
    def id(self) -> str:
        if self._container is None or self._created() is None:  # not yet, or no more (being replaced)
            raise ContainerStartError(f"the {self.name} container is not started")
        return self._container.get_container_id()

    @property
    def host(self) -> str:
        """The host where the engine publishes the service: 127.0.0.1 for an engine on this machine."""
        return self._published.host

    @property
    def host_port(self) -> int:
        """The port on `host` where the engine publishes the service (it changes on restart)."""
        if self._host_port is None:
            self._host_port = self._read_host_port()
        return self._host_port

    @property
    def url(self) -> str:
        return self._published.url(self.host_port)

    @property
    def network_url(self) -> str:
        """How other containers on the session's network reach it."""
        return f"http://{self.name}:{self.port}"

    def _read_host_port(self) -> int:
        container_id = self.id
        bindings = _engine_call(
            f"could not read the ports of the {self.name} container", lambda: engine().api.port(container_id, self.port)
        )
        for binding in bindings or []:
            if binding.get("HostIp") in (self._published.bind, "0.0.0.0", "::", "") and str(binding.get("HostPort", "")).isdigit():
                return int(binding["HostPort"])
        raise ContainerStartError(
            f"the {self.name} container publishes no port for {self.port}/tcp on {self._published.bind} "
            f"({bindings or 'nothing'}); {self._state()}"
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
        for path, volume in self.volumes.items():
            container.with_volume_mapping(volume, path, "rw")
        # Published at a port the engine picks, on loopback for an engine on this machine.
        # (testcontainers' with_bind_ports cannot name a host address; the engine's API takes
        # (address, port).)
        container.ports[f"{self.port}/tcp"] = (self._published.bind, None)  # type: ignore[assignment]
        self._container = container
        try:
            container.start()
        except Exception as error:
            reason = f"could not be started ({type(error).__name__}: {_first_line(str(error))}){_reaper_hint()}"
            raise self._fail(reason) from error
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
        container_id = self.id
        _engine_call(f"could not kill the {self.name} container", lambda: engine().api.kill(container_id, signal=signal))
        self._host_port = None

    def start_again(self) -> None:
        """Start the killed or stopped container again and wait until it answers."""
        container_id = self.id
        _engine_call(f"could not start the {self.name} container again", lambda: engine().api.start(container_id))
        self._host_port = None
        self.wait_ready()

    def restart(self, signal: str = "KILL") -> None:
        """Kill it, start it again, wait until it answers: what its store kept is what it has."""
        self.kill(signal)
        self.start_again()

    def replace(self, signal: str = "KILL") -> None:
        """Kill it, remove it, and start a new container from the same image and command on the
        same volumes, then wait until it answers: what the volumes hold is all it has."""
        self.kill(signal)
        self.remove()
        self.start()

    def pause(self) -> None:
        """Freeze every process in it: connections are accepted, nothing is answered."""
        container_id = self.id
        _engine_call(f"could not pause the {self.name} container", lambda: engine().api.pause(container_id))
        self.paused = True

    def unpause(self) -> None:
        container_id = self.id
        _engine_call(f"could not unpause the {self.name} container", lambda: engine().api.unpause(container_id))
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
        import docker.errors

        container_id = self._created()
        if container_id is None:
            return "not created"
        try:
            return str(engine().api.inspect_container(container_id)["State"]["Status"])
        except docker.errors.NotFound:
            return "gone"

    def _state(self) -> str:
        return f"the container is {self._status()}"

    def logs_tail(self, lines: int = 20) -> str:
        container_id = self._created()
        if container_id is None:
            return ""
        output = _engine_call(
            f"could not read the output of the {self.name} container", lambda: engine().api.logs(container_id, tail=lines)
        )
        return bytes(output).decode("utf-8", "replace").strip()

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
        where = self._published.url(self._host_port) if self._container is not None and self._host_port is not None else "not running"
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
        #: Where the engine publishes the session's ports, and where this process reaches them.
        self.published = published()
        self._network: Network | None = None
        self._services: dict[str, ServiceContainer] = {}
        self._participants: dict[str, ContainerParticipant] = {}
        self._images: list[str] = []
        self._volumes: list[str] = []
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

    def volume(self, name: str) -> str:
        """A named volume of the session (created, labelled, on first use; removed with the
        session): its name in the engine."""
        full = f"saga-verify-{self.id}-{name}"
        with self._lock:
            if full not in self._volumes:
                _engine_call(f"could not create the volume {full}", lambda: engine().api.create_volume(name=full, labels=self.labels))
                self._volumes.append(full)
        return full

    @property
    def services(self) -> Mapping[str, ServiceContainer]:
        return dict(self._services)

    def gateway(self) -> str:
        """The address of this machine on the session's network: containers reach what listens
        there (the fault proxies), and so does this process."""
        if self._gateway is None:
            network = self.network()
            found = _engine_call(f"could not inspect the network {network.name}", lambda: engine().api.inspect_network(network.name))
            gateways = [config["Gateway"] for config in (found.get("IPAM") or {}).get("Config") or [] if config.get("Gateway")]
            if not gateways:
                raise ContainerEngineError(f"the network {network.name} has no gateway address: {found.get('IPAM')}")
            self._gateway = str(gateways[0])
        return self._gateway

    def build(
        self,
        dockerfile: str | os.PathLike[str],
        context: str | os.PathLike[str] | None = None,
        build_args: Mapping[str, str] | None = None,
    ) -> str:
        """Build an image from ``dockerfile`` (its folder is the context unless ``context`` is
        given; ``build_args`` for its ``ARG``s), labelled with the session and removed with it; its tag."""
        path = Path(dockerfile)
        if not path.is_file():
            raise ContainerStartError(f"Dockerfile {path} does not exist")
        tag = f"saga-verify/participant-{self.id}:{len(self._images) + 1}"
        where = Path(context) if context is not None else path.parent
        if not where.is_dir():
            raise ContainerStartError(f"the build context {where} of {path} is not a folder")
        built = build_image(where, path, tag, buildargs=build_args, labels=self.labels)
        if built.error is not None:
            raise ContainerStartError(
                f"the image of {path} could not be built at {built.failed_step()}: {built.error}\n{built.tail(15)}"
            )
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

            gateway = self.gateway()
            try:
                proxy = FaultProxy(container.url, decide, host=gateway).start()
            except OSError as error:
                raise ContainerStartError(
                    f"the fault proxy of {name} cannot listen on {gateway}, the address of this machine on the "
                    f"session's network ({error}): proxies in front of containers need an engine on this machine"
                ) from error
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
        volumes: Mapping[str, str] | None = None,
    ) -> ServiceContainer:
        """Start ``image`` as the service ``name`` (its network alias), and wait until it answers.
        ``volumes`` maps a short name to a path in the container: the session's named volume
        ``<name>-<short name>`` is mounted there (a new one empty, with what the image holds at
        that path)."""
        if self.closed:
            raise ContainerStartError(f"session {self.id} is closed")
        if name in self._services:
            raise ContainerStartError(f"session {self.id} runs a service named {name!r} already")
        service = ServiceContainer(
            self, name, image, command, port=port, env=env, ready_path=ready_path, ready_timeout=ready_timeout, volumes=volumes
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
            with contextlib.suppress(ContainerEngineError):  # the engine is gone: nothing to remove it from
                _removed(engine().api.remove_image, tag, force=True)
        self._images.clear()
        for volume in self._volumes:
            with contextlib.suppress(ContainerEngineError):
                _removed(engine().api.remove_volume, volume, force=True)
        self._volumes.clear()
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
        """The container itself, where the engine publishes it, with no proxy in between."""
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
    owner_filter = {"label": OWNER_LABEL}
    try:
        api = engine().api
        labelled = [
            *_engine_call("could not list containers", lambda: api.containers(all=True, filters=owner_filter)),
            *_engine_call("could not list networks", lambda: api.networks(filters=owner_filter)),
            *((_engine_call("could not list volumes", lambda: api.volumes(filters=owner_filter)) or {}).get("Volumes") or []),
        ]
    except ContainerEngineError:
        return []
    found = set()
    for item in labelled:
        labels = item.get("Labels") or {}
        session, owner = labels.get(SESSION_LABEL, ""), labels.get(OWNER_LABEL, "")
        owner_host, _, pid = owner.rpartition(":")
        if session and owner_host == host and pid.isdigit() and not _alive(int(pid)):
            found.add(session)
    for session in sorted(found):
        remove_session(session)
    return sorted(found)


def session_leftovers(session_id: str) -> dict[str, list[str]]:
    """The containers, networks, images and volumes in the engine labelled with ``session_id``."""
    api = engine().api
    label = {"label": f"{SESSION_LABEL}={session_id}"}
    volumes = _engine_call("could not list volumes", lambda: api.volumes(filters=label))
    return {
        "containers": [c["Id"] for c in _engine_call("could not list containers", lambda: api.containers(all=True, filters=label))],
        "networks": [n["Id"] for n in _engine_call("could not list networks", lambda: api.networks(filters=label))],
        "images": list(_engine_call("could not list images", lambda: api.images(all=True, quiet=True, filters=label))),
        "volumes": [v["Name"] for v in (volumes or {}).get("Volumes") or []],
    }


def remove_session(session_id: str) -> dict[str, list[str]]:
    """Remove every container, network, image and volume labelled with ``session_id``; what is left
    (nothing, unless the engine refused)."""
    try:
        api = engine().api
        found = session_leftovers(session_id)
        # What the engine refuses to remove (a network still in use) is reported as left.
        for container in found["containers"]:
            _removed(api.remove_container, container, force=True, v=True)
        for network in found["networks"]:
            _removed(api.remove_network, network)
        for volume in found["volumes"]:
            _removed(api.remove_volume, volume, force=True)
        # A labelled image's build steps carry the label too, and a child goes before its
        # parent: remove what can be removed until nothing more can.
        images = list(dict.fromkeys(found["images"]))
        while images:
            kept = [image for image in images if not _removed(api.remove_image, image, force=True)]
            if len(kept) == len(images):
                break
            images = kept
        return session_leftovers(session_id)
    except ContainerEngineError:
        return {"containers": [], "networks": [], "images": [], "volumes": []}


def _removed(remove: Callable[..., object], *args: object, **options: object) -> bool:
    """Whether ``remove(*args, **options)`` left the thing gone (removed now, or already)."""
    import docker.errors

    try:
        remove(*args, **options)
    except docker.errors.NotFound:
        return True
    except docker.errors.DockerException:
        return False
    return True
