"""`python -m bot check`: is the configuration complete, and does each service answer?"""

from __future__ import annotations

import asyncio

from bot.config import Settings
from bot.net import Net
from bot.outbound import OutboundPolicy
from bot.providers import REGISTRY, build_providers
from bot.redact import mask, register_settings


async def _check_discord(token: str) -> str:
    import discord

    http = discord.http.HTTPClient(asyncio.get_running_loop())
    try:
        user = await http.static_login(token)
        return f"logged in as {user['username']}"
    finally:
        await http.close()


async def run_checks(settings: Settings) -> bool:
    ok = True
    register_settings(settings)
    if settings.discord_token is None:
        print("discord:   DISCORD_TOKEN not set (use `python -m bot demo` to try without it)")
        ok = False
    else:
        try:
            print(f"discord:   {await asyncio.wait_for(_check_discord(settings.discord_token.get_secret_value()), 20)}")
        except Exception as exc:  # the message names the failure, never the token
            print(f"discord:   FAILED ({type(exc).__name__})")
            ok = False
    net = Net(policy=OutboundPolicy.from_settings(settings))
    try:
        providers = build_providers(settings, net)
        for section in REGISTRY:
            provider = providers.get(section)
            if provider is None:
                print(f"{section + ':':<11}not configured (commands answer that it is switched off)")
                continue
            try:
                print(f"{section + ':':<11}{mask(await asyncio.wait_for(provider.check(), 20))}")
            except Exception as exc:
                print(f"{section + ':':<11}FAILED ({mask(getattr(exc, 'public', type(exc).__name__))})")
                ok = False
    finally:
        await net.close()
    print(f"database:  {settings.database_path}")
    return ok
