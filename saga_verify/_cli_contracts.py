"""``saga-verify contracts``: the contract store and the deployment gate from the command line:
publish, verify, create-environment, record-deployment, can-i-deploy, serve, diff and
check-events. Exit status 0 means yes (deployable, verified, compatible), 1 means no, 2 means the
input was bad (an unknown participant, a malformed file, a broker that does not answer)."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import json
import os
import signal
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from ._files import write_atomically

if TYPE_CHECKING:
    from .contracts import ContractStore, Decision, PactBroker, ProviderVerification

COMMANDS = ("publish", "verify", "create-environment", "record-deployment", "can-i-deploy", "serve", "diff", "check-events")
DEFAULT_STORE = ".saga-verify/contracts.db"


def add_parser(sub: Any) -> None:
    """Add ``contracts`` and its commands to the ``saga-verify`` parser."""
    contracts = sub.add_parser("contracts", help="the contract store and the deployment gate (publish, verify, can-i-deploy, ...)")
    commands = contracts.add_subparsers(dest="contracts_command", required=True, metavar="{" + ",".join(COMMANDS) + "}")

    def where(p: argparse.ArgumentParser, *, broker: bool = True) -> None:
        group = p.add_mutually_exclusive_group()
        group.add_argument("--store", default=DEFAULT_STORE, metavar="FILE", help=f"the contract store (default {DEFAULT_STORE})")
        if broker:
            group.add_argument("--broker", metavar="URL", help="a Pact Broker instead of the store (through the pact CLI)")

    def output(p: argparse.ArgumentParser) -> None:
        p.add_argument("--output", choices=("text", "json"), default="text", help="text (default) or json")

    publish = commands.add_parser("publish", help="publish pacts, OpenAPI documents and event schemas as a participant version")
    publish.add_argument("pacts", nargs="*", metavar="PACT", help="pact files, or folders of them")
    publish.add_argument("--version", required=True, help="the version of the participant publishing (for pacts: the consumer's)")
    publish.add_argument("--pacticipant", help="the participant publishing: needed for --openapi and --event-schema; picks its pacts from folders")
    publish.add_argument("--branch", help="the branch the version was built from")
    publish.add_argument("--tag", action="append", default=[], help="a tag for the version (repeatable)")
    publish.add_argument("--build-url", help="the CI build that made it")
    publish.add_argument("--openapi", action="append", default=[], metavar="FILE", help="an OpenAPI document the participant serves (repeatable)")
    publish.add_argument("--event-schema", action="append", default=[], metavar="FILE", help="the JSON Schema of an event it publishes (repeatable)")
    where(publish)

    verify = commands.add_parser("verify", help="verify a provider version against the pacts the store (or broker) selects, and publish the results")
    verify.add_argument("--provider", required=True, help="the provider's name")
    verify.add_argument("--provider-version", required=True, help="the provider version verified (the results are published for it)")
    verify.add_argument("--branch", help="the provider version's branch: pending pacts are decided per branch")
    target = verify.add_mutually_exclusive_group(required=True)
    target.add_argument("--app", metavar="MODULE:ATTR", help="the provider as an ASGI app (or a function returning one); MODULE may be a file.py")
    target.add_argument("--url", help="the base URL of a running provider")
    target.add_argument("--no-http", action="store_true", help="the provider has no HTTP API: it only publishes messages (needs --messages)")
    verify.add_argument("--states", metavar="MODULE:ATTR", help="a dict of provider state -> handler")
    verify.add_argument(
        "--messages", metavar="MODULE:ATTR",
        help="message producers: a dict of description -> producer, or a function of an httpx.Client on the provider "
        "(with --no-http: of the provider's name) returning them",
    )  # fmt: skip
    verify.add_argument("--selector", action="append", default=[], type=_selector, metavar="JSON", help='a consumer version selector, e.g. \'{"mainBranch": true}\' (repeatable; default: the latest pact of each consumer)')
    verify.add_argument("--no-pending", action="store_true", help="treat every pact as not pending: any failure fails")
    verify.add_argument("--wip-since", metavar="YYYY-MM-DD", help="also verify work-in-progress pacts published since then")
    verify.add_argument("--no-publish", action="store_true", help="do not publish the results")
    verify.add_argument("--build-url", help="the CI build that verified")
    verify.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the provider (default 10)")
    verify.add_argument("--junit", metavar="FILE", help="also write the results as a JUnit report")
    output(verify)
    where(verify)

    env = commands.add_parser("create-environment", help="create an environment (production, staging, ...)")
    env.add_argument("--name", required=True)
    env.add_argument("--display-name")
    env.add_argument("--production", action="store_true", help="it is a production environment")
    where(env)

    record = commands.add_parser("record-deployment", help="record that a participant version now runs in an environment")
    record.add_argument("--pacticipant", required=True)
    record.add_argument("--version", required=True)
    record.add_argument("--environment", required=True)
    record.add_argument("--application-instance", help="which instance, when several of one participant run there")
    where(record)

    gate = commands.add_parser("can-i-deploy", help="may this participant version go to this environment? exit 0 yes, 1 no")
    gate.add_argument("--pacticipant", required=True)
    gate.add_argument("--version", required=True)
    gate.add_argument("--to-environment", required=True, metavar="ENVIRONMENT")
    gate.add_argument("--junit", metavar="FILE", help="also write the answer as a JUnit report")
    output(gate)
    where(gate)

    serve = commands.add_parser("serve", help="serve the store over HTTP with the Pact Broker API the official clients use")
    serve.add_argument("--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=_port, default=9292, help="the port (default 9292; 0 picks a free one)")
    where(serve, broker=False)

    diff = commands.add_parser("diff", help="classify the changes between two versions of an OpenAPI document; exit 1 on a breaking one")
    diff.add_argument("old", help="the old document: a file, or NAME@VERSION in the store")
    diff.add_argument("new", help="the new document: a file, or NAME@VERSION in the store")
    diff.add_argument("--provider", help="the provider the document is for: its consumers' pacts say which changes break whom")
    diff.add_argument("--pacts", metavar="DIR", help="read the consumers' pacts from this folder instead of the store")
    output(diff)
    where(diff, broker=False)

    events = commands.add_parser("check-events", help="check event schema versions for compatibility per producer-consumer edge")
    events.add_argument("schemas", nargs="*", metavar="SCHEMA", help="event schema files or folders (newest versions last); the store's are checked too")
    events.add_argument("--mode", default="backward", type=_mode, help="backward (default), forward, full, their -transitive forms, or none")
    events.add_argument("--pacts", metavar="DIR", help="read the consumers' message pacts from this folder too")
    output(events)
    where(events, broker=False)


def _selector(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not JSON: write a selector like '{{\"mainBranch\": true}}'") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"{text!r} is not a JSON object")
    from .contracts._selection import SELECTOR_KEYS

    unknown = sorted(set(value) - set(SELECTOR_KEYS))
    if unknown:
        raise argparse.ArgumentTypeError(f"selector {text!r} has unknown key(s) {', '.join(unknown)}; known: {', '.join(SELECTOR_KEYS)}")
    return value


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0..65535; 0 picks a free one)")
    return int(text)


def _mode(text: str) -> str:
    from .contracts._event_compat import MODES

    if text not in MODES:
        raise argparse.ArgumentTypeError(f"mode {text!r} is not one of: {', '.join(MODES)}")
    return text


def run(args: argparse.Namespace) -> int:
    """Run one ``contracts`` command; errors the user can fix are `SagaVerifyError`s (exit 2)."""
    command = args.contracts_command.replace("-", "_")
    handler: Callable[[argparse.Namespace], int] = globals()[f"_{command}"]
    return handler(args)


@contextmanager
def _store(args: argparse.Namespace, *, create: bool = False) -> Iterator[ContractStore]:
    from .contracts import ContractStore

    with ContractStore.open(args.store, create=create) as store:
        yield store


def _broker(args: argparse.Namespace) -> PactBroker | None:
    from .contracts import PactBroker

    return PactBroker(args.broker.rstrip("/")) if getattr(args, "broker", None) else None


# --- publish -------------------------------------------------------------------------------------


def _publish(args: argparse.Namespace) -> int:
    from .contracts import ContractError
    from .contracts._pact_files import load_pact, pacts_in

    if (args.openapi or args.event_schema) and not args.pacticipant:
        raise ContractError("--openapi and --event-schema need --pacticipant: the participant that publishes them")
    pacts: list[tuple[Path, dict[str, Any]]] = []
    for given in map(Path, args.pacts):
        if given.is_dir():
            pacts += [(p, d) for p, d in pacts_in(given) if args.pacticipant in (None, d["consumer"]["name"])]
        else:
            document = load_pact(given)
            if args.pacticipant and document["consumer"]["name"] != args.pacticipant:
                raise ContractError(f"{given} is {document['consumer']['name']!r}'s pact, not {args.pacticipant!r}'s")
            pacts.append((given, document))
    if args.pacts and not pacts:
        raise ContractError(f"no pact found in {', '.join(args.pacts)}" + (f" for {args.pacticipant!r}" if args.pacticipant else ""))
    documents = [_read_openapi(Path(f)) for f in args.openapi]
    schemas = [_read_event_schema(Path(f)) for f in args.event_schema]
    if not (pacts or documents or schemas):
        raise ContractError("nothing to publish: give pact files or folders, --openapi or --event-schema")
    broker = _broker(args)
    if broker is not None:
        if documents or schemas:
            raise ContractError("a Pact Broker keeps pacts only: publish OpenAPI documents and event schemas to the store")
        print(broker.publish([p for p, _ in pacts], args.version, branch=args.branch, tags=args.tag, build_url=args.build_url), end="")
        return 0
    lines = []
    with _store(args, create=True) as store, store.transaction():
        for path, document in pacts:
            pact = store.publish_pact(document, args.version, branch=args.branch, tags=args.tag, build_url=args.build_url, source=str(path))
            lines.append(f"published {pact.consumer} {pact.consumer_version}: its pact with {pact.provider} ({pact.sha[:12]}, from {path})")
        for path, text, _ in documents:
            store.publish_document(args.pacticipant, args.version, "openapi", path.name, text, branch=args.branch)
            lines.append(f"published {args.pacticipant} {args.version}: OpenAPI document {path.name}")
        for path, text, event_type in schemas:
            store.publish_document(args.pacticipant, args.version, "event-schema", event_type, text, branch=args.branch)
            lines.append(f"published {args.pacticipant} {args.version}: the schema of {event_type} (from {path})")
        if not pacts:
            store.add_version(args.pacticipant, args.version, branch=args.branch, tags=args.tag, build_url=args.build_url)
    print("\n".join(lines))
    print(f"into {args.store}")
    return 0


def _read_openapi(path: Path) -> tuple[Path, str, dict[str, Any]]:
    from .contracts._openapi_diff import load_openapi

    document, text = load_openapi(path)
    return path, text, document


def _read_event_schema(path: Path) -> tuple[Path, str, str]:
    from .contracts._event_compat import load_event_schema

    schema = load_event_schema(path)
    return path, schema.text, schema.event_type


# --- verify --------------------------------------------------------------------------------------


def _verify(args: argparse.Namespace) -> int:
    import httpx

    from .contracts import (
        BrokerSource,
        ProviderVerificationError,
        PublishResults,
        serve_asgi,
        serve_store,
        verify_provider,
    )

    states = _load(args.states, "--states") if args.states else {}
    if not isinstance(states, Mapping):
        raise _bad(f"--states {args.states!r} is a {type(states).__name__}, not a dict of state name -> handler")
    if args.no_http and not args.messages:
        raise _bad("--no-http needs --messages: a provider without an HTTP API is verified by the messages it publishes")
    factory = _load(args.messages, "--messages") if args.messages else None
    publish = None if args.no_publish else PublishResults(args.provider_version, branch=args.branch, build_url=args.build_url)
    app = _app(_load(args.app, "--app")) if args.app else None

    def source(url: str) -> BrokerSource:
        try:
            return BrokerSource(
                url, selectors=tuple(args.selector), include_pending=not args.no_pending, wip_since=args.wip_since,
                provider_branch=args.branch,
            )  # fmt: skip
        except ValueError as exc:
            raise _bad(str(exc)) from None

    def run_against(broker_url: str) -> ProviderVerification:
        if args.no_http:
            messages = factory(args.provider) if callable(factory) and not isinstance(factory, Mapping) else factory
            return verify_provider(
                args.provider, None, source(broker_url), states, messages=messages, publish=publish, timeout=args.timeout
            )
        served = serve_asgi(app, timeout=args.timeout) if app is not None else _given(args.url.rstrip("/"))
        with served as url, httpx.Client(base_url=url, timeout=args.timeout) as client:
            messages = factory(client) if callable(factory) and not isinstance(factory, Mapping) else factory
            return verify_provider(
                args.provider, url, source(broker_url), states, messages=messages, publish=publish, timeout=args.timeout
            )

    try:
        with _native_output_to_stderr():
            if args.broker:
                verification = run_against(args.broker.rstrip("/"))
            else:
                with _store(args) as store:
                    store.main_branch(args.provider)  # an unknown provider is bad input, not a failed verification
                    with serve_store(store) as url:
                        verification = run_against(url)
        failed = False
    except ProviderVerificationError as exc:
        verification, failed = exc.verification, True
    _show_verification(args, verification, failed)
    return 1 if failed else 0


@contextmanager
def _given(url: str) -> Iterator[str]:
    yield url


@contextmanager
def _native_output_to_stderr() -> Iterator[None]:
    """pact's native verifier writes its report to the process's standard output; send it to
    standard error, so that standard output holds only this command's answer (``--output json``)."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _app(value: Any) -> Any:
    """An ASGI app, or what a zero-argument function returns."""
    if callable(value) and not inspect.isclass(value):
        try:
            parameters = inspect.signature(value).parameters
        except (TypeError, ValueError):
            return value
        if not any(p.default is inspect.Parameter.empty for p in parameters.values()):
            return value()
    return value


