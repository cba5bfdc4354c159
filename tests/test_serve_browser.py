"""The `mfsr serve` page in a real headless Chromium (Debian's chromium + chromium-driver,
installed by .ci/run): open a real clip, wait for tracking, pick a moment, see every method,
export; bad clips show a message on the page; no request leaves the machine.

Set MFSR_SCREENSHOTS=<folder> to keep the screenshots (docs/serve.md uses them).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from serve_helpers import CLIP, Served

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the dev extra")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER),
    reason="chromium / chromium-driver not installed (apt-get install chromium chromium-driver;"
    " .ci/run installs them)",
)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    if not CLIP.is_file():
        pytest.skip(f"shared data not found at {CLIP} (CI always has ../shared/data)")
    server = Served(tmp_path_factory.mktemp("serve-browser"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager: never download drivers
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1100",
        # every connection outside this machine is refused: no name resolves, and all but
        # loopback goes to a proxy port where nothing listens
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        "--proxy-server=http://127.0.0.1:9",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def requested_urls(driver) -> list[str]:
    """URLs of every request the page made since the last call (Chrome's network log)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def wait(driver, condition, timeout=240):
    return WebDriverWait(driver, timeout, poll_frequency=0.3).until(condition)


def images_loaded(driver, selector: str, count: int, width: int) -> bool:
    return driver.execute_script(
        "const imgs = [...document.querySelectorAll(arguments[0])];"
        "return imgs.length === arguments[1] &&"
        " imgs.every(i => i.complete && i.naturalWidth === arguments[2]);",
        selector,
        count,
        width,
    )


def screenshot(driver, name: str) -> None:
    folder = os.environ.get("MFSR_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(folder) / name))


def fetch_in_page(driver, url: str) -> dict:
    return driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0]).then(async r => done({status: r.status,"
        " type: r.headers.get('content-type'), text: await r.text()}));",
        url,
    )


def test_a_clip_to_a_compared_and_exported_face(served, browser, tmp_path):
    browser.get(served.address)
    wait(browser, lambda d: d.find_element(By.ID, "model").text.startswith("model: "))
    browser.find_element(By.ID, "file-input").send_keys(str(CLIP))
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#timeline .window")) >= 10)
    assert "shrunk" in browser.find_element(By.ID, "note").text
    screenshot(browser, "serve-main.png")
    browser.find_element(By.ID, "best").click()
    wait(browser, lambda d: images_loaded(d, "#compare img", 5, 128), timeout=120)
    methods = [
        i.get_attribute("data-method")
        for i in browser.find_elements(By.CSS_SELECTOR, "#compare img")
    ]
    assert methods == ["lr", "bicubic", "classical", "model", "model_flip"]
    model = browser.find_element(By.CSS_SELECTOR, "#compare img[data-method=model]")
    ActionChains(browser).move_to_element_with_offset(model, 10, -20).perform()
    loupes = browser.find_elements(By.CSS_SELECTOR, "#compare .loupe")
    assert [loupe.value_of_css_property("display") for loupe in loupes] == ["block"] * 5
    screenshot(browser, "serve-compare.png")
    browser.find_element(By.ID, "show-frames").click()
    wait(browser, lambda d: images_loaded(d, "#frames img", 7, 32), timeout=60)

    sheet = browser.find_element(By.ID, "export-sheet")
    record = browser.find_element(By.ID, "export-record")
    assert sheet.get_attribute("download").endswith("_sheet.png")
    assert record.get_attribute("download").endswith("_record.json")
    got = fetch_in_page(browser, sheet.get_attribute("href"))
    assert (got["status"], got["type"]) == (200, "image/png")
    got = fetch_in_page(browser, record.get_attribute("href"))
    doc = json.loads(got["text"])
    assert doc["input"]["path"] == CLIP.name and len(doc["input"]["sha256"]) == 64
    assert len(doc["windows"][0]["frames"]) == 7 and doc["model"]["run_name"] == "quick-identity"

    # bad clips: a message on the page, and the server goes on serving
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is a text file, not a video\n" * 20)
    browser.find_element(By.ID, "file-input").send_keys(str(fake))
    wait(browser, lambda d: "not a readable video" in d.find_element(By.ID, "error").text)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(CLIP.read_bytes()[:60_000])
    browser.find_element(By.ID, "file-input").send_keys(str(cut))
    wait(browser, lambda d: d.find_element(By.ID, "error").text.startswith("cut.mp4: "))
    tabs = browser.find_elements(By.CSS_SELECTOR, "#clips button")
    assert [t.get_attribute("textContent") for t in tabs] == [
        f"{CLIP.name}ready",
        "notes.mp4failed",
        "cut.mp4failed",
    ]
    tabs[0].click()
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#timeline .window")) >= 10)
    assert not browser.find_element(By.ID, "error").is_displayed()


def test_the_page_makes_no_request_outside_the_machine(served, browser):
    requested_urls(browser)  # forget what the other test requested
    browser.get_log("browser")
    browser.get(served.address)
    wait(browser, lambda d: d.find_element(By.ID, "model").text.startswith("model: "))
    urls = requested_urls(browser)
    assert any(u.endswith("/static/app.js") for u in urls), urls
    outside = [u for u in urls if not u.startswith((served.base, "data:", "blob:"))]
    assert outside == []
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
