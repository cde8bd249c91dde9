"""The saga-verify command: demo, explore and replay, their exit codes and their errors."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from saga_verify import FaultPlan
from saga_verify._cli import main
from saga_verify.reference import choreographed_variants, durable_variants, messaging_variants, variants

VARIANT_NAMES = [v.name for v in (*variants(), *durable_variants(), *choreographed_variants(), *messaging_variants())]
KINDS = {v.name: v.kind for v in (*variants(), *durable_variants(), *choreographed_variants(), *messaging_variants())}
SCRIPT = Path(sys.executable).with_name("saga-verify")


def run(argv: list[str]) -> int:
    """The exit code of the command, whether main() returns it or argparse exits with it."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1


@pytest.fixture(scope="module")
def demo_json(tmp_path_factory):
    report_dir = tmp_path_factory.mktemp("demo")
    completed = subprocess.run(
        [str(SCRIPT), "demo", "--json", "--report-dir", str(report_dir)],
        capture_output=True,
        text=True,
        check=False,
        cwd=report_dir,
        timeout=300,  # a guard, not a measure: the whole demo, choreographies included, on a busy machine
    )
    return completed, report_dir


# -- demo --------------------------------------------------------------------------------------
def test_console_script_demo_json(demo_json) -> None:
    completed, _ = demo_json
    assert completed.returncode == 0, completed.stderr
    assert completed.stderr == ""
    rows = json.loads(completed.stdout)
    assert isinstance(rows, list)
    assert [r["saga"] for r in rows] == VARIANT_NAMES


def test_demo_json_rows_have_their_shape(demo_json) -> None:
    rows = json.loads(demo_json[0].stdout)
    for row in rows:
        assert {"saga", "kind", "runtime", "broken", "bug", "violated", "examples", "plan", "seconds"} <= set(row)
        assert row["kind"] == KINDS[row["saga"]]
        assert row["runtime"] == "sim"
        assert isinstance(row["broken"], bool)
        assert row["bug"] is None or isinstance(row["bug"], str)
        assert isinstance(row["violated"], list)
        assert isinstance(row["examples"], int)
        assert not isinstance(row["examples"], bool)
        assert row["plan"] is None or isinstance(row["plan"], dict)
        assert isinstance(row["seconds"], (int, float))
        assert row["seconds"] >= 0


def test_demo_json_correct_saga_holds_and_every_broken_one_is_caught(demo_json) -> None:
    from saga_verify import replay
    from saga_verify.reference import order_saga

    completed, report_dir = demo_json
    rows = {r["saga"]: r for r in json.loads(completed.stdout)}
    correct = rows.pop("order")
    assert correct["broken"] is False
    assert correct["bug"] is None
    assert correct["violated"] == []
    assert correct["plan"] is None
    assert correct["verdict"] == "holds"
    assert correct["examples"] > 500  # it says how much it searched
    timed = rows.pop("timed_order")
    assert (timed["kind"], timed["verdict"], timed["violated"]) == ("durable", "holds", [])
    durable = rows.pop("durable_order")
    assert (durable["kind"], durable["verdict"], durable["violated"]) == ("durable", "holds", [])
    choreographed = rows.pop("choreographed_order")
    assert (choreographed["kind"], choreographed["verdict"], choreographed["violated"]) == ("choreographed", "holds", [])
    messaging = rows.pop("messaging_order")
    assert (messaging["kind"], messaging["verdict"], messaging["violated"]) == ("messaging", "holds", [])
    assert len(rows) == 30
    assert {name for name, row in rows.items() if row["kind"] == "durable"} == {
        "timeout_without_compensation", "webhook_wait_without_deadline", "retries_past_budget",
        "calls_before_intent", "fresh_keys_on_recovery", "compensation_not_resumed",
        "lease_without_fencing", "duplicate_start_after_completion", "check_then_act_oversell",
    }
    assert {name for name, row in rows.items() if row["kind"] == "choreographed"} == {
        "non_idempotent_consumer", "order_assuming_consumer", "dual_write_publish", "missing_compensation_handler",
        "poison_blocks_queue", "correlation_dropped", "ack_before_commit",
    }
    assert {name for name, row in rows.items() if row["kind"] == "messaging"} == {
        "reply_not_deduplicated", "timeout_forgets_step", "late_reply_resumes",
    }
    bugs = {v.name: v.bug for v in (*variants(), *durable_variants(), *choreographed_variants(), *messaging_variants())}
    for name, row in rows.items():
        assert row["broken"] is True
        assert row["bug"] == bugs[name]
        assert row["violated"], name
        assert row["verdict"] == "caught"
        plan = FaultPlan.from_json(row["plan"])
        assert (plan.saga, plan.saga_ref) == (name, f"saga_verify.reference:{name}")
        assert list(plan.violated) == row["violated"]
        assert Path(row["plan_file"]).parent == report_dir
        assert FaultPlan.load(row["plan_file"]) == plan
    assert str(FaultPlan.from_json(rows["charge_without_key"]["plan"])) == "lose-reply at payment.charge#1"
    # The correct saga does not break under any broken variant's plan that fits it.
    assert replay(order_saga, dataclasses.replace(FaultPlan.from_json(rows["charge_without_key"]["plan"]), saga=None))[1] == []


