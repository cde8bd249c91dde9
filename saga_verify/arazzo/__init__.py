"""Arazzo workflows as sagas: ``load("order.arazzo.yaml#placeOrder")`` reads an Arazzo 1.0 document
and the OpenAPI documents it references, runs its static checks and gives the `saga_verify.Saga`
it describes; ``check`` runs the static checks alone.

A workflow reads as a saga by these conventions: its forward steps are those reached from the
first step through successes; a step reached only through an ``onFailure`` goto compensates, and
undoes the forward step that calls the same service (or the one its ``x-compensates`` names); a
failure action whose criteria hold only for a 4xx reply is a refusal (the step did not take
effect). Requests go through the harness's httpx clients, so every fault and runtime applies.
"""

from ._checks import Finding
from ._document import ArazzoError
from ._load import WorkflowCheckError, check, load

__all__ = ["ArazzoError", "Finding", "WorkflowCheckError", "check", "load"]
