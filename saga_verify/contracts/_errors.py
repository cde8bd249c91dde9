"""The errors the contract layer raises on purpose, all under `ContractError` (itself under
saga_verify's root error)."""

from __future__ import annotations

from ..errors import SagaVerifyError


class ContractError(SagaVerifyError):
    """Root of the errors the contract layer raises on purpose."""


class PactFileError(ContractError, ValueError):
    """A pact file (or folder of pacts) is missing, malformed, or holds no pact for the provider."""


class PactConflictError(ContractError):
    """Two interactions of one pact share a description but differ: pact-python would silently
    keep only the last one."""


class ProviderStateError(ContractError):
    """A pact needs a provider state that has no handler."""


class ProviderUnreachableError(ContractError):
    """The provider under verification does not answer."""


class SpecError(ContractError, ValueError):
    """An OpenAPI document or JSON Schema is missing, unreadable, or not what it should be; the
    message names it."""
