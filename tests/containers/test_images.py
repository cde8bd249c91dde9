"""The services image: built without a registry from this checkout, reused while nothing it is made
of has changed, able to run any reference service by its arguments, and, when a step fails, an
error that names the step. Building it from cold takes a minute or more (a Debian base image by
debootstrap, a wheelhouse, the image), so the tests that need it are slow."""

from __future__ import annotations

import io
import tarfile
import time
from typing import Any

import httpx
import pytest
from engine_guard import api

from saga_verify.containers import SERVICE_PORT, SESSION_LABEL, ImageBuildError, ServiceImage, ensure_service_image
from saga_verify.containers._images import BASE_ENV, IMAGE_REPOSITORY, ensure_wheelhouse


def _health(url: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            reply = httpx.get(url, timeout=2.0)
            if reply.status_code == 200:
                return reply.json()
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} did not answer within {timeout:g} s")
        time.sleep(0.1)


def test_a_base_image_that_does_not_exist_is_named(docker_engine: None) -> None:
    name = "saga-verify/no-such-base:missing"
    with pytest.raises(ImageBuildError) as caught:
        ensure_service_image(base=name)
    assert name in caught.value.step
    assert f"{name!r}" in str(caught.value)
    assert "cannot be pulled" in str(caught.value)
    assert f"{BASE_ENV}=local" in str(caught.value)


@pytest.mark.slow
def test_the_image_is_built_once_then_reused(service_image: ServiceImage) -> None:
    again = ensure_service_image()
    assert again.tag == service_image.tag
    assert again.tag.startswith(f"{IMAGE_REPOSITORY}:")
    assert again.id == service_image.id
    assert not again.built
    assert api().inspect_image(again.tag)["Config"]["Labels"]["saga-verify.image"] == "services"


@pytest.mark.slow
def test_the_wheelhouse_is_reused(service_image: ServiceImage) -> None:
    wheelhouse, made = ensure_wheelhouse()
    assert (wheelhouse, made) == (service_image.wheelhouse, False)
    [app] = (wheelhouse / "app").iterdir()
    assert app.name.startswith("saga_verify-")
    deps = {wheel.name.split("-")[0].lower() for wheel in (wheelhouse / "deps").glob("*.whl")}
    assert {"fastapi", "uvicorn", "pydantic", "pydantic_core", "httpx", "hypothesis"} <= deps
    assert "saga_verify" not in deps
    assert all("cp311" in wheel.name for wheel in (wheelhouse / "deps").glob("pydantic_core-*.whl"))


@pytest.fixture(scope="module")
def docker_container() -> Any:
    """testcontainers' DockerContainer, configured for the engine on this machine by the root
    conftest (no Ryuk; ports on 127.0.0.1 although this machine has /.dockerenv)."""
    from testcontainers.core.container import DockerContainer

    return DockerContainer


@pytest.mark.slow
def test_a_service_runs_from_the_image(service_image: ServiceImage, session_labels: dict[str, str], docker_container: Any) -> None:
    container = (
        docker_container(service_image.tag)
        .with_command(["--service", "payment", "--host", "0.0.0.0", "--port", str(SERVICE_PORT), "--inspect"])
        .with_exposed_ports(SERVICE_PORT)
        .with_kwargs(labels=session_labels)
    )
    with container:
        url = f"http://{container.get_container_host_ip()}:{container.get_exposed_port(SERVICE_PORT)}"
        assert _health(f"{url}/health")["service"] == "payment"
        assert httpx.get(f"{url}/_inspect/ledger", timeout=5.0).status_code == 200
        code, output = container.exec(["id", "-u"])
        assert (code, output.decode().strip()) == (0, "10001")
        stdout, _ = container.get_logs()
        assert stdout.decode().startswith("listening on http://0.0.0.0:8000")


@pytest.mark.slow
def test_services_on_one_network_reach_each_other_by_alias(service_image: ServiceImage, session_labels: dict[str, str]) -> None:
    engine = api()
    network = f"saga-verify-test-{session_labels[SESSION_LABEL]}"
    engine.create_network(network, labels=session_labels)
    started: list[str] = []
    try:
        for service in ("payment", "inventory"):
            container = engine.create_container(
                service_image.tag,
                ["--service", service, "--host", "0.0.0.0", "--port", str(SERVICE_PORT)],
                labels=session_labels,
                ports=[SERVICE_PORT],
                host_config=engine.create_host_config(port_bindings={SERVICE_PORT: ("127.0.0.1", None)}),
                networking_config=engine.create_networking_config({network: engine.create_endpoint_config(aliases=[service])}),
            )
            started.append(container["Id"])
            engine.start(container["Id"])
        for container_id, service in zip(started, ("payment", "inventory"), strict=True):
            [published] = engine.port(container_id, SERVICE_PORT)
            assert published["HostIp"] == "127.0.0.1"
            assert _health(f"http://127.0.0.1:{published['HostPort']}/health")["service"] == service
        fetch = f"import urllib.request; print(urllib.request.urlopen('http://payment:{SERVICE_PORT}/health', timeout=10).read().decode())"
        run = engine.exec_create(started[1], ["python", "-c", fetch])
        assert '"service":"payment"' in engine.exec_start(run["Id"]).decode()
        assert engine.exec_inspect(run["Id"])["ExitCode"] == 0
    finally:
        for container_id in started:
            engine.remove_container(container_id, force=True)
        engine.remove_network(network)


@pytest.mark.slow
def test_a_failing_dockerfile_step_is_named(service_image: ServiceImage, session_labels: dict[str, str]) -> None:
    # A base image without a shell, let alone python3: the first RUN fails.
    empty = io.BytesIO()
    with tarfile.open(fileobj=empty, mode="w"):
        pass
    base = f"saga-verify/test-empty:{session_labels[SESSION_LABEL]}"
    label = next(f"LABEL {key}={value}" for key, value in session_labels.items())
    repository, _, tag = base.partition(":")
    api().import_image_from_data(empty.getvalue(), repository=repository, tag=tag, changes=[label])
    with pytest.raises(ImageBuildError) as caught:
        ensure_service_image(base=base)
    step = caught.value.step
    assert step.startswith("Dockerfile step")
    assert "RUN python3 -m venv" in step
    assert base in str(caught.value)
    assert "/bin/sh" in caught.value.output
    assert caught.value.log is not None
    assert caught.value.log.is_file()
