"""The contract store: one SQLite file that is ours or refused, versions with branches, pacts whose
content is their identity, deployments that replace each other, and changes that are made whole
or not at all."""

from __future__ import annotations

import copy
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from saga_verify.contracts import ContractStore, PactFileError, StoreError, UnknownError
from saga_verify.contracts._store_file import APPLICATION_ID, SCHEMA_VERSION

PACTS = Path(__file__).resolve().parents[2] / "contracts" / "pacts"


def pact(name: str = "order-payment") -> dict[str, Any]:
    document: dict[str, Any] = json.loads((PACTS / f"{name}.json").read_text())
    return document


@pytest.fixture
def store(tmp_path: Path) -> Any:
    with ContractStore.open(tmp_path / "contracts.db") as opened:
        yield opened


def test_a_new_store_is_one_file_made_with_its_folder(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "contracts.db"
    ContractStore.open(path).close()
    assert [p.name for p in path.parent.iterdir()] == ["contracts.db"]
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_file_that_is_not_a_store_is_refused_and_left_alone(tmp_path: Path) -> None:
    text = tmp_path / "notes.db"
    text.write_text("not a database")
    with pytest.raises(StoreError, match=r"notes\.db is not a saga-verify contract store \(not an SQLite database\)"):
        ContractStore.open(text)
    assert text.read_text() == "not a database"

    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE things (id INTEGER)")
    with pytest.raises(StoreError, match=r"other\.db is an SQLite database but not a saga-verify contract store"):
        ContractStore.open(other)


def test_a_store_from_a_newer_saga_verify_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "contracts.db"
    ContractStore.open(path).close()
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match=rf"written by a newer saga-verify \(store schema {SCHEMA_VERSION + 1}; .*upgrade"):
        ContractStore.open(path)


def test_a_missing_store_is_not_made_where_only_reading(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="there is no contract store at"):
        ContractStore.open(tmp_path / "contracts.db", create=False)
    assert not (tmp_path / "contracts.db").exists()
    with pytest.raises(StoreError, match="is a folder"):
        ContractStore.open(tmp_path)


def test_a_pact_is_recorded_against_the_consumer_version_and_branch(store: ContractStore) -> None:
    published = store.publish_pact(pact(), "1.0.0", branch="main", tags=["prod"])
    assert (published.consumer, published.consumer_version, published.provider) == ("order", "1.0.0", "payment")
    version = store.version("order", "1.0.0")
    assert version.branches == ("main",)
    assert version.tags == ("prod",)
    assert store.main_branch("order") == "main"
    assert store.pact("order", "1.0.0", "payment").content["interactions"] == pact()["interactions"]


def test_the_same_expectations_are_one_pact_version_whatever_the_metadata(store: ContractStore) -> None:
    first = store.publish_pact(pact(), "1.0.0")
    rewritten = copy.deepcopy(pact())
    rewritten["metadata"]["pactRust"] = {"ffi": "9.9.9"}
    for interaction in rewritten["interactions"]:
        interaction["comments"] = {"testname": "tests/other.py::test_renamed"}
    second = store.publish_pact(rewritten, "1.0.1")
    assert first.sha == second.sha
    assert store.consumer_versions_of("order", "payment", first.sha) == ["1.0.0", "1.0.1"]
    changed = copy.deepcopy(pact())
    changed["interactions"][0]["response"]["status"] = 200
    assert store.publish_pact(changed, "1.0.2").sha != first.sha


def test_publishing_again_for_one_version_replaces_its_pact(store: ContractStore) -> None:
    store.publish_pact(pact(), "1.0.0")
    changed = copy.deepcopy(pact())
    del changed["interactions"][0]
    store.publish_pact(changed, "1.0.0")
    assert len(store.pact("order", "1.0.0", "payment").content["interactions"]) == len(pact()["interactions"]) - 1
    assert len(store.pacts_of("order", "1.0.0")) == 1


def test_a_malformed_pact_is_refused_naming_it_and_nothing_is_written(store: ContractStore) -> None:
    broken = pact()
    del broken["provider"]
    with pytest.raises(PactFileError, match=r"order-payment\.json has no provider name"):
        store.publish_pact(broken, "1.0.0", source="order-payment.json")
    empty = pact()
    empty["interactions"] = []
    with pytest.raises(StoreError, match="has no interactions"):
        store.publish_pact(empty, "1.0.0")
    odd = pact()
    odd["interactions"][0]["response"]["status"] = "two hundred"
    with pytest.raises(PactFileError, match="'a charge': its response status is not a number"):
        store.publish_pact(odd, "1.0.0")
    assert store.pacticipants() == []


