"""The exceptions saga-verify raises on purpose, all under one root."""

from __future__ import annotations

__all__ = [
    "NondeterminismError",
    "OptionError",
    "PlanError",
    "SagaCrashedError",
    "SagaDefinitionError",
    "SagaVerifyError",
    "SagaViolationError",
]


class SagaVerifyError(Exception):
    """Root of every error saga-verify raises on purpose; catch this to catch them all."""


class PlanError(SagaVerifyError, ValueError):
    """A fault plan (a file, JSON text or value) is malformed or names something the saga lacks."""


class SagaDefinitionError(SagaVerifyError, TypeError):
    """A `Saga` or `Step` is set up wrongly: unknown participant, reserved name, bad outcome."""


class SagaCrashedError(SagaVerifyError):
    """The saga raised with no fault injected: the saga or its set-up is broken, not the network."""


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
