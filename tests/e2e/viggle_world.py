"""The bot with the real Viggle client against the Viggle sandbox, as the Viggle e2e tests run it."""

from __future__ import annotations

from typing import Any

from bot.config import ViggleSettings
from bot.providers.viggle import ViggleProvider
from sandbox.viggle import ViggleSandbox
from tests.e2e.harness import BotHarness
from tests.support.policy import sandbox_net


def viggle_harness(emu, tmp_path, viggle: ViggleSandbox, *more_hosts: Any,
                   extensions: tuple[str, ...] = ("cogs.jobs", "cogs.viggle"), **options: Any) -> BotHarness:
    """A bot polling Viggle quickly (every 0.05–0.2 s), allowed to reach the sandbox, Discord and
    `more_hosts`; `options` are the bot's settings."""
    settings = ViggleSettings(api_key=viggle.api_key, base_url=viggle.base_url, poll_min_seconds=0.05,
                              poll_max_seconds=0.2)
    return BotHarness(emu, tmp_path, lambda: {"viggle": ViggleProvider(settings, sandbox_net(viggle, emu, *more_hosts))},
                      extensions=extensions, status_edit_seconds=0.15, **options)


def quick_channel_limits(emu) -> None:
    """Discord's per-channel limits still apply, in short windows so the tests stay quick."""
    for bucket in ("message_create", "message_edit"):
        emu.rate_limits.set(bucket, limit=5, per=0.5)
