"""The contract store's records in the shape the Pact Broker's HAL API gives them: the JSON the
official clients (pact's verifier, the ``pact broker`` CLI) read, with the links they follow."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from ._gate import Decision, Pair
from ._records import Deployment, Environment, Pact, StoreError, Verification, Version
from ._selection import VerifiablePact
from ._store import ContractStore


def q(segment: str) -> str:
    """One path segment, escaped (names may hold spaces and other characters)."""
    return quote(segment, safe="")


class Urls:
    """Where each resource lives, under the base URL the client used."""

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")

    def pacticipant(self, name: str) -> str:
        return f"{self.base}/pacticipants/{q(name)}"

    def version(self, name: str, number: str) -> str:
        return f"{self.pacticipant(name)}/versions/{q(number)}"

    def environment(self, env: Environment) -> str:
        return f"{self.base}/environments/{env.uuid}"

    def pact_publication(self, pact: Pact) -> str:
        return f"{self.base}/pacts/provider/{q(pact.provider)}/consumer/{q(pact.consumer)}/version/{q(pact.consumer_version)}"

    def pact_version(self, pact: Pact, metadata: str | None = None) -> str:
        url = f"{self.base}/pacts/provider/{q(pact.provider)}/consumer/{q(pact.consumer)}/pact-version/{pact.sha}"
        return f"{url}/metadata/{metadata}" if metadata else url

    def verification(self, verification: Verification) -> str:
        return (
            f"{self.base}/pacts/provider/{q(verification.provider)}/consumer/{q(verification.consumer)}"
            f"/pact-version/{verification.sha}/verification-results/{verification.id}"
        )

    def deployment(self, deployment: Deployment) -> str:
        kind = "deployed-versions" if deployment.kind == "deployed" else "released-versions"
        return f"{self.base}/{kind}/{deployment.uuid}"


def link(href: str, *, title: str | None = None, name: str | None = None, templated: bool = False) -> dict[str, Any]:
    found: dict[str, Any] = {"href": href}
    if title:
        found["title"] = title
    if name is not None:
        found["name"] = name
    if templated:
        found["templated"] = True
    return found


def index(urls: Urls) -> dict[str, Any]:
    b = urls.base
    return {
        "_links": {
            "self": link(b, title="Index"),
            "pb:publish-contracts": link(f"{b}/contracts/publish", title="Publish contracts"),
            "pb:pacticipants": link(f"{b}/pacticipants", title="Pacticipants"),
            "pb:pacticipant": link(f"{b}/pacticipants/{{pacticipant}}", title="Fetch pacticipant by name", templated=True),
            "pb:pacticipant-version": link(
                f"{b}/pacticipants/{{pacticipant}}/versions/{{version}}", title="Fetch pacticipant version", templated=True
            ),
            "pb:latest-version": link(
                f"{b}/pacticipants/{{pacticipant}}/latest-version", title="Latest pacticipant version", templated=True
            ),
            "pb:latest-provider-pacts": link(
                f"{b}/pacts/provider/{{provider}}/latest", title="Latest pacts by provider", templated=True
            ),
            "pb:provider-pacts-for-verification": link(
                f"{b}/pacts/provider/{{provider}}/for-verification", title="Pacts to be verified", templated=True
            ),
            "pb:environments": link(f"{b}/environments", title="Environments"),
            "pb:environment": link(f"{b}/environments/{{uuid}}", title="Environment", templated=True),
            "pb:matrix": link(f"{b}/matrix", title="The matrix of consumer and provider versions"),
            "curies": [{"name": "pb", "href": f"{b}/doc/{{rel}}?context=index", "templated": True}],
        }
    }


def pacticipant(urls: Urls, store: ContractStore, name: str) -> dict[str, Any]:
    here = urls.pacticipant(name)
    latest = store.latest_version(name)
    return {
        "name": name,
        "mainBranch": store.main_branch(name),
        "latestVersion": None if latest is None else {"number": latest.number},
        "_links": {
            "self": link(here, name=name),
            "pb:versions": link(f"{here}/versions"),
            "pb:version": link(f"{here}/versions/{{version}}", templated=True),
            "pb:version-tag": link(f"{here}/versions/{{version}}/tags/{{tag}}", templated=True),
            "pb:branch-version": link(f"{here}/branches/{{branch}}/versions/{{version}}", templated=True),
            "pb:latest-version": link(f"{here}/latest-version"),
        },
    }


def version(urls: Urls, store: ContractStore, found: Version) -> dict[str, Any]:
    here = urls.version(found.pacticipant, found.number)
    environments = store.environments()
    deployments = store.deployments_of(found.pacticipant, found.number)
    return {
        "number": found.number,
        "buildUrl": found.build_url,
        "createdAt": found.created_at,
        "_embedded": {
            "branchVersions": [
                {"name": b, "_links": {"self": link(f"{urls.pacticipant(found.pacticipant)}/branches/{q(b)}/versions/{q(found.number)}")}}
                for b in found.branches
            ],
            "tags": [{"name": t, "_links": {"self": link(f"{here}/tags/{q(t)}")}} for t in found.tags],
        },
        "_links": {
            "self": link(here, title="Version", name=found.number),
            "pb:pacticipant": link(urls.pacticipant(found.pacticipant), title="Pacticipant", name=found.pacticipant),
            "pb:tag": link(f"{here}/tags/{{tag}}", templated=True),
            # One link per environment, named by it: the CLI picks the one it records in.
            "pb:record-deployment": [
                link(f"{here}/deployed-versions/environment/{e.uuid}", title=f"Record deployment to {e.display_name}", name=e.name)
                for e in environments
            ],
            "pb:record-release": [
                link(f"{here}/released-versions/environment/{e.uuid}", title=f"Record release to {e.display_name}", name=e.name)
                for e in environments
            ],
            "pb:deployed-environments": [
                link(urls.deployment(d), title=f"Version deployed to {d.environment}", name=d.environment)
                for d in deployments
                if d.kind == "deployed" and d.current
            ],
        },
    }


def environment(urls: Urls, env: Environment) -> dict[str, Any]:
    return {
        "uuid": env.uuid,
        "name": env.name,
        "displayName": env.display_name,
        "production": env.production,
        "contacts": list(env.contacts),
        "createdAt": env.created_at,
        "_links": {"self": link(urls.environment(env), title="Environment", name=env.name)},
    }


def deployment(urls: Urls, store: ContractStore, found: Deployment) -> dict[str, Any]:
    env = store.environment(found.environment)
    body: dict[str, Any] = {
        "uuid": found.uuid,
        "createdAt": found.created_at,
        "_embedded": {
            "version": {"number": found.version, "_links": {"self": link(urls.version(found.pacticipant, found.version))}},
            "environment": environment(urls, env),
        },
        "_links": {"self": link(urls.deployment(found))},
    }
    if found.kind == "deployed":
        body.update(
            currentlyDeployed=found.current,
            applicationInstance=found.application_instance or None,
            target=found.application_instance or None,
        )
    else:
        body.update(currentlySupported=found.current)
    return body


def interaction_id(interaction: Mapping[str, Any]) -> str:
    """A stable id for an interaction, which pact's verifier sends back with its result."""
    key = json.dumps([interaction.get("description"), interaction.get("providerStates"), interaction.get("providerState")])
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def pact_document(urls: Urls, pact: Pact, metadata: str | None = None) -> dict[str, Any]:
    """The pact's content, its interactions given ids, with the links a verifier follows."""
    content: dict[str, Any] = json.loads(json.dumps(pact.content))
    for key in ("interactions", "messages"):
        for interaction in content.get(key, []):
            interaction["_id"] = interaction_id(interaction)
    here = urls.pact_version(pact, metadata)
    content["_links"] = {
        "self": link(here, title="Pact", name=f"Pact between {pact.consumer} and {pact.provider}"),
        "pb:consumer": link(urls.pacticipant(pact.consumer), title="Consumer", name=pact.consumer),
        "pb:consumer-version": link(
            urls.version(pact.consumer, pact.consumer_version), title="Consumer version", name=pact.consumer_version
        ),
        "pb:provider": link(urls.pacticipant(pact.provider), title="Provider", name=pact.provider),
        "pb:pact-version": link(urls.pact_version(pact), title="Pact content version permalink", name=pact.sha),
        "pb:publish-verification-results": link(f"{here}/verification-results", title="Publish verification results"),
    }
    return content


