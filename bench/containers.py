"""saga-verify container benchmark: `make bench-containers` (or `.venv/bin/python bench/containers.py
[--cold]`). Needs a Docker engine (`fixtures/containers/docker-engine.sh start`).

Prints a compact summary and writes bench/containers.json (atomically). Nothing here asserts on
time: targets are reported as met or missed.

What is measured:
- cold_start_s (only with --cold, which first removes the cached base image, services image and
  wheelhouse): building everything from nothing (debootstrap base image, wheelhouse, services
  image) and starting the four reference services until each answers GET /health.
- warm_start_s: the same with everything cached: finding the image, starting the four containers
  on a private network, waiting until each answers. Target: <= 20 s.
- plans_per_s: executions per second of the correct saga's 2-fault sweep over the container
  runtime, split into the plans with no crash fault and those with one. A crash really kills the
  participant's container and starts it again (about a second), so the two are not alike; the
  target (>= 50 plans/s warm) is judged on the plans without a crash.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import hypothesis

from saga_verify import FaultPlan
from saga_verify._exploration import run_plan_unchecked, sweep
from saga_verify._files import write_atomically
from saga_verify._runtimes import stop_services
from saga_verify.faults import Crash

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "containers.json"
WARM_START_TARGET = 20.0
PLANS_TARGET = 50.0
SERVICES = ("inventory", "payment", "shipping", "notification")


def _forget_images() -> None:
    """Remove what a cold start must build: the services and base images and the wheelhouses."""
    from saga_verify.containers._engine import engine

    api = engine().api
    for repository in ("saga-verify/services", "saga-verify/base"):
        for image in api.images(name=repository):
            for tag in image.get("RepoTags") or []:
                api.remove_image(tag, force=True)
    shutil.rmtree(ROOT / ".saga-verify" / "wheelhouse", ignore_errors=True)


def start_services() -> tuple[float, None]:
    """Seconds to have the four reference services answering in containers (image included)."""
    from saga_verify import run_plan
    from saga_verify.reference import order_saga

    started = time.perf_counter()
    run_plan(order_saga, runtime="container")  # places the four services, then runs one execution
    return time.perf_counter() - started, None


def bench_plans() -> dict[str, Any]:
    """The correct saga's 2-fault sweep over the containers, timed per plan."""
    from saga_verify._runtimes import place
    from saga_verify.reference import order_saga

    saga = place(order_saga, "container")
    execute = run_plan_unchecked(saga)
    execute(FaultPlan())  # warm: connections open
    times: dict[str, list[float]] = {"without_crash": [], "with_crash": []}
    base = execute(FaultPlan())
    last = time.perf_counter()
    for plan, _ in sweep(saga, execute, max_faults=2, budget=None, base=base):
        now = time.perf_counter()
        kind = "with_crash" if any(isinstance(f, Crash) for f in plan.faults) else "without_crash"
        times[kind].append(now - last)
        last = time.perf_counter()
    out: dict[str, Any] = {}
    for kind, spent in times.items():
        out[kind] = {"plans": len(spent), "seconds": round(sum(spent), 2), "plans_per_s": round(len(spent) / sum(spent), 1)}
    total = sum(len(t) for t in times.values())
    out["all"] = {"plans": total, "plans_per_s": round(total / sum(sum(t) for t in times.values()), 1)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cold", action="store_true", help="remove the cached images first and time building them")
    args = parser.parse_args(argv)

    # This benchmark runs on machines without a registry: testcontainers' reaper (Ryuk) cannot be
    # pulled there, and what the benchmark starts is removed by its session label. Settings given
    # from outside win; the library itself never sets them.
    os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
    from saga_verify.containers import engine_problem
    from saga_verify.containers._engine import engine

    problem = engine_problem()
    if problem is not None:
        print(f"bench/containers.py: {problem}", file=sys.stderr)
        return 2
    hypothesis.settings.register_profile("bench-containers", database=None)

    results: dict[str, Any] = {
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "engine": str(engine().version().get("Version", "")),
    }
    if args.cold:
        _forget_images()
        cold, _ = start_services()
        stop_services()
        results["cold_start_s"] = round(cold, 1)
        print(f"cold start (base image, wheelhouse, image, 4 services)  {cold:7.1f} s", flush=True)
    warm, _ = start_services()
    results["warm_start_s"] = round(warm, 2)
    print(f"warm start (4 services answering)                       {warm:7.2f} s   target <= {WARM_START_TARGET:g} s: "
          f"{'met' if warm <= WARM_START_TARGET else 'MISSED'}", flush=True)
    try:
        plans = bench_plans()
    finally:
        stop_services()
    results["plans"] = plans
    met = plans["without_crash"]["plans_per_s"] >= PLANS_TARGET
    print(f"plans/s, 2-fault sweep without a crash                  {plans['without_crash']['plans_per_s']:7.1f}     "
          f"({plans['without_crash']['plans']} plans)   target >= {PLANS_TARGET:g}: {'met' if met else 'MISSED'}")
    print(f"plans/s, plans with a crash (a real kill and restart)   {plans['with_crash']['plans_per_s']:7.1f}     "
          f"({plans['with_crash']['plans']} plans)")
    print(f"plans/s, the whole sweep                                {plans['all']['plans_per_s']:7.1f}     ({plans['all']['plans']} plans)")
    results["targets"] = {
        "warm_start_s": {"target": WARM_START_TARGET, "value": results["warm_start_s"], "met": warm <= WARM_START_TARGET},
        "plans_per_s_without_crash": {"target": PLANS_TARGET, "value": plans["without_crash"]["plans_per_s"], "met": met},
    }
    write_atomically(RESULTS, json.dumps(results, indent=2) + "\n")
    print(f"written to {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
