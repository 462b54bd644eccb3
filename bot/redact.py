"""Secrets never reach a user or a log: one registry of the bot's secret values and the forms they
travel in (Bearer tokens, Basic auth base64, URL-quoting), filled from the settings at start, and
`mask(text)` applied wherever a provider's or an error's words become a user's or a log's text.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

MASK = "***"
#: shorter values would mask ordinary words
MIN_SECRET = 4


def _b64_forms(raw: str) -> set[str]:
    data = raw.encode()
    forms = {base64.b64encode(data).decode(), base64.urlsafe_b64encode(data).decode()}
    return forms | {f.rstrip("=") for f in forms}


def secret_forms(*values: str) -> set[str]:
    """A secret as it may appear in text: as is, URL-quoted, base64 (alone, and for a pair
    key + secret, as the `key:secret` of HTTP Basic auth)."""
    forms: set[str] = set()
    live = [v for v in values if v]
    for value in live:
        forms |= {value, quote(value, safe="")} | _b64_forms(value)
    if len(live) == 2:
        forms |= _b64_forms(f"{live[0]}:{live[1]}")
    return {f for f in forms if len(f) >= MIN_SECRET}


class Masker:
    """Replaces every known form of every secret, longest first (so no form leaves a tail)."""

    def __init__(self, forms: Iterable[str] = ()) -> None:
        self._forms: set[str] = set()
        self._ordered: list[str] = []
        self.add(forms)

    def add(self, forms: Iterable[str]) -> None:
        self._forms |= {f for f in forms if f and len(f) >= MIN_SECRET}
        self._ordered = sorted(self._forms, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for form in self._ordered:
            if form in text:
                text = text.replace(form, MASK)
        return text

    def __bool__(self) -> bool:
        return bool(self._ordered)


#: the process's registry: filled by `register_settings` / `register_section` at start
REGISTRY = Masker()


def _plain(value: Any) -> str:
    if value is None:
        return ""
    getter = getattr(value, "get_secret_value", None)
    return str(getter() if getter else value)


def register_section(section: Any) -> None:
    """A provider's settings: its key, and for a key + secret pair, their Basic auth form too."""
    if section is None:
        return
    key, secret = _plain(getattr(section, "api_key", None)), _plain(getattr(section, "api_secret", None))
    REGISTRY.add(secret_forms(key, secret) if secret else secret_forms(key))


def register_settings(settings: Any) -> None:
    REGISTRY.add(secret_forms(_plain(settings.discord_token)))
    url = _plain(getattr(settings, "database_url", None))
    if url:  # a PostgreSQL password inside DATABASE_URL
        from urllib.parse import urlsplit

        REGISTRY.add(secret_forms(urlsplit(url).password or ""))
    for section in (settings.viggle, settings.vid2scene, settings.scenario):
        register_section(section)


def mask(text: str) -> str:
    """`text` with every registered secret (in every form) replaced by ***."""
    return REGISTRY(text) if text else text
