"""Logging that never prints a secret: every configured secret value is masked in every record."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from bot.redact import REGISTRY, Masker, secret_forms


class RedactSecrets(logging.Filter):
    """The same masking as user-facing text (bot/redact.py): these secrets in every form, and
    every secret registered since."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.mask = Masker(form for s in secrets for form in secret_forms(s))

    def _masked(self, text: str) -> str:
        return REGISTRY(self.mask(text))

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.mask and not REGISTRY:
            return True
        text = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        masked = self._masked(text)
        if record.exc_text:
            record.exc_text = self._masked(record.exc_text)
        if masked != text:
            record.msg, record.args = masked, None
        return True


class DropVoiceNotices(logging.Filter):
    """discord.py warns at every start that voice libraries are missing; this bot has no voice."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "voice will NOT be supported" not in record.getMessage()


def setup_logging(level: str, secrets: Iterable[str] = ()) -> None:
    handler = logging.StreamHandler()
    handler.addFilter(DropVoiceNotices())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("discord").setLevel(max(logging.INFO, logging.getLevelName(level)))


def secret_values(settings) -> list[str]:
    """Every secret in the settings, for masking."""
    values = []
    for item in (settings.discord_token, settings.viggle.api_key, settings.vid2scene.api_key,
                 settings.scenario.api_key, settings.scenario.api_secret):
        if item is not None:
            values.append(item.get_secret_value())
    url = settings.database_url.get_secret_value() if getattr(settings, "database_url", None) else ""
    if url:  # a PostgreSQL password inside DATABASE_URL
        from urllib.parse import urlsplit

        values.append(urlsplit(url).password or "")
    return [v for v in values if v]
