"""Pact on both sides, made safe: consumer pacts written without losing or silently replacing
interactions (one private file per writer, merged under a file lock), and provider verification
that fails fast and says what broke.

pact-python (4.x, FFI based) is imported only inside the functions that use it.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import functools
import hashlib
import http.server
import json
import os
import socket
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload
from urllib.parse import urlsplit

import httpx

from .._files import write_atomically
from ..errors import SagaVerifyError

if TYPE_CHECKING:
    from pact import Pact
    from pact.interaction import AsyncMessageInteraction, HttpInteraction, SyncMessageInteraction



# --- errors -------------------------------------------------------------------------------------


class ContractError(SagaVerifyError):
    """Root of the errors the contract layer raises on purpose."""


class PactFileError(ContractError, ValueError):
    """A pact file (or folder of pacts) is missing, malformed, or holds no pact for the provider."""


class PactConflictError(ContractError):
    """Two interactions of one pact share a description but differ: pact-python would silently
    keep only the last one."""


class ProviderStateError(ContractError):
    """A pact needs a provider state that has no handler."""


class ProviderUnreachableError(ContractError):
    """The provider under verification does not answer."""


class ProviderVerificationError(ContractError, AssertionError):
    """The provider does not honour its pacts; the message lists every failing interaction."""

    def __init__(self, message: str, verification: ProviderVerification) -> None:
        super().__init__(message)
        #: The whole result, for programmatic use.
        self.verification = verification


def _telemetry_off() -> None:
    # The native library sends usage events unless told not to; set before pact initialises it.
    os.environ["PACT_DO_NOT_TRACK"] = "true"


# --- consumer side: writing pacts ---------------------------------------------------------------

#: Interactions written by one test run are checked against each other for conflicts; those left
#: in the file by an earlier run are simply replaced. pytest-xdist gives its workers one run id.
_PROCESS_RUN = f"process-{os.getpid()}-{uuid.uuid4().hex[:12]}"


def _default_run_id() -> str:
    return os.environ.get("PYTEST_XDIST_TESTRUNUID") or _PROCESS_RUN


def pact_path(pact_dir: str | os.PathLike[str], consumer: str, provider: str) -> Path:
    """Where the pact between ``consumer`` and ``provider`` lives: ``<pact_dir>/<consumer>-<provider>.json``."""
    return Path(pact_dir) / f"{consumer}-{provider}.json"


@functools.cache
def _checked_pact_class() -> type[Pact]:
    from pact import Pact

    class CheckedPact(Pact):
        """A Pact that refuses a second interaction with a description it already holds, where
        pact-python would silently replace the first."""

        @overload
        def upon_receiving(self, description: str, interaction: Literal["HTTP"] = ...) -> HttpInteraction: ...
        @overload
        def upon_receiving(self, description: str, interaction: Literal["Async"]) -> AsyncMessageInteraction: ...
        @overload
        def upon_receiving(self, description: str, interaction: Literal["Sync"]) -> SyncMessageInteraction: ...

        def upon_receiving(
            self, description: str, interaction: Literal["HTTP", "Sync", "Async"] = "HTTP"
        ) -> HttpInteraction | AsyncMessageInteraction | SyncMessageInteraction:
            seen: set[str] = self.__dict__.setdefault("_saga_verify_descriptions", set())
            if description in seen:
                raise PactConflictError(
                    f"the pact {self.consumer}-{self.provider} already has an interaction {description!r}; "
                    "pact-python would silently replace it: give each interaction its own description"
                )
            seen.add(description)
            return super().upon_receiving(description, interaction)

    CheckedPact.__module__ = __name__
    return CheckedPact


@contextlib.contextmanager
def consumer_pact(
    consumer: str, provider: str, pact_dir: str | os.PathLike[str], *, run_id: str | None = None
) -> Iterator[Pact]:
    """A fresh V4 ``pact.Pact`` for one consumer test, merged into ``<pact_dir>/<consumer>-<provider>.json``
    when the block ends without an exception (a mock server with unmatched requests raises, so
    nothing is written then).

    Safe under pytest-xdist and across processes: see `write_pact`. Declaring one description
    twice in the block raises `PactConflictError` at once.
    """
    _telemetry_off()
    pact = _checked_pact_class()(consumer, provider)
    yield pact
    write_pact(pact, pact_dir, run_id=run_id)


def write_pact(pact: Pact, pact_dir: str | os.PathLike[str], *, run_id: str | None = None) -> Path:
    """Merge ``pact``'s interactions into ``<pact_dir>/<consumer>-<provider>.json`` and return its path.

    pact-python's own writer loses interactions and fails when several processes write one file.
    Here the pact is first written to a private folder, then merged under an exclusive lock
    (``fcntl.flock``) and replaced atomically (temporary file + ``os.replace``). Interactions are
    deduplicated by description and sorted by it; the JSON has sorted keys and an indent of 2, so
    a regenerated pact diffs cleanly.

    Within one run (``run_id``; by default the pytest-xdist run, else this process), the same
    description with different content raises `PactConflictError`. An interaction an earlier run
    left in the file is replaced by this run's version; one no test writes any more stays until
    the file is deleted and regenerated.
    """
    _telemetry_off()
    with tempfile.TemporaryDirectory(prefix="saga-verify-pact-") as private:
        pact.write_file(private, overwrite=True)
        written = sorted(Path(private).glob("*.json"))
        if len(written) != 1:
            raise ContractError(f"pact-python wrote {len(written)} files for {pact.consumer}-{pact.provider}, not 1")
        fresh = _load_pact(written[0])
    target = pact_path(pact_dir, pact.consumer, pact.provider)
    _merge_into(target, fresh, run_id or _default_run_id())
    return target


def _digest(interaction: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(interaction, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _dump(document: Any) -> str:
    return json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


@contextlib.contextmanager
def _locked(target: Path) -> Iterator[Path]:
    """Hold an exclusive lock for ``target``; yield the path of this run's record for it. The lock
    lives in the temporary folder, not beside the pact, so the pacts folder holds only pacts."""
    name = hashlib.sha256(str(target.resolve()).encode()).hexdigest()[:24]
    folder = Path(tempfile.gettempdir()) / "saga-verify-pact-locks"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{name}.lock", "a+b") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield folder / f"{name}.run.json"
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _merge_into(target: Path, fresh: dict[str, Any], run_id: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target) as record_path:
        before = _read_pact(target) if target.exists() else None
        existing = None if before is None else _parse_pact(before, target)
        if existing is not None:
            for side in ("consumer", "provider"):
                if existing[side].get("name") != fresh[side].get("name"):
                    raise PactFileError(
                        f"{target}: its {side} is {existing[side].get('name')!r}, not {fresh[side].get('name')!r}"
                    )
        record = _read_record(record_path, run_id)
        merged = {i["description"]: i for i in (existing or {}).get("interactions", [])}
        for interaction in fresh["interactions"]:
            description = interaction["description"]
            digest = _digest(interaction)
            if record.setdefault(description, digest) != digest:
                raise PactConflictError(
                    f"{target}: two interactions are both described {description!r} but differ; "
                    "pact-python would silently keep only the last: give each its own description"
                )
            merged[description] = interaction
        document = {**(existing or {}), **{k: v for k, v in fresh.items() if k != "interactions"}}
        document["interactions"] = [merged[d] for d in sorted(merged)]
        text = _dump(document)
        if text != before:
            write_atomically(target, text)
        write_atomically(record_path, _dump({"run": run_id, "interactions": record}))


def _read_record(path: Path, run_id: str) -> dict[str, str]:
    """The descriptions (and content digests) this run has written so far; empty for a new run."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("run") != run_id or not isinstance(data.get("interactions"), dict):
        return {}
    return dict(data["interactions"])


