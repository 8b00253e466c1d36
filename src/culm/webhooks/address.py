"""Where a webhook may point: URL checks, and the resolved addresses a delivery may reach.

A webhook must not be a way into the server's own network, so unless settings allow it every
address its host resolves to must be public: not loopback, private, link-local (cloud
metadata lives there), shared, reserved, multicast or unspecified, also when wrapped in an
IPv6 form (IPv4-mapped, 6to4, Teredo). The check runs when the endpoint is created and again
at every attempt, and the attempt connects to the very address it checked, so a name that
resolves elsewhere later (DNS rebinding) gains nothing.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass

import httpx

from culm.errors import InvalidInput

MAX_URL_LENGTH = 2048

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UrlRefused(InvalidInput):
    """The URL is malformed, or reaches an address webhooks may not reach."""

    code = "webhook_url_refused"


@dataclass(frozen=True, slots=True)
class Target:
    """A URL resolved and checked: connect to ``address``, say ``url``'s host."""

    url: httpx.URL
    address: IPAddress

    @property
    def pinned(self) -> httpx.URL:
        """``url`` with its host replaced by the checked address."""
        return self.url.copy_with(host=str(self.address))


def parse_url(text: str) -> httpx.URL:
    """The URL if it is an absolute http(s) URL with a host, no user info and no fragment."""
    if len(text) > MAX_URL_LENGTH:
        raise UrlRefused(f"a webhook URL may be at most {MAX_URL_LENGTH} characters")
    try:
        url = httpx.URL(text)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise UrlRefused(f"{text!r} is not a valid URL: {exc}") from None
    if url.scheme not in ("http", "https"):
        raise UrlRefused(
            f"a webhook URL must be http:// or https://, not {url.scheme or 'relative'}"
        )
    if not url.host:
        raise UrlRefused("a webhook URL needs a host")
    if url.userinfo:
        raise UrlRefused("a webhook URL may not carry a user name or password")
    if url.fragment:
        raise UrlRefused("a webhook URL may not have a #fragment")
    return url


def is_public(address: IPAddress) -> bool:
    """True when ``address`` is on the public internet (unwrapping IPv6 forms of IPv4)."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is not None:
            return is_public(embedded)
        if address.teredo is not None:
            return all(is_public(a) for a in address.teredo)
    return address.is_global and not address.is_multicast


async def resolve(url: httpx.URL, *, allow_private: bool, timeout: float) -> Target:
    """Resolve ``url``'s host and check every address it has; the target to connect to."""
    host = url.host
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [literal]
    else:
        port = url.port or (443 if url.scheme == "https" else 80)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, TimeoutError) as exc:
            raise UrlRefused(f"cannot resolve {host}: {exc or 'timed out'}") from None
        addresses = []
        for info in infos:
            address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
            if address not in addresses:
                addresses.append(address)
        if not addresses:
            raise UrlRefused(f"{host} resolves to no address")
    if not allow_private:
        for address in addresses:
            if not is_public(address):
                raise UrlRefused(
                    f"{host} resolves to {address}, which is not a public address; webhooks "
                    "may not reach loopback or private networks (see CULM_WEBHOOK_ALLOW_PRIVATE)"
                )
    return Target(url, addresses[0])
