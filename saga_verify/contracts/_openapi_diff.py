"""Breaking changes between two versions of an OpenAPI document, in the manner of oasdiff: every
difference gets a rule id and a level (breaking, potentially breaking, safe). This module walks
paths, operations, parameters, request bodies and responses; whether one schema accepts what
another did is jsoncompat's to say. Given the consumers' pacts, a change breaks a consumer only
if its pact uses what changed, and the report names the consumers and their interactions."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from ._errors import SpecError
from ._pact_files import HTTP
from ._records import Pact

Level = Literal["breaking", "potentially breaking", "safe"]
Direction = Literal["request", "response"]

_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
#: Keywords that describe a schema without constraining it.
_ANNOTATIONS = {"description", "title", "example", "examples", "deprecated", "externalDocs", "$comment", "xml"}


@dataclass(frozen=True)
class Change:
    """One difference between the two documents."""

    rule: str
    level: Level
    operation: str
    """``METHOD /path`` (the new document's path where both have it)."""
    where: str
    """What in the operation changed: ``request body: amount``, ``response 201 body: charge_id``, ..."""
    detail: str = ""
    # What a consumer's interaction must do to be touched by the change:
    part: str = field(default="operation", repr=False, compare=False)
    status: str | None = field(default=None, repr=False, compare=False)
    field_path: tuple[str, ...] = field(default=(), repr=False, compare=False)
    parameter: tuple[str, str] | None = field(default=None, repr=False, compare=False)
    touches: Literal["uses", "lacks"] = field(default="uses", repr=False, compare=False)
    broken: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """(consumer, descriptions of its interactions the change touches), when pacts were given."""

    def line(self) -> str:
        text = f"{self.level:<21} {self.rule:<44} {self.operation}  {self.where}"
        return text + (f": {self.detail}" if self.detail else "")

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "level": self.level,
            "operation": self.operation,
            "where": self.where,
            "detail": self.detail,
            "consumers": [{"consumer": c, "interactions": list(d)} for c, d in self.broken],
        }


@dataclass(frozen=True)
class OpenApiDiff:
    """Every change from the old document to the new one; with the consumers' pacts, whom each breaks."""

    changes: tuple[Change, ...]
    consumers: tuple[str, ...] | None = None
    """The consumers whose pacts were weighed; None when no pact was given (every breaking change counts)."""

    @property
    def breaking(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.level == "breaking")

    @property
    def breaking_for_someone(self) -> bool:
        """What ``diff`` exits 1 on: a breaking change that a consumer's pact uses, or, with no
        pacts to tell, any breaking change."""
        if self.consumers is None:
            return bool(self.breaking)
        return any(c.broken for c in self.breaking)

    def report(self, old: str = "old", new: str = "new") -> str:
        lines = [f"{old} -> {new}: {len(self.changes)} change(s), {len(self.breaking)} breaking"]
        for change in self.changes:
            lines.append(f"  {change.line()}")
            for consumer, descriptions in change.broken:
                lines.append(f"      breaks {consumer}: {', '.join(repr(d) for d in descriptions)}")
            if self.consumers is not None and change.level == "breaking" and not change.broken:
                lines.append("      no consumer's pact uses it")
        if self.consumers is None:
            lines.append("no consumer pacts were weighed: every breaking change counts")
        else:
            lines.append(f"consumers weighed: {', '.join(self.consumers) or 'none'}")
        verdict = "BREAKING" if self.breaking_for_someone else "compatible"
        broken = sorted({c for change in self.breaking for c, _ in change.broken})
        lines.append(f"verdict: {verdict}" + (f" for {', '.join(broken)}" if broken else ""))
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "breaking": self.breaking_for_someone,
            "consumers_weighed": None if self.consumers is None else list(self.consumers),
            "changes": [c.to_json() for c in self.changes],
        }


# --- loading -------------------------------------------------------------------------------------


