"""The fault proxy in front of a real service: the reference payment service as a uvicorn process,
reached with httpx through the proxy over loopback. Each action does to the service and to the
caller what it promises (a ``then`` runs between commit and the caller's error, a lagged copy
lands after the caller has its answer, and ``settle`` waits for what is in flight); an unreachable upstream, a retarget, garbage from a client and a close
behave; and a bare socket upstream shows the framing (chunked replies, hop-by-hop headers, the
request target and encoded bodies passed on as sent)."""

from __future__ import annotations

import gzip
import json
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from saga_verify._runtimes._process import ServiceProcess
from saga_verify.errors import OptionError
from saga_verify.proxy import (
    Delay,
    DropRequest,
    DropResponse,
    Duplicate,
    FaultProxy,
    Pass,
    ProxiedRequest,
    ProxyAction,
    ProxyRecord,
    Stall,
    scripted,
    scripted_by_delivery,
)
from saga_verify.systems._protocol import DELIVERY_HEADER

KEY = "Idempotency-Key"
REPLAYED = "Idempotency-Replayed"


#: The reference payment service with its inspection endpoints, on a port the runner picks.
PAYMENT_COMMAND = [sys.executable, "-m", "saga_verify.reference.services", "--service", "payment", "--host", "{host}", "--port", "{port}", "--inspect"]


@pytest.fixture(scope="module")
def service() -> Iterator[ServiceProcess]:
    process = ServiceProcess("payment", PAYMENT_COMMAND, ready="/health").start()
    yield process
    process.stop()


@pytest.fixture
def payment(service: ServiceProcess) -> ServiceProcess:
    """The shared payment service with a new participant (an empty ledger) behind it."""
    httpx.post(f"{service.url}/_inspect/reset").raise_for_status()
    return service


