"""The reference services over real HTTP (httpx through ASGITransport, in process; no mocks):
idempotency, refusals, tombstones, validation, inspection, persistence across restarts, and the
broken participants served the same way."""

from __future__ import annotations

import asyncio
import functools
import json
import sqlite3
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from saga_verify import HttpParticipant
from saga_verify.reference import Inventory, Payment
from saga_verify.reference._broken import NonIdempotentRefund, RefundForgetsCharge
from saga_verify.reference.services import SERVICES, create_app, serve_participant
from saga_verify.reference.services._store import StoreError, dump_state, restore_state

CONTRACTS = Path(__file__).resolve().parents[2] / "contracts" / "openapi"
KEY = "Idempotency-Key"
REPLAYED = "Idempotency-Replayed"
ROW_FIELDS = ["participant", "seq", "time", "correlation_id", "action", "amount", "ref", "delivery"]


class Client:
    """A synchronous face on ``httpx.AsyncClient`` over ``httpx.ASGITransport``: real HTTP requests
    to the app in this process. (Starlette's TestClient warns that it wants ``httpx2``, and this
    project turns warnings into errors.)"""

    def __init__(self, runner: asyncio.Runner, app: Any, service: str) -> None:
        self.app = app
        self.runner = runner
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{service}")

    def request(self, method: str, path: str, *, key: str | None = None, **kwargs: Any) -> httpx.Response:
        if key is not None:
            kwargs["headers"] = {**kwargs.get("headers", {}), KEY: key}
        return self.runner.run(self.http.request(method, path, **kwargs))

    def post(self, path: str, body: Any = None, *, key: str | None = None, **kwargs: Any) -> httpx.Response:
        if body is not None:
            kwargs["json"] = body
        return self.request("POST", path, key=key, **kwargs)

    def get(self, path: str) -> httpx.Response:
        return self.request("GET", path)

    def ledger(self) -> list[dict[str, Any]]:
        response = self.get("/_inspect/ledger")
        assert response.status_code == 200, response.text
        return response.json()

    def actions(self) -> list[str]:
        return [row["action"] for row in self.ledger()]

    def refuse_next(self) -> None:
        assert self.post("/_inspect/refuse-next").status_code == 204


@pytest.fixture
def runner():
    with asyncio.Runner() as runner:
        yield runner


@pytest.fixture
def serve(runner):
    """``serve("payment", participant=..., store_path=..., inspect=True)`` -> a Client of a new app."""
    clients: list[Client] = []

    def make(service: str = "payment", *, inspect: bool = True, **options: Any) -> Client:
        client = Client(runner, create_app(service, inspect=inspect, **options), service)
        clients.append(client)
        return client

    yield make
    for client in clients:
        runner.run(client.http.aclose())


# --- the operations ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Op:
    service: str
    name: str
    path: str
    body: dict[str, Any]
    other: dict[str, Any]
    """Another body for the same key."""
    ok: int
    setup: tuple[tuple[str, dict[str, Any], str], ...] = field(default=())
    """Requests (path, body, key) that make what a compensation undoes."""

    @property
    def compensation(self) -> bool:
        return bool(self.setup)

    def __str__(self) -> str:
        return f"{self.service}.{self.name}"


OPS = [
    Op("inventory", "reserve", "/reservations", {"order_id": "o-1", "sku": "sku-1", "qty": 2},
       {"order_id": "o-1", "sku": "sku-1", "qty": 3}, 201),
    Op("inventory", "release", "/releases", {"reserve_key": "o-1:reserve"}, {"reserve_key": "o-2:reserve"}, 200,
       (("/reservations", {"order_id": "o-1", "sku": "sku-1", "qty": 2}, "o-1:reserve"),)),
    Op("payment", "charge", "/charges", {"order_id": "o-1", "amount": 100}, {"order_id": "o-1", "amount": 200}, 201),
    Op("payment", "refund", "/refunds", {"charge_key": "o-1:charge"}, {"charge_key": "o-2:charge"}, 200,
       (("/charges", {"order_id": "o-1", "amount": 100}, "o-1:charge"),)),
    Op("shipping", "create", "/shipments", {"order_id": "o-1", "reservation_id": "res-1"},
       {"order_id": "o-1", "reservation_id": "res-2"}, 201),
    Op("shipping", "cancel", "/cancellations", {"shipment_key": "o-1:ship"}, {"shipment_key": "o-2:ship"}, 200,
       (("/shipments", {"order_id": "o-1", "reservation_id": "res-1"}, "o-1:ship"),)),
    Op("notification", "send", "/notifications", {"order_id": "o-1", "message": "on its way"},
       {"order_id": "o-1", "message": "cancelled"}, 201),
]
FORWARD = [op for op in OPS if not op.compensation]
COMPENSATIONS = [op for op in OPS if op.compensation]


