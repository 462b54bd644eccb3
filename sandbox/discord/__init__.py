"""A faithful loopback Discord for tests and trials: REST, gateway websocket and attachment CDN
on one aiohttp port, driven by a real discord.py client.

It enforces what Discord enforces: the 3 s initial-response deadline (10062 after it), one
initial response (40060), 15-minute interaction tokens (50027), message limits (50035: content
2000, 10 embeds / 6000 chars, component rules), 10 files, per-file upload limit and 25 MiB per
request (413/40005), nonce de-duplication, per-route rate limits with Discord's headers and 429
bodies, channel permissions (50013/50001) and edits of messages older than an hour (30046).
With more than one guild (`add_guild`), the gateway routes each guild's events to the shard that
owns it, as Discord does for sharded bots.
"""

from .emulator import DiscordEmulator
from .interactions import CommandInputError, Interaction, InteractionFailed
from .state import Message, StoredFile

__all__ = ["DiscordEmulator", "Interaction", "InteractionFailed", "CommandInputError", "Message", "StoredFile"]