def test_demo_table(capsys, tmp_path) -> None:
    code = run(["demo", "--report-dir", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 0
    assert err == ""
    lines = out.splitlines()
    assert lines[0] == "saga-verify demo: reference order saga (sim), seed 0"
    assert lines[1].split() == ["variant", "verdict", "broken", "invariants", "examples", "minimal", "plan", "seconds"]
    assert set(lines[2]) == {"-", " "}
    body = lines[3 : 3 + len(VARIANT_NAMES)]
    assert [line.split()[0] for line in body] == VARIANT_NAMES
    correct = {v.name for v in (*variants(), *durable_variants(), *choreographed_variants(), *messaging_variants()) if not v.broken}
    assert correct == {"order", "timed_order", "durable_order", "choreographed_order", "messaging_order"}
    assert all(line.split()[1] == ("holds" if line.split()[0] in correct else "caught") for line in body)
    by_name = {line.split()[0]: line for line in body}
    assert "lose-reply at payment.charge#1" in by_name["charge_without_key"]
    assert "no faults" in by_name["notify_before_pivot"]
    assert "coordinator-crash-after at inventory.reserve#1" in by_name["calls_before_intent"]
    assert "switch at inventory.reserve#1" in by_name["lease_without_fencing"]
    assert "30/30 broken variants caught; correct sagas: holds" in lines
    assert lines[-1].startswith(f"Replay any minimal plan: saga-verify replay {tmp_path}")
    assert (tmp_path / lines[-1].rsplit("/", 1)[1]).exists()


def test_demo_seed_is_shown(capsys, tmp_path) -> None:
    code = run(["demo", "--seed", "5", "--max-examples", "0", "--sweep-faults", "1", "--report-dir", str(tmp_path)])
    out, _ = capsys.readouterr()
    assert out.splitlines()[0] == "saga-verify demo: reference order saga (sim), seed 5"
    # A one-fault sweep and no Hypothesis miss the two-fault bugs, and the exit code says so.
    assert code == 1
    assert "MISSED" in out


# -- replay ------------------------------------------------------------------------------------
@pytest.fixture
def violating_plan(tmp_path) -> Path:
    plan = FaultPlan.loads('{"faults": [{"kind": "lose-reply", "at": "payment.charge#1"}]}')
    path = tmp_path / "violating.json"
    FaultPlan(plan.faults, saga_ref="saga_verify.reference:charge_without_key").save(path)
    return path


def test_replay_of_a_violating_plan_prints_the_timeline_and_exits_1(violating_plan, capsys) -> None:
    code = run(["replay", str(violating_plan)])
    out, err = capsys.readouterr()
    assert code == 1
    assert err == ""
    lines = out.splitlines()
    assert lines[0] == "saga 'charge_without_key' under lose-reply at payment.charge#1"
    assert lines[1] == "Timeline (virtual seconds; saga instance order-1):"
    assert "REPLY LOST (applied; caller timed out)" in out
    assert "  no_double_charge: payment.charge took effect 2 times for order-1" in lines
    assert lines[-1] == "      ledger  payment: charge 100 ch-2 for order-1 at t=1.236 (delivery #2)"


def test_replay_of_a_passing_plan_exits_0(tmp_path, capsys) -> None:
    path = FaultPlan(saga_ref="saga_verify.reference:order_saga").save(tmp_path / "empty.json")
    code = run(["replay", str(path)])
    out, _ = capsys.readouterr()
    assert code == 0
    assert out.splitlines()[0] == "saga 'order' under no faults"
    assert out.rstrip().endswith("Every invariant held.")


def test_replay_saga_option_names_the_saga(tmp_path, capsys) -> None:
    path = tmp_path / "anonymous.json"
    path.write_text('{"faults": [{"kind": "lose-reply", "at": "payment.charge#1"}]}', encoding="utf-8")
    assert run(["replay", str(path), "--saga", "saga_verify.reference:order_saga"]) == 0
    assert run(["replay", str(path), "--saga", "saga_verify.reference:charge_without_key"]) == 1
    out, _ = capsys.readouterr()
    assert "saga 'charge_without_key' under lose-reply at payment.charge#1" in out


def test_replay_saga_option_overrides_the_file(violating_plan, capsys) -> None:
    assert run(["replay", str(violating_plan), "--saga", "saga_verify.reference:order_saga"]) == 0
    assert capsys.readouterr().out.startswith("saga 'order' under ")


def _error(capsys) -> str:
    out, err = capsys.readouterr()
    assert out == ""
    return err


def test_replay_missing_file(tmp_path, capsys) -> None:
    missing = tmp_path / "nope.json"
    assert run(["replay", str(missing)]) == 2
    assert _error(capsys) == f"saga-verify: error: plan file {str(missing)!r} does not exist\n"


def test_replay_invalid_json(tmp_path, capsys) -> None:
    path = tmp_path / "bad.json"
    path.write_text("{bad", encoding="utf-8")
    assert run(["replay", str(path)]) == 2
    err = _error(capsys)
    assert err.startswith(f"saga-verify: error: {path}: not valid JSON (")
    assert "line 1 column 2" in err


def test_replay_unknown_participant(tmp_path, capsys) -> None:
    path = tmp_path / "billing.json"
    path.write_text(
        '{"saga": {"name": "order", "ref": "saga_verify.reference:order_saga"}, "faults": [{"kind": "fail", "at": "billing.charge#1"}]}',
        encoding="utf-8",
    )
    assert run(["replay", str(path)]) == 2
    err = _error(capsys)
    assert err.startswith("saga-verify: error: plan names billing.charge, which saga 'order' does not have")
    assert "payment.charge" in err


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ({"kind": "refuse", "at": "notification.send#1"}, "plan refuses notification.send#1, but step notification.send declares no refusal"),
        ({"kind": "explode", "at": "payment.charge#1"}, "faults[0]: unknown fault kind 'explode'"),
        ({"kind": "fail", "at": "payment"}, "cannot read delivery point 'payment'"),
        ({"kind": "delay", "at": "payment.charge#1", "seconds": -1}, "delay at payment.charge#1: seconds must be finite and >= 0, got -1"),
    ],
)
def test_replay_plan_with_a_bad_fault(tmp_path, capsys, fault, message) -> None:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"saga": {"name": "order", "ref": "saga_verify.reference:order_saga"}, "faults": [fault]}), encoding="utf-8")
    assert run(["replay", str(path)]) == 2
    err = _error(capsys)
    assert err.startswith("saga-verify: error: ")
    assert message in err


