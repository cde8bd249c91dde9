"""A search ends whatever the saga does with the exceptions it sees: the harness decides without
raising through the saga's code where it can (a spent budget refuses calls; a Hypothesis example
out of choices runs on without faults), stops an event loop from outside, and stops what it does
not own with a watchdog. Searches that used to hang run in a fresh interpreter, so that a hang
fails the test (after its timeout) instead of hanging the suite."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sagas_in_tasks

import saga_verify
from saga_verify import FaultPlan, run_plan
from saga_verify.errors import SagaStuckError
from saga_verify.invariants import check, terminates

HERE = Path(__file__).resolve().parent
#: Real seconds a search may take in a fresh interpreter before the test calls it a hang. The
#: searches below take well under a second each when nothing hangs.
HANG = 120


def _search(saga_name: str, *, ignore_sigint: bool = False, **options: Any) -> dict[str, Any]:
    """Explore ``sagas_in_tasks.<saga_name>`` in a fresh interpreter; what it found, as JSON.
    With ``ignore_sigint``, the interpreter starts with SIGINT ignored, as a shell's background
    job (and many CI runners) start it."""
    code = f"""
import json, sys
sys.path.insert(0, {str(HERE)!r})
import hypothesis, saga_verify, sagas_in_tasks
from saga_verify.errors import SagaVerifyError
try:
    result = saga_verify.explore(getattr(sagas_in_tasks, {saga_name!r}), settings=hypothesis.settings(database=None),
                                 report_dir=None, **{options!r})
except SagaVerifyError as exc:
    print(json.dumps({{"error": type(exc).__name__, "message": str(exc)}}))
else:
    print(json.dumps({{"failures": [[str(f.plan), list(f.invariants), f.execution.halted] for f in result.failures],
                      "hypothesis_examples": result.hypothesis_examples}}))
"""
    try:
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=HANG, check=False,
            preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ignore_sigint else None,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"the search of {saga_name} did not end within {HANG} s")
    assert done.returncode == 0, done.stderr
    found: dict[str, Any] = json.loads(done.stdout)
    return found


@pytest.mark.parametrize("saga_name", ["retry_forever_in_task", "retry_forever_over_http_in_task"])
def test_a_saga_retrying_forever_in_a_task_breaks_terminates(saga_name: str) -> None:
    # The budget used to stop the saga by raising in its task: the task died, the future it
    # would have resolved never was, and the search waited in the event loop forever.
    found = _search(saga_name, max_examples=0)
    assert found["failures"][0] == ["outage at payment.charge#1", ["terminates"], "made more than 200 calls"]


def test_the_budget_refuses_calls_instead_of_raising_in_the_saga() -> None:
    plan = FaultPlan.loads('{"faults": [{"kind": "outage", "at": "payment.charge#1"}]}')
    execution = run_plan(sagas_in_tasks.retry_forever_in_task, plan)
    assert execution.status == "halted"
    assert execution.halted == "made more than 200 calls"
    assert execution.error is None
    assert len(execution.trace) == 200
    assert [v.invariant for v in check(execution, [terminates])] == ["terminates"]


@pytest.mark.parametrize("saga_name", ["careful_in_task", "careful_over_http_in_task"])
def test_hypothesis_running_out_of_choices_does_not_reach_the_saga(saga_name: str) -> None:
    # Hypothesis stops an example that ran out of choices with StopTest, raised from a draw at
    # a delivery point: inside the saga's task it used to hang the search like the budget did.
    found = _search(saga_name, sweep_faults=0, max_examples=300)
    assert found == {"failures": [], "hypothesis_examples": 300}


def test_a_saga_whose_tasks_all_wait_for_nothing_is_stopped() -> None:
    found = _search("waits_forever", max_examples=0)
    plan, invariants, halted = found["failures"][0]
    assert (plan, invariants) == ("no faults", ["terminates"])
    assert halted.startswith("stopped waiting: every task of the saga waits for something that can never happen")


def test_a_saga_that_swallows_even_the_harness_stop_is_stopped_by_its_loop() -> None:
    plan = FaultPlan.loads('{"faults": [{"kind": "outage", "at": "payment.charge#1"}]}')
    execution = run_plan(sagas_in_tasks.swallows_everything, plan)
    assert execution.status == "halted"
    assert [v.invariant for v in check(execution, [terminates])] == ["terminates"]


@pytest.mark.parametrize(
    ("saga_name", "where"),
    [
        ("busy_loop", "in _busy"),
        ("blocked_on_a_lock", "in _blocked\n    threading.Event().wait()"),
        ("waits_for_real_io", "in _reads_a_socket\n    await asyncio.get_running_loop().sock_recv(ours, 1)"),
    ],
)
def test_a_saga_stuck_on_what_the_harness_does_not_own_is_stopped_by_the_watchdog(saga_name: str, where: str) -> None:
    found = _search(saga_name, max_examples=0)
    assert found["error"] == "SagaStuckError"
    message = found["message"]
    assert message.startswith(f"saga {saga_name!r} did not return within 0.3 real seconds (max_real_seconds) under no faults")
    assert "it waits on something saga-verify does not own" in message
    assert 'sagas_in_tasks.py", line' in message
    assert where in message  # where it was stuck


def test_a_saga_blocked_on_a_lock_is_stopped_where_sigint_is_ignored() -> None:
    found = _search("blocked_on_a_lock", ignore_sigint=True, max_examples=0)
    assert found["error"] == "SagaStuckError"
    assert "in _blocked\n    threading.Event().wait()" in found["message"]


def test_a_stuck_saga_is_an_error_here_too_not_a_verdict() -> None:
    with pytest.raises(SagaStuckError, match=r"in _busy"):
        saga_verify.replay(sagas_in_tasks.busy_loop, FaultPlan())
    # The process goes on: the interrupt was taken back, and the next execution runs as usual.
    execution = run_plan(sagas_in_tasks.careful_in_task)
    assert execution.status == "completed"
