"""The README's nats-py example ("A team's own nats-py services, verified unchanged") run as it
reads: it holds with its deduplication, and the sweep finds the double charge without it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from saga_verify.broker import NatsServer

README = Path(__file__).resolve().parents[2] / "README.md"
DEDUPE = 'if event["id"] not in self.seen:                # at least once: deduplicate by event id'


def nats_py_block() -> str:
    section = README.read_text(encoding="utf-8").split("### A team's own nats-py services, verified unchanged", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None, "README lost its nats-py example"
    return match.group(1)


def test_the_nats_py_example_is_a_few_lines() -> None:
    assert len(nats_py_block().strip().splitlines()) <= 40


def test_the_nats_py_example_holds(nats_server: NatsServer) -> None:
    namespace: dict[str, object] = {}
    exec(compile(nats_py_block(), "README.md", "exec"), namespace)
    assert namespace["result"].sweep_complete  # type: ignore[attr-defined]


def test_the_nats_py_example_without_its_dedupe_charges_twice(nats_server: NatsServer) -> None:
    block = nats_py_block()
    assert DEDUPE in block
    with pytest.raises(AssertionError) as info:
        exec(compile(block.replace(DEDUPE, "if True:"), "README.md", "exec"), {})
    assert re.fullmatch(r"\['[a-z-]+( lag=0| seconds=[\d.]+)? at (stock\.publish|payment\.charge)#1'\]", str(info.value)), info.value
