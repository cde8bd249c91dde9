"""Services in containers (testcontainers, a private network, published on 127.0.0.1): they answer,
reach each other by name, keep their store across a kill and a restart (at a new port), freeze
when paused, and a session leaves nothing behind, also when a service never becomes ready."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator

import httpx
import pytest
from engine_guard import api, leftovers

from saga_verify.containers import ServiceImage
from saga_verify.containers._engine import Published, engine
from saga_verify.containers._services import ContainerSession, ContainerStartError

pytestmark = pytest.mark.slow


def serve(image: ServiceImage, service: str, *extra: str) -> tuple[str, list[str]]:
    return image.tag, ["--service", service, "--host", "0.0.0.0", "--port", "8000", "--inspect", *extra]


@pytest.fixture
def session(service_image: ServiceImage) -> Iterator[ContainerSession]:
    with ContainerSession() as made:
        yield made
    assert not any(leftovers(made.id).values()), leftovers(made.id)


def test_a_service_answers_on_loopback_and_by_name_on_the_network(session: ContainerSession, service_image: ServiceImage) -> None:
    payment = session.start("payment", *serve(service_image, "payment"))
    assert payment.url.startswith("http://127.0.0.1:")
    assert httpx.get(f"{payment.url}/health").json() == {"status": "ok", "service": "payment"}
    [published] = api().port(payment.id, 8000)
    assert published["HostIp"] == "127.0.0.1", published
    # Another container on the session's network reaches it by its name.
    probe = engine().containers.run(
        service_image.tag,
        ["-c", "import urllib.request; print(urllib.request.urlopen('http://payment:8000/health').read().decode())"],
        entrypoint="python3",
        network=session.network().name,
        labels={"saga-verify.session": session.id},
        remove=True,
    )
    assert '"service":"payment"' in probe.decode()


def test_a_killed_service_comes_back_with_what_its_store_kept(session: ContainerSession, service_image: ServiceImage) -> None:
    payment = session.start("payment", *serve(service_image, "payment", "--store", "/data/payment.sqlite"))
    charge = {"order_id": "o-1", "amount": 100}
    first = httpx.post(f"{payment.url}/charges", json=charge, headers={"Idempotency-Key": "o-1:charge"})
    assert first.status_code == 201
    port = payment.host_port
    payment.restart()
    assert payment.host_port != port or payment.url  # the engine may publish it elsewhere: read again
    again = httpx.post(f"{payment.url}/charges", json=charge, headers={"Idempotency-Key": "o-1:charge"})
    assert (again.json(), again.headers["Idempotency-Replayed"]) == (first.json(), "true")
    assert [row["action"] for row in httpx.get(f"{payment.url}/_inspect/ledger").json()] == ["charge"]


def test_a_paused_service_accepts_but_does_not_answer(session: ContainerSession, service_image: ServiceImage) -> None:
    inventory = session.start("inventory", *serve(service_image, "inventory"))
    inventory.pause()
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(f"{inventory.url}/health", timeout=0.5)
    inventory.unpause()
    assert httpx.get(f"{inventory.url}/health", timeout=5).status_code == 200


def test_a_service_that_never_answers_is_named_and_removed(service_image: ServiceImage) -> None:
    with ContainerSession() as session:
        with pytest.raises(ContainerStartError) as caught:
            # It listens on 8001, so nothing ever answers on 8000.
            session.start("payment", *serve(service_image, "payment")[:1], ["--service", "payment", "--host", "0.0.0.0", "--port", "8001"], ready_timeout=3)
        message = str(caught.value)
        assert "the payment service (image saga-verify/services:" in message
        assert "did not answer GET /health within 3 s" in message
        assert leftovers(session.id)["containers"] == []
    assert not any(leftovers(session.id).values())


def test_a_service_that_exits_is_named_with_its_output(service_image: ServiceImage) -> None:
    with ContainerSession() as session, pytest.raises(ContainerStartError) as caught:
        session.start("payment", service_image.tag, ["--service", "billing"], ready_timeout=20)
    message = str(caught.value)
    assert "the payment service" in message
    assert "stopped (exited) before its service answered GET /health" in message
    assert "invalid choice: 'billing'" in message


def test_an_image_that_does_not_exist_is_named_and_nothing_is_left(docker_engine: None) -> None:
    with ContainerSession() as session:
        with pytest.raises(ContainerStartError) as caught:
            session.start("payment", "saga-verify/no-such-image:missing")
        assert "image saga-verify/no-such-image:missing" in str(caught.value)
        assert "could not be started" in str(caught.value)
    assert not any(leftovers(session.id).values())


def test_when_one_of_several_fails_the_others_are_removed(service_image: ServiceImage) -> None:
    with ContainerSession() as session:
        with pytest.raises(ContainerStartError):
            session.start_all(
                {"inventory": serve(service_image, "inventory"), "payment": (service_image.tag, ["--service", "nope"])},
                ready_timeout=20,
            )
        assert session.services == {}
        assert leftovers(session.id)["containers"] == []


def test_what_a_killed_run_left_is_removed_by_the_next_session(service_image: ServiceImage, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A run killed with SIGKILL cannot clean up; its containers and network carry its process,
    and the next session on this machine removes them."""
    import subprocess
    import sys

    script = tmp_path / "killed_run.py"
    script.write_text(
        "import os, signal, sys\n"
        "from saga_verify.containers import ContainerSession\n"
        "session = ContainerSession()\n"
        f"session.start('payment', {service_image.tag!r}, ['--service', 'payment', '--host', '0.0.0.0', '--port', '8000'])\n"
        "print(session.id, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == -9, run.stderr
    orphan = run.stdout.strip()
    assert len(leftovers(orphan)["containers"]) == 1  # killed: nothing removed it
    with ContainerSession():
        assert not any(leftovers(orphan).values())


def test_starting_a_service_leaves_the_environment_as_it_was(
    session: ContainerSession, service_image: ServiceImage, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The settings this machine's tests give testcontainers are the test set-up's, not the
    # library's: without them in the environment, the library must not add them.
    monkeypatch.delenv("TESTCONTAINERS_CONNECTION_MODE", raising=False)
    monkeypatch.delenv("TC_HOST", raising=False)
    before = dict(os.environ)
    payment = session.start("payment", *serve(service_image, "payment"))
    assert httpx.get(f"{payment.url}/health").status_code == 200
    assert dict(os.environ) == before


class _EngineOverTcp:
    """The engine's unix socket served on a TCP address of this machine, as a remote engine is
    reached: each connection is piped to the socket."""

    def __init__(self, socket_path: str, host: str) -> None:
        self.socket_path = socket_path
        self._listener = socket.create_server((host, 0))
        self.url = f"tcp://{host}:{self._listener.getsockname()[1]}"
        self._sockets: list[socket.socket] = []
        self._pipes: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            engine_side = socket.socket(socket.AF_UNIX)
            self._sockets += [client, engine_side]
            engine_side.connect(self.socket_path)
            for source, target in ((client, engine_side), (engine_side, client)):
                pipe = threading.Thread(target=self._pipe, args=(source, target), daemon=True)
                self._pipes.append(pipe)
                pipe.start()

    @staticmethod
    def _pipe(source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                target.sendall(data)
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() that waits
        self._listener.close()
        self._accepting.join(5)
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for pipe in self._pipes:
            pipe.join(5)
        for sock in self._sockets:
            sock.close()


def test_an_engine_reached_over_tcp_publishes_where_it_is_reached(service_image: ServiceImage, monkeypatch: pytest.MonkeyPatch) -> None:
    """DOCKER_HOST names the engine for everything the library does, and its ports are reached at
    the host DOCKER_HOST names (here a second loopback address of this machine), not at a host
    this machine's settings name."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        pytest.skip(f"this test serves a local engine's unix socket over TCP; DOCKER_HOST is {host}")
    forwarder = _EngineOverTcp(host.removeprefix("unix://"), "127.0.0.2")
    try:
        monkeypatch.setenv("DOCKER_HOST", forwarder.url)
        with ContainerSession() as session:
            assert session.published == Published("127.0.0.2", "127.0.0.2")
            payment = session.start("payment", *serve(service_image, "payment"))
            assert payment.url.startswith("http://127.0.0.2:")
            assert httpx.get(f"{payment.url}/health").json() == {"status": "ok", "service": "payment"}
            [binding] = api().port(payment.id, 8000)
            assert binding["HostIp"] == "127.0.0.2"
        assert not any(leftovers(session.id).values())
    finally:
        forwarder.close()
