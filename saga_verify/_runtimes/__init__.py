"""Runtimes: where participants live. ``sim`` (Python objects, the default), ``asgi`` (HTTP apps
in this process, through httpx), ``process`` (each service a uvicorn process on 127.0.0.1, over
real loopback HTTP), ``container`` (each service a container, testcontainers on a private
network, published on 127.0.0.1; needs a Docker engine)."""

from __future__ import annotations

from typing import Any

RUNTIMES = ("sim", "asgi", "process", "container")


def reference_variants(runtime: str = "sim") -> tuple[Any, ...]:
    """The reference variants, each as a saga whose participants live in ``runtime``."""
    from dataclasses import replace

    from ..errors import OptionError
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
            f"runtime {runtime!r} serves the participants with FastAPI, which is not installed: "
            "pip install 'saga-verify[http]'"
        ) from None
    if runtime == "container":
        try:
            import testcontainers  # noqa: F401
        except ImportError:
            raise OptionError(
                "runtime 'container' starts the services with testcontainers, which is not installed: "
                "pip install 'saga-verify[containers]'"
            ) from None
        from ..containers import engine_problem

        problem = engine_problem()
        if problem is not None:
            raise OptionError(f"runtime 'container' needs a Docker engine: {problem}")
    if runtime in ("process", "container"):
        try:
            import uvicorn  # noqa: F401
        except ImportError:
            raise OptionError(
                "runtime 'process' runs the participants with uvicorn, which is not installed: "
                "pip install 'saga-verify[http]'"
            ) from None
    import importlib

    home = importlib.import_module(f"{__name__}.{runtime}_reference")
    return tuple(replace(v, saga=getattr(home, v.name)) for v in found)


__all__ = ["RUNTIMES", "reference_variants"]


def saga_by_name(home: dict[str, Any], module: str, name: str, build: Any) -> Any:
    """The reference saga ``name`` built by ``build(variant, home=module)``, kept in ``home`` (a
    module's globals) so that ``module:name`` imports it and plan files can name it."""
    from ..reference import variants

    for variant in variants():
        if variant.name == name:
            saga = build(variant, home=module)
            home[name] = saga
            return saga
    raise AttributeError(f"module {module!r} has no reference saga {name!r}")
