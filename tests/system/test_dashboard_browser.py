"""The dashboard in a real headless Chromium (Debian's chromium and chromedriver, driven
by Selenium), with a screenshot kept in test-artifacts/."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import requests

from tests.support.pipelines import example_spec
from tests.support.server import ROOT


def test_the_dashboard_in_a_real_browser(browser, start_server, example_data, tmp_path, keypair):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    server = start_server(
        DATABASE_URL=f"sqlite:///{tmp_path}/specstore.db",
        AUTH_PUBLIC_KEY=keypair.public_pem,
        OUTPUT_DIR=str(tmp_path / "output"),
    )
    requests.post(
        server.url + "/source/upload",
        json=example_spec(example_data),
        headers={"Auth-Token": keypair.token("alice")},
        timeout=10,
    ).raise_for_status()

    browser.get(server.url + "/")
    rows = browser.find_elements(By.CSS_SELECTOR, "#datasets tbody tr")
    assert [row.find_element(By.TAG_NAME, "a").text for row in rows] == ["alice/gdp"]
    rows[0].find_element(By.TAG_NAME, "a").click()

    # The page refreshes itself until the run ends.
    WebDriverWait(browser, 60, poll_frequency=0.5).until(
        lambda driver: driver.find_element(By.ID, "state").text == "SUCCEEDED"
    )
    assert "done: 6 rows" in browser.find_element(By.ID, "log").text
    assert "dump_to_sql" in browser.find_element(By.ID, "pipelines").text
    # Where the outputs are: the publication's descriptor, linked.
    link = browser.find_element(By.ID, "datapackage").get_attribute("href")
    assert link == server.url + "/data/alice/gdp/1/datapackage.json"
    # It reads at a laptop's width and a phone's: nothing wider than the window, the log's
    # long lines wrapped rather than cut off at the right edge.
    for width in (1280, 390):
        browser.set_window_size(width, 900)
        assert _overflow(browser) == {"page": False, "log": False, "pipelines": False}, width
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    screenshot = ARTIFACTS / "dashboard-dataset.png"
    assert browser.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 10_000
    assert browser.save_screenshot(str(ARTIFACTS / "dashboard-dataset-390.png"))
    browser.set_window_size(1280, 900)
    browser.get(server.url + "/")
    assert browser.save_screenshot(str(ARTIFACTS / "dashboard-index.png"))
    # A dataset that is not there: a page that says so, in the browser.
    browser.get(server.url + "/datasets/alice/nope")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Not found"
    assert browser.find_element(By.ID, "error").text == "no dataset alice/nope"


def _overflow(browser) -> dict[str, bool]:
    """Whether the page, and each of the log and the pipeline, is wider than its box."""
    return browser.execute_script(
        """
        const wider = (e) => e.scrollWidth > e.clientWidth + 1;
        return {
            page: document.documentElement.scrollWidth > window.innerWidth + 1,
            log: wider(document.getElementById("log")),
            pipelines: wider(document.getElementById("pipelines")),
        };
        """
    )


ARTIFACTS = Path(os.environ.get("SPECSTORE_ARTIFACTS") or ROOT / "test-artifacts")


CHROMIUM = "/usr/bin/chromium"


CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            pytest.fail(
                f"{path} is missing: `make browser` installs Debian's chromium", pytrace=False
            )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,900",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()