def test_replay_plan_naming_no_saga(tmp_path, capsys) -> None:
    path = tmp_path / "anonymous.json"
    path.write_text('{"faults": []}', encoding="utf-8")
    assert run(["replay", str(path)]) == 2
    assert _error(capsys) == (
        f"saga-verify: error: plan file {str(path)!r} does not say where its saga lives; pass --saga package.module:attribute\n"
    )


def test_replay_plan_naming_a_saga_that_does_not_import(tmp_path, capsys) -> None:
    path = FaultPlan(saga_ref="nosuchmodule:x").save(tmp_path / "p.json")
    assert run(["replay", str(path)]) == 2
    assert "cannot load saga 'nosuchmodule:x': module 'nosuchmodule' does not import" in _error(capsys)


def test_runtime_that_is_not_available(capsys) -> None:
    assert run(["demo", "--runtime", "kubernetes"]) == 2
    err = _error(capsys)
    assert "argument --runtime: runtime 'kubernetes' is not available; choose from: sim, asgi, process, container" in err


@pytest.mark.parametrize("command", [["demo"], ["explore", "saga_verify.reference:order_saga"]])
@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--seed", "-1", "argument --seed: -1 is too small: give a whole number >= 0"),
        ("--seed", "abc", "argument --seed: 'abc' is not a whole number"),
        ("--max-examples", "-3", "argument --max-examples: -3 is too small"),
        ("--sweep-faults", "two", "argument --sweep-faults: 'two' is not a whole number"),
    ],
)
def test_bad_numbers(command, flag, value, message, capsys) -> None:
    assert run([*command, flag, value]) == 2
    assert message in _error(capsys)


