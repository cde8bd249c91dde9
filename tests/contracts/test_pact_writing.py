"""Writing consumer pacts: nothing lost, nothing silently replaced, a stable file, and safe when
many processes (pytest-xdist workers) write one pact at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from saga_verify.contracts import ContractError, PactConflictError, PactFileError, consumer_pact, pact_path


def add_interaction(pact_dir: Path, description: str, amount: int = 1, *, run_id: str = "run-1") -> None:
    """One consumer test: declare one interaction, exercise it against the mock server."""
    with consumer_pact("order", "payment", pact_dir, run_id=run_id) as pact:
        (
            pact.upon_receiving(description)
            .with_request("POST", "/charges")
            .with_body({"amount": amount}, "application/json")
            .will_respond_with(201)
        )
        with pact.serve(addr="127.0.0.1") as server:
            assert httpx.post(f"{server.url}/charges", json={"amount": amount}).status_code == 201


def interactions(pact_dir: Path) -> list[dict[str, object]]:
    document = json.loads(pact_path(pact_dir, "order", "payment").read_text())
    return list(document["interactions"])


def test_importing_the_contract_layer_loads_neither_pact_nor_a_server() -> None:
    code = "import sys, saga_verify.contracts; print(sorted({'pact', 'uvicorn', 'fastapi'} & set(sys.modules)))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[]"


def test_interactions_are_merged_sorted_by_description_in_a_stable_layout(tmp_path: Path) -> None:
    add_interaction(tmp_path, "b charge")
    add_interaction(tmp_path, "a charge")
    path = pact_path(tmp_path, "order", "payment")
    text = path.read_text()
    document = json.loads(text)
    assert [i["description"] for i in document["interactions"]] == ["a charge", "b charge"]
    assert text == json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    # The pact, and beside it its writers' lock (hidden; it also holds what this run wrote).
    assert sorted(p.name for p in tmp_path.iterdir()) == [".order-payment.json.lock", "order-payment.json"]

    before = path.stat().st_mtime_ns
    add_interaction(tmp_path, "a charge")
    assert path.read_text() == text
    assert path.stat().st_mtime_ns == before  # an unchanged pact is not rewritten


def test_one_description_declared_twice_in_a_pact_fails_at_once(tmp_path: Path) -> None:
    with consumer_pact("order", "payment", tmp_path) as pact:
        pact.upon_receiving("a charge").with_request("POST", "/charges").will_respond_with(201)
        with pytest.raises(PactConflictError, match=r"already has an interaction 'a charge'.*silently replace"):
            pact.upon_receiving("a charge")
        with pact.serve(addr="127.0.0.1") as server:
            httpx.post(f"{server.url}/charges")
    assert [i["response"] for i in interactions(tmp_path)] == [{"status": 201}]


def test_two_tests_describing_different_interactions_alike_fail(tmp_path: Path) -> None:
    add_interaction(tmp_path, "a charge", amount=1)
    with pytest.raises(PactConflictError, match=r"order-payment\.json: two interactions are both described 'a charge'"):
        add_interaction(tmp_path, "a charge", amount=2)
    assert [i["request"]["body"]["content"] for i in interactions(tmp_path)] == [{"amount": 1}]  # type: ignore[index]


def test_an_interaction_left_by_an_earlier_run_is_replaced(tmp_path: Path) -> None:
    add_interaction(tmp_path, "a charge", amount=1, run_id="yesterday")
    add_interaction(tmp_path, "a charge", amount=2, run_id="today")
    assert [i["request"]["body"]["content"] for i in interactions(tmp_path)] == [{"amount": 2}]  # type: ignore[index]


def test_nothing_is_written_when_the_consumer_test_fails(tmp_path: Path) -> None:
    from pact.error import MismatchesError

    def client_never_calls() -> None:
        with consumer_pact("order", "payment", tmp_path) as pact:
            pact.upon_receiving("a charge").with_request("POST", "/charges").will_respond_with(201)
            with pact.serve(addr="127.0.0.1"):
                pass

    with pytest.raises(MismatchesError):  # the mock server reports the interaction as missed
        client_never_calls()
    assert not pact_path(tmp_path, "order", "payment").exists()


def test_a_malformed_pact_already_there_is_named_and_kept(tmp_path: Path) -> None:
    path = pact_path(tmp_path, "order", "payment")
    path.write_text("{not json")
    with pytest.raises(PactFileError, match=rf"pact file {path} is not valid JSON"):
        add_interaction(tmp_path, "a charge")
    assert path.read_text() == "{not json"


def test_concurrent_writers_in_one_process_keep_every_interaction(tmp_path: Path) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda n: add_interaction(tmp_path, f"charge {n:02d}", amount=n), range(40)))
    assert [i["description"] for i in interactions(tmp_path)] == [f"charge {n:02d}" for n in range(40)]


WRITER = """
import sys

