"""Debian's Chromium, headless, driven over the DevTools protocol on a pipe
(``--remote-debugging-pipe``): open a page, read what the console, the log and the network saw,
query the DOM, take a screenshot. Standard library only; no driver binary and no browser download.

Run as a script it screenshots one element of a page (how the README's picture is made):
``python tests/reporting/headless_chromium.py PAGE.html OUT.png --selector CSS``."""

from __future__ import annotations

import argparse
import base64
import fcntl
import json
import os
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
#: How Chromium must run here: headless, no sandbox (we run as root in a container), nothing that
#: reaches for the network (it is closed), a fresh profile each time.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # /dev/shm is small in containers; Chromium then crashes on large pages without this.
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
)


class BrowserError(Exception):
    """Chromium did not start, did not answer in time, or answered a command with an error."""


class Page:
    """One tab: the events it collected while loading, and commands on its session."""

    def __init__(self, browser: Chromium, session: str) -> None:
        self._browser = browser
        self.session = session
        self.console: list[dict[str, Any]] = []
        self.exceptions: list[dict[str, Any]] = []
        self.log: list[dict[str, Any]] = []
        self.requests: list[str] = []
        self.failed_requests: list[str] = []

    def record(self, message: dict[str, Any]) -> None:
        method, params = message.get("method"), message.get("params", {})
        if method == "Runtime.consoleAPICalled":
            self.console.append(params)
        elif method == "Runtime.exceptionThrown":
            self.exceptions.append(params)
        elif method == "Log.entryAdded":
            self.log.append(params["entry"])
        elif method == "Network.requestWillBeSent":
            self.requests.append(params["request"]["url"])
        elif method == "Network.loadingFailed":
            self.failed_requests.append(f"{params.get('requestId')}: {params.get('errorText')}")

    @property
    def problems(self) -> list[str]:
        """Everything that says the page did not render cleanly: console errors and warnings,
        uncaught exceptions, log entries at warning level or above, failed loads."""
        found = [
            f"console.{c['type']}: {' '.join(str(a.get('value', a.get('description', ''))) for a in c.get('args', []))}"
            for c in self.console
            if c.get("type") in ("error", "assert", "warning")
        ]
        found += [f"exception: {e.get('exceptionDetails', {}).get('text')}" for e in self.exceptions]
        found += [f"log {e['level']} ({e.get('source')}): {e.get('text')}" for e in self.log if e.get("level") in ("error", "warning")]
        found += [f"failed load: {f}" for f in self.failed_requests]
        return found

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (DevTools evaluates it; the page itself
        runs no script)."""
        reply = self._browser.call("Runtime.evaluate", {"expression": expression, "returnByValue": True}, self.session)
        if "exceptionDetails" in reply:
            raise BrowserError(f"{expression!r} raised: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    def screenshot(self, path: Path, selector: str | None = None, until: str | None = None) -> Path:
        """A PNG of the whole page, or of the first element ``selector`` matches (down to the bottom
        of the first element ``until`` matches inside it, if given)."""
        if selector is None:
            box = self.evaluate("({x: 0, y: 0, width: document.documentElement.scrollWidth, height: document.documentElement.scrollHeight})")
        else:
            end = f"e.querySelector({json.dumps(until)}).getBoundingClientRect().bottom + 12" if until else "r.bottom"
            box = self.evaluate(
                f"(() => {{ const e = document.querySelector({json.dumps(selector)}); const r = e.getBoundingClientRect();"
                f" return {{x: r.left + scrollX, y: r.top + scrollY, width: r.width, height: {end} - r.top}}; }})()"
            )
        clip = {**{k: round(v) for k, v in box.items()}, "scale": 1}
        reply = self._browser.call("Page.captureScreenshot", {"format": "png", "clip": clip, "captureBeyondViewport": True}, self.session)
        path.write_bytes(base64.b64decode(reply["data"]))
        return path


class Chromium:
    """``with Chromium() as browser: page = browser.open(url)``."""

    def __init__(self, binary: Path = CHROMIUM, *, timeout: float = 60.0, width: int = 1280, height: int = 900) -> None:
        self.binary = binary
        self.timeout = timeout
        self.size = (width, height)
        self._ids = 0
        self._buffer = b""
        self._pending: list[dict[str, Any]] = []
        self._pages: dict[str, Page] = {}

    def __enter__(self) -> Chromium:
        self._profile = tempfile.mkdtemp(prefix="saga-verify-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # Above 9, so that putting them at 3 and 4 below cannot overwrite one with the other.
        to_browser_r, from_browser_w = (_above_nine(fd) for fd in (to_browser_r, from_browser_w))
        flags = [*FLAGS, f"--user-data-dir={self._profile}", f"--window-size={self.size[0]},{self.size[1]}", "--remote-debugging-pipe"]
        # Chromium reads commands on fd 3 and writes replies on fd 4. A small launcher puts the
        # pipe ends there and becomes Chromium (no preexec_fn: pytest-xdist workers run threads).
        launcher = "import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4); os.execv(sys.argv[3], sys.argv[3:])"
        self._log = tempfile.TemporaryFile()
        self._process = subprocess.Popen(
            [sys.executable, "-c", launcher, str(to_browser_r), str(from_browser_w), str(self.binary), *flags, "about:blank"],
            pass_fds=(to_browser_r, from_browser_w),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        try:
            self.call("Browser.getVersion")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self._process.poll() is None:
                try:
                    self._send("Browser.close")
                    self._process.wait(timeout=10)
                except (OSError, subprocess.TimeoutExpired):
                    self._process.kill()
                    self._process.wait(timeout=10)
        finally:
            for fd in (self._to_browser, self._from_browser):
                try:
                    os.close(fd)
                except OSError:
                    pass  # closed already
            self._log.close()
            shutil.rmtree(self._profile, ignore_errors=True)

    # -- the protocol ------------------------------------------------------------------------
    def _send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> int:
        self._ids += 1
        message: dict[str, Any] = {"id": self._ids, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        return self._ids

    def _receive(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._from_browser], [], [], max(left, 0))
            if not ready:
                raise BrowserError(f"Chromium did not answer within {self.timeout:g} s{self._output()}")
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                raise BrowserError(f"Chromium exited (status {self._process.poll()}){self._output()}")
            self._buffer += chunk
        raw, _, self._buffer = self._buffer.partition(b"\0")
        message: dict[str, Any] = json.loads(raw)
        page = self._pages.get(message.get("sessionId", ""))
        if page is not None:
            page.record(message)
        return message

    def _output(self) -> str:
        self._log.seek(0)
        tail = self._log.read().decode("utf-8", "replace").strip().splitlines()[-15:]
        return (": " + " | ".join(tail)) if tail else ""

    def call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        """Send a command and wait for its reply (events that arrive meanwhile are recorded)."""
        ident = self._send(method, params, session)
        deadline = time.monotonic() + self.timeout
        while True:
            message = self._receive(deadline)
            if message.get("id") == ident:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            self._pending.append(message)

    def wait_for(self, method: str, session: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        for i, message in enumerate(self._pending):
            if message.get("method") == method and message.get("sessionId") == session:
                return self._pending.pop(i)
        while True:
            message = self._receive(deadline)
            if message.get("method") == method and message.get("sessionId") == session:
                return message
            self._pending.append(message)

    def open(self, url: str) -> Page:
        """Load ``url`` in a new tab and wait for its load event; the page records every event."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session)
        self._pages[session] = page
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable", None, session)
        self.call("Emulation.setDeviceMetricsOverride", {"width": self.size[0], "height": self.size[1], "deviceScaleFactor": 1, "mobile": False}, session)
        self._pending.clear()
        self.call("Page.navigate", {"url": url}, session)
        self.wait_for("Page.loadEventFired", session)
        return page


def _above_nine(fd: int) -> int:
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


@contextmanager
def opened(path: Path, **options: Any) -> Iterator[Page]:
    """A page opened from a local file in a fresh browser."""
    with Chromium(**options) as browser:
        yield browser.open(path.resolve().as_uri())


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's header (and a check that it is a PNG)."""
    head = path.read_bytes()[:24]
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise ValueError(f"{path} is not a PNG")
    width, height = struct.unpack(">II", head[16:24])
    return int(width), int(height)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("page", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--selector", help="screenshot only the first element this CSS selector matches")
    parser.add_argument("--until", help="and only down to the first element inside it that this selector matches")
    parser.add_argument("--width", type=int, default=1100)
    args = parser.parse_args()
    with opened(args.page, width=args.width) as page:
        if page.problems:
            raise SystemExit(f"the page did not render cleanly: {page.problems}")
        page.screenshot(args.out, args.selector, args.until)
    print(f"{args.out}: {png_size(args.out)[0]}x{png_size(args.out)[1]}, {args.out.stat().st_size} bytes")


if __name__ == "__main__":
    main()