def test_a_change_of_several_parts_is_made_whole_or_not_at_all(store: ContractStore) -> None:
    def publish_both() -> None:
        with store.transaction():
            store.publish_pact(pact("order-payment"), "1.0.0")
            store.publish_pact(pact("order-shipping"), "bad/version")

    with pytest.raises(StoreError, match="version number"):
        publish_both()
    assert store.pacticipants() == []


@pytest.mark.parametrize("name", ["", " padded", "a/b", "tab\there", "x" * 201])
def test_names_that_cannot_be_used_are_refused(store: ContractStore, name: str) -> None:
    with pytest.raises(StoreError, match="cannot be used"):
        store.add_version(name, "1.0.0")
    with pytest.raises(StoreError, match="cannot be used"):
        store.add_version("order", name)
    with pytest.raises(StoreError, match="cannot be used"):
        store.create_environment(name)


def test_unknown_participants_versions_and_environments_are_named(store: ContractStore) -> None:
    store.publish_pact(pact(), "1.0.0")
    store.create_environment("production")
    with pytest.raises(UnknownError, match=r"no participant 'paymnet' \(known: order, payment\)"):
        store.versions("paymnet")
    with pytest.raises(UnknownError, match=r"no version '9\.9' of 'order'"):
        store.version("order", "9.9")
    with pytest.raises(UnknownError, match=r"no environment 'prod' \(known: production\)"):
        store.record_deployment("order", "1.0.0", "prod")
    with pytest.raises(StoreError, match="exists already"):
        store.create_environment("production")


def test_a_deployment_replaces_the_version_deployed_before_per_instance(store: ContractStore) -> None:
    for number in ("1.0.0", "1.1.0", "1.2.0"):
        store.add_version("payment", number)
    store.create_environment("production", production=True)
    store.record_deployment("payment", "1.0.0", "production")
    store.record_deployment("payment", "1.1.0", "production", application_instance="eu")
    store.record_deployment("payment", "1.2.0", "production")
    current = {(d.version, d.application_instance) for d in store.deployed("production")}
    assert current == {("1.1.0", "eu"), ("1.2.0", "")}
    assert [d.current for d in store.deployments_of("payment", "1.0.0")] == [False]
    store.record_release("payment", "1.0.0", "production")
    assert {(d.version, d.kind) for d in store.deployed("production")} == {("1.1.0", "deployed"), ("1.2.0", "deployed"), ("1.0.0", "released")}


def test_verification_results_belong_to_the_pact_content(store: ContractStore) -> None:
    published = store.publish_pact(pact(), "1.0.0")
    store.publish_pact(pact(), "1.0.1")
    store.record_verification("order", "payment", published.sha, "2.0.0", success=False, pending=True, branch="main")
    store.record_verification("order", "payment", published.sha, "2.0.0", success=True, branch="main")
    latest = store.latest_verification(store.pact("order", "1.0.1", "payment"), "2.0.0")
    assert latest is not None
    assert latest.success
    assert store.version("payment", "2.0.0").branches == ("main",)
    with pytest.raises(UnknownError, match="no pact 'nope'"):
        store.record_verification("order", "payment", "nope", "2.0.0", success=True)


def test_documents_are_kept_per_participant_version(store: ContractStore) -> None:
    store.publish_document("payment", "1.0.0", "openapi", "payment.yaml", "openapi: 3.1.0")
    store.publish_document("payment", "2.0.0", "openapi", "payment.yaml", "openapi: 3.1.1")
    store.publish_document("payment", "2.0.0", "event-schema", "payment.charged", "{}")
    assert [d.version for d in store.documents("openapi", pacticipant="payment")] == ["1.0.0", "2.0.0"]
    assert [d.name for d in store.documents("event-schema")] == ["payment.charged"]
    with pytest.raises(StoreError, match="kind is one of"):
        store.publish_document("payment", "2.0.0", "wsdl", "x", "")


def test_threads_sharing_a_store_lose_no_change(store: ContractStore) -> None:
    store.create_environment("production")

    def publish(n: int) -> None:
        store.add_version("payment", f"1.0.{n}", branch="main")
        store.record_deployment("payment", f"1.0.{n}", "production", application_instance=f"i-{n}")

    threads = [threading.Thread(target=publish, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(store.versions("payment")) == 20
    assert len(store.deployed("production")) == 20
