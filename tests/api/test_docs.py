"""The OpenAPI document and the documentation pages: behind the API keys when there are
keys, and served whole by the server itself (no CDN), so they work offline."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.api.conftest import Server
from tests.api.helpers import assert_error

PAGES = ["/docs", "/redoc"]


def _references(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', html)


class TestWithKeys:
    """Every route but /healthz needs a key; the pages also take it as ``?api_key=``."""

    @pytest.mark.parametrize("path", ["/openapi.json", *PAGES, "/docs/assets/swagger-ui-bundle.js"])
    async def test_no_key_no_docs(self, keyed_server: Server, path: str) -> None:
        async with httpx.AsyncClient(base_url=keyed_server.url) as anonymous:
            assert_error(await anonymous.get(path), 401, "unauthenticated")
            wrong = await anonymous.get(path, params={"api_key": "nope"})
            assert_error(wrong, 401, "unauthenticated")
            assert (await anonymous.get("/healthz")).status_code == 200

    async def test_openapi_with_a_key(self, keyed_server: Server) -> None:
        async with httpx.AsyncClient(base_url=keyed_server.url) as http:
            document = await http.get("/openapi.json", headers={"X-API-Key": "key-b"})
            assert document.status_code == 200
            assert "/v1/runs" in document.json()["paths"]
            # the document takes the key as a header only: a URL is easily shared
            by_query = await http.get("/openapi.json", params={"api_key": "key-b"})
            assert_error(by_query, 401, "unauthenticated")

    @pytest.mark.parametrize("page", PAGES)
    async def test_a_page_opened_with_its_key(self, keyed_server: Server, page: str) -> None:
        async with httpx.AsyncClient(base_url=keyed_server.url) as browser:
            response = await browser.get(page, params={"api_key": "key-a"})
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/html")
            assert response.headers["cache-control"] == "no-store"
            assert response.headers["referrer-policy"] == "no-referrer"
            references = _references(response.text)
            assert references
            for url in references:
                assert url.startswith("/docs/assets/") and url.endswith("?api_key=key-a")
                asset = await browser.get(url)
                assert asset.status_code == 200, url
                assert len(asset.content) > 1_000
            # the page's script sends the key as a header for the document
            assert '"/openapi.json"' in response.text and "Bearer" in response.text


class TestWithoutKeys:
    """With no keys configured the pages need none, and are still whole."""

    @pytest.mark.parametrize("page", PAGES)
    async def test_the_pages_work_offline(self, client: httpx.AsyncClient, page: str) -> None:
        response = await client.get(page)
        assert response.status_code == 200
        assert "http://" not in response.text and "https://" not in response.text
        for url in _references(response.text):
            assert url.startswith("/docs/assets/")
            assert (await client.get(url)).status_code == 200
        assert (await client.get("/openapi.json")).status_code == 200

    async def test_only_known_assets(self, client: httpx.AsyncClient) -> None:
        for name in ("nope.js", "..%2Fcore.py", "__init__.py"):
            assert_error(await client.get(f"/docs/assets/{name}"), 404, "not_found")
