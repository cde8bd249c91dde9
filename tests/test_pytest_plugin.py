"""The pytest plugin, run the way users run it: options, header, marker, fixture, replay, xdist."""

from __future__ import annotations

import json
import re

import pytest

# In-process pytester runs unload the modules a run imported when it ends. Importing the library
# here keeps one copy of it for every run: otherwise a later run's freshly imported Saga class is
# not the class the first run's cached saga_verify._exploration checks against.
import saga_verify._exploration
import saga_verify.reference  # noqa: F401

TESTS = """
import saga_verify
from saga_verify import reference


def test_correct(saga_verify):
    saga_verify(reference.order_saga, max_examples=0)
    assert all(result.ok for result in saga_verify.results)


def test_broken(saga_verify):
    saga_verify(reference.charge_without_key)


def test_plain():
    pass
"""

SEED_LINE = re.compile(r"^saga-verify: seed=(\d+) \(reproduce the search with --saga-seed=(\d+)\)$", re.MULTILINE)


def _seed(result) -> int:
    match = SEED_LINE.search(result.stdout.str())
    assert match, result.stdout.str()
    assert match.group(1) == match.group(2)
    return int(match.group(1))


@pytest.fixture
def project(pytester):
    pytester.makepyfile(test_sagas=TESTS)
    return pytester


def test_correct_saga_passes_and_broken_saga_fails_with_its_timeline(project) -> None:
    result = project.runpytest("--saga-report-dir=reports", "-p", "no:cacheprovider")

    result.assert_outcomes(passed=2, failed=1)
    out = result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*saga 'charge_without_key' broke no_double_charge",
            "*minimal plan (1 fault):",
            "*1. lose-reply at payment.charge#1",
            "*Timeline (virtual seconds; saga instance order-1):",
            "*REPLY LOST (applied; caller timed out)*",
            "*no_double_charge: payment.charge took effect 2 times for order-1",
            "*Reproduce with: saga-verify replay *reports/charge_without_key-no_double_charge-*.json",
            "*or: pytest test_sagas.py::test_broken --saga-replay=*reports/charge_without_key-no_double_charge-*.json",
        ]
    )
    assert "test_correct" not in [line.split(" ")[-1] for line in out.splitlines() if line.startswith("FAILED")]
    # Every distinct broken invariant, each with its plan file, in one exception group.
    written = sorted(p.name for p in (project.path / "reports").iterdir())
    assert len(written) > 1
    assert all(name.startswith("charge_without_key-") for name in written)
    assert any(name.startswith("charge_without_key-no_double_charge-") for name in written)
    assert f"SagaViolationGroup: {len(written)} distinct broken invariants in saga 'charge_without_key' ({len(written)} sub-exceptions)" in out
    assert out.count("Reproduce with: saga-verify replay ") == len(written)


