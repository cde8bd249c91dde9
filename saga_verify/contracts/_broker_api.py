"""The contract store served over HTTP with the part of the Pact Broker API the official clients
use: pact's verifier (pacts for verification, pending and WIP pacts, publishing results) and the
``pact broker`` CLI (publish, create-environment, record-deployment, record-release,
can-i-deploy). Bad input gets a 4xx that says why, never a 5xx.

It runs on the standard library's threading HTTP server: the store is synchronous SQLite, the
API is a handful of routes, and ``saga-verify[contracts]`` then needs no web framework.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import http.server
import json
import re
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from . import _hal as hal
from ._errors import PactFileError
from ._gate import decide
from ._pact_files import check_pact
from ._records import StoreError, UnknownError, Version, check_name
from ._selection import check_selectors, select_pacts
from ._store import ContractStore

#: The largest request body taken (a pact of many interactions is well under it).
MAX_BODY = 16 * 1024 * 1024
HAL = "application/hal+json;charset=utf-8"


class ApiError(Exception):
    """Answered as a 4xx with a JSON body the clients print."""

    def __init__(self, status: int, message: str, field: str = "request") -> None:
        super().__init__(message)
        self.status = status
        self.field = field


@dataclass
class Request:
    method: str
    path: str
    query: list[tuple[str, str]]
    body: bytes
    urls: hal.Urls

    def json(self, *, empty_ok: bool = False) -> Any:
        if not self.body.strip():
            if empty_ok:
                return {}
            raise ApiError(400, "the request has no body: send a JSON object")
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise ApiError(400, f"the request body is not JSON: {exc}") from None

    def url(self) -> str:
        return self.urls.base + self.path


Handler = Callable[[ContractStore, Request, dict[str, str]], tuple[int, Any]]


def _route(pattern: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "/?$")


# --- resources -----------------------------------------------------------------------------------


def _index(store: ContractStore, request: Request, _: dict[str, str]) -> tuple[int, Any]:
    return 200, hal.index(request.urls)


def _object(value: Any, what: str = "the request body") -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ApiError(400, f"{what} must be a JSON object")
    return value


def _text(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise ApiError(400, f"{key} is required and must be a non-empty string", key)
    return value


def _optional(body: Mapping[str, Any], key: str) -> str | None:
    return None if body.get(key) is None else _text(body, key)


def _publish(store: ContractStore, request: Request, _: dict[str, str]) -> tuple[int, Any]:
    body = _object(request.json())
    name = _text(body, "pacticipantName")
    number = _text(body, "pacticipantVersionNumber")
    branch = _optional(body, "branch")
    build_url = _optional(body, "buildUrl")
    tags = body.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags):
        raise ApiError(400, "tags must be a list of names", "tags")
    contracts = body.get("contracts")
    if not isinstance(contracts, list) or not contracts:
        raise ApiError(400, "contracts must be a non-empty list", "contracts")
    documents = []
    for index, contract in enumerate(contracts):
        where = f"contracts[{index}]"
        contract = _object(contract, where)
        if contract.get("specification") != "pact":
            raise ApiError(400, f"{where}: only pacts are taken (specification 'pact'), not {contract.get('specification')!r}", where)
        try:
            text = base64.b64decode(str(contract.get("content") or ""), validate=True)
            document = check_pact(json.loads(text), where)
        except (binascii.Error, ValueError, PactFileError) as exc:
            raise ApiError(400, f"{where}: the content is not a base64-encoded pact: {exc}", where) from None
        for side, key in (("consumer", "consumerName"), ("provider", "providerName")):
            if contract.get(key) is not None and contract[key] != document[side]["name"]:
                raise ApiError(400, f"{where}: {key} {contract[key]!r} is not the pact's {side} {document[side]['name']!r}", where)
        if document["consumer"]["name"] != name:
            raise ApiError(400, f"{where}: the pact's consumer {document['consumer']['name']!r} is not {name!r}", where)
        documents.append(document)
    with store.transaction():
        published = [
            store.publish_pact(d, number, branch=branch, tags=tags, build_url=build_url, source=f"contracts[{i}]")
            for i, d in enumerate(documents)
        ]
    found = store.version(name, number)
    urls = request.urls
    notices = [
        {"type": "success", "text": f"Pact between {p.consumer} ({p.consumer_version}) and {p.provider} published ({p.sha[:12]})"}
        for p in published
    ]
    return 200, {
        "notices": notices,
        "logs": [{"level": n["type"], "message": n["text"], "deprecationWarning": "Replaced by notices"} for n in notices],
        "_embedded": {
            "pacticipant": {"name": name, "_links": {"self": hal.link(urls.pacticipant(name))}},
            "version": {
                "number": number,
                "_links": {"self": hal.link(urls.version(name, number), title="Version", name=number)},
            },
        },
        "_links": {
            "pb:pacticipant": hal.link(urls.pacticipant(name), title="Pacticipant", name=name),
            "pb:pacticipant-version": hal.link(urls.version(name, number), title="Pacticipant version", name=number),
            "pb:pacticipant-version-tags": [
                hal.link(f"{urls.version(name, number)}/tags/{hal.q(t)}", title="Tag", name=t) for t in found.tags
            ],
            "pb:contracts": [
                hal.link(urls.pact_publication(p), title="Pact", name=f"Pact between {p.consumer} and {p.provider}")
                for p in published
            ],
        },
    }


def _environments(store: ContractStore, request: Request, _: dict[str, str]) -> tuple[int, Any]:
    if request.method == "POST":
        body = _object(request.json())
        name = _text(body, "name")
        display = _optional(body, "displayName")
        production = body.get("production", False)
        if not isinstance(production, bool):
            raise ApiError(400, "production must be true or false", "production")
        contacts = body.get("contacts") or []
        if not isinstance(contacts, list) or not all(isinstance(c, dict) for c in contacts):
            raise ApiError(400, "contacts must be a list of objects", "contacts")
        try:
            store.environment(name)
        except UnknownError:
            pass
        else:
            raise ApiError(409, f"an environment named {name!r} exists already", "name")
        env = store.create_environment(name, display_name=display, production=production, contacts=contacts)
        return 201, hal.environment(request.urls, env)
    wanted = dict(request.query).get("name")
    found = [e for e in store.environments() if wanted is None or e.name == wanted]
    return 200, {
        "_embedded": {"environments": [hal.environment(request.urls, e) for e in found]},
        "_links": {"self": hal.link(request.url(), title="Environments")},
    }


def _environment(store: ContractStore, request: Request, args: dict[str, str]) -> tuple[int, Any]:
    return 200, hal.environment(request.urls, store.environment(args["uuid"]))


def _pacticipants(store: ContractStore, request: Request, _: dict[str, str]) -> tuple[int, Any]:
    return 200, {
        "_embedded": {"pacticipants": [hal.pacticipant(request.urls, store, n) for n in store.pacticipants()]},
        "_links": {"self": hal.link(request.url(), title="Pacticipants")},
    }


def _pacticipant(store: ContractStore, request: Request, args: dict[str, str]) -> tuple[int, Any]:
    store.main_branch(args["name"])
    return 200, hal.pacticipant(request.urls, store, args["name"])


def _versions(store: ContractStore, request: Request, args: dict[str, str]) -> tuple[int, Any]:
    found = list(reversed(store.versions(args["name"])))
    return 200, {
        "_embedded": {"versions": [hal.version(request.urls, store, v) for v in found]},
        "_links": {"self": hal.link(request.url())},
    }


def _version(store: ContractStore, request: Request, args: dict[str, str]) -> tuple[int, Any]:
    return 200, hal.version(request.urls, store, store.version(args["name"], args["number"]))


def _latest_version(store: ContractStore, request: Request, args: dict[str, str]) -> tuple[int, Any]:
    found = store.latest_version(args["name"])
    if found is None:
        raise UnknownError(f"{args['name']!r} has no versions")
    return 200, hal.version(request.urls, store, found)


def _branch_version(store: ContractStore, request: Request, args: dict[str, str]) -> tuple[int, Any]:
    request.json(empty_ok=True)
    store.main_branch(args["name"])  # a branch is recorded for a participant the store knows
    found = store.add_version(args["name"], args["number"], branch=args["branch"])
    return 200, hal.version(request.urls, store, found)


def _tag(store: ContractStore, request: Request, args: dict[str, str]) -> tuple[int, Any]:
    if request.method == "GET":
        found = store.version(args["name"], args["number"])
        if args["tag"] not in found.tags:
            raise UnknownError(f"{args['name']} {args['number']} has no tag {args['tag']!r}")
    else:
        request.json(empty_ok=True)
        store.main_branch(args["name"])
        found = store.add_version(args["name"], args["number"], tags=[args["tag"]])
    return (201 if request.method == "PUT" else 200), {
        "name": args["tag"],
        "_links": {"self": hal.link(request.url()), "pb:version": hal.link(request.urls.version(found.pacticipant, found.number))},
    }


def _record(store: ContractStore, request: Request, args: dict[str, str], kind: str) -> tuple[int, Any]:
    body = _object(request.json(empty_ok=True))
    env = store.environment(args["uuid"])
    if kind == "deployed":
        instance = body.get("applicationInstance", body.get("target"))
        if instance is not None and not isinstance(instance, str):
            raise ApiError(400, "applicationInstance must be a string", "applicationInstance")
        found = store.record_deployment(args["name"], args["number"], env.name, application_instance=instance)
    else:
        found = store.record_release(args["name"], args["number"], env.name)
    return 201, hal.deployment(request.urls, store, found)


def _deployment(store: ContractStore, request: Request, args: dict[str, str]) -> tuple[int, Any]:
    return 200, hal.deployment(request.urls, store, store.deployment(args["uuid"]))


def _for_verification(store: ContractStore, request: Request, args: dict[str, str]) -> tuple[int, Any]:
    provider = args["provider"]
    store.main_branch(provider)
    if request.method == "GET":
        return 200, {"_links": {"self": hal.link(request.url(), title="Pacts to be verified")}}
    body = _object(request.json(empty_ok=True))
    try:
        selectors = check_selectors(body.get("consumerVersionSelectors"))
    except StoreError as exc:
        raise ApiError(400, str(exc), "consumerVersionSelectors") from None
    pending = body.get("includePendingStatus", False)
    if not isinstance(pending, bool):
        raise ApiError(400, "includePendingStatus must be true or false", "includePendingStatus")
    branch = _optional(body, "providerVersionBranch")
    since = body.get("includeWipPactsSince")
    wip_since = None
    if since is not None:
        try:
            wip_since = date.fromisoformat(str(since)[:10])
        except ValueError:
            raise ApiError(400, f"includeWipPactsSince {since!r} is not a date", "includeWipPactsSince") from None
    found = select_pacts(
        store, provider, selectors, include_pending=pending, wip_since=wip_since, provider_branch=branch
    )
    return 200, hal.verifiable_pacts(request.urls, found, pending, request.url())


def _latest_provider_pacts(store: ContractStore, request: Request, args: dict[str, str]) -> tuple[int, Any]:
    found = select_pacts(store, args["provider"])
    return 200, {
        "_links": {
            "self": hal.link(request.url()),
            "pacts": [
                hal.link(request.urls.pact_version(v.pact), title=f"Pact between {v.pact.consumer} and {v.pact.provider}", name=v.pact.consumer)
                for v in found
            ],
        }
    }


def _pact_publication(store: ContractStore, request: Request, args: dict[str, str]) -> tuple[int, Any]:
    if "number" in args:
        pact = store.pact(args["consumer"], args["number"], args["provider"])
    else:
        latest = [p for p in store.pacts_for(args["provider"]) if p.consumer == args["consumer"]]
        if not latest:
            raise UnknownError(f"{args['consumer']!r} published no pact for {args['provider']!r}")
        pact = latest[-1]
    return 200, hal.pact_document(request.urls, pact)


def _pact_version(store: ContractStore, request: Request, args: dict[str, str]) -> tuple[int, Any]:
    metadata = args.get("metadata")
    if metadata:
        hal.decode_metadata(metadata)
    pact = store.pact_version(args["consumer"], args["provider"], args["sha"])
    return 200, hal.pact_document(request.urls, pact, metadata)


def _verification_results(store: ContractStore, request: Request, args: dict[str, str]) -> tuple[int, Any]:
    pact = store.pact_version(args["consumer"], args["provider"], args["sha"])
    if request.method == "GET":
        listed = [hal.verification(request.urls, v) for v in store.verifications(pact.consumer, pact.provider, pact.sha)]
        return 200, {"_embedded": {"verificationResults": listed}, "_links": {"self": hal.link(request.url())}}
    metadata = hal.decode_metadata(args["metadata"]) if args.get("metadata") else {}
    body = _object(request.json())
    success = body.get("success")
    if not isinstance(success, bool):
        raise ApiError(400, "success is required and must be true or false", "success")
    number = _text(body, "providerApplicationVersion")
    results = body.get("testResults") or []
    if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
        raise ApiError(400, "testResults must be a list of objects", "testResults")
    # The verifier names an interaction by the id the pact was served with: say which it was.
    described = {hal.interaction_id(i): i["description"] for i, _ in pact.interactions()}
    results = [
        {**r, "interactionDescription": r.get("interactionDescription") or described.get(str(r.get("interactionId")))}
        for r in results
    ]
    found = store.record_verification(
        pact.consumer,
        pact.provider,
        pact.sha,
        str(number),
        success=success,
        results=results,
        pending=bool(metadata.get("p")),
        wip=bool(metadata.get("w")),
        build_url=_optional(body, "buildUrl"),
    )
    return 201, hal.verification(request.urls, found)


def _verification(store: ContractStore, request: Request, args: dict[str, str]) -> tuple[int, Any]:
    if not args["id"].isdigit():
        raise UnknownError(f"there is no verification result {args['id']!r}")
    found = store.verification(int(args["id"]))
    if (found.consumer, found.provider, found.sha) != (args["consumer"], args["provider"], args["sha"]):
        raise UnknownError(f"there is no verification result {args['id']!r} for this pact")
    return 200, hal.verification(request.urls, found)


def _matrix(store: ContractStore, request: Request, _: dict[str, str]) -> tuple[int, Any]:
    selectors: list[dict[str, str]] = []
    ignored: list[dict[str, str]] = []
    options: dict[str, str] = {}
    for key, value in request.query:
        if key in ("q[][pacticipant]", "ignore[][pacticipant]"):
            (selectors if key.startswith("q") else ignored).append({"pacticipant": value})
        elif key.startswith(("q[][", "ignore[][")):
            target = selectors if key.startswith("q") else ignored
            if not target:
                raise ApiError(400, f"{key} comes before any {key.split('[]')[0]}[][pacticipant]", "q")
            target[-1][key.split("[")[-1].rstrip("]")] = value
        else:
            options[key] = value
    if not selectors:
        raise ApiError(400, "name at least one pacticipant: q[][pacticipant]=NAME", "q")
    environment = options.get("environment")
    try:
        chosen = [_resolve(store, s) for s in selectors]
        if environment is not None:
            store.environment(environment)
    except UnknownError as exc:  # as the Pact Broker does: a query naming what is not there is a bad query
        raise ApiError(400, str(exc), "q") from None
    if environment is not None:
        names = {v.pacticipant for v in chosen}
        others = [store.version(d.pacticipant, d.version) for d in store.deployed(environment) if d.pacticipant not in names]
    elif len(chosen) > 1:
        others = []
    else:
        # One version and no environment: with the latest (or latest tagged) version of each participant it is integrated with.
        others = _integrated_latest(store, chosen[0], options.get("tag"))
    skip = {(i["pacticipant"], i.get("version")) for i in ignored}
    others = [v for v in others if (v.pacticipant, None) not in skip and (v.pacticipant, v.number) not in skip]
    decision = decide(store, chosen, others, environment)
    return 200, hal.matrix(request.urls, store, decision)


def _resolve(store: ContractStore, selector: Mapping[str, str]) -> Version:
    name = selector["pacticipant"]
    if "version" in selector:
        return store.version(name, selector["version"])
    branch = selector.get("branch")
    if selector.get("mainBranch") == "true":
        branch = store.main_branch(name)
        if branch is None:
            raise UnknownError(f"{name!r} has no main branch")
    if selector.get("latest") == "true" or branch is not None or "tag" in selector:
        found = store.latest_version(name, branch=branch, tag=selector.get("tag"))
        if found is None:
            raise UnknownError(f"{name!r} has no version matching {dict(selector)!r}")
        return found
    raise ApiError(400, f"say which version of {name!r}: q[][version]=V, q[][latest]=true, q[][branch]=B or q[][tag]=T", "q")


def _integrated_latest(store: ContractStore, chosen: Version, tag: str | None) -> list[Version]:
    names = {p.provider for p in store.pacts_of(chosen.pacticipant, chosen.number)}
    names |= {p.consumer for p in store.pacts_for(chosen.pacticipant)}
    found = [store.latest_version(n, tag=tag) for n in sorted(names) if n != chosen.pacticipant]
    return [v for v in found if v is not None]


_P = "/pacts/provider/{provider}/consumer/{consumer}"
ROUTES: list[tuple[re.Pattern[str], frozenset[str], Handler]] = [
    (_route(pattern), frozenset(methods.split()), handler)
    for pattern, methods, handler in [
        ("", "GET", _index),
        ("/contracts/publish", "POST", _publish),
        ("/environments", "GET POST", _environments),
        ("/environments/{uuid}", "GET", _environment),
        ("/pacticipants", "GET", _pacticipants),
        ("/pacticipants/{name}", "GET", _pacticipant),
        ("/pacticipants/{name}/versions", "GET", _versions),
        ("/pacticipants/{name}/latest-version", "GET", _latest_version),
        ("/pacticipants/{name}/versions/{number}", "GET", _version),
        ("/pacticipants/{name}/versions/{number}/tags/{tag}", "GET PUT", _tag),
        ("/pacticipants/{name}/branches/{branch}/versions/{number}", "PUT", _branch_version),
        (
            "/pacticipants/{name}/versions/{number}/deployed-versions/environment/{uuid}",
            "POST",
            lambda s, r, a: _record(s, r, a, "deployed"),
        ),
        (
            "/pacticipants/{name}/versions/{number}/released-versions/environment/{uuid}",
            "POST",
            lambda s, r, a: _record(s, r, a, "released"),
        ),
        ("/deployed-versions/{uuid}", "GET", _deployment),
        ("/released-versions/{uuid}", "GET", _deployment),
        ("/pacts/provider/{provider}/for-verification", "GET POST", _for_verification),
        ("/pacts/provider/{provider}/latest", "GET", _latest_provider_pacts),
        (_P + "/version/{number}", "GET", _pact_publication),
        (_P + "/latest", "GET", _pact_publication),
        (_P + "/pact-version/{sha}", "GET", _pact_version),
        (_P + "/pact-version/{sha}/metadata/{metadata}", "GET", _pact_version),
        (_P + "/pact-version/{sha}/verification-results", "GET POST", _verification_results),
        (_P + "/pact-version/{sha}/metadata/{metadata}/verification-results", "POST", _verification_results),
        (_P + "/pact-version/{sha}/verification-results/{id}", "GET", _verification),
        ("/matrix", "GET", _matrix),
    ]
]


def answer(store: ContractStore, request: Request) -> tuple[int, Any]:
    """The status and JSON body for one request; bad input is a 4xx."""
    for pattern, methods, handler in ROUTES:
        match = pattern.match(request.path)
        if match is None:
            continue
        if request.method not in methods:
            return 405, {"error": f"{request.method} is not allowed on {request.path}; allowed: {', '.join(sorted(methods))}"}
        args = {k: unquote(v) for k, v in match.groupdict().items()}
        try:
            for key, value in args.items():
                if key not in ("metadata", "sha"):
                    check_name(key, value)
            return handler(store, request, args)
        except ApiError as exc:
            return exc.status, {"errors": {exc.field: [str(exc)]}}
        except UnknownError as exc:
            return 404, {"error": str(exc)}
        except StoreError as exc:
            return 400, {"errors": {"request": [str(exc)]}}
    return 404, {"error": f"nothing is served at {request.path}"}


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    store: ContractStore


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # Requests the base class refuses itself (a malformed request line, headers too long) are
    # answered in JSON too: the clients print what they are given.
    error_content_type = "application/json"
    error_message_format = '{"error": "%(code)d %(message)s: %(explain)s"}'

    def _serve(self) -> None:
        split = urlsplit(self.path)
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self.close_connection = True  # what follows on the connection is a body not read
            self._send(411, {"error": "send the request body with a Content-Length, not chunked"})
            return
        length = self.headers.get("Content-Length") or "0"
        if not length.isdigit() or int(length) > MAX_BODY:
            self._send(413 if length.isdigit() else 400, {"error": f"a request body of {length!r} bytes is not taken"})
            return
        body = self.rfile.read(int(length)) if int(length) else b""
        host = self.headers.get("Host") or base_url(self.server).removeprefix("http://")
        request = Request(
            self.command, split.path.rstrip("/") or "", parse_qsl(split.query, keep_blank_values=True), body,
            hal.Urls(f"http://{host}"),
        )  # fmt: skip
        try:
            status, payload = answer(self.server.store, request)
        except Exception as exc:  # a fault of ours, not of the request: say so, and what it was
            status, payload = 500, {"error": f"the contract store failed: {type(exc).__name__}: {exc}"}
        self._send(status, payload)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # The base class answers a method it has no handler for with 501: that is the request's fault.
        super().send_error(405 if code == 501 else code, message, explain)

    def _send(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", HAL)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the clients say what they did."""


@contextlib.contextmanager
def serve_store(store: ContractStore, *, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``store`` with the Pact Broker API on ``host``:``port`` (0: a free one) in a background
    thread; yield its base URL."""
    server = make_server(store, host=host, port=port)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True, name="saga-verify broker")
    thread.start()
    try:
        yield base_url(server)
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def make_server(store: ContractStore, *, host: str = "127.0.0.1", port: int = 0) -> _Server:
    try:
        server = _Server((host, port), _Handler)
    except OSError as exc:
        raise StoreError(f"cannot listen on {host}:{port}: {exc}") from exc
    # Loopback HTTP stalls on Nagle plus delayed ACKs.
    server.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    server.store = store
    return server


def base_url(server: _Server) -> str:
    host, port = server.server_address[:2]
    return f"http://{host!s}:{port}"
