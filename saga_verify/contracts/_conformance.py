"""OpenAPI conformance with Schemathesis: every check it has, against an app in this process or a
URL, with the failures as plain values that name the check, the operation and a reproduce line.

Schemathesis (4.x) is imported only when a run starts. The run is the one ``st run`` makes
(Schemathesis' engine): examples, the coverage phase (boundary and negative values, derived from
the schema without randomness), fuzzing with valid and invalid data, then the stateful phase that
follows the spec's OpenAPI links. Two adjustments make its verdicts fair to an idempotent receiver:

- Every generated request gets an ``Idempotency-Key`` of its own. Schemathesis draws keys from
  a small pool of strings ("0", "sku", ...), so two different requests would share one, and an
  idempotent provider must then reject the second (the key "was used for a different request"):
  the positive-data check would blame it for honouring its contract. The generated value is
  kept after a unique prefix, within the header's length limits; a key that is itself the
  invalid part of a request is left alone. Idempotency is checked by `check_idempotency`.
- With ``strict_integers=True`` an integer is sent as ``2``, never as ``2.0``. JSON Schema counts
  ``2.0`` as an integer, so Schemathesis sends it as valid data; a provider that (like pydantic in
  strict mode) takes only ``2`` would fail the positive-data check for it. No request changes
  validity: ``2`` and ``2.0`` are the same JSON Schema value.

Reproduce lines are Schemathesis' curl commands with its output sanitization kept for secrets
(``Authorization``, ``password``, ...) but not for idempotency keys: by default it hides every
header or field whose name contains "key", which would print ``Idempotency-Key: [Filtered]``
and ``charge_key: [Filtered]`` exactly where a reader needs to see which request is which.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import secrets
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from ..errors import OptionError
from ._errors import ContractError, ProviderUnreachableError, SpecError

if TYPE_CHECKING:
    from schemathesis.generation.case import Case
    from schemathesis.specs.openapi.schemas import OpenApiSchema

__all__ = [
    "ConformanceError",
    "ConformanceFailure",
    "ConformanceResult",
    "SpecError",
    "check_conformance",
]

#: Schemathesis' sensitive-name markers without "key": secrets stay hidden, idempotency keys show.
_SENSITIVE_MARKERS = ("token", "secret", "password", "passwd", "auth", "session", "credential")
_HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
#: JSON Schema keywords that only annotate: a header schema with nothing else is safe to rewrite.
_ANNOTATIONS = frozenset({"type", "minLength", "maxLength", "description", "title", "examples", "example"})


# --- errors and results ---------------------------------------------------------------------------


class ConformanceError(ContractError, AssertionError):
    """The provider does not conform to its OpenAPI document (or the run could not finish); the
    message lists every failure with its reproduce line."""

    def __init__(self, message: str, result: ConformanceResult) -> None:
        super().__init__(message)
        #: The whole result, for programmatic use.
        self.result = result


@dataclass(frozen=True)
class ConformanceFailure:
    """One check that failed on one operation."""

    check: str
    """The Schemathesis check: ``response_schema_conformance``, ``negative_data_rejection``, ..."""
    operation: str
    """The operation, as ``METHOD /path``."""
    message: str
    """What went wrong, in a line or two."""
    reproduce: str
    """The request(s) that show it, as curl commands (one per line; a stateful failure needs the
    chain of requests that led to it). For an app run in this process the host is
    ``testserver``: point it at wherever the app is served."""
    phase: str
    """Where Schemathesis found it: ``examples``, ``coverage``, ``fuzzing`` or ``stateful``."""

    def __str__(self) -> str:
        reproduce = "\n".join(f"      {line}" for line in self.reproduce.splitlines())
        return f"{self.check} on {self.operation} ({self.phase}): {self.message}\n    reproduce:\n{reproduce}"


@dataclass(frozen=True)
class ConformanceResult:
    """What a `check_conformance` run found."""

    spec: str
    """The OpenAPI document (its path, or ``<dict>``)."""
    target: str
    """The base URL, or ``asgi:<app class>`` for an app run in this process."""
    failures: tuple[ConformanceFailure, ...]
    errors: tuple[str, ...]
    """Problems that kept part of the run from happening (an operation's test crashed, the
    server stopped answering, ...): each is as serious as a failure."""
    operations: tuple[str, ...]
    """The operations the document declares."""
    checks: tuple[str, ...]
    """The checks that ran."""
    links: int
    """How many OpenAPI links the stateful phase could follow (0: it had nothing to chain)."""
    transitions: Mapping[str, int] = field(default_factory=dict)
    """Each link the stateful phase followed (``POST /charges -> 201 -> Refund -> POST /refunds``)
    and how many requests it made through it."""
    phases: Mapping[str, str] = field(default_factory=dict)
    """Each phase and how it ended: ``success``, ``failure``, ``error``, ``skip`` (and why)."""
    scenarios: int = 0
    """How many test scenarios ran (each is one generated request, or one stateful sequence)."""
    seed: int | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures and not self.errors

    def failures_of(self, check: str) -> list[ConformanceFailure]:
        return [failure for failure in self.failures if failure.check == check]

    def report(self) -> str:
        head = (
            f"OpenAPI conformance of {self.target} to {self.spec}: "
            f"{len(self.failures)} failure(s), {len(self.errors)} error(s) "
            f"in {self.scenarios} scenarios, {self.seconds:.1f} s, seed {self.seed}"
        )
        lines = [head]
        lines += [f"  {i}. {failure}" for i, failure in enumerate(self.failures, 1)]
        lines += [f"  error: {error}" for error in self.errors]
        return "\n".join(lines)


# --- loading the document -------------------------------------------------------------------------


def _load_spec(spec: str | os.PathLike[str] | Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """The document as a dict and how to name it; `SpecError` naming the file when it cannot be read."""
    if isinstance(spec, Mapping):
        document: Any = json.loads(json.dumps(spec))  # a private, JSON-clean copy
        name = "<dict>"
    else:
        path = Path(spec)
        name = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SpecError(f"OpenAPI document {name} does not exist") from None
        except (OSError, UnicodeDecodeError) as error:
            raise SpecError(f"OpenAPI document {name} cannot be read: {error}") from None
        document = _parse(text, name, json_only=path.suffix.lower() == ".json")
    if not isinstance(document, dict) or not isinstance(document.get("openapi"), str):
        raise SpecError(f"{name} is not an OpenAPI document: it has no 'openapi' version field at the top")
    if not str(document["openapi"]).startswith("3."):
        raise SpecError(f"{name} is OpenAPI {document['openapi']}; only OpenAPI 3.x documents are supported")
    if not isinstance(document.get("paths"), dict):
        raise SpecError(f"{name} is not a usable OpenAPI document: 'paths' is missing or not a mapping")
    dangling = _dangling_refs(document, document)
    if dangling:
        where, ref = dangling[0]
        more = f" (and {len(dangling) - 1} more)" if len(dangling) > 1 else ""
        raise SpecError(f"{name} is not a usable OpenAPI document: the $ref {ref!r} at {where} points nowhere{more}")
    return document, name


def _dangling_refs(document: Mapping[str, Any], node: Any, where: str = "") -> list[tuple[str, str]]:
    """Every local ``$ref`` that resolves to nothing, as (JSON Pointer of the reference, reference)."""
    found: list[tuple[str, str]] = []
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#") and _resolve(document, {"$ref": ref}) is None:
            found.append((where or "/", ref))
        for key, value in node.items():
            found += _dangling_refs(document, value, f"{where}/{str(key).replace('~', '~0').replace('/', '~1')}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _dangling_refs(document, value, f"{where}/{index}")
    return found


def _parse(text: str, name: str, *, json_only: bool) -> Any:
    if json_only:
        try:
            return json.loads(text)
        except ValueError as error:
            raise SpecError(f"OpenAPI document {name} is not valid JSON: {error}") from None
    import yaml  # type: ignore[import-untyped]  # PyYAML comes with Schemathesis

    try:
        # JSON is YAML; the safe loader builds plain values only.
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise SpecError(f"OpenAPI document {name} is not valid YAML: {error}") from None


def _header_schemas(document: Mapping[str, Any], header: str) -> dict[tuple[str, str], dict[str, Any]]:
    """``(METHOD, path) -> schema`` of the header parameter named ``header`` (any case) wherever
    an operation declares one, with local ``$ref`` resolved."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path, item in document.get("paths", {}).items():
        if not isinstance(item, dict):
            continue
        shared = item.get("parameters", [])
        for method, operation in item.items():
            if method not in _HTTP_METHODS or not isinstance(operation, dict):
                continue
            for parameter in [*shared, *operation.get("parameters", [])]:
                parameter = _resolve(document, parameter)
                if (
                    isinstance(parameter, dict)
                    and parameter.get("in") == "header"
                    and str(parameter.get("name", "")).lower() == header.lower()
                ):
                    schema = _resolve(document, parameter.get("schema", {}))
                    found[(method.upper(), path)] = schema if isinstance(schema, dict) else {}
    return found


