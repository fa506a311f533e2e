"""A real browser for tests: the system's headless Chromium (Debian's chromium + chromium-driver), via Selenium.

`.ci/run` installs both. Elsewhere the browser tests are skipped with the reason, unless
`KARTRA_MCP_TEST_REQUIRE_BROWSER=1` makes a missing browser a failure (CI sets it).

On a busy machine Chromium's renderer can miss chromedriver's deadlines ("Timed out receiving
message from renderer") while the page still loads fine, and a session can fail to start. So
navigation waits are long, a navigation that overruns is followed by waiting for what the page
must show (which fails with the page's source if it never does), and starting the browser is
tried again. What the tests check stays: the same elements and headings must appear.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

REQUIRED = os.environ.get("KARTRA_MCP_TEST_REQUIRE_BROWSER") == "1"
# Generous, because they are only reached when something is wrong or the machine is very busy.
PAGE_LOAD_SECONDS = 120
WAIT_SECONDS = 60
_STARTS = 3


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
    driver = _start(options, driver_path)
    driver.set_page_load_timeout(PAGE_LOAD_SECONDS)
    try:
        yield driver
    finally:
        driver.quit()


def _start(options: webdriver.ChromeOptions, driver_path: str) -> WebDriver:
    """A new Chromium session; a start that fails under load (e.g. DevToolsActivePort) is tried again."""
    for attempt in range(_STARTS):
        try:
            return webdriver.Chrome(options=options, service=Service(driver_path))
        except WebDriverException:
            if attempt == _STARTS - 1:
                raise
    raise AssertionError("unreachable")


@pytest.fixture
def browser(chromium: WebDriver) -> Iterator[WebDriver]:
    """The shared Chromium, starting each test with no cookies and a blank page."""
    chromium.get("about:blank")
    chromium.delete_all_cookies()
    yield chromium
    chromium.get("about:blank")


def _waiting(driver: WebDriver) -> WebDriverWait[WebDriver]:
    # A page being replaced by the next one answers lookups with these for a moment: keep looking.
    return WebDriverWait(driver, WAIT_SECONDS, ignored_exceptions=[WebDriverException])


def _navigate(navigate: Callable[[], object]) -> str:
    """Navigate; what chromedriver says when it loses patience ("cannot determine loading status", "Timed out
    receiving message from renderer") is returned, not raised: the page goes on loading, and is judged by what it shows.
    """
    try:
        navigate()
    except WebDriverException as exc:
        return f" (navigating: {exc.msg})"
    return ""


def _shown(driver: WebDriver, element_id: str, what: str, note: str = "") -> WebElement:
    try:
        found: WebElement = _waiting(driver).until(expected_conditions.presence_of_element_located((By.ID, element_id)))
    except TimeoutException:
        pytest.fail(f"no {what} on {driver.current_url}{note}: {driver.page_source[-2000:]}")
    return found


def wait_for(driver: WebDriver, element_id: str) -> None:
    """Wait until the page that navigation leads to has this element (a click's navigation is not waited on)."""
    _shown(driver, element_id, f"{element_id!r} element")


def press(driver: WebDriver, button_id: str) -> str:
    """Press a button on the page (as the keyboard or a click would) and return the outcome heading."""
    try:
        button: WebElement = _waiting(driver).until(expected_conditions.element_to_be_clickable((By.ID, button_id)))
    except TimeoutException:
        pytest.fail(f"no {button_id!r} button on {driver.current_url}: {driver.page_source[-2000:]}")
    # Clicked once only: pressing again could send a second answer.
    note = _navigate(button.click)
    return _shown(driver, "outcome", "outcome heading", note).text


def text_of(driver: WebDriver, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).text


def visit_and_press(driver: WebDriver, url: str, button_id: str) -> str:
    _navigate(lambda: driver.get(url))
    return press(driver, button_id)
