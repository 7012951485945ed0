"""The threshold page in a real headless Chromium: slider, propose as marketing, approve as sales."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.api.conftest import Server, start_server, stop_server
from tests.conftest import make_config
from training.pipeline import train


@pytest.fixture(scope="module")
def page_server(tmp_path_factory: pytest.TempPathFactory, demo_dir: Path) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("page")
    train(make_config(home, demo_dir, promote=True))
    srv = start_server(home)
    yield srv
    stop_server(srv)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver, "Debian's chromium and chromium-driver are needed: `make test` installs them"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1400,1000",
    ):
        options.add_argument(flag)
    drv = webdriver.Chrome(service=Service(driver), options=options)
    yield drv
    drv.quit()


def connect(browser: webdriver.Chrome, srv: Server, role: str) -> WebDriverWait:
    browser.get(f"{srv.url}/ui")
    key = browser.find_element(By.ID, "key")
    key.clear()
    key.send_keys(srv.keys[role], Keys.ENTER)
    wait = WebDriverWait(browser, 20, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException))
    wait.until(ec.text_to_be_present_in_element((By.ID, "whoami"), f"({role})"))
    wait.until(lambda b: b.find_element(By.ID, "slider").is_enabled())
    return wait


def test_marketing_proposes_sales_approves_in_the_browser(
    page_server: Server, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    wait = connect(browser, page_server, "marketing")
    assert browser.find_element(By.ID, "active-version").get_attribute("data-version") == "0"
    # Nothing agreed yet: the page says plainly that the cut-offs in force were not approved by both sides.
    assert "Not approved by both sides" in browser.find_element(By.ID, "not-approved").text
    assert len(browser.find_elements(By.CSS_SELECTOR, "#chart polyline")) == 3

    # Moving the slider updates the figures live.
    slider = browser.find_element(By.ID, "slider")
    before = (browser.find_element(By.ID, "cutoff").text, browser.find_element(By.ID, "qpw").text)
    slider.send_keys(Keys.END)
    for _ in range(15):
        slider.send_keys(Keys.ARROW_LEFT)
    after = (browser.find_element(By.ID, "cutoff").text, browser.find_element(By.ID, "qpw").text)
    assert after != before and after[0] != "–"
    assert browser.find_element(By.ID, "days").text.endswith(" d")  # median days to hand-over
    assert "test-window leads" in browser.find_element(By.ID, "basis").text

    # Asking for a capacity shows the figures of the cut-off found, in leads per week.
    Select(browser.find_element(By.ID, "query-kind")).select_by_value("leads_per_week")
    browser.find_element(By.ID, "query-value").send_keys("50")
    browser.find_element(By.ID, "find").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "message"), "leads handed over per week"))
    assert float(browser.find_element(By.ID, "qpw").text) <= 50
    # An unreachable precision is answered as such, with the best reachable one.
    Select(browser.find_element(By.ID, "query-kind")).select_by_value("min_precision")
    value = browser.find_element(By.ID, "query-value")
    value.clear()
    value.send_keys("1")
    browser.find_element(By.ID, "find").click()
    wait.until(
        lambda b: (
            "Unreachable" in b.find_element(By.ID, "message").text or "Cut-off" in b.find_element(By.ID, "message").text
        )
    )
    message = browser.find_element(By.ID, "message").text
    assert "best reachable precision" in message or "precision 100.0%" in message

    slider.send_keys(Keys.END)
    for _ in range(15):
        slider.send_keys(Keys.ARROW_LEFT)
    after = (browser.find_element(By.ID, "cutoff").text, browser.find_element(By.ID, "qpw").text)
    chosen = float(after[0])

    browser.find_element(By.ID, "reason").send_keys("sales can take this many")
    browser.find_element(By.ID, "propose").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "message"), "Proposed version"))
    proposal = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#pending .proposal")))
    version = proposal.get_attribute("data-version")
    assert "waiting for the other side" in proposal.text  # marketing cannot approve its own

    wait = connect(browser, page_server, "sales")
    wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, f"button.approve[data-version='{version}']"))).click()
    wait.until(lambda b: b.find_element(By.ID, "active-version").get_attribute("data-version") == version)
    assert f"{chosen:.4f}" in browser.find_element(By.ID, "active").text
    assert "agreed by both sides" in browser.find_element(By.ID, "active").text
    assert browser.find_elements(By.ID, "not-approved") == []
    row = browser.find_element(By.CSS_SELECTOR, f"#history tr[data-version='{version}']")
    assert "active" in row.text and "approved by" in row.text

    shot_dir = Path(os.environ.get("LEADSCORE_SCREENSHOT_DIR", tmp_path))
    shot_dir.mkdir(parents=True, exist_ok=True)
    shot = shot_dir / "threshold-page.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
