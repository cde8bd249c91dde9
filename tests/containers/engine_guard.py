"""What the container tests share beyond the library (`saga_verify.containers.session_leftovers`,
`remove_session` and the plugin's `require_docker`): a session id, and the docker command with
its failure as an assertion."""

from __future__ import annotations

import subprocess
import uuid

from saga_verify._pytest_plugin import require_docker
from saga_verify.containers import remove_session
from saga_verify.containers import session_leftovers as leftovers

__all__ = ["docker", "leftovers", "new_session_id", "remove_session", "require_docker"]


def new_session_id() -> str:
    return uuid.uuid4().hex[:12]


def docker(*args: str, timeout: float = 120.0) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout
