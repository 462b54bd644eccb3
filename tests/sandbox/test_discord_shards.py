"""The sandbox Discord with several guilds routes gateway events as Discord does for shards:
READY and GUILD_CREATE list a session's own guilds, each guild's events (interactions included)
reach only the sessions on its shard, DMs reach shard 0, an unsharded session gets everything,
and a shard nobody holds gets nothing. Spoken to over a raw websocket, frame by frame."""

from __future__ import annotations

import asyncio
import contextlib
import json

import aiohttp
import pytest

from sandbox.discord import DiscordEmulator
from sandbox.discord.gateway import shard_of
from sandbox.discord.interactions import InteractionFailed


@pytest.fixture
async def emu():
    emulator = DiscordEmulator(ack_deadline=0.3)
    await emulator.start()
    yield emulator
    await emulator.stop()


class Client:
    """One gateway connection: IDENTIFY (with or without a shard), then collect dispatches."""

    def __init__(self, http: aiohttp.ClientSession, emu: DiscordEmulator, shard: list[int] | None) -> None:
        self.http, self.emu, self.shard = http, emu, shard
        self.frames: list[dict] = []
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task | None = None

    async def connect(self) -> Client:
        self.ws = await self.http.ws_connect(self.emu.gateway_url)
        hello = await self.ws.receive_json()
        assert hello["op"] == 10
        identify = {"token": self.emu.bot_token, "intents": 53575421, "properties": {}}
        if self.shard is not None:
            identify["shard"] = self.shard
        await self.ws.send_json({"op": 2, "d": identify})
        self._reader = asyncio.create_task(self._read())
        await self.emu.wait_for(lambda: self.events("READY"), timeout=5)
        return self

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.frames.append(json.loads(msg.data))

    def events(self, name: str) -> list[dict]:
        return [f["d"] for f in self.frames if f.get("op") == 0 and f.get("t") == name]

    def guild_ids(self, name: str) -> list[int]:
        return [int(d.get("guild_id") or d.get("id")) for d in self.events(name)]

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader


@pytest.fixture
async def connect(emu):
    clients: list[Client] = []
    async with aiohttp.ClientSession() as http:
        async def open_one(shard: list[int] | None) -> Client:
            client = await Client(http, emu, shard).connect()
            clients.append(client)
            return client

        yield open_one
        for client in clients:
            await client.close()


@pytest.fixture
def two_guilds(emu) -> tuple[int, int]:
    """A guild on shard 0 and one on shard 1 of 2 (besides the default guild, wherever it falls)."""
    g0, g1 = emu.add_guild("zero", shard=(0, 2)), emu.add_guild("one", shard=(1, 2))
    assert (shard_of(g0, 2), shard_of(g1, 2)) == (0, 1)
    return g0, g1


def test_guild_ids_land_on_the_asked_shard_and_stay_increasing(emu):
    ids = [emu.add_guild(f"g{n}", shard=(n % 5, 5)) for n in range(10)]
    assert [(g >> 22) % 5 for g in ids] == [n % 5 for n in range(10)]
    assert ids == sorted(ids) and emu.ids.next() > ids[-1]


async def test_ready_and_guild_create_list_only_the_shards_own_guilds(emu, two_guilds, connect):
    g0, g1 = two_guilds
    default_shard = shard_of(emu.guild_id, 2)
    s0, s1, whole = await connect([0, 2]), await connect([1, 2]), await connect(None)
    await emu.wait_for(lambda: all(len(c.events("GUILD_CREATE")) == len(c.events("READY")[0]["guilds"])
                                   for c in (s0, s1, whole)), timeout=5)
    expect = {0: {g0}, 1: {g1}}
    expect[default_shard].add(emu.guild_id)
    for client, shard in ((s0, 0), (s1, 1)):
        ready = client.events("READY")[0]
        assert ready["shard"] == [shard, 2]
        assert {int(g["id"]) for g in ready["guilds"]} == expect[shard]
        assert set(client.guild_ids("GUILD_CREATE")) == expect[shard]
    assert "shard" not in whole.events("READY")[0]
    assert set(whole.guild_ids("GUILD_CREATE")) == {emu.guild_id, g0, g1}


