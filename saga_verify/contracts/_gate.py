"""The gate: may a participant version go to an environment? Answered from the matrix of consumer
and provider versions: every pact between the version and what runs there, in both directions,
must have been verified successfully by the provider version in question. Unknown means no.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ._records import Pact, UnknownError, Verification, Version
from ._store import ContractStore

Status = Literal["verified", "failed", "pending", "never verified"]


@dataclass(frozen=True)
class Pair:
    """One row of the matrix: a consumer version's pact with a provider version, and how the
    provider version fared against it."""

    consumer: str
    consumer_version: str
    provider: str
    provider_version: str
    sha: str
    status: Status
    verification: Verification | None = field(default=None, repr=False)

    @property
    def blocking(self) -> bool:
        return self.status != "verified"

    @property
    def title(self) -> str:
        return f"{self.consumer} {self.consumer_version} -> {self.provider} {self.provider_version}"

    def why(self) -> str:
        """Why the pair blocks (or that it does not), in a sentence."""
        failed = self.verification.failed_interactions() if self.verification else ()
        detail = f": {', '.join(repr(d) for d in failed)} failed" if failed else ""
        if self.status == "verified":
            return f"verified ({self.verification.created_at if self.verification else '?'})"
        if self.status == "never verified":
            return (
                f"never verified: {self.provider} {self.provider_version} has published no verification result "
                f"for the pact {self.consumer} {self.consumer_version} published"
            )
        if self.status == "pending":
            return (
                f"pending: {self.provider} {self.provider_version} failed the pact while it was pending "
                f"(its build passed, the pact is not honoured){detail}"
            )
        return f"failed: {self.provider} {self.provider_version} does not honour the pact{detail}"

    def to_json(self) -> dict[str, Any]:
        return {
            "consumer": self.consumer,
            "consumer_version": self.consumer_version,
            "provider": self.provider,
            "provider_version": self.provider_version,
            "pact": self.sha,
            "status": self.status,
            "blocking": self.blocking,
            "reason": self.why(),
            "failed_interactions": list(self.verification.failed_interactions()) if self.verification else [],
            "verified_at": self.verification.created_at if self.verification else None,
        }


@dataclass(frozen=True)
class Decision:
    """The gate's answer for one participant version and one environment (or set of versions)."""

    pacticipant: str
    version: str
    environment: str | None
    pairs: tuple[Pair, ...]
    notices: tuple[str, ...] = ()
    """What the answer did not weigh (a provider not deployed there), to be read."""

    @property
    def deployable(self) -> bool:
        return not any(p.blocking for p in self.pairs)

    @property
    def blocking(self) -> tuple[Pair, ...]:
        return tuple(p for p in self.pairs if p.blocking)

    @property
    def question(self) -> str:
        where = f"to {self.environment}" if self.environment else "with the versions given"
        return f"can {self.pacticipant} {self.version} be deployed {where}?"

    def report(self) -> str:
        """The answer as a person reads it: the verdict, then each pair, blocking ones first."""
        verdict = "yes" if self.deployable else "NO"
        lines = [f"{self.question} {verdict}"]
        if not self.pairs:
            lines.append("  no pact links it to what runs there: nothing to verify")
        for pair in sorted(self.pairs, key=lambda p: (not p.blocking, p.title)):
            lines.append(f"  {'BLOCKS' if pair.blocking else 'ok    '}  {pair.title}: {pair.why()}")
        lines += [f"  note: {notice}" for notice in self.notices]
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "pacticipant": self.pacticipant,
            "version": self.version,
            "environment": self.environment,
            "deployable": self.deployable,
            "pairs": [p.to_json() for p in self.pairs],
            "notices": list(self.notices),
        }

    def junit(self) -> str:
        """The answer as a JUnit report: one test case per pair, and one for the verdict."""
        suite = ElementTree.Element(
            "testsuite",
            name=f"can-i-deploy {self.pacticipant} {self.version}" + (f" to {self.environment}" if self.environment else ""),
            tests=str(len(self.pairs) + 1),
            failures=str(len(self.blocking) + (0 if self.deployable else 1)),
            errors="0",
        )
        for pair in self.pairs:
            case = ElementTree.SubElement(suite, "testcase", classname="can-i-deploy", name=pair.title)
            if pair.blocking:
                ElementTree.SubElement(case, "failure", message=pair.status).text = pair.why()
        verdict = ElementTree.SubElement(suite, "testcase", classname="can-i-deploy", name=self.question)
        if not self.deployable:
            ElementTree.SubElement(verdict, "failure", message="not deployable").text = self.report()
        ElementTree.indent(suite)
        return '<?xml version="1.0" encoding="utf-8"?>\n' + ElementTree.tostring(suite, encoding="unicode") + "\n"


def pair_status(store: ContractStore, pact: Pact, provider_version: str) -> Pair:
    """How ``provider_version`` fared against ``pact``: its newest result decides."""
    verification = store.latest_verification(pact, provider_version)
    status: Status
    if verification is None:
        status = "never verified"
    elif verification.success:
        status = "verified"
    elif verification.pending or verification.wip:
        status = "pending"
    else:
        status = "failed"
    return Pair(pact.consumer, pact.consumer_version, pact.provider, provider_version, pact.sha, status, verification)


def can_i_deploy(store: ContractStore, pacticipant: str, version: str, environment: str) -> Decision:
    """May ``version`` of ``pacticipant`` be deployed to ``environment``? Every pact between it and
    the versions deployed (or released and supported) there, in both directions, must have been
    verified successfully. An unknown participant, version or environment raises `UnknownError`."""
    candidate = store.version(pacticipant, version)
    store.environment(environment)
    running = [
        store.version(d.pacticipant, d.version) for d in store.deployed(environment) if d.pacticipant != pacticipant
    ]
    return decide(store, [candidate], running, environment)


def decide(
    store: ContractStore, selected: Sequence[Version], others: Iterable[Version], environment: str | None = None
) -> Decision:
    """The matrix between the ``selected`` versions and ``others`` (and among the selected)."""
    everyone = {(v.pacticipant, v.number): v for v in [*selected, *others]}
    by_name: dict[str, list[str]] = {}
    for name, number in everyone:
        by_name.setdefault(name, []).append(number)
    pairs: dict[tuple[str, str, str, str], Pair] = {}
    notices: list[str] = []
    for chosen in selected:
        # As a consumer: its pacts with every provider version in the set.
        for pact in store.pacts_of(chosen.pacticipant, chosen.number):
            numbers = by_name.get(pact.provider, [])
            if not numbers and environment is not None:
                notices.append(
                    f"no version of {pact.provider} is deployed in {environment}: the pact "
                    f"{chosen.pacticipant} {chosen.number} has with it was not weighed (deploy {pact.provider} first)"
                )
            for number in numbers:
                pair = pair_status(store, pact, number)
                pairs[(pair.consumer, pair.consumer_version, pair.provider, pair.provider_version)] = pair
        # As a provider: the pacts every consumer version in the set has with it.
        for name, number in everyone:
            if name == chosen.pacticipant:
                continue
            try:
                pact = store.pact(name, number, chosen.pacticipant)
            except UnknownError:
                continue
            pair = pair_status(store, pact, chosen.number)
            pairs[(pair.consumer, pair.consumer_version, pair.provider, pair.provider_version)] = pair
    first = selected[0]
    ordered = tuple(sorted(pairs.values(), key=lambda p: (p.consumer, p.consumer_version, p.provider, p.provider_version)))
    return Decision(first.pacticipant, first.number, environment, ordered, tuple(dict.fromkeys(notices)))

