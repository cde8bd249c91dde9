"""What CI reads: JUnit XML properties of a saga test (seed, verdict, bound, plan, replay line)
and GitHub Actions annotations, one per failure, that point at the line that ran the search."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from ._html import bound_proven, verdict

if TYPE_CHECKING:
    from .._exploration import ExplorationResult, Failure

#: GitHub Actions sets this to ``true`` in every step it runs.
GITHUB_ACTIONS = "GITHUB_ACTIONS"
#: Every property a saga test records starts with this.
PROPERTY_PREFIX = "saga_verify."


def in_github_actions(environ: Mapping[str, str] | None = None) -> bool:
    return (os.environ if environ is None else environ).get(GITHUB_ACTIONS) == "true"


def junit_properties(result: ExplorationResult, location: str | None = None) -> list[tuple[str, str]]:
    """The properties of one search, in the order they are recorded: the saga, its seed, verdict
    and bound, where the search was asked for (``file:line``), then for each failure the
    invariants it broke, its plan and the line that replays it."""
    props = [
        ("saga", result.saga.name),
        ("seed", str(result.seed)),
        ("verdict", verdict(result)),
        ("bound", bound_proven(result)),
    ]
    if location:
        props.append(("location", location))
    for failure in result.failures:
        props.append(("broken", ", ".join(failure.invariants)))
        props.append(("plan", str(failure.plan)))
        props.append(("replay", failure.replay_commands[0]))
    return [(PROPERTY_PREFIX + name, value) for name, value in props]


def annotations_from_properties(properties: Iterable[tuple[str, object]]) -> list[str]:
    """One annotation per failure that a test's `junit_properties` record (they travel with the
    test's report, from pytest-xdist workers too), at the location they name."""
    out = []
    saga = location = broken = plan = ""
    for name, value in properties:
        if not name.startswith(PROPERTY_PREFIX):
            continue
        key, text = name[len(PROPERTY_PREFIX) :], str(value)
        if key == "saga":
            saga, location = text, ""
        elif key == "location":
            location = text
        elif key == "broken":
            broken = text
        elif key == "plan":
            plan = text
        elif key == "replay":
            file, _, line = location.rpartition(":")
            out.append(
                annotation(
                    file=file or location,
                    line=int(line) if line.isdigit() else 1,
                    title=_title(saga, broken),
                    message=_message(saga, broken, plan, text),
                )
            )
    return out


def _title(saga: str, broken: str) -> str:
    return f"saga {saga} broke {broken}"


def _message(saga: str, broken: str, plan: str, replay: str) -> str:
    return f"saga {saga!r} broke {broken} under: {plan}\nReproduce with: {replay}"


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def annotation(*, file: str, line: int, title: str, message: str) -> str:
    """One ``::error`` workflow command, escaped as GitHub Actions wants it."""
    return (
        f"::error file={_escape_property(file)},line={line},title={_escape_property(title)}"
        f"::{_escape_data(message)}"
    )


def failure_annotation(failure: Failure, *, file: str, line: int) -> str:
    """The annotation of one failure: what broke, under which plan, and how to replay it."""
    broke = ", ".join(failure.invariants)
    message = _message(failure.saga.name, broke, str(failure.plan), failure.replay_commands[0])
    return annotation(file=file, line=line, title=_title(failure.saga.name, broke), message=message)
