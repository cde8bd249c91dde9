"""Serve one reference service with uvicorn, as the ``process`` runtime starts it::

    python -m saga_verify.reference.services --service payment \
        --participant saga_verify.reference._broken:NonIdempotentRefund --port 0 --inspect

It listens on ``--host`` (127.0.0.1) and ``--port`` (0: a free one), then prints one line,
``listening on http://HOST:PORT``, to standard output and serves until SIGTERM or SIGINT (or until
the process ``--parent-pid`` names is gone). Everything else it says goes to standard error.
Exit status 2: the arguments are wrong, the participant cannot be built or served, or the port
cannot be listened on; the error says which.

With ``--supervise`` it listens, then serves from a child process, and starts a new child from
the store whenever one is killed with SIGKILL (the crash fault in the ``container`` runtime:
``POST /_inspect/crash``). The listening socket stays open in the supervisor, so callers queue
in its backlog rather than being refused while the child restarts, and a restart costs a fork,
not a container's start. SIGTERM and SIGINT go on to the child, and end both.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import select
import signal
import socket
import sqlite3
import sys
import threading
import time
from typing import Any

from saga_verify.errors import RecoveryError

from ._app import SERVICES, create_app
from ._store import StoreError

READY_LINE = "listening on"


class ServiceError(Exception):
    """The service cannot be served as asked."""


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (0..65535; 0 picks a free one)")
    return port


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value < 3600:
        raise argparse.ArgumentTypeError(f"{value:g} seconds is out of range (more than 0, less than 3600)")
    return value


def _upstream(text: str) -> tuple[str, str]:
    name, equals, url = text.partition("=")
    if not equals or not name or not url:
        raise argparse.ArgumentTypeError(f"{text!r}: write it as SERVICE=URL (payment=http://127.0.0.1:8001)")
    return name, url


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m saga_verify.reference.services",
        description="Serve one saga-verify reference service over HTTP (uvicorn).",
    )
    p.add_argument("--service", required=True, choices=(*SERVICES, "order"), help="which service")
    p.add_argument(
        "--participant",
        metavar="MODULE:CLASS",
        help="the participant class to serve, built with no arguments (default: the service's correct one)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=_port, default=0, help="port to listen on (default 0: a free one)")
    p.add_argument(
        "--inspect",
        action="store_true",
        help="add the inspection endpoints /_inspect/ledger, /_inspect/refuse-next and /_inspect/reset",
    )
    p.add_argument(
        "--store",
        metavar="FILE",
        help="keep the service's state and outbox in this SQLite file, so a restart forgets nothing (default: memory only)",
    )
    p.add_argument(
        "--store-sync",
        choices=("full", "normal"),
        default="full",
        help="full (default): a reply leaves once its state is on disk; normal: once it would survive a killed process (no fsync)",
    )
    p.add_argument(
        "--upstream",
        action="append",
        default=[],
        type=_upstream,
        metavar="SERVICE=URL",
        help="order service only: where a participant service is (give inventory, payment, shipping and notification)",
    )
    p.add_argument(
        "--upstream-timeout",
        type=_seconds,
        default=5.0,
        metavar="SECONDS",
        help="order service only: how long it waits for a participant's answer (default 5)",
    )
    p.add_argument(
        "--saga-log",
        metavar="FILE",
        help="order service with a durable saga only: keep the saga's write-ahead log in this SQLite file "
        "(default: memory only); with --store, a service started again finishes the orders it had not answered",
    )
    p.add_argument(
        "--supervise",
        action="store_true",
        help="serve from a child process, started again from the store whenever it is killed (SIGKILL)",
    )
    p.add_argument("--parent-pid", type=int, metavar="PID", help="stop when the process PID is gone")
    p.add_argument("--log-level", default="warning", choices=("critical", "error", "warning", "info", "debug"))
    return p


def load_participant(path: str) -> Any:
    """The class ``module:Class`` names (``module:Outer.Inner`` works too)."""
    module_name, colon, qualname = path.partition(":")
    if not colon or not module_name or not qualname:
        raise ServiceError(f"--participant {path!r}: write it as module:Class")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ServiceError(f"--participant {path!r}: module {module_name!r} does not import ({type(exc).__name__}: {exc})") from None
    value: Any = module
    for part in qualname.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise ServiceError(f"--participant {path!r}: module {module_name!r} has no {qualname!r}") from None
    if not isinstance(value, type):
        raise ServiceError(f"--participant {path!r} is a {type(value).__name__}, not a class")
    return value


def build(
    service: str,
    participant_path: str | None,
    inspect: bool,
    store: str | None = None,
    upstreams: list[tuple[str, str]] | None = None,
    store_sync: str = "full",
    upstream_timeout: float = 5.0,
    saga_log: str | None = None,
) -> Any:
    """The app that serves ``service`` with a fresh participant of the class named (for the
    order service: the saga class named)."""
    if service != "order" and upstreams:
        raise ServiceError(f"--upstream is for the order service; the {service} service calls no other")
    if service != "order" and saga_log is not None:
        raise ServiceError(f"--saga-log is for the order service; the {service} service runs no saga")
    cls = None if participant_path is None else load_participant(participant_path)
    try:
        if service == "order":
            from ._order_app import create_order_app

            named = dict(upstreams or ())
            if len(named) != len(upstreams or ()):
                raise ServiceError("--upstream names a service twice")
            extra = {} if cls is None else {"saga_class": cls}
            return create_order_app(
                named, store_path=store, inspect=inspect, store_sync=store_sync, timeout=upstream_timeout, saga_log=saga_log, **extra
            )
        participant = None
        if cls is not None:
            try:
                participant = cls()
            except Exception as exc:
                raise ServiceError(f"--participant {participant_path!r}: {cls.__name__}() raised {type(exc).__name__}: {exc}") from None
        return create_app(service, participant=participant, inspect=inspect, store_path=store, store_sync=store_sync)
    except (TypeError, ValueError, StoreError, RecoveryError) as exc:
        raise ServiceError(str(exc)) from None
    except sqlite3.Error as exc:
        raise ServiceError(f"--store {store!r}: {exc}") from None


def listen(host: str, port: int) -> socket.socket:
    """A listening socket (before uvicorn runs, so early requests queue instead of being refused)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Loopback HTTP stalls on Nagle plus delayed ACKs; accepted connections inherit this
        # (asyncio sets it on each accepted connection as well).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ServiceError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def _watch_parent(parent: int, server: Any) -> None:
    """Stop when the parent is gone (killed without the chance to stop its services)."""
    _wait_until_gone(parent)
    server.should_exit = True
    # Its deadline to stop: once it has, the process ends and this daemon thread with it.
    time.sleep(5.0)
    os._exit(0)  # the server did not stop in time


