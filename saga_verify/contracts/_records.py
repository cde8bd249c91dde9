"""What the contract store records, as values: participant versions, pacts, verification
results, environments, deployments and documents; the names it takes; and what identifies a
pact's content."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._errors import ContractError
from ._pact_files import interactions_of

_NAME = re.compile(r"[^\x00-\x1f\x7f/]{1,200}")


class StoreError(ContractError, ValueError):
    """The store file cannot be used (not a store, a newer schema, unreadable), or a request names
    something the store does not hold or cannot take (an unknown participant, a bad name)."""


class UnknownError(StoreError, LookupError):
    """A participant, version, environment or pact the store does not hold."""


def check_name(what: str, value: object) -> str:
    """A participant, branch, tag or environment name, or a version number: 1-200 characters, no
    control characters and no '/' (they appear in URLs)."""
    if not isinstance(value, str) or not _NAME.fullmatch(value) or value != value.strip():
        raise StoreError(
            f"{what} {value!r} cannot be used: give 1-200 characters without '/', control characters "
            "or surrounding spaces"
        )
    return value


def pact_sha(document: Mapping[str, Any]) -> str:
    """What identifies a pact's content: the hash of what affects its verification, so the same
    expectations published twice (by two consumer versions, by two clients that write different
    metadata or test names) are one pact version, verified once."""
    content = {k: v for k, v in document.items() if k not in ("metadata", "_links")}
    for key in ("interactions", "messages"):
        if isinstance(content.get(key), list):
            content[key] = [
                {k: v for k, v in i.items() if k not in ("comments", "_id")} if isinstance(i, dict) else i
                for i in content[key]
            ]
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:40]


@dataclass(frozen=True)
class Version:
    """A version of a participant, with its branches and tags."""

    pacticipant: str
    number: str
    branches: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    build_url: str | None = None
    created_at: str = ""
    id: int = field(default=0, compare=False, repr=False)

    @property
    def branch(self) -> str | None:
        """The branch it was last recorded on."""
        return self.branches[-1] if self.branches else None


@dataclass(frozen=True)
class Pact:
    """A pact one consumer version published for one provider."""

    consumer: str
    consumer_version: str
    provider: str
    sha: str
    content: Mapping[str, Any] = field(repr=False)
    created_at: str = ""
    pact_version_id: int = field(default=0, compare=False, repr=False)

    def interactions(self) -> list[tuple[dict[str, Any], str]]:
        return interactions_of(self.content)


@dataclass(frozen=True)
class Verification:
    """A provider version's verification of one pact version."""

    consumer: str
    provider: str
    provider_version: str
    sha: str
    success: bool
    pending: bool
    wip: bool
    results: tuple[Mapping[str, Any], ...] = field(default=(), repr=False)
    build_url: str | None = None
    created_at: str = ""
    id: int = field(default=0, compare=False, repr=False)

    def failed_interactions(self) -> tuple[str, ...]:
        """The descriptions (or ids) of the interactions the results say failed."""
        return tuple(
            str(r.get("interactionDescription") or r.get("interactionId") or "?")
            for r in self.results
            if r.get("success") is False
        )


@dataclass(frozen=True)
class Environment:
    name: str
    uuid: str
    display_name: str
    production: bool
    contacts: tuple[Mapping[str, Any], ...] = field(default=(), repr=False)
    created_at: str = ""
    id: int = field(default=0, compare=False, repr=False)


@dataclass(frozen=True)
class Deployment:
    """A version deployed (or released) to an environment."""

    uuid: str
    pacticipant: str
    version: str
    environment: str
    application_instance: str
    current: bool
    created_at: str = ""
    kind: str = "deployed"
    """``deployed`` (one per application instance at a time) or ``released`` (supported until ended)."""


@dataclass(frozen=True)
class Document:
    """An OpenAPI document or event schema a participant version published."""

    pacticipant: str
    version: str
    kind: str
    name: str
    content: str = field(repr=False)
    created_at: str = ""
