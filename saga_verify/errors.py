"""The exceptions saga-verify raises on purpose, all under one root."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "NondeterminismError",
    "OptionError",
    "PlanError",
    "RecoveryError",
    "SagaCrashedError",
    "SagaDefinitionError",
    "SagaStuckError",
    "SagaVerifyError",
    "SagaViolationError",
    "SagaViolationGroup",
]


class SagaVerifyError(Exception):
    """Root of every error saga-verify raises on purpose; catch this to catch them all."""


class PlanError(SagaVerifyError, ValueError):
    """A fault plan (a file, JSON text or value) is malformed or names something the saga lacks."""


class SagaDefinitionError(SagaVerifyError, TypeError):
    """A `Saga` or `Step` is set up wrongly: unknown participant, reserved name, bad outcome."""


class RecoveryError(SagaVerifyError):
    """A saga's durable store or recovery cannot be used after a coordinator crash: the store is
    corrupt, foreign or from a newer schema, or ``recover`` raised. Never met by starting afresh,
    which could run a charge again."""


class SagaCrashedError(SagaVerifyError):
    """The saga raised with no fault injected: the saga or its set-up is broken, not the network."""


class SagaStuckError(SagaVerifyError):
    """An execution did not return within the saga's real-time limit: the saga waits on something
    the harness does not own (a thread, a lock, real I/O, a busy loop). The message says where."""


class NondeterminismError(SagaVerifyError):
    """The same plan gave two different traces: the saga reads something the harness does not own."""


class OptionError(SagaVerifyError, ValueError):
    """An option (CLI flag, pytest option, keyword argument) has a value that cannot be used."""


class SagaViolationError(SagaVerifyError, AssertionError):
    """An invariant broke under some fault plan; the message is the full report."""

    def __init__(self, report: str, result: object) -> None:
        super().__init__(report)
        #: The `ExplorationResult` that holds the failures, for programmatic use.
        self.result = result


class SagaViolationGroup(SagaViolationError, ExceptionGroup):
    """Several distinct invariants broke, each under its own minimal plan: one
    `SagaViolationError` per failure, raised together (as Hypothesis reports several bugs).
    ``except SagaViolationError`` catches it too; ``result`` holds every failure."""

    def __new__(cls, message: str, errors: Sequence[SagaViolationError], result: object) -> SagaViolationGroup:
        return ExceptionGroup.__new__(cls, message, errors)

    def __init__(self, message: str, errors: Sequence[SagaViolationError], result: object) -> None:
        self.result = result

    def derive(self, excs: Sequence[BaseException]) -> SagaViolationGroup:  # type: ignore[override]
        return SagaViolationGroup(self.message, [e for e in excs if isinstance(e, SagaViolationError)], self.result)