def prepared(serve, op: Op) -> Client:
    client = serve(op.service)
    for path, body, key in op.setup:
        assert client.post(path, body, key=key).status_code == 201
    return client


def test_the_table_covers_every_operation():
    assert sorted((op.service, op.name, op.path) for op in OPS) == sorted(
        (name, o.name, o.path) for name, service in SERVICES.items() for o in service.operations
    )


@pytest.mark.parametrize("op", OPS, ids=str)
def test_same_key_same_body_gets_the_stored_reply(serve, op):
    client = prepared(serve, op)
    first = client.post(op.path, op.body, key="k-1")
    assert first.status_code == op.ok, first.text
    assert first.json()["status"] == "ok"
    assert REPLAYED not in first.headers
    rows = client.ledger()
    assert [r["action"] for r in rows].count(op.name) == 1

    again = client.post(op.path, op.body, key="k-1")
    assert again.status_code == op.ok
    assert again.json() == first.json()
    assert again.headers[REPLAYED] == "true"
    assert client.ledger() == rows


@pytest.mark.parametrize("op", OPS, ids=str)
def test_same_key_other_body_is_rejected(serve, op):
    client = prepared(serve, op)
    first = client.post(op.path, op.body, key="k-1")
    rows = client.ledger()
    reused = client.post(op.path, op.other, key="k-1")
    assert reused.status_code == 422
    assert reused.json() == {"status": "rejected", "reason": "idempotency key 'k-1' was used for a different request"}
    assert REPLAYED not in reused.headers
    assert client.ledger() == rows
    # The key still belongs to the first request.
    again = client.post(op.path, op.body, key="k-1")
    assert (again.status_code, again.json(), again.headers[REPLAYED]) == (op.ok, first.json(), "true")


@pytest.mark.parametrize("op", FORWARD, ids=str)
def test_requests_without_a_key_are_not_deduplicated(serve, op):
    client = serve(op.service)
    first, second = client.post(op.path, op.body), client.post(op.path, op.body)
    assert first.status_code == second.status_code == op.ok
    assert first.json() != second.json()  # two effects, two ids
    assert REPLAYED not in first.headers
    assert REPLAYED not in second.headers
    assert client.actions() == [op.name, op.name]


@pytest.mark.parametrize("op", COMPENSATIONS, ids=str)
def test_a_compensation_twice_is_harmless(serve, op):
    client = prepared(serve, op)
    replies = [client.post(op.path, op.body), client.post(op.path, op.body), client.post(op.path, op.body, key="c-1"),
               client.post(op.path, op.body, key="c-2")]
    assert [r.status_code for r in replies] == [200] * 4
    assert all(REPLAYED not in r.headers for r in replies)
    assert len({json.dumps(r.json()) for r in replies}) == 1
    assert client.actions().count(op.name) == 1


@pytest.mark.parametrize(
    ("service", "path", "body", "status", "reason"),
    [
        ("inventory", "/reservations", {"order_id": "o-1", "sku": "sku-1", "qty": 2}, 409, "out_of_stock"),
        ("payment", "/charges", {"order_id": "o-1", "amount": 100}, 402, "card_declined"),
        ("shipping", "/shipments", {"order_id": "o-1", "reservation_id": "res-1"}, 409, "address_undeliverable"),
    ],
)
def test_business_refusals(serve, service, path, body, status, reason):
    client = serve(service)
    client.refuse_next()
    refused = client.post(path, body, key="k-1")
    assert (refused.status_code, refused.json()) == (status, {"status": "refused", "reason": reason})
    assert client.ledger() == []
    # A refusal is a reply like any other: the key keeps it.
    again = client.post(path, body, key="k-1")
    assert (again.status_code, again.json(), again.headers[REPLAYED]) == (status, refused.json(), "true")
    # Only the next request was refused.
    assert client.post(path, body, key="k-2").status_code == 201


