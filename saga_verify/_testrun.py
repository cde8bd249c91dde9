"""What the running pytest session knows about its tests, kept for the pact writer: which tests
were collected (and from which whole modules), which passed, and which pact interactions each
wrote. The plugin fills it in; stdlib only, so the plugin stays light.

Sessions nest (pytester runs one inside another in the same process), so each has its own
record, on a stack: what an inner session knows never leaks into the outer one's."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class TestRun:
    """One pytest session as seen from this process (an xdist worker sees its own tests run)."""

    rootdir: Path | None = None
    collected: set[str] = field(default_factory=set)
    """Node ids of every test collected, before any deselection (-k, -m, --deselect)."""
    whole_modules: set[str] = field(default_factory=set)
    """Rootdir-relative paths of the test modules collected whole (not narrowed to some node ids)."""
    passed: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)
    written: dict[str, set[tuple[str, str]]] = field(default_factory=dict)
    """Test node id -> the (pact file, interaction description) pairs it wrote in this process."""
    pact_dirs: set[Path] = field(default_factory=set)
    """The pact folders written to in this process."""


_OUTSIDE = TestRun()
_SESSIONS: list[TestRun] = []


def current() -> TestRun:
    """The record of the innermost running session (an empty one outside pytest)."""
    return _SESSIONS[-1] if _SESSIONS else _OUTSIDE


def session_started() -> None:
    _SESSIONS.append(TestRun())


def session_finished() -> TestRun | None:
    """Close the innermost session's record and give it back."""
    return _SESSIONS.pop() if _SESSIONS else None


def current_test() -> str | None:
    """The node id of the test running now, from pytest's ``PYTEST_CURRENT_TEST`` (``"<nodeid> (call)"``)."""
    current = os.environ.get("PYTEST_CURRENT_TEST")
    if not current:
        return None
    nodeid, _, phase = current.rpartition(" ")
    return nodeid if nodeid and phase.startswith("(") else current


def note_collection(config: Any, items: list[Any]) -> None:
    """Record what a session collected. A module counts as collected whole when a path given to
    pytest (or its test paths) is the module or a folder holding it; ``--lf`` narrows modules at
    collection, so under it none does."""
    run = current()
    rootdir = Path(str(config.rootpath))
    run.rootdir = rootdir
    run.collected = {item.nodeid for item in items}
    if getattr(config.option, "lf", False):
        run.whole_modules = set()
        return
    invocation = Path(str(config.invocation_params.dir))
    given = [(invocation / arg).resolve() for arg in config.args if "::" not in arg]
    modules = {Path(str(item.path)).resolve() for item in items if getattr(item, "path", None) is not None}
    whole = set()
    for module in modules:
        if any(module == place or place in module.parents for place in given):
            try:
                whole.add(module.relative_to(rootdir.resolve()).as_posix())
            except ValueError:
                continue  # outside the rootdir: its node ids are not relative to it
    run.whole_modules = whole


def note_report(nodeid: str, when: str, outcome: str) -> None:
    """Record a test phase's outcome: a test passed when its call passed and no phase failed."""
    if outcome == "failed":
        current().failed.add(nodeid)
    elif when == "call" and outcome == "passed":
        current().passed.add(nodeid)
