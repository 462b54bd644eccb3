"""The command line: `python -m bot [run|worker|check|sync|health|demo]`. Each subcommand's `--help` says
what it does and what it reads; exit codes are listed in `python -m bot --help`."""

from __future__ import annotations

import argparse
import sys

from bot.cli import commands

DESCRIPTION = """\
A Discord bot that runs Viggle, vid2scene and Scenario video AI jobs from slash commands.

Settings come from the environment and from ./.env (see .env.example); `demo` needs none."""

EXIT_CODES = """\
exit codes:
  0  success (run: stopped by SIGTERM or Ctrl-C)
  1  demo: a story failed; health: the bot is not healthy
  2  a setting is missing or invalid (the message names it; health: 1)
  3  Discord or a provider refused the credentials
  4  Discord or a provider could not be reached
  5  the database or the spool folder cannot be written
  130  interrupted (check, sync, demo)

docs: README.md, docs/operations.md"""

SUBCOMMANDS = {
    "run": ("run the bot (the default)", """\
Connect to Discord and run jobs until SIGTERM or Ctrl-C, which stop it gracefully (running steps
finish; every unfinished job resumes at the next start).

Before connecting it makes the same checks as `check` and refuses to start on any failure.
Reads: DISCORD_TOKEN, the provider keys and URLs, DATABASE_PATH, SPOOL_DIR and the limits, from
the environment or ./.env. Writes: the job database, the spool folder, and two heartbeat files
next to the database (read by `health`). Logs go to stderr."""),
    "worker": ("run jobs without a gateway, beside a gateway on a shared PostgreSQL", """\
Run jobs from the shared database (DATABASE_URL=postgresql://...) without a Discord gateway
connection: log in to Discord's REST API only (to post status cards and results), take due jobs
under a lease, and drive them until SIGTERM or Ctrl-C (running steps finish; leases are given
back). Start as many as needed beside one `run` (see docs/scaling.md).

Reads: what `run` reads, and WORKER_ID (default: host name and pid), JOB_LEASE_SECONDS,
RUNNER_IDLE_SECONDS."""),
    "check": ("check the settings and that Discord and each provider answer", """\
Validate every setting, check that DATABASE_PATH and SPOOL_DIR can be written, log in to Discord
with DISCORD_TOKEN (and open its gateway, without identifying), and make one harmless read
request to each configured provider (its key decides whether it is configured). Nothing is paid
for and nothing is written.

Reads: the environment and ./.env. Prints one line per part; each problem names the setting,
what is wrong and what to do."""),
    "sync": ("register the slash commands with Discord", """\
Register the bot's slash commands: to DISCORD_DEV_GUILD_ID at once when it is set, otherwise
globally (which takes up to an hour to appear). Run it once after installing and again after an
upgrade that changes commands; the bot never syncs on start, because Discord limits how often
commands may be registered.

Reads: DISCORD_TOKEN, DISCORD_DEV_GUILD_ID (and DISCORD_API_URL for the sandbox), DATABASE_PATH."""),
    "health": ("exit 0 when the running bot is alive, 1 when it is not", """\
Report whether a running bot is alive: its job runner and its Discord gateway connection each
touch a heartbeat file next to the database; a heartbeat older than --max-age seconds (or none)
means unhealthy. For Docker's HEALTHCHECK and for monitoring. Needs no network.

Reads: DATABASE_PATH (from the environment or ./.env), to find the heartbeat files."""),
    "demo": ("play the whole story against the local sandbox, no credentials", """\
Start the sandbox (a Discord stand-in and the three provider stand-ins on loopback) and the real
bot, play a scripted user through one job per provider, and write the channel as it would look
in Discord to OUT/index.html and OUT/transcript.txt.

Reads nothing from the environment or ./.env: the demo uses its own settings and a temporary
folder, removed at the end (also on Ctrl-C or SIGTERM)."""),
}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("videobot")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="python -m bot", description=DESCRIPTION, epilog=EXIT_CODES,
                                     formatter_class=raw)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", title="commands", metavar="COMMAND")
    parsers = {name: sub.add_parser(name, help=short, description=long, epilog=EXIT_CODES, formatter_class=raw)
               for name, (short, long) in SUBCOMMANDS.items()}
    parsers["health"].add_argument("--max-age", type=float, default=None, metavar="SECONDS",
                                   help="oldest acceptable heartbeat (default: 120)")
    parsers["demo"].add_argument("--out", default="demo-out", help="where to write the transcript (default: demo-out)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["splat"]:  # operator tools for splat files (convert, fit, render)
        from bot.media.splat_cli import main as splat_main

        return splat_main(argv[1:])
    args = build_parser().parse_args(argv)
    handlers = {"run": commands.cmd_run, "worker": commands.cmd_worker, "check": commands.cmd_check,
                "sync": commands.cmd_sync,
                "health": commands.cmd_health, "demo": commands.cmd_demo, None: commands.cmd_run}
    return handlers[args.command](args)
