"""Provider verification that fails fast and says what broke: a provider (an ASGI app or a URL)
replayed against its pacts from files or from a broker (pact-python's own broker support:
consumer version selectors, pending and WIP pacts, publishing the results).

pact-python (4.x, FFI based) is imported only inside the functions that use it.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import os
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from ._errors import (
    ContractError,
    PactFileError,
    ProviderStateError,
    ProviderUnreachableError,
)
from ._pact_files import HTTP, MESSAGE, interactions_of, load_pact, pacts_in, states, telemetry_off


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


class ProviderVerificationError(ContractError, AssertionError):
    """The provider does not honour its pacts; the message lists every failing interaction."""

    def __init__(self, message: str, verification: ProviderVerification) -> None:
        super().__init__(message)
        #: The whole result, for programmatic use.
        self.verification = verification


_SELECTOR_KEYS = {
    "consumer": "consumer",
    "tag": "tag",
    "fallbackTag": "fallback_tag",
    "latest": "latest",
    "deployedOrReleased": "deployed_or_released",
    "deployed": "deployed",
    "released": "released",
    "environment": "environment",
    "mainBranch": "main_branch",
    "branch": "branch",
    "matchingBranch": "matching_branch",
    "fallbackBranch": "fallback_branch",
}


@dataclass(frozen=True)
class BrokerSource:
    """Pacts to verify from a Pact Broker (or ``saga-verify contracts serve``), chosen by the broker
    the way pact's own verifier asks for them."""

    url: str
    selectors: tuple[Mapping[str, Any], ...] = ()
    """Consumer version selectors, as the broker spells them: ``{"mainBranch": True}``,
    ``{"deployedOrReleased": True}``, ``{"branch": "feat-x", "consumer": "order"}``. None: the broker's default."""
    include_pending: bool = True
    """Ask the broker which pacts are pending: a pending pact's failure does not fail the build."""
    wip_since: date | str | None = None
    """Also verify work-in-progress pacts published since this date (``"2024-01-31"``)."""
    provider_branch: str | None = None
    """The branch of the provider version being verified: pending is decided per branch."""
    token: str | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        for selector in self.selectors:
            unknown = sorted(set(selector) - set(_SELECTOR_KEYS))
            if unknown:
                raise ValueError(
                    f"consumer version selector {dict(selector)!r} has unknown key(s) {', '.join(unknown)}; "
                    f"known: {', '.join(_SELECTOR_KEYS)}"
                )
        if isinstance(self.wip_since, str):
            try:
                date.fromisoformat(self.wip_since)
            except ValueError:
                raise ValueError(f"wip_since {self.wip_since!r} is not a date (YYYY-MM-DD)") from None


@dataclass(frozen=True)
class PublishResults:
    """Publish the verification results to the broker the pacts came from, as this provider version."""

    version: str
    branch: str | None = None
    build_url: str | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProviderVerification:
    """The result of verifying one provider against its pacts."""

    provider: str
    url: str
    pact_files: tuple[Path, ...]
    """The pact files verified; empty when the pacts came from a broker."""
    interactions: tuple[InteractionResult, ...]
    state_errors: tuple[str, ...] = ()
    """State handlers that raised (reported instead of letting pact retry them for minutes)."""
    output: str = field(default="", repr=False)
    """The verifier's own report, without colour."""
    broker: str | None = None
    """The broker the pacts came from (and the results went to, when published)."""
    errors: tuple[str, ...] = ()
    """What failed outside any interaction: a pact that could not be loaded, say."""
    notes: tuple[str, ...] = ()
    """What the verifier said that fails nothing: that a broker had no pact for the provider."""

    @property
    def failures(self) -> tuple[InteractionResult, ...]:
        return tuple(i for i in self.interactions if not i.ok)


