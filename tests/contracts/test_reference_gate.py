"""The reference system through the deployment gate, every step a ``saga-verify contracts``
command against one embedded store, the way a CI pipeline runs them: the order service and the
audit publish their pacts, payment publishes its OpenAPI document and event schemas and verifies
every version for real (fixtures/contracts/payment_versions.py), production holds what is
deployed. payment 1.1.0 only adds: diff, verify, can-i-deploy and check-events all pass. payment
2.0.0 drops the charge_id the order service reads and the amount the audit reads: each says no,
and names whom it breaks and where."""

from __future__ import annotations

from pathlib import Path

import pytest

from saga_verify._cli import main

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures" / "contracts"
PROVIDERS = FIXTURES / "payment_versions.py"


def test_the_payment_versions_through_the_gate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = str(tmp_path / "contracts.db")

    def contracts(*argv: str) -> tuple[int, str]:
        code = main(["contracts", *argv, "--store", store])
        return code, capsys.readouterr().out

    def verify(version: str, app: str) -> tuple[int, str]:
        return contracts(
            "verify", "--provider", "payment", "--provider-version", version, "--branch", "main",
            "--app", f"{PROVIDERS}:{app}", "--states", f"{PROVIDERS}:STATES", "--messages", f"{PROVIDERS}:messages",
        )  # fmt: skip

    def publish_payment(version: str, openapi: Path, *schemas: Path) -> None:
        events = [arg for schema in schemas for arg in ("--event-schema", str(schema))]
        assert contracts("publish", "--pacticipant", "payment", "--version", version, "--branch", "main",
                         "--openapi", str(openapi), *events)[0] == 0  # fmt: skip

    # What runs in production: the order service, the audit and payment 1.0.0, all verified.
    for consumer in ("order", "audit"):
        assert contracts("publish", str(ROOT / "contracts" / "pacts"), "--pacticipant", consumer, "--version", "1.0.0", "--branch", "main")[0] == 0
    publish_payment("1.0.0", ROOT / "contracts/openapi/payment.yaml", ROOT / "contracts/events/payment.charged.schema.json")
    assert verify("1.0.0", "payment_1_0_0")[0] == 0
    assert contracts("create-environment", "--name", "production", "--production")[0] == 0
    for name in ("order", "audit", "payment"):
        assert contracts("record-deployment", "--pacticipant", name, "--version", "1.0.0", "--environment", "production")[0] == 0

    # 1.1.0 only adds.
    publish_payment("1.1.0", FIXTURES / "payment-1.1.0.yaml", FIXTURES / "events-1.1.0/payment.charged.schema.json")
    code, out = contracts("diff", str(ROOT / "contracts/openapi/payment.yaml"), "payment@1.1.0", "--provider", "payment")
    assert code == 0, out
    assert "response-property-added" in out
    assert out.rstrip().endswith("verdict: compatible")
    assert verify("1.1.0", "payment_1_1_0")[0] == 0
    code, out = contracts("can-i-deploy", "--pacticipant", "payment", "--version", "1.1.0", "--to-environment", "production")
    assert code == 0, out
    assert "ok      order 1.0.0 -> payment 1.1.0: verified" in out
    assert contracts("check-events", "--mode", "backward-transitive")[0] == 0

    # 2.0.0 drops what the order service and the audit read.
    publish_payment("2.0.0", FIXTURES / "payment-2.0.0.yaml", FIXTURES / "events-2.0.0/payment.charged.schema.json")
    code, out = contracts("diff", str(ROOT / "contracts/openapi/payment.yaml"), "payment@2.0.0", "--provider", "payment")
    assert code == 1, out
    assert "response-required-property-removed           POST /charges  response 201 body: charge_id" in out
    assert "breaks order: 'a charge', 'a charge replayed with its idempotency key'" in out

    code, out = verify("2.0.0", "payment_2_0_0")
    assert code == 1, out
    assert "FAILED  order: 'a charge'" in out
    assert "FAILED  audit: 'a payment.charged event'" in out

    code, out = contracts("can-i-deploy", "--pacticipant", "payment", "--version", "2.0.0", "--to-environment", "production")
    assert code == 1, out
    assert out.startswith("can payment 2.0.0 be deployed to production? NO")
    assert "BLOCKS  order 1.0.0 -> payment 2.0.0: failed: payment 2.0.0 does not honour the pact: 'a charge', " \
           "'a charge replayed with its idempotency key' failed" in out  # fmt: skip
    assert "BLOCKS  audit 1.0.0 -> payment 2.0.0: failed: payment 2.0.0 does not honour the pact: 'a payment.charged event' failed" in out

    code, out = contracts("check-events", "--mode", "backward-transitive")
    assert code == 1, out
    assert "breaks audit: data.amount: audit reads it, and payment 2.0.0 no longer has it (removed)" in out
