"""The same commands against a Pact Broker, through the official ``pact broker`` CLI (the
``pact-python-cli`` package) rather than HTTP calls of our own: publish, create-environment,
record-deployment and can-i-deploy."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from ._errors import ContractError
from ._gate import Decision, Pair, Status
from ._pact_files import telemetry_off
from ._records import Verification


class BrokerError(ContractError):
    """The broker does not answer, refuses a request, or the ``pact`` CLI is missing or failed."""


def pact_cli() -> str:
    """The ``pact`` executable of ``pact-python-cli``: beside this Python first, then on the PATH."""
    beside = Path(sys.executable).parent / "pact"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("pact")
    if found is None:
        raise BrokerError("the pact CLI is not installed: pip install pact-python-cli (it comes with saga-verify[contracts])")
    return found


@dataclass(frozen=True)
class PactBroker:
    """A Pact Broker at ``url``. Credentials come from the usual variables (``PACT_BROKER_TOKEN``,
    ``PACT_BROKER_USERNAME``, ``PACT_BROKER_PASSWORD``), which the CLI reads itself."""

    url: str
    timeout: float = 10.0

    def check(self) -> None:
        """Fail at once, naming the broker, when nothing answers there."""
        if urlsplit(self.url).scheme not in ("http", "https") or not urlsplit(self.url).hostname:
            raise BrokerError(f"broker {self.url!r} is not an http(s) URL")
        try:
            httpx.get(self.url, timeout=self.timeout, headers={"Accept": "application/hal+json"})
        except httpx.HTTPError as exc:
            raise BrokerError(f"the broker at {self.url} does not answer: {exc or type(exc).__name__}") from exc

    def _run(self, *args: str) -> str:
        self.check()
        telemetry_off()
        command = [pact_cli(), "broker", *args, "--broker-base-url", self.url]
        try:
            run = subprocess.run(
                command, capture_output=True, text=True, timeout=300, check=False, env={**os.environ, "PACT_DO_NOT_TRACK": "true"}
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BrokerError(f"pact broker {args[0]} failed: {exc}") from exc
        if run.returncode != 0:
            said = (run.stdout + run.stderr).strip()
            raise BrokerError(f"pact broker {args[0]} against {self.url} failed (exit {run.returncode}):\n{said}")
        return run.stdout

    def publish(
        self,
        pact_files: Sequence[Path],
        version: str,
        *,
        branch: str | None = None,
        tags: Sequence[str] = (),
        build_url: str | None = None,
    ) -> str:
        args = ["publish", *map(str, pact_files), "--consumer-app-version", version]
        if branch:
            args += ["--branch", branch]
        for tag in tags:
            args += ["--tag", tag]
        if build_url:
            args += ["--build-url", build_url]
        return self._run(*args)

    def create_environment(self, name: str, *, display_name: str | None = None, production: bool = False) -> str:
        args = ["create-environment", "--name", name]
        if display_name:
            args += ["--display-name", display_name]
        if production:
            args.append("--production")
        return self._run(*args)

    def record_deployment(
        self, pacticipant: str, version: str, environment: str, *, application_instance: str | None = None
    ) -> str:
        args = ["record-deployment", "--pacticipant", pacticipant, "--version", version, "--environment", environment]
        if application_instance:
            args += ["--application-instance", application_instance]
        return self._run(*args)

    def can_i_deploy(self, pacticipant: str, version: str, environment: str) -> Decision:
        """The broker's matrix for the question, read into a `Decision`. A row without a result is
        "never verified"; a broker that gives no verdict means no."""
        out = self._run(
            "can-i-deploy", "--pacticipant", pacticipant, "--version", version, "--to-environment", environment,
            "--output", "json",
        )  # fmt: skip
        try:
            data = json.loads(out)
        except ValueError as exc:
            raise BrokerError(f"pact broker can-i-deploy gave no JSON: {out[:300]!r}") from exc
        return decision_from_matrix(pacticipant, version, environment, data)


def decision_from_matrix(pacticipant: str, version: str, environment: str, data: Any) -> Decision:
    if not isinstance(data, dict) or not isinstance(data.get("matrix"), list):
        raise BrokerError(f"the broker's matrix for {pacticipant} {version} is not one: {str(data)[:300]}")
    pairs = []
    for row in data["matrix"]:
        if row.get("ignored"):
            continue
        result = row.get("verificationResult")
        result = result if isinstance(result, dict) else {}
        success = result.get("success")
        status: Status = "never verified" if success is None else "verified" if success else "failed"
        provider_version = (row.get("provider", {}).get("version") or {}).get("number") or "?"
        verification = None
        if success is not None:
            verification = Verification(
                row["consumer"]["name"], row["provider"]["name"], provider_version, "", bool(success), False, False,
                created_at=str(result.get("verifiedAt", "")),
            )  # fmt: skip
        pairs.append(
            Pair(
                row["consumer"]["name"], (row["consumer"].get("version") or {}).get("number") or "?",
                row["provider"]["name"], provider_version, "", status, verification,
            )
        )  # fmt: skip
    summary = data.get("summary") or {}
    notices = tuple(str(n.get("text")) for n in data.get("notices") or [] if isinstance(n, dict) and n.get("type") == "warning")
    decision = Decision(pacticipant, version, environment, tuple(pairs), notices)
    if summary.get("deployable") is not True and decision.deployable:
        # The broker says no (or does not know) for a reason the rows do not show: unknown means no.
        reason = str(summary.get("reason") or "the broker gave no verdict")
        blocked = Pair(pacticipant, version, "?", "?", "", "never verified")
        return Decision(pacticipant, version, environment, (*pairs, blocked), (*notices, reason))
    return decision
