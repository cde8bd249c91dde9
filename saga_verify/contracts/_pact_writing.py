"""Consumer pacts written safely: nothing lost or silently replaced (one private file per writer,
merged under a file lock beside the pact), nothing written that no consumer code exercised, and nothing left
behind by a test that was renamed or deleted.

pact-python (4.x, FFI based) is imported only inside the functions that use it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import tempfile
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

from .._files import write_atomically
from .._testrun import TestRun, current, current_test
from ._errors import ContractError, PactConflictError, PactFileError
from ._pact_files import HTTP, MESSAGE, SYNC_MESSAGE, dump, interactions_of, load_pact, pact_path, pacts_in, read_pact
from ._pact_files import parse_pact as _parse_pact
from ._pact_files import telemetry_off as _telemetry_off

if TYPE_CHECKING:
    from pact import Pact
    from pact.error import InteractionVerificationError
    from pact.interaction import AsyncMessageInteraction, HttpInteraction, SyncMessageInteraction

#: Interactions written by one test run are checked against each other for conflicts; those left
#: in the file by an earlier run are simply replaced. pytest-xdist gives its workers one run id.
_PROCESS_RUN = f"process-{os.getpid()}-{uuid.uuid4().hex[:12]}"

#: What `pact.upon_receiving` calls each kind, and how consumer code exercises it.
_KINDS = {"HTTP": HTTP, "Async": MESSAGE, "Sync": SYNC_MESSAGE}
_HOW = {
    HTTP: "HTTP: serve it with pact.serve() and call it from the consumer's client",
    MESSAGE: "Async: hand it to the consumer's handler with pact.verify(handler, 'Async')",
    SYNC_MESSAGE: "Sync: hand it to the consumer's handler with pact.verify(handler, 'Sync')",
}


def _default_run_id() -> str:
    return os.environ.get("PYTEST_XDIST_TESTRUNUID") or _PROCESS_RUN


def _check_folder(pact_dir: str | os.PathLike[str]) -> Path:
    folder = Path(pact_dir)
    for place in (folder, *folder.parents):
        if place.exists() and not place.is_dir():
            raise PactFileError(f"the pact folder {folder} is a file" + ("" if place == folder else f" ({place} is)")
                                + ": give consumer_pact a folder")
    return folder


def _json_body(body: str | bytes | None, metadata: Mapping[str, object]) -> Any:
    """A message body as the consumer's handler reads it: JSON decoded into Python values, other
    content (text, binary) as pact gives it."""
    content_type = str(metadata.get("contentType") or metadata.get("content-type") or "")
    if body is None or (content_type and "json" not in content_type.lower()):
        return body
    try:
        return json.loads(str(body) if isinstance(body, str) else body)
    except ValueError:
        return body  # not JSON after all: the handler gets what pact gave


class _Exercised:
    """The interactions a consumer test declared, and those its code exercised."""

    def __init__(self) -> None:
        self.declared: dict[str, str] = {}
        self.exercised: set[str] = set()

    def of_kind(self, kind: str) -> set[str]:
        return {d for d, k in self.declared.items() if k == kind}

    def missing(self) -> list[tuple[str, str]]:
        return sorted((d, k) for d, k in self.declared.items() if d not in self.exercised)


class _ServedPact:
    """``pact.serve()`` as the consumer test uses it; a server that ends fully matched counts as
    exercising the HTTP interactions it served. Everything else is the real server's."""

    def __init__(self, server: Any, record: _Exercised) -> None:
        self._server = server
        self._record = record
        self._serving: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)

    def __enter__(self) -> Any:
        self._serving = self._record.of_kind(HTTP)
        return self._server.__enter__()

    def __exit__(self, *exc_info: Any) -> Any:
        try:
            matched = exc_info[0] is None and bool(self._server.matched)
        except RuntimeError:  # the server is not running
            matched = False
        outcome = self._server.__exit__(*exc_info)
        if matched:
            self._record.exercised |= self._serving
        return outcome