def test_out_of_stock_without_a_hint(serve):
    client = serve("inventory")
    refused = client.post("/reservations", {"order_id": "o-1", "sku": "sku-1", "qty": 11})
    assert (refused.status_code, refused.json()["reason"]) == (409, "out_of_stock")
    assert client.post("/reservations", {"order_id": "o-1", "sku": "nothing", "qty": 1}).status_code == 409


@pytest.mark.parametrize("op", COMPENSATIONS, ids=str)
def test_a_compensation_before_its_step_leaves_a_tombstone(serve, op):
    client = serve(op.service)
    forward_path, forward_body, forward_key = op.setup[0]
    early = client.post(op.path, op.body, key="c-1")
    assert early.status_code == 200
    assert next(v for k, v in early.json().items() if k != "status") is None
    late = client.post(forward_path, forward_body, key=forward_key)
    assert late.status_code == (402 if op.service == "payment" else 409)
    assert late.json()["status"] == "refused"
    assert late.json()["reason"].startswith("cancelled:")
    assert client.ledger() == []


def test_a_shipment_without_a_reservation_is_rejected(serve):
    client = serve("shipping")
    rejected = client.post("/shipments", {"order_id": "o-1", "reservation_id": ""}, key="k-1")
    assert (rejected.status_code, rejected.json()["status"]) == (422, "rejected")
    assert "reservation id" in rejected.json()["reason"]
    again = client.post("/shipments", {"order_id": "o-1", "reservation_id": ""}, key="k-1")
    assert (again.status_code, again.headers[REPLAYED]) == (422, "true")
    assert client.ledger() == []


def test_health(serve):
    for name in SERVICES:
        response = serve(name, inspect=False).get("/health")
        assert (response.status_code, response.json()) == (200, {"status": "ok", "service": name})


# --- bad input -----------------------------------------------------------------------------------

JSON = {"content-type": "application/json"}
CHARGE = {"order_id": "o-1", "amount": 100}

