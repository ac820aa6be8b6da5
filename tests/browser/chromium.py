"""Headless Chromium for tests that must see what a person sees: Debian's ``chromium`` and
``chromium-driver`` (installed by ``make test``) driven by selenium over WebDriver.

Nothing is downloaded: the driver binary is given explicitly, so selenium's driver manager
never runs, and the browser's own background traffic (updates, sync, QUIC probes) is off.
Each browser gets a fresh profile directory.
"""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1024",
)
WAIT_SECONDS = 30.0


def missing() -> str:
    """What is missing to run a browser ('' when nothing is)."""
    absent = [path for path in (CHROMIUM, CHROMEDRIVER) if shutil.which(path) is None]
    if not absent:
        return ""
    return f"{', '.join(absent)} not installed: run `make system-tools` (Debian's chromium and chromium-driver)"


def start(profile_dir: Path) -> WebDriver:
    """A headless Chromium with a fresh profile, recording its network requests."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile_dir}")
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))


def wait(driver: WebDriver, condition: Any, timeout: float = WAIT_SECONDS) -> Any:
    """Poll ``condition(driver)`` until it is truthy; its value, or a TimeoutException."""
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)


def log(driver: WebDriver, kind: str) -> list[dict[str, Any]]:
    """Entries of the browser's ``performance`` or ``browser`` (console) log since the last read."""
    entries: list[dict[str, Any]] = driver.get_log(kind)  # type: ignore[no-untyped-call]
    return entries


def requested_urls(driver: WebDriver) -> Iterator[str]:
    """Every URL the page requested since the last call (from the DevTools performance log)."""
    for entry in log(driver, "performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            yield message["params"]["request"]["url"]


def foreign_requests(driver: WebDriver, origin: str) -> list[str]:
    """Requests that left ``origin`` (data: and blob: URLs stay in the page)."""
    host = urlsplit(origin).netloc
    return [
        url
        for url in requested_urls(driver)
        if urlsplit(url).scheme in ("http", "https", "ws", "wss") and urlsplit(url).netloc != host
    ]


def console_errors(driver: WebDriver) -> list[str]:
    return [e["message"] for e in log(driver, "browser") if e.get("level") == "SEVERE"]


def save_screenshot(driver: WebDriver, path: Path) -> Path:
    """A PNG of the whole page (not only the viewport) at ``path``."""
    width = driver.execute_script("return Math.max(document.body.scrollWidth, 1280)")
    height = driver.execute_script("return Math.max(document.body.scrollHeight, 600)")
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
        },
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))
    return path