def encode_metadata(consumer_versions: Sequence[str], *, pending: bool, wip: bool) -> str:
    """What a pact URL for verification carries: which consumer versions it stands for and whether
    it was pending or a work in progress, so the result is recorded as such."""
    raw = json.dumps({"cv": list(consumer_versions), "p": pending, "w": wip}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_metadata(token: str) -> dict[str, Any]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except ValueError:
        raise StoreError(f"pact URL metadata {token!r} is not one this store wrote") from None
    if not isinstance(data, dict) or not isinstance(data.get("cv", []), list):
        raise StoreError(f"pact URL metadata {token!r} is not one this store wrote")
    return data


def verifiable_pacts(urls: Urls, found: Sequence[VerifiablePact], include_pending: bool, request_url: str) -> dict[str, Any]:
    pacts = []
    for item in found:
        properties: dict[str, Any] = {"notices": [dict(n) for n in item.notices]}
        if include_pending or item.wip:
            properties["pending"] = item.pending
        if item.wip:
            properties["wip"] = True
        token = encode_metadata(item.consumer_versions, pending=item.pending, wip=item.wip)
        pacts.append(
            {
                "shortDescription": item.short_description,
                "verificationProperties": properties,
                "_links": {
                    "self": link(
                        urls.pact_version(item.pact, token),
                        name=f"Pact between {item.pact.consumer} ({', '.join(item.consumer_versions)}) and {item.pact.provider}",
                    )
                },
            }
        )
    return {"_embedded": {"pacts": pacts}, "_links": {"self": link(request_url, title="Pacts to be verified")}}


def verification(urls: Urls, found: Verification) -> dict[str, Any]:
    return {
        "providerName": found.provider,
        "providerApplicationVersion": found.provider_version,
        "success": found.success,
        "pending": found.pending,
        "wip": found.wip,
        "verificationDate": found.created_at,
        "buildUrl": found.build_url,
        "testResults": list(found.results),
        "_links": {"self": link(urls.verification(found), title="Verification result")},
    }


def matrix(urls: Urls, store: ContractStore, decision: Decision) -> dict[str, Any]:
    """The matrix of a decision, in the shape ``pact broker can-i-deploy`` reads."""
    rows = [_matrix_row(urls, store, pair) for pair in decision.pairs]
    notices = [{"type": "danger", "text": f"{pair.title}: {pair.why()}"} for pair in decision.blocking]
    notices += [{"type": "warning", "text": notice} for notice in decision.notices]
    verdict = "yes" if decision.deployable else "no"
    notices.append({"type": "success" if decision.deployable else "danger", "text": f"{decision.question} {verdict}"})
    reason = (
        "All required verification results are published and successful"
        if decision.deployable
        else "\n".join(f"{pair.title}: {pair.why()}" for pair in decision.blocking)
    )
    return {
        "summary": {
            "deployable": decision.deployable,
            "reason": reason,
            "success": sum(p.status == "verified" for p in decision.pairs),
            "failed": sum(p.status in ("failed", "pending") for p in decision.pairs),
            "unknown": sum(p.status == "never verified" for p in decision.pairs),
        },
        "notices": notices,
        "matrix": rows,
    }


def _matrix_row(urls: Urls, store: ContractStore, pair: Pair) -> dict[str, Any]:
    pact = store.pact(pair.consumer, pair.consumer_version, pair.provider)
    result = None
    if pair.verification is not None:
        result = {
            "success": pair.verification.success,
            "verifiedAt": pair.verification.created_at,
            "_links": {"self": link(urls.verification(pair.verification))},
        }
    return {
        "consumer": {
            "name": pair.consumer,
            "version": {"number": pair.consumer_version, "_links": {"self": link(urls.version(pair.consumer, pair.consumer_version))}},
            "_links": {"self": link(urls.pacticipant(pair.consumer))},
        },
        "provider": {
            "name": pair.provider,
            "version": {"number": pair.provider_version, "_links": {"self": link(urls.version(pair.provider, pair.provider_version))}},
            "_links": {"self": link(urls.pacticipant(pair.provider))},
        },
        "pact": {"createdAt": pact.created_at, "_links": {"self": link(urls.pact_publication(pact))}},
        "verificationResult": result,
    }
