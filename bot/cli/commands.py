"""What each `python -m bot` subcommand does. Operator errors end here as one or two lines on
stderr and a documented exit code (bot.preflight); only a bug prints a traceback."""

from __future__ import annotations

import sqlite3
import sys
from argparse import Namespace

from bot.cli.signals import run_until_signal
from bot.config import ConfigError, Settings, load_settings
from bot.preflight import (
    CONFIG,
    FAILED,
    OK,
    STORAGE,
    Problem,
    discord_failure,
    discord_problems,
    exit_code,
    preflight,
    storage_problems,
)


def _say(*lines: object) -> None:
    print(*lines, sep="\n", file=sys.stderr)


def _settings() -> Settings | int:
    try:
        return load_settings()
    except ConfigError as exc:
        _say(*exc.problems, "  Fix it in .env or the environment (each name is explained in .env.example).")
        return CONFIG


def _refuse(problems: list[Problem]) -> int:
    _say(*problems)
    return exit_code(problems)


def _report(name: str, detail: str) -> None:
    print(f"{name + ':':<11}{detail}", flush=True)


def _point_discord(settings: Settings) -> None:
    from bot.app import point_discord_at

    point_discord_at(settings.discord_api_url, settings.discord_gateway_url)


def _start_failure(exc: BaseException, settings: Settings) -> Problem | None:
    if isinstance(exc, sqlite3.Error | PermissionError | IsADirectoryError | NotADirectoryError):
        return Problem("DATABASE_PATH or SPOOL_DIR", "could not be opened or written",
                       "Check that both are on a writable disk with free space, owned by this user.", STORAGE)
    return discord_failure(exc, settings)


# -- run ------------------------------------------------------------------------------------------
async def _serve(settings: Settings, make_bot, serve) -> int:
    """Preflight, then `serve(bot)` until a signal; a start failure (a token revoked or a network
    lost since the preflight) is said as an operator problem, like the preflight's own."""
    problems = await preflight(settings)
    if problems:
        return _refuse(problems)
    bot = make_bot()
    try:
        await serve(bot)
    except Exception as exc:
        problem = _start_failure(exc, settings)
        if problem is None:
            raise
        return _refuse([problem])
    finally:
        await bot.close()
    return OK


async def _run(settings: Settings) -> int:
    from bot.app import gateway_bot

    return await _serve(settings, lambda: gateway_bot(settings),
                        lambda bot: bot.start(settings.discord_token.get_secret_value()))


def cmd_run(_args: Namespace) -> int:
    from bot.logs import secret_values, setup_logging

    settings = _settings()
    if isinstance(settings, int):
        return settings
    setup_logging(settings.log_level, secret_values(settings))
    _point_discord(settings)
    # SIGTERM (docker stop) and Ctrl-C close the bot gracefully: running steps finish, jobs resume later
    return run_until_signal(_run(settings), on_signal=OK)


# -- worker ---------------------------------------------------------------------------------------
async def _work(settings: Settings) -> int:
    import asyncio

    from bot.app import VideoBot

    async def serve(bot: VideoBot) -> None:
        await bot.login(settings.discord_token.get_secret_value())  # REST only; setup_hook starts the runner
        await asyncio.Event().wait()  # until SIGTERM or Ctrl-C

    return await _serve(settings, lambda: VideoBot(settings, extensions=(), start_runner=True), serve)


def cmd_worker(_args: Namespace) -> int:
    import os
    import socket

    from bot.logs import secret_values, setup_logging

    settings = _settings()
    if isinstance(settings, int):
        return settings
    setup_logging(settings.log_level, secret_values(settings))
    if not settings.worker_id:  # never "the only process": a gateway or other workers share the jobs
        settings.worker_id = f"{socket.gethostname()}-{os.getpid()}"
    _point_discord(settings)
    return run_until_signal(_work(settings), on_signal=OK)


# -- check ----------------------------------------------------------------------------------------
def cmd_check(_args: Namespace) -> int:
    settings = _settings()
    if isinstance(settings, int):
        return settings
    _point_discord(settings)
    problems = run_until_signal(preflight(settings, _report))
    if isinstance(problems, int):
        return problems
    if problems:
        _say(f"{len(problems)} problem(s); `python -m bot run` would refuse to start:", *problems)
        return exit_code(problems)
    print("All checks passed: `python -m bot run` can start.")
    return OK


# -- sync -----------------------------------------------------------------------------------------
async def _sync(settings: Settings) -> int:
    import discord

    from bot.app import VideoBot

    problems = storage_problems(settings) + await discord_problems(settings, lambda *_: None)
    if problems:
        return _refuse(problems)
    bot = VideoBot(settings, start_runner=False)
    async with bot:
        await bot.login(settings.discord_token.get_secret_value())
        if settings.discord_dev_guild_id:
            guild = discord.Object(settings.discord_dev_guild_id)
            bot.tree.copy_global_to(guild=guild)
            commands = await bot.tree.sync(guild=guild)
            where = f"to guild {settings.discord_dev_guild_id} (at once)"
        else:
            commands = await bot.tree.sync()
            where = "globally (may take up to an hour to appear)"
    print(f"Registered {len(commands)} commands {where}: {', '.join(c.name for c in commands)}")
    return OK


def cmd_sync(_args: Namespace) -> int:
    settings = _settings()
    if isinstance(settings, int):
        return settings
    _point_discord(settings)
    return run_until_signal(_sync(settings))


# -- health ---------------------------------------------------------------------------------------
def cmd_health(args: Namespace) -> int:
    from bot.health import MAX_AGE, health_report, parts_for

    settings = _settings()
    if isinstance(settings, int):
        return FAILED  # Docker's HEALTHCHECK knows only 0 and 1 (2 is reserved)
    parts = parts_for(args.role, settings.gateway_runs_jobs)
    healthy, lines = health_report(settings.database_path, args.max_age or MAX_AGE, parts)
    print(*lines, sep="\n", file=sys.stdout if healthy else sys.stderr)
    return OK if healthy else FAILED


# -- demo -----------------------------------------------------------------------------------------
def cmd_demo(args: Namespace) -> int:
    from bot.demo import run_demo

    return run_until_signal(run_demo(args.out))
