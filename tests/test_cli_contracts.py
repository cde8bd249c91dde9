"""``saga-verify contracts``: each command's exit codes (0 yes, 1 no, 2 bad input), what it prints,
and that bad input (a store that is not ours, unknown names, malformed files, a broker that does
not answer) is named and leaves nothing half-written. ``serve`` runs as a process that the
official ``pact broker`` CLI talks to."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from saga_verify._cli import main
from saga_verify.contracts import ContractStore
from saga_verify.contracts._broker_client import pact_cli
from saga_verify.contracts._store_file import SCHEMA_VERSION

ROOT = Path(__file__).resolve().parents[1]
PACTS = ROOT / "contracts" / "pacts"
SCRIPT = Path(sys.executable).with_name("saga-verify")


def run(*argv: str) -> int:
    try:
        return main(["contracts", *argv])
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1


@pytest.fixture
def store(tmp_path: Path) -> str:
    """A store where order 1.0.0 (pacts with payment and shipping) runs in production."""
    path = str(tmp_path / "contracts.db")
    assert run("publish", str(PACTS / "order-payment.json"), str(PACTS / "order-shipping.json"),
               "--version", "1.0.0", "--branch", "main", "--store", path) == 0  # fmt: skip
    assert run("create-environment", "--name", "production", "--production", "--store", path) == 0
    assert run("record-deployment", "--pacticipant", "order", "--version", "1.0.0", "--environment", "production", "--store", path) == 0
    return path


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_publish_and_record_say_what_they_did(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("publish", "--pacticipant", "payment", "--version", "1.0.0", "--openapi", str(ROOT / "contracts/openapi/payment.yaml"),
               "--event-schema", str(ROOT / "contracts/events/payment.charged.schema.json"), "--store", store) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "published payment 1.0.0: OpenAPI document payment.yaml" in out
    assert "published payment 1.0.0: the schema of payment.charged" in out
    with ContractStore.open(store) as opened:
        assert [d.name for d in opened.documents("openapi")] == ["payment.yaml"]
        assert [d.version for d in opened.deployed("production")] == ["1.0.0"]


def test_publishing_a_folder_takes_the_pacts_of_the_participant_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(tmp_path / "contracts.db")
    assert run("publish", str(PACTS), "--pacticipant", "audit", "--version", "2.0.0", "--store", path) == 0
    with ContractStore.open(path) as opened:
        assert opened.pacticipants() == ["audit", "inventory", "notification", "order", "payment", "shipping"]
        assert [p.provider for p in opened.pacts_of("audit", "2.0.0")] == ["inventory", "notification", "order", "payment", "shipping"]
        assert opened.versions("order") == []  # order is only audit's provider here: none of its own pacts


def test_can_i_deploy_answers_with_its_exit_code_as_text_json_and_junit(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with ContractStore.open(store) as opened:
        opened.add_version("payment", "2.0.0")
    junit = tmp_path / "reports" / "gate.xml"
    assert run("can-i-deploy", "--pacticipant", "payment", "--version", "2.0.0", "--to-environment", "production",
               "--store", store, "--junit", str(junit)) == 1  # fmt: skip
    out = capsys.readouterr().out
    assert out.startswith("can payment 2.0.0 be deployed to production? NO\n")
    assert "BLOCKS  order 1.0.0 -> payment 2.0.0: never verified" in out
    assert ElementTree.parse(junit).getroot().get("failures") == "2"
    assert run("can-i-deploy", "--pacticipant", "payment", "--version", "2.0.0", "--to-environment", "production",
               "--store", store, "--output", "json") == 1  # fmt: skip
    answer = json.loads(capsys.readouterr().out)
    assert answer["deployable"] is False
    assert [p["status"] for p in answer["pairs"]] == ["never verified"]


def test_bad_input_exits_2_naming_it(store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    notes = tmp_path / "notes.db"
    notes.write_text("shopping list")
    newer = tmp_path / "newer.db"
    ContractStore.open(newer).close()
    with sqlite3.connect(newer) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    bad_pact = tmp_path / "broken-pact.json"
    bad_pact.write_text('{"consumer": {"name": "order"}, "provider": {"name": "payment"}, "interactions": "no"}')
    bad_openapi = tmp_path / "broken.yaml"
    bad_openapi.write_text("openapi: [")
    gate = ["can-i-deploy", "--pacticipant", "order", "--version", "1.0.0", "--to-environment", "production"]
    cases = [
        ([*gate, "--store", str(notes)], "notes.db is not a saga-verify contract store"),
        ([*gate, "--store", str(newer)], "written by a newer saga-verify"),
        ([*gate, "--store", str(tmp_path / "none.db")], "there is no contract store at"),
        (["can-i-deploy", "--pacticipant", "paymnet", "--version", "1", "--to-environment", "production", "--store", store], "no participant 'paymnet'"),
        (["can-i-deploy", "--pacticipant", "order", "--version", "9", "--to-environment", "production", "--store", store], "no version '9' of 'order'"),
        (["can-i-deploy", "--pacticipant", "order", "--version", "1.0.0", "--to-environment", "prod", "--store", store], "no environment 'prod'"),
        (["record-deployment", "--pacticipant", "order", "--version", "1.0.0", "--environment", "prod", "--store", store], "no environment 'prod'"),
        (["publish", str(PACTS / "order-payment.json"), str(bad_pact), "--version", "3.0.0", "--store", store], "'interactions' is not a list"),
        (["publish", "--version", "3.0.0", "--store", store], "nothing to publish"),
        (["publish", "--openapi", str(bad_openapi), "--version", "3.0.0", "--store", store], "need --pacticipant"),
        (["publish", "--pacticipant", "payment", "--openapi", str(bad_openapi), "--version", "3.0.0", "--store", store], "not valid YAML"),
        (["diff", str(bad_openapi), str(ROOT / "contracts/openapi/payment.yaml"), "--store", store], "broken.yaml is not valid YAML"),
        (["diff", "payment@9.9", str(ROOT / "contracts/openapi/payment.yaml"), "--store", store], "neither a file nor an OpenAPI document"),
        (["check-events", str(tmp_path / "missing.schema.json"), "--store", store], "does not exist"),
        (["verify", "--provider", "payment", "--provider-version", "1", "--url", "http://127.0.0.1:1", "--store", store, "--states", "nowhere:STATES"], "does not import"),
        (["verify", "--provider", "nobody", "--provider-version", "1", "--url", "http://127.0.0.1:1", "--store", store], "no participant 'nobody'"),
    ]  # fmt: skip
    with ContractStore.open(store) as opened:
        before = (opened.pacticipants(), [v.number for v in opened.versions("order")])
    for argv, says in cases:
        assert run(*argv) == 2, argv
        err = capsys.readouterr().err
        assert says in err, (argv, err)
        assert err.startswith("saga-verify: error: ")
    with ContractStore.open(store) as opened:  # nothing half-written: the good pact before the bad one is not there
        assert (opened.pacticipants(), [v.number for v in opened.versions("order")]) == before
    assert notes.read_text() == "shopping list"


def test_bad_options_are_usage_errors(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("verify", "--provider", "p", "--provider-version", "1", "--url", "u", "--selector", "{mainBranch}") == 2
    assert "is not JSON" in capsys.readouterr().err
    assert run("verify", "--provider", "p", "--provider-version", "1", "--url", "u", "--selector", '{"main": true}') == 2
    assert "unknown key(s) main" in capsys.readouterr().err
    assert run("check-events", "--mode", "sideways") == 2
    assert "mode 'sideways' is not one of" in capsys.readouterr().err
    assert run("serve", "--port", "70000") == 2
    assert "is not a port number" in capsys.readouterr().err


def test_a_broker_that_does_not_answer_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broker = f"http://127.0.0.1:{closed_port()}"
    commands = [
        ["can-i-deploy", "--pacticipant", "order", "--version", "1", "--to-environment", "production", "--broker", broker],
        ["publish", str(PACTS / "order-payment.json"), "--version", "1", "--broker", broker],
        ["create-environment", "--name", "production", "--broker", broker],
        ["record-deployment", "--pacticipant", "order", "--version", "1", "--environment", "production", "--broker", broker],
    ]
    for argv in commands:
        assert run(*argv) == 2
        assert f"the broker at {broker} does not answer" in capsys.readouterr().err
    assert run("verify", "--provider", "payment", "--provider-version", "1", "--url", broker, "--broker", broker) == 2
    assert "does not answer" in capsys.readouterr().err


def test_the_broker_commands_go_through_the_official_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Against a served store: publish, create-environment, record-deployment and can-i-deploy
    with --broker run `pact broker ...` and read its answer."""
    from saga_verify.contracts import serve_store

    with ContractStore.open(tmp_path / "contracts.db") as opened, serve_store(opened) as url:
        assert run("publish", str(PACTS / "order-payment.json"), "--version", "1.0.0", "--branch", "main", "--broker", url) == 0
        assert run("create-environment", "--name", "production", "--broker", url) == 0
        assert run("record-deployment", "--pacticipant", "order", "--version", "1.0.0", "--environment", "production", "--broker", url) == 0
        opened.add_version("payment", "1.0.0")
        capsys.readouterr()
        assert run("can-i-deploy", "--pacticipant", "payment", "--version", "1.0.0", "--to-environment", "production", "--broker", url) == 1
        out = capsys.readouterr().out
        assert "BLOCKS  order 1.0.0 -> payment 1.0.0: never verified" in out
        assert [d.pacticipant for d in opened.deployed("production")] == ["order"]
        assert run("publish", "--pacticipant", "payment", "--version", "1", "--openapi", str(ROOT / "contracts/openapi/payment.yaml"),
                   "--broker", url) == 2  # fmt: skip
        assert "a Pact Broker keeps pacts only" in capsys.readouterr().err