import httpx

from saga_verify.contracts import consumer_pact

pact_dir, first, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for n in range(first, first + count):
    with consumer_pact("order", "payment", pact_dir, run_id="one run") as pact:
        pact.upon_receiving(f"charge {n:02d}").with_request("POST", f"/charges/{n}").will_respond_with(201)
        with pact.serve(addr="127.0.0.1") as server:
            assert httpx.post(f"{server.url}/charges/{n}").status_code == 201
"""


def test_writers_with_different_temporary_folders_keep_every_interaction(tmp_path: Path) -> None:
    """Four processes write ten interactions each into one pact at once, each with a temporary
    folder of its own: they all find the pact's one lock, and leave nothing behind in theirs."""
    pact_dir = tmp_path / "pacts"
    writers = []
    for number in range(4):
        own_tmp = tmp_path / f"tmp-{number}"
        own_tmp.mkdir()
        env = {**os.environ, "TMPDIR": str(own_tmp), "PACT_DO_NOT_TRACK": "true"}
        command = [sys.executable, "-c", WRITER, str(pact_dir), str(number * 10), "10"]
        writers.append(subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True))
    for writer in writers:
        _, errors = writer.communicate(timeout=120)
        assert writer.returncode == 0, errors
    assert [i["description"] for i in interactions(pact_dir)] == [f"charge {n:02d}" for n in range(40)]
    assert [sorted(p.name for p in (tmp_path / f"tmp-{n}").iterdir()) for n in range(4)] == [[], [], [], []]
    assert sorted(p.name for p in pact_dir.iterdir()) == [".order-payment.json.lock", "order-payment.json"]


XDIST_MODULE = """
    import httpx
    import pytest

    from saga_verify.contracts import consumer_pact


    @pytest.mark.parametrize("n", range(40))
    def test_consumer(n):
        with consumer_pact("order", "payment", {pact_dir!r}) as pact:
            (
                pact.upon_receiving(f"charge {{n:02d}}")
                .given("a card", number=n)
                .with_request("POST", f"/charges/{{n}}")
                .with_body({{"amount": n}}, "application/json")
                .will_respond_with(201)
                .with_body({{"status": "ok"}}, "application/json")
            )
            with pact.serve(addr="127.0.0.1") as server:
                assert httpx.post(f"{{server.url}}/charges/{{n}}", json={{"amount": n}}).status_code == 201
"""


@pytest.mark.slow
@pytest.mark.parametrize("repetition", range(3))
def test_pact_writing_is_safe_under_pytest_xdist(tmp_path: Path, repetition: int) -> None:
    pact_dir = tmp_path / "pacts"
    (tmp_path / "test_many_consumers.py").write_text(textwrap.dedent(XDIST_MODULE.format(pact_dir=str(pact_dir))))
    env = {**os.environ, "PACT_DO_NOT_TRACK": "true"}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "4", "-q", "-p", "no:cacheprovider", "test_many_consumers.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "40 passed" in run.stdout
    assert [i["description"] for i in interactions(pact_dir)] == [f"charge {n:02d}" for n in range(40)]


def test_an_interaction_no_consumer_code_exercised_is_not_written(tmp_path: Path) -> None:
    with (
        pytest.raises(ContractError, match=r"(?s)never exercised.*'a charge' \(HTTP: serve it with pact\.serve\(\)"),
        consumer_pact("order", "payment", tmp_path) as pact,
    ):
        pact.upon_receiving("a charge").with_request("POST", "/charges").will_respond_with(201)
    assert not pact_path(tmp_path, "order", "payment").exists()


def test_a_message_the_consumer_never_handled_is_not_written(tmp_path: Path) -> None:
    with (
        pytest.raises(ContractError, match=r"'a payment\.charged event' \(Async: .*pact\.verify\(handler, 'Async'\)"),
        consumer_pact("audit", "payment", tmp_path) as pact,
    ):
        pact.upon_receiving("a payment.charged event", "Async").with_body({"type": "payment.charged"}, "application/json")
    assert not pact_path(tmp_path, "audit", "payment").exists()


def test_handling_the_messages_does_not_count_for_an_http_interaction(tmp_path: Path) -> None:
    def messages_only() -> None:
        with consumer_pact("audit", "payment", tmp_path) as pact:
            pact.upon_receiving("a payment.charged event", "Async").with_body({"type": "payment.charged"}, "application/json")
            pact.upon_receiving("a charge").with_request("POST", "/charges").will_respond_with(201)
            pact.verify(lambda body, metadata: None, "Async")

    with pytest.raises(ContractError, match=r"(?s)never exercised.*'a charge' \(HTTP"):
        messages_only()
    assert not pact_path(tmp_path, "audit", "payment").exists()