def _show_verification(args: argparse.Namespace, verification: ProviderVerification, failed: bool) -> None:
    published = "not published" if args.no_publish else f"published to {'the broker' if args.broker else args.store}"
    if args.output == "json":
        print(json.dumps({
            "provider": verification.provider,
            "provider_version": args.provider_version,
            "ok": not failed,
            "results": published,
            "state_errors": list(verification.state_errors),
            "errors": list(verification.errors),
            "notes": list(verification.notes),
            "interactions": [
                {"consumer": i.consumer, "description": i.description, "ok": i.ok, "pending": i.pending, "mismatches": list(i.mismatches)}
                for i in verification.interactions
            ],
        }, indent=2))  # fmt: skip
    else:
        verdict = "FAILED" if failed else "verified"
        print(f"{args.provider} {args.provider_version}: {verdict} against {len(verification.interactions)} interaction(s); results {published}")
        for error in (*verification.state_errors, *verification.errors):
            print(f"  {error}")
        for note in verification.notes:
            print(f"  note: {note}")
        for interaction in verification.interactions:
            print(f"  {interaction.line()}")
            for mismatch in interaction.mismatches:
                print(f"      {mismatch}")
    if args.junit:
        write_atomically(Path(args.junit), _verification_junit(args.provider, args.provider_version, verification))


