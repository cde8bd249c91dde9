"""``saga-verify explore FILE#workflowId`` and ``replay --saga FILE#workflowId``: a workflow is
searched like any saga; one that fails its static checks is not run (exit 1, the findings
printed); bad input exits 2 (tests/arazzo/test_workflow_document.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from arazzo_documents import FREE_ORDER, NO_KEY, ORDER

from saga_verify import FaultPlan
from saga_verify._cli import _saga_location, main
from saga_verify.arazzo import load


def test_explore_searches_a_workflow(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["explore", f"{ORDER}#placeOrder", "--runtime", "asgi", "--sweep-faults", "1", "--max-examples", "0", "--report-dir", str(tmp_path), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert (out["saga"], out["ok"], out["failures"]) == ("placeOrder", True, [])
    assert out["executions"] > 35


@pytest.mark.parametrize(("path", "check"), [(FREE_ORDER, "[handoff]"), (NO_KEY, "[retry-key]")])
def test_a_workflow_that_fails_its_static_checks_does_not_run(path: Path, check: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explore", str(path), "--report-dir", str(tmp_path / "plans")]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"workflow 'placeOrder' of {path} fails 1 static check:\n  - {path}: step ")
    assert out.rstrip().endswith(check)
    assert not (tmp_path / "plans").exists()


def test_replay_runs_a_plan_against_a_workflow(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text(FaultPlan.loads('{"faults": [{"kind": "lose-reply", "at": "payment.charge#1"}]}').dumps())
    assert main(["replay", str(plan), "--saga", str(ORDER), "--runtime", "asgi"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "saga 'placeOrder' under lose-reply at payment.charge#1 on asgi"
    assert "REPLY LOST" in out
    assert "payment.charge#2" in out


def test_an_annotation_points_at_the_line_that_names_the_workflow() -> None:
    file, line = _saga_location(load(ORDER), f"{ORDER}#placeOrder")
    assert Path(file).resolve() == ORDER
    assert ORDER.read_text(encoding="utf-8").splitlines()[line - 1] == "  - workflowId: placeOrder"
