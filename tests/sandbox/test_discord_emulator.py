"""A real discord.py bot against the loopback Discord: what the bot and its users would see."""

from __future__ import annotations

import asyncio
import contextlib
import io
import re

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.ext import commands

from sandbox.discord import DiscordEmulator

UPLOAD_LIMIT = 64 * 1024


class PingButton(discord.ui.DynamicItem[discord.ui.Button], template=r"ping:(?P<n>\d+)"):
    """A button that survives restarts: its state is in the custom_id."""

    def __init__(self, n: int) -> None:
        super().__init__(discord.ui.Button(label="Ping", custom_id=f"ping:{n}"))
        self.n = n

    @classmethod
    async def from_custom_id(cls, interaction, item, match: re.Match[str]):
        return cls(int(match["n"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"clicked {self.n}", ephemeral=True)


class SplatGroup(app_commands.Group, name="splat", description="Gaussian splats"):
    @app_commands.command(description="Make a splat from a video")
    async def create(self, interaction: discord.Interaction, title: str, video: discord.Attachment) -> None:
        await interaction.response.defer(thinking=True)
        data = await video.read()
        await interaction.followup.send(f"{title}: {len(data)} bytes",
                                        file=discord.File(io.BytesIO(data.upper()), "result.txt"))


class EmuBot(commands.Bot):
    def __init__(self) -> None:
        super().__init__(command_prefix="!", intents=discord.Intents.default(), guild_ready_timeout=0.05,
                         chunk_guilds_at_startup=False)
        self.errors: list[Exception] = []
        self.held: list[discord.Interaction] = []

    async def before_identify_hook(self, shard_id, *, initial=False):  # no 5 s sleep on re-identify
        return None

    async def setup_hook(self) -> None:
        self.add_dynamic_items(PingButton)
        self.tree.add_command(SplatGroup())
        self.tree.on_error = self._on_tree_error

        @self.tree.command(description="Answer with a button")
        async def ping(interaction: discord.Interaction) -> None:
            view = discord.ui.View(timeout=None)
            view.add_item(PingButton(7))
            await interaction.response.send_message("pong", view=view)

        @self.tree.command(description="Too slow: answers after the deadline without deferring")
        async def slow(interaction: discord.Interaction) -> None:
            await asyncio.sleep(0.5)
            await interaction.response.send_message("finally")

        @self.tree.command(description="Defer and keep the interaction for later")
        async def hold(interaction: discord.Interaction) -> None:
            await interaction.response.defer()
            self.held.append(interaction)

    async def _on_tree_error(self, interaction, error) -> None:
        self.errors.append(getattr(error, "original", error))


@pytest.fixture
async def emu():
    emulator = DiscordEmulator(upload_limit=UPLOAD_LIMIT, ack_deadline=0.3)
    await emulator.start()
    emulator.point_discord_py()
    yield emulator
    emulator.unpatch()
    await emulator.stop()


@pytest.fixture
async def bot(emu):
    client = EmuBot()
    task = asyncio.create_task(client.start(emu.bot_token))
    ready = asyncio.create_task(client.wait_until_ready())
    done, _ = await asyncio.wait({ready, task}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        ready.cancel()
        task.result()
    assert ready in done, "bot did not become ready"
    yield client
    await client.close()
    with contextlib.suppress(Exception, asyncio.CancelledError):
        await asyncio.wait_for(task, 5)


@pytest.fixture
def alice(emu) -> int:
    return emu.add_user("alice")


async def synced(bot: EmuBot, emu: DiscordEmulator) -> None:
    guild = discord.Object(emu.guild_id)
    bot.tree.copy_global_to(guild=guild)
    await bot.tree.sync(guild=guild)


async def test_login_ready_and_sync_registers_the_commands(emu, bot):
    assert bot.user.id == emu.bot_user_id and emu.connected
    channel = bot.get_channel(emu.channel_id)
    assert channel.name == "general" and channel.permissions_for(channel.guild.me).send_messages
    await synced(bot, emu)
    registered = {c["name"]: c for c in emu.commands[emu.guild_id]}
    assert set(registered) == {"splat", "ping", "slow", "hold"}
    create = registered["splat"]["options"][0]
    assert create["name"] == "create" and create["type"] == 1
    assert [(o["name"], o["type"]) for o in create["options"]] == [("title", 3), ("video", 11)]
    assert all(c.auth == "bot" for c in emu.calls)


async def test_slash_with_attachment_defers_downloads_and_follows_up_with_a_file(emu, bot, alice):
    await synced(bot, emu)
    att = emu.attachment(b"hello splat", "clip.mp4")
    ix = await emu.slash("splat create", user=alice, options={"title": "garden", "video": att})
    assert await ix.wait_ack() == 5
    reply = await ix.wait_reply()
    assert reply.content == "garden: 11 bytes" and not reply.ephemeral
    assert reply.attachments[0]["filename"] == "result.txt"
    assert emu.read_attachment(reply.attachments[0]) == b"HELLO SPLAT"
    # the attachment URL works for anyone who has it, as on the real CDN
    async with aiohttp.ClientSession() as http, http.get(reply.attachments[0]["url"]) as resp:
        assert resp.status == 200 and await resp.read() == b"HELLO SPLAT"
    assert not ix.failed and ix.ack_latency < 0.3
    with pytest.raises(ValueError, match="required options missing"):
        await emu.slash("splat create", user=alice, options={"title": "no video"})


async def test_a_command_that_does_not_answer_in_time_fails_and_its_late_answer_gets_10062(emu, bot, alice):
    ix = await emu.slash("slow", user=alice)
    await emu.wait_for(lambda: ix.failed, timeout=2)
    await emu.wait_for(lambda: bot.errors, timeout=2)
    error = bot.errors[0]
    assert isinstance(error, discord.NotFound) and error.code == 10062
    assert ix.response_type is None and ix.replies == []


async def test_followup_after_token_expiry_gets_50027(emu, bot, alice):
    ix = await emu.slash("hold", user=alice)
    await ix.wait_ack()
    emu.expire_interaction_tokens()
    with pytest.raises(discord.HTTPException) as info:
        await bot.held[0].followup.send("too late")
    assert info.value.status == 401 and info.value.code == 50027


async def test_second_initial_response_is_refused(emu, bot, alice):
    ix = await emu.slash("hold", user=alice)
    await ix.wait_ack()
    with pytest.raises(discord.HTTPException) as info:
        await bot.held[0].response._parent._state.http.request(discord.http.Route(
            "POST", "/interactions/{iid}/{token}/callback", iid=ix.id, token=ix.token), json={"type": 5})
    assert info.value.code == 40060


async def test_upload_limits_and_message_limits(emu, bot):
    channel = bot.get_channel(emu.channel_id)
    with pytest.raises(discord.HTTPException) as info:
        await channel.send(file=discord.File(io.BytesIO(b"x" * (UPLOAD_LIMIT + 1)), "big.bin"))
    assert info.value.status == 413 and info.value.code == 40005
    with pytest.raises(discord.HTTPException) as info:
        await channel.send("x" * 2001)
    assert info.value.status == 400 and info.value.code == 50035 and "content" in info.value.text
    # discord.py 2.7.1 sends 11 files; Discord refuses them
    with pytest.raises(discord.HTTPException) as info:
        await channel.send(files=[discord.File(io.BytesIO(b"a"), f"{i}.txt") for i in range(11)])
    assert info.value.status == 400 and info.value.code == 50035 and "attachments" in info.value.text
    assert emu.messages() == []


async def test_a_repeated_nonce_returns_the_original_message(emu, bot):
    channel = bot.get_channel(emu.channel_id)
    first = await channel.send("result", nonce="job-42")
    again = await channel.send("result", nonce="job-42")
    assert again.id == first.id and len(emu.messages()) == 1


async def test_a_button_click_reaches_the_dynamic_item(emu, bot, alice):
    await synced(bot, emu)
    ix = await emu.slash("ping", user=alice)
    message = await ix.wait_reply()
    assert message.content == "pong"
    click = await emu.click(message, "ping:7", user=alice)
    reply = await click.wait_reply()
    assert reply.content == "clicked 7" and reply.ephemeral and reply.visible_to == alice


async def test_allowed_mentions_decide_who_is_pinged(emu, bot, alice):
    channel = bot.get_channel(emu.channel_id)
    quiet = await channel.send(f"done <@{alice}> @everyone", allowed_mentions=discord.AllowedMentions.none())
    loud = await channel.send(f"done <@{alice}>")
    assert emu.message(quiet.id).pinged_user_ids == [] and not emu.message(quiet.id).pinged_everyone
    assert emu.message(loud.id).pinged_user_ids == [alice]
    reply = await channel.send(f"<@{alice}> see above", reference=loud, allowed_mentions=discord.AllowedMentions(users=[discord.Object(alice)]))
    assert emu.message(reply.id).pinged_user_ids == [alice]
    assert emu.message(reply.id).message_reference["message_id"] == str(loud.id)


async def test_a_rate_limited_route_answers_429_and_discord_py_retries(emu, bot):
    emu.rate_limits.set("message_create", limit=2, per=0.5)
    path = f"/api/v10/channels/{emu.channel_id}/messages"
    async with aiohttp.ClientSession(headers={"Authorization": f"Bot {emu.bot_token}"}) as http:
        for text in ("one", "two"):  # another client uses up the bucket
            async with http.post(emu.base_url + path, json={"content": text}) as resp:
                assert resp.status == 200
        async with http.post(emu.base_url + path, json={"content": "three"}) as resp:
            assert resp.status == 429 and resp.headers["Via"] and (await resp.json())["retry_after"] > 0
    sent = await bot.get_channel(emu.channel_id).send("from the bot")
    statuses = [c.status for c in emu.calls if c.path == path and (c.json or {}).get("content") == "from the bot"]
    assert statuses[-1] == 200 and 429 in statuses
    assert [m.content for m in emu.messages()] == ["one", "two", "from the bot"] and sent.content == "from the bot"


async def test_an_injected_403_surfaces_as_forbidden_and_permissions_are_enforced(emu, bot):
    channel = bot.get_channel(emu.channel_id)
    emu.inject("POST", r"/channels/\d+/messages$", 403, {"message": "Missing Permissions", "code": 50013})
    with pytest.raises(discord.Forbidden) as info:
        await channel.send("hi")
    assert info.value.code == 50013
    from sandbox.discord import permissions as P
    await emu.set_bot_permissions(emu.channel_id, P.VIEW_CHANNEL | P.READ_MESSAGE_HISTORY | P.SEND_MESSAGES)
    await emu.wait_for(lambda: not channel.permissions_for(channel.guild.me).attach_files, timeout=2)
    with pytest.raises(discord.Forbidden):
        await channel.send(file=discord.File(io.BytesIO(b"a"), "a.txt"))
    plain = await channel.send("text", embed=discord.Embed(title="hidden"))
    assert emu.message(plain.id).embeds == [] and emu.message(plain.id).dropped_embeds[0]["title"] == "hidden"


async def test_a_passthrough_fault_posts_the_message_and_only_answers_late(emu, bot):
    """What a crash just after sending looks like: Discord has the message, the bot not yet its id."""
    channel = bot.get_channel(emu.channel_id)
    emu.faults.add("POST", r"/channels/\d+/messages$", 200, passthrough=True, delay=0.5)
    sending = asyncio.create_task(channel.send("late answer"))
    await emu.wait_for(lambda: any(m.content == "late answer" for m in emu.messages()), timeout=2)
    assert not sending.done()
    sent = await asyncio.wait_for(sending, 3)
    assert emu.message(sent.id).content == "late answer"


async def test_history_after_lists_oldest_first_through_discord_py(emu, bot):
    emu.rate_limits.set("message_create", limit=10, per=5.0)  # 5/5 s would make discord.py sleep 5 s
    channel = bot.get_channel(emu.channel_id)
    sent = [await channel.send(f"m{i}") for i in range(5)]
    later = [m.content async for m in channel.history(after=sent[1], oldest_first=True)]
    assert later == ["m2", "m3", "m4"]
    newest = [m.content async for m in channel.history(limit=2)]
    assert newest == ["m4", "m3"]


async def test_gateway_drop_resumes_and_interactions_still_arrive(emu, bot, alice):
    await synced(bot, emu)
    await emu.disconnect_gateway()
    await emu.wait_for(lambda: emu.gateway.resumes == 1 and emu.connected, timeout=5)
    ix = await emu.slash("ping", user=alice)
    assert (await ix.wait_reply()).content == "pong"
