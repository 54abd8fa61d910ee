"""Fixtures of the browser suite: the real `doppel serve` binary and a real
headless Chromium driven through ChromeDriver (Debian's `chromium` and
`chromium-driver`; .ci/run installs them)."""

import os
import pathlib
import shutil
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from doppel_server import ADULT, BUYER_SCOPES, Server  # noqa: E402,F401


@pytest.fixture(scope="module")
def server():
    s = Server()
    yield s
    s.stop()


def _find(env: str, *names: str) -> str:
    for candidate in (os.environ.get(env), *names):
        if candidate and (found := shutil.which(candidate)):
            return found
    raise RuntimeError(
        f"no {names[0]} found: install Debian's chromium and chromium-driver (or set ${env})"
    )


@pytest.fixture(scope="module")
def browser():
    # Selenium must not try to download a driver: this one is installed.
    os.environ.setdefault("SE_OFFLINE", "true")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = _find("CHROMIUM", "chromium", "chromium-browser", "google-chrome")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1024,768"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(_find("CHROMEDRIVER", "chromedriver")), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()
