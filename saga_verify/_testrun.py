"""What the running pytest session knows about its tests, kept for the pact writer: which tests
were collected (and from which whole modules), which passed, and which pact interactions each
wrote. The plugin fills it in; stdlib only, so the plugin stays light."""

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


#: This process's session; empty outside pytest.
RUN = TestRun()


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
    rootdir = Path(str(config.rootpath))
    RUN.rootdir = rootdir
    RUN.collected = {item.nodeid for item in items}
    if getattr(config.option, "lf", False):
        RUN.whole_modules = set()
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
    RUN.whole_modules = whole


def note_report(nodeid: str, when: str, outcome: str) -> None:
    """Record a test phase's outcome: a test passed when its call passed and no phase failed."""
    if outcome == "failed":
        RUN.failed.add(nodeid)
    elif when == "call" and outcome == "passed":
        RUN.passed.add(nodeid)