BAD = [
    ("missing body", "payment", "/charges", {}),
    ("empty object", "payment", "/charges", {"json": {}}),
    ("missing field", "payment", "/charges", {"json": {"order_id": "o-1"}}),
    ("amount as string", "payment", "/charges", {"json": {**CHARGE, "amount": "100"}}),
    ("amount as float", "payment", "/charges", {"json": {**CHARGE, "amount": 100.0}}),
    ("amount fractional", "payment", "/charges", {"json": {**CHARGE, "amount": 1.5}}),
    ("amount as bool", "payment", "/charges", {"json": {**CHARGE, "amount": True}}),
    ("amount null", "payment", "/charges", {"json": {**CHARGE, "amount": None}}),
    ("amount zero", "payment", "/charges", {"json": {**CHARGE, "amount": 0}}),
    ("amount negative", "payment", "/charges", {"json": {**CHARGE, "amount": -5}}),
    ("order_id as number", "payment", "/charges", {"json": {**CHARGE, "order_id": 5}}),
    ("extra field", "payment", "/charges", {"json": {**CHARGE, "currency": "EUR"}}),
    ("body a list", "payment", "/charges", {"json": [CHARGE]}),
    ("body a string", "payment", "/charges", {"json": "charge"}),
    ("body null", "payment", "/charges", {"content": b"null", "headers": JSON}),
    ("not JSON", "payment", "/charges", {"content": b"amount=100", "headers": JSON}),
    ("truncated JSON", "payment", "/charges", {"content": b'{"order_id": "o-1", "amount": 1', "headers": JSON}),
    ("not UTF-8", "payment", "/charges", {"content": b'\xff\xfe{"amount": 1}', "headers": JSON}),
    ("nested too deep", "payment", "/charges", {"content": b"[" * 100_000, "headers": JSON}),
    ("number too long", "payment", "/charges", {"content": b'{"order_id": "o", "amount": 1' + b"0" * 5000 + b"}",
                                               "headers": JSON}),
    ("text/plain", "payment", "/charges", {"content": json.dumps(CHARGE).encode(), "headers": {"content-type": "text/plain"}}),
    ("no content type", "payment", "/charges", {"content": json.dumps(CHARGE).encode()}),
    ("empty key", "payment", "/charges", {"json": CHARGE, "headers": {KEY: ""}}),
    ("key too long", "payment", "/charges", {"json": CHARGE, "headers": {KEY: "k" * 201}}),
    ("refund without charge_key", "payment", "/refunds", {"json": {"charge": "o-1:charge"}}),
    ("qty zero", "inventory", "/reservations", {"json": {"order_id": "o-1", "sku": "sku-1", "qty": 0}}),
    ("qty as string", "inventory", "/reservations", {"json": {"order_id": "o-1", "sku": "sku-1", "qty": "2"}}),
    ("sku missing", "inventory", "/reservations", {"json": {"order_id": "o-1", "qty": 2}}),
    ("reserve_key a list", "inventory", "/releases", {"json": {"reserve_key": ["k"]}}),
    ("reservation_id null", "shipping", "/shipments", {"json": {"order_id": "o-1", "reservation_id": None}}),
    ("shipment extra field", "shipping", "/cancellations", {"json": {"shipment_key": "k", "force": True}}),
    ("message a number", "notification", "/notifications", {"json": {"order_id": "o-1", "message": 5}}),
]


