"""Reading pact documents (specification V2 to V4, HTTP and message pacts) with errors that name
the file, shared by the pact writer, the provider verification and the contract store."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ._errors import PactFileError

HTTP = "Synchronous/HTTP"
MESSAGE = "Asynchronous/Messages"
SYNC_MESSAGE = "Synchronous/Messages"


def telemetry_off() -> None:
    """The native pact library sends usage events unless told not to; call before it initialises."""
    os.environ["PACT_DO_NOT_TRACK"] = "true"


def pact_path(pact_dir: str | os.PathLike[str], consumer: str, provider: str) -> Path:
    """Where the pact between ``consumer`` and ``provider`` lives: ``<pact_dir>/<consumer>-<provider>.json``."""
    return Path(pact_dir) / f"{consumer}-{provider}.json"


def dump(document: Any) -> str:
    """The one layout every pact (and record) is written in: sorted keys, an indent of 2."""
    return json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def read_pact(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PactFileError(f"pact file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PactFileError(f"pact file {path} cannot be read: {exc}") from exc


def load_pact(path: Path) -> dict[str, Any]:
    """A pact file's JSON, checked enough to be merged, stored and verified; errors name the file."""
    return parse_pact(read_pact(path), path)


def parse_pact(text: str, path: Path | str) -> dict[str, Any]:
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise PactFileError(f"pact file {path} is not valid JSON: {exc}") from exc
    return check_pact(document, path)


def check_pact(document: Any, path: Path | str) -> dict[str, Any]:
    """``document`` if it is a pact: consumer and provider names, interactions (or V3 messages)
    that each have a description and well-formed provider states."""
    if not isinstance(document, dict):
        raise PactFileError(f"pact file {path} is not a JSON object")
    for side in ("consumer", "provider"):
        part = document.get(side)
        if not isinstance(part, dict) or not isinstance(part.get("name"), str) or not part["name"]:
            raise PactFileError(f"pact file {path} has no {side} name")
    for key in ("interactions", "messages"):
        entries = document.get(key, [])
        if not isinstance(entries, list):
            raise PactFileError(f"pact file {path}: {key!r} is not a list")
        for index, interaction in enumerate(entries):
            if not isinstance(interaction, dict) or not isinstance(interaction.get("description"), str):
                raise PactFileError(f"pact file {path}: {key} #{index} has no description")
            states(interaction, path)
            if key == "interactions" and interaction.get("type", HTTP) == HTTP:
                _check_http(interaction, path)
    return document


def _check_http(interaction: dict[str, Any], path: Path | str) -> None:
    """An HTTP interaction names a request (method, path) and a numeric status: pact's own core
    stops without a word on one that does not."""
    where = f"pact file {path}: {interaction['description']!r}"
    request, response = interaction.get("request"), interaction.get("response", {})
    if not isinstance(request, dict) or not isinstance(request.get("method"), str) or not isinstance(request.get("path"), str):
        raise PactFileError(f"{where} has no request method and path")
    if not isinstance(response, dict) or not isinstance(response.get("status", 200), int) or isinstance(response.get("status"), bool):
        raise PactFileError(f"{where}: its response status is not a number")


def looks_like_a_pact(document: Any) -> bool:
    """Whether a JSON document found among pacts claims to be one (names a consumer and a
    provider); anything else there (a package.json, a schema) is not ours to read."""
    return isinstance(document, dict) and all(
        isinstance(document.get(side), dict) and "name" in document[side] for side in ("consumer", "provider")
    )


def pacts_in(folder: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every pact among the ``*.json`` files of ``folder`` (sorted by name), checked. A file that is
    not JSON may be a broken pact and is an error; JSON that does not claim to be a pact is skipped."""
    for path in sorted(folder.glob("*.json")):
        if not path.is_file():
            continue
        text = read_pact(path)
        try:
            document = json.loads(text)
        except ValueError as exc:
            raise PactFileError(f"pact file {path} is not valid JSON: {exc}") from exc
        if looks_like_a_pact(document):
            yield path, check_pact(document, path)


def interactions_of(document: Mapping[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """Each interaction of a checked pact with its kind (`HTTP`, `MESSAGE`, `SYNC_MESSAGE`): V4
    says so in ``type``; V2/V3 ``interactions`` are HTTP and V3 ``messages`` asynchronous messages."""
    found = [(i, str(i.get("type", HTTP))) for i in document.get("interactions", [])]
    found += [(m, MESSAGE) for m in document.get("messages", [])]
    return found


def states(interaction: Mapping[str, Any], path: Path | str) -> list[str]:
    """The provider states an interaction is given (V3/V4 ``providerStates``, V2 ``providerState``)."""
    if "providerState" in interaction and "providerStates" not in interaction:
        state = interaction["providerState"]
        if not isinstance(state, str):
            raise PactFileError(f"pact file {path}: {interaction['description']!r} has a malformed providerState")
        return [state]
    found = interaction.get("providerStates", [])
    if not isinstance(found, list) or not all(isinstance(s, dict) and isinstance(s.get("name"), str) for s in found):
        raise PactFileError(f"pact file {path}: {interaction['description']!r} has malformed providerStates")
    return [s["name"] for s in found]
