"""``/docs`` in a real browser: Swagger UI renders the OpenAPI 3.1 document, offline."""

from __future__ import annotations

from pathlib import Path

import httpx
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By

from tests.browser import chromium
from tests.conftest import RunningService


def _operations(driver: WebDriver) -> set[tuple[str, str]]:
    """(METHOD, path) of every operation Swagger UI shows."""
    shown = set()
    for block in driver.find_elements(By.CSS_SELECTOR, ".opblock"):
        method = block.find_element(By.CSS_SELECTOR, ".opblock-summary-method").text.strip()
        path = block.find_element(By.CSS_SELECTOR, ".opblock-summary-path").get_attribute("data-path")
        shown.add((method, path or ""))
    return shown


def test_docs_render_every_operation_offline(service: RunningService, browser: WebDriver, tmp_path: Path) -> None:
    spec = httpx.get(service.http + "/openapi.json").json()
    assert spec["openapi"].startswith("3.1")
    documented = {(method.upper(), path) for path, item in spec["paths"].items() for method in item}
    assert ("POST", "/memstore/query") in documented and ("GET", "/api/v1/query_range") in documented

    browser.get(service.http + "/docs")
    chromium.wait(browser, lambda d: len(_operations(d)) >= len(documented))

    assert _operations(browser) == documented
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "Unable to render this definition" not in body
    assert not browser.find_elements(By.CSS_SELECTOR, ".errors-wrapper")
    title = browser.find_element(By.CSS_SELECTOR, ".info .title").text
    assert title.startswith(spec["info"]["title"]) and spec["info"]["version"] in title
    assert "OAS 3.1" in title

    # Expanding an operation shows its parameters and responses, rendered from the spec.
    block = next(
        b
        for b in browser.find_elements(By.CSS_SELECTOR, ".opblock")
        if b.find_element(By.CSS_SELECTOR, ".opblock-summary-path").get_attribute("data-path") == "/api/v1/query_range"
    )
    block.find_element(By.CSS_SELECTOR, ".opblock-summary").click()
    responses = chromium.wait(browser, lambda d: block.find_elements(By.CSS_SELECTOR, ".responses-wrapper"))
    assert "200" in responses[0].text and "application/json" in responses[0].text

    # Served from the package: nothing was fetched from anywhere but the scaler.
    assert chromium.foreign_requests(browser, service.http) == []
    assert chromium.console_errors(browser) == []
    shot = chromium.save_screenshot(browser, tmp_path / "docs.png")
    assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 20_000
