"""Shared by the report tests: a headless-Chromium page checker speaking the DevTools protocol over a websocket
(the small main-job run they share is in tests/conftest.py)."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from isletbayes.reports.pdf import CHROMIUM_FLAGS, find_chromium

# --- headless Chromium over the DevTools protocol -----------------------------------------------------------


@dataclass
class PageCheck:
    """What a real browser saw when it opened a page."""

    console_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    external_requests: list[str] = field(default_factory=list)
    broken_images: list[str] = field(default_factory=list)
    n_images: int = 0
    title: str = ""
    screenshot: Path | None = None


class _Cdp:
    def __init__(self, ws_url: str):
        import websocket

        self.ws = websocket.create_connection(ws_url, timeout=60, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []

    def call(self, method: str, **params):
        self.next_id += 1
        my_id = self.next_id
        self.ws.send(json.dumps({"id": my_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == my_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_for(self, method: str, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        for ev in self.events:
            if ev.get("method") == method:
                return ev
        while time.monotonic() < deadline:
            msg = json.loads(self.ws.recv())
            self.events.append(msg)
            if msg.get("method") == method:
                return msg
        raise TimeoutError(f"no {method} within {timeout} s")

    def close(self):
        self.ws.close()


def check_page_in_chromium(url: str, screenshot: Path, width: int = 1280) -> PageCheck:
    """Open ``url`` in a fresh headless Chromium; collect console errors, failed or external requests and
    broken images, and save a full-page screenshot."""
    exe = find_chromium()
    if exe is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium); browser check skipped")
    profile = Path(tempfile.mkdtemp(prefix="isletbayes-test-chromium-"))
    proc = subprocess.Popen([exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
                             f"--window-size={width},900", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("chromium did not open its DevTools port")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30) as resp:
            targets = json.load(resp)
        page = next(t for t in targets if t.get("type") == "page")
        cdp = _Cdp(page["webSocketDebuggerUrl"])
        try:
            for domain in ("Page", "Runtime", "Log", "Network"):
                cdp.call(f"{domain}.enable")
            cdp.call("Page.navigate", url=url)
            cdp.wait_for("Page.loadEventFired")
            result = PageCheck()
            images = cdp.call("Runtime.evaluate", returnByValue=True, awaitPromise=True, expression="""
                Promise.all(Array.from(document.images).map(i => i.decode().then(() => null, () => null)))
                  .then(() => ({
                    n: document.images.length,
                    broken: Array.from(document.images)
                      .filter(i => !i.complete || i.naturalWidth === 0)
                      .map(i => i.alt || i.src.slice(0, 80)),
                    title: document.title,
                    height: Math.ceil(document.documentElement.scrollHeight)
                  }))""")["result"]["value"]
            result.n_images, result.broken_images, result.title = images["n"], images["broken"], images["title"]
            for ev in cdp.events:
                m, p = ev.get("method"), ev.get("params", {})
                if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                    result.console_errors.append(" ".join(str(a.get("value", a.get("description", "")))
                                                          for a in p.get("args", [])))
                elif m == "Runtime.exceptionThrown":
                    result.console_errors.append(p["exceptionDetails"].get("text", "exception"))
                elif m == "Log.entryAdded" and p["entry"].get("level") == "error":
                    result.console_errors.append(p["entry"].get("text", ""))
                elif m == "Network.loadingFailed":
                    result.failed_requests.append(f"{p.get('errorText')} ({p.get('requestId')})")
                elif m == "Network.requestWillBeSent":
                    req_url = p["request"]["url"]
                    if not req_url.startswith(("file:", "data:", "about:")):
                        result.external_requests.append(req_url)
            height = min(int(images["height"]), 16000)
            cdp.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                     mobile=False)
            shot = cdp.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            screenshot.write_bytes(base64.b64decode(shot["data"]))
            result.screenshot = screenshot
            return result
        finally:
            cdp.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="session")
def chromium_page_check():
    return check_page_in_chromium
