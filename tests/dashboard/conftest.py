"""A real culm server with the dashboard's test agents, and a real headless Chromium
(Debian's ``chromium`` package) driven by Playwright."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from tests.api.conftest import KEYS, Server, start_server

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CULM_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts" / "dashboard"
"""Screenshots and measured figures of the last test run, for people to look at."""

APP = {"CULM_TEST_APP": "tests.dashboard.agents:app"}
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LAPTOP = {"width": 1440, "height": 900}

# deadlines for what a page should show: generous, the machine is shared with the server
expect.set_options(timeout=15_000)


# package scope: Playwright's sync API holds an event loop on this thread while it runs,
# which the asyncio tests of other packages must not find there
@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as running:
        yield running


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        raise RuntimeError(
            f"{CHROMIUM} is missing: `make test` installs Debian's chromium package "
            "(apt-get install chromium), or point CULM_CHROMIUM at a Chromium"
        )
    launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
    yield launched
    launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser context (its own storage) and page, sized like a laptop screen."""
    context = browser.new_context(viewport=LAPTOP)
    context.set_default_timeout(15_000)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    yield opened
    context.close()
    assert not errors, f"the page raised: {errors}"


@pytest.fixture(scope="session")
def dash_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server without API keys running the dashboard's test agents."""
    gates = tmp_path_factory.mktemp("gates")
    running = start_server(tmp_path_factory.mktemp("dash"), **APP, DASH_GATES=str(gates))
    yield running
    running.stop()


@pytest.fixture(scope="session")
def keyed_dash_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The same with API keys for two tenants."""
    keys = ",".join(f"{key}={tenant}" for key, tenant in KEYS.items())
    running = start_server(tmp_path_factory.mktemp("dash-keyed"), **APP, CULM_API_KEYS=keys)
    yield running
    running.stop()


@pytest.fixture
def http(dash_server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=dash_server.url, timeout=30) as client:
        yield client


@pytest.fixture
def gates(dash_server: Server) -> Path:
    """Where a test opens the gates the ``steered`` agent waits at (a file per gate)."""
    return Path(dash_server.env["DASH_GATES"])


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
