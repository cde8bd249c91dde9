"""The ``saga-verify`` command: ``demo`` runs the reference sagas, ``explore`` searches one of
yours, ``replay`` re-runs a saved plan and prints its timeline."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._options import whole_number
from ._runtimes import RUNTIMES


def _runtime(text: str) -> str:
    if text not in RUNTIMES:
        raise argparse.ArgumentTypeError(f"runtime {text!r} is not available; choose from: {', '.join(RUNTIMES)}")
    return text


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="saga-verify", description="Find the failure schedules under which a saga breaks its promises.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{demo,explore,replay,plan-schema}")

    def search_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--seed", type=whole_number(0), default=0, help="seed of the Hypothesis phase (default 0)")
        p.add_argument("--max-examples", type=whole_number(0), default=200, help="Hypothesis examples after the sweep (default 200; 0 skips)")
        p.add_argument("--sweep-faults", type=whole_number(0), default=2, help="faults per plan in the exhaustive sweep (default 2; 0 skips)")
        p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    demo = sub.add_parser("demo", help="verify the reference order saga and catch every broken variant")
    search_options(demo)
    demo.add_argument("--runtime", type=_runtime, default="sim", help="where participants live (default sim)")
    demo.add_argument("--report-dir", default=".saga-verify/demo", help="where minimal plans are written (default .saga-verify/demo)")

    explore = sub.add_parser("explore", help="search failure schedules of your saga (package.module:attribute)")
    explore.add_argument("saga", help="the saga to explore, as package.module:attribute")
    search_options(explore)
    explore.add_argument("--runtime", type=_runtime, default="sim", help="where its services run (default sim; others need a System)")
    explore.add_argument("--report-dir", default=".saga-verify", help="where minimal plans are written (default .saga-verify)")

    replay = sub.add_parser("replay", help="re-run a saved plan and print its timeline")
    replay.add_argument("plan", help="a plan file written by a search")
    replay.add_argument("--saga", help="the saga to run it against, if the file does not name where it lives")
    replay.add_argument("--runtime", type=_runtime, default="sim", help="where its services run (default sim)")

    sub.add_parser("plan-schema", help="print the JSON Schema of plan files (contracts/plan.schema.json)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from .errors import SagaVerifyError

    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 2  # argparse printed why
    try:
        if args.command == "demo":
            return _demo(args)
        if args.command == "explore":
            return _explore(args)
        if args.command == "plan-schema":
            return _plan_schema()
        return _replay(args)
    except SagaVerifyError as exc:
        print(f"saga-verify: error: {exc}", file=sys.stderr)
        return 2


def _no_database() -> Any:
    import hypothesis

    return hypothesis.settings(database=None)


def demo_rows(seed: int, max_examples: int, sweep_faults: int, runtime: str, report_dir: str | None) -> list[dict[str, Any]]:
    """One row per reference saga: the shape ``saga-verify demo --json`` prints."""
    from ._verify import explore
    from .reference import variants

    rows = []
    for variant in variants():
        started = time.perf_counter()
        # The demo shows the search itself, so it does not start from remembered failures.
        result = explore(
            variant.saga,
            seed=seed,
            max_examples=max_examples,
            sweep_faults=sweep_faults,
            settings=_no_database(),
            report_dir=report_dir,
            runtime=runtime,
        )
        seconds = time.perf_counter() - started
        first = result.failures[0] if result.failures else None
        if variant.broken:
            verdict = "caught" if first else "MISSED"
        else:
            verdict = "holds" if first is None else "FALSE ALARM"
        rows.append(
            {
                "saga": variant.name,
                "kind": variant.kind,
                "runtime": runtime,
                "broken": variant.broken,
                "bug": variant.bug,
                "verdict": verdict,
                "violated": list(first.invariants) if first else [],
                "examples": first.examples if first else result.executions,
                "found_by": first.found_by if first else None,
                "plan": first.plan.to_json() if first else None,
                "plan_file": str(first.plan_path) if first and first.plan_path else None,
                "shrink_seconds": round(first.shrink_seconds, 4) if first else None,
                "seconds": round(seconds, 4),
            }
        )
    return rows


def _plan_text(plan: dict[str, Any] | None) -> str:
    if plan is None:
        return "-"
    if not plan["faults"]:
        return "no faults"
    from .faults import FaultPlan

    return str(FaultPlan.from_json(plan))


def _demo(args: argparse.Namespace) -> int:
    rows = demo_rows(args.seed, args.max_examples, args.sweep_faults, args.runtime, args.report_dir)
    good = all(r["verdict"] in ("holds", "caught") for r in rows)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0 if good else 1
    header = ("variant", "verdict", "broken invariants", "examples", "minimal plan", "seconds")
    table = [
        (r["saga"], r["verdict"], ", ".join(r["violated"]) or "-", str(r["examples"]), _plan_text(r["plan"]), f"{r['seconds']:.3f}")
        for r in rows
    ]
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(header)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    print(f"saga-verify demo: reference order saga ({args.runtime}), seed {args.seed}")
    print(line)
    print("  ".join("-" * w for w in widths))
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    caught = sum(r["verdict"] == "caught" for r in rows)
    broken = sum(r["broken"] for r in rows)
    print()
    print(f"{caught}/{broken} broken variants caught; correct saga: {rows[0]['verdict']}")
    example = next((r for r in rows if r["plan_file"]), None)
    if example:
        print(f"Replay any minimal plan: saga-verify replay {example['plan_file']}")
    return 0 if good else 1


def _explore(args: argparse.Namespace) -> int:
    from ._reporting import render_result
    from ._saga import load_saga
    from ._verify import explore

    saga = load_saga(args.saga)
    result = explore(
        saga, seed=args.seed, max_examples=args.max_examples, sweep_faults=args.sweep_faults, report_dir=args.report_dir, runtime=args.runtime
    )
    if args.json:
        print(
            json.dumps(
                {
                    "saga": saga.name,
                    "ok": result.ok,
                    "executions": result.executions,
                    "seconds": round(result.seconds, 4),
                    "failures": [
                        {"violated": list(f.invariants), "examples": f.examples, "plan": f.plan.to_json(), "plan_file": str(f.plan_path) if f.plan_path else None}
                        for f in result.failures
                    ],
                },
                indent=2,
            )
        )
    else:
        print(render_result(result))
    return 0 if result.ok else 1


def _replay(args: argparse.Namespace) -> int:
    from ._reporting import render_execution
    from ._saga import load_saga
    from ._verify import replay
    from .errors import PlanError
    from .faults import FaultPlan

    plan = FaultPlan.load(Path(args.plan))
    ref = args.saga or plan.saga_ref
    if not ref:
        named = f" (it is for saga {plan.saga!r})" if plan.saga else ""
        raise PlanError(f"plan file {args.plan!r} does not say where its saga lives{named}; pass --saga package.module:attribute")
    saga = load_saga(ref)
    execution, violations = replay(saga, plan, runtime=args.runtime)
    where = "" if args.runtime == "sim" else f" on {args.runtime}"
    print(f"saga {saga.name!r} under {plan}{where}")
    print(render_execution(execution, violations))
    return 1 if violations else 0


def _plan_schema() -> int:
    from .faults._plan import plan_schema

    print(json.dumps(plan_schema(), indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
