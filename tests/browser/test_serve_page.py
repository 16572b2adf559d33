"""`streamdiff serve`'s page in a real browser (Debian's chromium + chromium-driver, driven by
selenium), with chromium's fake camera: the page loads, the camera starts, output frames arrive
and change, a prompt change reaches the session, and a screenshot is saved
($STREAMDIFF_SCREENSHOT, default build/serve-page.png).

Runs the CLI of the build ($STREAMDIFF_CLI, default build/release/streamdiff) on the committed
tiny model. Skipped when selenium or chromium is missing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLI = Path(os.environ.get("STREAMDIFF_CLI", ROOT / "build" / "release" / "streamdiff"))
SCREENSHOT = Path(os.environ.get("STREAMDIFF_SCREENSHOT", ROOT / "build" / "serve-page.png"))

webdriver = pytest.importorskip("selenium.webdriver")
if not shutil.which("chromium") or not shutil.which("chromedriver"):
    pytest.skip("chromium and chromium-driver are not installed", allow_module_level=True)


@pytest.fixture(scope="module")
def server():
    proc = subprocess.Popen(
        [str(CLI), "serve", "--model", str(ROOT / "tests/fixtures/tiny_sd"),
         "--taesd", str(ROOT / "tests/fixtures/taesd/tiny"), "--port", "0",
         "--width", "256", "--height", "256", "--dtype", "f32", "--threads", "1",
         "--prompt", "a photo of a cat"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = None
    lines = []
    deadline = time.time() + 60
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        m = re.search(r"open (http://\S+)", line)
        if m:
            url = m.group(1)
            break
    if url is None:
        proc.kill()
        pytest.fail("the server did not start:\n" + "".join(lines))
    yield url.rstrip("/")
    proc.terminate()
    assert proc.wait(timeout=30) == 0, "the server did not stop cleanly on SIGTERM"


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1000",
                 "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"):
        options.add_argument(flag)
    options.binary_location = shutil.which("chromium")
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver"))
    driver = webdriver.Chrome(options=options, service=service)
    yield driver
    driver.quit()


def wait_for(predicate, timeout=30.0, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def output_pixels(driver) -> str:
    """The output image's current frame, as a data URL (the MJPEG <img> drawn to a canvas)."""
    return driver.execute_script("""
        const img = document.getElementById('output');
        if (!img.naturalWidth) return '';
        const c = document.createElement('canvas');
        c.width = img.naturalWidth; c.height = img.naturalHeight;
        c.getContext('2d').drawImage(img, 0, 0);
        return c.toDataURL('image/png');""")


def stats(url):
    with urllib.request.urlopen(url + "/api/stats") as r:
        return json.load(r)


def test_page_camera_frames_prompt_and_screenshot(server, browser):
    browser.get(server + "/")
    wait_for(lambda: browser.execute_script("return document.getElementById('prompt').value"),
             what="the settings to load")
    assert browser.find_element("id", "prompt").get_attribute("value") == "a photo of a cat"
    browser.find_element("id", "start").click()
    # The camera starts and frames come back.
    wait_for(lambda: browser.execute_script(
        "return document.getElementById('input').videoWidth > 0"), what="the fake camera")
    first = wait_for(lambda: output_pixels(browser), what="the first output frame")
    wait_for(lambda: output_pixels(browser) != first, what="the output image to change")
    wait_for(lambda: "fps" in browser.find_element("id", "overlay").text, what="the fps overlay")
    # A prompt change reaches the session without a restart.
    prompt = browser.find_element("id", "prompt")
    prompt.clear()
    prompt.send_keys("a watercolor of a lighthouse")
    wait_for(lambda: any(s["prompt"] == "a watercolor of a lighthouse"
                         for s in stats(server)["sessions"]), what="the new prompt in the session")
    frames = wait_for(lambda: stats(server)["sessions"][0]["frames_out"] >= 5 and
                      stats(server)["sessions"][0]["frames_out"], what="five output frames")
    assert frames >= 5
    time.sleep(0.5)
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOT))
    assert SCREENSHOT.stat().st_size > 10000
    # Stop ends the session on the server.
    browser.find_element("id", "start").click()
    wait_for(lambda: stats(server)["queue_size"] == 0, what="the session to end")


def test_txt2img_tab_generates_as_you_type(server, browser):
    browser.get(server + "/")
    wait_for(lambda: browser.execute_script("return document.getElementById('prompt').value"),
             what="the settings to load")
    browser.find_element("id", "tab-txt").click()
    box = browser.find_element("id", "txt_prompt")
    box.clear()
    box.send_keys("a red bicycle")
    wait_for(lambda: browser.execute_script(
        "return document.getElementById('txt_output').naturalWidth") == 256,
        what="a txt2img image")