def _verification_junit(provider: str, version: str, verification: ProviderVerification) -> str:
    import xml.etree.ElementTree as ElementTree

    failures = [i for i in verification.interactions if not i.ok]
    suite = ElementTree.Element(
        "testsuite", name=f"pact verification of {provider} {version}", tests=str(len(verification.interactions)),
        failures=str(len(failures)), errors=str(len(verification.state_errors)),
    )  # fmt: skip
    for interaction in verification.interactions:
        case = ElementTree.SubElement(suite, "testcase", classname=f"{interaction.consumer}-{provider}", name=interaction.description)
        if not interaction.ok:
            kind = "skipped" if interaction.pending else "failure"
            ElementTree.SubElement(case, kind, message="pending: does not fail the build" if interaction.pending else "failed").text = "\n".join(interaction.mismatches)
    for error in verification.state_errors:
        ElementTree.SubElement(ElementTree.SubElement(suite, "testcase", classname=provider, name="provider states"), "error", message=error)
    ElementTree.indent(suite)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ElementTree.tostring(suite, encoding="unicode") + "\n"


def _load(ref: str, option: str) -> Any:
    """``module:attribute`` or ``path/to/file.py:attribute``."""
    module_name, colon, attribute = ref.rpartition(":")
    if not colon or not module_name or not attribute:
        raise _bad(f"{option} {ref!r}: write it as package.module:attribute or path/to/file.py:attribute")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            if not path.is_file():
                raise _bad(f"{option} {ref!r}: there is no file {path}")
            spec = importlib.util.spec_from_file_location(f"_saga_verify_loaded_{path.stem}", path)
            if spec is None or spec.loader is None:
                raise _bad(f"{option} {ref!r}: {path} cannot be imported")
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except ImportError as exc:
        raise _bad(f"{option} {ref!r}: {module_name!r} does not import ({exc})") from None
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise _bad(f"{option} {ref!r}: {module_name!r} has no {attribute!r}") from None


