"""Text from users and providers is shown, never interpreted: no markdown, no masked links, no
mentions, no secrets. `plain` is for a user's own words (names, file names, instructions);
`quiet` is for the bot's sentences that quote them or a provider (keeps the bot's formatting).
"""

from __future__ import annotations

import re

import discord

from bot.redact import mask

#: `[text](url)`: a masked link, which shows words and hides where it leads
_MASKED_LINK = re.compile(r"(?<!\\)\[(?=[^\]\n]*\]\()")
_MENTION = re.compile(r"<(@[!&]?|#)(?=\d)")


def _no_mentions(text: str) -> str:
    """@everyone/@here and <@id>/<@&id>/<#id> shown as text (a zero-width space breaks them)."""
    return _MENTION.sub(lambda m: f"<{m.group(1)}\u200b", discord.utils.escape_mentions(text))


def plain(text: str | None) -> str:
    """A user's or provider's words as literal text."""
    return _no_mentions(discord.utils.escape_markdown(mask(text or "")))


def quiet(text: str | None) -> str:
    """The bot's own sentence that may quote others: secrets masked, masked links and mentions
    defused, the rest of the markdown kept."""
    return _no_mentions(_MASKED_LINK.sub(r"\\[", mask(text or "")))