def _resolve(document: Mapping[str, Any], value: Any) -> Any:
    """``value`` with local references (``#/components/...``) followed; None where one points nowhere."""
    for _ in range(16):  # a chain of references, not a cycle
        if not (isinstance(value, dict) and isinstance(value.get("$ref"), str) and value["$ref"].startswith("#")):
            return value
        node: Any = document
        for part in value["$ref"][1:].split("/")[1:]:
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict):
                node = node.get(part)
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                node = None
        value = node
    return value


# --- making generated requests fair to an idempotent receiver -------------------------------------


class _CaseAdjuster:
    """Schemathesis ``map_case`` hook: a unique idempotency key per request, integers as integers."""

    def __init__(self, header: str | None, schemas: Mapping[tuple[str, str], dict[str, Any]], strict_integers: bool):
        self.header = header
        self.schemas = schemas
        self.strict_integers = strict_integers
        # Unique across runs too, so that a live provider's stored keys never collide with ours.
        self.prefix = f"sv{secrets.token_hex(3)}-"
        self.counter = itertools.count(1)
        self.lock = threading.Lock()

    def __call__(self, context: Any, case: Case[Any]) -> Case[Any]:
        if self.header is not None:
            self._unique_key(case, self.header)
        if self.strict_integers and _has_whole_float(case.body):
            case.body = _whole_floats_as_ints(case.body)
        return case

    def _unique_key(self, case: Case[Any], header: str) -> None:
        schema = self.schemas.get((case.method.upper(), case.path))
        value = case.headers.get(header) if case.headers else None
        if schema is None or not isinstance(value, str) or not set(schema) <= _ANNOTATIONS:
            return
        if schema.get("type", "string") != "string":
            return
        low, high = int(schema.get("minLength", 0)), schema.get("maxLength")
        if len(value) < low or (high is not None and len(value) > int(high)):
            return  # the key is what makes this request invalid: keep it
        with self.lock:
            unique = f"{self.prefix}{next(self.counter)}-"
        new = unique + value
        if high is not None:
            new = new[: int(high)]
        if len(new) < max(low, len(unique)):
            return  # too short a limit to hold a unique key
        headers = case.headers.copy()
        for name in [name for name in headers if name.lower() == header.lower()]:
            del headers[name]
        headers[header] = new
        case.headers = headers


