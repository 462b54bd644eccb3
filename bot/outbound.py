"""Where the bot may connect: the one outbound policy behind every provider call and download.

Providers' answers and users' links are input, so a URL is fetched only when
- its scheme is http or https and it carries no user:password;
- its host (and port) is on the allowlist: each provider's configured base URL, its documented
  storage/CDN hosts (settings `*_ALLOWED_HOSTS`), and Discord's attachment CDN;
- the address actually connected to is public. A private, loopback, link-local, multicast or
  reserved address is reached only when the operator wrote that very address with its port
  (an IP literal or `localhost`) as a base URL or an allowlist entry: the sandbox on 127.0.0.1
  keeps working, while another loopback port, `169.254.169.254` or a name that resolves inward
  (DNS rebinding) is refused. The address check runs in the resolver aiohttp connects with, so
  the check and the connection use the same answer.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from bot.providers.base import InputRejected

DEFAULT_PORTS = {"http": 80, "https": 443}
#: Discord's attachment CDN (where users' files come from)
DISCORD_CDN_HOSTS = ("cdn.discordapp.com", "media.discordapp.net")


class Refused(InputRejected):
    """The outbound policy refused a URL or an address; `public` names the host, never a query."""


def is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """A global unicast address (not private, loopback, link-local, multicast, reserved, shared)."""
    mapped = getattr(ip, "ipv4_mapped", None)
    if mapped is not None:
        ip = mapped
    return ip.is_global and not ip.is_multicast


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class HostRule:
    """One allowlist entry: an exact host or `*.suffix`, on one port or (None) the scheme's default."""

    host: str
    port: int | None = None

    @classmethod
    def parse(cls, entry: str) -> HostRule:
        """`host`, `host:port`, `*.suffix`, `[::1]:8080`, or a whole URL (its origin is taken)."""
        entry = entry.strip()
        parts = urlsplit(entry if "//" in entry else f"//{entry}")
        host = (parts.hostname or "").lower()
        if not host:
            raise ValueError(f"not a host: {entry!r}")
        port = parts.port
        if port is None and parts.scheme in DEFAULT_PORTS:
            port = DEFAULT_PORTS[parts.scheme]
        return cls(host, port)

    def matches(self, host: str, port: int, scheme: str) -> bool:
        if self.port is None:
            if port != DEFAULT_PORTS.get(scheme):
                return False
        elif port != self.port:
            return False
        if self.host.startswith("*."):
            return host.endswith(self.host[1:]) and len(host) > len(self.host) - 1
        return host == self.host

    @property
    def inward(self) -> bool:
        """Written by the operator as a non-public address (or localhost) with its port."""
        if self.port is None or self.host.startswith("*."):
            return False
        ip = _ip(self.host)
        return self.host == "localhost" if ip is None else not is_public(ip)


@dataclass(frozen=True)
class OutboundPolicy:
    """The allowlist (None: any host, public addresses only) and the inward origins it names."""

    rules: tuple[HostRule, ...] | None = None
    inward: frozenset[tuple[str, int]] = field(default=frozenset())

    @classmethod
    def of(cls, entries: Iterable[str] | None) -> OutboundPolicy:
        if entries is None:
            return cls()
        rules = tuple(dict.fromkeys(HostRule.parse(e) for e in entries if e and e.strip()))
        return cls(rules, frozenset((r.host, r.port) for r in rules if r.inward and r.port is not None))

    @classmethod
    def from_settings(cls, settings: Any) -> OutboundPolicy:
        """Every provider's base URL and allowed hosts, plus Discord's CDN (and the Discord API
        origin the bot was pointed at, where the sandbox serves attachments)."""
        entries: list[str] = list(settings.discord_cdn_hosts)
        if settings.discord_api_url:
            entries.append(settings.discord_api_url)
        for section in (settings.viggle, settings.vid2scene, settings.scenario):
            entries.append(section.base_url)
            entries.extend(section.allowed_hosts)
        return cls.of(entries)

    # -- checks ---------------------------------------------------------------------------------
    def check_url(self, url: str) -> None:
        """Raise Refused unless `url` may be fetched (scheme, host, port, literal address)."""
        parts = urlsplit(str(url))
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS:
            raise Refused(f"The bot only fetches http(s) links, not {scheme or 'this'}: links.")
        try:
            host, port = (parts.hostname or "").lower(), parts.port or DEFAULT_PORTS[scheme]
        except ValueError:
            raise Refused("The link has an invalid port.") from None
        if not host:
            raise Refused("The link has no host.")
        if parts.username or parts.password:
            raise Refused("The bot does not fetch links with a user name or password in them.")
        if self.rules is not None and not any(r.matches(host, port, scheme) for r in self.rules):
            raise Refused(f"The bot does not fetch from {host}: it is not an allowed host.")
        ip = _ip(host)
        if ip is not None and not self.address_ok(host, port, ip):
            raise Refused(f"The bot does not fetch from {host}: a private or reserved address.")

    def check_user_url(self, url: str) -> None:
        """A link a user gave for a provider to fetch: any public host (the provider fetches it
        from the internet), never an inward address unless the operator configured that origin."""
        OutboundPolicy(None, self.inward).check_url(url)

    def address_ok(self, host: str, port: int, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return is_public(ip) or (host.lower(), port) in self.inward

    async def check_user_url_resolved(self, url: str) -> None:
        """`check_user_url` plus every address the host resolves to now (the provider will
        resolve it again later, so this is a filter against the obvious, not a guarantee)."""
        self.check_user_url(url)
        parts = urlsplit(url)
        host, port = (parts.hostname or "").lower(), parts.port or DEFAULT_PORTS[parts.scheme.lower()]
        if _ip(host) is not None:
            return
        import asyncio

        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError:
            raise Refused(f"The host {host} could not be found.") from None
        for info in infos:
            if not self.address_ok(host, port, ipaddress.ip_address(info[4][0].split("%")[0])):
                raise Refused(f"The bot does not pass on links to {host}: it points at a private or "
                              "reserved address.")


class PolicyResolver(AbstractResolver):
    """DNS answers filtered by the policy: the connector only ever sees allowed addresses."""

    def __init__(self, policy: OutboundPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self.inner = inner or aiohttp.ThreadedResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self.inner.resolve(host, port, family)
        allowed = [r for r in results if self.policy.address_ok(host, port, ipaddress.ip_address(r["host"]))]
        if not allowed:
            raise Refused(f"The bot does not connect to {host}: it resolves to a private or reserved address.")
        return allowed

    async def close(self) -> None:
        await self.inner.close()


def trace_config(policy: OutboundPolicy) -> aiohttp.TraceConfig:
    """A backstop for any request made on the session directly: the URL is checked before it is
    sent, and aiohttp's own redirect following is refused (Net follows redirects by hand)."""

    async def on_start(_session: Any, _ctx: Any, params: aiohttp.TraceRequestStartParams) -> None:
        policy.check_url(str(params.url))

    async def on_redirect(_session: Any, _ctx: Any, params: aiohttp.TraceRequestRedirectParams) -> None:
        raise Refused("The provider answered with a redirect the bot does not follow here.")

    config = aiohttp.TraceConfig()
    config.on_request_start.append(on_start)
    config.on_request_redirect.append(on_redirect)
    return config
