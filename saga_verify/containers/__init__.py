"""The reference services in containers: a Docker engine and the image they run from.

- `engine_problem` says why no Docker engine can be used here, and how to get one
  (``fixtures/containers/docker-engine.sh start`` installs and starts one on Debian); None when
  one answers.
- `ensure_service_image` returns the `ServiceImage` that holds the whole saga_verify package
  with its ``http`` extra, building it first if needed, without a registry: a local Debian base
  image (debootstrap), a wheelhouse of pinned wheels and ``fixtures/containers/Dockerfile``, each
  reused while its inputs are unchanged. Any service runs from it by its arguments::

      docker run -p 127.0.0.1::8000 TAG --service payment --host 0.0.0.0 --port 8000 --inspect

  It raises `ContainerEngineError` when no engine answers and `ImageBuildError`, naming the
  step, when a build step fails.
- Containers and networks made for a run carry the label `SESSION_LABEL` with the run's id, so
  that they can be found and removed; services listen on `SERVICE_PORT` inside their container.
- `ContainerSession` starts services (`ServiceContainer`: testcontainers on a private network,
  published on 127.0.0.1 for an engine on this machine, with kill, restart, pause) and your own
  images as participants
  (`ContainerSession.participant`: by image or Dockerfile, each behind a fault proxy of its own,
  `ContainerParticipant`), and removes everything it made; `remove_session` removes what a
  killed run left, by its label. The pytest fixture ``saga_containers`` is one per test.

The image is built from a source checkout (it needs ``fixtures/containers/``). The Docker engine
is reached through the Docker SDK that testcontainers brings, configured as the ``docker`` command
is (``DOCKER_HOST``, its TLS settings, the current context); ports of a remote engine are reached
at its host. Nothing here changes the process's environment: testcontainers' own settings (its
reaper, Ryuk) are the user's.
"""

from __future__ import annotations

from ._engine import ContainerEngineError, engine_problem
from ._images import SERVICE_PORT, SESSION_LABEL, ImageBuildError, ServiceImage, ensure_service_image
from ._services import (
    ContainerParticipant,
    ContainerSession,
    ContainerStartError,
    ServiceContainer,
    remove_session,
    session_leftovers,
)

__all__ = [
    "SERVICE_PORT",
    "SESSION_LABEL",
    "ContainerEngineError",
    "ContainerParticipant",
    "ContainerSession",
    "ContainerStartError",
    "ServiceContainer",
    "remove_session",
    "session_leftovers",
    "ImageBuildError",
    "ServiceImage",
    "engine_problem",
    "ensure_service_image",
]
