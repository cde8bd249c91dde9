"""Writing files so that nothing is ever half-written: plans, pacts, reports and stores all go
through here; and checking, before any work, that a folder can be written."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def write_atomically(path: Path, text: str) -> None:
    """Write through a temporary file in the same folder and rename it into place: a reader sees
    the old file or the whole new one. The file gets the usual permissions (umask applies)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass  # nothing was written, or it is already gone: the original error matters
        raise


def unwritable_folder(path: Path) -> str | None:
    """Why files cannot be written into folder ``path`` (which may not exist yet), or None.
    Creates nothing: a check made before any work must not leave an empty folder behind."""
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        return f"{str(probe)!r} is a file, not a folder"
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        return f"no permission to write in {str(probe)!r}"
    return None