@functools.cache
def _checked_pact_class() -> type[Pact]:
    from pact import Pact

    class CheckedPact(Pact):
        """A Pact that refuses a second interaction with a description it already holds (pact-python
        would silently replace the first), names each interaction with the test that wrote it,
        notes which interactions consumer code exercised, and hands message handlers JSON bodies
        as Python values."""

        @property
        def _saga_verify_record(self) -> _Exercised:
            record: _Exercised = self.__dict__.setdefault("_saga_verify_exercised", _Exercised())
            return record

        @overload
        def upon_receiving(self, description: str, interaction: Literal["HTTP"] = ...) -> HttpInteraction: ...
        @overload
        def upon_receiving(self, description: str, interaction: Literal["Async"]) -> AsyncMessageInteraction: ...
        @overload
        def upon_receiving(self, description: str, interaction: Literal["Sync"]) -> SyncMessageInteraction: ...

        def upon_receiving(
            self, description: str, interaction: Literal["HTTP", "Sync", "Async"] = "HTTP"
        ) -> HttpInteraction | AsyncMessageInteraction | SyncMessageInteraction:
            record = self._saga_verify_record
            if description in record.declared:
                raise PactConflictError(
                    f"the pact {self.consumer}-{self.provider} already has an interaction {description!r}; "
                    "pact-python would silently replace it: give each interaction its own description"
                )
            made = super().upon_receiving(description, interaction)
            record.declared[description] = _KINDS.get(interaction, interaction)
            test = current_test()
            if test is not None:
                # A V4 comment: which test wrote it, so a run can tell what renamed tests left behind.
                made.test_name(test)
            return made

        def serve(self, *args: Any, **kwargs: Any) -> Any:
            return _ServedPact(super().serve(*args, **kwargs), self._saga_verify_record)

        def verify(  # type: ignore[override]
            self,
            handler: Callable[[Any, dict[str, object]], None],
            kind: Literal["Async", "Sync"],
            *,
            raises: bool = True,
        ) -> list[InteractionVerificationError] | None:
            record = self._saga_verify_record
            handing = record.of_kind(_KINDS.get(kind, kind))

            def decoded(body: str | bytes | None, metadata: dict[str, object]) -> None:
                handler(_json_body(body, metadata), metadata)

            errors = super().verify(decoded, kind, raises=raises)  # type: ignore[call-overload]
            if not errors:
                record.exercised |= handing
            return errors  # type: ignore[no-any-return]

    CheckedPact.__module__ = __name__
    return CheckedPact


@contextlib.contextmanager
def consumer_pact(
    consumer: str, provider: str, pact_dir: str | os.PathLike[str], *, run_id: str | None = None
) -> Iterator[Pact]:
    """A fresh V4 ``pact.Pact`` for one consumer test, merged into ``<pact_dir>/<consumer>-<provider>.json``
    when the block ends without an exception (a mock server with unmatched requests raises, so
    nothing is written then).

    Every interaction must be exercised by consumer code before the block ends: HTTP ones served
    by ``pact.serve()`` (a server that ends fully matched), messages handed to the consumer's
    handler by ``pact.verify(handler, kind)``. Otherwise `ContractError` names the ones that were
    not, and nothing is written. A message handler gets a JSON body as Python values (a dict).

    Safe under pytest-xdist and across processes: see `write_pact`. Declaring one description
    twice in the block raises `PactConflictError` at once. Under pytest each interaction records
    the test that wrote it (a V4 ``testname`` comment); when the session ends, interactions whose
    test is gone, or ran and no longer writes them, are removed (see `prune_stale_interactions`).
    """
    _telemetry_off()
    _check_folder(pact_dir)
    pact = _checked_pact_class()(consumer, provider)
    yield pact
    record: _Exercised = pact.__dict__.get("_saga_verify_exercised") or _Exercised()
    missing = record.missing()
    if missing:
        lines = [f"  {description!r} ({_HOW.get(kind, kind)})" for description, kind in missing]
        raise ContractError(
            f"the pact {consumer}-{provider} was not written: {len(missing)} interaction(s) were never exercised "
            "by consumer code, so the pact would promise what no test checked:\n" + "\n".join(lines)
        )
    write_pact(pact, pact_dir, run_id=run_id)


def write_pact(pact: Pact, pact_dir: str | os.PathLike[str], *, run_id: str | None = None) -> Path:
    """Merge ``pact``'s interactions into ``<pact_dir>/<consumer>-<provider>.json`` and return its path.

    pact-python's own writer loses interactions and fails when several processes write one file.
    Here the pact is first written to a private folder, then merged under an exclusive lock beside
    the pact (``.<consumer>-<provider>.json.lock``, with ``filelock``: every writer of the file
    finds the same lock, whatever its temporary folder) and replaced atomically (temporary file +
    ``os.replace``). Interactions are
    deduplicated by description and sorted by it; the JSON has sorted keys and an indent of 2, so
    a regenerated pact diffs cleanly.

    Within one run (``run_id``; by default the pytest-xdist run, else this process), the same
    description with different content raises `PactConflictError`. An interaction an earlier run
    left in the file is replaced by this run's version.
    """
    _telemetry_off()
    folder = _check_folder(pact_dir)
    with tempfile.TemporaryDirectory(prefix="saga-verify-pact-") as private:
        pact.write_file(private, overwrite=True)
        written = sorted(Path(private).glob("*.json"))
        if len(written) != 1:
            raise ContractError(f"pact-python wrote {len(written)} files for {pact.consumer}-{pact.provider}, not 1")
        fresh = load_pact(written[0])
    target = pact_path(folder, pact.consumer, pact.provider)
    _merge_into(target, fresh, run_id or _default_run_id())
    test = current_test()
    key = str(target.resolve())
    run = current()
    run.pact_dirs.add(target.parent.resolve())
    if test is not None:
        run.written.setdefault(test, set()).update((key, i["description"]) for i in fresh["interactions"])
    return target