def verify_provider(
    provider: str,
    app_or_url: Any,
    pacts: str | os.PathLike[str] | BrokerSource,
    state_handlers: Mapping[str, StateHandler] | None = None,
    *,
    fail_on_pending: bool | None = None,
    timeout: float = 5.0,
    messages: MessageProducer | Mapping[str, MessageProducer] | None = None,
    publish: PublishResults | None = None,
) -> ProviderVerification:
    """Verify ``provider`` against every pact for it in ``pacts``: a folder, one file, or a
    `BrokerSource` (a Pact Broker, or the contract store served by ``saga-verify contracts serve``).

    ``app_or_url`` is an ASGI app, served with uvicorn on 127.0.0.1 (a free port, ``TCP_NODELAY``)
    for the length of the verification, or the base URL of a running provider. Every provider
    state the pacts name needs a handler in ``state_handlers``; with pact files a missing one
    raises `ProviderStateError` before anything runs, with a broker it fails the interactions that
    need it. A handler that raises is reported, not retried.

    Returns the result when every interaction passes; otherwise raises `ProviderVerificationError`
    listing each failing interaction. A failing pending interaction fails too unless
    ``fail_on_pending`` is False; by default it is True for pact files and False for a broker
    (the broker says which pacts are pending: a consumer's new expectation does not fail the
    provider's build until it has passed once). A missing or malformed pact raises
    `PactFileError`; a provider URL or a broker that does not answer within ``timeout`` seconds
    raises `ProviderUnreachableError`.

    Message pacts (asynchronous message interactions: the events a provider publishes) need
    ``messages``: one function that makes the message a description names, or a dict of them by
    description. Each must produce the message the way the provider really does (drive the
    provider, then read what it published), or the verification proves nothing. With pact files,
    a message interaction no producer covers raises `ProviderStateError` before anything runs.

    A provider that only publishes (no HTTP API: a consumer of a bus that emits events) is given
    ``app_or_url=None``; its pacts must then hold asynchronous messages only.

    ``publish`` sends the results to the broker as that provider version (pact's own publishing).
    """
    telemetry_off()
    handlers = dict(state_handlers or {})
    if isinstance(pacts, BrokerSource):
        source: _Source = _Source(broker=pacts)
        _check_broker(pacts, timeout)
        producer = _producer(messages)
        strict = False if fail_on_pending is None else fail_on_pending
    else:
        if publish is not None:
            raise PactFileError("verification results can be published only to a broker: give a BrokerSource")
        pact_files = _pacts_for(provider, Path(pacts))
        if app_or_url is None:
            _check_messages_only(provider, pact_files)
        _check_states(pact_files, handlers)
        producer = _check_messages(pact_files, messages)
        source = _Source(files=pact_files)
        strict = True if fail_on_pending is None else fail_on_pending
    if app_or_url is None:
        if producer is None:
            raise ProviderStateError(f"provider {provider!r} has no HTTP API (app_or_url=None): give messages=")
        return _run_verifier(provider, None, source, handlers, strict, timeout, producer, publish)
    if isinstance(app_or_url, str):
        url = app_or_url.rstrip("/")
        _check_answers(provider, url, timeout)
        return _run_verifier(provider, url, source, handlers, strict, timeout, producer, publish)
    with serve_asgi(app_or_url, timeout=timeout) as url:
        return _run_verifier(provider, url, source, handlers, strict, timeout, producer, publish)


@dataclass(frozen=True)
class _Source:
    files: Mapping[Path, Mapping[str, Any]] = field(default_factory=dict)
    broker: BrokerSource | None = None


def _producer(
    messages: MessageProducer | Mapping[str, MessageProducer] | None,
) -> Callable[[str], Mapping[str, Any] | bytes] | None:
    if messages is None or callable(messages):
        return messages
    table = dict(messages)

    def produce(description: str) -> Mapping[str, Any] | bytes:
        if description not in table:
            known = ", ".join(repr(d) for d in sorted(table)) or "none"
            raise LookupError(f"no message producer for {description!r} (producers given: {known})")
        return table[description](description)

    return produce


def _check_messages_only(provider: str, pact_files: Mapping[Path, Mapping[str, Any]]) -> None:
    """Without an HTTP API there is nothing to replay an HTTP interaction against."""
    http = [
        f"  {interaction['description']!r} in {path}"
        for path, document in pact_files.items()
        for interaction, kind in interactions_of(document)
        if kind != MESSAGE
    ]
    if http:
        raise PactFileError(
            f"provider {provider!r} was given no app or URL (app_or_url=None), but its pacts hold HTTP interactions:\n"
            + "\n".join(http)
        )