def test_no_command(capsys) -> None:
    assert run([]) == 2
    assert "the following arguments are required" in _error(capsys)


# -- explore -----------------------------------------------------------------------------------
def test_explore_module_that_does_not_import(capsys) -> None:
    assert run(["explore", "nosuchmodule:x"]) == 2
    assert _error(capsys) == (
        "saga-verify: error: cannot load saga 'nosuchmodule:x': module 'nosuchmodule' does not import "
        "(No module named 'nosuchmodule')\n"
    )


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("saga_verify.reference", "write it as package.module:attribute"),
        ("saga_verify.reference:no_such_saga", "module 'saga_verify.reference' has no 'no_such_saga'"),
        ("saga_verify.reference:ORDER", "'saga_verify.reference:ORDER' is a dict, not a saga_verify.Saga"),
    ],
)
def test_explore_something_that_is_not_a_saga(ref, message, capsys) -> None:
    assert run(["explore", ref]) == 2
    assert message in _error(capsys)


def test_explore_a_broken_saga_prints_the_report_and_exits_1(tmp_path, capsys) -> None:
    code = run(["explore", "saga_verify.reference:forward_order_compensation", "--report-dir", str(tmp_path)])
    out, _ = capsys.readouterr()
    assert code == 1
    assert out.startswith("saga 'forward_order_compensation' broke reverse_compensation_order\n")
    (written,) = tmp_path.iterdir()
    assert out.rstrip().endswith(f"Reproduce with: saga-verify replay {written}")
    # The line it prints works.
    assert run(["replay", str(written)]) == 1


def test_explore_prints_every_distinct_broken_invariant(tmp_path, capsys) -> None:
    code = run(["explore", "saga_verify.reference:charge_without_key", "--report-dir", str(tmp_path)])
    out, _ = capsys.readouterr()
    assert code == 1
    written = sorted(tmp_path.iterdir())
    assert len(written) > 1
    assert out.startswith(f"{len(written)} distinct broken invariants in saga 'charge_without_key':\n\n")
    assert "saga 'charge_without_key' broke no_double_charge\n" in out
    assert out.count("Reproduce with: saga-verify replay ") == len(written)
    assert {line.rsplit(" ", 1)[1] for line in out.splitlines() if line.startswith("Reproduce with:")} == {str(w) for w in written}


def test_explore_json(tmp_path, capsys) -> None:
    code = run(["explore", "saga_verify.reference:charge_without_key", "--json", "--report-dir", str(tmp_path)])
    data = json.loads(capsys.readouterr().out)
    assert code == 1
    assert data["saga"] == "charge_without_key"
    assert data["ok"] is False
    failure = data["failures"][0]
    assert failure["violated"] == ["no_double_charge"]
    assert failure["plan"]["faults"] == [{"kind": "lose-reply", "at": "payment.charge#1"}]
    assert {Path(f["plan_file"]) for f in data["failures"]} == set(tmp_path.iterdir())
    # What was proven: the whole sweep of every plan of up to two faults ran.
    assert data["sweep"] == {"max_faults": 2, "plans": 744, "complete": True}


def test_explore_a_saga_that_holds_exits_0(tmp_path, capsys) -> None:
    code = run(["explore", "saga_verify.reference:order_saga", "--max-examples", "5", "--sweep-faults", "1", "--report-dir", str(tmp_path)])
    out, _ = capsys.readouterr()
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("saga 'order' held every invariant over 46 executions (39 in the sweep, 5 from Hypothesis)")
    assert lines[1] == "  every plan of up to 1 fault over these calls holds (39 plans)"
    assert list(tmp_path.iterdir()) == []


# -- reports, coverage and progress ------------------------------------------------------------
def test_demo_json_rows_carry_their_coverage(demo_json) -> None:
    rows = {r["saga"]: r for r in json.loads(demo_json[0].stdout)}
    coverage = rows["order"]["coverage"]
    assert coverage["operations"][:2] == ["inventory.reserve", "inventory.release"]
    assert coverage["cells"]["lose-reply"]["payment.charge"]["plans"] > 0
    assert coverage["cells"]["lose-reply"]["payment.charge"]["broke"] == 0
    assert coverage["cells"]["pause"]["payment.charge"] is None  # the reference saga does not search pauses
    caught = rows["charge_without_key"]["coverage"]
    assert caught["cells"]["lose-reply"]["payment.charge"]["broke"] >= 1


