"""Plans per second of the correct reference saga in each runtime: `.venv/bin/python bench/runtimes.py`.

For each runtime (sim, asgi, process) the exhaustive 2-fault sweep (``sweep_faults=2``,
``max_examples=0``) runs ``--repeat`` times; a figure is executions / seconds of ``explore``,
the median over the repetitions. The process runtime's services are started (and warmed up by one
execution) before the clock starts: start-up is reported on its own line. Nothing asserts on time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import hypothesis

from saga_verify import FaultPlan, explore, replay
from saga_verify.runtimes import RUNTIMES, reference_variants

TARGETS = {"sim": 300.0, "asgi": 300.0, "process": 100.0}


def plans_per_second(runtime: str, repeat: int) -> tuple[float, int, float]:
    """(median plans/s, executions per sweep, seconds to the first execution's end)."""
    saga = next(v for v in reference_variants(runtime) if v.name == "order").saga
    started = time.perf_counter()
    replay(saga, FaultPlan())  # starts the service processes (process runtime) and warms up
    first = time.perf_counter() - started
    rates = []
    executions = 0
    with tempfile.TemporaryDirectory() as reports:
        for _ in range(repeat):
            t0 = time.perf_counter()
            result = explore(saga, settings=hypothesis.settings(database=None), sweep_faults=2, max_examples=0, report_dir=reports)
            seconds = time.perf_counter() - t0
            assert result.ok, result.report()
            executions = result.executions
            rates.append(executions / seconds)
    return statistics.median(rates), executions, first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("runtimes", nargs="*", default=list(RUNTIMES))
    args = parser.parse_args()
    print(f"correct reference saga, 2-fault sweep; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    for runtime in args.runtimes:
        rate, executions, first = plans_per_second(runtime, args.repeat)
        target = TARGETS.get(runtime)
        verdict = "" if target is None else f" (target >= {target:g}: {'met' if rate >= target else 'missed'})"
        print(f"{runtime:<8} {rate:8.1f} plans/s  ({executions} executions a sweep; first execution {first:.2f} s){verdict}")


if __name__ == "__main__":
    main()