def _whole_floats_as_ints(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _whole_floats_as_ints(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_whole_floats_as_ints(item) for item in value]
    return value


def _has_whole_float(value: Any) -> bool:
    if isinstance(value, float):
        return value.is_integer()
    if isinstance(value, dict):
        return any(_has_whole_float(item) for item in value.values())
    if isinstance(value, list):
        return any(_has_whole_float(item) for item in value)
    return False


# --- the run --------------------------------------------------------------------------------------


def _config(
    *,
    seed: int | None,
    max_examples: int,
    stateful: bool,
    exclude_checks: Iterable[str],
    timeout: float,
    base_url: str | None,
) -> Any:
    from schemathesis.config import ConfigError, SchemathesisConfig

    checks: dict[str, Any] = {name: {"enabled": False} for name in exclude_checks}
    data: dict[str, Any] = {
        "generation": {
            "mode": "all",
            "max-examples": max_examples,
            # Derandomized and without an example database: the same seed sends the same requests.
            "deterministic": True,
            "database": "none",
        },
        "phases": {"stateful": {"enabled": stateful}},
        "checks": checks,
        "request-timeout": timeout,
        "output": {"sanitization": {"sensitive-markers": list(_SENSITIVE_MARKERS)}},
        # Nothing kept between runs (Schemathesis would keep state under ./.schemathesis).
        "cache": {"enabled": False},
        "suppress-health-check": ["too_slow"],
    }
    if seed is not None:
        data["seed"] = seed
    if base_url is not None:
        data["base-url"] = base_url
    try:
        return SchemathesisConfig.from_dict(data)
    except ConfigError as error:
        raise OptionError(f"check_conformance cannot configure Schemathesis: {error}") from None


def _probe(url: str, timeout: float) -> None:
    """Fail fast, naming the URL, when nothing answers there (any HTTP answer will do)."""
    try:
        httpx.get(url, timeout=timeout)
    except httpx.TransportError as error:
        raise ProviderUnreachableError(
            f"the provider at {url} does not answer: {type(error).__name__}: {error or 'no reply'} "
            f"(waited at most {timeout:g} s)"
        ) from error


def _short(title: str, message: str, limit: int = 240) -> str:
    """The title and the first paragraph of Schemathesis' message, on one line."""
    lines: list[str] = []
    for line in message.strip().splitlines():
        if not line.strip():
            break
        lines.append(line.strip())
    text = "; ".join(line for line in lines if line != title)
    text = f"{title}: {text}" if text else title
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_names(exclude_checks: Iterable[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the checks that run, the ones excluded); `OptionError` for a name Schemathesis lacks."""
    from schemathesis.checks import CHECKS, load_all_checks

    load_all_checks()
    known = CHECKS.get_all_names()
    excluded = tuple(dict.fromkeys(exclude_checks))
    unknown = [name for name in excluded if name not in known]
    if unknown:
        raise OptionError(
            f"exclude_checks names no Schemathesis check: {', '.join(unknown)}; the checks are {', '.join(sorted(known))}"
        )
    # max_response_time runs only with a limit, which check_conformance does not set.
    return tuple(name for name in known if name not in excluded and name != "max_response_time"), excluded


def check_conformance(
    spec: str | os.PathLike[str] | Mapping[str, Any],
    app_or_url: Any,
    *,
    max_examples: int = 50,
    seed: int | None = 0,
    stateful: bool = True,
    strict_integers: bool = False,
    idempotency_header: str | None = "Idempotency-Key",
    exclude_checks: Iterable[str] = (),
    timeout: float = 10.0,
    raise_on_failure: bool = True,
) -> ConformanceResult:
    """Test a provider against its OpenAPI document with Schemathesis and every check it has.

    ``spec`` is the document: a path (YAML or JSON) or a dict. ``app_or_url`` is an ASGI app,
    run in this process, or the base URL of a running provider (``http://127.0.0.1:8000``).

    The checks are all of Schemathesis': ``not_a_server_error``, ``status_code_conformance``,
    ``content_type_conformance``, ``response_schema_conformance``,
    ``response_headers_conformance``, ``negative_data_rejection`` (invalid data must be refused
    with a 4xx), ``positive_data_acceptance``, ``missing_required_header``,
    ``unsupported_method``, ``use_after_free``, ``ensure_resource_availability``, ``ignored_auth``
    and the others it registers; ``exclude_checks`` names any to skip. ``max_examples`` bounds
    the fuzzing of each operation and the stateful sequences; ``seed`` (None: random) fixes the
    data, so a run repeats exactly. ``stateful`` follows the document's OpenAPI links (a reply
    leading to the next call, such as a charge to its refund).

    ``idempotency_header`` names the header whose generated values are made unique per request
    (None: leave them as generated); ``strict_integers`` sends integers as ``2``, never ``2.0``
    (see the module's documentation for both). ``timeout`` bounds each request, and how long an
    unreachable URL is waited for.

    Returns a `ConformanceResult`. Unless ``raise_on_failure`` is False, raises
    `ConformanceError` (with the result) when any check failed or part of the run could not
    happen. A missing or malformed document raises `SpecError` naming the file; a URL where
    nothing answers raises `ProviderUnreachableError` naming it.
    """
    if max_examples < 1:
        raise OptionError(f"max_examples must be at least 1, not {max_examples}")
    if timeout <= 0:
        raise OptionError(f"timeout must be positive, not {timeout}")
    document, spec_name = _load_spec(spec)
    is_url = isinstance(app_or_url, str)
    if is_url:
        url = str(app_or_url).rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise OptionError(f"app_or_url must be an ASGI app or an http(s) URL, not {app_or_url!r}")
        target = url
        _probe(url, min(timeout, 5.0))
    elif callable(app_or_url):
        target = f"asgi:{type(app_or_url).__name__}"
    else:
        raise OptionError(f"app_or_url must be an ASGI app or an http(s) URL, not {app_or_url!r}")

    import schemathesis
    from schemathesis.core.errors import LoaderError

    checks, exclude_checks = _check_names(exclude_checks)
    config = _config(
        seed=seed,
        max_examples=max_examples,
        stateful=stateful,
        exclude_checks=exclude_checks,
        timeout=timeout,
        base_url=url if is_url else None,
    )
    try:
        schema = schemathesis.openapi.from_dict(document, config=config)
    except LoaderError as error:
        raise SpecError(f"{spec_name} is not a usable OpenAPI document: {error}") from None
    if not is_url:
        schema.app = app_or_url
    schemas = _header_schemas(document, idempotency_header) if idempotency_header else {}
    schema.hook("map_case")(_CaseAdjuster(idempotency_header, schemas, strict_integers))

    started = time.monotonic()
    try:
        result = _run(schema, document, spec_name=spec_name, target=target, seed=config.seed, checks=checks)
    finally:
        if not is_url:
            _stop_lifespan(app_or_url)
    result = dataclasses.replace(result, seconds=round(time.monotonic() - started, 3))
    if raise_on_failure and not result.ok:
        raise ConformanceError(result.report(), result)
    return result


def _operations(document: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(
        f"{method.upper()} {path}"
        for path, item in document.get("paths", {}).items()
        if isinstance(item, dict)
        for method in item
        if method in _HTTP_METHODS
    )


def _run(
    schema: OpenApiSchema, document: Mapping[str, Any], *, spec_name: str, target: str, seed: int, checks: tuple[str, ...]
) -> ConformanceResult:
    """Run Schemathesis' engine (what ``st run`` runs) and collect what it reports."""
    from schemathesis.engine import events, from_schema

    failures: dict[tuple[str, str, str], ConformanceFailure] = {}
    errors: list[str] = []
    phases: dict[str, str] = {}
    transitions: dict[str, int] = {}
    scenarios = 0
    links = schema.statistic.transitions.total
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            scenarios += 1
            phase = str(event.phase.value)
            for node in event.recorder.cases.values():
                if node.transition is not None and node.is_transition_applied:
                    transitions[node.transition.id] = transitions.get(node.transition.id, 0) + 1
            for nodes in event.recorder.checks.values():
                for check in nodes:
                    info = check.failure_info
                    if info is None:
                        continue
                    failure = info.failure
                    operation = failure.operation or event.recorder.label
                    message = _short(failure.title, failure.message)
                    key = (check.name, operation, message)
                    if key not in failures:
                        failures[key] = ConformanceFailure(check.name, operation, message, info.code_sample, phase)
        elif isinstance(event, events.NonFatalError):
            errors.append(f"{event.label}: {event.info.title}: {event.info.message}".strip())
        elif isinstance(event, events.FatalError):
            errors.append(f"Schemathesis stopped: {type(event.exception).__name__}: {event.exception}")
        elif isinstance(event, events.PhaseFinished):
            reason = event.phase.skip_reason
            phases[str(event.phase.name.value)] = str(event.status.value) + (f" ({reason.value})" if reason else "")
        elif isinstance(event, events.EngineFinished) and event.stop_reason.value not in ("completed", "failure_limit"):
            errors.append(f"the run stopped early: {event.stop_reason.value}")
    return ConformanceResult(
        spec=spec_name,
        target=target,
        failures=tuple(failures.values()),
        errors=tuple(errors),
        operations=_operations(document),
        checks=checks,
        links=links,
        transitions=dict(sorted(transitions.items())),
        phases=phases,
        scenarios=scenarios,
        seed=seed,
    )


def _stop_lifespan(app: Any) -> None:
    """End the lifespan Schemathesis started for ``app``: it keeps every app it served alive (and
    registered) for the rest of the process otherwise."""
    try:
        from schemathesis.python import asgi
    except ImportError:  # pragma: no cover - a Schemathesis without it started no lifespan
        return
    registry: dict[int, Any] | None = getattr(asgi, "_LIFESPANS", None)
    lock = getattr(asgi, "_LOCK", None)
    if registry is None or lock is None:
        return
    with lock:
        lifespan = registry.pop(id(app), None)
        getattr(asgi, "_STARTUP_LOCKS", {}).pop(id(app), None)
    if lifespan is not None and getattr(lifespan, "error", None) is None:
        lifespan.stop()