def test_explore_json_carries_the_coverage(tmp_path, capsys) -> None:
    code = run(["explore", "saga_verify.reference:order_saga", "--json", "--max-examples", "0", "--sweep-faults", "1", "--report-dir", str(tmp_path)])
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    assert data["coverage"]["executions"] == 40  # the fault-free run and 39 one-fault plans
    assert "lose-reply at shipping.cancel" in data["coverage"]["never_tried"]


def test_explore_html_writes_the_report_and_says_where(tmp_path, capsys) -> None:
    html = tmp_path / "html"
    code = run(["explore", "saga_verify.reference:fresh_key_on_retry", "--html", str(html), "--report-dir", str(tmp_path / "plans")])
    out, err = capsys.readouterr()
    assert code == 1
    assert err == ""
    assert out.splitlines()[-1] == f"HTML report: {html / 'report.html'}"
    text = (html / "report.html").read_text(encoding="utf-8")
    assert 'data-saga="fresh_key_on_retry"' in text
    assert 'data-fault="lose-reply at shipping.create#1"' in text
    assert "explored as saga_verify.reference:fresh_key_on_retry" in text


def test_demo_html_ends_with_the_report_path(tmp_path, capsys) -> None:
    html = tmp_path / "html"
    assert run(["demo", "--html", str(html), "--report-dir", str(tmp_path / "plans")]) == 0
    out, _ = capsys.readouterr()
    assert out.splitlines()[-1] == f"HTML report: {html / 'report.html'}"
    text = (html / "report.html").read_text(encoding="utf-8")
    assert "35 sagas, 30 broken" in text
    assert text.count('class="sequence"') == 30  # one diagram per caught variant


@pytest.mark.parametrize("command", [["demo"], ["explore", "saga_verify.reference:charge_without_key"]])
def test_html_folder_that_cannot_be_written_is_refused_before_searching(tmp_path, capsys, command) -> None:
    blocker = tmp_path / "taken"
    blocker.write_text("x", encoding="utf-8")
    plans = tmp_path / "plans"
    assert run([*command, "--html", str(blocker / "html"), "--report-dir", str(plans)]) == 2
    assert _error(capsys) == (
        f"saga-verify: error: report folder {str(blocker / 'html')!r} cannot be written: {str(blocker)!r} is a file, not a folder\n"
    )
    assert not plans.exists()  # no search ran
    assert blocker.read_text(encoding="utf-8") == "x"


