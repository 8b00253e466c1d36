"""``serve`` refuses to expose an unauthenticated API beyond loopback."""

from __future__ import annotations

import pytest

import culm
from culm.api.server import check_bind, is_loopback, serve
from tests.agents import app


class TestBind:
    """Without keys only loopback; with keys anywhere."""

    @pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"])
    def test_loopback(self, host: str) -> None:
        assert is_loopback(host)
        check_bind(host, culm.Settings())

    @pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.com", ""])
    def test_elsewhere_needs_keys(self, host: str) -> None:
        assert not is_loopback(host)
        with pytest.raises(culm.InvalidInput, match="no API keys are configured"):
            check_bind(host, culm.Settings())
        check_bind(host, culm.Settings(api_keys={"k": "t"}))

    def test_serve_refuses_before_listening(self) -> None:
        with pytest.raises(culm.InvalidInput, match=r"refusing to listen on 0\.0\.0\.0"):
            serve(app, culm.Settings(database_url="sqlite:///:memory:"), host="0.0.0.0", port=9)

    def test_keys_from_the_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("CULM_API_KEYS", "k1=alpha, k2=beta,")
        assert culm.Settings().api_keys == {"k1": "alpha", "k2": "beta"}
        monkeypatch.setenv("CULM_API_KEYS", "k1")
        with pytest.raises(ValueError, match="key=tenant"):
            culm.Settings()
