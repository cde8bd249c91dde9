"""The service image: built from the source checkout without a registry, and built once.

`ensure_service_image` takes three steps, each skipped when its result is already there:

1. **Base image.** Chosen by ``base=`` or ``$SAGA_VERIFY_BASE_IMAGE``: ``local`` (a Debian root
   file system ``fixtures/containers/build-base-image.sh`` makes with debootstrap, imported into the
   engine; its tag carries a hash of that script and of the import's settings), ``official``
   (``python:3.11-slim-bookworm``, which needs a registry when it is not present) or an image name.
   With neither: the local base if it is present, else the official one if it is present, else
   the local one is built.
2. **Wheelhouse** under ``.saga-verify/wheelhouse/<hash>``: the saga-verify wheel built from the
   source tree (``app/``) and the cp311 manylinux wheels of its ``http`` dependencies at the
   versions ``constraints.txt`` pins (``deps/``). The hash covers ``constraints.txt``,
   ``pyproject.toml``, ``README.md`` and every file of the package. A new wheelhouse takes its
   ``deps/`` from an earlier one when the dependencies are the same (only the package changed).
3. **Image** ``saga-verify/services:<hash>`` from ``fixtures/containers/Dockerfile``, built
   offline (``--no-index``) with the wheelhouse as its context. The hash covers the Dockerfile,
   the base image's id and the wheelhouse hash.

Everything is built aside and put in place whole (a temporary directory renamed; an image tagged
only when its build succeeded), under a file lock beside what it guards (``.saga-verify/images.lock``):
processes that ensure the image at once (pytest-xdist workers) build it once. The engine is driven
through the Docker SDK (`saga_verify.containers._engine.engine`): images are built with its
low-level API, whose streamed log says which instruction failed. Each step's output goes to
``.saga-verify/images/logs/``; a failure raises `ImageBuildError` naming the step, with the end of
that output.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import SagaVerifyError
from ._engine import ContainerEngineError, engine, require_engine

if TYPE_CHECKING:
    from filelock import BaseFileLock

__all__ = [
    "BASE_ENV",
    "IMAGE_REPOSITORY",
    "OFFICIAL_BASE",
    "SERVICE_PORT",
    "SESSION_LABEL",
    "BuildLog",
    "ImageBuildError",
    "ServiceImage",
    "build_image",
    "ensure_service_image",
    "ensure_wheelhouse",
    "image_id",
]

#: The port the image's services listen on by convention (``EXPOSE``d).
SERVICE_PORT = 8000
#: Label carried by every container and network a run creates, valued with the run's id, so that
#: whatever a run leaves behind can be found and removed.
SESSION_LABEL = "saga-verify.session"
#: Names the base image: ``local``, ``official`` or an image name.
BASE_ENV = "SAGA_VERIFY_BASE_IMAGE"
OFFICIAL_BASE = "python:3.11-slim-bookworm"
IMAGE_REPOSITORY = "saga-verify/services"
BASE_REPOSITORY = "saga-verify/base"

_DOCKERFILE = Path("fixtures/containers/Dockerfile")
_BASE_SCRIPT = Path("fixtures/containers/build-base-image.sh")
# Part of the wheelhouse hash: change it when the way the wheelhouse is made changes.
_WHEELHOUSE_RECIPE = "wheelhouse 1: cp311 manylinux_2_17..2_36"
_PYTHON_VERSION = "3.11"
_ABI = "cp311"
_GLIBC_MINORS = range(36, 16, -1)  # bookworm's glibc 2.36 down to manylinux2014 (2.17)
#: What the import sets on the local base image (as ``docker import --change`` would); part of its tag.
_BASE_CHANGES = (
    "ENV LANG=C.UTF-8",
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    'CMD ["/bin/bash"]',
)
_BASE_CHECK = ("python3", "-c", "import ensurepip, ssl, sqlite3, venv")
_STEP_TIMEOUT = 1800.0
_TAIL_LINES = 30
_KEEP_WHEELHOUSES = 3


class ImageBuildError(SagaVerifyError):
    """A step of making the service image failed. ``step`` names it (for a Dockerfile failure:
    the instruction), ``output`` is the end of what it printed and ``log`` the file that holds
    all of it."""

    def __init__(self, step: str, message: str, output: str = "", log: Path | None = None) -> None:
        text = f"building the saga-verify service image failed at {step}: {message}"
        if output:
            text += "\n" + textwrap.indent(output, "    ")
        if log is not None:
            text += f"\n(whole output: {log})"
        super().__init__(text)
        self.step = step
        self.output = output
        self.log = log


@dataclass(frozen=True)
class ServiceImage:
    """A service image that exists in the engine. ``built`` tells whether this call built it
    (False: it was there already); ``seconds`` is how long the call took."""

    tag: str
    id: str
    base: str
    wheelhouse: Path
    built: bool
    seconds: float


def ensure_service_image(*, base: str | None = None) -> ServiceImage:
    """The saga-verify services image, built first if it is not in the engine yet.

    ``base`` chooses the base image (``"local"``, ``"official"`` or an image name) and overrides
    ``$SAGA_VERIFY_BASE_IMAGE``; with neither the choice is automatic (see the module). Run a
    service with ``docker run -p 127.0.0.1::8000 TAG --service NAME --host 0.0.0.0 --port 8000``.
    Raises `ContainerEngineError` when no engine answers and `ImageBuildError` when a step fails.
    """
    started = time.monotonic()
    root = _source_root()
    require_engine()
    choice = base if base is not None else os.environ.get(BASE_ENV)
    choice = (choice or "").strip() or None
    cache = root / ".saga-verify"
    logs = cache / "images" / "logs"
    with _locked(root):
        base_name, base_id = _choose_base(root, choice, logs)
        wheelhouse, _ = _ensure_wheelhouse(root)
        dockerfile = root / _DOCKERFILE
        pip_args = "--no-index"
        digest = _digest(
            [b"service image 1", dockerfile.read_bytes(), base_id.encode(), wheelhouse.name.encode(), pip_args.encode()]
        )
        tag = f"{IMAGE_REPOSITORY}:{digest[:16]}"
        found = image_id(tag)
        built = found is None
        if found is None:
            _build_service_image(dockerfile, wheelhouse, tag, base_name, pip_args, logs / "image.log")
            found = image_id(tag)
            if found is None:
                raise ImageBuildError("docker build", f"the build succeeded but {tag} is not in the engine")
    return ServiceImage(tag, found, base_name, wheelhouse, built, time.monotonic() - started)


def ensure_wheelhouse() -> tuple[Path, bool]:
    """The wheelhouse of this checkout, made first if needed, and whether this call made it."""
    root = _source_root()
    with _locked(root):
        return _ensure_wheelhouse(root)


def _ensure_wheelhouse(root: Path) -> tuple[Path, bool]:
    sources = _sources(root)
    deps_inputs = [root / "constraints.txt", root / "pyproject.toml"]
    full = _hash_files(root, [_WHEELHOUSE_RECIPE, _platform_tag()], [*deps_inputs, *sources])
    deps_key = _hash_files(root, [_WHEELHOUSE_RECIPE, _platform_tag()], deps_inputs)
    houses = root / ".saga-verify" / "wheelhouse"
    target = houses / full[:16]
    logs = root / ".saga-verify" / "images" / "logs"
    if _complete(target):
        os.utime(target)
        return target, False
    houses.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=houses))
    staging.chmod(0o755)
    try:
        source = staging / "src"
        for path in sources:
            destination = source / path.relative_to(root)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, destination)
        _run_step(
            "wheelhouse (the saga-verify wheel)",
            [*_pip("wheel"), "--no-deps", "--wheel-dir", str(staging / "app"), str(source)],
            logs / "wheelhouse-app.log",
        )
        wheels = sorted((staging / "app").glob("saga_verify-*.whl"))
        if len(wheels) != 1:
            raise ImageBuildError("wheelhouse (the saga-verify wheel)", f"expected one saga_verify wheel, found {len(wheels)}")
        earlier = _wheelhouse_with_deps(houses, deps_key)
        if earlier is not None:
            shutil.copytree(earlier / "deps", staging / "deps", copy_function=_link_or_copy)
        else:
            _run_step(
                "wheelhouse (the dependency wheels)",
                [
                    *_pip("download"),
                    "--only-binary=:all:",
                    *(arg for platform_tag in _platforms() for arg in ("--platform", platform_tag)),
                    "--python-version", _PYTHON_VERSION,
                    "--implementation", "cp",
                    "--abi", _ABI,
                    "--constraint", str(root / "constraints.txt"),
                    "--dest", str(staging / "deps"),
                    f"{wheels[0]}[http]",
                ],
                logs / "wheelhouse-deps.log",
            )
            for wheel in (staging / "deps").glob("saga_verify-*.whl"):
                wheel.unlink()
        (staging / "deps.key").write_text(deps_key + "\n", encoding="utf-8")
        shutil.rmtree(source)
        try:
            os.rename(staging, target)
        except OSError:
            if not _complete(target):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _prune(houses, target)
    return target, True


def _source_root() -> Path:
    root = Path(__file__).resolve().parents[2]
    for needed in ("pyproject.toml", "constraints.txt", str(_DOCKERFILE), str(_BASE_SCRIPT)):
        if not (root / needed).is_file():
            raise ImageBuildError(
                "source tree",
                f"the service image is built from a saga-verify source checkout, and {root} has no {needed}",
            )
    return root


def _locked(root: Path) -> BaseFileLock:
    """The lock over the images and wheelhouses of ``root``'s ``.saga-verify`` folder, held while
    one is made or chosen."""
    from filelock import FileLock

    cache = root / ".saga-verify"
    cache.mkdir(parents=True, exist_ok=True)
    return FileLock(cache / "images.lock")


def _tail(log: Path) -> str:
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-_TAIL_LINES:])


def _run_step(step: str, command: Sequence[str], log: Path, *, failure: str | None = None) -> str:
    """Run one step with its output in ``log``; raise `ImageBuildError` if it fails."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as out:
        try:
            done = subprocess.run(
                list(command), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=_STEP_TIMEOUT, check=False
            )
        except subprocess.TimeoutExpired:
            raise ImageBuildError(step, f"did not finish within {_STEP_TIMEOUT:g} s", _tail(log), log) from None
        except OSError as error:
            raise ImageBuildError(step, f"`{command[0]}` cannot be run: {error}") from None
    if done.returncode != 0:
        message = failure or f"`{shlex.join(command)}` exited with status {done.returncode}"
        raise ImageBuildError(step, message, _tail(log), log)
    return log.read_text(encoding="utf-8", errors="replace")