@pytest.mark.parametrize(("service", "path", "request_args"), [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_bad_input_is_rejected_with_a_reason(serve, service, path, request_args):
    client = serve(service)
    response = client.request("POST", path, **request_args)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["status"] == "rejected"
    assert body["reason"].startswith("invalid request: ")
    assert body["detail"]
    assert client.ledger() == []


def test_a_key_of_200_characters_is_fine(serve):
    assert serve().post("/charges", CHARGE, key="k" * 200).status_code == 201


def test_unknown_routes_and_methods(serve):
    client = serve()
    assert client.post("/charge", CHARGE).status_code == 404
    assert client.post("/reservations", CHARGE).status_code == 404  # another service's route
    assert client.get("/charges").status_code == 405
    assert client.request("PUT", "/refunds", json={"charge_key": "k"}).status_code == 405
    assert client.post("/health").status_code == 405


def test_inspection_is_off_by_default(serve):
    client = serve(inspect=False)
    assert client.post("/charges", CHARGE).status_code == 201
    assert client.get("/_inspect/ledger").status_code == 404
    assert client.post("/_inspect/refuse-next").status_code == 404
    assert client.post("/charges", CHARGE).status_code == 201  # nothing was told to refuse


def test_the_ledger_rows_as_served(serve):
    client = serve("inventory")
    client.post("/reservations", {"order_id": "o-1", "sku": "sku-1", "qty": 2}, key="o-1:reserve")
    client.post("/releases", {"reserve_key": "o-1:reserve"})
    rows = client.ledger()
    assert [list(row) for row in rows] == [ROW_FIELDS, ROW_FIELDS]
    assert [(r["participant"], r["seq"], r["action"], r["amount"], r["ref"]) for r in rows] == [
        ("inventory", 0, "reserve", 2, "res-1"),
        ("inventory", 1, "release", 2, "res-1"),
    ]


# --- fuzzing: no body and no header makes a service fail ----------------------------------------

ROUTES = [(name, op.path, op.request.model_fields) for name, s in SERVICES.items() for op in s.operations]
CONTRACT = {name: yaml.safe_load((CONTRACTS / f"{name}.yaml").read_text()) for name in SERVICES}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8,
)
# Few distinct strings, so that requests repeat keys, hit tombstones and reuse keys across operations.
words = st.sampled_from(["o-1", "k-1", "k-2", "sku-1", "res-1", ""])
keys = st.sampled_from(["k-1", "k-2", "o-1"])


def any_value(annotation):
    return st.one_of(st.integers(-1, 12) if annotation is int else words, json_values)


@st.composite
def garbage(draw):
    """Anything at all to any route: odd bodies, odd types, odd headers."""
    service, path, fields = draw(st.sampled_from(ROUTES))
    shaped = st.fixed_dictionaries({f: any_value(info.annotation) for f, info in fields.items()},
                                   optional={"extra": json_values})
    body = draw(st.one_of(shaped, json_values, st.binary(max_size=40)))
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"content-type": draw(st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded"]))}
    key = draw(st.one_of(st.none(), keys, st.sampled_from(["", "k" * 200, "k" * 201]),
                         st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=8)))
    if key is not None:
        headers[KEY] = key
    return service, path, content, headers


def well_formed(field_name, annotation):
    if annotation is int:
        return st.integers(1, 12)
    return st.sampled_from(["sku-1", "sku-2"]) if field_name == "sku" else words


@st.composite
def sessions(draw):
    """A service and a sequence of well-formed requests to it: new ones, exact repeats of earlier
    ones (a duplicate delivery), and hints to refuse the next."""
    service = draw(st.sampled_from(list(SERVICES)))
    ops = SERVICES[service].operations
    steps: list[tuple[str, bytes, str | None]] = []
    for _ in range(draw(st.integers(1, 12))):
        kind = draw(st.sampled_from(["new", "repeat", "refuse"] if steps else ["new", "refuse"]))
        if kind == "repeat":
            steps.append(draw(st.sampled_from(steps)))
        elif kind == "refuse":
            steps.append(("/_inspect/refuse-next", b"", None))
        else:
            op = draw(st.sampled_from(ops))
            body = {f: draw(well_formed(f, info.annotation)) for f, info in op.request.model_fields.items()}
            steps.append((op.path, json.dumps(body).encode(), draw(st.none() | keys)))
    return service, steps


@functools.cache
def validator(service: str, path: str, status: int) -> jsonschema.Draft202012Validator | None:
    """The contract's schema for that reply, or None if the contract does not document it."""
    doc = CONTRACT[service]
    documented = doc["paths"][path]["post"]["responses"].get(str(status))
    if documented is None:
        return None
    schema = documented["content"]["application/json"]["schema"]
    return jsonschema.Draft202012Validator({**schema, "components": doc["components"]})


def conforms(service: str, path: str, response: httpx.Response) -> None:
    """The response is one the contract documents, with a body its schema allows."""
    if path.startswith("/_inspect/"):
        assert response.status_code == 204
        return
    check = validator(service, path, response.status_code)
    assert check is not None, f"undocumented {response.status_code} from {path}: {response.text}"
    check.validate(response.json())
    assert response.headers.get(REPLAYED, "true") == "true"


def test_random_requests_never_make_a_service_fail(serve):
    clients = {name: serve(name) for name in SERVICES}

    @settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
    @given(garbage())
    def check(request):
        service, path, content, headers = request
        response = clients[service].request("POST", path, content=content, headers=headers)
        assert response.status_code < 500, response.text
        conforms(service, path, response)

    check()


def test_well_formed_sessions_keep_the_idempotency_promise(runner):
    """Whatever well-formed requests a service gets, in whatever order: every reply is documented,
    a keyed request seen before gets the first reply again (marked replayed), and a key reused for
    another request is rejected without effect."""

    @settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
    @given(sessions())
    def check(session):
        service, steps = session
        client = Client(runner, create_app(service, inspect=True), service)
        ledger = client.app.state.participant.ledger
        first: dict[str, tuple[str, bytes, int, Any]] = {}
        try:
            for path, content, key in steps:
                headers = JSON if key is None else {**JSON, KEY: key}
                effects = len(ledger.rows)
                response = client.request("POST", path, content=content, headers=headers)
                conforms(service, path, response)
                if key is None or path.startswith("/_inspect/"):
                    continue
                replayed = response.headers.get(REPLAYED) == "true"
                if key not in first:
                    assert not replayed
                    first[key] = (path, content, response.status_code, response.json())
                    continue
                if first[key][:2] == (path, content):
                    assert replayed
                    assert (response.status_code, response.json()) == first[key][2:]
                else:
                    assert not replayed
                    assert response.json()["reason"] == f"idempotency key {key!r} was used for a different request"
                assert len(ledger.rows) == effects
        finally:
            runner.run(client.http.aclose())

    check()


@pytest.mark.parametrize("op", OPS, ids=str)
def test_the_replies_conform_to_the_contract(serve, op):
    client = prepared(serve, op)
    for response in [client.post(op.path, op.body, key="k"), client.post(op.path, op.body, key="k"),
                     client.post(op.path, op.other, key="k"), client.post(op.path, {})]:
        conforms(op.service, op.path, response)


# --- state: one request at a time, and kept across restarts --------------------------------------


def test_concurrent_repeats_take_effect_once(serve, runner):
    client = serve()

    async def burst():
        return await asyncio.gather(*(client.http.post("/charges", json=CHARGE, headers={KEY: "k-1"}) for _ in range(20)))

    replies = runner.run(burst())
    assert {(r.status_code, r.json()["charge_id"]) for r in replies} == {(201, "ch-1")}
    assert sum(REPLAYED not in r.headers for r in replies) == 1
    assert client.actions() == ["charge"]


def test_a_restarted_service_keeps_its_state(serve, tmp_path):
    store = tmp_path / "payment.sqlite"
    first = serve(store_path=store)
    charged = first.post("/charges", CHARGE, key="K")
    assert (charged.status_code, charged.json()) == (201, {"status": "ok", "charge_id": "ch-1"})
    assert first.post("/refunds", {"charge_key": "early"}, key="R-early").status_code == 200  # a tombstone
    first.refuse_next()

    second = serve(store_path=store)
    again = second.post("/charges", CHARGE, key="K")
    assert (again.status_code, again.json(), again.headers[REPLAYED]) == (201, charged.json(), "true")
    assert second.actions() == ["charge"]
    assert second.post("/charges", CHARGE, key="K2").status_code == 402  # the refusal it was told of
    assert second.post("/charges", CHARGE, key="early").json()["reason"] == "cancelled: refunded before it arrived"
    assert second.post("/charges", CHARGE, key="K3").json() == {"status": "ok", "charge_id": "ch-2"}  # ids go on
    with closing(sqlite3.connect(store)) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)

    third = serve(store_path=store)
    assert third.actions() == ["charge", "charge"]
    assert third.ledger() == second.ledger()


