"""Services in containers (testcontainers, a private network, published on 127.0.0.1): they answer,
reach each other by name, keep their store across a kill and a restart (at a new port), freeze
when paused, and a session leaves nothing behind, also when a service never becomes ready."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from engine_guard import docker, leftovers

from saga_verify.containers import ServiceImage
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
    published = docker("port", payment.id, "8000/tcp")
    assert published.strip().startswith("127.0.0.1:"), published
    # Another container on the session's network reaches it by its name.
    probe = docker(
        "run", "--rm", "--network", session.network().name, "--label", f"saga-verify.session={session.id}",
        "--entrypoint", "python3", service_image.tag, "-c",
        "import urllib.request; print(urllib.request.urlopen('http://payment:8000/health').read().decode())",
    )  # fmt: skip
    assert '"service":"payment"' in probe


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
        started = time.monotonic()
        with pytest.raises(ContainerStartError) as caught:
            # It listens on 8001, so nothing ever answers on 8000.
            session.start("payment", *serve(service_image, "payment")[:1], ["--service", "payment", "--host", "0.0.0.0", "--port", "8001"], ready_timeout=3)
        assert time.monotonic() - started < 20
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
        started = time.monotonic()
        with pytest.raises(ContainerStartError) as caught:
            session.start("payment", "saga-verify/no-such-image:missing")
        assert time.monotonic() - started < 30
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