def _bad(message: str) -> Exception:
    from .errors import OptionError

    return OptionError(message)


# --- environments, deployments and the gate --------------------------------------------------------


def _create_environment(args: argparse.Namespace) -> int:
    broker = _broker(args)
    if broker is not None:
        print(broker.create_environment(args.name, display_name=args.display_name, production=args.production), end="")
        return 0
    with _store(args, create=True) as store:
        env = store.create_environment(args.name, display_name=args.display_name, production=args.production)
    print(f"created the environment {env.name}{' (production)' if env.production else ''} in {args.store}")
    return 0


def _record_deployment(args: argparse.Namespace) -> int:
    broker = _broker(args)
    if broker is not None:
        print(broker.record_deployment(args.pacticipant, args.version, args.environment, application_instance=args.application_instance), end="")
        return 0
    with _store(args) as store:
        deployment = store.record_deployment(args.pacticipant, args.version, args.environment, application_instance=args.application_instance)
    instance = f" (instance {deployment.application_instance})" if deployment.application_instance else ""
    print(f"recorded: {deployment.pacticipant} {deployment.version} runs in {deployment.environment}{instance}")
    return 0


def _can_i_deploy(args: argparse.Namespace) -> int:
    from .contracts import can_i_deploy

    broker = _broker(args)
    decision: Decision
    if broker is not None:
        decision = broker.can_i_deploy(args.pacticipant, args.version, args.to_environment)
    else:
        with _store(args) as store:
            decision = can_i_deploy(store, args.pacticipant, args.version, args.to_environment)
    print(json.dumps(decision.to_json(), indent=2) if args.output == "json" else decision.report())
    if args.junit:
        write_atomically(Path(args.junit), decision.junit())
    return 0 if decision.deployable else 1


