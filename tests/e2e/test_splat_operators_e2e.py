"""Scenes with no saved owner (made outside the bot on the same vid2scene account) belong to no
server: a manager of any server (anyone can make one and add the bot) must not see or touch them;
the bot's operators (OPERATOR_IDS, the application's owner) can, and replies name them by id."""

from __future__ import annotations

import discord

from bot.config import Vid2SceneSettings
from bot.models import JobState
from bot.providers.vid2scene import Vid2SceneProvider
from sandbox.media import make_video
from tests.e2e.cards_helpers import custom_id, labels
from tests.e2e.harness import BotHarness
from tests.e2e.helpers import field, job_id_of, wait_job_state
from tests.support.policy import sandbox_net


async def reply(emu, command: str, user: int, **kwargs):
    ix = await emu.slash(command, user=user, **kwargs)
    await ix.wait_ack(timeout=3)
    assert not ix.failed
    return await ix.wait_reply(timeout=10)


async def test_only_operators_see_download_and_delete_a_scene_made_outside_the_bot(emu, tmp_path, v2s, users):
    operator = emu.add_user("operator")  # no Manage Server anywhere: OPERATOR_IDS alone
    eves_guild = emu.add_guild("Eve's own server")
    eve = emu.add_user("eve", manage_guild=True, guild_id=eves_guild)
    env = v2s.env_lines()
    section = Vid2SceneSettings(api_key=env["VID2SCENE_API_KEY"], base_url=env["VID2SCENE_BASE_URL"],
                                poll_min_seconds=0.05, poll_max_seconds=0.2)
    h = BotHarness(emu, tmp_path, lambda: {"vid2scene": Vid2SceneProvider(section, sandbox_net(v2s, emu))},
                   extensions=("cogs.jobs", "cogs.splat"), operator_ids=[operator])
    bot = await h.start()
    try:
        bot.tree.copy_global_to(guild=discord.Object(eves_guild))
        await bot.tree.sync(guild=discord.Object(eves_guild))
        video = make_video(tmp_path / "orbit.mp4", seconds=2)
        made = await reply(emu, "splat create", users["alice"], options={
            "video": emu.attachment(video, "orbit.mp4", "video/mp4"), "title": "Operator's private scan"})
        job_id = job_id_of(made.content)
        await wait_job_state(h, job_id, JobState.DONE, timeout=30)
        scene = (await bot.store.get_job(job_id)).remote_id
        # as if made on the website with the same key: vid2scene has it, the bot has no owner for it
        await bot.store.delete_object("vid2scene", "scene", scene)

        where = emu.general_channel(eves_guild)
        listed = await reply(emu, "splat list", eve, channel_id=where)
        assert scene not in listed.content and "no splat scenes yet" in listed.content
        for command, extra in (("splat download", {"format": "ply"}), ("splat info", {}),
                               ("splat delete", {}), ("splat rename", {"title": "mine"}),
                               ("splat visibility", {"public": True})):
            nope = await reply(emu, command, eve, channel_id=where, options={"scene": scene, **extra})
            assert "only the bot's operators" in nope.content and nope.ephemeral, command
            assert not nope.attachments and not nope.embeds and not labels(nope), command
        # a manager of the server it was made in has no more right to it than Eve
        mods = await reply(emu, "splat list", users["mod"])
        assert scene not in mods.content
        nope = await reply(emu, "splat delete", users["mod"], options={"scene": scene})
        assert "only the bot's operators" in nope.content
        assert scene in v2s.jobs and v2s.jobs[scene].title.startswith("Operator's private scan")
        assert v2s.jobs[scene].public is False

        # the operators can, and a scene without a saved name is called by its id
        theirs = await reply(emu, "splat list", operator)
        assert f"`{scene}`" in theirs.content and "made outside this bot" in theirs.content
        owner = await reply(emu, "splat info", emu.guild.owner_id, options={"scene": scene})  # the app's owner
        assert owner.embeds and field(owner, "Owner") == "made outside this bot"
        got = await reply(emu, "splat download", operator, options={"scene": scene, "format": "ply"})
        assert "****" not in got.content
        assert got.content.startswith(f"**{scene}** as PLY:")
        assert [a["filename"] for a in got.attachments] == [f"{scene}.ply"]
        ask = await reply(emu, "splat delete", operator, options={"scene": scene})
        assert ask.content.startswith(f"Delete **{scene}** at vid2scene for good?")
        go = await emu.click(ask, custom_id(ask, "Delete it"), user=operator)
        await go.wait_ack(timeout=3)
        await emu.wait_for(lambda: "Deleted the scene" in emu.message(ask.id).content, timeout=5)
        assert emu.message(ask.id).content == f"Deleted the scene **{scene}**."
        assert scene not in v2s.jobs
    finally:
        await h.stop()
