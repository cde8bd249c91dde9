"""Event schema compatibility, as a schema registry checks it (BACKWARD, FORWARD, FULL and their
transitive forms), but per producer-consumer edge: the consumers' message pacts say which fields
each consumer reads, and a change breaks a consumer only where it touches what that consumer
reads. Whether one schema accepts what another did is jsoncompat's to say."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ._errors import SpecError
from ._openapi_diff import bare, compatible, schema_changes
from ._pact_files import MESSAGE
from ._records import Pact

MODES = (
    "backward",
    "backward-transitive",
    "forward",
    "forward-transitive",
    "full",
    "full-transitive",
    "none",
)
#: BACKWARD: a consumer on the newer schema reads events written with the older one.
#: FORWARD: a consumer on the older schema reads events written with the newer one.
Direction = Literal["backward", "forward"]


@dataclass(frozen=True)
class EventSchema:
    """One version of one event type's JSON Schema."""

    event_type: str
    source: str
    """Where it came from: a file, or ``producer version`` in the store."""
    schema: Mapping[str, Any] = field(repr=False)
    text: str = field(default="", repr=False)
    producer: str | None = None


def load_event_schema(path: Path, text: str | None = None, *, producer: str | None = None) -> EventSchema:
    """An event schema from a file (or from ``text``, naming ``path`` as its source). Its event
    type is the ``const`` of its ``type`` property, else its ``title``."""
    if text is None:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SpecError(f"event schema {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SpecError(f"event schema {path} cannot be read: {exc}") from exc
    try:
        schema = json.loads(text)
    except ValueError as exc:
        raise SpecError(f"event schema {path} is not valid JSON: {exc}") from None
    if not isinstance(schema, dict) or not isinstance(schema.get("properties", {}), dict):
        raise SpecError(f"event schema {path} is not a JSON Schema object with properties")
    kind = schema.get("properties", {}).get("type")
    event_type = kind.get("const") if isinstance(kind, dict) else None
    event_type = event_type if isinstance(event_type, str) else schema.get("title")
    if not isinstance(event_type, str) or not event_type:
        raise SpecError(f"event schema {path} names no event type: give it a 'type' property with a const, or a title")
    return EventSchema(event_type, str(path), schema, text, producer)


def schemas_in(folder: Path) -> list[EventSchema]:
    """The event schemas (``*.schema.json``, or else ``*.json``) in a folder, by file name."""
    files = sorted(folder.glob("*.schema.json")) or sorted(folder.glob("*.json"))
    if not files:
        raise SpecError(f"there is no event schema (*.schema.json) in {folder}")
    return [load_event_schema(f) for f in files]


@dataclass(frozen=True)
class Finding:
    """One incompatibility between two versions of an event type."""

    event_type: str
    older: str
    newer: str
    direction: Direction
    field: str
    problem: str
    consumer: str | None = None
    """The consumer it breaks; None for a registry-level finding (no pact says who reads what)."""

    def line(self) -> str:
        who = f"breaks {self.consumer}: " if self.consumer else ""
        return f"{who}{self.field}: {self.problem} ({self.direction})"

    def to_json(self) -> dict[str, Any]:
        return {
            "event_type": self.event_type,
            "older": self.older,
            "newer": self.newer,
            "direction": self.direction,
            "field": self.field,
            "problem": self.problem,
            "consumer": self.consumer,
        }


@dataclass(frozen=True)
class EventCheck:
    """The outcome of checking every event type's versions in one mode."""

    mode: str
    findings: tuple[Finding, ...]
    """What breaks a consumer, and, where no pact says who reads an event, what breaks the registry rule."""
    notes: tuple[Finding, ...] = ()
    """Registry-level incompatibilities that no consumer reads: reported, not failing."""
    checked: tuple[tuple[str, str, str], ...] = ()
    """(event type, older, newer) pairs compared."""
    readers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Event type -> the consumers whose message pacts read it."""

    @property
    def compatible(self) -> bool:
        return not self.findings

    def report(self) -> str:
        verdict = "compatible" if self.compatible else "INCOMPATIBLE"
        lines = [f"check-events ({self.mode}): {verdict}; {len(self.checked)} pair(s) of versions compared"]
        for event_type, older, newer in self.checked:
            readers = self.readers.get(event_type) or ()
            lines.append(f"  {event_type}: {older} -> {newer} (read by {', '.join(readers) or 'no consumer pact'})")
            for finding in self.findings:
                if (finding.event_type, finding.older, finding.newer) == (event_type, older, newer):
                    lines.append(f"    {finding.line()}")
            for note in self.notes:
                if (note.event_type, note.older, note.newer) == (event_type, older, newer):
                    lines.append(f"    note: {note.line()}; no consumer reads it")
        if not self.checked:
            lines.append("  every event type has one version: nothing to compare")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "compatible": self.compatible,
            "checked": [{"event_type": t, "older": o, "newer": n} for t, o, n in self.checked],
            "findings": [f.to_json() for f in self.findings],
            "notes": [n.to_json() for n in self.notes],
            "readers": {k: list(v) for k, v in self.readers.items()},
        }


def check_event_schemas(
    history: Sequence[EventSchema], pacts: Sequence[Pact] = (), *, mode: str = "backward"
) -> EventCheck:
    """Check each event type's versions (``history``, oldest first) in ``mode``. Non-transitive
    modes compare each version with the one before; transitive ones with every earlier one.
    Where message ``pacts`` say which consumers read an event type, a change fails only for the
    consumers that read what changed, and names them and the field."""
    if mode not in MODES:
        raise SpecError(f"mode {mode!r} is not one of: {', '.join(MODES)}")
    directions: tuple[Direction, ...] = (
        () if mode == "none" else ("backward",) if mode.startswith("backward") else ("forward",) if mode.startswith("forward")
        else ("backward", "forward")
    )  # fmt: skip
    transitive = mode.endswith("-transitive")
    by_type: dict[str, list[EventSchema]] = {}
    for schema in history:
        versions = by_type.setdefault(schema.event_type, [])
        if not versions or bare(versions[-1].schema) != bare(schema.schema):
            versions.append(schema)
    reads = _reads(pacts)
    findings: list[Finding] = []
    notes: list[Finding] = []
    checked: list[tuple[str, str, str]] = []
    readers: dict[str, tuple[str, ...]] = {}
    for event_type, versions in sorted(by_type.items()):
        consumers = {c: paths for (t, c), paths in reads.items() if t == event_type}
        readers[event_type] = tuple(sorted(consumers))
        for index, newer in enumerate(versions):
            earlier = versions[:index] if transitive else versions[max(index - 1, 0) : index]
            for older in earlier:
                checked.append((event_type, older.source, newer.source))
                for direction in directions:
                    registry = list(_registry(event_type, older, newer, direction))
                    if not consumers:
                        findings += registry
                        continue
                    edge = [f for consumer, paths in sorted(consumers.items()) for f in _edge(event_type, older, newer, direction, consumer, paths)]
                    findings += edge
                    touched = {f.field for f in edge}
                    notes += [f for f in registry if f.field not in touched]
    return EventCheck(mode, tuple(findings), tuple(notes), tuple(checked), readers)


def _reads(pacts: Sequence[Pact]) -> dict[tuple[str, str], set[tuple[str, ...]]]:
    """(event type, consumer) -> the field paths the consumer's message pacts read."""
    found: dict[tuple[str, str], set[tuple[str, ...]]] = {}
    for pact in pacts:
        for interaction, kind in pact.interactions():
            if kind != MESSAGE:
                continue
            body = _message_body(interaction)
            event_type = body.get("type") if isinstance(body, Mapping) else None
            if not isinstance(event_type, str):
                continue
            found.setdefault((event_type, pact.consumer), set()).update(_leaves(body, ()))
    return found


def _message_body(interaction: Mapping[str, Any]) -> Any:
    contents = interaction.get("contents")
    if isinstance(contents, Mapping) and "content" in contents and ("contentType" in contents or "encoded" in contents):
        return contents["content"]
    return contents


def _leaves(value: Any, path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
    if isinstance(value, Mapping) and value:
        for key, item in value.items():
            yield from _leaves(item, (*path, str(key)))
    elif isinstance(value, list) and value:
        for item in value:
            yield from _leaves(item, (*path, "[]"))
    elif path:
        yield path


def _registry(event_type: str, older: EventSchema, newer: EventSchema, direction: Direction) -> Iterator[Finding]:
    """The registry's rule, field by field: BACKWARD is what a request body must keep (the newer
    schema accepts the older events), FORWARD what a response must (older readers accept the newer events)."""
    walked: Literal["request", "response"] = "request" if direction == "backward" else "response"
    named = False
    for change in schema_changes(older.schema, newer.schema, walked, event_type, "event", ()):
        if change.level == "breaking":
            named = True
            where = ".".join(change.field_path) or "the event"
            yield Finding(event_type, older.source, newer.source, direction, where, f"{change.detail} [{change.rule}]")
    if direction == "forward":
        for path in _closed_additions(older.schema, newer.schema, ()):
            named = True
            yield Finding(
                event_type, older.source, newer.source, direction, ".".join(path),
                "added to an object the older schema closes (additionalProperties: false): older readers reject it",
            )  # fmt: skip
    if not named and compatible(older.schema, newer.schema, walked) is False:
        # Strictly, as a registry judges: e.g. a closed object (additionalProperties: false) that
        # gained a field rejects, in an older reader, what the newer writer sends.
        what = "older events" if direction == "backward" else "newer events"
        yield Finding(
            event_type, older.source, newer.source, direction, "the event",
            f"the schemas are incompatible (jsoncompat: {what} fail the other schema); no single field says why, "
            "e.g. a closed object gained a field",
        )  # fmt: skip


def _closed_additions(old: Any, new: Any, path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
    """Fields ``new`` adds to an object that ``old`` closes."""
    if not (isinstance(old, Mapping) and isinstance(new, Mapping)):
        return
    old_props, new_props = old.get("properties") or {}, new.get("properties") or {}
    if old.get("additionalProperties") is False:
        yield from ((*path, p) for p in sorted(set(new_props) - set(old_props)))
    for prop in sorted(set(old_props) & set(new_props)):
        yield from _closed_additions(old_props[prop], new_props[prop], (*path, prop))
    if isinstance(old.get("items"), Mapping) and isinstance(new.get("items"), Mapping):
        yield from _closed_additions(old["items"], new["items"], (*path, "[]"))


def _at(schema: Mapping[str, Any], path: Sequence[str]) -> tuple[Mapping[str, Any] | None, bool]:
    """The schema of the field at ``path``, and whether every step to it is required."""
    node: Any = schema
    required = True
    for step in path:
        if not isinstance(node, Mapping):
            return None, False
        if step == "[]":
            node = node.get("items")
            continue
        properties = node.get("properties") or {}
        if step not in properties:
            return None, False
        required = required and step in (node.get("required") or [])
        node = properties[step]
    return (node if isinstance(node, Mapping) else None), required


def _edge(
    event_type: str, older: EventSchema, newer: EventSchema, direction: Direction, consumer: str, paths: set[tuple[str, ...]]
) -> Iterator[Finding]:
    for path in sorted(paths):
        name = ".".join(path)
        old_field, old_required = _at(older.schema, path)
        new_field, new_required = _at(newer.schema, path)

        def finding(problem: str, name: str = name) -> Finding:
            return Finding(event_type, older.source, newer.source, direction, name, problem, consumer)

        # Whatever the mode, a field the consumer reads must still be promised.
        if new_field is None:
            yield finding(f"{consumer} reads it, and {newer.source} no longer has it (removed)")
            continue
        if not new_required:
            yield finding(f"{consumer} reads it, and {newer.source} no longer requires it: events may lack it")
            continue
        if direction == "backward" and (old_field is None or not old_required):
            yield finding(f"{consumer} reads it, and events written with {older.source} may lack it")
            continue
        if old_field is None:
            continue
        ok = compatible(old_field, new_field, "request" if direction == "backward" else "response")
        if ok is False:
            what = "rejects values older events hold" if direction == "backward" else "allows values older readers reject"
            yield finding(f"its schema changed and {what}: {json.dumps(bare(old_field))} -> {json.dumps(bare(new_field))}")
        elif ok is None:
            yield finding("its schema changed in a way that cannot be compared: check by hand")
