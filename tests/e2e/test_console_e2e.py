"""The sandbox console in headless Chromium, with the real bot behind sandbox Discord: a person
picks a user, runs /splat create with a video attached from the browser, watches the status card
change live, clicks Download and gets a private fresh link; autocomplete offers the scene by name.
The demo's transcript of the same channel shows the card's timeline and lists each version."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import async_playwright, expect

from bot.config import Vid2SceneSettings
from bot.demo.transcript import write_transcript
from bot.providers.vid2scene import Vid2SceneProvider
from sandbox.console import Console
from sandbox.media import make_video
from sandbox.vid2scene import Vid2SceneSandbox
from tests.e2e.harness import BotHarness
from tests.support.policy import sandbox_net

CHROMIUM = Path("/usr/bin/chromium")
# training outlasts Discord's 5 edits per 5 s, so progress edits reach the card
QUICK = {"queue_seconds": 0.8, "pickup_seconds": 0.05, "processing_seconds": 0.3, "training_seconds": 5.0}

#: every version of every message the page shows, in the order the page showed them
RECORD = """() => {
  window.seen = [];
  new MutationObserver((records) => {
    for (const r of records) for (const node of r.addedNodes) {
      if (node.classList && node.classList.contains("msg")) {
        const card = node.querySelector(".body > .embed");
        window.seen.push({id: node.dataset.id, card: card ? card.innerText : ""});
      }
    }
  }).observe(document.getElementById("channel"), {childList: true});
  window.sameDocument = true;
}"""


@pytest.fixture
async def page():
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: run .ci/install-browser (apt-get install chromium)")
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield await browser.new_page(viewport={"width": 1200, "height": 900})
        finally:
            await browser.close()


@pytest.fixture
async def splat_bot(emu, tmp_path):
    service = Vid2SceneSandbox(**QUICK)
    await service.start()
    env = service.env_lines()
    section = Vid2SceneSettings(api_key=env["VID2SCENE_API_KEY"], base_url=env["VID2SCENE_BASE_URL"],
                                poll_min_seconds=0.05, poll_max_seconds=0.2)
    # a 1 MB upload limit: the PLY does not fit and comes as a Download button
    h = BotHarness(emu, tmp_path, lambda: {"vid2scene": Vid2SceneProvider(section, sandbox_net(service, emu))},
                   extensions=("cogs.jobs", "cogs.splat"), status_edit_seconds=0.2, upload_limit_mb=1.0)
    await h.start()
    yield h
    await h.stop()
    await service.stop()


@pytest.fixture
async def note_bot(emu, tmp_path):
    h = BotHarness(emu, tmp_path, dict, extensions=("tests.support.note_cog",))
    await h.start()
    yield h
    await h.stop()


@pytest.fixture
async def console(emu):
    c = Console(emu)
    await c.start()
    yield c
    await c.stop()


async def run_command(page, typed: str, path: str) -> None:
    await page.click("#composer")
    await page.fill("#composer", typed)
    await page.click(f".suggestion[data-path='{path}']")
    await expect(page.locator("#command-name")).to_have_text(f"/{path}")


async def test_a_person_runs_a_splat_job_from_the_browser_and_downloads_it(emu, splat_bot, console, page, tmp_path):
    alice = emu.add_user("alice")
    emu.add_user("bob")
    video = make_video(tmp_path / "desk.mp4", seconds=2)
    await page.goto(console.url)
    await expect(page.locator("#link-state")).to_have_text("live")
    await page.evaluate(RECORD)
    await page.select_option("#user", label="alice")

    # the composer offers the registered commands; the video goes up from the browser
    await run_command(page, "/splat cr", "splat create")
    await page.click("#send")  # the client refuses a command without its required options
    await expect(page.locator("#toast")).to_contain_text("required options missing: ['video']")
    await page.set_input_files("[data-option=video] input[type=file]", str(video))
    size = video.stat().st_size
    await expect(page.locator("[data-option=video] .ofile")).to_have_text(f"attached desk.mp4 · {size:,} bytes")
    await page.fill("[data-option=title] input", "Desk orbit")
    await page.click("#send")

    started = page.locator(".msg.ephemeral", has_text="Started job")
    await expect(started).to_be_visible()
    await expect(started.locator(".used")).to_have_text("alice used /splat create")
    job_id = re.search(r"job ([a-z0-9]+)", await started.inner_text()).group(1)

    # the card changes in place, live: queued, then training progress, then done
    card = page.locator(".msg").filter(has=page.locator(".body > .embed .footer", has_text=f"Job {job_id}"))
    await expect(card.locator(".body > .embed")).to_contain_text("Done", timeout=20_000)
    shown = [s["card"] for s in await page.evaluate("window.seen")
             if s["id"] == await card.get_attribute("data-id")]
    # (a slow machine may merge two quick edits into one update; training lasts long enough)
    training = next(i for i, t in enumerate(shown) if "Training" in t and re.search(r"\b\d{1,2}%", t))
    assert 0 < training < len(shown) - 1 and "Done" in shown[-1] and len(set(shown)) >= 3
    assert await page.evaluate("window.sameDocument")  # no reload: the edits were pushed
    await card.locator("summary").click()
    timeline = await card.locator("details.timeline").inner_text()
    assert timeline.index("Queued (position 1)") < timeline.index("Training") < timeline.rindex("Done")

    # the result offers the PLY (too big to attach) behind a button; the link comes privately
    result = page.locator(".msg", has_text="is ready").filter(has=page.locator("code", has_text=job_id))
    download = result.get_by_role("button", name=re.compile(r"Download .*\.ply"))
    await download.click()
    link_message = page.locator(".msg.ephemeral", has_text="link")
    await expect(link_message).to_be_visible()
    href = await link_message.locator("a[href^='http']").first.get_attribute("href")
    async with aiohttp.ClientSession() as s, s.get(href) as resp:
        assert resp.status == 200 and await resp.content.read(4) == b"ply\n"
    await page.select_option("#user", label="bob")
    await expect(link_message).to_be_hidden()  # only alice sees her link

    # autocomplete goes through the bot: alice is offered her scene by name, bob is not
    await page.select_option("#user", label="alice")
    await run_command(page, "/splat inf", "splat info")
    await page.fill("[data-option=scene] input", "desk")
    await page.click("[data-option=scene] .choice >> text=Desk orbit")
    await page.click("#send")
    await expect(page.locator(".msg.ephemeral .embed", has_text="Desk orbit")).to_be_visible()

    # the demo's page and transcript of this channel: the card's whole timeline, each version listed
    page_path = write_transcript(tmp_path / "out", emu, {alice: "alice", emu.bot_user_id: "VideoBot"}, "t")
    text = (tmp_path / "out" / "transcript.txt").read_text()
    html = page_path.read_text()
    versions = len(emu.message(int(await card.get_attribute("data-id"))).edits) + 1
    assert f"version {versions} of {versions}" in text and "version 1 of" in text
    assert html.index("Queued (position 1)") < html.index("Training") < html.rindex("State</div><div class=\"fvalue\">Done")


async def test_a_person_fills_a_modal_and_picks_from_a_select_menu(emu, note_bot, console, page):
    emu.add_user("carol")
    await page.goto(console.url)
    await expect(page.locator("#user")).to_have_value(str(next(u for u, x in emu.users.items() if x.name == "carol")))
    await run_command(page, "/no", "note")
    await page.click("#send")
    await expect(page.locator("#modal-title")).to_have_text("A note")
    await page.fill("#modal-fields textarea", "bring <b>snacks</b> @everyone")
    await page.click("#modal-submit")
    note = page.locator(".msg", has_text="noted:")
    await expect(note.locator(".body > .content")).to_have_text("@carol noted: bring <b>snacks</b> @everyone")
    await expect(note.locator(".used")).to_have_count(0)  # a modal's reply is not a command's
    await note.locator("select[data-custom-id='note:colour']").select_option("blue")
    await expect(note.locator(".body > .content")).to_have_text("@carol noted: bring <b>snacks</b> @everyone · colour: blue")
    await expect(note.locator(".meta .edited")).to_be_visible()
    sent = next(m for m in emu.messages() if "noted:" in m.content)
    assert not sent.pinged_everyone and sent.edits[0].content.endswith("@everyone")