def _check_broker(broker: BrokerSource, timeout: float) -> None:
    if urlsplit(broker.url).hostname is None:
        raise ProviderUnreachableError(f"broker {broker.url!r} is not a URL")
    try:
        httpx.get(broker.url, timeout=timeout, headers={"Accept": "application/hal+json"})
    except httpx.TransportError as exc:
        raise ProviderUnreachableError(
            f"the broker at {broker.url} does not answer (waited up to {timeout:g} s): {exc or type(exc).__name__}"
        ) from exc


def _check_messages(
    pact_files: Mapping[Path, Mapping[str, Any]], messages: MessageProducer | Mapping[str, MessageProducer] | None
) -> Callable[[str], Mapping[str, Any] | bytes] | None:
    """The producer for the verifier, after checking that it covers every message interaction."""
    wanted = {
        interaction["description"]: path
        for path, document in pact_files.items()
        for interaction, kind in interactions_of(document)
        if kind == MESSAGE
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
        # Only pacts are read: a stray JSON file among them (a package.json, a schema) is not one.
        found = {path: doc for path, doc in pacts_in(source) if doc["provider"]["name"] == provider}
        if not found:
            raise PactFileError(f"no pact for provider {provider!r} in {source}")
    elif source.exists():
        document = load_pact(source)
        if document["provider"]["name"] != provider:
            raise PactFileError(
                f"pact file {source} is for provider {document['provider']['name']!r}, not {provider!r}"
            )
        found = {source: document}
    else:
        raise PactFileError(f"pact file {source} does not exist")
    for path, document in found.items():
        if not interactions_of(document):
            raise PactFileError(f"pact file {path} has no interactions")
        for interaction, kind in interactions_of(document):
            if kind not in (HTTP, MESSAGE):
                raise PactFileError(
                    f"pact file {path}: {interaction['description']!r} is a {kind} interaction; "
                    "verify_provider verifies HTTP interactions and asynchronous messages"
                )
    return found


def _check_states(pact_files: Mapping[Path, Mapping[str, Any]], handlers: Mapping[str, StateHandler]) -> None:
    missing: dict[str, dict[Path, list[str]]] = {}
    for path, document in pact_files.items():
        for interaction, _ in interactions_of(document):
            for state in states(interaction, path):
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
    url: str | None,
    source: _Source,
    handlers: Mapping[str, StateHandler],
    fail_on_pending: bool,
    timeout: float,
    producer: Callable[[str], Mapping[str, Any] | bytes] | None = None,
    publish: PublishResults | None = None,
) -> ProviderVerification:
    from pact import Verifier

    state_errors: list[str] = []

    def on_state(state: str, action: str, params: Mapping[str, Any]) -> None:
        # pact asks for the state "" around every interaction. It retries a state change that
        # fails with back-off for about two minutes, so an error is recorded and reported instead.
        if state == "" or action != "setup":
            return
        if state not in handlers:
            known = ", ".join(repr(h) for h in sorted(handlers)) or "none"
            state_errors.append(f"no state handler for {state!r} (handlers given: {known})")
            return
        try:
            handlers[state](ProviderState(state, dict(params), client))
        except Exception as exc:
            state_errors.append(f"state handler for {state!r} raised {type(exc).__name__}: {exc}")

    produce = None if producer is None else _message_contents(producer, state_errors)
    relay_host = urlsplit(url).hostname if produce is not None and url is not None else None
    with (
        _state_change_server(on_state, produce, _local_address(relay_host)) as state_url,
        # A provider without an HTTP API: pact's verifier still wants a base URL, and its message
        # requests go to our own server's port anyway.
        httpx.Client(base_url=url or _base_of(state_url), timeout=timeout) as client,
    ):
        url = url or _base_of(state_url)
        verifier = (
            Verifier(provider, host=urlsplit(url).hostname)
            .add_transport(url=url)
            .state_handler(state_url, body=True)
            .set_coloured_output(enabled=False)
            .set_request_timeout(int(timeout * 1000))
        )
        if produce is not None:
            verifier.add_transport(protocol="message", port=urlsplit(state_url).port, path=_MESSAGE_PATH)
        for path in source.files:
            verifier.add_source(path)
        if source.broker is not None:
            _add_broker(verifier, source.broker)
        if publish is not None:
            verifier.set_publish_options(
                publish.version, url=publish.build_url, branch=publish.branch, tags=list(publish.tags)
            )
        stopped = False
        try:
            verifier.verify()
        except RuntimeError:  # failures are read from the results below
            stopped = True
        results = verifier.results
        output = verifier.output(strip_ansi=True)

    interactions = tuple(_interaction_result(r) for r in results.get("interactionResults", []))
    expected = sum(len(interactions_of(d)) for d in source.files.values()) if source.broker is None else None
    errors, notes = _outside_interactions(results, interactions)
    if stopped and not (errors or notes or state_errors or any(not i.ok for i in interactions)):
        # Seen when pact's native core panics on a pact it cannot read: it stops, reports nothing
        # and calls the (empty) result a success. Unknown is not a pass.
        errors += ("pact's verifier stopped without a result (a pact it could not read?): see its log on standard error",)
    verification = ProviderVerification(
        provider,
        url,
        tuple(source.files),
        interactions,
        tuple(state_errors),
        output,
        broker=source.broker.url if source.broker else None,
        errors=errors,
        notes=notes,
    )
    failing = [i for i in interactions if not i.ok and (fail_on_pending or not i.pending)]
    counted = expected is None or len(interactions) == expected
    if failing or state_errors or errors or not counted:
        raise ProviderVerificationError(_failure_report(verification, failing, expected), verification)
    return verification


