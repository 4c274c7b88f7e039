"""A headless Chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe): no chromedriver, no
websocket client, no PyPI package — the tests of the generated site need only the browser (Debian's `chromium`).

Messages are JSON objects, each ended by a NUL byte, written to the browser's fd 3 and read from its fd 4. Every
network request a page makes is kept (Network.requestWillBeSent), so a test can say that nothing left file://.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--remote-debugging-pipe",
]


def find_chromium() -> str | None:
    """$BENCH_CHROMIUM, else chromium / chromium-browser / google-chrome on PATH."""
    if os.environ.get("BENCH_CHROMIUM"):
        return os.environ["BENCH_CHROMIUM"]
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


class CDPError(RuntimeError):
    pass


class Browser:
    """One browser, one page (a flattened session on a new target)."""

    def __init__(self, binary: str, profile: Path, timeout: float = 30.0):
        self.timeout = timeout
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # the browser reads commands from fd 3 and writes replies to fd 4; the child's ends are first copied to
        # fds >= 10 so that moving them to 3 and 4 cannot overwrite one with the other
        child_r, child_w = (fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_browser_r, from_browser_w))
        for fd in (to_browser_r, from_browser_w):
            os.close(fd)

        def onto_3_and_4() -> None:
            os.dup2(child_r, 3)
            os.dup2(child_w, 4)

        self.proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            preexec_fn=onto_3_and_4,
            pass_fds=(3, 4),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(child_r)
        os.close(child_w)
        self._next_id = 0
        self._replies: dict[int, dict] = {}
        self.events: list[dict] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Network"):
            self.call(f"{domain}.enable")

    def _read(self) -> None:
        buffer = b""
        while True:
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                break
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            with self._cond:
                for raw in messages:
                    message = json.loads(raw)
                    if "id" in message:
                        self._replies[message["id"]] = message
                    else:
                        self.events.append(message)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        with self._cond:
            self._next_id += 1
            ident = self._next_id
        message = {"id": ident, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        with self._cond:
            while ident not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise CDPError(f"{method}: no reply within {self.timeout:.0f} s (browser alive: {self.alive})")
                self._cond.wait(min(left, 0.5))
            reply = self._replies.pop(ident)
        if "error" in reply:
            raise CDPError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def call(self, method: str, params: dict | None = None) -> dict:
        """A command for the page's session."""
        return self.send(method, params, self.session)

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (promises awaited); a thrown error raises."""
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            raise CDPError(f"{expression[:80]}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float | None = None):
        """The expression's value once it is truthy; while a page is being replaced the expression can fail
        (its context is destroyed): that is retried too."""
        deadline = time.monotonic() + (timeout or self.timeout)
        last = None
        while True:
            try:
                value = self.evaluate(expression)
                if value:
                    return value
            except CDPError as exc:
                last = exc
            if time.monotonic() > deadline:
                raise CDPError(f"timed out waiting for {expression}" + (f" (last error: {last})" if last else ""))
            time.sleep(0.05)

    def goto(self, url: str) -> None:
        """Load `url` and wait until the document and its scripts are done."""
        reply = self.call("Page.navigate", {"url": url})
        if reply.get("errorText"):
            raise CDPError(f"{url}: {reply['errorText']}")
        self.wait_for(f"document.readyState === 'complete' && location.href === {json.dumps(url)}")

    def key(self, key: str, code: str | None = None, key_code: int = 0) -> None:
        """Press and release one key in the focused element, as a keyboard user would."""
        for kind in ("keyDown", "keyUp"):
            params = {"type": kind, "key": key, "code": code or key, "windowsVirtualKeyCode": key_code}
            self.call("Input.dispatchKeyEvent", params)

    def viewport(self, width: int, height: int, mobile: bool = False) -> None:
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
        )

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": False})["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def requested_urls(self) -> list[str]:
        with self._cond:
            return [
                e["params"]["request"]["url"] for e in self.events if e.get("method") == "Network.requestWillBeSent"
            ]

    def close(self) -> None:
        try:
            if self.alive:
                self.send("Browser.close")
        except (CDPError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._to_browser, self._from_browser):
            try:
                os.close(fd)
            except OSError:
                pass
