"""Consumer-driven contracts (Pact) for sagas: the consumer writes what it expects of each
participant, and every participant is verified against it.

- `consumer_pact` gives a consumer test a V4 ``pact.Pact`` and merges its interactions into
  ``<pact_dir>/<consumer>-<provider>.json`` safely, also under pytest-xdist: one private file per
  writer, merged under a file lock and replaced atomically, sorted by description, with a clear
  error for two different interactions that share a description (pact-python silently keeps one).
- `verify_provider` replays the pacts against an ASGI app (served on 127.0.0.1) or a URL. It checks
  that every provider state has a handler before anything runs, never lets pact retry a failing
  state handler for minutes, reads the results (pending interactions too) and raises
  `ProviderVerificationError` naming each failing interaction. Message pacts (the events a
  provider publishes, written with ``pact.upon_receiving(description, "Async")``) are verified in
  the same run: ``messages=`` makes each described message by driving the provider for real.

The pacts of the reference system live in ``contracts/pacts/``: ``order-<service>.json`` (the
order service's HTTP client for the four participants, ``saga_verify.reference._order_client``)
and ``audit-<service>.json`` (the events the audit, ``saga_verify.reference._audit``, reads); the
choreographed saga's services, which have no HTTP API, in ``choreography/<consumer>-<provider>.json``
(verified with ``app_or_url=None``). pact-python is imported only when a pact is written or
verified; telemetry is always off (``PACT_DO_NOT_TRACK=true``).

OpenAPI conformance and the Idempotency-Key contract:

- `check_conformance` runs Schemathesis (every check, negative data and the stateful phase that
  follows the OpenAPI links) against an ASGI app in this process or a URL, and returns a
  `ConformanceResult` whose failures name the check, the operation and a curl reproduce line;
  it raises `ConformanceError` when a check fails, `SpecError` for a missing or malformed
  document and `ProviderUnreachableError` for a URL where nothing answers.
- `check_idempotency` checks any provider's Idempotency-Key promises (a repeat replays, a reused
  key with another body is rejected, a compensation twice is harmless, no key is fine) on the
  `IdempotentOperation`s it is given, and raises `IdempotencyError` listing what broke.

Schemathesis is imported only when a conformance run starts.

Deployment gates:

- `ContractStore` keeps pacts, verification results, OpenAPI documents and event schemas per
  participant version and branch, and environments with what is deployed there, in one SQLite
  file (``.saga-verify/contracts.db`` by default); every change is one transaction.
- `can_i_deploy` answers whether a version may go to an environment, as a `Decision` naming each
  blocking `Pair` (never verified, failed, pending); `select_pacts` picks what a provider verifies
  (consumer version selectors, pending and work-in-progress pacts).
- `serve_store` serves a store with the Pact Broker API the official clients use; `BrokerSource`
  and `PublishResults` make `verify_provider` take its pacts from there (or a Pact Broker) and
  publish the results; `PactBroker` runs the ``pact broker`` CLI against a real one.
- `diff_openapi` classifies the changes between two OpenAPI documents (`OpenApiDiff`, `Change`),
  naming the consumers each breaks; `check_event_schemas` checks event schema versions per
  producer-consumer edge (`EventCheck`, `Finding`).
"""

from __future__ import annotations

from ._broker_api import serve_store
from ._broker_client import BrokerError, PactBroker
from ._conformance import ConformanceError, ConformanceFailure, ConformanceResult, SpecError, check_conformance
from ._errors import (
    ContractError,
    PactConflictError,
    PactFileError,
    ProviderStateError,
    ProviderUnreachableError,
)
from ._event_compat import EventCheck, EventSchema, Finding, check_event_schemas, load_event_schema
from ._gate import Decision, Pair, can_i_deploy
from ._idempotency import (
    IDEMPOTENCY_CHECKS,
    IdempotencyError,
    IdempotencyFinding,
    IdempotencyResult,
    IdempotentOperation,
    check_idempotency,
)
from ._openapi_diff import Change, OpenApiDiff, diff_openapi
from ._pact_files import pact_path
from ._pact_verification import (
    BrokerSource,
    InteractionResult,
    MessageProducer,
    ProviderState,
    ProviderVerification,
    ProviderVerificationError,
    PublishResults,
    StateHandler,
    serve_asgi,
    verify_provider,
)
from ._pact_writing import consumer_pact, write_pact
from ._records import Deployment, Environment, Pact, StoreError, UnknownError, Verification, Version
from ._selection import VerifiablePact, select_pacts
from ._store import ContractStore

__all__ = [
    "IDEMPOTENCY_CHECKS",
    "BrokerError",
    "BrokerSource",
    "Change",
    "ConformanceError",
    "ConformanceFailure",
    "ConformanceResult",
    "ContractError",
    "ContractStore",
    "Decision",
    "Deployment",
    "Environment",
    "EventCheck",
    "EventSchema",
    "Finding",
    "IdempotencyError",
    "IdempotencyFinding",
    "IdempotencyResult",
    "IdempotentOperation",
    "InteractionResult",
    "MessageProducer",
    "OpenApiDiff",
    "Pact",
    "PactBroker",
    "PactConflictError",
    "PactFileError",
    "Pair",
    "ProviderState",
    "ProviderStateError",
    "ProviderUnreachableError",
    "ProviderVerification",
    "ProviderVerificationError",
    "PublishResults",
    "SpecError",
    "StateHandler",
    "StoreError",
    "UnknownError",
    "VerifiablePact",
    "Verification",
    "Version",
    "can_i_deploy",
    "check_conformance",
    "check_event_schemas",
    "check_idempotency",
    "consumer_pact",
    "diff_openapi",
    "load_event_schema",
    "pact_path",
    "select_pacts",
    "serve_asgi",
    "serve_store",
    "verify_provider",
    "write_pact",
]
