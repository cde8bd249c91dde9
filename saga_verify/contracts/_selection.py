"""Which pacts a provider verifies, decided the way a Pact Broker decides it: consumer version
selectors, pending pacts (a consumer's new expectation does not fail the provider's build until
it has passed once) and work-in-progress pacts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from ._records import Pact, StoreError, Version
from ._store import ContractStore

#: The selector keys understood, as the broker API spells them.
SELECTOR_KEYS = (
    "consumer",
    "tag",
    "fallbackTag",
    "latest",
    "deployedOrReleased",
    "deployed",
    "released",
    "environment",
    "mainBranch",
    "branch",
    "matchingBranch",
    "fallbackBranch",
)


@dataclass(frozen=True)
class VerifiablePact:
    """One pact content a provider is to verify, and why."""

    pact: Pact
    consumer_versions: tuple[str, ...]
    reasons: tuple[str, ...]
    pending: bool = False
    wip: bool = False
    notices: tuple[Mapping[str, str], ...] = field(default=(), repr=False)

    @property
    def short_description(self) -> str:
        return "; ".join(self.reasons)


def check_selectors(selectors: object) -> list[dict[str, Any]]:
    """Consumer version selectors from a request, checked: a list of objects with known keys and
    values of the right types."""
    if selectors is None:
        return []
    if not isinstance(selectors, list):
        raise StoreError("consumerVersionSelectors must be a list of objects")
    checked: list[dict[str, Any]] = []
    for selector in selectors:
        if not isinstance(selector, dict):
            raise StoreError(f"a consumer version selector must be an object, not {selector!r}")
        unknown = sorted(set(selector) - set(SELECTOR_KEYS))
        if unknown:
            raise StoreError(f"consumer version selector {selector!r} has unknown key(s): {', '.join(unknown)}")
        for key, value in selector.items():
            flag = key in ("latest", "deployedOrReleased", "deployed", "released", "mainBranch", "matchingBranch")
            if flag and not isinstance(value, bool):
                raise StoreError(f"consumer version selector key {key!r} takes true or false, not {value!r}")
            if not flag and not isinstance(value, str):
                raise StoreError(f"consumer version selector key {key!r} takes a name, not {value!r}")
        checked.append(selector)
    return checked


def select_pacts(
    store: ContractStore,
    provider: str,
    selectors: Sequence[Mapping[str, Any]] = (),
    *,
    include_pending: bool = False,
    wip_since: date | None = None,
    provider_branch: str | None = None,
) -> list[VerifiablePact]:
    """The pacts ``provider`` is to verify. With no selectors, the latest pact of each consumer.
    Each pact content comes once, with every consumer version that selected it."""
    store.main_branch(provider)  # an unknown provider is an error, not "nothing to verify"
    publications = store.pacts_for(provider)
    versions = {(p.consumer, p.consumer_version): store.version(p.consumer, p.consumer_version) for p in publications}
    chosen: dict[str, tuple[Pact, set[str], list[str]]] = {}
    for selector in selectors or [{"latest": True}]:
        for pact, reason in _select(store, publications, versions, selector, provider_branch):
            entry = chosen.setdefault(pact.sha, (pact, set(), []))
            entry[1].add(pact.consumer_version)
            if reason not in entry[2]:
                entry[2].append(reason)
            if _newer(versions, pact, entry[0]):
                chosen[pact.sha] = (pact, entry[1], entry[2])
    found = []
    for pact, numbers, reasons in chosen.values():
        pending = include_pending and is_pending(store, pact, provider_branch)
        found.append(
            VerifiablePact(
                pact, _ordered(versions, pact.consumer, numbers), tuple(reasons), pending, False,
                _notices(pact, reasons, pending, provider_branch, include_pending),
            )
        )  # fmt: skip
    if wip_since is not None:
        found += _wip(store, publications, versions, set(chosen), wip_since, provider_branch)
    return sorted(found, key=lambda v: (v.pact.consumer, v.consumer_versions))


def _newer(versions: Mapping[tuple[str, str], Version], pact: Pact, than: Pact) -> bool:
    return versions[(pact.consumer, pact.consumer_version)].id > versions[(than.consumer, than.consumer_version)].id


def _ordered(versions: Mapping[tuple[str, str], Version], consumer: str, numbers: set[str]) -> tuple[str, ...]:
    return tuple(sorted(numbers, key=lambda n: versions[(consumer, n)].id))


def _select(
    store: ContractStore,
    publications: Sequence[Pact],
    versions: Mapping[tuple[str, str], Version],
    selector: Mapping[str, Any],
    provider_branch: str | None,
) -> list[tuple[Pact, str]]:
    consumers = sorted({p.consumer for p in publications})
    if "consumer" in selector:
        consumers = [c for c in consumers if c == selector["consumer"]]
    picked: list[tuple[Pact, str]] = []
    for consumer in consumers:
        own = [p for p in publications if p.consumer == consumer]

        def on_branch(branch: str | None, own: list[Pact] = own) -> list[Pact]:
            return [p for p in own if branch is not None and branch in versions[(p.consumer, p.consumer_version)].branches]

        def with_tag(tag: str | None, own: list[Pact] = own) -> list[Pact]:
            return [p for p in own if tag is not None and tag in versions[(p.consumer, p.consumer_version)].tags]

        if selector.get("mainBranch"):
            branch = store.main_branch(consumer)
            picked += [(p, f"latest from {consumer}'s main branch {branch!r}") for p in on_branch(branch)[-1:]]
        elif selector.get("matchingBranch"):
            picked += [(p, f"latest from the matching branch {provider_branch!r}") for p in on_branch(provider_branch)[-1:]]
        elif "branch" in selector:
            matches = on_branch(selector["branch"])
            reason = f"latest from branch {selector['branch']!r}"
            if not matches and "fallbackBranch" in selector:
                matches = on_branch(selector["fallbackBranch"])
                reason = f"latest from branch {selector['fallbackBranch']!r} (branch {selector['branch']!r} has none)"
            picked += [(p, reason) for p in matches[-1:]]
        elif "tag" in selector:
            matches = with_tag(selector["tag"])
            tag = selector["tag"]
            if not matches and "fallbackTag" in selector:
                tag = selector["fallbackTag"]
                matches = with_tag(tag)
            if selector.get("latest"):
                matches = matches[-1:]
            picked += [(p, f"{'latest ' if selector.get('latest') else ''}with tag {tag!r}") for p in matches]
        elif selector.get("deployedOrReleased") or selector.get("deployed") or selector.get("released"):
            kinds = {"deployed", "released"} if selector.get("deployedOrReleased") else (
                {"deployed"} if selector.get("deployed") else {"released"}
            )  # fmt: skip
            where = selector.get("environment")
            current = {
                (d.version, d.environment)
                for d in store.deployed(where)
                if d.pacticipant == consumer and d.kind in kinds
            }
            for pact in own:
                environments = sorted(e for v, e in current if v == pact.consumer_version)
                if environments:
                    picked.append((pact, f"{' or '.join(sorted(kinds))} in {', '.join(environments)}"))
        else:
            picked += [(p, "latest") for p in own[-1:]]
    return picked


def is_pending(store: ContractStore, pact: Pact, provider_branch: str | None) -> bool:
    """Whether ``pact``'s content is pending for ``provider_branch``: no provider version on that
    branch has verified it successfully, nor any version before the branch began (a new branch
    inherits what was verified before it). Without a branch: never verified successfully."""
    successes = [v for v in store.verifications(pact.consumer, pact.provider, pact.sha) if v.success]
    if provider_branch is None:
        return not successes
    branch_started = [
        v.created_at for v in store.versions(pact.provider) if provider_branch in v.branches
    ]
    began = min(branch_started) if branch_started else None
    for verification in successes:
        verified_by = store.version(pact.provider, verification.provider_version)
        if provider_branch in verified_by.branches:
            return False
        if began is None or verification.created_at < began:
            return False
    return True


def _notices(
    pact: Pact, reasons: Sequence[str], pending: bool, provider_branch: str | None, include_pending: bool
) -> tuple[Mapping[str, str], ...]:
    notices = [
        {
            "when": "before_verification",
            "text": f"The pact between {pact.consumer} and {pact.provider} is verified because it matches: "
            + "; ".join(reasons),
        }
    ]
    if include_pending:
        where = f"a version on branch {provider_branch!r}" if provider_branch else "any version"
        if pending:
            notices.append({
                "when": "before_verification",
                "text": f"This pact is pending: {where} of {pact.provider} has not yet verified it successfully. "
                "If this verification fails, it will not fail the build.",
            })
        else:
            notices.append({
                "when": "before_verification",
                "text": f"This pact is not pending: {where} of {pact.provider} has verified it successfully. "
                "If this verification fails, it will fail the build.",
            })
    return tuple(notices)


def _wip(
    store: ContractStore,
    publications: Sequence[Pact],
    versions: Mapping[tuple[str, str], Version],
    chosen: set[str],
    since: date,
    provider_branch: str | None,
) -> list[VerifiablePact]:
    """Work in progress: the latest pact of each consumer branch, published since ``since``, not
    selected otherwise and pending; verified too, but never failing the build."""
    latest: dict[tuple[str, str], Pact] = {}
    for pact in publications:
        for branch in versions[(pact.consumer, pact.consumer_version)].branches:
            latest[(pact.consumer, branch)] = pact
    found: dict[str, VerifiablePact] = {}
    for (_, branch), pact in sorted(latest.items()):
        if pact.sha in chosen or pact.sha in found or pact.created_at[:10] < since.isoformat():
            continue
        if not is_pending(store, pact, provider_branch):
            continue
        reason = f"work in progress: latest from {pact.consumer}'s branch {branch!r}"
        notice = {
            "when": "before_verification",
            "text": f"The pact between {pact.consumer} and {pact.provider} is a work in progress ({reason}); "
            "if this verification fails, it will not fail the build.",
        }
        found[pact.sha] = VerifiablePact(pact, (pact.consumer_version,), (reason,), True, True, (notice,))
    return list(found.values())