def _wait_until_gone(pid: int) -> None:
    """Return once the process ``pid`` has ended: woken by the kernel where it can tell (a pidfd,
    on Linux), else by looking twice a second whether this process's parent is still ``pid``."""
    try:
        handle = os.pidfd_open(pid)
    except ProcessLookupError:
        return  # gone already
    except (AttributeError, OSError):  # no pidfds here
        while os.getppid() == pid:
            time.sleep(0.5)
        return
    try:
        select.select([handle], [], [])  # readable once the process has ended
    finally:
        os.close(handle)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    label = f"saga-verify {args.service} service"
    if args.supervise:
        return _supervise(args, label)
    return _serve(args, label)


def _serve(args: argparse.Namespace, label: str, sock: socket.socket | None = None) -> int:
    """Build the app and serve it (on ``sock`` when the supervisor listens already) until told to stop."""
    try:
        app = build(
            args.service, args.participant, args.inspect, args.store, args.upstream, args.store_sync, args.upstream_timeout,
            args.saga_log,
        )
        if sock is None:
            sock = listen(args.host, args.port)
    except ServiceError as exc:
        print(f"{label}: error: {exc}", file=sys.stderr, flush=True)
        return 2

    import uvicorn

    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(
        app,
        log_level=args.log_level,
        access_log=False,
        lifespan="off",
        # The harness keeps its connections between executions; closing them while idle would
        # race with its next request.
        timeout_keep_alive=3600,
        timeout_graceful_shutdown=2,
        # httptools when it is installed (the http extra installs it), else h11: the harness
        # waits for every answer, and httptools takes about a quarter off the service's time
        # per request.
        http="auto",
    )
    server = uvicorn.Server(config)
    if args.parent_pid is not None:
        threading.Thread(target=_watch_parent, args=(args.parent_pid, server), daemon=True).start()
    print(f"{READY_LINE} http://{host}:{port}", flush=True)
    # From here on standard output is standard error: the one line above is all the parent reads.
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    server.run(sockets=[sock])
    sock.close()
    return 0


def _supervise(args: argparse.Namespace, label: str) -> int:
    """Listen, then serve from a child, forked again whenever one is killed (see the module)."""
    try:
        if args.participant is not None:
            load_participant(args.participant)  # a wrong name fails here, once, not in every child
        sock = listen(args.host, args.port)
    except ServiceError as exc:
        print(f"{label}: error: {exc}", file=sys.stderr, flush=True)
        return 2
    # Imported here, before any fork, so that a child starts in milliseconds. Nothing that holds
    # state is made here: each child opens the store and builds its participant afresh.
    import uvicorn  # noqa: F401

    from . import _order_app  # noqa: F401

    child = 0
    stopping = False

    def pass_on(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        if child:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    signal.signal(signal.SIGTERM, pass_on)
    signal.signal(signal.SIGINT, pass_on)
    while True:
        child = os.fork()
        if child == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            code = 1
            try:
                code = _serve(args, label, sock)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(child, 0)
        if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL and not stopping:
            print(f"{label}: killed; starting it again from its store", file=sys.stderr, flush=True)
            continue
        code = os.waitstatus_to_exitcode(status)
        return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
