"""The contract store served with the Pact Broker API, driven by the official clients unchanged:
the ``pact broker`` CLI of pact-python-cli (publish, create-environment, record-deployment,
can-i-deploy) and pact-python's own ``Verifier`` (pacts for verification with selectors, pending
and WIP pacts, publishing results). And bad requests get a 4xx that says why, never a 5xx."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from saga_verify._world._asgi import SyncASGITransport
from saga_verify.contracts import (
    BrokerSource,
    ContractStore,
    ProviderVerificationError,
    PublishResults,
    can_i_deploy,
    serve_store,
    verify_provider,
)
from saga_verify.contracts._broker_client import pact_cli
from saga_verify.reference.services import create_app
from saga_verify.reference.services._event_producers import event_producer
from saga_verify.reference.services._provider_states import provider_states

ROOT = Path(__file__).resolve().parents[2]
PACTS = ROOT / "contracts" / "pacts"


def fixture_module() -> ModuleType:
    """fixtures/contracts/payment_versions.py: payment 1.1.0 (additive) and 2.0.0 (breaking)."""
    spec = importlib.util.spec_from_file_location("payment_versions", ROOT / "fixtures" / "contracts" / "payment_versions.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[ContractStore, str]]:
    with ContractStore.open(tmp_path / "contracts.db") as store, serve_store(store) as url:
        yield store, url


def pact(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The official ``pact broker`` CLI against the served store."""
    return subprocess.run(
        [pact_cli(), "broker", *args, "--broker-base-url", url, "--retries", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PACT_DO_NOT_TRACK": "true"},
    )


def ok(run: subprocess.CompletedProcess[str]) -> str:
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


def verify_payment(url: str, version: str, app: Any = None, **source: Any) -> Any:
    """pact-python's Verifier against the served store, results published as payment ``version``."""
    app = app or create_app("payment", inspect=True)
    with httpx.Client(transport=SyncASGITransport(app), base_url="http://payment") as client:
        return verify_provider(
            "payment",
            app,
            BrokerSource(url, provider_branch="main", **source),
            provider_states("payment"),
            messages=event_producer("payment", client),
            publish=PublishResults(version, branch="main"),
        )


def test_the_pact_cli_publishes_into_the_store(served: tuple[ContractStore, str]) -> None:
    store, url = served
    out = ok(pact(url, "publish", str(PACTS / "order-payment.json"), str(PACTS / "order-shipping.json"),
                  "--consumer-app-version", "1.0.0", "--branch", "main", "--tag", "rc"))  # fmt: skip
    assert "Pact between order (1.0.0) and payment published" in out
    version = store.version("order", "1.0.0")
    assert (version.branches, version.tags) == (("main",), ("rc",))
    [payment, shipping] = store.pacts_of("order", "1.0.0")
    written = json.loads((PACTS / "order-payment.json").read_text())
    assert payment.provider == "payment"
    assert [i["description"] for i in payment.content["interactions"]] == [i["description"] for i in written["interactions"]]
    assert shipping.provider == "shipping"


def test_the_pact_cli_creates_environments_and_records_deployments_and_releases(served: tuple[ContractStore, str]) -> None:
    store, url = served
    store.add_version("payment", "1.0.0")
    assert "Created production environment" in ok(pact(url, "create-environment", "--name", "production", "--production"))
    assert store.environment("production").production
    assert "Recorded deployment of payment version 1.0.0 to production" in ok(
        pact(url, "record-deployment", "--pacticipant", "payment", "--version", "1.0.0", "--environment", "production")
    )
    assert [(d.pacticipant, d.version) for d in store.deployed("production")] == [("payment", "1.0.0")]
    refused = pact(url, "record-deployment", "--pacticipant", "payment", "--version", "1.0.0", "--environment", "staging")
    assert refused.returncode != 0
    assert "Environment staging does not exist" in refused.stdout
    ok(pact(url, "create-environment", "--name", "app-store"))
    assert "Recorded release of payment version 1.0.0 to app-store" in ok(
        pact(url, "record-release", "--pacticipant", "payment", "--version", "1.0.0", "--environment", "app-store")
    )
    assert [(d.version, d.kind) for d in store.deployed("app-store")] == [("1.0.0", "released")]
    twice = pact(url, "create-environment", "--name", "production")
    assert twice.returncode != 0
    assert "an environment named 'production' exists already" in twice.stdout
    assert [e.name for e in store.environments()] == ["app-store", "production"]


def test_the_verifier_gets_its_pacts_from_the_store_and_publishes_its_results(served: tuple[ContractStore, str]) -> None:
    store, url = served
    ok(pact(url, "publish", str(PACTS), "--consumer-app-version", "1.0.0", "--branch", "main"))
    result = verify_payment(url, "1.0.0", selectors=({"mainBranch": True},))
    assert result.broker == url
    assert result.failures == ()
    assert {i.consumer for i in result.interactions} == {"order", "audit"}
    for consumer in ("order", "audit"):
        [verification] = store.verifications(consumer, "payment", store.pact(consumer, "1.0.0", "payment").sha)
        assert verification.success
        assert verification.provider_version == "1.0.0"
        # Each interaction's result, named: the verifier sends the ids the store served the pact with.
        described = {r["interactionDescription"] for r in verification.results}
        assert described == {i["description"] for i, _ in store.pact(consumer, "1.0.0", "payment").interactions()}
    assert store.version("payment", "1.0.0").branches == ("main",)


def test_can_i_deploy_from_the_pact_cli_agrees_with_the_gate(served: tuple[ContractStore, str]) -> None:
    store, url = served
    ok(pact(url, "publish", str(PACTS / "order-payment.json"), "--consumer-app-version", "1.0.0", "--branch", "main"))
    ok(pact(url, "create-environment", "--name", "production"))
    verify_payment(url, "1.0.0")
    ok(pact(url, "record-deployment", "--pacticipant", "order", "--version", "1.0.0", "--environment", "production"))
    with pytest.raises(ProviderVerificationError):
        verify_payment(url, "2.0.0", app=fixture_module().payment_2_0_0())

    yes = pact(url, "can-i-deploy", "--pacticipant", "payment", "--version", "1.0.0", "--to-environment", "production")
    assert can_i_deploy(store, "payment", "1.0.0", "production").deployable
    assert yes.returncode == 0, yes.stdout
    assert "Computer says yes" in yes.stdout

    no = pact(url, "can-i-deploy", "--pacticipant", "payment", "--version", "2.0.0", "--to-environment", "production")
    assert not can_i_deploy(store, "payment", "2.0.0", "production").deployable
    assert no.returncode == 1, no.stdout
    assert "Computer says no" in no.stdout
    assert "order 1.0.0 -> payment 2.0.0: failed: payment 2.0.0 does not honour the pact: 'a charge'" in no.stdout

    unknown = pact(url, "can-i-deploy", "--pacticipant", "payment", "--version", "9.9.9", "--to-environment", "production")
    assert unknown.returncode != 0
    assert "no version '9.9.9' of 'payment'" in unknown.stdout

    as_json = json.loads(ok(pact(url, "can-i-deploy", "--pacticipant", "payment", "--version", "2.0.0",
                                 "--to-environment", "production", "--output", "json")))  # fmt: skip
    assert as_json["summary"]["deployable"] is False
    assert [(r["consumer"]["version"]["number"], r["provider"]["version"]["number"], r["verificationResult"]["success"])
            for r in as_json["matrix"]] == [("1.0.0", "2.0.0", False)]  # fmt: skip


def new_expectation() -> dict[str, Any]:
    """order's pact with one more interaction: a charge's reply also says its currency."""
    document: dict[str, Any] = json.loads((PACTS / "order-payment.json").read_text())
    [charge] = [copy.deepcopy(i) for i in document["interactions"] if i["description"] == "a charge"]
    charge["description"] = "a charge in a currency"
    charge["response"]["body"]["content"]["currency"] = "EUR"
    document["interactions"].append(charge)
    return document


def test_a_new_expectation_does_not_fail_the_provider_build_until_it_passed_once(served: tuple[ContractStore, str]) -> None:
    store, url = served
    store.publish_pact(new_expectation(), "1.1.0", branch="main")
    sha = store.pact("order", "1.1.0", "payment").sha

    # Pending: the reference payment does not answer a currency, and its build still passes.
    first = verify_payment(url, "1.0.0")
    [failed] = first.failures
    assert (failed.description, failed.pending) == ("a charge in a currency", True)
    [recorded] = store.verifications("order", "payment", sha)
    assert (recorded.success, recorded.pending) == (False, True)
    [blocked] = can_i_deploy_pairs(store, "1.0.0")
    assert blocked.status == "pending"

    # payment 1.1.0 honours it: from now on the expectation is no longer pending on main.
    assert verify_payment(url, "1.1.0", app=fixture_module().payment_1_1_0()).failures == ()
    with pytest.raises(ProviderVerificationError, match="'a charge in a currency'") as caught:
        verify_payment(url, "1.0.1")
    assert [i.pending for i in caught.value.verification.failures] == [False]
    assert store.verifications("order", "payment", sha)[-1].pending is False


def can_i_deploy_pairs(store: ContractStore, payment_version: str) -> Any:
    if not store.environments():
        store.create_environment("production")
        store.record_deployment("order", "1.1.0", "production")
    return can_i_deploy(store, "payment", payment_version, "production").pairs


@pytest.mark.slow
def test_selectors_choose_which_pacts_and_wip_pacts_come_too(served: tuple[ContractStore, str]) -> None:
    store, url = served
    store.publish_pact(json.loads((PACTS / "order-payment.json").read_text()), "1.0.0", branch="main")
    store.create_environment("production")
    store.record_deployment("order", "1.0.0", "production")
    store.publish_pact(new_expectation(), "1.1.0", branch="main")
    feature = new_expectation()
    feature["interactions"][-1]["description"] = "a charge in a currency, on a feature branch"
    store.publish_pact(feature, "1.2.0-feat", branch="feat-currency")

    deployed = verify_payment(url, "1.0.0", selectors=({"deployedOrReleased": True},), include_pending=False)
    assert deployed.failures == ()
    assert len(deployed.interactions) == len(json.loads((PACTS / "order-payment.json").read_text())["interactions"])

    # The pacts of 1.1.0 (main) and of the feature branch are not selected, but come as work in
    # progress; they fail for the reference payment without failing the build, recorded as such.
    wip = verify_payment(url, "1.0.1", selectors=({"deployedOrReleased": True},), wip_since=date(2000, 1, 1))
    assert {f.description for f in wip.failures} == {"a charge in a currency", "a charge in a currency, on a feature branch"}
    assert all(f.pending for f in wip.failures)
    sha = store.pact("order", "1.2.0-feat", "payment").sha
    assert [(v.provider_version, v.wip, v.success) for v in store.verifications("order", "payment", sha)] == [("1.0.1", True, False)]
    # Published since tomorrow: no work in progress.
    later = verify_payment(url, "1.0.2", selectors=({"deployedOrReleased": True},), wip_since=date(2999, 1, 1))
    assert later.failures == ()

    branch = verify_payment(url, "1.1.0", selectors=({"branch": "feat-currency"},), app=fixture_module().payment_1_1_0())
    assert "a charge in a currency, on a feature branch" in {i.description for i in branch.interactions}
    assert "a charge" in {i.description for i in branch.interactions}
    assert store.verifications("order", "payment", sha)[-1].success


def test_a_provider_that_no_consumer_has_a_pact_with_has_nothing_to_verify(served: tuple[ContractStore, str]) -> None:
    store, url = served
    store.add_version("payment", "1.0.0")
    result = verify_provider("payment", create_app("payment"), BrokerSource(url), publish=PublishResults("1.0.0"))
    assert result.interactions == ()
    assert result.errors == ()
    assert ["No pacts found for provider 'payment'" in note for note in result.notes] == [True]


def test_a_pact_the_verifier_cannot_read_fails_the_verification(served: tuple[ContractStore, str]) -> None:
    store, url = served
    published = store.publish_pact(json.loads((PACTS / "order-payment.json").read_text()), "1.0.0")
    # A pact written into the store by something that did not check it: pact's core stops on it
    # and calls the empty result a success.
    broken = copy.deepcopy(dict(published.content))
    broken["interactions"][0]["response"]["status"] = "two hundred"
    with sqlite3.connect(store.path) as db:
        db.execute("UPDATE pact_versions SET content = ? WHERE sha = ?", (json.dumps(broken), published.sha))
    with pytest.raises(ProviderVerificationError, match="pact's verifier stopped without a result"):
        verify_provider("payment", create_app("payment", inspect=True), BrokerSource(url), provider_states("payment"))


BAD_REQUESTS = [
    ("GET", "/nowhere", None, 404, "nothing is served at /nowhere"),
    ("DELETE", "/environments", None, 405, "DELETE is not allowed"),
    ("POST", "/contracts/publish", b"{not json", 400, "not JSON"),
    ("POST", "/contracts/publish", b"[]", 400, "must be a JSON object"),
    ("POST", "/contracts/publish", {"pacticipantName": "order"}, 400, "pacticipantVersionNumber is required"),
    ("POST", "/contracts/publish", {"pacticipantName": "order", "pacticipantVersionNumber": "1", "contracts": []}, 400, "non-empty list"),
    (
        "POST", "/contracts/publish",
        {"pacticipantName": "order", "pacticipantVersionNumber": "1",
         "contracts": [{"specification": "pact", "content": "not base64!"}]},
        400, "not a base64-encoded pact",
    ),
    (
        "POST", "/contracts/publish",
        {"pacticipantName": "order", "pacticipantVersionNumber": "1", "contracts": [{"specification": "oas", "content": ""}]},
        400, "only pacts are taken",
    ),
    (
        "POST", "/contracts/publish",
        {"pacticipantName": "order", "pacticipantVersionNumber": "a/b",
         "contracts": [{"specification": "pact", "content": "PACT"}]},
        400, "cannot be used",
    ),
    ("POST", "/environments", {"name": ""}, 400, "name is required"),
    ("POST", "/environments", {"name": "staging", "production": "yes"}, 400, "production must be true or false"),
    ("GET", "/pacticipants/nobody", None, 404, "no participant 'nobody'"),
    ("GET", "/pacticipants/order/versions/9.9", None, 404, "no version '9.9' of 'order'"),
    ("POST", "/pacts/provider/nobody/for-verification", {}, 404, "no participant 'nobody'"),
    ("POST", "/pacts/provider/payment/for-verification", {"consumerVersionSelectors": [{"colour": "red"}]}, 400, "unknown key"),
    ("POST", "/pacts/provider/payment/for-verification", {"consumerVersionSelectors": [{"latest": "yes"}]}, 400, "true or false"),
    ("POST", "/pacts/provider/payment/for-verification", {"includeWipPactsSince": "soon"}, 400, "is not a date"),
    ("GET", "/pacts/provider/payment/consumer/order/pact-version/abc/metadata/%%%", None, 400, "not one this store wrote"),
    ("POST", "/pacts/provider/payment/consumer/order/pact-version/SHA/verification-results", {"success": "yes"}, 400, "success is required"),
    ("POST", "/pacts/provider/payment/consumer/order/pact-version/SHA/verification-results", {"success": True}, 400, "providerApplicationVersion"),
    ("POST", "/pacticipants/order/versions/1.0.0/deployed-versions/environment/nowhere", {}, 404, "no environment 'nowhere'"),
    ("GET", "/matrix", None, 400, "name at least one pacticipant"),
    ("GET", "/matrix?q[][version]=1", None, 400, "comes before any q[][pacticipant]"),
    ("GET", "/matrix?q[][pacticipant]=order", None, 400, "say which version"),
    ("GET", "/matrix?q[][pacticipant]=order&q[][version]=1.0.0&environment=nowhere", None, 400, "no environment 'nowhere'"),
    ("GET", "/pacts/provider/payment/consumer/order/pact-version/SHA/verification-results/x", None, 404, "no verification result"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "body", "status", "says"), BAD_REQUESTS)
def test_bad_requests_get_a_4xx_that_says_why(
    served: tuple[ContractStore, str], method: str, path: str, body: Any, status: int, says: str
) -> None:
    store, url = served
    published = store.publish_pact(json.loads((PACTS / "order-payment.json").read_text()), "1.0.0")
    path = path.replace("SHA", published.sha)
    if isinstance(body, dict) and body.get("contracts") == [{"specification": "pact", "content": "PACT"}]:
        import base64

        body["contracts"][0]["content"] = base64.b64encode((PACTS / "order-payment.json").read_bytes()).decode()
    content = body if isinstance(body, bytes) else None if body is None else json.dumps(body).encode()
    answer = httpx.request(method, url + path, content=content, headers={"Content-Type": "application/json"})
    assert answer.status_code == status, answer.text
    assert says in answer.text
    assert answer.json()  # always JSON, which the clients print
    assert store.pacticipants() == ["order", "payment"]  # and nothing was written


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client() as shared:  # a new client each request costs tens of milliseconds
        yield shared


SEGMENTS = ["pacticipants", "pacts", "provider", "consumer", "payment", "order", "versions", "1.0.0", "branches", "main",
            "environments", "matrix", "for-verification", "pact-version", "metadata", "verification-results", "latest",
            "contracts", "publish", "deployed-versions", "environment", "tags", "%00", "%2F", "..", "x" * 300, "\u00e9"]  # fmt: skip


@given(
    method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]),
    segments=st.lists(st.sampled_from(SEGMENTS) | st.text(min_size=1, max_size=8).map(lambda t: quote(t, safe="")), max_size=9),
    query=st.lists(st.tuples(st.sampled_from(["q[][pacticipant]", "q[][version]", "q[][latest]", "environment", "ignore[][pacticipant]", "x"]),
                             st.text(max_size=6)), max_size=4),
    body=st.none() | st.binary(max_size=64) | st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(
            ["name", "success", "providerApplicationVersion", "pacticipantName", "pacticipantVersionNumber", "contracts",
             "consumerVersionSelectors", "includePendingStatus", "production", "testResults", "content", "specification"]), inner, max_size=4),
        max_leaves=8,
    ).map(lambda v: json.dumps(v).encode()),
)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_no_request_gets_a_5xx(
    served: tuple[ContractStore, str],
    client: httpx.Client,
    method: str,
    segments: list[str],
    query: list[tuple[str, str]],
    body: bytes | None,
) -> None:
    store, url = served
    if not store.pacticipants():
        store.publish_pact(json.loads((PACTS / "order-payment.json").read_text()), "1.0.0", branch="main")
        store.create_environment("production")
    path = "/" + "/".join(segments) + ("?" + urlencode(query) if query else "")
    answer = client.request(method, url + path, content=body)
    assert answer.status_code < 500, (method, path, body, answer.text)
    if method != "HEAD":
        assert isinstance(answer.json(), dict)