def _api_error(error: Exception) -> str:
    return _short(str(getattr(error, "explanation", None) or error), 300)


def image_id(name: str) -> str | None:
    """The id of the image ``name`` in the engine, or None if it has none by that name."""
    import docker.errors

    try:
        found: str = engine().api.inspect_image(name)["Id"]
    except docker.errors.ImageNotFound:
        return None
    except docker.errors.DockerException as error:
        raise ContainerEngineError(f"the Docker engine could not inspect the image {name!r}: {_api_error(error)}") from None
    return found


def _base_recipe(root: Path) -> str:
    """The hash of what the local base image is made of: the script and the import's settings."""
    script = (root / _BASE_SCRIPT).read_bytes()
    return _digest([b"base image 1", script, *(change.encode() for change in _BASE_CHANGES)])[:12]


def _local_base_tag(root: Path) -> str:
    return f"{BASE_REPOSITORY}:bookworm-{_base_recipe(root)}"


def _choose_base(root: Path, choice: str | None, logs: Path) -> tuple[str, str]:
    """The base image's name and id, building or pulling it if needed."""
    local = _local_base_tag(root)
    if choice is None:
        for name in (local, OFFICIAL_BASE):
            found = image_id(name)
            if found is not None:
                return name, found
        choice = "local"
    if choice == "local":
        name = local
        if image_id(name) is None:
            _build_local_base(root, name, logs)
    else:
        name = OFFICIAL_BASE if choice == "official" else choice
        if image_id(name) is None:
            _pull(name, logs / "base-pull.log")
    found = image_id(name)
    if found is None:
        raise ImageBuildError(f"base image {name!r}", "it was built or pulled, but the engine does not have it")
    return name, found


