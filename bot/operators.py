"""Who runs this bot: OPERATOR_IDS and the Discord application's owner(s).

Server managers rule their own server only; anyone can make a server and add the bot, so what
belongs to no server (provider objects made outside the bot on the operator's account) is the
operators' alone.
"""

from __future__ import annotations

import logging

import discord

log = logging.getLogger(__name__)


async def is_operator(interaction: discord.Interaction) -> bool:
    """OPERATOR_IDS, else the application's owner or team (discord.py asks Discord once, then caches)."""
    client = interaction.client
    settings = getattr(client, "settings", None)
    if interaction.user.id in set(getattr(settings, "operator_ids", None) or ()):
        return True
    is_owner = getattr(client, "is_owner", None)
    if is_owner is None:
        return False
    try:
        return bool(await is_owner(interaction.user))
    except discord.HTTPException:
        log.warning("could not ask Discord who owns the application; only OPERATOR_IDS count as operators")
        return False
