"""`python -m bot [run|demo|check|sync]`: run the bot, play the sandbox demo, check the
configuration, or register slash commands (never done on every start: Discord limits it)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from bot.config import ConfigError, load_settings


def _settings_or_exit():
    try:
        return load_settings()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(2) from None


def _need_token(settings) -> str:
    if settings.discord_token is None or not settings.discord_token.get_secret_value():
        print("DISCORD_TOKEN is not set, so the bot cannot connect to Discord.\n"
              "To try everything locally without credentials, run:  python -m bot demo\n"
              "To run for real, put DISCORD_TOKEN (and provider keys) in the environment or .env; "
              "see .env.example.", file=sys.stderr)
        raise SystemExit(2)
    return settings.discord_token.get_secret_value()


async def _run(settings, token: str) -> None:
    """Run until closed; SIGTERM (docker stop) and Ctrl-C close the bot gracefully, so running
    steps finish and every job stays resumable."""
    import signal

    from bot.app import VideoBot

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    bot = VideoBot(settings)
    running = asyncio.create_task(bot.start(token))
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        await bot.close()
    await running  # surfaces a login failure or a crash


def cmd_run(_args) -> int:
    from bot.app import point_discord_at
    from bot.logs import secret_values, setup_logging

    settings = _settings_or_exit()
    token = _need_token(settings)
    setup_logging(settings.log_level, secret_values(settings))
    point_discord_at(settings.discord_api_url, settings.discord_gateway_url)
    asyncio.run(_run(settings, token))
    return 0


async def _check(settings) -> int:
    from bot.checks import run_checks

    ok = await run_checks(settings)
    return 0 if ok else 1


def cmd_check(_args) -> int:
    from bot.app import point_discord_at

    settings = _settings_or_exit()
    point_discord_at(settings.discord_api_url, settings.discord_gateway_url)
    return asyncio.run(_check(settings))


async def _sync(settings, token: str) -> int:
    import discord

    from bot.app import VideoBot, point_discord_at

    point_discord_at(settings.discord_api_url, settings.discord_gateway_url)
    bot = VideoBot(settings, start_runner=False)
    async with bot:
        await bot.login(token)
        if settings.discord_dev_guild_id:
            guild = discord.Object(settings.discord_dev_guild_id)
            bot.tree.copy_global_to(guild=guild)
            commands = await bot.tree.sync(guild=guild)
            where = f"guild {settings.discord_dev_guild_id}"
        else:
            commands = await bot.tree.sync()
            where = "globally (may take up to an hour to appear)"
    print(f"Registered {len(commands)} commands {where}: {', '.join(c.name for c in commands)}")
    return 0


def cmd_sync(_args) -> int:
    settings = _settings_or_exit()
    return asyncio.run(_sync(settings, _need_token(settings)))


def cmd_demo(args) -> int:
    from bot.demo import run_demo

    return asyncio.run(run_demo(args.out))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["splat"]:  # operator tools for splat files (convert, fit, render)
        from bot.media.splat_cli import main as splat_main

        return splat_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m bot", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run", help="run the bot (the default)")
    sub.add_parser("check", help="validate configuration and reach each configured provider")
    sub.add_parser("sync", help="register slash commands (globally, or to DISCORD_DEV_GUILD_ID)")
    demo = sub.add_parser("demo", help="run the whole story against the local sandbox, no credentials needed")
    demo.add_argument("--out", default="demo-out", help="where to write the transcript (default: demo-out)")
    args = parser.parse_args(argv)
    handlers = {"run": cmd_run, "check": cmd_check, "sync": cmd_sync, "demo": cmd_demo, None: cmd_run}
    return handlers[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
