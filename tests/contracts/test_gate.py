"""The gate: a version may go to an environment only when every pact between it and what runs
there, in both directions, was verified successfully by the provider version in question; it
names each blocking pair and why, and unknown means no."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any

import pytest

from saga_verify.contracts import ContractStore, UnknownError, can_i_deploy

PACTS = Path(__file__).resolve().parents[2] / "contracts" / "pacts"


def pact(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((PACTS / f"{name}.json").read_text())
    return document


@pytest.fixture
def store(tmp_path: Path) -> Any:
    """order 1.0.0 (with pacts for payment and shipping) and payment 1.0.0 run in production."""
    with ContractStore.open(tmp_path / "contracts.db") as opened:
        opened.publish_pact(pact("order-payment"), "1.0.0", branch="main")
        opened.publish_pact(pact("order-shipping"), "1.0.0", branch="main")
        opened.add_version("payment", "1.0.0", branch="main")
        opened.create_environment("production", production=True)
        opened.record_deployment("order", "1.0.0", "production")
        opened.record_deployment("payment", "1.0.0", "production")
        verify(opened, "order", "1.0.0", "payment", "1.0.0", success=True)
        yield opened


def verify(store: ContractStore, consumer: str, consumer_version: str, provider: str, version: str, **result: Any) -> None:
    sha = store.pact(consumer, consumer_version, provider).sha
    store.record_verification(consumer, provider, sha, version, **result)


def test_a_provider_version_that_verified_every_deployed_consumer_may_go(store: ContractStore) -> None:
    store.add_version("payment", "1.1.0")
    verify(store, "order", "1.0.0", "payment", "1.1.0", success=True)
    decision = can_i_deploy(store, "payment", "1.1.0", "production")
    assert decision.deployable
    assert [(p.title, p.status) for p in decision.pairs] == [("order 1.0.0 -> payment 1.1.0", "verified")]
    assert decision.report().startswith("can payment 1.1.0 be deployed to production? yes\n")


def test_a_provider_version_never_verified_may_not_go(store: ContractStore) -> None:
    store.add_version("payment", "2.0.0")
    decision = can_i_deploy(store, "payment", "2.0.0", "production")
    assert not decision.deployable
    [pair] = decision.blocking
    assert pair.status == "never verified"
    assert "BLOCKS  order 1.0.0 -> payment 2.0.0: never verified: payment 2.0.0 has published no verification result" in decision.report()


def test_a_failed_verification_blocks_naming_the_interactions(store: ContractStore) -> None:
    results = [
        {"interactionId": "a", "interactionDescription": "a charge", "success": False},
        {"interactionId": "b", "interactionDescription": "a refund of a charge", "success": True},
    ]
    verify(store, "order", "1.0.0", "payment", "2.0.0", success=False, results=results)
    decision = can_i_deploy(store, "payment", "2.0.0", "production")
    [pair] = decision.blocking
    assert pair.status == "failed"
    assert pair.why() == "failed: payment 2.0.0 does not honour the pact: 'a charge' failed"


def test_a_failure_while_pending_blocks_as_pending(store: ContractStore) -> None:
    verify(store, "order", "1.0.0", "payment", "2.0.0", success=False, pending=True)
    [pair] = can_i_deploy(store, "payment", "2.0.0", "production").blocking
    assert pair.status == "pending"
    assert pair.why().startswith("pending: payment 2.0.0 failed the pact while it was pending")


def test_the_newest_result_of_a_provider_version_decides(store: ContractStore) -> None:
    verify(store, "order", "1.0.0", "payment", "2.0.0", success=False)
    verify(store, "order", "1.0.0", "payment", "2.0.0", success=True)
    assert can_i_deploy(store, "payment", "2.0.0", "production").deployable
    verify(store, "order", "1.0.0", "payment", "2.0.0", success=False)
    assert not can_i_deploy(store, "payment", "2.0.0", "production").deployable


def test_a_consumer_version_needs_its_pacts_verified_by_what_runs_there(store: ContractStore) -> None:
    store.publish_pact(pact("order-payment"), "1.1.0")  # the same expectations: verified already
    store.publish_pact(pact("order-shipping"), "1.1.0")
    decision = can_i_deploy(store, "order", "1.1.0", "production")
    assert decision.deployable
    assert [p.title for p in decision.pairs] == ["order 1.1.0 -> payment 1.0.0"]
    # Shipping does not run there: nothing to weigh, and the answer says so.
    assert decision.notices == (
        "no version of shipping is deployed in production: the pact order 1.1.0 has with it was not weighed "
        "(deploy shipping first)",
    )
    changed = pact("order-payment")
    changed["interactions"][0]["response"]["status"] = 200
    store.publish_pact(changed, "1.2.0")
    [pair] = can_i_deploy(store, "order", "1.2.0", "production").blocking
    assert (pair.title, pair.status) == ("order 1.2.0 -> payment 1.0.0", "never verified")


def test_both_directions_count_and_the_version_it_replaces_does_not(store: ContractStore) -> None:
    # payment 2.0.0 is both a provider (to order) and a consumer (of notification).
    store.publish_pact({**pact("order-notification"), "consumer": {"name": "payment"}}, "2.0.0")
    store.add_version("notification", "1.0.0")
    store.record_deployment("notification", "1.0.0", "production")
    verify(store, "order", "1.0.0", "payment", "2.0.0", success=True)
    decision = can_i_deploy(store, "payment", "2.0.0", "production")
    assert {(p.title, p.status) for p in decision.pairs} == {
        ("order 1.0.0 -> payment 2.0.0", "verified"),
        ("payment 2.0.0 -> notification 1.0.0", "never verified"),
    }
    assert not decision.deployable
    # The payment version deployed now is the one being replaced: never weighed against itself.
    assert all("payment 1.0.0" not in p.title for p in decision.pairs)


def test_a_version_with_no_pact_to_anything_there_may_go(store: ContractStore) -> None:
    store.add_version("inventory", "1.0.0")
    decision = can_i_deploy(store, "inventory", "1.0.0", "production")
    assert decision.deployable
    assert "no pact links it to what runs there" in decision.report()


def test_unknown_participants_versions_and_environments_are_errors_not_answers(store: ContractStore) -> None:
    with pytest.raises(UnknownError, match="no participant 'paymnet'"):
        can_i_deploy(store, "paymnet", "1.0.0", "production")
    with pytest.raises(UnknownError, match=r"no version '9\.9' of 'payment'"):
        can_i_deploy(store, "payment", "9.9", "production")
    with pytest.raises(UnknownError, match="no environment 'prod'"):
        can_i_deploy(store, "payment", "1.0.0", "prod")


def test_the_answer_as_json_and_junit(store: ContractStore) -> None:
    verify(store, "order", "1.0.0", "payment", "2.0.0", success=False, results=[{"interactionDescription": "a charge", "success": False}])
    decision = can_i_deploy(store, "payment", "2.0.0", "production")
    data = decision.to_json()
    assert data["deployable"] is False
    assert data["pairs"][0]["status"] == "failed"
    assert data["pairs"][0]["failed_interactions"] == ["a charge"]
    suite = ElementTree.fromstring(decision.junit().split("\n", 1)[1])
    assert suite.get("tests") == "2"
    assert suite.get("failures") == "2"
    cases = {c.get("name"): c.find("failure") for c in suite.iter("testcase")}
    failure = cases["order 1.0.0 -> payment 2.0.0"]
    assert failure is not None
    assert failure.get("message") == "failed"
    assert "'a charge' failed" in (failure.text or "")
