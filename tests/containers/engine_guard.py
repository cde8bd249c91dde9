"""What the container tests share: no engine means skip (or fail, with ``REQUIRE_DOCKER=1``, as in
CI), and everything a test session creates carries its session label and is removed at the end."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest

from saga_verify.containers import SESSION_LABEL, engine_problem


def require_docker() -> None:
    """Skip the test when no Docker engine answers, saying why and how to get one; fail instead
    when ``REQUIRE_DOCKER=1`` (CI starts an engine, so a missing one is a broken set-up there)."""
    problem = engine_problem()
    if problem is None:
        return
    if os.environ.get("REQUIRE_DOCKER") == "1":
        pytest.fail(f"REQUIRE_DOCKER=1, but {problem}", pytrace=False)
    pytest.skip(problem)


def new_session_id() -> str:
    return uuid.uuid4().hex[:12]


def docker(*args: str, timeout: float = 120.0) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def leftovers(session_id: str) -> dict[str, list[str]]:
    """The containers, networks and images that carry this session's label."""
    label = f"label={SESSION_LABEL}={session_id}"
    return {
        "containers": docker("ps", "--all", "--quiet", "--filter", label).split(),
        "networks": docker("network", "ls", "--quiet", "--filter", label).split(),
        "images": docker("image", "ls", "--all", "--quiet", "--filter", label).split(),
    }


def remove_session(session_id: str) -> dict[str, list[str]]:
    """Remove everything labelled with this session; what is still there afterwards."""
    found = leftovers(session_id)
    if found["containers"]:
        docker("rm", "--force", "--volumes", *found["containers"])
    if found["networks"]:
        docker("network", "rm", *found["networks"])
    # Images a test made carry the label, and so do the build steps made on top of them; a child
    # goes before its parent, so remove what can be removed until nothing more can.
    images = list(dict.fromkeys(found["images"]))
    while images:
        kept = [image for image in images if subprocess.run(["docker", "image", "rm", "--force", image], capture_output=True, check=False).returncode != 0]
        if len(kept) == len(images):
            break
        images = kept
    return leftovers(session_id)