def _load_pact(path: Path) -> dict[str, Any]:
    """A pact file's JSON, checked enough to be merged and verified; errors name the file."""
    return _parse_pact(_read_pact(path), path)


def _read_pact(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PactFileError(f"pact file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PactFileError(f"pact file {path} cannot be read: {exc}") from exc


def _parse_pact(text: str, path: Path) -> dict[str, Any]:
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise PactFileError(f"pact file {path} is not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise PactFileError(f"pact file {path} is not a JSON object")
    for side in ("consumer", "provider"):
        part = document.get(side)
        if not isinstance(part, dict) or not isinstance(part.get("name"), str):
            raise PactFileError(f"pact file {path} has no {side} name")
    interactions = document.get("interactions", [])
    if not isinstance(interactions, list):
        raise PactFileError(f"pact file {path}: 'interactions' is not a list")
    for index, interaction in enumerate(interactions):
        if not isinstance(interaction, dict) or not isinstance(interaction.get("description"), str):
            raise PactFileError(f"pact file {path}: interaction #{index} has no description")
        _states(interaction, path)
    return document


def _states(interaction: Mapping[str, Any], path: Path) -> list[str]:
    """The provider states an interaction is given (V3/V4 ``providerStates``, V2 ``providerState``)."""
    if "providerState" in interaction and "providerStates" not in interaction:
        state = interaction["providerState"]
        if not isinstance(state, str):
            raise PactFileError(f"pact file {path}: {interaction['description']!r} has a malformed providerState")
        return [state]
    states = interaction.get("providerStates", [])
    if not isinstance(states, list) or not all(isinstance(s, dict) and isinstance(s.get("name"), str) for s in states):
        raise PactFileError(f"pact file {path}: {interaction['description']!r} has malformed providerStates")
    return [s["name"] for s in states]


# --- provider side: verification ----------------------------------------------------------------


@dataclass(frozen=True)
class ProviderState:
    """What a state handler is given to put the provider into one state."""

    name: str
    params: Mapping[str, Any]
    """The parameters the consumer passed to ``given(name, ...)``."""
    client: httpx.Client
    """A client whose base URL is the provider under verification (inspection endpoints and all)."""


#: Puts the provider into a state before an interaction is replayed. Its return value is ignored.
StateHandler = Callable[[ProviderState], object]

#: Makes the message a message interaction describes, the way the provider really publishes it:
#: given the interaction's description, the JSON object (or its bytes). A dict of them is keyed
#: by description.
MessageProducer = Callable[[str], "Mapping[str, Any] | bytes"]


@dataclass(frozen=True)
class InteractionResult:
    """How one interaction of a pact fared against the provider."""

    consumer: str
    description: str
    states: tuple[str, ...]
    ok: bool
    pending: bool
    """A pending interaction's failure does not fail pact's own verification."""
    mismatches: tuple[str, ...] = ()

    def line(self) -> str:
        given = "".join(f" given {s!r}" for s in self.states)
        flag = "ok" if self.ok else "FAILED (pending)" if self.pending else "FAILED"
        return f"{flag}  {self.consumer}: {self.description!r}{given}"


@dataclass(frozen=True)
class ProviderVerification:
    """The result of verifying one provider against its pacts."""

    provider: str
    url: str
    pact_files: tuple[Path, ...]
    interactions: tuple[InteractionResult, ...]
    state_errors: tuple[str, ...] = ()
    """State handlers that raised (reported instead of letting pact retry them for minutes)."""
    output: str = field(default="", repr=False)
    """The verifier's own report, without colour."""

    @property
    def failures(self) -> tuple[InteractionResult, ...]:
        return tuple(i for i in self.interactions if not i.ok)


def verify_provider(
    provider: str,
    app_or_url: Any,
    pacts: str | os.PathLike[str],
    state_handlers: Mapping[str, StateHandler] | None = None,
    *,
    fail_on_pending: bool = True,
    timeout: float = 5.0,
    messages: MessageProducer | Mapping[str, MessageProducer] | None = None,
) -> ProviderVerification:
    """Verify ``provider`` against every pact for it in ``pacts`` (a folder or one file).

    ``app_or_url`` is an ASGI app, served with uvicorn on 127.0.0.1 (a free port, ``TCP_NODELAY``)
    for the length of the verification, or the base URL of a running provider. Every provider
    state the pacts name needs a handler in ``state_handlers``; a missing one raises
    `ProviderStateError` before anything runs. A handler that raises is reported, not retried.

    Returns the result when every interaction passes; otherwise raises `ProviderVerificationError`
    listing each failing interaction, pending ones included unless ``fail_on_pending`` is False.
    A missing or malformed pact raises `PactFileError`; a provider URL that does not answer within
    ``timeout`` seconds raises `ProviderUnreachableError`.

    Message pacts (asynchronous message interactions: the events a provider publishes) need
    ``messages``: one function that makes the message a description names, or a dict of them by
    description. Each must produce the message the way the provider really does (drive the
    provider, then read what it published), or the verification proves nothing. A message
    interaction no producer covers raises `ProviderStateError` before anything runs.
    """
    _telemetry_off()
    handlers = dict(state_handlers or {})
    pact_files = _pacts_for(provider, Path(pacts))
    _check_states(pact_files, handlers)
    producer = _check_messages(pact_files, messages)
    if isinstance(app_or_url, str):
        url = app_or_url.rstrip("/")
        _check_answers(provider, url, timeout)
        return _run_verifier(provider, url, pact_files, handlers, fail_on_pending, timeout, producer)
    with serve_asgi(app_or_url, timeout=timeout) as url:
        return _run_verifier(provider, url, pact_files, handlers, fail_on_pending, timeout, producer)


_MESSAGE = "Asynchronous/Messages"


def _check_messages(
    pact_files: Mapping[Path, Mapping[str, Any]], messages: MessageProducer | Mapping[str, MessageProducer] | None
) -> Callable[[str], Mapping[str, Any] | bytes] | None:
    """The producer for the verifier, after checking that it covers every message interaction."""
    wanted = {
        interaction["description"]: path
        for path, document in pact_files.items()
        for interaction in document["interactions"]
        if interaction.get("type") == _MESSAGE
    }
    if not wanted:
        return None
    if messages is None:
        lines = [f"  {description!r} in {path}" for description, path in sorted(wanted.items())]
        raise ProviderStateError(
            f"the pacts hold {len(wanted)} message interaction(s) and no message producer was given "
            "(verify_provider(..., messages=...)):\n" + "\n".join(lines)
        )
    if callable(messages):
        return messages
    table = dict(messages)
    missing = sorted(d for d in wanted if d not in table)
    if missing:
        known = ", ".join(repr(d) for d in sorted(table)) or "none"
        raise ProviderStateError(
            f"no message producer for {len(missing)} message interaction(s):\n"
            + "\n".join(f"  {d!r} in {wanted[d]}" for d in missing)
            + f"\n(producers given: {known})"
        )
    return lambda description: table[description](description)


def _pacts_for(provider: str, source: Path) -> dict[Path, dict[str, Any]]:
    if source.is_dir():
        files = sorted(source.glob("*.json"))
        found = {f: doc for f in files if (doc := _load_pact(f))["provider"]["name"] == provider}
        if not found:
            raise PactFileError(f"no pact for provider {provider!r} in {source}")
    elif source.exists():
        document = _load_pact(source)
        if document["provider"]["name"] != provider:
            raise PactFileError(
                f"pact file {source} is for provider {document['provider']['name']!r}, not {provider!r}"
            )
        found = {source: document}
    else:
        raise PactFileError(f"pact file {source} does not exist")
    for path, document in found.items():
        if not document["interactions"]:
            raise PactFileError(f"pact file {path} has no interactions")
        for interaction in document["interactions"]:
            kind = interaction.get("type", "Synchronous/HTTP")
            if kind not in ("Synchronous/HTTP", _MESSAGE):
                raise PactFileError(
                    f"pact file {path}: {interaction['description']!r} is a {kind} interaction; "
                    "verify_provider verifies HTTP interactions and asynchronous messages"
                )
    return found


def _check_states(pact_files: Mapping[Path, Mapping[str, Any]], handlers: Mapping[str, StateHandler]) -> None:
    missing: dict[str, dict[Path, list[str]]] = {}
    for path, document in pact_files.items():
        for interaction in document["interactions"]:
            for state in _states(interaction, path):
                if state not in handlers:
                    missing.setdefault(state, {}).setdefault(path, []).append(repr(interaction["description"]))
    if missing:
        lines = [
            f"  {state!r}, needed in {path} by {', '.join(descriptions)}"
            for state, uses in sorted(missing.items())
            for path, descriptions in uses.items()
        ]
        known = ", ".join(repr(h) for h in sorted(handlers)) or "none"
        raise ProviderStateError(
            f"no state handler for {len(missing)} provider state(s) the pacts need:\n"
            + "\n".join(lines)
            + f"\n(handlers given: {known})"
        )


def _check_answers(provider: str, url: str, timeout: float) -> None:
    if urlsplit(url).hostname is None:
        raise ProviderUnreachableError(f"provider {provider!r}: {url!r} is not a URL")
    try:
        httpx.get(f"{url}/health", timeout=timeout)
    except httpx.TransportError as exc:
        raise ProviderUnreachableError(
            f"provider {provider!r} at {url} does not answer (waited up to {timeout:g} s): {exc or type(exc).__name__}"
        ) from exc


@contextlib.contextmanager
def serve_asgi(app: Any, *, timeout: float = 5.0) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on 127.0.0.1 (a free port) in a background thread; yield its
    base URL once ``GET /health`` answers."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # Loopback HTTP stalls on Nagle plus delayed ACKs; accepted connections inherit this.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    # Listening before uvicorn runs lets the first request queue instead of being refused.
    sock.listen(128)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="auto"))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"saga-verify-asgi {url}", daemon=True
    )
    thread.start()
    try:
        try:
            httpx.get(f"{url}/health", timeout=timeout)
        except httpx.TransportError as exc:
            state = "running" if thread.is_alive() else "stopped (see its log)"
            raise ProviderUnreachableError(
                f"the app served at {url} did not answer GET /health within {timeout:g} s; the server is {state}"
            ) from exc
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()


_MESSAGE_PATH = "/_pact/message"


class _StateChangeServer(http.server.HTTPServer):
    on_state: Callable[[str, str, Mapping[str, Any]], None]
    produce: Callable[[str], bytes] | None = None


class _StateChange(http.server.BaseHTTPRequestHandler):
    """Answers pact's state-change requests (``{"state", "action", "params"}``) by calling the
    handler, and its message requests (``{"description", ...}`` to ``/_pact/message``) with the
    message the producer makes."""

    server: _StateChangeServer

    def do_POST(self) -> None:
        try:
            data = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        except ValueError:
            data = None
        if self.path == _MESSAGE_PATH:
            self._message(data)
            return
        if isinstance(data, dict):
            self.server.on_state(
                str(data.get("state") or ""), str(data.get("action") or "setup"), data.get("params") or {}
            )
        self.send_response(200 if isinstance(data, dict) else 400)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _message(self, data: Any) -> None:
        produce = self.server.produce
        description = data.get("description") if isinstance(data, dict) else None
        if produce is None or not isinstance(description, str):
            self.send_response(400 if produce else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        try:
            contents = produce(description)
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}".encode("utf-8", "replace")
            self.send_response(500)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(reason)))
            self.end_headers()
            self.wfile.write(reason)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        # pact reads the message's metadata from this header (base64 of a JSON object).
        self.send_header("Pact-Message-Metadata", base64.b64encode(b'{"contentType":"application/json"}').decode())
        self.send_header("Content-Length", str(len(contents)))
        self.end_headers()
        self.wfile.write(contents)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a state change is not worth a line on stderr."""


@contextlib.contextmanager
def _state_change_server(
    on_state: Callable[[str, str, Mapping[str, Any]], None],
    produce: Callable[[str], bytes] | None = None,
    host: str = "127.0.0.1",
) -> Iterator[str]:
    """A state-change endpoint of our own on 127.0.0.1, which also relays messages (at
    ``/_pact/message``) when ``produce`` is given. pact-python's own servers for both never close
    their listening sockets, and a ResourceWarning is an error in our test suite."""
    # pact sends message requests to the provider's host (at this server's port), so the server
    # listens there when that is an address of this machine (a container network's gateway, say).
    try:
        server = _StateChangeServer((host, 0), _StateChange)
    except OSError:
        host = "127.0.0.1"
        server = _StateChangeServer((host, 0), _StateChange)
    server.on_state = on_state
    server.produce = produce
    # A short poll interval: shutdown() waits for the next poll (0.5 s by default).
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="saga-verify pact states", daemon=True
    )
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}/_pact/state"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def _run_verifier(
    provider: str,
    url: str,
    pact_files: Mapping[Path, Mapping[str, Any]],
    handlers: Mapping[str, StateHandler],
    fail_on_pending: bool,
    timeout: float,
    producer: Callable[[str], Mapping[str, Any] | bytes] | None = None,
) -> ProviderVerification:
    from pact import Verifier

    state_errors: list[str] = []

    def on_state(state: str, action: str, params: Mapping[str, Any]) -> None:
        # pact asks for the state "" around every interaction. It retries a state change that
        # fails with back-off for about two minutes, so an error is recorded and reported instead.
        if state == "" or action != "setup":
            return
        try:
            handlers[state](ProviderState(state, dict(params), client))
        except Exception as exc:
            state_errors.append(f"state handler for {state!r} raised {type(exc).__name__}: {exc}")

    produce = None if producer is None else _message_contents(producer, state_errors)
    relay_host = urlsplit(url).hostname if produce is not None else None
    with (
        httpx.Client(base_url=url, timeout=timeout) as client,
        _state_change_server(on_state, produce, _local_address(relay_host)) as state_url,
    ):
        verifier = (
            Verifier(provider, host=urlsplit(url).hostname)
            .add_transport(url=url)
            .state_handler(state_url, body=True)
            .set_coloured_output(enabled=False)
            .set_request_timeout(int(timeout * 1000))
        )
        if produce is not None:
            verifier.add_transport(protocol="message", port=urlsplit(state_url).port, path=_MESSAGE_PATH)
        for path in pact_files:
            verifier.add_source(path)
        with contextlib.suppress(RuntimeError):  # failures are read from the results below
            verifier.verify()
        results = verifier.results
        output = verifier.output(strip_ansi=True)

    interactions = tuple(_interaction_result(r) for r in results.get("interactionResults", []))
    expected = sum(len(d["interactions"]) for d in pact_files.values())
    verification = ProviderVerification(provider, url, tuple(pact_files), interactions, tuple(state_errors), output)
    failing = [i for i in interactions if not i.ok and (fail_on_pending or not i.pending)]
    if failing or state_errors or len(interactions) != expected:
        raise ProviderVerificationError(_failure_report(verification, failing, expected), verification)
    return verification


def _local_address(host: str | None) -> str:
    """``host`` if it is an IP address (pact's message requests go there), else loopback."""
    import ipaddress

    try:
        return str(ipaddress.ip_address(host or ""))
    except ValueError:
        return "127.0.0.1"


def _message_contents(producer: Callable[[str], Mapping[str, Any] | bytes], errors: list[str]) -> Callable[[str], bytes]:
    def produce(description: str) -> bytes:
        try:
            made = producer(description)
        except Exception as exc:
            # Recorded here as well: pact reports a failing producer only as a mismatch.
            errors.append(f"message producer for {description!r} raised {type(exc).__name__}: {exc}")
            raise
        return made if isinstance(made, bytes) else json.dumps(made, sort_keys=True).encode()

    return produce


def _interaction_result(result: Mapping[str, Any]) -> InteractionResult:
    return InteractionResult(
        consumer=str(result.get("consumer", "?")),
        description=str(result.get("description", "?")),
        states=tuple(str(s) for s in result.get("providerStates", [])),
        ok=result.get("result") == "OK",
        pending=bool(result.get("pending", False)),
        mismatches=tuple(_mismatch_lines(result.get("mismatch"))),
    )


def _mismatch_lines(mismatch: Any) -> Iterator[str]:
    if not isinstance(mismatch, Mapping):
        return
    if mismatch.get("type") == "error" or "mismatches" not in mismatch:
        yield str(mismatch.get("message", mismatch))
        return
    for item in mismatch["mismatches"]:
        if not isinstance(item, Mapping):
            yield str(item)
            continue
        kind = item.get("type", "Mismatch")
        where = item.get("path") or item.get("key") or ""
        text = item.get("mismatch") or f"expected {item.get('expected')!r}, got {item.get('actual')!r}"
        yield f"{kind} {where}: {text}".replace(" :", ":")


def _failure_report(verification: ProviderVerification, failing: list[InteractionResult], expected: int) -> str:
    files = ", ".join(str(p) for p in verification.pact_files)
    lines = [
        f"provider {verification.provider!r} at {verification.url} fails {len(failing)} of "
        f"{len(verification.interactions)} interaction(s) in {files}"
    ]
    lines += [f"  {error}" for error in verification.state_errors]
    for result in failing:
        lines.append(f"  {result.line()}")
        lines += [f"      {m}" for m in result.mismatches]
    if len(verification.interactions) != expected:
        lines.append(
            f"  the verifier reported {len(verification.interactions)} interaction(s), the pacts hold {expected}"
        )
        lines.append(verification.output)
    return "\n".join(lines)