def test_a_message_handler_gets_a_json_body_as_a_dict(tmp_path: Path) -> None:
    received: list[object] = []
    with consumer_pact("audit", "payment", tmp_path) as pact:
        pact.upon_receiving("a payment.charged event", "Async").with_body(
            {"type": "payment.charged", "data": {"amount": 100}}, "application/json"
        )
        pact.verify(lambda body, metadata: received.append(body), "Async")
    assert received == [{"type": "payment.charged", "data": {"amount": 100}}]


def test_a_pact_folder_that_is_a_file_is_named_before_the_test_runs(tmp_path: Path) -> None:
    taken = tmp_path / "pacts"
    taken.write_text("not a folder")
    ran = False

    def consumer_test() -> None:
        nonlocal ran
        with consumer_pact("order", "payment", taken):
            ran = True

    with pytest.raises(PactFileError, match=rf"the pact folder {taken} is a file"):
        consumer_test()
    assert not ran
    assert taken.read_text() == "not a folder"


CONSUMER_TESTS = """
    import httpx

    from saga_verify.contracts import consumer_pact


    def charge(description):
        with consumer_pact("order", "payment", "pacts") as pact:
            pact.upon_receiving(description).with_request("POST", "/charges").will_respond_with(201)
            with pact.serve(addr="127.0.0.1") as server:
                httpx.post(f"{{server.url}}/charges")

"""


def write_tests(folder: Path, name: str, tests: dict[str, str]) -> None:
    """A test module of consumer tests: test name -> the description it writes."""
    body = "".join(f"\ndef {test}():\n    charge({description!r})\n\n" for test, description in tests.items())
    (folder / name).write_text(textwrap.dedent(CONSUMER_TESTS.format()) + body)


def run_pytest(folder: Path, *args: str) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=folder,
        env={**os.environ, "PACT_DO_NOT_TRACK": "true"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def descriptions(folder: Path) -> list[str]:
    return [str(i["description"]) for i in interactions(folder / "pacts")]


def test_a_run_of_the_consumer_suite_leaves_only_what_it_wrote(tmp_path: Path) -> None:
    write_tests(tmp_path, "test_charges.py", {"test_charge": "a charge", "test_declined": "a declined charge"})
    write_tests(tmp_path, "test_refunds.py", {"test_refund": "a charge to refund"})
    run_pytest(tmp_path)
    assert descriptions(tmp_path) == ["a charge", "a charge to refund", "a declined charge"]
    written = interactions(tmp_path / "pacts")
    assert written[0]["comments"] == {"testname": "test_charges.py::test_charge"}

    # A description renamed, a test deleted, a whole module deleted: none of them leaves a trace.
    write_tests(tmp_path, "test_charges.py", {"test_charge": "a charge of 100"})
    (tmp_path / "test_refunds.py").unlink()
    run_pytest(tmp_path)
    assert descriptions(tmp_path) == ["a charge of 100"]


@pytest.mark.slow
def test_a_partial_run_keeps_what_the_tests_it_did_not_run_wrote(tmp_path: Path) -> None:
    write_tests(tmp_path, "test_charges.py", {"test_charge": "a charge", "test_declined": "a declined charge"})
    write_tests(tmp_path, "test_refunds.py", {"test_refund": "a charge to refund"})
    run_pytest(tmp_path)
    run_pytest(tmp_path, "test_charges.py::test_charge")
    run_pytest(tmp_path, "-k", "declined")
    run_pytest(tmp_path, "test_refunds.py")
    assert descriptions(tmp_path) == ["a charge", "a charge to refund", "a declined charge"]


@pytest.mark.slow
def test_a_consumer_whose_tests_are_all_gone_leaves_no_pact(tmp_path: Path) -> None:
    write_tests(tmp_path, "test_charges.py", {"test_charge": "a charge"})
    (tmp_path / "test_other.py").write_text(
        textwrap.dedent(CONSUMER_TESTS.format()).replace('"order", "payment"', '"order", "shipping"')
        + "\ndef test_ship():\n    charge('a shipment')\n"
    )
    run_pytest(tmp_path)
    assert pact_path(tmp_path / "pacts", "order", "shipping").exists()
    (tmp_path / "test_other.py").unlink()
    run_pytest(tmp_path)
    assert not pact_path(tmp_path / "pacts", "order", "shipping").exists()
    assert descriptions(tmp_path) == ["a charge"]


def test_a_session_run_inside_this_one_leaves_this_ones_pacts_alone(tmp_path: Path, pytester: pytest.Pytester) -> None:
    add_interaction(tmp_path, "a charge")
    pytester.makepyfile("def test_nothing():\n    pass\n")
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert [i["description"] for i in interactions(tmp_path)] == ["a charge"]
