"""The ``saga-verify`` command: ``demo`` runs the reference sagas, ``explore`` searches one of
yours, ``replay`` re-runs a saved plan and prints its timeline (and can pin it as a test)."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _cli_contracts
from ._options import whole_number
from ._runtimes import RUNTIMES

if TYPE_CHECKING:
    from ._exploration import ExplorationResult
    from ._reporting import TerminalProgress
    from ._saga import Saga


def _runtime(text: str) -> str:
    if text not in RUNTIMES:
        raise argparse.ArgumentTypeError(f"runtime {text!r} is not available; choose from: {', '.join(RUNTIMES)}")
    return text


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="saga-verify", description="Find the failure schedules under which a saga breaks its promises.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{demo,explore,replay,plan-schema,contracts}")

    def search_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--seed", type=whole_number(0), default=0, help="seed of the Hypothesis phase (default 0)")
        p.add_argument("--max-examples", type=whole_number(0), default=200, help="Hypothesis examples after the sweep (default 200; 0 skips)")
        p.add_argument("--sweep-faults", type=whole_number(0), default=2, help="faults per plan in the exhaustive sweep (default 2; 0 skips)")
        p.add_argument("--json", action="store_true", help="print JSON instead of a table")
        p.add_argument("--html", metavar="DIR", help="also write a self-contained HTML report, DIR/report.html")

    demo = sub.add_parser("demo", help="verify the reference order saga and catch every broken variant")
    search_options(demo)
    demo.add_argument("--runtime", type=_runtime, default="sim", help="where participants live (default sim)")
    demo.add_argument("--report-dir", default=".saga-verify/demo", help="where minimal plans are written (default .saga-verify/demo)")

    explore = sub.add_parser("explore", help="search failure schedules of your saga (package.module:attribute)")
    explore.add_argument("saga", help="the saga to explore, as package.module:attribute or an Arazzo workflow as FILE#workflowId")
    search_options(explore)
    explore.add_argument("--runtime", type=_runtime, default="sim", help="where its services run (default sim; others need a System)")
    explore.add_argument(
        "--sweep-budget", type=whole_number(1), default=3000, help="most plans the exhaustive sweep tries (default 3000)"
    )
    explore.add_argument("--report-dir", default=".saga-verify", help="where minimal plans are written (default .saga-verify)")

    replay = sub.add_parser("replay", help="re-run a saved plan and print its timeline")
    replay.add_argument("plan", help="a plan file written by a search")
    replay.add_argument("--saga", help="the saga to run it against, if the file does not say where its saga lives")
    replay.add_argument("--runtime", type=_runtime, default="sim", help="where its services run (default sim)")
    replay.add_argument(
        "--emit-test",
        metavar="FILE",
        help="append a pytest test to FILE that replays the plan and asserts that the invariants it broke hold",
    )
    sub.add_parser("plan-schema", help="print the JSON Schema of plan files (contracts/plan.schema.json)")
    _cli_contracts.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from .errors import SagaVerifyError

    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 2  # argparse printed why
    _import_from_working_directory()
    try:
        if args.command == "demo":
            return _demo(args)
        if args.command == "explore":
            return _explore(args)
        if args.command == "plan-schema":
            return _plan_schema()
        if args.command == "contracts":
            return _cli_contracts.run(args)
        return _replay(args)
    except SagaVerifyError as exc:
        print(f"saga-verify: error: {exc}", file=sys.stderr)
        return 2


def _import_from_working_directory() -> None:
    """Sagas named as ``module:attribute`` import from the folder the command runs in first, as
    ``python -m``, pytest and uvicorn do (an installed script's own folder is what Python puts
    first instead)."""
    here = os.getcwd()
    if here not in sys.path and "" not in sys.path:
        sys.path.insert(0, here)


def _no_database() -> Any:
    import hypothesis

    return hypothesis.settings(database=None)


@dataclass(frozen=True)
class DemoRun:
    """One reference saga searched by the demo."""

    variant: Any
    result: ExplorationResult
    seconds: float

    def row(self, runtime: str) -> dict[str, Any]:
        """The shape ``saga-verify demo --json`` prints."""
        variant, result, first = self.variant, self.result, (self.result.failures[0] if self.result.failures else None)
        if variant.broken:
            verdict = "caught" if first else "MISSED"
        else:
            verdict = "holds" if first is None else "FALSE ALARM"
        return {
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
            "seconds": round(self.seconds, 4),
            "coverage": result.coverage.to_json() if result.coverage is not None else None,
        }


def demo_runs(
    seed: int,
    max_examples: int,
    sweep_faults: int,
    runtime: str,
    report_dir: str | None,
    progress: TerminalProgress | None = None,
) -> list[DemoRun]:
    """Search every reference saga, the correct one first."""
    from ._verify import explore_on
    from .reference import choreographed_variants, durable_variants, messaging_variants, variants

    runs = []
    # A saga whose participants are plain objects runs on sim only: on another runtime it is left out.
    everything = variants() + durable_variants() + choreographed_variants() + messaging_variants()
    found = [v for v in everything if runtime in v.runtimes]
    for number, variant in enumerate(found, 1):
        if progress is not None:
            progress.start(f"{variant.name} ({number}/{len(found)})")
        started = time.perf_counter()
        # The demo shows the search itself, so it does not start from remembered failures.
        result = explore_on(
            variant.saga,
            runtime=runtime,
            seed=seed,
            max_examples=max_examples,
            sweep_faults=sweep_faults,
            settings=_no_database(),
            report_dir=report_dir,
            progress=progress,
            all_failures=False,  # one row per variant: the first failure, the smallest plan
        )
        runs.append(DemoRun(variant, result, time.perf_counter() - started))
    if progress is not None:
        progress.finish()
    return runs


def demo_rows(seed: int, max_examples: int, sweep_faults: int, runtime: str, report_dir: str | None) -> list[dict[str, Any]]:
    """One row per reference saga: the shape ``saga-verify demo --json`` prints."""
    return [run.row(runtime) for run in demo_runs(seed, max_examples, sweep_faults, runtime, report_dir)]


def _plan_text(plan: dict[str, Any] | None) -> str:
    if plan is None:
        return "-"
    if not plan["faults"]:
        return "no faults"
    from .faults import FaultPlan

    return str(FaultPlan.from_json(plan))


def _check_html(args: argparse.Namespace) -> None:
    """Refuse a report folder that cannot be written before any search runs."""
    if args.html:
        from ._reporting import check_report_dir

        check_report_dir(args.html)


def _write_html(args: argparse.Namespace, sections: list[Any], subtitle: str) -> None:
    from ._reporting import write_report

    path = write_report(args.html, sections, title=f"saga-verify {args.command}", subtitle=subtitle)
    # Last, so that a person (and `make demo`) ends on where to look; beside JSON, on stderr.
    print(f"HTML report: {path}", file=sys.stderr if args.json else sys.stdout)


def _demo(args: argparse.Namespace) -> int:
    from ._reporting import SagaSection, TerminalProgress

    _check_html(args)
    runs = demo_runs(args.seed, args.max_examples, args.sweep_faults, args.runtime, args.report_dir, TerminalProgress.on(sys.stderr))
    rows = [run.row(args.runtime) for run in runs]
    good = all(r["verdict"] in ("holds", "caught") for r in rows)
    subtitle = f"reference order saga ({args.runtime}), seed {args.seed}"
    sections = [
        SagaSection(
            run.result,
            (f"known bug: {run.variant.bug}" if run.variant.bug else "the correct saga", f"demo verdict: {row['verdict']}"),
            key=run.variant.name,
        )
        for run, row in zip(runs, rows, strict=True)
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        if args.html:
            _write_html(args, sections, subtitle)
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
    correct = [r["verdict"] for r in rows if not r["broken"]]
    held = "holds" if all(v == "holds" for v in correct) else next(v for v in correct if v != "holds")
    print(f"{caught}/{broken} broken variants caught; correct saga{'s' if len(correct) > 1 else ''}: {held}")
    example = next((r for r in rows if r["plan_file"]), None)
    if example:
        print(f"Replay any minimal plan: saga-verify replay {example['plan_file']}")
    if args.html:
        _write_html(args, sections, subtitle)
    return 0 if good else 1


def _explore(args: argparse.Namespace) -> int:
    from ._reporting import SagaSection, TerminalProgress, failure_annotation, in_github_actions, render_result
    from ._verify import explore_on
    from .arazzo import WorkflowCheckError

    try:
        saga = _load_saga(args.saga)
    except WorkflowCheckError as found:  # an Arazzo workflow that fails its static checks: nothing runs
        print(found)
        return 1
    _check_html(args)
    progress = TerminalProgress.on(sys.stderr)
    if progress is not None:
        progress.start(saga.name)
    try:
        result = explore_on(
            saga,
            runtime=args.runtime,
            seed=args.seed,
            max_examples=args.max_examples,
            sweep_faults=args.sweep_faults,
            sweep_budget=args.sweep_budget,
            report_dir=args.report_dir,
            progress=progress,
        )
    finally:
        if progress is not None:
            progress.finish()
    if args.json:
        print(
            json.dumps(
                {
                    "saga": saga.name,
                    "ok": result.ok,
                    "executions": result.executions,
                    "seconds": round(result.seconds, 4),
                    "sweep": {"max_faults": result.sweep_faults, "plans": result.sweep_executions, "complete": result.sweep_complete},
                    "failures": [
                        {"violated": list(f.invariants), "examples": f.examples, "plan": f.plan.to_json(), "plan_file": str(f.plan_path) if f.plan_path else None}
                        for f in result.failures
                    ],
                    "coverage": result.coverage.to_json() if result.coverage is not None else None,
                },
                indent=2,
            )
        )
    else:
        print(render_result(result))
        if in_github_actions():
            file, line = _saga_location(saga, args.saga)
            for failure in result.failures:
                print(failure_annotation(failure, file=file, line=line))
    if args.html:
        _write_html(args, [SagaSection(result, (f"explored as {args.saga}",), key=args.saga)], f"{args.saga}, seed {args.seed}")
    return 0 if result.ok else 1


_WORKFLOW = re.compile(r"\.(ya?ml|json)(#|$)")


def _load_saga(ref: str) -> Saga:
    """A saga named as package.module:attribute, or an Arazzo workflow as FILE[#workflowId]."""
    if _WORKFLOW.search(ref):
        from .arazzo import load

        return load(ref)
    from ._saga import load_saga

    return load_saga(ref)


def _saga_location(saga: Saga, ref: str) -> tuple[str, int]:
    """Where the saga is defined, as an annotation wants it: a path relative to the working
    folder and the line that assigns it (line 1 when that cannot be found)."""
    import importlib

    if _WORKFLOW.search(ref):  # an Arazzo workflow: its file, at the line that names it
        source, _, attribute = ref.partition("#")
        attribute = attribute or saga.name
    else:
        module_name, _, attribute = ref.partition(":")
        source = getattr(importlib.import_module(module_name), "__file__", None) or module_name
    path = Path(source).resolve()
    try:
        shown = str(path.relative_to(Path.cwd()))
    except ValueError:
        shown = str(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return shown, 1
    assignment = re.compile(rf"^{re.escape(attribute)}\s*(:[^=]*)?=|^\s*-?\s*workflowId:\s*['\"]?{re.escape(attribute)}['\"]?\s*$")
    return shown, next((n for n, text in enumerate(lines, 1) if assignment.match(text)), 1)


def _replay(args: argparse.Namespace) -> int:
    from ._reporting import render_execution
    from ._verify import replay
    from .errors import PlanError
    from .faults import FaultPlan

    plan = FaultPlan.load(Path(args.plan))
    ref = args.saga or plan.saga_ref
    if not ref:
        named = f" (it is for saga {plan.saga!r})" if plan.saga else ""
        raise PlanError(f"plan file {args.plan!r} does not say where its saga lives{named}; pass --saga package.module:attribute")
    saga = _load_saga(ref)
    if args.emit_test:
        try:
            plan.validate(saga)
        except PlanError as exc:
            raise PlanError(f"plan file {args.plan!r} does not fit saga {ref!r}: {exc}") from None
    execution, violations = replay(saga, plan, runtime=args.runtime)
    emitted = None
    if args.emit_test:
        from ._reporting import append_regression

        invariants = list(plan.violated) or list(dict.fromkeys(v.invariant for v in violations))
        emitted = append_regression(args.emit_test, plan, saga_ref=ref, saga_name=saga.name, invariants=invariants, source=args.plan)
    where = "" if args.runtime == "sim" else f" on {args.runtime}"
    print(f"saga {saga.name!r} under {plan}{where}")
    print(render_execution(execution, violations))
    if emitted:
        print(f"Appended {emitted} to {args.emit_test}")
    return 1 if violations else 0


def _plan_schema() -> int:
    from .faults._plan import plan_schema

    print(json.dumps(plan_schema(), indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
