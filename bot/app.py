"""VideoBot: the discord.py bot that owns the settings, HTTP session, store, runner and providers."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import math
from collections.abc import Sequence

import discord
from discord.ext import commands

from bot.buttons import JobButton
from bot.config import Settings, database_location, worker_name
from bot.confirm import CostAnswer
from bot.delivery import Delivery
from bot.health import GATEWAY_BEAT, heartbeat
from bot.jobs import JobService
from bot.net import Net
from bot.outbound import OutboundPolicy
from bot.providers import build_providers
from bot.providers.base import Provider
from bot.redact import register_section, register_settings
from bot.runner import Runner
from bot.store import open_store

log = logging.getLogger(__name__)

DEFAULT_EXTENSIONS = ("cogs.jobs", "cogs.splat", "cogs.viggle", "cogs.layers", "cogs.budget", "cogs.followups")


def point_discord_at(api_url: str | None, gateway_url: str | None) -> None:
    """Send discord.py's REST and gateway traffic elsewhere (the sandbox); no-op when unset."""
    if api_url:
        discord.http.Route.BASE = api_url.rstrip("/")
    if gateway_url:
        import yarl

        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)


class VideoBot(commands.Bot):
    """Everything lives on the bot so cogs reach it as `interaction.client`."""

    def __init__(self, settings: Settings, *, providers: dict[str, Provider] | None = None,
                 extensions: Sequence[str] = DEFAULT_EXTENSIONS, start_runner: bool | None = None,
                 **client_options) -> None:
        super().__init__(command_prefix=commands.when_mentioned, intents=discord.Intents.default(),
                         help_command=None, allowed_mentions=discord.AllowedMentions.none(), **client_options)
        self.settings = settings
        register_settings(settings)
        self.net = Net(policy=OutboundPolicy.from_settings(settings))
        self._given_providers = providers
        self._extensions = tuple(extensions)
        #: None: as GATEWAY_RUNS_JOBS says (a worker passes True, `sync` False)
        self._start_runner = settings.gateway_runs_jobs if start_runner is None else start_runner
        #: the bot proper (not `sync`): heartbeats and the ready line, with or without jobs of its own
        self._serving = start_runner is not False
        self.providers: dict[str, Provider] = {}
        self.runner_heartbeat = heartbeat(settings.database_path, "runner")
        self.gateway_heartbeat = heartbeat(settings.database_path, "gateway")
        self._gateway_beats: asyncio.Task[None] | None = None
        self._ready_logged = False

    async def setup_hook(self) -> None:
        self.store = await open_store(database_location(self.settings))
        self.providers = (self._given_providers if self._given_providers is not None
                          else build_providers(self.settings, self.net))
        for provider in self.providers.values():
            provider.upload_limit = self.settings.upload_limit_bytes
            register_section(getattr(provider, "settings", None))  # its key is masked in all we show
        self.delivery = Delivery(self, self.store, upload_limit=self.settings.upload_limit_bytes,
                                 edit_interval=self.settings.status_edit_seconds,
                                 provider_names={n: p.display_name for n, p in self.providers.items()})
        self.runner = Runner(self.store, self.providers, self.delivery, spool_dir=self.settings.spool_dir,
                             max_attempts=self.settings.max_attempts, worker_id=worker_name(self.settings),
                             idle_wait=self.settings.runner_idle_seconds,
                             lease_seconds=self.settings.job_lease_seconds, heartbeat=self.runner_heartbeat.beat)
        self.jobs = JobService(self.store, self.runner, self.delivery, self.providers,
                               max_per_user=self.settings.max_jobs_per_user,
                               max_per_guild=self.settings.max_jobs_per_guild, cooldowns=self.settings.cooldowns)
        self.add_dynamic_items(JobButton, CostAnswer)
        for name in self._extensions:
            if importlib.util.find_spec(name) is not None:
                await self.load_extension(name)
        if self._start_runner:
            self.runner.start()
        if self._serving:
            self._gateway_beats = asyncio.create_task(self._beat_gateway(), name="gateway-heartbeat")
        log.info("starting: providers %s; connecting to Discord", ", ".join(self.providers) or "none")

    async def on_ready(self) -> None:
        """Ready means both halves work: the gateway is connected and the runner is running."""
        if self._ready_logged or not self._serving:
            return
        self._ready_logged = True
        self.gateway_heartbeat.beat()
        log.info("ready: connected to Discord as %s in %d server(s); %s; providers %s",
                 self.user, len(self.guilds), "runner running" if self._start_runner else "jobs run by workers",
                 ", ".join(self.providers) or "none")

    def gateway_alive(self) -> bool:
        ws = getattr(self, "ws", None)
        return (self.is_ready() and not self.is_closed() and ws is not None and ws.open
                and math.isfinite(self.latency))

    async def _beat_gateway(self) -> None:
        while True:
            if self.gateway_alive():
                self.gateway_heartbeat.beat()
            await asyncio.sleep(GATEWAY_BEAT)

    async def _finish_interactions(self, grace: float = 5.0) -> None:
        """Commands and clicks being answered when the stop came may finish (they take seconds),
        rather than die half-way on a closed store. discord.py names the tasks it runs them in."""
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()
                 and t.get_name().startswith(("CommandTree-invoker", "discord-ui-view-dispatch"))]
        if tasks:
            await asyncio.wait(tasks, timeout=grace)

    async def close(self) -> None:
        if getattr(self, "_shutting_down", False):
            return
        self._shutting_down = True
        if self._gateway_beats is not None:
            self._gateway_beats.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._gateway_beats
        await self._finish_interactions()
        runner = getattr(self, "runner", None)
        if runner is not None:
            log.info("shutting down: letting running steps finish")
            await runner.stop()
        await super().close()
        for provider in self.providers.values():
            await provider.close()
        await self.net.close()
        store = getattr(self, "store", None)
        if store is not None:
            await store.close()
            log.info("stopped; every unfinished job resumes at the next start")
        self.runner_heartbeat.clear()
        self.gateway_heartbeat.clear()
