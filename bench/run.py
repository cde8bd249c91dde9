"""saga-verify benchmark: `make bench` (or `.venv/bin/python bench/run.py`).

Prints a compact summary and writes bench/results.json (atomically). Every figure comes from the
same run. Nothing here asserts on time: targets are reported as met or missed, never enforced.

What is measured:
- raw_runs_per_s: traced simulated executions of the reference order saga (World(...).run()),
  no Hypothesis, over a fixed mix of plans; median of several repetitions, pinned to one core.
- raw_code_runs_per_s: the saga's own code (OrderSaga.run) against fresh reference participants
  called directly, with a trivial clock: what the harness costs is the ratio of the two.
- examples_per_s / bare_hypothesis_examples_per_s: the plugin's Hypothesis phase on the correct
  saga against a bare @given(st.data()) test that draws the same per-point decisions but runs
  no saga.
- sweep_plans_per_s: executions per second of the exhaustive 2-fault sweep on the correct saga.
- variants: per broken reference variant and seed 0..9, examples to the first violation and
  shrink seconds of the default search and of Hypothesis alone, against a uniform-random
  fault-injection baseline (no shrinking) that draws faults at the plugin's fault rate.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import hypothesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import strategies as st

import saga_verify
from saga_verify import Saga
from saga_verify.exploration import ExplorationResult, decision_strategies, explore
from saga_verify.exploration._search import FAULT_RATE
from saga_verify.faults import (
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
    order_saga,
    variants,
)
from saga_verify.world import Endpoint, World, plan_chooser

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS = BENCH_DIR / "results.json"

# -- sizes: chosen so the whole benchmark stays well under 3 minutes on a 2-core machine ----------
RAW_REPS = 9
RAW_ROUNDS = 400  # rounds of the plan mix per repetition (5 plans: 2,000 executions)
CODE_RUNS = 5000  # runs of the saga code alone per repetition
EXAMPLES_N = 1000  # Hypothesis examples per throughput repetition
EXAMPLES_REPS = 5
SWEEP_REPS = 5
SEEDS = tuple(range(10))
HYPOTHESIS_ONLY_MAX_EXAMPLES = 5000
BASELINE_CAP = 20_000

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
    """Traced runs over the plan mix, traced fault-free runs, and the saga's own code with no
    harness, in interleaved repetitions so that a busy moment on the machine hits all three."""
    saga = order_saga
    mix = plan_mix(saga)
    choosers = [plan_chooser(plan) for _, plan in mix]
    shapes = {}
    for (label, plan), chooser in zip(mix, choosers, strict=True):
        execution = World(saga, chooser, plan.seed).run()
        shapes[label] = {"status": execution.status, "deliveries": len(execution.trace)}
    assert _code_run() == "completed"

    def traced(selected: Sequence[Callable[[Endpoint, int], Fault | None]], rounds: int) -> float:
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
    mixed: list[float] = []
    fault_free: list[float] = []
    bare: list[float] = []
    for _ in range(RAW_REPS):
        mixed.append(traced(choosers, RAW_ROUNDS))
        fault_free.append(traced(choosers[:1], RAW_ROUNDS * 2))
        bare.append(code(CODE_RUNS))
    return {
        "mix": shapes,
        "runs_per_rep": {"mix": RAW_ROUNDS * len(choosers), "fault_free": RAW_ROUNDS * 2, "code": CODE_RUNS},
        "reps_runs_per_s": [round(x) for x in mixed],
        "raw_runs_per_s": statistics.median(mixed),
        "fault_free_reps_runs_per_s": [round(x) for x in fault_free],
        "raw_runs_per_s_fault_free": statistics.median(fault_free),
        "code_reps_runs_per_s": [round(x) for x in bare],
        "raw_code_runs_per_s": statistics.median(bare),
    }


# -- 3. Hypothesis examples per second: plugin vs bare ---------------------------------------------
def _forward_slots(saga: Saga) -> list[int]:
    ordered = sorted(saga.operations)
    return [ordered.index((s.participant, s.action)) for s in saga.steps]


def _bare_test(n: int) -> Callable[[], int]:
    """A bare Hypothesis test with the plugin's settings that draws one decision per delivery
    point of a fault-free run (the 4 forward operations' slots) and runs no saga."""
    strategies = decision_strategies(order_saga)
    slots = _forward_slots(order_saga)

    def run() -> int:
        calls = 0

        def body(data: st.DataObject) -> None:
            nonlocal calls
            calls += 1
            for slot in slots:
                data.draw(strategies[slot])

        base = _settings()
        # The same overrides the plugin applies to the settings it is given.
        test = hypothesis.settings(
            base,
            max_examples=n,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            phases=tuple(p for p in base.phases if p is not Phase.explain),
            report_multiple_bugs=True,
        )(given(st.data())(body))
        hypothesis.seed(0)(test)()
        return calls

    return run


def bench_examples() -> dict[str, Any]:
    """The plugin's Hypothesis phase and the bare test, in interleaved repetitions."""
    bare_test = _bare_test(EXAMPLES_N)
    plugin: list[float] = []
    plugin_examples = []
    bare: list[float] = []
    bare_examples = []
    for _ in range(EXAMPLES_REPS):
        result = explore(order_saga, sweep_faults=0, max_examples=EXAMPLES_N, seed=0, settings=_settings(), report_dir=None)
        assert result.ok, result.report()
        plugin.append(result.hypothesis_examples / result.seconds)
        plugin_examples.append(result.hypothesis_examples)
        t0 = time.perf_counter()
        calls = bare_test()
        bare.append(calls / (time.perf_counter() - t0))
        bare_examples.append(calls)
    examples_per_s = statistics.median(plugin)
    bare_per_s = statistics.median(bare)
    return {
        "max_examples": EXAMPLES_N,
        "examples_reps_per_s": [round(x) for x in plugin],
        "examples_run": plugin_examples,
        "examples_per_s": examples_per_s,
        "bare_reps_per_s": [round(x) for x in bare],
        "bare_examples_run": bare_examples,
        "bare_draws_per_example": len(_forward_slots(order_saga)),
        "bare_hypothesis_examples_per_s": bare_per_s,
        "examples_ratio": examples_per_s / bare_per_s,
    }


# -- 4. the exhaustive sweep -----------------------------------------------------------------------
def bench_sweep() -> dict[str, Any]:
    reps = []
    executions = 0
    for _ in range(SWEEP_REPS):
        result = explore(order_saga, sweep_faults=2, max_examples=0, seed=0, settings=_settings(), report_dir=None)
        assert result.ok, result.report()
        reps.append(result.executions / result.seconds)
        executions = result.executions
    return {"executions": executions, "reps_plans_per_s": [round(x) for x in reps], "sweep_plans_per_s": statistics.median(reps)}


# -- 5. broken variants: default search, Hypothesis only, random baseline --------------------------
def random_baseline(saga: Saga, seed: int, cap: int = BASELINE_CAP) -> int | None:
    """Uniform-random fault injection, no shrinking: at every delivery point, with probability
    FAULT_RATE, a fault drawn uniformly from the point's templates. Returns the number of
    executions up to and including the first that breaks an invariant, or None at the cap."""
    rng = random.Random(seed)
    templates: dict[tuple[str, str], tuple[FaultTemplate, ...]] = {
        op: templates_for(saga, *op) for op in saga.operations
    }
    invariants = invariants_for(saga)

    def choose(ep: Endpoint, attempt: int) -> Fault | None:
        if rng.random() >= FAULT_RATE:
            return None
        template = rng.choice(templates[(ep.participant, ep.operation)])
        return template.at(DeliveryPoint(ep.participant, ep.operation, attempt))

    for n in range(1, cap + 1):
        execution = World(saga, choose).run()
        if check(execution, invariants):
            return n
    return None


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


def bench_variants() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for variant in variants():
        if not variant.broken:
            continue
        saga = variant.saga
        default = [explore(saga, seed=s, settings=_settings(), report_dir=None) for s in SEEDS]
        hyp_only = [
            explore(saga, seed=s, sweep_faults=0, max_examples=HYPOTHESIS_ONLY_MAX_EXAMPLES, settings=_settings(), report_dir=None)
            for s in SEEDS
        ]
        t0 = time.perf_counter()
        baseline = [random_baseline(saga, s) for s in SEEDS]
        baseline_s = time.perf_counter() - t0
        capped = sum(1 for b in baseline if b is None)
        baseline_counts = [BASELINE_CAP if b is None else b for b in baseline]
        baseline_median = statistics.median(baseline_counts)
        d = _search_summary(default)
        h = _search_summary(hyp_only)
        out[variant.name] = {
            "bug": variant.bug,
            "default": d,
            "hypothesis_only": h,
            "random_baseline": {
                "found": len(SEEDS) - capped,
                "seeds": len(SEEDS),
                "capped": capped,
                "cap": BASELINE_CAP,
                "median_executions": baseline_median,
                "median_is_lower_bound": capped * 2 >= len(SEEDS),
                "executions": baseline_counts,
                "seconds": round(baseline_s, 3),
            },
            "ratio_baseline_to_default": _ratio(baseline_median, d["median_examples"]),
            "ratio_baseline_to_hypothesis_only": _ratio(baseline_median, h["median_examples"]),
        }
    return out


def _ratio(a: float, b: float | None) -> float | None:
    return None if not b else a / b


# -- 6. why the searches compare as they do: what each generates on the correct saga --------------
def bench_generation(n: int = 1000) -> dict[str, Any]:
    """What plans the plugin's way of drawing decisions (a replica built from the public
    decision_strategies, one draw per delivery point reached) produces in n Hypothesis examples,
    against n runs of the random baseline's chooser: share of fault-free executions, distinct plans,
    decisions per execution."""
    saga = order_saga
    strategies = decision_strategies(saga)
    hyp_plans: list[tuple[Fault, ...]] = []
    hyp_draws = 0

    def body(data: st.DataObject) -> None:
        nonlocal hyp_draws

        def choose(ep: Endpoint, attempt: int) -> Fault | None:
            nonlocal hyp_draws
            hyp_draws += 1
            template: FaultTemplate | None = data.draw(strategies[ep.slot])
            return None if template is None else template.at(DeliveryPoint(ep.participant, ep.operation, attempt))

        hyp_plans.append(World(saga, choose).run().faults)

    base = _settings()
    test = hypothesis.settings(
        base,
        max_examples=n,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=tuple(p for p in base.phases if p is not Phase.explain),
    )(given(st.data())(body))
    hypothesis.seed(0)(test)()

    rng = random.Random(0)
    templates = {op: templates_for(saga, *op) for op in saga.operations}
    rnd_draws = 0

    def choose_randomly(ep: Endpoint, attempt: int) -> Fault | None:
        nonlocal rnd_draws
        rnd_draws += 1
        if rng.random() >= FAULT_RATE:
            return None
        return rng.choice(templates[(ep.participant, ep.operation)]).at(DeliveryPoint(ep.participant, ep.operation, attempt))

    rnd_plans = [World(saga, choose_randomly).run().faults for _ in range(n)]

    def describe(plans: list[tuple[Fault, ...]], draws: int) -> dict[str, Any]:
        sizes = Counter(len(p) for p in plans)
        return {
            "executions": len(plans),
            "fault_free_share": round(sizes[0] / len(plans), 3),
            "distinct_plans": len(set(plans)),
            "decisions_per_execution": round(draws / len(plans), 2),
            "faults_per_decision": round(sum(len(p) for p in plans) / draws, 3),
            "plan_sizes": {str(k): sizes[k] for k in sorted(sizes)},
        }

    return {"hypothesis_replica": describe(hyp_plans, hyp_draws), "random_baseline": describe(rnd_plans, rnd_draws)}


# -- targets ---------------------------------------------------------------------------------------
def _geomean(values: Sequence[float]) -> float | None:
    return math.exp(statistics.fmean(math.log(v) for v in values)) if values else None


def targets(raw: dict[str, Any], examples: dict[str, Any], var: dict[str, Any]) -> dict[str, Any]:
    overhead = raw["raw_code_runs_per_s"] / raw["raw_runs_per_s"]
    out: dict[str, Any] = {
        "raw_runs_per_s": {"target": f">= {TARGET_RAW_RUNS:g}", "value": round(raw["raw_runs_per_s"]), "met": raw["raw_runs_per_s"] >= TARGET_RAW_RUNS},
        "harness_overhead": {"target": f"<= {TARGET_OVERHEAD:g}", "value": round(overhead, 2), "met": overhead <= TARGET_OVERHEAD},
        "examples_ratio": {
            "target": f">= {TARGET_EXAMPLES_RATIO:g}",
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
    for mode, key in (("default", "ratio_baseline_to_default"), ("hypothesis_only", "ratio_baseline_to_hypothesis_only")):
        ratios = {name: v[key] for name, v in var.items()}
        misses = [name for name, r in ratios.items() if r is None or r < TARGET_BASELINE_FACTOR]
        known = [r for r in ratios.values() if r is not None]
        out[f"baseline_factor_{mode}"] = {
            "target": f"every variant: random-baseline median executions / {mode} median >= {TARGET_BASELINE_FACTOR:g}",
            "value": {
                "min_ratio": _r(min(known, default=None), 2),
                "geomean_ratio": _r(_geomean(known), 2),
                "variants_meeting": f"{len(var) - len(misses)}/{len(var)}",
                "missed_by": misses,
            },
            "met": not misses,
        }
    return out


# -- output ----------------------------------------------------------------------------------------
def write_results(data: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".results.", suffix=".json.tmp", dir=BENCH_DIR)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2)
            handle.write("\n")
        os.chmod(tmp, 0o644)  # mkstemp makes it private; results are for everyone to read
        os.replace(tmp, RESULTS)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _mark(met: bool) -> str:
    return "met " if met else "MISS"


def summary(data: dict[str, Any]) -> str:
    m = data["machine"]
    lines = [
        f"saga-verify benchmark  (python {m['python']}, {m['cpu_count']} cpus, pinned cpu {m['pinned_cpu']}, "
        f"hypothesis {m['hypothesis']}, git {m['git_commit']}{' +uncommitted' if m['saga_verify_uncommitted_changes'] else ''}, "
        f"load {m['loadavg_at_start'][0] if m['loadavg_at_start'] else '-'} -> {m.get('loadavg_at_end', ['-'])[0]})",
        "",
        "throughput (median of repetitions)",
        f"  raw traced runs/s (plan mix)      {_fmt(data['raw_runs_per_s']):>10}   fault-free only: {_fmt(data['raw_runs_per_s_fault_free'])}",
        f"  saga code alone runs/s            {_fmt(data['raw_code_runs_per_s']):>10}",
        f"  harness overhead (code / traced)  {_fmt(data['harness_overhead'], 2):>10}   fault-free only: {_fmt(data['harness_overhead_fault_free'], 2)}",
        f"  plugin Hypothesis examples/s      {_fmt(data['examples_per_s']):>10}",
        f"  bare Hypothesis examples/s        {_fmt(data['bare_hypothesis_examples_per_s']):>10}   ratio {data['examples_ratio']:.3f}",
        f"  sweep plans/s (2 faults, correct) {_fmt(data['sweep_plans_per_s']):>10}   ({data['details']['sweep']['executions']} executions)",
        "",
        "broken variants, seeds 0-9: median examples to violation (found/10), median|max shrink s; random baseline median executions",
        f"  {'variant':<30} {'default':>14} {'shrink':>13} {'hyp-only':>14} {'shrink':>13} {'random':>9}  {'rnd/def':>7} {'rnd/hyp':>7}",
    ]
    for name, v in data["variants"].items():
        d, h, b = v["default"], v["hypothesis_only"], v["random_baseline"]
        rnd = f"{_fmt(b['median_executions'])}" + ("*" if b["capped"] else "")
        lines.append(
            f"  {name:<30} {_fmt(d['median_examples']):>8} ({d['found']:>2}) {_fmt(d['median_shrink_s'], 3):>6}|{_fmt(d['max_shrink_s'], 3):<6}"
            f" {_fmt(h['median_examples']):>8} ({h['found']:>2}) {_fmt(h['median_shrink_s'], 3):>6}|{_fmt(h['max_shrink_s'], 3):<6}"
            f" {rnd:>9}  {_fmt(v['ratio_baseline_to_default'], 2):>7} {_fmt(v['ratio_baseline_to_hypothesis_only'], 2):>7}"
        )
    if any(v["random_baseline"]["capped"] for v in data["variants"].values()):
        lines.append(f"  * some baseline seeds hit the cap of {BASELINE_CAP:,} executions (counted as the cap)")
    g = data["details"]["generation"]
    gh, gr = g["hypothesis_replica"], g["random_baseline"]
    lines += [
        "",
        "generation on the correct saga (per 1,000 executions): fault-free share / distinct plans / decisions per execution",
        f"  Hypothesis (plugin's drawing)  {gh['fault_free_share']:.2f} / {gh['distinct_plans']} / {gh['decisions_per_execution']}"
        f"    random baseline  {gr['fault_free_share']:.2f} / {gr['distinct_plans']} / {gr['decisions_per_execution']}",
    ]
    lines += ["", "targets"]
    for name, t in data["targets"].items():
        value = t["value"]
        if isinstance(value, dict):
            shown = ", ".join(f"{k}={v}" for k, v in value.items())
        else:
            shown = str(value)
        lines.append(f"  [{_mark(t['met'])}] {name:<32} {t['target']}")
        lines.append(f"         {shown}")
    lines += ["", f"total {data['bench_seconds']:.1f} s; wrote {RESULTS.relative_to(ROOT)}"]
    return "\n".join(lines)


def main() -> int:
    started = time.perf_counter()
    pinned = _pin_to_one_core()
    machine = _machine(pinned)
    print("measuring raw runs ...", file=sys.stderr, flush=True)
    raw = bench_raw()
    print("measuring Hypothesis examples/s ...", file=sys.stderr, flush=True)
    examples = bench_examples()
    sweep = bench_sweep()
    print("searching broken variants (10 seeds each) ...", file=sys.stderr, flush=True)
    var = bench_variants()
    generation = bench_generation()
    data: dict[str, Any] = {
        "command": "make bench",
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "raw_runs_per_s": round(raw["raw_runs_per_s"], 1),
        "raw_runs_per_s_fault_free": round(raw["raw_runs_per_s_fault_free"], 1),
        "raw_code_runs_per_s": round(raw["raw_code_runs_per_s"], 1),
        "harness_overhead": round(raw["raw_code_runs_per_s"] / raw["raw_runs_per_s"], 3),
        "harness_overhead_fault_free": round(raw["raw_code_runs_per_s"] / raw["raw_runs_per_s_fault_free"], 3),
        "examples_per_s": round(examples["examples_per_s"], 1),
        "bare_hypothesis_examples_per_s": round(examples["bare_hypothesis_examples_per_s"], 1),
        "examples_ratio": round(examples["examples_ratio"], 4),
        "sweep_plans_per_s": round(sweep["sweep_plans_per_s"], 1),
        "variants": var,
        "targets": targets(raw, examples, var),
        "details": {"raw": raw, "examples": examples, "sweep": sweep, "fault_rate": FAULT_RATE, "generation": generation},
        "notes": [
            "raw_runs_per_s is over a mix of plans (see details.raw.mix) whose faulted runs make more calls than a "
            "fault-free run; raw_code_runs_per_s is fault-free, so harness_overhead_fault_free is the like-for-like ratio.",
            "examples counts include the 2 fault-free preflight executions of explore(); the baseline counts from 1.",
            "the default search begins with a deterministic sweep, so seeds only matter when the sweep finds nothing.",
            "the random baseline draws faults at FAULT_RATE from the same templates the plugin draws from, without shrinking.",
        ],
        "bench_seconds": 0.0,
    }
    data["bench_seconds"] = round(time.perf_counter() - started, 1)
    if hasattr(os, "getloadavg"):
        machine["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    write_results(data)
    print(summary(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
