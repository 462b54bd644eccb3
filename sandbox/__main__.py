"""`python -m sandbox`: serve sandbox Discord and every provider stand-in on localhost for manual
trials, print the environment lines that point a bot at them, and serve the console: the sandbox
channel in a browser, where you act as a user. Ctrl-C stops."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
from pathlib import Path

#: module, class; each class serves on loopback and knows its own env lines
SERVICES = (("sandbox.vid2scene", "Vid2SceneSandbox"), ("sandbox.viggle", "ViggleSandbox"),
            ("sandbox.scenario", "ScenarioSandbox"))


async def serve(host: str, user: str, console_port: int = 0, env_file: Path | None = None) -> None:
    from sandbox.console import Console
    from sandbox.discord import DiscordEmulator

    stopped = _stop_on_signals()
    emu = DiscordEmulator()
    await emu.start(host=host)
    services = []
    ws = emu.base_url.replace("http://", "ws://", 1)
    lines = {"DISCORD_TOKEN": emu.bot_token, "DISCORD_API_URL": f"{emu.base_url}/api/v10",
             "DISCORD_GATEWAY_URL": f"{ws}/gateway", "DISCORD_DEV_GUILD_ID": str(emu.guild_id)}
    for module, cls in SERVICES:
        if importlib.util.find_spec(module) is None:
            continue
        service = getattr(importlib.import_module(module), cls)()
        await service.start(host=host)
        services.append(service)
        lines.update(service.env_lines())
    print("Sandbox running. Put these lines in .env (or the environment), then run")
    print("`python -m bot sync` once and `python -m bot`:\n")
    for name, value in lines.items():
        print(f"{name}={value}")
    print(f"\nDiscord emulator: {emu.base_url} (guild {emu.guild_id}, channel {emu.channel_id})")
    emu.add_user(user)
    console = Console(emu)
    console_url = await console.start(host, console_port)
    if env_file is not None:  # for a bot in another container (compose.yaml); gone when we stop
        env_file.write_text("".join(f"{name}={value}\n" for name, value in lines.items()))
    print(f"Console (the channel in your browser, act as {user!r} or any user you add): {console_url}", flush=True)
    try:
        await stopped.wait()
    finally:
        if env_file is not None:
            env_file.unlink(missing_ok=True)
        await console.stop()
        for service in services:
            await service.stop()
        await emu.stop()


def _stop_on_signals() -> asyncio.Event:
    """Set by SIGTERM or Ctrl-C, so the stand-ins stop and remove their temp folders."""
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--user", default="tester", help="the first user of the console")
    parser.add_argument("--console-port", type=int, default=0, help="the console's port (default: any free one)")
    parser.add_argument("--env-file", type=Path, help="also write the environment lines to this file")
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.host, args.user, args.console_port, args.env_file))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
