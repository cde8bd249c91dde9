"""Runtimes: where participants live. ``sim`` (Python objects, the default), ``asgi`` (HTTP apps
in this process, through httpx). The ``process`` and ``container`` runtimes come next."""

from __future__ import annotations

from typing import Any

RUNTIMES = ("sim", "asgi")


def reference_variants(runtime: str = "sim") -> tuple[Any, ...]:
    """The reference variants, each as a saga whose participants live in ``runtime``."""
    from dataclasses import replace

    from .._errors import OptionError
    from ..reference import variants

    if runtime not in RUNTIMES:
        raise OptionError(f"runtime {runtime!r} is not available; choose from: {', '.join(RUNTIMES)}")
    found = variants()
    if runtime == "sim":
        return found
    try:
        import fastapi  # noqa: F401
    except ImportError:
        raise OptionError(
            "runtime 'asgi' serves the participants with FastAPI, which is not installed: "
            "pip install 'saga-verify[http]'"
        ) from None
    from . import asgi_reference

    return tuple(replace(v, saga=getattr(asgi_reference, v.name)) for v in found)


__all__ = ["RUNTIMES", "reference_variants"]
