"""The pytest plugin: ``--saga-*`` options, the seed in the report header, the ``saga`` marker
and the ``saga_verify`` fixture; JUnit properties of each search, GitHub Actions annotations of
each failure, and the session's HTML report. It imports nothing heavy until a test uses the
fixture."""

from __future__ import annotations

import argparse
import os
import secrets
import shlex
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from . import _testrun
from ._options import whole_number

if TYPE_CHECKING:
    from ._exploration import ExplorationResult
    from ._saga import Saga
    from .invariants import Invariant

SEED_OPTION = "--saga-seed"
MAX_EXAMPLES_OPTION = "--saga-max-examples"
SWEEP_OPTION = "--saga-sweep-faults"
REPLAY_OPTION = "--saga-replay"
REPORT_DIR_OPTION = "--saga-report-dir"
RUNTIME_OPTION = "--saga-runtime"
#: The runtimes (``saga_verify._runtimes.RUNTIMES``), named here so loading the plugin imports nothing.
RUNTIMES = ("sim", "asgi", "process", "container")
HTML_OPTION = "--saga-html"
CACHE_KEY = "saga_verify/seed"
MARKER = "saga"

_seed_key = pytest.StashKey[int]()
_verifier_key = pytest.StashKey["SagaVerifier"]()
#: The HTML report's folder (None: no report), and the sections gathered for it: (test id, call
#: number, summary row, body, broken), as plain values so that xdist workers can send them.
_html_key = pytest.StashKey["Path | None"]()
_sections_key = pytest.StashKey[list[tuple[str, int, str, str, bool]]]()
_written_key = pytest.StashKey["Path | str"]()
_WORKER_SECTIONS = "saga_verify_html_sections"


def _seed(text: str) -> str:
    if text in ("random", "last"):
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a seed: give a whole number, 'random' or 'last'") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"seed {value} is negative: give a whole number >= 0")
    return str(value)


def _existing_file(text: str) -> str:
    if not Path(text).is_file():
        raise argparse.ArgumentTypeError(f"plan file {text!r} does not exist")
    return text


def _runtime(text: str) -> str:
    if text not in RUNTIMES:
        raise argparse.ArgumentTypeError(f"runtime {text!r} does not exist; choose from: {', '.join(RUNTIMES)}")
    return text


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("saga-verify", "saga-verify: failure-schedule exploration of sagas")
    group.addoption(
        SEED_OPTION,
        type=_seed,
        default="random",
        metavar="N|random|last",
        help="seed of the search (default: a new one each session, printed in the header; 'last' reuses the previous)",
    )
    group.addoption(
        MAX_EXAMPLES_OPTION,
        type=whole_number(0),
        default=None,
        metavar="N",
        help="Hypothesis examples after the sweep (default: the Hypothesis profile's max_examples; 0 skips)",
    )
    group.addoption(
        SWEEP_OPTION,
        type=whole_number(0),
        default=None,
        metavar="N",
        help="faults per plan in the exhaustive sweep before Hypothesis (default: 2; 0 turns the sweep off)",
    )
    group.addoption(
        REPLAY_OPTION,
        type=_existing_file,
        default=None,
        metavar="FILE",
        help="replay this plan file instead of searching (as written to the report directory)",
    )
    group.addoption(
        RUNTIME_OPTION,
        type=_runtime,
        default="sim",
        metavar="NAME",
        help=f"where the sagas' services run: {', '.join(RUNTIMES)} (default sim; others need a saga_verify.System)",
    )
    group.addoption(
        REPORT_DIR_OPTION,
        default=".saga-verify",
        metavar="DIR",
        help="where failing plans are written as JSON files, relative to the rootdir (default: .saga-verify)",
    )
    group.addoption(
        HTML_OPTION,
        default=None,
        metavar="DIR",
        help="write a self-contained HTML report of every saga search, DIR/report.html (relative to the rootdir)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARKER}: a test that explores a saga with saga-verify (select with -m {MARKER})")
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None and "saga_verify_seed" in workerinput:
        seed = int(workerinput["saga_verify_seed"])
    else:
        chosen = config.getoption(SEED_OPTION)
        # The cache is absent under -p no:cacheprovider; 'last' then starts afresh.
        cache = getattr(config, "cache", None)
        if chosen == "last":
            cached = cache.get(CACHE_KEY, None) if cache is not None else None
            seed = int(cached) if isinstance(cached, int) else secrets.randbelow(2**32)
        elif chosen == "random":
            seed = secrets.randbelow(2**32)
        else:
            seed = int(chosen)
        if cache is not None:
            cache.set(CACHE_KEY, seed)
    config.stash[_seed_key] = seed
    config.stash[_sections_key] = []
    html = config.getoption(HTML_OPTION)
    config.stash[_html_key] = None
    if html:
        from ._files import unwritable_folder

        folder = Path(str(config.rootpath)) / html
        problem = unwritable_folder(folder)
        if problem is None and (folder / "report.html").is_dir():
            problem = f"{str(folder / 'report.html')!r} is a folder"
        if problem is not None:
            raise pytest.UsageError(f"{HTML_OPTION}: report folder {str(folder)!r} cannot be written: {problem}")
        config.stash[_html_key] = folder


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """Hand the session's seed to each pytest-xdist worker, so they all search alike."""
    node.workerinput["saga_verify_seed"] = node.config.stash[_seed_key]


