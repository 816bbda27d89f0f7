"""The pages in a real headless Chromium: the live page on a fake camera, the upload page by hand.

Uses Debian's chromium and chromium-driver only (nothing downloaded); the fake camera plays a
y4m file written here. Skips, with the reason, only where that browser is not installed (fails under CI=true).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="livefilter serve needs fastapi (pip install livefilter)")
pytest.importorskip("httpx", reason="the web tests need httpx (pip install .[test])")

from conftest import build_generator, require_tool  # noqa: E402
from webkit import (CANVAS_PIXELS, Server, browser_missing, camera_frames, chrome, jpeg,  # noqa: E402
                    red_picture, write_y4m)

MISSING = browser_missing()


@pytest.fixture(autouse=True)
def _browser_installed() -> None:
    """Skip where the browser is missing; under CI=true fail (CI installs it)."""
    require_tool(MISSING is None, f"a browser for the page tests: {MISSING}")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    styles = root / "styles"
    build_generator(styles / "swap.onnx", downsample=2, tanh=True, mix=np.eye(3)[::-1] * 0.9)
    build_generator(styles / "plain.onnx")
    srv = Server(styles, root / "cache", "--style", "swap", log=root / "log.txt")
    yield srv
    srv.stop()


@pytest.fixture()
def browser(tmp_path):
    y4m = write_y4m(tmp_path / "camera.y4m", camera_frames())
    driver = chrome(tmp_path / "profile", y4m)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def wait_for(condition, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_live_page_shows_filtered_frames(server, browser):
    browser.get(server.url + "/live")
    wait_for(lambda: browser.execute_script("return window.livefilterStats && window.livefilterStats.framesShown") > 10,
             what="10 filtered frames on the live page")
    camera = browser.execute_script(CANVAS_PIXELS, "capture")
    first = browser.execute_script(CANVAS_PIXELS, "out")
    assert camera["r"] > camera["b"] + 80, camera  # the fake camera is red
    assert first["b"] > first["r"] + 60, first  # the filter ("swap") made it blue
    assert (first["w"], first["h"]) == (camera["w"], camera["h"]) == (320, 180)
    time.sleep(0.7)
    second = browser.execute_script(CANVAS_PIXELS, "out")
    assert second["row"] != first["row"]  # the bar moves: the canvas changes over time
    stats = browser.execute_script("return window.livefilterStats")
    assert stats["fps"] > 0 and stats["framesShown"] > 10 and stats["latencyMsP95"] > 0
    assert stats["errors"] == 0
    # side by side: camera left, filtered right, same connection
    browser.find_element("id", "sbs").click()
    wait_for(lambda: browser.execute_script(CANVAS_PIXELS, "out")["w"] == 640, what="side-by-side canvas")
    # style switch without reconnecting: "plain" keeps the red
    shown = browser.execute_script("return window.livefilterStats.framesShown")
    browser.find_element("id", "sbs").click()
    browser.execute_script("const s = document.getElementById('style'); s.value = 'plain';"
                           "s.dispatchEvent(new Event('change'));")
    wait_for(lambda: browser.execute_script("return window.livefilterStats.style") == "plain", what="style ack")
    wait_for(lambda: (lambda p: p["w"] == 320 and p["r"] > p["b"] + 80)(browser.execute_script(CANVAS_PIXELS, "out")),
             what="unfiltered-looking red frames in the plain style")
    assert browser.execute_script("return window.livefilterStats.framesShown") > shown


def test_upload_page_finishes_a_job_through_the_ui(server, browser, tmp_path):
    photo = tmp_path / "my photo.jpg"
    photo.write_bytes(jpeg(red_picture(200, 150)))
    browser.get(server.url + "/")
    wait_for(lambda: browser.execute_script("return document.getElementById('style').options.length") == 2,
             what="the style list")
    browser.find_element("id", "files").send_keys(str(photo))
    wait_for(lambda: browser.execute_script("return document.querySelector('.item[data-state=done]') !== null"),
             what="the job to finish in the page")
    link = browser.find_element("css selector", ".item a.download")
    assert "/api/jobs/" in link.get_attribute("href") and link.get_attribute("download") == "my photo-anime.jpg"
    wait_for(lambda: browser.execute_script("const i = document.querySelector('.compare img.after');"
                                            "return i && i.complete && i.naturalWidth"), what="the result image")
    assert browser.execute_script("return document.querySelector('.compare img.after').naturalWidth") == 200
    status = browser.find_element("css selector", ".item .status").text
    assert status.startswith("done")
    zip_link = browser.find_element("id", "zip")
    assert "disabled" not in zip_link.get_attribute("class") and "results.zip?ids=" in zip_link.get_attribute("href")