def test_explore_annotates_failures_under_github_actions(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    code = run(["explore", "saga_verify.reference:charge_without_key", "--report-dir", str(tmp_path)])
    out, _ = capsys.readouterr()
    assert code == 1
    (plan,) = tmp_path.glob("charge_without_key-no_double_charge-*.json")
    line = next(n for n, text in enumerate(Path(saga_verify_reference_file()).read_text().splitlines(), 1) if text.startswith("charge_without_key ="))
    annotations = [text for text in out.splitlines() if text.startswith("::")]
    assert len(annotations) == len(list(tmp_path.iterdir()))  # one per failure
    assert annotations[0] == (
        f"::error file=saga_verify/reference/__init__.py,line={line},title=saga charge_without_key broke no_double_charge::"
        f"saga 'charge_without_key' broke no_double_charge under: lose-reply at payment.charge#1%0AReproduce with: saga-verify replay {plan}"
    )
    monkeypatch.delenv("GITHUB_ACTIONS")
    run(["explore", "saga_verify.reference:charge_without_key", "--report-dir", str(tmp_path)])
    assert "::error" not in capsys.readouterr().out


def saga_verify_reference_file() -> str:
    import saga_verify.reference

    return str(saga_verify.reference.__file__)


def _on_a_terminal(argv: list[str], cwd: Path) -> tuple[int, str, str]:
    """Run the command with its standard error on a pseudo-terminal; return its exit code, stdout
    and what the terminal showed."""
    import os
    import pty

    master, slave = pty.openpty()
    process = subprocess.Popen([str(SCRIPT), *argv], stdout=subprocess.PIPE, stderr=slave, cwd=cwd)
    os.close(slave)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the terminal's other side closed: the command ended
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    out, _ = process.communicate(timeout=300)
    return process.returncode, out.decode(), shown.decode()


def test_progress_shows_on_a_terminal_and_goes_away(tmp_path) -> None:
    code, out, shown = _on_a_terminal(["explore", "saga_verify.reference:fresh_key_on_retry", "--report-dir", str(tmp_path)], tmp_path)
    assert code == 1
    assert "fresh_key_on_retry: preflight, 0 plans tried, 0 failures so far" in shown
    assert re.search(r"fresh_key_on_retry: (sweep|shrinking), \d+ plans tried, [01] failures? so far", shown)
    assert shown.endswith("\r\x1b[K")  # the line is cleared before the report is printed
    # stdout is untouched: the report of every failure it found
    assert re.match(r"\d distinct broken invariants in saga 'fresh_key_on_retry':\n\nsaga 'fresh_key_on_retry' broke no_double_create\n", out)
    code, _, shown = _on_a_terminal(["demo", "--max-examples", "0", "--report-dir", str(tmp_path)], tmp_path)
    assert code == 0  # the sweep alone catches every broken variant
    assert "order (1/35): sweep" in shown
    assert "volatile_dedupe (12/35)" in shown
    assert "retries_past_budget (16/35)" in shown
    assert "compensation_not_resumed (20/35)" in shown
    assert "check_then_act_oversell (23/35)" in shown
    assert "ack_before_commit (31/35)" in shown
    assert "late_reply_resumes (35/35)" in shown


def test_no_progress_when_not_a_terminal(tmp_path) -> None:
    completed = subprocess.run(
        [str(SCRIPT), "explore", "saga_verify.reference:fresh_key_on_retry", "--report-dir", str(tmp_path)],
        capture_output=True, text=True, check=False, cwd=tmp_path, timeout=120,
    )
    assert completed.returncode == 1
    assert completed.stderr == ""


def test_explore_says_when_the_sweep_stopped_at_its_budget(tmp_path, capsys) -> None:
    argv = ["explore", "saga_verify.reference:order_saga", "--sweep-faults", "3", "--sweep-budget", "60", "--max-examples", "0"]
    assert run([*argv, "--report-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "held every invariant over 62 executions" in out
    assert out.splitlines()[1] == (
        "  the sweep stopped at its budget after 60 plans: not every plan of up to 3 faults was tried "
        "(raise sweep_budget, or --sweep-budget, to go further)"
    )
    assert "every plan of up to 3 faults over these calls holds" not in out
    assert run([*argv, "--json", "--report-dir", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out)["sweep"] == {"max_faults": 3, "plans": 60, "complete": False}


SHOP_SAGA = """
from saga_verify import Ledger, Saga, Step


class Box:
    def __init__(self):
        self.ledger = Ledger()

    def put(self, idempotency_key):
        self.ledger.record("put")
        return "ok"

    def take(self, idempotency_key):
        self.ledger.record("take")
        return "ok"


def run(services, order):
    try:
        services.box.put(idempotency_key="k")
    except (ConnectionError, TimeoutError):
        return "failed"
    return "completed"


saga = Saga("shop", steps=[Step("box", "put", "take")], participants=lambda: {"box": Box()}, run=run)
"""


def test_the_command_imports_a_saga_from_the_folder_it_runs_in(tmp_path) -> None:
    """``saga-verify explore shop:saga`` in the project's folder, as pytest and uvicorn import
    from it, with no PYTHONPATH; and the replay line the report prints works there too."""
    (tmp_path / "shop.py").write_text(SHOP_SAGA, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    explored = subprocess.run(
        [str(SCRIPT), "explore", "shop:saga", "--max-examples", "0", "--report-dir", "plans"],
        capture_output=True, text=True, check=False, cwd=tmp_path, env=env, timeout=120,
    )
    assert explored.stderr == ""
    assert explored.returncode == 1, explored.stdout
    replay_line = next(line for line in explored.stdout.splitlines() if line.startswith("Reproduce with: saga-verify replay "))
    plan_file = replay_line.rsplit(" ", 1)[1]
    replayed = subprocess.run(
        [str(SCRIPT), "replay", plan_file], capture_output=True, text=True, check=False, cwd=tmp_path, env=env, timeout=120
    )
    assert replayed.stderr == ""
    assert replayed.returncode == 1
    assert "all_or_nothing: the saga reported failed and left box.put in effect" in replayed.stdout
