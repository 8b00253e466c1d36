"""Where a webhook may point, checked when it is made and again at every attempt."""

from __future__ import annotations

import ipaddress

import pytest

from culm.webhooks.address import UrlRefused, is_public, parse_url, resolve
from culm.webhooks.delivery import attempt, new_client
from culm.webhooks.signing import new_secret
from tests.webhooks.receiver import Answer, Receiver


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("1.1.1.1", True),
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("127.8.9.10", False),
        ("10.0.0.1", False),
        ("172.31.255.255", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("255.255.255.255", False),
        ("::1", False),
        ("::", False),
        ("fe80::1", False),
        ("fd12:3456::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("::ffff:8.8.8.8", True),
        ("2002:7f00:1::", False),  # 6to4 around 127.0.0.1
        ("ff02::1", False),
    ],
)
def test_public_addresses(address: str, public: bool) -> None:
    assert is_public(ipaddress.ip_address(address)) is public


@pytest.mark.parametrize(
    "url",
    [
        "example.com/hook",
        "/hook",
        "ftp://example.com/",
        "file:///etc/passwd",
        "http://user:pw@example.com/",
        "http://example.com/#x",
        "http://" + "a" * 2050 + ".com/",
    ],
)
def test_malformed_urls_are_refused(url: str) -> None:
    with pytest.raises(UrlRefused):
        parse_url(url)


async def test_every_address_of_a_name_must_be_public() -> None:
    """``localhost`` resolves to loopback: refused unless private addresses are allowed."""
    with pytest.raises(UrlRefused, match="not a public address"):
        await resolve(parse_url("http://localhost/x"), allow_private=False, timeout=5)
    target = await resolve(parse_url("http://localhost:81/x"), allow_private=True, timeout=5)
    assert target.address.is_loopback
    assert target.pinned.host == str(target.address) and target.pinned.port == 81


class TestAttempt:
    async def test_the_address_is_checked_again_when_delivering(self, receiver: Receiver) -> None:
        """An endpoint whose name now resolves to a private address (DNS rebinding) is not
        posted to: the attempt is refused before it connects, and not retried."""
        async with new_client(5) as client:
            outcome = await attempt(
                client,
                receiver.url("x"),
                new_secret(),
                "msg_1",
                b"{}",
                allow_private=False,
                timeout=5,
            )
        assert outcome.refused and not outcome.retryable
        assert outcome.error is not None and "not a public address" in outcome.error
        assert receiver.received == []

    async def test_it_connects_to_the_checked_address_and_names_the_host(
        self, receiver: Receiver
    ) -> None:
        secret = new_secret()
        receiver.expect("y", secret)
        url = f"http://localhost:{receiver.port}/y"
        async with new_client(5) as client:
            outcome = await attempt(
                client, url, secret, "msg_2", b"{}", allow_private=True, timeout=5
            )
        assert outcome.ok and outcome.response == "ok"
        [post] = receiver.received
        assert post.verified and post.headers["host"] == f"localhost:{receiver.port}"

    async def test_redirects_are_not_followed(self, receiver: Receiver) -> None:
        """A 3xx could point anywhere, the server's own network included: it is a failure."""
        receiver.script("r", Answer(307, {"Location": "http://169.254.169.254/"}))
        async with new_client(5) as client:
            outcome = await attempt(
                client,
                receiver.url("r"),
                new_secret(),
                "msg_3",
                b"{}",
                allow_private=True,
                timeout=5,
            )
        assert outcome.status_code == 307 and not outcome.retryable
        assert len(receiver.received) == 1


async def test_an_ipv6_literal_is_pinned_as_itself() -> None:
    target = await resolve(parse_url("http://[::1]:81/x?y=1"), allow_private=True, timeout=5)
    assert str(target.pinned) == "http://[::1]:81/x?y=1"
    assert target.url.netloc == b"[::1]:81"
