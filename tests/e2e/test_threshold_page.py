"""The threshold page in a real headless Chromium: slider, propose as marketing, approve as sales."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
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
from tests.api.test_results import hot_lead
from tests.conftest import make_config
from training.pipeline import train


@pytest.fixture(scope="module")
def page_server(tmp_path_factory: pytest.TempPathFactory, demo_dir: Path) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("page")
    train(make_config(home, demo_dir, promote=True, tune=False))
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


def test_the_results_view_shows_realised_against_promised_and_why_sales_rejected(
    page_server: Server, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    """Three leads handed over 15 weeks ago (two won within the horizon) and one last week, through the API."""
    now = datetime.now(UTC)
    long_ago, recently = now - timedelta(weeks=15), now - timedelta(days=7)
    ids = ["page-won-1", "page-won-2", "page-lost", "page-recent"]
    with page_server.client() as c:
        for lead_id, as_of in zip(ids, [long_ago, long_ago, long_ago, recently], strict=True):
            body = hot_lead(lead_id, as_of, created=as_of - timedelta(days=26))
            answer = c.post("/v1/score", json=body, headers=page_server.headers("crm")).json()
            assert answer["qualified"], answer
        outcomes = [
            {"lead_id": "page-won-1", "outcome": "won", "closed_at": (long_ago + timedelta(days=20)).isoformat()},
            {"lead_id": "page-won-2", "outcome": "won", "closed_at": (long_ago + timedelta(days=40)).isoformat()},
            {"lead_id": "page-lost", "outcome": "lost", "closed_at": (long_ago + timedelta(days=30)).isoformat()},
        ]
        assert (
            c.post("/v1/outcomes", json={"outcomes": outcomes}, headers=page_server.headers("crm")).status_code == 200
        )
        verdict = {"lead_id": "page-lost", "verdict": "rejected", "reason": "no_budget"}
        assert c.post("/v1/feedback", json=verdict, headers=page_server.headers("sales")).status_code == 200
        deadline = time.monotonic() + 15  # the score log is written in the background
        while time.monotonic() < deadline:
            report = c.get("/v1/performance", headers=page_server.headers("crm")).json()
            if report["total"]["handed_over"] >= 4:
                break
            time.sleep(0.2)
    week = report["cohorts"][0]["cohort"]

    wait = connect(browser, page_server, "marketing")
    row = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, f"#results-weeks-table tr[data-week='{week}']")))
    cells = [td.text for td in row.find_elements(By.TAG_NAME, "td")]
    assert cells[1] == "mature" and cells[2] == "3"
    assert cells[4].startswith("66.7% (") and cells[6] == "2 / 3"  # realised precision and its 95% interval
    assert cells[8] == "0 / 1 / 0"
    recent = [r for r in browser.find_elements(By.CSS_SELECTOR, "#results-weeks-table tr") if "maturing" in r.text]
    assert len(recent) == 1 and recent[0].find_elements(By.TAG_NAME, "td")[2].text == "1"  # handed over last week
    # every week of the 26, empty ones too (an empty week matters against capacity): one row and one bar each
    weeks = browser.find_elements(By.CSS_SELECTOR, "#results-weeks-table tr")
    assert 26 <= len(weeks) <= 27 and len(browser.find_elements(By.CSS_SELECTOR, "#results-chart rect.bar")) == len(
        weeks
    )
    assert sum(row.find_elements(By.TAG_NAME, "td")[2].text != "0" for row in weeks) == 2  # hand-overs in two weeks
    assert sum(row.find_elements(By.TAG_NAME, "td")[9].text == "1 / 0" for row in weeks) == 2  # the two wins' weeks
    assert len(browser.find_elements(By.CSS_SELECTOR, "#results-chart circle.realised")) == 1
    assert browser.find_elements(By.ID, "capacity")  # the promised leads per week, as a dashed line
    source = browser.find_element(By.CSS_SELECTOR, "#reasons-table tr[data-source='referral']")
    assert source.find_element(By.CSS_SELECTOR, "td[data-reason='no_budget']").text == "1"
    assert browser.find_element(By.ID, "drift-status").text == "not enough data"
    assert "4 leads handed over" in browser.find_element(By.ID, "results-basis").text

    shot_dir = Path(os.environ.get("LEADSCORE_SCREENSHOT_DIR", tmp_path))
    shot_dir.mkdir(parents=True, exist_ok=True)
    browser.execute_script("document.getElementById('results').scrollIntoView()")
    shot = shot_dir / "results-view.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