def break_store(path: Path) -> None:
    """From now on every save to the SQLite store at ``path`` fails, as on a full disk."""
    with closing(sqlite3.connect(path)) as db:
        for event in ("INSERT", "UPDATE"):
            db.execute(
                f"CREATE TRIGGER fail_{event.lower()} BEFORE {event} ON participant_state "
                "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
            )
        db.commit()


def test_a_request_whose_state_cannot_be_saved_has_no_effect(serve, tmp_path):
    client = serve(store_path=tmp_path / "payment.sqlite")
    break_store(tmp_path / "payment.sqlite")
    failed = client.post("/charges", CHARGE, key="K")
    assert failed.status_code == 503
    assert "could not save" in failed.json()["detail"]
    assert "database or disk is full" in failed.json()["detail"]
    participant = client.app.state.participant
    assert (participant.charges, participant._replies, client.ledger()) == ({}, {}, [])


def test_a_store_belongs_to_one_participant_class(serve, tmp_path):
    store = tmp_path / "payment.sqlite"
    serve(store_path=store).post("/charges", CHARGE, key="K")
    with pytest.raises(StoreError, match="NonIdempotentRefund"):
        create_app("payment", participant=NonIdempotentRefund(), store_path=store)
    # Each service has its own row: another service starts fresh on the same file.
    assert serve("inventory", store_path=store).ledger() == []


def test_state_the_store_cannot_hold_is_refused_at_start(tmp_path):
    payment = Payment()
    payment.client = object()
    with pytest.raises(TypeError, match=r"Payment\.client: a builtins\.object"):
        create_app("payment", participant=payment, store_path=tmp_path / "p.sqlite")
    create_app("payment", participant=payment)  # memory only: nothing to store