def test_a_failure_shows_the_test_and_the_report_not_the_plugin(pytester) -> None:
    pytester.makepyfile(
        test_one="""
        from saga_verify import reference

        def test_broken(saga_verify):
            saga_verify(reference.forward_order_compensation)
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", f"--saga-report-dir={pytester.path / 'plans'}")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    failure = out[out.index("_ test_broken _") : out.index("short test summary info")]
    assert "_pytest_plugin.py" not in failure
    assert "def __call__" not in failure
    assert "self._config" not in failure
    assert "saga_verify/_exploration" not in failure
    lines = [line for line in failure.splitlines()[1:] if line.strip()]
    assert lines[:3] == [
        "saga_verify = <saga_verify._pytest_plugin.SagaVerifier object at " + lines[0].rsplit(" at ", 1)[1],
        "    def test_broken(saga_verify):",
        ">       saga_verify(reference.forward_order_compensation)",
    ]
    assert lines[3] == "E       saga_verify.errors.SagaViolationError: saga 'forward_order_compensation' broke reverse_compensation_order"
    assert len(failure.splitlines()) < 60


def test_a_definition_error_shows_the_message_not_the_library(pytester) -> None:
    pytester.makepyfile(
        test_vague="""
        from saga_verify import Ledger, Saga, Step

        class Box:
            def __init__(self):
                self.ledger = Ledger()

            def put(self):
                return "ok"

        saga = Saga("vague", steps=[Step("box", "put")], participants=lambda: {"box": Box()}, run=lambda s, o: "done")

        def test_vague(saga_verify):
            saga_verify(saga)
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    failure = out[out.index("_ test_vague _") : out.index("short test summary info")]
    assert "saga_verify/_exploration" not in failure
    assert "_pytest_plugin.py" not in failure
    result.stdout.fnmatch_lines(["E*saga_verify.errors.SagaDefinitionError: saga 'vague' returned 'done' with no fault injected*"])


def test_header_shows_the_seed(project) -> None:
    result = project.runpytest("-k", "plain")
    result.assert_outcomes(passed=1, deselected=2)
    assert 0 <= _seed(result) < 2**32


def test_chosen_seed_is_shown_and_used(project) -> None:
    project.makepyfile(
        test_seed="""
def test_seed(saga_verify):
    assert saga_verify.seed == 123
    from saga_verify.reference import order_saga
    result = saga_verify(order_saga, max_examples=1, sweep_faults=0)
    assert result.seed == 123
"""
    )
    result = project.runpytest("--saga-seed=123", "test_seed.py")
    result.assert_outcomes(passed=1)
    assert _seed(result) == 123
    result.stdout.fnmatch_lines(["saga-verify: seed=123 (reproduce the search with --saga-seed=123)"])


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("--saga-seed=abc", "*--saga-seed*'abc' is not a seed: give a whole number, 'random' or 'last'*"),
        ("--saga-seed=-4", "*--saga-seed*seed -4 is negative*"),
        ("--saga-max-examples=-5", "*--saga-max-examples*-5 is too small: give a whole number >= 0*"),
        ("--saga-max-examples=many", "*--saga-max-examples*'many' is not a whole number*"),
        ("--saga-sweep-faults=-1", "*--saga-sweep-faults*-1 is too small*"),
        ("--saga-replay=missing.json", "*--saga-replay*plan file 'missing.json' does not exist*"),
    ],
)
def test_bad_option_values_are_usage_errors(project, option, message) -> None:
    result = project.runpytest(option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_seed_last_reuses_the_previous_seed(project) -> None:
    first = _seed(project.runpytest("-k", "plain"))
    again = project.runpytest("--saga-seed=last", "-k", "plain")
    assert _seed(again) == first
    # A chosen seed becomes the last one too.
    project.runpytest("--saga-seed=77", "-k", "plain")
    assert _seed(project.runpytest("--saga-seed=last", "-k", "plain")) == 77


def test_seed_last_without_a_previous_run_picks_one(project) -> None:
    result = project.runpytest("--saga-seed=last", "-k", "plain")
    result.assert_outcomes(passed=1, deselected=2)
    assert 0 <= _seed(result) < 2**32


def test_seed_last_without_a_cache_picks_one(project) -> None:
    result = project.runpytest("--saga-seed=last", "-p", "no:cacheprovider", "-k", "plain")
    result.assert_outcomes(passed=1, deselected=2)
    assert 0 <= _seed(result) < 2**32


def test_random_seed_differs_between_sessions(project) -> None:
    seeds = {_seed(project.runpytest("-k", "plain", "-p", "no:cacheprovider")) for _ in range(3)}
    assert len(seeds) > 1


def _find_plan(project) -> str:
    project.runpytest("--saga-report-dir=reports", "-k", "broken")
    (written,) = [p for p in (project.path / "reports").iterdir() if "-no_double_charge-" in p.name]
    return str(written)


def test_replay_option_replays_the_plan_instead_of_searching(project) -> None:
    plan = _find_plan(project)

    result = project.runpytest(f"--saga-replay={plan}", "--saga-report-dir=elsewhere")

    # The broken saga fails under its plan. The correct saga's test checked nothing under a plan of
    # another saga: that is a failure too, saying so, never a pass.
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        [
            f"*--saga-replay={plan}: the plan is for saga 'charge_without_key', but this test verified 'order'; nothing was replayed.*",
            f"*replayed {plan}:",
            "*Timeline (virtual seconds; saga instance order-1):",
            "*REPLY LOST (applied; caller timed out)*",
            "*no_double_charge: payment.charge took effect 2 times for order-1",
        ]
    )
    assert not (project.path / "elsewhere").exists()  # nothing was searched, nothing written


def test_replay_option_runs_a_plan_for_a_saga_that_holds(project) -> None:
    empty = project.path / "empty.json"
    empty.write_text(json.dumps({"saga": {"name": "charge_without_key"}, "faults": []}), encoding="utf-8")
    result = project.runpytest(f"--saga-replay={empty}", "-k", "broken")
    result.assert_outcomes(passed=1, deselected=2)


def test_the_replay_line_of_one_saga_on_a_test_of_another_fails(project) -> None:
    plan = _find_plan(project)
    result = project.runpytest(f"--saga-replay={plan}", "-k", "correct")
    result.assert_outcomes(failed=1, deselected=2)
    result.stdout.fnmatch_lines(["*the plan is for saga 'charge_without_key', but this test verified 'order'; nothing was replayed*"])


def test_a_plan_that_names_no_saga_is_replayed_against_the_tests_saga(project) -> None:
    anonymous = project.path / "anonymous.json"
    anonymous.write_text(json.dumps({"faults": [{"kind": "lose-reply", "at": "payment.charge#1"}]}), encoding="utf-8")
    result = project.runpytest(f"--saga-replay={anonymous}", "-k", "correct or broken")
    result.assert_outcomes(passed=1, failed=1, deselected=1)  # the correct saga holds under it; the broken one does not


def test_saga_marker_is_registered(project) -> None:
    result = project.runpytest("--markers")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["@pytest.mark.saga: a test that explores a saga with saga-verify (select with -m saga)"])