def pytest_report_header(config: pytest.Config) -> str:
    seed = config.stash[_seed_key]
    return f"saga-verify: seed={seed} (reproduce the search with {SEED_OPTION}={seed})"


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """Gather the HTML report's sections that a pytest-xdist worker rendered."""
    sections = getattr(node, "workeroutput", {}).get(_WORKER_SECTIONS, [])
    node.config.stash[_sections_key].extend(tuple(s) for s in sections)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Stop the services the session placed on a runtime (processes, containers), remove what
    renamed or deleted consumer tests left in the pacts, and write the HTML report when one is
    asked for."""
    run = _testrun.current()
    try:
        if run.pact_dirs:
            from .contracts._pact_writing import prune_stale_interactions

            prune_stale_interactions(run)
    finally:
        _testrun.session_finished()
    runtimes = sys.modules.get("saga_verify._runtimes")
    if runtimes is not None:  # only if a test placed any: the plugin imports nothing by itself
        runtimes.stop_services()
    config = session.config
    folder = config.stash.get(_html_key, None)
    if folder is None:
        return
    sections = config.stash[_sections_key]
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput[_WORKER_SECTIONS] = [list(s) for s in sections]  # the controller writes the page
        return
    from ._reporting import RenderedSection, write_report
    from .errors import SagaVerifyError

    rendered = [RenderedSection(summary, body, broken) for _test, _n, summary, body, broken in sorted(sections, key=lambda s: (s[0], s[1]))]
    try:
        config.stash[_written_key] = write_report(
            folder,
            rendered,
            title="saga-verify: pytest session",
            subtitle=f"seed {config.stash[_seed_key]}, {len(rendered)} saga search{'es' if len(rendered) != 1 else ''}",
        )
    except SagaVerifyError as exc:
        config.stash[_written_key] = str(exc)
        session.exitstatus = pytest.ExitCode.USAGE_ERROR


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    written = config.stash.get(_written_key, None)
    if isinstance(written, Path):
        terminalreporter.write_line(f"saga-verify: HTML report written to {written}")
    elif written is not None:
        terminalreporter.write_line(f"saga-verify: error: {written}", red=True)
    if os.environ.get("GITHUB_ACTIONS") == "true":
        from ._reporting import annotations_from_properties

        for report in terminalreporter.stats.get("failed", []):
            for line in annotations_from_properties(getattr(report, "user_properties", ())):
                terminalreporter.write_line(line)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "saga_verify" in getattr(item, "fixturenames", ()):
            item.add_marker(MARKER)
    # Before -k, -m and --deselect take theirs out: the tests that exist, for the pact writer.
    _testrun.note_collection(config, items)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _testrun.note_report(report.nodeid, report.when, report.outcome)


def pytest_sessionstart(session: pytest.Session) -> None:
    _testrun.session_started()


class SagaVerifier:
    """What the ``saga_verify`` fixture gives a test: call it with a saga to explore it under the
    session's options; it raises `SagaViolationError` with the minimal timeline when one breaks."""

    def __init__(self, config: pytest.Config, nodeid: str, properties: list[tuple[str, object]] | None = None) -> None:
        self._config = config
        self._nodeid = nodeid
        # The test's user properties: what JUnit XML writes (pytest's record_property adds to them).
        self._properties = properties if properties is not None else []
        #: The result of each call, in order.
        self.results: list[ExplorationResult] = []
        #: Under --saga-replay: the sagas this test asked to verify, and whether the plan was one's.
        self.replay_candidates: list[str] = []
        self.replayed = False

    @property
    def seed(self) -> int:
        return self._config.stash[_seed_key]

    def __call__(
        self,
        saga: Saga,
        *,
        invariants: list[Invariant] | tuple[Invariant, ...] | None = None,
        max_examples: int | None = None,
        sweep_faults: int | None = None,
    ) -> ExplorationResult | None:
        # What fails here is the saga, not this plugin: pytest shows the test's line and the
        # report, without the plugin's source (and without the library's frames: see below).
        __tracebackhide__ = True
        from .errors import SagaVerifyError

        caller = sys._getframe(1)
        location = f"{self._relative(caller.f_code.co_filename)}:{caller.f_lineno}"
        try:
            return self._verify(saga, invariants, max_examples, sweep_faults, location)
        except SagaVerifyError as exc:
            # Raised again from this hidden frame: the library's own frames say nothing to the
            # reader (a saga's frames, where it crashed, stay in the error's cause).
            raise exc.with_traceback(None)  # noqa: B904  # the same error, not another one

    def _verify(
        self,
        saga: Saga,
        invariants: list[Invariant] | tuple[Invariant, ...] | None,
        max_examples: int | None,
        sweep_faults: int | None,
        location: str,
    ) -> ExplorationResult | None:
        from ._reporting import render_execution
        from ._verify import explore, replay, violation_error
        from .errors import SagaViolationError
        from .faults import FaultPlan

        runtime = self._config.getoption(RUNTIME_OPTION)
        replay_file = self._config.getoption(REPLAY_OPTION)
        if replay_file:
            plan = FaultPlan.load(replay_file)
            self.replay_candidates.append(saga.name)
            if plan.saga is not None and plan.saga != saga.name:
                return None  # another saga's plan: another call of this test may be its saga's
            self.replayed = True
            execution, violations = replay(saga, plan, invariants=invariants, runtime=runtime)
            if violations:
                raise SagaViolationError(f"replayed {replay_file}:\n" + render_execution(execution, violations), None)
            return None
        option_examples = self._config.getoption(MAX_EXAMPLES_OPTION)
        option_sweep = self._config.getoption(SWEEP_OPTION)
        report_dir = Path(str(self._config.rootpath)) / self._config.getoption(REPORT_DIR_OPTION)
        result = explore(
            saga,
            invariants=invariants,
            seed=self.seed,
            max_examples=max_examples if max_examples is not None else option_examples,
            sweep_faults=sweep_faults if sweep_faults is not None else (option_sweep if option_sweep is not None else 2),
            report_dir=report_dir,
            runtime=runtime,
        )
        self.results.append(result)
        if not result.ok:
            failures = tuple(replace(f, pytest_replay=self._replay_line(f.plan_path)) for f in result.failures)
            result = replace(result, failures=failures)
        self._record(result, location)
        if not result.ok:
            raise violation_error(result)
        return result

    def check_replayed(self) -> None:
        """Under ``--saga-replay``, a test none of whose sagas the plan is for checked nothing:
        that is a failure, not a pass."""
        replay_file = self._config.getoption(REPLAY_OPTION)
        if not replay_file or self.replayed or not self.replay_candidates:
            return
        from .faults import FaultPlan

        plan = FaultPlan.load(replay_file)
        pytest.fail(
            f"{REPLAY_OPTION}={replay_file}: the plan is for saga {plan.saga!r}, but this test verified "
            f"{', '.join(map(repr, dict.fromkeys(self.replay_candidates)))}; nothing was replayed. "
            "Run the test the plan's replay line names.",
            pytrace=False,
        )
    def _record(self, result: ExplorationResult, location: str) -> None:
        """JUnit properties of the search, and its section of the HTML report if one is asked for."""
        from ._reporting import SagaSection, junit_properties, render_section

        self._properties.extend(junit_properties(result, location))
        if self._config.stash.get(_html_key, None) is not None:
            sections = self._config.stash[_sections_key]
            number = len(self.results)
            summary, body, broken = render_section(SagaSection(result, (f"test: {self._nodeid}",), key=f"{self._nodeid}#{number}"))
            sections.append((self._nodeid, number, summary, body, broken))

    def _relative(self, filename: str) -> str:
        path = Path(filename)
        try:
            return str(path.resolve().relative_to(Path(str(self._config.rootpath)).resolve()))
        except ValueError:
            return filename

    def _replay_line(self, path: Path | None) -> str | None:
        if path is None:
            return None
        return f"pytest {shlex.quote(self._nodeid)} {REPLAY_OPTION}={shlex.quote(str(path))}"