def test_serve_runs_until_stopped_and_the_official_cli_uses_it(tmp_path: Path) -> None:
    store = tmp_path / "contracts.db"
    server = subprocess.Popen(
        [str(SCRIPT), "contracts", "serve", "--port", "0", "--store", str(store)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert "(the Pact Broker API)" in line, line
        url = line.split(" at ")[1].split(" ")[0]
        created = subprocess.run(
            [pact_cli(), "broker", "create-environment", "--name", "staging", "--broker-base-url", url],
            capture_output=True, text=True, timeout=60, check=False, env={**os.environ, "PACT_DO_NOT_TRACK": "true"},
        )  # fmt: skip
        assert created.returncode == 0, created.stdout + created.stderr
    finally:
        server.terminate()
        code = server.wait(timeout=10)
        assert server.stderr is not None
        server.stderr.close()
        server.stdout.close()  # type: ignore[union-attr]
    assert code == 0
    with ContractStore.open(store) as opened:
        assert [e.name for e in opened.environments()] == ["staging"]


def test_verify_prints_only_its_answer_on_standard_output(store: str, tmp_path: Path) -> None:
    """pact's own report goes to standard error, so ``--output json`` is JSON a CI step can read."""
    providers = ROOT / "fixtures" / "contracts" / "payment_versions.py"
    junit = tmp_path / "pacts.xml"
    completed = subprocess.run(
        [str(SCRIPT), "contracts", "verify", "--provider", "payment", "--provider-version", "1.0.0", "--branch", "main",
         "--app", f"{providers}:payment_1_0_0", "--states", f"{providers}:STATES", "--store", store,
         "--output", "json", "--junit", str(junit)],
        capture_output=True, text=True, timeout=120, check=False, env={**os.environ, "PACT_DO_NOT_TRACK": "true"},
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout + completed.stderr
    answer = json.loads(completed.stdout)
    assert answer["ok"] is True
    assert answer["results"] == f"published to {store}"
    assert {i["description"] for i in answer["interactions"]} >= {"a charge", "a refund of a charge"}
    assert "Verifying a pact between order and payment" in completed.stderr
    suite = ElementTree.parse(junit).getroot()
    assert (suite.get("tests"), suite.get("failures")) == (str(len(answer["interactions"])), "0")
    with ContractStore.open(store) as opened:
        [verification] = opened.verifications("order", "payment", opened.pact("order", "1.0.0", "payment").sha)
        assert verification.success