async def test_a_guilds_interaction_reaches_only_its_shard(emu, two_guilds, connect):
    g0, g1 = two_guilds
    s0, s1 = await connect([0, 2]), await connect([1, 2])
    alice = emu.add_user("alice", guild_id=g1)
    ix = await emu.slash("echo", user=alice, options={"text": "hi"}, channel_id=emu.general_channel(g1))
    await emu.wait_for(lambda: s1.events("INTERACTION_CREATE"), timeout=5)
    got = s1.events("INTERACTION_CREATE")[0]
    assert got["guild_id"] == str(g1) and got["channel_id"] == str(emu.general_channel(g1))
    assert got["channel"]["guild_id"] == str(g1) and got["member"]["user"]["id"] == str(alice)
    assert ix.sessions == [emu.gateway.current.id] and emu.gateway.sessions[ix.sessions[0]].shard == [1, 2]
    # the other shard saw nothing of that guild, then or after
    channel = emu.add_channel("more", guild_id=g1)
    await emu.wait_for(lambda: s1.events("CHANNEL_CREATE"), timeout=5)
    assert not s0.events("INTERACTION_CREATE") and not s0.events("CHANNEL_CREATE")
    assert g1 not in s0.guild_ids("GUILD_CREATE")
    assert s1.events("CHANNEL_CREATE")[0]["id"] == str(channel)
    by_shard = {tuple(s.shard): s for s in emu.gateway.sessions.values()}
    assert by_shard[(0, 2)].got("INTERACTION_CREATE") == [] and by_shard[(1, 2)].got("INTERACTION_CREATE") == [g1]


async def test_dms_go_to_shard_zero_and_an_unsharded_session_gets_everything(emu, two_guilds, connect):
    g0, g1 = two_guilds
    s0, s1, whole = await connect([0, 2]), await connect([1, 2]), await connect(None)
    dm = {"id": "1", "channel_id": "2", "content": "hi", "type": 0}
    delivered = await emu.gateway.dispatch("MESSAGE_CREATE", dm)
    assert sorted(str(emu.gateway.sessions[sid].shard) for sid in delivered) == ["None", "[0, 2]"]
    await emu.wait_for(lambda: s0.events("MESSAGE_CREATE") and whole.events("MESSAGE_CREATE"), timeout=5)
    for gid in (g0, g1):
        emu.add_channel(f"c{gid}", guild_id=gid)
    await emu.wait_for(lambda: len(whole.events("CHANNEL_CREATE")) == 2, timeout=5)
    assert not s1.events("MESSAGE_CREATE")
    assert whole.guild_ids("CHANNEL_CREATE") == [g0, g1]
    assert s0.guild_ids("CHANNEL_CREATE") == [g0] and s1.guild_ids("CHANNEL_CREATE") == [g1]


async def test_a_shard_that_no_session_holds_gets_nothing_and_its_interactions_fail(emu, two_guilds, connect):
    g0, g1 = two_guilds
    s0 = await connect([0, 2])
    bob = emu.add_user("bob", guild_id=g1)
    ix = await emu.slash("echo", user=bob, options={"text": "hi"}, channel_id=emu.general_channel(g1))
    assert ix.sessions == []
    with pytest.raises(InteractionFailed):
        await ix.wait_ack(timeout=2)
    assert not s0.events("INTERACTION_CREATE")
    # when shard 1 identifies later, nothing from before is queued for it
    s1 = await connect([1, 2])
    await emu.wait_for(lambda: s1.events("GUILD_CREATE"), timeout=5)
    assert not s1.events("INTERACTION_CREATE")


async def test_a_user_only_acts_in_guilds_they_are_in(emu, two_guilds, connect):
    g0, g1 = two_guilds
    await connect(None)
    carol = emu.add_user("carol", guild_id=g0)
    with pytest.raises(ValueError, match="unknown user"):
        await emu.slash("echo", user=carol, options={"text": "x"}, channel_id=emu.general_channel(g1))
    emu.add_member(carol, g1, manage_guild=True)
    ix = await emu.slash("echo", user=carol, options={"text": "x"}, channel_id=emu.general_channel(g1))
    roles = {int(r) for r in ix.payload["member"]["roles"]}
    assert roles == {emu.guilds[g1].managers.id}  # her roles there, not the ones she holds elsewhere


async def test_an_invalid_shard_is_refused_with_4010(emu):
    async with aiohttp.ClientSession() as http, http.ws_connect(emu.gateway_url) as ws:
        await ws.receive_json()
        await ws.send_json({"op": 2, "d": {"token": emu.bot_token, "intents": 0, "properties": {}, "shard": [2, 2]}})
        msg = await ws.receive()
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4010


async def test_gateway_bot_recommends_one_shard_per_thousand_guilds(emu, connect):
    async def gateway_bot() -> dict:
        headers = {"Authorization": f"Bot {emu.bot_token}"}
        async with aiohttp.ClientSession() as http, http.get(f"{emu.base_url}/api/v10/gateway/bot",
                                                           headers=headers) as resp:
            assert resp.status == 200
            return await resp.json()

    first = await gateway_bot()
    assert first["shards"] == 1 and first["url"] == emu.gateway_url
    limit = first["session_start_limit"]
    assert limit["max_concurrency"] == 1 and limit["total"] == 1000 and limit["remaining"] == 1000
    for n in range(1000):
        emu.add_guild(f"g{n}")
    await connect([0, 2])
    second = await gateway_bot()
    assert second["shards"] == 2  # 1,001 guilds
    assert second["session_start_limit"]["remaining"] == 999