def test_saga_marker_is_applied_to_tests_using_the_fixture(project) -> None:
    result = project.runpytest("-m", "saga", "--strict-markers", "--collect-only", "-q")
    result.stdout.fnmatch_lines(["test_sagas.py::test_correct", "test_sagas.py::test_broken"])
    assert "test_plain" not in result.stdout.str()

    result = project.runpytest("-m", "not saga", "--strict-markers")
    result.assert_outcomes(passed=1, deselected=2)


def test_saga_marker_can_be_written_by_hand_under_strict_markers(pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.saga
        def test_marked():
            pass
        """
    )
    result = pytester.runpytest("--strict-markers", "-m", "saga")
    result.assert_outcomes(passed=1)


def test_options_reach_the_search(pytester) -> None:
    pytester.makepyfile(
        """
        from saga_verify.reference import order_saga

        def test_counts(saga_verify):
            result = saga_verify(order_saga)
            assert result.sweep_executions == 0
            assert result.hypothesis_examples == 4
            assert saga_verify.results == [result]
        """
    )
    result = pytester.runpytest("--saga-sweep-faults=0", "--saga-max-examples=4", "--saga-seed=0")
    result.assert_outcomes(passed=1)


def test_report_dir_is_relative_to_the_rootdir(project) -> None:
    sub = project.mkdir("sub")
    project.makeini("[pytest]\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(sub)
        project.runpytest(str(project.path / "test_sagas.py"), "--saga-report-dir=out", "-k", "broken")
    assert {p.name[:18] for p in (project.path / "out").iterdir()} == {"charge_without_key"}
    assert not (sub / "out").exists()


def test_xdist_workers_search_with_the_session_seed(pytester) -> None:
    pytester.makepyfile(
        test_seeds="""
        import os
        from pathlib import Path

        def test_seed(saga_verify, worker_id):
            Path(f"seed-{worker_id}.txt").write_text(str(saga_verify.seed))
        """
    )
    result = pytester.runpytest_subprocess("-n", "2", "--dist=each")
    result.assert_outcomes(passed=2)
    header_seed = _seed(result)
    written = {p.name: int(p.read_text()) for p in pytester.path.glob("seed-*.txt")}
    assert sorted(written) == ["seed-gw0.txt", "seed-gw1.txt"]
    assert set(written.values()) == {header_seed}


def test_plugin_loads_without_importing_the_library(pytester) -> None:
    pytester.makepyfile(
        """
        import sys

        def test_nothing_heavy_loaded():
            assert "saga_verify._pytest_plugin" in sys.modules
            assert "hypothesis" not in sys.modules
            assert "httpx" not in sys.modules
            assert "saga_verify._exploration" not in sys.modules
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:hypothesispytest", "-p", "no:schemathesis")
    result.assert_outcomes(passed=1)
    assert _seed(result) >= 0


# -- the HTML report -----------------------------------------------------------------------------
def test_html_option_writes_one_report_of_every_search(project) -> None:
    result = project.runpytest("--saga-html=out", "--saga-report-dir=plans", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=1)
    report = project.path / "out" / "report.html"
    result.stdout.fnmatch_lines([f"saga-verify: HTML report written to {report}"])
    text = report.read_text(encoding="utf-8")
    assert "2 sagas, 1 broken" in text
    assert "test: test_sagas.py::test_correct" in text
    assert "test: test_sagas.py::test_broken" in text
    # One diagram per failure of the broken saga: it shows every distinct broken invariant.
    assert text.count('<svg xmlns="http://www.w3.org/2000/svg" class="sequence"') == len(list((project.path / "plans").iterdir())) > 1
    assert "lose-reply at payment.charge#1" in text


def test_html_report_gathers_the_searches_of_xdist_workers(project) -> None:
    result = project.runpytest_subprocess("-n", "2", "--saga-html=out", "-p", "no:cacheprovider", "-p", "no:schemathesis")
    result.assert_outcomes(passed=2, failed=1)
    text = (project.path / "out" / "report.html").read_text(encoding="utf-8")
    assert "2 sagas, 1 broken" in text
    assert text.index("test: test_sagas.py::test_broken") < text.index("test: test_sagas.py::test_correct")  # by test id, whichever worker ran it


def test_html_folder_that_cannot_be_written_is_a_usage_error(project) -> None:
    result = project.runpytest("--saga-html=test_sagas.py/out", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    folder = project.path / "test_sagas.py" / "out"
    result.stderr.fnmatch_lines(
        [f"*--saga-html: report folder {str(folder)!r} cannot be written: {str(project.path / 'test_sagas.py')!r} is a file, not a folder"]
    )
    assert not (project.path / ".saga-verify").exists()  # refused before any search


def test_no_html_report_unless_asked(project) -> None:
    result = project.runpytest("-k", "correct", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert "HTML report" not in result.stdout.str()
    assert not list(project.path.rglob("report.html"))


def test_the_readme_documents_every_option(pytester) -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `(--saga-[a-z-]+)", readme, re.M))
    result = pytester.runpytest("--help")
    registered = set(re.findall(r"^\s+(--saga-[a-z-]+)", result.stdout.str(), re.M))
    assert documented == registered
    assert "--saga-html" in registered