def load_openapi(path: Path) -> tuple[dict[str, Any], str]:
    """An OpenAPI document (YAML or JSON) from a file, checked to be one; errors name the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"OpenAPI document {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"OpenAPI document {path} cannot be read: {exc}") from exc
    return parse_openapi(text, str(path)), text


def parse_openapi(text: str, name: str) -> dict[str, Any]:
    import yaml  # type: ignore[import-untyped]  # PyYAML comes with the contracts extra

    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"OpenAPI document {name} is not valid YAML or JSON: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("openapi"), str):
        raise SpecError(f"{name} is not an OpenAPI 3 document (it has no 'openapi' version)")
    if not isinstance(document.get("paths", {}), dict):
        raise SpecError(f"OpenAPI document {name}: 'paths' is not an object")
    for path, item in document.get("paths", {}).items():
        if not isinstance(item, dict):
            raise SpecError(f"OpenAPI document {name}: path {path!r} is not an object")
    return document


def _inline(document: Mapping[str, Any]) -> dict[str, Any]:
    """The document with every local ``$ref`` replaced by what it points to (a recursive reference
    stays a reference: compared by name)."""

    def follow(ref: str) -> Any:
        node: Any = document
        for part in ref.lstrip("#/").split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, Mapping) or part not in node:
                raise SpecError(f"OpenAPI reference {ref!r} points nowhere")
            node = node[part]
        return node

    def walk(node: Any, seen: tuple[str, ...]) -> Any:
        if isinstance(node, Mapping):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#"):
                if ref in seen:
                    return {"$ref": ref}
                return walk(follow(ref), (*seen, ref))
            return {k: walk(v, seen) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, seen) for v in node]
        return node

    inlined: dict[str, Any] = walk(document, ())
    return inlined


# --- the walk ------------------------------------------------------------------------------------


def diff_openapi(
    old: Mapping[str, Any], new: Mapping[str, Any], *, consumers: Sequence[Pact] | None = None
) -> OpenApiDiff:
    """Every change from ``old`` to ``new`` (parsed OpenAPI documents), with a rule id and a level.
    With ``consumers`` (the pacts of the provider's consumers), each breaking or potentially
    breaking change names the consumers whose interactions use what changed."""
    before, after = _inline(old), _inline(new)
    changes = list(_paths(before.get("paths") or {}, after.get("paths") or {}))
    http_pacts = [p for p in consumers or [] if any(kind == HTTP for _, kind in p.interactions())]
    if not http_pacts:
        return OpenApiDiff(tuple(changes), None)
    weighed = [_with_consumers(c, http_pacts) if c.level != "safe" else c for c in changes]
    return OpenApiDiff(tuple(weighed), tuple(sorted({p.consumer for p in http_pacts})))


def _template(path: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", path)


def _paths(old: Mapping[str, Any], new: Mapping[str, Any]) -> Iterator[Change]:
    new_by_template = {_template(p): p for p in new}
    old_by_template = {_template(p): p for p in old}
    for template, path in sorted(old_by_template.items()):
        if template not in new_by_template:
            for method in _operations(old[path]):
                yield Change("api-path-removed", "breaking", f"{method.upper()} {path}", "the path", "removed", "operation")
            continue
        new_path = new_by_template[template]
        yield from _path_item(old[path], new_path, new[new_path])
    for template, path in sorted(new_by_template.items()):
        if template not in old_by_template:
            for method in _operations(new[path]):
                yield Change("api-path-added", "safe", f"{method.upper()} {path}", "the path", "added")


def _operations(item: Mapping[str, Any]) -> list[str]:
    return [m for m in _METHODS if isinstance(item.get(m), Mapping)]


def _path_item(old: Mapping[str, Any], path: str, new: Mapping[str, Any]) -> Iterator[Change]:
    for method in _operations(old):
        operation = f"{method.upper()} {path}"
        if method not in _operations(new):
            deprecated = " (it was deprecated)" if old[method].get("deprecated") else ""
            yield Change("api-removed", "breaking", operation, "the operation", f"removed{deprecated}", "operation")
            continue
        yield from _operation(operation, old, old[method], new, new[method])
    for method in _operations(new):
        if method not in _operations(old):
            yield Change("api-added", "safe", f"{method.upper()} {path}", "the operation", "added")


def _parameters(item: Mapping[str, Any], operation: Mapping[str, Any]) -> dict[tuple[str, str], Mapping[str, Any]]:
    found: dict[tuple[str, str], Mapping[str, Any]] = {}
    for parameter in [*item.get("parameters", []), *operation.get("parameters", [])]:
        if isinstance(parameter, Mapping) and isinstance(parameter.get("name"), str):
            where = str(parameter.get("in", "query"))
            name = parameter["name"].lower() if where == "header" else parameter["name"]
            found[(where, name)] = parameter
    return found


def _operation(
    name: str, old_item: Mapping[str, Any], old: Mapping[str, Any], new_item: Mapping[str, Any], new: Mapping[str, Any]
) -> Iterator[Change]:
    before, after = _parameters(old_item, old), _parameters(new_item, new)
    for key, parameter in sorted(after.items()):
        where = f"request parameter {key[0]} {parameter['name']}"
        required = bool(parameter.get("required")) or key[0] == "path"
        if key not in before:
            if required:
                yield Change("new-required-request-parameter", "breaking", name, where, "added as required", "parameter",
                             parameter=key, touches="lacks")  # fmt: skip
            else:
                yield Change("new-optional-request-parameter", "safe", name, where, "added as optional")
            continue
        was_required = bool(before[key].get("required")) or key[0] == "path"
        if required and not was_required:
            yield Change("request-parameter-became-required", "breaking", name, where, "became required", "parameter",
                         parameter=key, touches="lacks")  # fmt: skip
        elif was_required and not required:
            yield Change("request-parameter-became-optional", "safe", name, where, "became optional")
        for change in schema_changes(before[key].get("schema") or {}, parameter.get("schema") or {}, "request", name, where, ()):
            yield replace(change, rule=change.rule.replace("request-property", "request-parameter").replace("request-body", "request-parameter"),
                          part="parameter", parameter=key)  # fmt: skip
    for key, parameter in sorted(before.items()):
        if key not in after:
            yield Change("request-parameter-removed", "potentially breaking", name, f"request parameter {key[0]} {parameter['name']}",
                         "removed: what consumers send is ignored now, or rejected", "parameter", parameter=key)  # fmt: skip
    yield from _request_body(name, old.get("requestBody"), new.get("requestBody"))
    yield from _responses(name, old.get("responses") or {}, new.get("responses") or {})


def _request_body(name: str, old: Any, new: Any) -> Iterator[Change]:
    old = old if isinstance(old, Mapping) else None
    new = new if isinstance(new, Mapping) else None
    if old is None and new is None:
        return
    if old is None:
        assert new is not None
        if new.get("required"):
            yield Change("new-required-request-body", "breaking", name, "request body", "added as required", "request-body", touches="lacks")
        else:
            yield Change("new-optional-request-body", "safe", name, "request body", "added as optional")
        return
    if new is None:
        yield Change("request-body-removed", "potentially breaking", name, "request body", "removed", "request-body")
        return
    if new.get("required") and not old.get("required"):
        yield Change("request-body-became-required", "breaking", name, "request body", "became required", "request-body", touches="lacks")
    elif old.get("required") and not new.get("required"):
        yield Change("request-body-became-optional", "safe", name, "request body", "became optional")
    old_content, new_content = old.get("content") or {}, new.get("content") or {}
    for media in sorted(old_content):
        if media not in new_content:
            yield Change("request-body-media-type-removed", "breaking", name, f"request body {media}", "no longer accepted", "request-body")
            continue
        old_schema = (old_content[media] or {}).get("schema") or {}
        new_schema = (new_content[media] or {}).get("schema") or {}
        yield from schema_changes(old_schema, new_schema, "request", name, "request body", ())
    for media in sorted(set(new_content) - set(old_content)):
        yield Change("request-body-media-type-added", "safe", name, f"request body {media}", "also accepted")


def _responses(name: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> Iterator[Change]:
    for status in sorted(map(str, old)):
        where = f"response {status}"
        if status not in map(str, new):
            if status.startswith("2"):
                yield Change("response-success-status-removed", "breaking", name, where, "no longer answered", "status", status=status)
            else:
                yield Change("response-non-success-status-removed", "potentially breaking", name, where, "no longer answered",
                             "status", status=status)  # fmt: skip
            continue
        before = _by_status(old, status)
        after = _by_status(new, status)
        yield from _response(name, status, before, after)
    for status in sorted(set(map(str, new)) - set(map(str, old))):
        yield Change("response-status-added", "safe", name, f"response {status}", "added")


def _by_status(responses: Mapping[Any, Any], status: str) -> Mapping[str, Any]:
    """A response by its status, written as a string or (unquoted in YAML) a number."""
    found = responses.get(status) or (responses.get(int(status)) if status.isdigit() else None)
    return found if isinstance(found, Mapping) else {}


def _response(name: str, status: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> Iterator[Change]:
    old_headers = {k.lower(): v for k, v in (old.get("headers") or {}).items()}
    new_headers = {k.lower(): v for k, v in (new.get("headers") or {}).items()}
    for header in sorted(old_headers):
        if header not in new_headers:
            required = isinstance(old_headers[header], Mapping) and old_headers[header].get("required")
            yield Change("response-header-removed", "breaking" if required else "potentially breaking", name,
                         f"response {status} header {header}", "removed", "status", status=status)  # fmt: skip
    old_content, new_content = old.get("content") or {}, new.get("content") or {}
    for media in sorted(old_content):
        where = f"response {status} body"
        if media not in new_content:
            yield Change("response-media-type-removed", "breaking", name, f"{where} {media}", "no longer answered", "status",
                         status=status)  # fmt: skip
            continue
        old_schema = (old_content[media] or {}).get("schema") or {}
        new_schema = (new_content[media] or {}).get("schema") or {}
        for change in schema_changes(old_schema, new_schema, "response", name, where, ()):
            yield replace(change, status=status)
    for media in sorted(set(new_content) - set(old_content)):
        yield Change("response-media-type-added", "safe", name, f"response {status} body {media}", "added")


# --- schemas -------------------------------------------------------------------------------------


def _is_object(schema: Mapping[str, Any]) -> bool:
    return schema.get("type") == "object" or "properties" in schema


def _is_array(schema: Mapping[str, Any]) -> bool:
    return schema.get("type") == "array" and isinstance(schema.get("items"), Mapping)


def bare(schema: Any) -> Any:
    """The schema without annotations, at every depth: what constrains values."""
    if isinstance(schema, Mapping):
        return {k: bare(v) for k, v in schema.items() if k not in _ANNOTATIONS and not str(k).startswith("x-")}
    if isinstance(schema, list):
        return [bare(v) for v in schema]
    return schema


def schema_changes(
    old: Mapping[str, Any], new: Mapping[str, Any], direction: Direction, name: str, where: str, path: tuple[str, ...]
) -> Iterator[Change]:
    part = "request-body" if direction == "request" else "response-body"
    label = f"{where}: {'.'.join(path)}" if path else where
    kind = "property" if path else "body"
    if _is_object(old) and _is_object(new):
        yield from _object(old, new, direction, name, where, path)
        rest_old = {k: v for k, v in bare(old).items() if k not in ("properties", "required", "type")}
        rest_new = {k: v for k, v in bare(new).items() if k not in ("properties", "required", "type")}
        if rest_old != rest_new:
            yield from _leaf({"type": "object", **rest_old}, {"type": "object", **rest_new}, direction, name, label, kind, part, path)
        return
    if _is_array(old) and _is_array(new):
        yield from schema_changes(old["items"], new["items"], direction, name, where, (*path, "[]"))
        rest_old = {k: v for k, v in bare(old).items() if k != "items"}
        rest_new = {k: v for k, v in bare(new).items() if k != "items"}
        if rest_old != rest_new:
            yield from _leaf(rest_old, rest_new, direction, name, label, kind, part, path)
        return
    if bare(old) != bare(new):
        yield from _leaf(old, new, direction, name, label, kind, part, path)


def _object(
    old: Mapping[str, Any], new: Mapping[str, Any], direction: Direction, name: str, where: str, path: tuple[str, ...]
) -> Iterator[Change]:
    part = "request-body" if direction == "request" else "response-body"
    old_props, new_props = old.get("properties") or {}, new.get("properties") or {}
    old_required, new_required = set(old.get("required") or []), set(new.get("required") or [])
    closed = new.get("additionalProperties") is False
    for prop in sorted(set(old_props) | set(new_props)):
        at = (*path, prop)
        label = f"{where}: {'.'.join(at)}"
        if prop not in new_props:
            if direction == "request":
                level: Level = "breaking" if closed else "potentially breaking"
                detail = "removed: a consumer that sends it is rejected" if closed else "removed: what consumers send is ignored now"
                yield Change("request-property-removed", level, name, label, detail, part, field_path=at)
            elif prop in old_required:
                yield Change("response-required-property-removed", "breaking", name, label, "removed (it was required)", part, field_path=at)
            else:
                yield Change("response-optional-property-removed", "potentially breaking", name, label, "removed", part, field_path=at)
            continue
        if prop not in old_props:
            if direction == "request" and prop in new_required:
                yield Change("new-required-request-property", "breaking", name, label, "added as required", part, field_path=at, touches="lacks")
            elif direction == "request":
                yield Change("new-optional-request-property", "safe", name, label, "added as optional")
            else:
                yield Change("response-property-added", "safe", name, label, "added")
            continue
        if direction == "request" and prop in new_required and prop not in old_required:
            yield Change("request-property-became-required", "breaking", name, label, "became required", part, field_path=at, touches="lacks")
        elif direction == "request" and prop in old_required and prop not in new_required:
            yield Change("request-property-became-optional", "safe", name, label, "became optional")
        elif direction == "response" and prop in old_required and prop not in new_required:
            yield Change("response-property-became-optional", "breaking", name, label, "became optional: it may be missing now", part, field_path=at)
        elif direction == "response" and prop in new_required and prop not in old_required:
            yield Change("response-property-became-required", "safe", name, label, "became required")
        yield from schema_changes(old_props[prop], new_props[prop], direction, name, where, at)


def _leaf(
    old: Mapping[str, Any], new: Mapping[str, Any], direction: Direction, name: str, label: str, kind: str, part: str,
    path: tuple[str, ...],
) -> Iterator[Change]:  # fmt: skip
    prefix = f"{direction}-{kind}"
    old_enum, new_enum = old.get("enum"), new.get("enum")
    same_but_enum = {k: v for k, v in bare(old).items() if k != "enum"} == {k: v for k, v in bare(new).items() if k != "enum"}
    if isinstance(old_enum, list) and isinstance(new_enum, list) and same_but_enum:
        removed = [v for v in old_enum if v not in new_enum]
        added = [v for v in new_enum if v not in old_enum]
        if removed:
            level: Level = "breaking" if direction == "request" else "safe"
            yield Change(f"{prefix}-enum-value-removed", level, name, label, f"no longer {'accepted' if direction == 'request' else 'answered'}: {_values(removed)}",
                         part, field_path=path)  # fmt: skip
        if added:
            level = "safe" if direction == "request" else "potentially breaking"
            yield Change(f"{prefix}-enum-value-added", level, name, label, f"{'also accepted' if direction == 'request' else 'may be answered now'}: {_values(added)}",
                         part, field_path=path)  # fmt: skip
        return
    verdict = compatible(old, new, direction)
    summary = f"{_summary(old)} -> {_summary(new)}"
    if verdict is None:
        yield Change(f"{prefix}-schema-changed", "potentially breaking", name, label, f"{summary} (not comparable: check by hand)", part, field_path=path)
    elif verdict:
        yield Change(f"{prefix}-schema-changed", "safe", name, label, f"{summary} ({'accepts all it did' if direction == 'request' else 'answers only what it could'})")
    else:
        what = "rejects values it accepted" if direction == "request" else "may answer values consumers do not expect"
        yield Change(f"{prefix}-type-changed", "breaking", name, label, f"{summary}: {what}", part, field_path=path)


def _values(values: list[Any]) -> str:
    return ", ".join(json.dumps(v) for v in values)


def _summary(schema: Mapping[str, Any]) -> str:
    plain = bare(schema)
    if set(plain) <= {"type"} and "type" in plain:
        return str(plain["type"])
    return json.dumps(plain, sort_keys=True)[:80]


def compatible(old: Mapping[str, Any], new: Mapping[str, Any], direction: Direction) -> bool | None:
    """Whether ``new`` accepts what ``old`` did (request) or allows only what ``old`` did
    (response), by jsoncompat; None when it cannot tell."""
    import jsoncompat

    role: Literal["deserializer", "serializer"] = "deserializer" if direction == "request" else "serializer"
    try:
        return bool(jsoncompat.check_compat(json.dumps(_jsonable(old)), json.dumps(_jsonable(new)), role))
    except (ValueError, RuntimeError):
        return None


def _jsonable(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The schema as plain JSON Schema: no absolute ``$id`` (jsoncompat resolves only local
    references), OpenAPI 3.0's ``nullable`` as a null type."""
    plain: dict[str, Any] = copy.deepcopy(bare(schema))
    plain.pop("$id", None)
    if plain.pop("nullable", False) and isinstance(plain.get("type"), str):
        plain["type"] = [plain["type"], "null"]
    return plain


# --- consumers -----------------------------------------------------------------------------------


def _with_consumers(change: Change, pacts: Sequence[Pact]) -> Change:
    broken = []
    method, _, template = change.operation.partition(" ")
    pattern = re.compile("^" + re.sub(r"\\\{[^}]*\\\}", "[^/]+", re.escape(template)) + "/?$")
    for pact in pacts:
        hits = [
            i["description"]
            for i, kind in pact.interactions()
            if kind == HTTP and _request(i).get("method", "").upper() == method and pattern.match(str(_request(i).get("path", "")))
            and _touches(change, i)
        ]
        if hits:
            broken.append((pact.consumer, tuple(sorted(set(hits)))))
    return replace(change, broken=tuple(sorted(broken)))


def _request(interaction: Mapping[str, Any]) -> Mapping[str, Any]:
    value = interaction.get("request")
    return value if isinstance(value, Mapping) else {}


def _body(message: Mapping[str, Any]) -> Any:
    """A pact request's or response's body (V4 wraps it in ``content``)."""
    body = message.get("body")
    if isinstance(body, Mapping) and "content" in body and ("contentType" in body or "encoded" in body):
        return body["content"]
    return body


def _has(value: Any, path: Sequence[str]) -> list[bool]:
    """For each place ``path`` leads to in ``value`` (arrays fan out), whether it is there."""
    if not path:
        return [True]
    head, rest = path[0], path[1:]
    if head == "[]":
        return [found for item in value for found in _has(item, rest)] if isinstance(value, list) else []
    if isinstance(value, Mapping):
        return _has(value[head], rest) if head in value else [False]
    return []


def _touches(change: Change, interaction: Mapping[str, Any]) -> bool:
    request = _request(interaction)
    response = interaction.get("response") if isinstance(interaction.get("response"), Mapping) else {}
    assert isinstance(response, Mapping)
    if change.part == "operation":
        return True
    if change.part == "parameter" and change.parameter is not None:
        where, name = change.parameter
        if where == "path":
            return True
        sent = {"query": request.get("query") or {}, "header": {k.lower(): v for k, v in (request.get("headers") or {}).items()}}
        present = name in (sent.get(where) or {})
        return not present if change.touches == "lacks" else present
    if change.part == "request-body":
        body = _body(request)
        if change.touches == "lacks":
            if not change.field_path:
                return body is None
            return any(not found for found in _has(body, change.field_path))
        return body is not None and (not change.field_path or any(_has(body, change.field_path)))
    expected_status = str(response.get("status", ""))
    if change.status is not None and expected_status != change.status:
        return False
    if change.part == "status":
        return True
    body = _body(response)
    return body is not None and (not change.field_path or any(_has(body, change.field_path)))