# --- serve ---------------------------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    from .contracts._broker_api import base_url, make_server

    with _store(args, create=True) as store:
        server = make_server(store, host=args.host, port=args.port)

        def stop(signum: int, frame: FrameType | None) -> None:
            raise KeyboardInterrupt

        previous = signal.signal(signal.SIGTERM, stop)
        print(f"serving the contract store {args.store} at {base_url(server)} (the Pact Broker API); Ctrl-C stops", flush=True)
        try:
            server.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
            server.server_close()
    return 0


# --- OpenAPI and event schema compatibility ---------------------------------------------------------


def _diff(args: argparse.Namespace) -> int:
    from .contracts import diff_openapi
    from .contracts._openapi_diff import load_openapi, parse_openapi

    def document(ref: str) -> tuple[str, dict[str, Any]]:
        path = Path(ref)
        if path.exists() or "@" not in ref:
            return ref, load_openapi(path)[0]
        name, _, version = ref.rpartition("@")
        with _store(args) as store:
            found = store.documents("openapi", pacticipant=name, version=version)
        if not found:
            raise _bad(f"{ref!r} is neither a file nor an OpenAPI document {name} {version} published to {args.store}")
        if len(found) > 1:
            raise _bad(f"{name} {version} published {len(found)} OpenAPI documents ({', '.join(d.name for d in found)}): give a file")
        return f"{ref} ({found[0].name})", parse_openapi(found[0].content, ref)

    old_name, old = document(args.old)
    new_name, new = document(args.new)
    pacts = _consumer_pacts(args, args.provider) if args.provider else None
    result = diff_openapi(old, new, consumers=pacts)
    print(json.dumps(result.to_json(), indent=2) if args.output == "json" else result.report(old_name, new_name))
    return 1 if result.breaking_for_someone else 0


