"""Fixtures for browser tests: one headless Chromium per test session, a clean page per test.

A test that fails leaves a screenshot of the page it saw in its ``tmp_path`` (the path is
printed in the test's report).
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from selenium.webdriver.chrome.webdriver import WebDriver

from tests.browser import chromium

_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call" and report.failed:
        item.stash[_FAILED] = True
    return report


@pytest.fixture(scope="session")
def _chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    if problem := chromium.missing():
        pytest.fail(problem)
    driver = chromium.start(tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def browser(_chromium: WebDriver, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[WebDriver]:
    """The session's browser on a blank page, with its request and console logs emptied."""
    _chromium.get("about:blank")
    chromium.log(_chromium, "performance")
    chromium.log(_chromium, "browser")
    yield _chromium
    if request.node.stash.get(_FAILED, False):
        shot = chromium.save_screenshot(_chromium, tmp_path / "failure.png")
        print(f"screenshot of the failed page: {shot}")
    _chromium.get("about:blank")