@pytest.hookimpl(trylast=True)
def pytest_exception_interact(node: pytest.Item, call: pytest.CallInfo[Any], report: pytest.TestReport) -> None:
    """Show every failure of a `SagaViolationGroup`: a plugin that runs before this one
    (Schemathesis') may have rewritten the report, taking its sub-exceptions, which share a type
    and have no traceback of their own, for copies of one another."""
    from .errors import SagaViolationGroup

    if call.excinfo is not None and isinstance(call.excinfo.value, SagaViolationGroup):
        report.longrepr = node.repr_failure(call.excinfo)


@pytest.fixture
def saga_verify(request: pytest.FixtureRequest) -> SagaVerifier:
    """Explore a saga under failure schedules: ``saga_verify(my_saga)``."""
    verifier = SagaVerifier(request.config, request.node.nodeid, request.node.user_properties)
    request.node.stash[_verifier_key] = verifier
    return verifier


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    result = yield
    verifier = item.stash.get(_verifier_key, None)
    if verifier is not None:
        verifier.check_replayed()
    return result




REQUIRE_DOCKER = "REQUIRE_DOCKER"


def require_docker() -> None:
    """Skip the calling test when no Docker engine answers, saying why and how to get one; fail
    it instead when ``REQUIRE_DOCKER=1`` (where an engine is part of the set-up, as in CI)."""
    import os

    from .containers import engine_problem

    problem = engine_problem()
    if problem is None:
        return
    if os.environ.get(REQUIRE_DOCKER) == "1":
        pytest.fail(f"{REQUIRE_DOCKER}=1, but {problem}", pytrace=False)
    pytest.skip(problem)


@pytest.fixture
def saga_containers() -> Any:
    """Your own images as participants, each behind a fault proxy:
    ``payment = saga_containers.participant("payment", "shop/payment:1.4")``, then hand
    ``payment.url`` to the saga, to the contract checks, or to your other containers. Everything
    the test started is removed after it. Skips without a Docker engine (fails with
    ``REQUIRE_DOCKER=1``)."""
    require_docker()
    from .containers import ContainerSession

    session = ContainerSession()
    try:
        yield session
    finally:
        session.close()