def _pull(name: str, log: Path) -> None:
    import docker.errors
    from docker.utils import parse_repository_tag

    step = f"base image {name!r}"
    repository, tag = parse_repository_tag(name)
    problem = None
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as out:
        try:
            # Without a tag the engine would pull every tag of the repository.
            for chunk in engine().api.pull(repository, tag or "latest", stream=True, decode=True):
                if "error" in chunk:
                    problem = str(chunk["error"])
                out.write(" ".join(str(chunk.get(key, "")) for key in ("id", "status", "error")).strip() + "\n")
        except docker.errors.DockerException as error:
            problem = _api_error(error)
            out.write(f"{problem}\n")
    if problem is not None or image_id(name) is None:
        raise ImageBuildError(
            step,
            f"it is not in the engine and cannot be pulled; set {BASE_ENV}=local "
            f"(or pass base='local') to build one without a registry, or name an image the engine has",
            _tail(log),
            log,
        )


def _build_local_base(root: Path, tag: str, logs: Path) -> None:
    """Make the root file system with the script, import it, check that it runs Python, tag it."""
    import docker.errors

    step = f"base image {tag} ({_BASE_SCRIPT})"
    recipe = _base_recipe(root)
    folder = root / ".saga-verify" / "images"
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / f"rootfs-{recipe}.tar"
    try:
        _run_step(step, ["bash", str(root / _BASE_SCRIPT), str(archive)], logs / "base-image.log")
        client = engine()
        try:
            # Imported untagged first: an image that cannot run Python never carries the tag.
            output = client.api.import_image_from_file(
                str(archive), changes=[*_BASE_CHANGES, f"LABEL saga-verify.recipe={recipe}"]
            )
        except docker.errors.DockerException as error:
            raise ImageBuildError(step, f"the engine did not import {archive.name}: {_api_error(error)}") from None
    finally:
        archive.unlink(missing_ok=True)
    imported = _imported_id(str(output))
    if imported is None:
        raise ImageBuildError(step, "the engine imported the root file system but named no image", _short(str(output), 600))
    try:
        client.containers.run(imported, list(_BASE_CHECK), network_mode="none", remove=True)
    except docker.errors.DockerException as error:
        with contextlib.suppress(docker.errors.DockerException):
            client.api.remove_image(imported, force=True)
        output_text = getattr(error, "stderr", None)
        raise ImageBuildError(
            step,
            "the imported image cannot run python3 with venv, ssl and sqlite3",
            output_text.decode("utf-8", "replace") if isinstance(output_text, bytes) else _api_error(error),
        ) from None
    repository, _, version = tag.rpartition(":")
    client.api.tag(imported, repository, version)