def _digest(interaction: Mapping[str, Any]) -> str:
    # Which test wrote an interaction is not part of what it promises: two tests may write it alike.
    promise = {k: v for k, v in interaction.items() if k != "comments"}
    return hashlib.sha256(json.dumps(promise, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _lock_path(target: Path) -> Path:
    """The lock of the pact file ``target``, beside it: ``.<name>.lock``. It also holds the record
    of what the run that last wrote the pact wrote (see `_read_record`)."""
    return target.with_name(f".{target.name}.lock")


@contextlib.contextmanager
def _locked(target: Path) -> Iterator[Path]:
    """Hold the exclusive lock of ``target``; yield the lock file, which holds the run's record."""
    from filelock import FileLock

    path = _lock_path(target)
    # Kept on release: it holds the record, which the run's next writer reads.
    with FileLock(path, preserve_lock_file=True):
        yield path


def _merge_into(target: Path, fresh: dict[str, Any], run_id: str) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PactFileError(f"cannot make the pact folder {target.parent}: {exc}") from exc
    with _locked(target) as record_path:
        before = read_pact(target) if target.exists() else None
        existing = None if before is None else _parse_pact(before, target)
        if existing is not None:
            for side in ("consumer", "provider"):
                if existing[side].get("name") != fresh[side].get("name"):
                    raise PactFileError(
                        f"{target}: its {side} is {existing[side].get('name')!r}, not {fresh[side].get('name')!r}"
                    )
        record = _read_record(record_path, run_id)
        merged = {i["description"]: i for i in (existing or {}).get("interactions", [])}
        for interaction in fresh["interactions"]:
            description = interaction["description"]
            digest = _digest(interaction)
            if record.setdefault(description, digest) != digest:
                raise PactConflictError(
                    f"{target}: two interactions are both described {description!r} but differ; "
                    "pact-python would silently keep only the last: give each its own description"
                )
            merged[description] = interaction
        document = {**(existing or {}), **{k: v for k, v in fresh.items() if k != "interactions"}}
        document["interactions"] = [merged[d] for d in sorted(merged)]
        text = dump(document)
        if text != before:
            write_atomically(target, text)
        _write_record(record_path, run_id, record)


def _read_record(path: Path, run_id: str) -> dict[str, str]:
    """The descriptions (and content digests) this run has written so far; empty for a new run."""
    try:
        data = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (FileNotFoundError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("run") != run_id or not isinstance(data.get("interactions"), dict):
        return {}
    return dict(data["interactions"])


def _write_record(path: Path, run_id: str, record: Mapping[str, str]) -> None:
    """Write the record into the lock file, in place: writers waiting for the lock hold this very
    file open, so it is never replaced. A record cut short by a crash reads as empty."""
    with open(path, "r+", encoding="utf-8") as handle:
        handle.write(dump({"run": run_id, "interactions": dict(record)}))
        handle.truncate()


def _writer(interaction: Mapping[str, Any]) -> str | None:
    comments = interaction.get("comments")
    test = comments.get("testname") if isinstance(comments, Mapping) else None
    return test if isinstance(test, str) and "::" in test else None


def _stale(run: TestRun, test: str, path: Path, description: str) -> bool:
    """Whether the interaction ``test`` wrote into ``path`` is left over: its test module is gone,
    its module was collected whole and the test is not in it any more, or it ran, passed and did
    not write the interaction this time."""
    module = test.split("::", 1)[0]
    if run.rootdir is not None and not (run.rootdir / module).exists():
        return True
    if module in run.whole_modules and test not in run.collected:
        return True
    ran_clean = test in run.passed and test not in run.failed
    return ran_clean and (str(path.resolve()), description) not in run.written.get(test, set())


def prune_stale_interactions(run: TestRun) -> list[Path]:
    """At the end of a pytest session: drop, from every pact in the folders the session wrote to
    (in this process), the interactions a renamed or deleted test left behind (see
    `consumer_pact`), and delete a pact left with none. Interactions without a test name (written
    outside pytest) are kept. Returns the pact files changed."""
    changed: list[Path] = []
    for folder in sorted(run.pact_dirs):
        if not folder.is_dir():
            continue
        try:
            pacts = list(pacts_in(folder))
        except ContractError as exc:
            warnings.warn(f"saga-verify: stale pact interactions were not removed from {folder}: {exc}", stacklevel=2)
            continue
        for path, _ in pacts:
            if _prune(run, path):
                changed.append(path)
    return changed


def _prune(run: TestRun, path: Path) -> bool:
    with _locked(path):
        try:
            document = load_pact(path)
        except ContractError:
            return False  # gone or changed meanwhile; a later run sees it again
        stale = 0
        for key in ("interactions", "messages"):
            if key not in document:
                continue
            entries = document[key]
            document[key] = [
                i for i in entries if (test := _writer(i)) is None or not _stale(run, test, path, i["description"])
            ]
            stale += len(entries) - len(document[key])
        if not stale:
            return False
        if not interactions_of(document):
            path.unlink()
            # Its lock goes with it, while held: a writer that was waiting for it finds it gone
            # once it holds it (filelock 4 checks), and locks a new one.
            _lock_path(path).unlink(missing_ok=True)
        else:
            write_atomically(path, dump(document))
        return True