def _consumer_pacts(args: argparse.Namespace, provider: str | None) -> list[Any]:
    """The consumers' pacts: from ``--pacts`` if given, and the store's (each consumer's latest and
    whatever is deployed) when it exists."""
    from .contracts._pact_files import pacts_in
    from .contracts._records import Pact, pact_sha

    found: dict[tuple[str, str], Any] = {}
    if args.pacts:
        folder = Path(args.pacts)
        if not folder.is_dir():
            raise _bad(f"--pacts {args.pacts!r} is not a folder")
        for path, document in pacts_in(folder):
            if provider is None or document["provider"]["name"] == provider:
                pact = Pact(document["consumer"]["name"], path.name, document["provider"]["name"], pact_sha(document), document)
                found[(pact.consumer, pact.sha)] = pact
    if Path(args.store).exists():
        with _store(args) as store:
            running = {(d.pacticipant, d.version) for d in store.deployed()}
            providers = [provider] if provider else store.pacticipants()
            for name in providers:
                publications = store.pacts_for(name)
                latest = {p.consumer: p for p in publications}
                for pact in publications:
                    if latest[pact.consumer] is pact or (pact.consumer, pact.consumer_version) in running:
                        found[(pact.consumer, pact.sha)] = pact
    return list(found.values())


def _check_events(args: argparse.Namespace) -> int:
    from .contracts import check_event_schemas
    from .contracts._event_compat import load_event_schema, schemas_in

    history = []
    if Path(args.store).exists():
        with _store(args) as store:
            for document in store.documents("event-schema"):
                history.append(load_event_schema(Path(f"{document.pacticipant} {document.version}"), document.content, producer=document.pacticipant))
    for given in map(Path, args.schemas):
        history += schemas_in(given) if given.is_dir() else [load_event_schema(given)]
    if not history:
        raise _bad(f"no event schema to check: give files or folders, or publish some to {args.store}")
    pacts = _consumer_pacts(args, None)
    result = check_event_schemas(history, pacts, mode=args.mode)
    print(json.dumps(result.to_json(), indent=2) if args.output == "json" else result.report())
    return 0 if result.compatible else 1
