"""The dashboard pages: through the test client, and in a real headless Chromium
(Debian's chromium and chromedriver, driven by Selenium) with a screenshot kept in
test-artifacts/."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import requests

from tests.conftest import post_event, upload
from tests.support.pipelines import ROOT, example_spec

ARTIFACTS = Path(os.environ.get("SPECSTORE_ARTIFACTS") or ROOT / "test-artifacts")
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def test_the_index_lists_published_datasets_newest_first(client, keypair):
    token = keypair.token("alice")
    upload(client, example_spec("http://files.test/", dataset="older"), token)
    upload(client, example_spec("http://files.test/", dataset="newer"), token)
    upload(
        client, example_spec("http://files.test/", dataset="hidden", findability="private"), token
    )
    bobs = example_spec("http://files.test/", dataset="other", ownerid="bob")
    upload(client, bobs, keypair.token("bob"))

    page = client.get("/")
    assert page.status_code == 200
    assert page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert html.index("bob/other") < html.index("alice/newer") < html.index("alice/older")
    assert "alice/hidden" not in html
    mine = client.get("/", query_string={"owner": "alice", "jwt": token}).get_data(as_text=True)
    assert "alice/hidden" in mine and "bob/other" not in mine


def test_a_dataset_page_shows_its_run_and_refreshes_while_it_runs(client, keypair):
    upload(client, example_spec("http://files.test/"), keypair.token("alice"))
    post_event(client, {"pipeline_id": "alice/gdp", "event": "progress", "log": ["loading gdp"]})
    running = client.get("/datasets/alice/gdp").get_data(as_text=True)
    assert '<meta http-equiv="refresh" content="3">' in running
    assert "loading gdp" in running and "RUNNING" in running

    post_event(
        client,
        {"pipeline_id": "alice/gdp", "event": "finish", "success": False, "errors": ["it broke"]},
    )
    failed = client.get("/datasets/alice/gdp").get_data(as_text=True)
    assert 'http-equiv="refresh"' not in failed
    assert "it broke" in failed and "FAILED" in failed


def test_private_dataset_pages_are_only_for_their_owner(client, keypair):
    token = keypair.token("alice")
    upload(client, example_spec("http://files.test/", findability="private"), token)
    assert client.get("/datasets/alice/gdp").status_code == 404
    assert client.get("/datasets/alice/gdp", query_string={"jwt": token}).status_code == 200


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
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    screenshot = ARTIFACTS / "dashboard-dataset.png"
    assert browser.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 10_000
    browser.get(server.url + "/")
    assert browser.save_screenshot(str(ARTIFACTS / "dashboard-index.png"))
