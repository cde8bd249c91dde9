"""What the demo on a runtime must share with the demo in simulation: the same sagas, verdicts,
broken invariants and minimal plans, for every reference saga that runs there."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from saga_verify._cli import main
from saga_verify.reference import choreographed_variants, durable_variants, messaging_variants, variants


def assert_demo_matches_simulation(runtime: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rows: dict[str, list[dict[str, Any]]] = {}
    for where in ("sim", runtime):
        assert main(["demo", "--json", "--runtime", where, "--report-dir", str(tmp_path / where)]) == 0
        rows[where] = json.loads(capsys.readouterr().out)
    assert all(r["runtime"] == runtime for r in rows[runtime])
    # Sagas whose participants are plain objects run on sim only: left out there, and only they.
    sim_only = {v.name for v in (*variants(), *durable_variants(), *choreographed_variants(), *messaging_variants()) if runtime not in v.runtimes}
    assert {r["saga"] for r in rows["sim"]} - {r["saga"] for r in rows[runtime]} == sim_only
    shape = [(r["saga"], r["verdict"], r["violated"], r["plan"] and r["plan"]["faults"]) for r in rows["sim"] if r["saga"] not in sim_only]
    assert shape == [(r["saga"], r["verdict"], r["violated"], r["plan"] and r["plan"]["faults"]) for r in rows[runtime]]