def _imported_id(output: str) -> str | None:
    """The image id the engine's answer to an import names (its last ``{"status": "sha256:..."}``)."""
    found = None
    for line in output.splitlines():
        try:
            message = json.loads(line)
        except ValueError:
            continue
        status = message.get("status") if isinstance(message, dict) else None
        if isinstance(status, str) and status.startswith("sha256:"):
            found = status
    return found


def _failed_instruction(output: str) -> str:
    """The Dockerfile instruction a failed build stopped at, from its output (the engine's API
    builds with the classic builder, which prints ``Step N/M : INSTRUCTION``)."""
    legacy = re.findall(r"^Step (\d+/\d+) : (.+)$", output, re.MULTILINE)
    if legacy:
        where, instruction = legacy[-1]
        return f"Dockerfile step {where}: {_short(instruction)}"
    return "docker build"


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass
class BuildLog:
    """What an image build printed, and the error it stopped with (None: it succeeded)."""

    output: str
    error: str | None

    def tail(self, lines: int = _TAIL_LINES) -> str:
        return "\n".join(self.output.splitlines()[-lines:])

    def failed_step(self) -> str:
        """The Dockerfile instruction the build stopped at, as well as its log tells."""
        return _failed_instruction(self.output)


def build_image(
    context: Path,
    dockerfile: Path,
    tag: str,
    *,
    buildargs: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    log: Path | None = None,
) -> BuildLog:
    """Build ``dockerfile`` (anywhere) with ``context`` as its context, tagged ``tag`` only if the
    build succeeds, through the SDK's low-level API; its streamed output goes to ``log`` too."""
    import docker.errors

    lines: list[str] = []
    error = None
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") if log is not None else contextlib.nullcontext() as out:

        def write(text: str) -> None:
            lines.append(text)
            if out is not None:
                out.write(text)

        try:
            stream: Any = engine().api.build(
                path=str(context),
                dockerfile=str(dockerfile.resolve()),
                tag=tag,
                buildargs=dict(buildargs or {}),
                labels=dict(labels or {}),
                rm=True,
                forcerm=True,
                decode=True,
                timeout=_STEP_TIMEOUT,
            )
            for chunk in stream:
                if "stream" in chunk:
                    write(str(chunk["stream"]))
                elif "error" in chunk:
                    error = str(chunk["error"]).strip()
                    write(f"ERROR: {error}\n")
                elif "status" in chunk:
                    write(f"{chunk['status']}\n")
        except (docker.errors.DockerException, OSError) as failure:
            error = _api_error(failure)
            write(f"ERROR: {error}\n")
    return BuildLog("".join(lines), error)