def test_the_stored_form_is_exact(serve):
    client = serve("inventory")
    client.post("/reservations", {"order_id": "o-1", "sku": "sku-1", "qty": 2}, key="o-1:reserve")
    client.post("/releases", {"reserve_key": "o-1:reserve"}, key="o-1:release")
    client.post("/releases", {"reserve_key": "o-2:reserve"}, key="o-2:release")  # a tombstone (a set)
    inventory = client.app.state.participant
    inventory.odd = {"__tuple__": [1]}, {1: frozenset({2.5, "x"}), (1, None): [True]}
    text = dump_state(inventory)
    copy = Inventory()
    restore_state(copy, text)
    assert dump_state(copy) == text
    assert {k: v for k, v in vars(copy).items() if k != "ledger"} == {
        k: v for k, v in vars(inventory).items() if k != "ledger"
    }
    assert copy.ledger.rows == inventory.ledger.rows
    assert type(copy._replies["o-1:reserve"][0]) is tuple
    assert copy.odd == inventory.odd


# --- the broken participants, served the same way -------------------------------------------------


def test_non_idempotent_refund_refunds_twice_over_http(serve):
    client = serve(participant=NonIdempotentRefund())
    assert client.post("/charges", CHARGE, key="o-1:charge").status_code == 201
    first = client.post("/refunds", {"charge_key": "o-1:charge"}, key="o-1:refund")
    second = client.post("/refunds", {"charge_key": "o-1:charge"}, key="o-1:refund")
    assert first.status_code == second.status_code == 200
    assert REPLAYED not in second.headers
    assert client.actions() == ["charge", "refund", "refund"]
    assert isinstance(client.app.state.participant, NonIdempotentRefund)


def test_refund_forgets_charge_charges_again_over_http(serve):
    client = serve(participant=RefundForgetsCharge())
    assert client.post("/charges", CHARGE, key="o-1:charge").status_code == 201
    assert client.post("/refunds", {"charge_key": "o-1:charge"}, key="o-1:refund").status_code == 200
    late = client.post("/charges", CHARGE, key="o-1:charge")  # a late duplicate of the charge
    assert (late.status_code, late.json()) == (201, {"status": "ok", "charge_id": "ch-2"})
    assert REPLAYED not in late.headers
    assert client.actions() == ["charge", "refund", "charge"]


# --- the factory ---------------------------------------------------------------------------------


def test_create_app_refuses_what_it_cannot_serve():
    with pytest.raises(ValueError, match=r"'billing'.*inventory, payment, shipping, notification"):
        create_app("billing")
    with pytest.raises(TypeError, match="cannot serve payment: it has no charge, refund"):
        create_app("payment", participant=Inventory())


def test_the_routes_fit_an_http_participant():
    assert SERVICES["payment"].routes == {"charge": "POST /charges", "refund": "POST /refunds"}
    participant = HttpParticipant(httpx.ASGITransport(app=create_app("payment")), routes=SERVICES["payment"].routes)
    assert participant.operation_for(httpx.Request("POST", "http://participant/refunds")) == "refund"


def test_serve_participant_puts_a_fresh_participant_behind_an_app(serve, tmp_path):
    client = serve()
    assert client.post("/charges", CHARGE, key="K").status_code == 201
    old, fresh = client.app.state.participant, NonIdempotentRefund()
    serve_participant(client.app, fresh)
    assert client.app.state.participant is fresh
    assert client.ledger() == []
    again = client.post("/charges", CHARGE, key="K")
    assert (again.status_code, REPLAYED in again.headers) == (201, False)  # a fresh dedupe store
    assert (len(old.ledger), len(fresh.ledger)) == (1, 1)
    with pytest.raises(TypeError, match="cannot serve payment"):
        serve_participant(client.app, Inventory())
    with pytest.raises(ValueError, match="keeps its participant in"):
        serve_participant(serve(store_path=tmp_path / "p.sqlite").app, Payment())