def _outside_interactions(
    results: Mapping[str, Any], interactions: tuple[InteractionResult, ...]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The verifier's errors that belong to no interaction (a pact it could not load), and apart
    from them the note that a broker had no pact to verify: nothing to verify fails nothing."""
    described = {i.description for i in interactions}
    found = []
    for error in results.get("errors", []):
        if not isinstance(error, Mapping) or error.get("interaction") in described:
            continue
        mismatch = error.get("mismatch")
        message = mismatch.get("message") if isinstance(mismatch, Mapping) else None
        found.append(f"{error.get('interaction') or 'error'}: {message or mismatch}")
    notes = tuple(f for f in found if "No pacts found for provider" in f)
    return tuple(f for f in found if f not in notes), notes


def _add_broker(verifier: Any, broker: BrokerSource) -> None:
    """Point pact's verifier at the broker with its own selector support."""
    credentials: dict[str, Any] = {"token": broker.token} if broker.token else {"username": broker.username, "password": broker.password}
    builder = verifier.broker_source(broker.url, selector=True, use_env=False, **credentials)
    builder = builder.include_pending() if broker.include_pending else builder.exclude_pending()
    if broker.wip_since is not None:
        builder = builder.include_wip_since(broker.wip_since)
    if broker.provider_branch:
        builder = builder.provider_branch(broker.provider_branch)
    for selector in broker.selectors:
        builder = builder.consumer_version(**{_SELECTOR_KEYS[k]: v for k, v in selector.items()})
    builder.build()


def _base_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


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


def _failure_report(
    verification: ProviderVerification, failing: list[InteractionResult], expected: int | None
) -> str:
    files = ", ".join(str(p) for p in verification.pact_files) or f"the pacts from {verification.broker}"
    lines = [
        f"provider {verification.provider!r} at {verification.url} fails {len(failing)} of "
        f"{len(verification.interactions)} interaction(s) in {files}"
    ]
    lines += [f"  {error}" for error in (*verification.state_errors, *verification.errors)]
    for result in failing:
        lines.append(f"  {result.line()}")
        lines += [f"      {m}" for m in result.mismatches]
    if expected is not None and len(verification.interactions) != expected:
        lines.append(
            f"  the verifier reported {len(verification.interactions)} interaction(s), the pacts hold {expected}"
        )
        lines.append(verification.output)
    return "\n".join(lines)
