"""The contract checks against the services as they ship, in containers: Pact provider verification
(HTTP and message pacts), Schemathesis conformance and the Idempotency-Key check, each through the
fault proxy in front of the container, as the ``saga_containers`` fixture hands them out. And a
user's own image, built from a Dockerfile, checked the same way."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from saga_verify.containers import ContainerSession, ServiceImage
from saga_verify.contracts import IdempotentOperation, check_conformance, check_idempotency, verify_provider
from saga_verify.reference.services._event_producers import event_producer
from saga_verify.reference.services._provider_states import provider_states

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PACTS = ROOT / "contracts" / "pacts"
OPENAPI = ROOT / "contracts" / "openapi"


def command(service: str) -> list[str]:
    return ["--service", service, "--host", "0.0.0.0", "--port", "8000", "--inspect", "--store", f"/data/{service}.sqlite"]


@pytest.mark.parametrize("service", ["inventory", "payment", "shipping", "notification"])
def test_each_service_in_its_container_honours_its_pacts(saga_containers: ContainerSession, service_image: ServiceImage, service: str) -> None:
    participant = saga_containers.participant(service, service_image.tag, command(service))
    with httpx.Client(base_url=participant.url) as client:
        result = verify_provider(service, participant.url, PACTS, provider_states(service), messages=event_producer(service, client))
    assert result.failures == ()
    assert {p.name for p in result.pact_files} == {f"order-{service}.json", f"audit-{service}.json"}
    # Every request went through the proxy in front of the container.
    assert len(participant.proxy.records) >= len(result.interactions)


def test_a_service_in_its_container_conforms_to_its_openapi_contract(saga_containers: ContainerSession, service_image: ServiceImage) -> None:
    payment = saga_containers.participant("payment", service_image.tag, command("payment"))
    result = check_conformance(OPENAPI / "payment.yaml", payment.url, max_examples=10, seed=0, strict_integers=True)
    assert result.ok, result.report()
    assert result.target == payment.url
    assert result.transitions["POST /charges -> [201] Refund -> POST /refunds"] >= 1, result.transitions


def test_a_service_in_its_container_keeps_the_idempotency_key_rules(saga_containers: ContainerSession, service_image: ServiceImage) -> None:
    payment = saga_containers.participant("payment", service_image.tag, command("payment"))
    result = check_idempotency(
        payment.url,
        [
            IdempotentOperation("POST", "/charges", {"order_id": "o-1", "amount": 100}),
            IdempotentOperation("POST", "/refunds", {"charge_key": "k-1"}, compensation=True),
        ],
        replay_header="Idempotency-Replayed",
    )
    assert result.ok


def test_a_users_image_built_from_a_dockerfile_is_verified_through_its_proxy(
    saga_containers: ContainerSession, service_image: ServiceImage, tmp_path: Path
) -> None:
    dockerfile = tmp_path / "Dockerfile"
    # A user's payment service: here, the reference one on another port, in an image of its own.
    dockerfile.write_text(
        f"FROM {service_image.tag}\n"
        'CMD ["--service", "payment", "--host", "0.0.0.0", "--port", "9090", "--inspect"]\n'
    )
    payment = saga_containers.participant("payment", dockerfile=dockerfile, port=9090)
    assert payment.container.image.startswith(f"saga-verify/participant-{saga_containers.id}:")
    result = verify_provider("payment", payment.url, PACTS / "order-payment.json", provider_states("payment"))
    assert result.failures == ()
    # The proxy takes faults too: the first request after this is answered by nobody.
    from saga_verify.proxy import DropRequest, scripted

    payment.proxy.decide = scripted({len(payment.proxy.records) + 1: DropRequest()})
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(f"{payment.url}/health", timeout=5)
    assert httpx.get(f"{payment.url}/health", timeout=5).status_code == 200


def test_a_dockerfile_that_does_not_build_is_named(saga_containers: ContainerSession, tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM saga-verify/base:no-such-tag\n")
    with pytest.raises(Exception) as caught:
        saga_containers.participant("payment", dockerfile=dockerfile)
    assert f"the image of {dockerfile} could not be built" in str(caught.value)
    assert "no-such-tag" in str(caught.value)
    assert saga_containers.services == {}
