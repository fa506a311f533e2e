"""A real browser for tests: the system's headless Chromium (Debian's chromium + chromium-driver), via Selenium.

`.ci/run` installs both. Elsewhere the browser tests are skipped with the reason, unless
`KARTRA_MCP_TEST_REQUIRE_BROWSER=1` makes a missing browser a failure (CI sets it).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

REQUIRED = os.environ.get("KARTRA_MCP_TEST_REQUIRE_BROWSER") == "1"


def _find(*names: str) -> str | None:
    return next((found for name in names if (found := shutil.which(name))), None)


@pytest.fixture(scope="session")
def chromium() -> Iterator[WebDriver]:
    binary = _find("chromium", "chromium-browser", "google-chrome")
    driver_path = _find("chromedriver")
    if binary is None or driver_path is None:
        message = "needs chromium and chromedriver (apt-get install chromium chromium-driver)"
        if REQUIRED:
            pytest.fail(message)
        pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--no-proxy-server"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def browser(chromium: WebDriver) -> Iterator[WebDriver]:
    """The shared Chromium, starting each test with no cookies and a blank page."""
    chromium.get("about:blank")
    chromium.delete_all_cookies()
    yield chromium
    chromium.get("about:blank")


def wait_for(driver: WebDriver, element_id: str) -> None:
    """Wait until the page that navigation leads to has this element (a click's navigation is not waited on)."""
    WebDriverWait(driver, 20).until(expected_conditions.presence_of_element_located((By.ID, element_id)))


def press(driver: WebDriver, button_id: str) -> str:
    """Press a button on the page (as the keyboard or a click would) and return the outcome heading."""
    try:
        WebDriverWait(driver, 30).until(expected_conditions.element_to_be_clickable((By.ID, button_id)))
    except TimeoutException:
        pytest.fail(f"no {button_id!r} button on {driver.current_url}: {driver.page_source[-2000:]}")
    driver.find_element(By.ID, button_id).click()
    WebDriverWait(driver, 30).until(expected_conditions.presence_of_element_located((By.ID, "outcome")))
    return driver.find_element(By.ID, "outcome").text


def text_of(driver: WebDriver, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).text


def visit_and_press(driver: WebDriver, url: str, button_id: str) -> str:
    driver.get(url)
    return press(driver, button_id)
