"""The bot's outbound policy for tests: the loopback services a test runs are allowed by their exact
host:port, the way an operator configures the sandbox; anything else on loopback stays refused."""

from __future__ import annotations

from typing import Any

from bot.net import Net
from bot.outbound import OutboundPolicy


def origins(*services: Any) -> list[str]:
    """Every origin of each service: a sandbox (all its apps), the Discord emulator, a FileHost, a URL."""
    out: list[str] = []
    for service in services:
        if isinstance(service, str):
            out.append(service)
        elif getattr(service, "urls", None):
            out += list(service.urls.values())
        elif getattr(service, "base_url", None):
            out.append(service.base_url)
        elif getattr(service, "base", None):
            out.append(service.base)
        else:
            raise ValueError(f"no origin known for {service!r} (started yet?)")
    return out


def sandbox_net(*services: Any) -> Net:
    return Net(policy=OutboundPolicy.of(origins(*services)))