def _build_service_image(dockerfile: Path, context: Path, tag: str, base: str, pip_args: str, log: Path) -> None:
    built = build_image(
        context,
        dockerfile,
        tag,
        buildargs={"BASE": base, "PIP_ARGS": pip_args},
        labels={"saga-verify.image": "services", "saga-verify.base": base, "saga-verify.wheelhouse": context.name},
        log=log,
    )
    if built.error is not None:
        raise ImageBuildError(
            built.failed_step(), f"`docker build` of {tag} from base {base!r} failed: {built.error}", built.tail(), log
        )


def _pip(command: str) -> list[str]:
    return [sys.executable, "-m", "pip", command, "--no-input", "--disable-pip-version-check", "--progress-bar", "off"]


def _platform_tag() -> str:
    machine = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)


def _platforms() -> list[str]:
    machine = _platform_tag()
    return [f"manylinux_2_{minor}_{machine}" for minor in _GLIBC_MINORS] + [f"manylinux2014_{machine}"]


def _sources(root: Path) -> list[Path]:
    """What the saga-verify wheel is built from, in a fixed order."""
    files = [root / "pyproject.toml"]
    if (root / "README.md").is_file():
        files.append(root / "README.md")
    package = root / "saga_verify"
    files.extend(
        path
        for path in sorted(package.rglob("*"), key=lambda p: p.relative_to(root).as_posix())
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo")
    )
    return files


def _digest(parts: Sequence[bytes]) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def _hash_files(root: Path, salt: Sequence[str], files: Sequence[Path]) -> str:
    parts = [item.encode() for item in salt]
    for path in files:
        parts.append(path.relative_to(root).as_posix().encode())
        parts.append(path.read_bytes())
    return _digest(parts)


def _complete(house: Path) -> bool:
    return (house / "deps.key").is_file() and (house / "app").is_dir() and (house / "deps").is_dir()


def _wheelhouse_with_deps(houses: Path, deps_key: str) -> Path | None:
    for house in houses.iterdir():
        if house.name.startswith(".") or not _complete(house):
            continue
        if (house / "deps.key").read_text(encoding="utf-8").strip() == deps_key:
            return house
    return None


def _link_or_copy(source: str, destination: str) -> str:
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)
    return destination


def _prune(houses: Path, keep: Path) -> None:
    """Keep the few most recently used wheelhouses; remove staging left by an interrupted build."""
    complete = []
    for house in houses.iterdir():
        if house.name.startswith(".staging-"):
            shutil.rmtree(house, ignore_errors=True)
        elif house != keep and house.is_dir() and _complete(house):
            complete.append(house)
    complete.sort(key=lambda house: house.stat().st_mtime, reverse=True)
    for house in complete[_KEEP_WHEELHOUSES - 1 :]:
        shutil.rmtree(house, ignore_errors=True)