@pytest.fixture
def dead_url() -> str:
    """A loopback URL where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _charge(client: httpx.Client, order_id: str, key: str | None = None, **headers: str) -> httpx.Response:
    if key is not None:
        headers[KEY] = key
    return client.post("/charges", json={"order_id": order_id, "amount": 100}, headers=headers)


def _ledger(service: ServiceProcess) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = httpx.get(f"{service.url}/_inspect/ledger").json()
    return rows


def _charges(service: ServiceProcess) -> list[str]:
    return [row["ref"] for row in _ledger(service) if row["action"] == "charge"]


def _eventually(check: Callable[[], bool]) -> bool:
    """Whether ``check()`` comes true within 5 seconds."""
    deadline = time.monotonic() + 5
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _client(proxy: FaultProxy) -> httpx.Client:
    return httpx.Client(base_url=proxy.url, timeout=5)


# -- the actions against the payment service --------------------------------------------------------
def test_pass_forwards_and_answers_with_the_reply(payment: ServiceProcess) -> None:
    with FaultProxy(payment.url) as proxy, _client(proxy) as client:
        charged = _charge(client, "o-1", "k-1")
        health = client.get("/health", params={"probe": "1"})  # same keep-alive connection

    assert charged.status_code == 201
    assert charged.json() == {"status": "ok", "charge_id": _charges(payment)[0]}
    assert (health.status_code, health.json()) == (200, {"status": "ok", "service": "payment"})
    assert proxy.records == [
        ProxyRecord(1, "POST", "/charges", Pass(), 201),
        ProxyRecord(2, "GET", "/health?probe=1", Pass(), 200),
    ]


def test_drop_response_commits_the_effect_but_the_caller_gets_an_error(payment: ServiceProcess) -> None:
    with FaultProxy(payment.url, scripted({1: DropResponse()})) as proxy, _client(proxy) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            _charge(client, "o-1", "k-1")
        assert len(_charges(payment)) == 1  # it took effect: the unknown outcome
        retried = _charge(client, "o-1", "k-1")

    assert retried.status_code == 201
    assert retried.headers[REPLAYED] == "true"
    assert _charges(payment) == [retried.json()["charge_id"]]
    assert proxy.records == [
        ProxyRecord(1, "POST", "/charges", DropResponse(), 201),
        ProxyRecord(2, "POST", "/charges", Pass(), 201),
    ]


def test_duplicate_with_a_key_lands_twice_and_the_copy_is_a_replay(payment: ServiceProcess) -> None:
    with FaultProxy(payment.url, scripted({1: Duplicate()})) as proxy, _client(proxy) as client:
        reply = _charge(client, "o-1", "k-1")

    assert reply.status_code == 201
    assert REPLAYED not in reply.headers  # the caller gets the first delivery's reply
    assert proxy.records == [ProxyRecord(1, "POST", "/charges", Duplicate(), 201, copy_status=201)]
    assert _charges(payment) == [reply.json()["charge_id"]]  # the service dedupes the copy
    with httpx.Client(base_url=payment.url, timeout=5) as direct:
        again = _charge(direct, "o-1", "k-1")
    assert again.headers[REPLAYED] == "true"
    assert again.json() == reply.json()


def test_duplicate_without_a_key_charges_twice(payment: ServiceProcess) -> None:
    with FaultProxy(payment.url, scripted({1: Duplicate()})) as proxy, _client(proxy) as client:
        reply = _charge(client, "o-1")

    charges = _charges(payment)
    assert len(charges) == 2
    assert reply.json()["charge_id"] == charges[0]
    assert proxy.records == [ProxyRecord(1, "POST", "/charges", Duplicate(), 201, copy_status=201)]


def test_drop_request_never_reaches_the_service(payment: ServiceProcess) -> None:
    with FaultProxy(payment.url, scripted({1: DropRequest()})) as proxy, _client(proxy) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            _charge(client, "o-1", "k-1")
        assert _charges(payment) == []
        retried = _charge(client, "o-1", "k-1")  # on a new connection

    assert retried.status_code == 201
    assert REPLAYED not in retried.headers
    assert proxy.records == [
        ProxyRecord(1, "POST", "/charges", DropRequest(), None),
        ProxyRecord(2, "POST", "/charges", Pass(), 201),
    ]


def test_delay_holds_the_request_while_others_overtake_it(payment: ServiceProcess) -> None:
    held = threading.Event()

    def decide(request: ProxiedRequest) -> ProxyAction:
        if json.loads(request.body)["order_id"] == "slow":
            held.set()
            # Held until the fast one was answered: a fixed hold a busy machine can outlast.
            return Delay(30, until=lambda: "fast" in replies)
        return Pass()

    replies: dict[str, httpx.Response] = {}
    with FaultProxy(payment.url, decide) as proxy, _client(proxy) as slow, _client(proxy) as fast:
        thread = threading.Thread(target=lambda: replies.update(slow=_charge(slow, "slow", "k-slow")))
        thread.start()
        assert held.wait(5)
        replies["fast"] = _charge(fast, "fast", "k-fast")
        thread.join(5)

    assert not thread.is_alive()
    assert [replies[name].status_code for name in ("slow", "fast")] == [201, 201]
    # The fast one was sent second and landed first; the slow one still landed.
    assert _charges(payment) == [replies["fast"].json()["charge_id"], replies["slow"].json()["charge_id"]]
    assert proxy.records == [
        ProxyRecord(2, "POST", "/charges", Pass(), 201),
        ProxyRecord(1, "POST", "/charges", Delay(30), 201),
    ]


def test_a_delay_until_holds_the_request_until_something_else_happened(payment: ServiceProcess) -> None:
    """Held until another request has been answered, whatever the time that takes; with nothing
    to wait for, its seconds end the hold."""

    def refunded() -> bool:
        return any(r.path == "/refunds" and r.status is not None for r in proxy.records)

    held = Delay(30, until=refunded)
    with FaultProxy(payment.url, scripted({1: held, 3: Delay(0.2, until=lambda: False)})) as proxy:
        with httpx.Client(base_url=proxy.url, timeout=0.2) as client, pytest.raises(httpx.ReadTimeout):
            _charge(client, "o-1", "k-1")
        assert proxy.in_flight == 1
        assert _charges(payment) == []
        with _client(proxy) as client:
            refund = client.post("/refunds", json={"charge_key": "k-1"}, headers={KEY: "k-1:refund"})
            assert proxy.settle(5)
            assert _charge(client, "o-2", "k-2").status_code == 201  # #3: held its 0.2 s, then forwarded

    assert refund.status_code == 200
    # The refund came first; the charge held until then landed after it, and was refused.
    assert [(r.seq, r.path, r.status) for r in proxy.records] == [(2, "/refunds", 200), (1, "/charges", 402), (3, "/charges", 201)]
    assert held == Delay(30)
    assert str(held) == "delay seconds=30"
    with pytest.raises(OptionError, match="until"):
        Delay(1, until=True)  # type: ignore[arg-type]


def test_a_delay_whose_until_raises_forwards_nothing_and_says_why(payment: ServiceProcess) -> None:
    def broken() -> bool:
        raise LookupError("no such record")

    with FaultProxy(payment.url, scripted({1: Delay(5, until=broken)})) as proxy, _client(proxy) as client:
        reply = _charge(client, "o-1", "k-1")
        assert client.get("/health").status_code == 200  # the connection goes on

    assert reply.status_code == 500
    assert "until raised LookupError: no such record" in reply.json()["reason"]
    assert _charges(payment) == []
    assert proxy.records[0] == ProxyRecord(1, "POST", "/charges", Delay(5), None, error="until raised LookupError: no such record")


def test_a_delay_longer_than_the_callers_timeout_lands_after_it_gave_up(payment: ServiceProcess) -> None:
    with FaultProxy(payment.url, scripted({1: Delay(0.3)})) as proxy:
        with httpx.Client(base_url=proxy.url, timeout=0.05) as client, pytest.raises(httpx.ReadTimeout):
            _charge(client, "o-1", "k-1")
        assert _eventually(lambda: len(proxy.records) == 1)

    assert proxy.records == [ProxyRecord(1, "POST", "/charges", Delay(0.3), 201)]
    assert len(_charges(payment)) == 1


def test_scripted_by_delivery_reads_the_harness_header_and_passes_it_on(payment: ServiceProcess) -> None:
    seen: list[int | None] = []
    by_delivery = scripted_by_delivery({4: DropRequest()})

    def decide(request: ProxiedRequest) -> ProxyAction:
        seen.append(request.delivery)
        return by_delivery(request)

    with FaultProxy(payment.url, decide) as proxy, _client(proxy) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            _charge(client, "o-1", "k-1", **{DELIVERY_HEADER: "4"})
        assert _charge(client, "o-1", "k-1", **{DELIVERY_HEADER: "5"}).status_code == 201
        assert _charge(client, "o-2", "k-2").status_code == 201

    assert seen == [4, 5, None]
    assert [row["delivery"] for row in _ledger(payment)] == [5, -1]  # the service stamped what it was told
    assert [r.action for r in proxy.records] == [DropRequest(), Pass(), Pass()]


def test_a_chunked_request_is_forwarded_with_its_length(payment: ServiceProcess) -> None:
    body = iter([b'{"order_id": "o-1",', b' "amount": 7}'])
    with FaultProxy(payment.url) as proxy, _client(proxy) as client:
        reply = client.post("/charges", content=body, headers={"content-type": "application/json"})
    assert reply.status_code == 201
    assert [row["amount"] for row in _ledger(payment)] == [7]


# -- stall, then, lagged copies and settle -------------------------------------------------------------
def test_stall_makes_the_caller_time_out_and_nothing_reaches_the_service(payment: ServiceProcess) -> None:
    with FaultProxy(payment.url, scripted({1: Stall()})) as proxy:
        with httpx.Client(base_url=proxy.url, timeout=0.3) as client, pytest.raises(httpx.ReadTimeout):
            _charge(client, "o-1", "k-1")
        assert proxy.records == [ProxyRecord(1, "POST", "/charges", Stall(), None)]
        assert _charges(payment) == []
        with _client(proxy) as client:
            retried = _charge(client, "o-1", "k-1")

    assert retried.status_code == 201
    assert REPLAYED not in retried.headers
    assert _charges(payment) == [retried.json()["charge_id"]]


def test_a_stalled_connection_stays_open_until_the_proxy_closes_and_is_not_in_flight(payment: ServiceProcess) -> None:
    proxy = FaultProxy(payment.url, scripted({1: Stall()})).start()
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as client:
        client.sendall(b"GET /health HTTP/1.1\r\nhost: proxy\r\n\r\n")
        assert _eventually(lambda: len(proxy.records) == 1)
        assert proxy.settle(0)  # a stalled request will never reach the service: nothing to wait for
        assert proxy.in_flight == 0
        client.sendall(b"GET /health HTTP/1.1\r\nhost: proxy\r\n\r\n")  # dropped, never decided
        client.settimeout(0.2)
        with pytest.raises(TimeoutError):
            client.recv(1)
        proxy.close()
        client.settimeout(5)
        assert client.recv(1) == b""
    assert proxy.records == [ProxyRecord(1, "GET", "/health", Stall(), None)]


def test_drop_response_then_runs_after_the_commit_and_before_the_caller_sees_the_end(
    payment: ServiceProcess, dead_url: str
) -> None:
    seen: dict[str, object] = {}
    finished = threading.Event()

    def then() -> None:
        seen["charges"] = len(_charges(payment))  # the upstream committed already
        seen["thread"] = threading.current_thread().name
        proxy.retarget(dead_url)  # as if the service came back elsewhere
        finished.set()

    action = DropResponse(then=then)
    with FaultProxy(payment.url, scripted({1: action})) as proxy, _client(proxy) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            _charge(client, "o-1", "k-1")
        assert finished.is_set()  # the caller's error came only once then had returned
        assert client.get("/health").json()["upstream"] == dead_url

    assert seen["charges"] == 1
    assert not str(seen["thread"]).startswith("saga-verify-proxy")  # a worker thread, not the loop
    assert proxy.records[0] == ProxyRecord(1, "POST", "/charges", DropResponse(), 201)
    assert proxy.records[0].action is action


def test_a_then_that_raises_shows_in_the_record(payment: ServiceProcess) -> None:
    def then() -> None:
        raise RuntimeError("the container would not restart")

    proxy = FaultProxy(payment.url, scripted({1: DropResponse(then=then)}))
    with proxy, _client(proxy) as client, pytest.raises(httpx.RemoteProtocolError):
        _charge(client, "o-1", "k-1")

    assert len(_charges(payment)) == 1
    error = "then raised RuntimeError: the container would not restart"
    assert proxy.records == [ProxyRecord(1, "POST", "/charges", DropResponse(), 201, error=error)]


def test_a_lagged_duplicate_lands_after_the_caller_has_its_answer(payment: ServiceProcess) -> None:
    with FaultProxy(payment.url, scripted({1: Duplicate(lag=0.3)})) as proxy, _client(proxy) as client:
        reply = _charge(client, "o-1")  # no key: the copy charges again
        assert _charges(payment) == [reply.json()["charge_id"]]
        assert proxy.in_flight >= 1  # the copy
        assert proxy.records == [ProxyRecord(1, "POST", "/charges", Duplicate(lag=0.3), 201)]
        assert proxy.settle(5)
        assert proxy.in_flight == 0
        assert len(_charges(payment)) == 2

    assert reply.status_code == 201
    assert proxy.records == [
        ProxyRecord(1, "POST", "/charges", Duplicate(lag=0.3), 201),
        ProxyRecord(1, "POST", "/charges", Duplicate(lag=0.3), None, copy_status=201),
    ]


def test_a_lagged_copy_to_an_upstream_that_is_gone_records_why(payment: ServiceProcess, dead_url: str) -> None:
    with FaultProxy(payment.url, scripted({1: Duplicate(lag=0.1)})) as proxy, _client(proxy) as client:
        assert _charge(client, "o-1", "k-1").status_code == 201
        proxy.retarget(dead_url)  # the copy goes to the target of its time
        assert proxy.settle(5)

    copy = proxy.records[1]
    assert (copy.seq, copy.status, copy.copy_status) == (1, None, None)
    assert copy.error is not None
    assert copy.error.startswith("the copy failed: 502")
    assert dead_url in copy.error


def test_closing_the_proxy_abandons_a_pending_lagged_copy(payment: ServiceProcess) -> None:
    with FaultProxy(payment.url, scripted({1: Duplicate(lag=0.3)})) as proxy, _client(proxy) as client:
        reply = _charge(client, "o-1")
    assert proxy.settle(0)  # closed: nothing is in flight any more
    time.sleep(0.4)  # past the lag: the copy would have landed by now
    assert _charges(payment) == [reply.json()["charge_id"]]
    assert proxy.records == [ProxyRecord(1, "POST", "/charges", Duplicate(lag=0.3), 201)]


def test_settle_waits_for_a_delayed_request_whose_caller_gave_up(payment: ServiceProcess) -> None:
    # The hold ends when the test says so, not after a real-time margin a busy machine can eat.
    release = threading.Event()
    with FaultProxy(payment.url, scripted({1: Delay(60, until=release.is_set)})) as proxy:
        assert proxy.settle(0)  # idle
        with httpx.Client(base_url=proxy.url, timeout=0.05) as client, pytest.raises(httpx.ReadTimeout):
            _charge(client, "o-1", "k-1")
        assert _eventually(lambda: proxy.in_flight == 1)
        assert not proxy.settle(0.1)
        assert _charges(payment) == []
        release.set()
        assert proxy.settle(30)
        assert len(_charges(payment)) == 1
        assert proxy.records == [ProxyRecord(1, "POST", "/charges", Delay(60), 201)]
        assert proxy.in_flight == 0


def test_settle_on_an_idle_proxy_returns_at_once(payment: ServiceProcess) -> None:
    proxy = FaultProxy(payment.url)
    assert proxy.settle(0)  # not started
    with proxy, _client(proxy) as client:
        assert proxy.settle(0)
        assert client.get("/health").status_code == 200
        assert proxy.settle(5)
        assert proxy.in_flight == 0
    for bad in (-1, float("nan"), True):
        with pytest.raises(OptionError, match="settle"):
            proxy.settle(bad)


def test_settle_from_decide_is_refused(payment: ServiceProcess) -> None:
    errors: list[str] = []

    def decide(request: ProxiedRequest) -> ProxyAction:
        try:
            proxy.settle(0)
        except RuntimeError as exc:
            errors.append(str(exc))
        return Pass()

    with FaultProxy(payment.url, decide) as proxy, _client(proxy) as client:
        assert client.get("/health").status_code == 200
    assert len(errors) == 1
    assert "own thread" in errors[0]


# -- upstream trouble and retargeting --------------------------------------------------------------------
def test_an_unreachable_upstream_is_answered_502_naming_it(dead_url: str) -> None:
    with FaultProxy(dead_url) as proxy, _client(proxy) as client:
        reply = client.get("/health")
        head = client.head("/health")
        again = client.get("/health")  # the client connection stays usable

    assert reply.status_code == 502
    assert reply.json()["upstream"] == dead_url
    assert dead_url in reply.json()["reason"]
    assert (head.status_code, head.content, again.status_code) == (502, b"", 502)
    record = proxy.records[0]
    assert (record.seq, record.action, record.status) == (1, Pass(), None)
    assert record.error is not None
    assert dead_url in record.error


def test_retarget_sends_later_requests_to_the_new_upstream(payment: ServiceProcess, dead_url: str) -> None:
    with FaultProxy(dead_url) as proxy, _client(proxy) as client:
        assert client.get("/health").status_code == 502
        proxy.retarget(payment.url)
        assert proxy.upstream == payment.url
        assert client.get("/health").status_code == 200
        proxy.retarget(dead_url)  # the connection kept alive to the service is not used again
        assert client.get("/health").json()["upstream"] == dead_url

    assert [r.status for r in proxy.records] == [None, 200, None]


@pytest.mark.parametrize("url", ["https://127.0.0.1:1", "127.0.0.1:8000", "http://127.0.0.1:8000/api", "http://:80"])
def test_an_upstream_must_be_a_plain_http_origin(url: str) -> None:
    with pytest.raises(OptionError, match="upstream"):
        FaultProxy(url)
    proxy = FaultProxy("http://127.0.0.1:1")
    with pytest.raises(OptionError, match="upstream"):
        proxy.retarget(url)


def test_decide_that_raises_gets_the_client_a_500(payment: ServiceProcess) -> None:
    answers: list[Any] = [ZeroDivisionError("boom"), "pass"]

    def decide(request: ProxiedRequest) -> ProxyAction:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[no-any-return]

    with FaultProxy(payment.url, decide) as proxy, _client(proxy) as client:
        raised, wrong = client.get("/health"), client.get("/health")
        proxy.decide = scripted({})
        assert client.get("/health").status_code == 200

    assert (raised.status_code, wrong.status_code) == (500, 500)
    assert "ZeroDivisionError: boom" in raised.json()["reason"]
    assert "not a proxy action" in wrong.json()["reason"]
    assert [(r.action, r.status) for r in proxy.records] == [(None, None), (None, None), (Pass(), 200)]


# -- bad clients -------------------------------------------------------------------------------------------
def _exchange_raw(port: int, data: bytes, *, half_close: bool = False) -> bytes:
    """Send ``data`` on a new connection and read until the proxy closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x00\xffgarbage\r\n\r\n", "illegal request line"),
        (b"GET /health HTTP/1.1\r\nno colon here\r\n\r\n", "illegal header line"),
        (b"POST /charges HTTP/1.1\r\nHost: x\r\nContent-Length: lots\r\n\r\n", "Content-Length"),
        (b"POST /charges HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", "both"),
        (b"GET health HTTP/1.1\r\nHost: x\r\n\r\n", "neither a path nor an absolute URL"),
        (b"GET /health HTTP/1.1\r\n\r\n", "Host"),
        (b"GET /health HTTP/1.1\r\nHost: x", "ended in the middle"),
    ],
)
def test_a_request_it_cannot_read_is_answered_400_and_the_proxy_serves_on(
    payment: ServiceProcess, data: bytes, reason: str
) -> None:
    with FaultProxy(payment.url) as proxy:
        received = _exchange_raw(proxy.port, data, half_close=True)
        assert _exchange_raw(proxy.port, b"", half_close=True) == b""  # a client that connects and leaves
        with _client(proxy) as client:
            assert client.get("/health").status_code == 200

    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert json.loads(body)["error"] == "bad request"
    assert reason in json.loads(body)["reason"]
    assert proxy.records == [ProxyRecord(1, "GET", "/health", Pass(), 200)]  # a bad request reaches no decide


