"""`python -m sandbox`: serve sandbox Discord and every provider stand-in on localhost for manual
trials, print the environment lines that point a bot at them, and serve the console: the sandbox
channel in a browser, where you act as a user. Ctrl-C stops."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util

#: module, class; each class serves on loopback and knows its own env lines
SERVICES = (("sandbox.vid2scene", "Vid2SceneSandbox"), ("sandbox.viggle", "ViggleSandbox"),
            ("sandbox.scenario", "ScenarioSandbox"))


async def serve(host: str, user: str, console_port: int = 0) -> None:
    from sandbox.console import Console
    from sandbox.discord import DiscordEmulator

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
    print(f"Console (the channel in your browser, act as {user!r} or any user you add): "
          f"{await console.start(host, console_port)}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await console.stop()
        for service in services:
            await service.stop()
        await emu.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--user", default="tester", help="the first user of the console")
    parser.add_argument("--console-port", type=int, default=0, help="the console's port (default: any free one)")
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.host, args.user, args.console_port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
