"""Light and dark: the page follows the system's scheme, and a person can choose either
(the toggle in the header, or Settings), the choice kept in the browser."""

from __future__ import annotations

from typing import Literal

from playwright.sync_api import Browser, Page, expect

from tests.api.conftest import Server
from tests.dashboard.conftest import LAPTOP

COLOURS = """() => {
  const body = getComputedStyle(document.body);
  return [body.backgroundColor, body.color];
}"""


def colours(page: Page) -> list[str]:
    """The page's background and text colours, as the browser computes them."""
    colours: list[str] = page.evaluate(COLOURS)
    return colours


def brightness(colour: str) -> float:
    red, green, blue = (int(n) for n in colour[colour.index("(") + 1 : -1].split(",")[:3])
    return (red + green + blue) / 3


def opened(browser: Browser, url: str, scheme: Literal["light", "dark"]) -> Page:
    page = browser.new_context(viewport=LAPTOP, color_scheme=scheme).new_page()
    page.goto(f"{url}/#/runs")
    expect(page.locator("table.runs")).to_have_attribute("data-loaded", "true")
    return page


class TestThemes:
    """What a person sees in light and in dark."""

    def test_the_system_scheme_and_the_toggle(self, browser: Browser, dash_server: Server) -> None:
        light = opened(browser, dash_server.url, "light")
        dark = opened(browser, dash_server.url, "dark")
        try:
            on_light, on_dark = colours(light), colours(dark)
            # dark text on a light page, and the other way round
            assert brightness(on_light[0]) > 200 > 60 > brightness(on_light[1]), on_light
            assert brightness(on_dark[0]) < 60 < 200 < brightness(on_dark[1]), on_dark
            # the toggle flips the light system's page to dark, and back
            light.locator("#theme-toggle").click()
            expect(light.locator("html")).to_have_attribute("data-theme", "dark")
            assert colours(light) == on_dark
            light.reload()  # kept in the browser
            expect(light.locator("html")).to_have_attribute("data-theme", "dark")
            assert colours(light) == on_dark
            light.locator("#theme-toggle").click()
            expect(light.locator("html")).to_have_attribute("data-theme", "light")
            assert colours(light) == on_light
            # and on a dark system, to light
            dark.locator("#theme-toggle").click()
            expect(dark.locator("html")).to_have_attribute("data-theme", "light")
            assert colours(dark) == on_light
        finally:
            light.context.close()
            dark.context.close()

    def test_the_theme_chosen_in_settings(self, browser: Browser, dash_server: Server) -> None:
        page = opened(browser, dash_server.url, "light")
        try:
            on_light = colours(page)
            page.goto(f"{dash_server.url}/#/settings")
            page.get_by_label("Theme").select_option("dark")
            page.get_by_role("button", name="Save").click()
            expect(page.locator("html")).to_have_attribute("data-theme", "dark")
            dark = colours(page)
            assert dark != on_light and brightness(dark[0]) < 60, dark
            page.get_by_label("Theme").select_option("auto")
            page.get_by_role("button", name="Save").click()
            expect(page.locator("html")).not_to_have_attribute("data-theme", "dark")
            assert colours(page) == on_light  # the system's again
        finally:
            page.context.close()