# -- framing, against a bare socket upstream ------------------------------------------------------------------
class _RawUpstream:
    """A bare HTTP server for one connection: it answers each request head with ``reply`` (and
    closes after it if ``close``), keeps the heads it got, and sets ``ended`` when the other side
    closes the connection."""

    def __init__(self, reply: bytes, *, close: bool = False) -> None:
        self.reply, self.close_after = reply, close
        self.heads: list[bytes] = []
        self.ended = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(5)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self._listener.accept()
        except OSError:
            return
        with conn:
            buffer = b""
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = conn.recv(65536)
                    if not chunk:
                        self.ended.set()
                        return
                    buffer += chunk
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                self.heads.append(head)
                conn.sendall(self.reply)
                if self.close_after:
                    return

    def stop(self) -> None:
        self._listener.close()
        self._thread.join(10)


@pytest.fixture
def raw_upstream(request: pytest.FixtureRequest) -> Iterator[_RawUpstream]:
    reply, close = request.param
    upstream = _RawUpstream(reply, close=close)
    yield upstream
    upstream.stop()


OK = (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", False)
CHUNKED = (
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-sum\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nx-sum: 1\r\n\r\n",
    False,
)
UNTIL_CLOSE = (b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nhello world", True)
_HELLO_GZIPPED = gzip.compress(b"hello world", mtime=0)
GZIPPED = (
    b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: %d\r\n\r\n" % len(_HELLO_GZIPPED) + _HELLO_GZIPPED,
    False,
)
GARBAGE = (b"SMTP ready\r\n\r\n", True)


@pytest.mark.parametrize("raw_upstream", [CHUNKED, UNTIL_CLOSE], indirect=True, ids=["chunked", "until-close"])
def test_replies_without_a_length_reach_the_client_with_one(raw_upstream: _RawUpstream) -> None:
    with FaultProxy(raw_upstream.url) as proxy, _client(proxy) as client:
        reply = client.get("/stream")
    assert reply.text == "hello world"
    assert reply.headers["content-length"] == "11"
    assert "transfer-encoding" not in reply.headers
    assert "trailer" not in reply.headers


@pytest.mark.parametrize("raw_upstream", [GZIPPED], indirect=True)
def test_an_encoded_reply_passes_as_the_upstream_encoded_it(raw_upstream: _RawUpstream) -> None:
    with FaultProxy(raw_upstream.url) as proxy, socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as client:
        client.sendall(b"GET /x HTTP/1.1\r\nhost: proxy\r\nconnection: close\r\n\r\n")
        received = b""
        while chunk := client.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    assert b"content-encoding: gzip" in head.lower()
    assert body == _HELLO_GZIPPED


@pytest.mark.parametrize("raw_upstream", [OK], indirect=True)
def test_the_request_target_reaches_the_upstream_as_sent(raw_upstream: _RawUpstream) -> None:
    with FaultProxy(raw_upstream.url) as proxy, socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as client:
        client.sendall(b"GET /a/%2e%2e/b/../c?q=1%202&r HTTP/1.1\r\nhost: proxy\r\n\r\n")
        received = b""
        while not received.endswith(b"ok"):
            received += client.recv(65536)
    assert raw_upstream.heads[0].split(b"\r\n")[0] == b"GET /a/%2e%2e/b/../c?q=1%202&r HTTP/1.1"
    assert proxy.records[0].path == "/a/%2e%2e/b/../c?q=1%202&r"


@pytest.mark.parametrize("raw_upstream", [GARBAGE], indirect=True)
def test_an_unreadable_reply_is_answered_502(raw_upstream: _RawUpstream) -> None:
    with FaultProxy(raw_upstream.url) as proxy, _client(proxy) as client:
        reply = client.get("/x")
    assert reply.status_code == 502
    assert f"{raw_upstream.url} sent a reply the proxy cannot read: illegal status line" in reply.json()["reason"]


@pytest.mark.parametrize("raw_upstream", [OK], indirect=True)
def test_the_upstream_gets_its_own_host_and_no_hop_by_hop_headers(raw_upstream: _RawUpstream) -> None:
    headers = {"Connection": "keep-alive, X-Hop", "X-Hop": "1", "X-End": "2", "Keep-Alive": "timeout=5"}
    with FaultProxy(raw_upstream.url) as proxy, _client(proxy) as client:
        assert client.get("/x?y=1", headers=headers).text == "ok"
    lines = raw_upstream.heads[0].lower().split(b"\r\n")
    assert lines[0] == b"get /x?y=1 http/1.1"
    assert lines[1] == f"host: {raw_upstream.url.removeprefix('http://')}".encode()
    assert b"x-end: 2" in lines
    assert not [line for line in lines if line.startswith((b"x-hop", b"connection", b"keep-alive"))]


@pytest.mark.parametrize("raw_upstream", [OK], indirect=True)
def test_close_leaves_no_thread_listener_or_connection(raw_upstream: _RawUpstream) -> None:
    proxy = FaultProxy(raw_upstream.url)
    with pytest.raises(RuntimeError, match="start"):
        _ = proxy.url
    proxy.start()
    port, name = proxy.port, f"saga-verify-proxy-{proxy.port}"
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        client.sendall(b"GET /x HTTP/1.1\r\nhost: proxy\r\n\r\n")
        received = b""
        while not received.endswith(b"ok"):
            received += client.recv(65536)
        assert name in [t.name for t in threading.enumerate()]

        proxy.close()
        proxy.close()
        assert client.recv(1) == b""  # the client's keep-alive connection was closed
    assert raw_upstream.ended.wait(5)  # and so was the one upstream
    assert name not in [t.name for t in threading.enumerate()]
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    with pytest.raises(RuntimeError, match="closed"):
        proxy.start()


def test_a_port_in_use_fails_start() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        proxy = FaultProxy("http://127.0.0.1:1", port=taken.getsockname()[1])
        with pytest.raises(OSError, match="in use"):
            proxy.start()
    assert not [t for t in threading.enumerate() if t.name == "saga-verify-proxy"]
    proxy.close()
