"""Serve an ASGI app factory over HTTP with `EffectsMiddleware` mounted, as the ``process`` runtime
runs ``Service(app="module:factory")`` (and as a container of the service can)::

    python -m saga_verify.systems shop.payment:create_app --host 127.0.0.1 --port 8001

An app that mounts the middleware itself is served as it is; any other is wrapped with
``EffectsMiddleware(factory=...)``, so that every execution gets a new app. Exit status 2: the
factory does not import or the port cannot be listened on; the error says which.
"""

from __future__ import annotations

import argparse
import importlib
import socket
import sys
from typing import Any

from ._middleware import EffectsMiddleware


def _factory(text: str) -> Any:
    module_name, colon, attr = text.partition(":")
    if not colon or not module_name or not attr:
        raise argparse.ArgumentTypeError(f"{text!r}: write the app factory as module:function")
    sys.path.insert(0, "")  # the factory's module may live in the folder the command runs in
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: module {module_name!r} does not import ({type(exc).__name__}: {exc})") from None
    value: Any = module
    for part in attr.split("."):
        value = getattr(value, part, None)
        if value is None:
            raise argparse.ArgumentTypeError(f"{text!r}: module {module_name!r} has no {attr!r}")
    if not callable(value):
        raise argparse.ArgumentTypeError(f"{text!r} is a {type(value).__name__}, not an app factory")
    return value


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (0..65535)")
    return port


def mounted(factory: Any) -> Any:
    """The app to serve: the factory's own when it mounts the middleware, else one wrapped in it."""
    app = factory()
    if isinstance(app, EffectsMiddleware):
        return app
    first = [app]

    def build() -> Any:
        # The app built to look at is the first execution's: nothing has used it yet.
        return first.pop() if first else factory()

    return EffectsMiddleware(factory=build)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m saga_verify.systems", description="Serve an app factory for saga-verify.")
    parser.add_argument("factory", type=_factory, help="the app factory, module:function")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=_port, default=8000)
    parser.add_argument("--log-level", default="warning", choices=("critical", "error", "warning", "info", "debug"))
    args = parser.parse_args(argv)
    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # loopback HTTP stalls on Nagle otherwise
        sock.bind((args.host, args.port))
        sock.listen(128)
    except OSError as exc:
        print(f"saga_verify.systems: error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    try:
        app = mounted(args.factory)
    except Exception as exc:
        print(f"saga_verify.systems: error: the app factory raised {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    import uvicorn

    config = uvicorn.Config(app, log_level=args.log_level, access_log=False, lifespan="off", timeout_keep_alive=3600)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
