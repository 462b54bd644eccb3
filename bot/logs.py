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


class BriefReconnects(logging.Filter):
    """discord.py logs each lost gateway connection with a full traceback (at ERROR), although it
    reconnects by itself: an operator sees a crash where there is none. A network failure is told
    in one line, as a warning; any other exception keeps its traceback (that one is a bug)."""

    NOTICES = ("Attempting a reconnect", "Failed to connect for shard_id")

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("discord.") or not record.exc_info or record.exc_info[1] is None:
            return True
        exc = record.exc_info[1]
        if not str(record.msg).startswith(self.NOTICES) or not _network_failure(exc):
            return True
        said = " ".join(str(exc).split())[:200]
        record.msg, record.args = f"{record.getMessage()} (connection lost: {type(exc).__name__}"\
                                  f"{': ' + said if said else ''})", None
        record.exc_info, record.exc_text = None, None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def _network_failure(exc: BaseException) -> bool:
    import aiohttp
    import discord

    return isinstance(exc, OSError | TimeoutError | aiohttp.ClientError | discord.ConnectionClosed
                      | discord.GatewayNotFound)


def setup_logging(level: str, secrets: Iterable[str] = ()) -> None:
    handler = logging.StreamHandler()
    handler.addFilter(DropVoiceNotices())
    handler.addFilter(BriefReconnects())
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
