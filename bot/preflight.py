"""What `python -m bot check` verifies and `python -m bot run` refuses to start without.

One function, `preflight`, so the two can never disagree. Each problem names the setting, says what
is wrong and what to do, in at most two lines: never a traceback, an exception class or a value
(values may be secrets). Each kind of problem has its own exit code, documented in
docs/operations.md.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import discord

from bot.config import Settings
from bot.redact import mask, register_settings

#: exit codes of `python -m bot` (docs/operations.md lists them)
OK, FAILED, CONFIG, REFUSED, UNREACHABLE, STORAGE = 0, 1, 2, 3, 4, 5
INTERRUPTED = 130

#: seconds one service may take to answer a check
CHECK_TIMEOUT = 15.0

_CREDENTIALS = {"viggle": "VIGGLE_API_KEY", "vid2scene": "VID2SCENE_API_KEY",
                "scenario": "SCENARIO_API_KEY and SCENARIO_API_SECRET"}
_NAMES = {"viggle": "Viggle", "vid2scene": "vid2scene", "scenario": "Scenario"}


@dataclass(frozen=True)
class Problem:
    setting: str
    what: str
    fix: str
    code: int

    def __str__(self) -> str:
        return f"{self.setting}: {self.what}.\n  {self.fix}"


# -- storage --------------------------------------------------------------------------------------
def _folder_problem(folder: Path) -> str | None:
    """Why `folder` cannot be created or written by this user, or None."""
    folder = folder.absolute()
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, so the folder {folder} cannot be made"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"this user ({_whoami()}) may not write in {existing}"
    return None


def _whoami() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return "the current user"


def storage_problems(settings: Settings) -> list[Problem]:
    """The database and spool folder must be writable: caught here rather than by the first job."""
    problems = []
    db = settings.database_path
    fix = "Point DATABASE_PATH at a file in a folder this user can write (in Docker: under /data)."
    if db.is_dir():
        problems.append(Problem("DATABASE_PATH", f"{db} is a folder, not a database file", fix, STORAGE))
    elif db.exists() and not os.access(db, os.R_OK | os.W_OK):
        problems.append(Problem("DATABASE_PATH", f"this user ({_whoami()}) may not write {db}", fix, STORAGE))
    elif (why := _folder_problem(db.parent)) is not None:
        problems.append(Problem("DATABASE_PATH", why, fix, STORAGE))
    spool = settings.spool_dir
    why = (f"{spool} is a file, not a folder" if spool.exists() and not spool.is_dir()
           else _folder_problem(spool))
    if why is not None:
        problems.append(Problem("SPOOL_DIR", why, "Point SPOOL_DIR at a folder this user can write, on a disk "
                                "with room for the largest video and its results.", STORAGE))
    return problems


# -- Discord --------------------------------------------------------------------------------------
def discord_failure(exc: BaseException, settings: Settings) -> Problem | None:
    """An exception from logging in or connecting to Discord, said as an operator problem."""
    api = "DISCORD_API_URL" if settings.discord_api_url else "Discord (discord.com)"
    if isinstance(exc, discord.LoginFailure):
        return Problem("DISCORD_TOKEN", "Discord refused this token (it is wrong, revoked or was reset)",
                       "Copy the token from the Bot page of the Discord developer portal into DISCORD_TOKEN.",
                       REFUSED)
    if isinstance(exc, discord.PrivilegedIntentsRequired):
        return Problem("DISCORD_TOKEN", "this bot asks for an intent the developer portal has not enabled",
                       "Enable it on the Bot page of the developer portal, or report this as a bug.", REFUSED)
    if isinstance(exc, discord.HTTPException):
        return Problem(api, f"answered with an error (HTTP {exc.status})",
                       "Discord may be having an outage (discordstatus.com); try again later.", UNREACHABLE)
    if isinstance(exc, aiohttp.ClientConnectionError | OSError | TimeoutError | discord.ConnectionClosed
                  | discord.GatewayNotFound):
        return Problem(api, "could not be reached", "Check the network, firewall or proxy of this machine "
                       "(and DISCORD_API_URL / DISCORD_GATEWAY_URL if you set them).", UNREACHABLE)
    return None


async def _discord_login(token: str) -> str:
    http = discord.http.HTTPClient(asyncio.get_running_loop())
    try:
        user = await http.static_login(token)
        return user["username"]
    finally:
        await http.close()


async def _gateway_hello() -> None:
    """Open the gateway websocket and wait for its HELLO; no IDENTIFY, so nothing is spent."""
    url = str(discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY.with_query(v=10, encoding="json"))
    async with aiohttp.ClientSession() as session, session.ws_connect(url, autoclose=True) as ws:
        await ws.receive()


async def discord_problems(settings: Settings, report: Callable[[str, str], None]) -> list[Problem]:
    if settings.discord_token is None or not settings.discord_token.get_secret_value():
        return [Problem("DISCORD_TOKEN", "not set, so the bot cannot connect to Discord",
                        "Put the bot's token in .env or the environment (see .env.example); "
                        "to try everything without one: python -m bot demo", CONFIG)]
    try:
        name = await asyncio.wait_for(_discord_login(settings.discord_token.get_secret_value()), CHECK_TIMEOUT)
    except Exception as exc:
        problem = discord_failure(exc, settings)
        if problem is None:
            raise
        return [problem]
    try:
        await asyncio.wait_for(_gateway_hello(), CHECK_TIMEOUT)
    except (OSError, TimeoutError, aiohttp.ClientError):
        setting = "DISCORD_GATEWAY_URL" if settings.discord_gateway_url else "Discord's gateway"
        return [Problem(setting, "could not be reached (the REST API could)",
                        "Check that websockets may leave this machine (firewall, proxy).", UNREACHABLE)]
    report("discord", f"logged in as {name}; gateway answers")
    return []


# -- providers ------------------------------------------------------------------------------------
def provider_failure(section: str, exc: Exception) -> Problem:
    """An exception from a provider's check, said as an operator problem."""
    from bot.providers.base import AuthFailed, NotFound, ProviderError

    url = f"{section.upper()}_BASE_URL"
    said = _words(exc)
    if isinstance(exc, AuthFailed):
        return Problem(_CREDENTIALS[section], f"{_NAMES[section]} refused the credentials{said}",
                       f"Copy a valid key from your {_NAMES[section]} account into {_CREDENTIALS[section]}, "
                       "or leave it empty to switch the provider off.", REFUSED)
    if isinstance(exc, NotFound):
        return Problem(url, "answers, but not as the provider's API (not found)",
                       f"Check the path of {url}, or remove it to use the provider's default.", CONFIG)
    if isinstance(exc, TimeoutError):
        return Problem(url, f"did not answer within {CHECK_TIMEOUT:.0f} s",
                       "Check the network, or the provider's status page; try again later.", UNREACHABLE)
    if isinstance(exc, ProviderError | aiohttp.ClientError | OSError):
        return Problem(url, f"could not be reached, or refused the request{said}",
                       f"Check {url} and the network, or the provider's status page.", UNREACHABLE)
    return Problem(url, "answered something this bot does not understand",
                   f"Check that {url} points at the provider's API.", UNREACHABLE)


def _words(exc: Exception) -> str:
    """The provider's own words (already safe to show), with every secret masked once more."""
    public = getattr(exc, "public", None)
    if not public:
        return ""
    text = " ".join(mask(str(public)).split())
    return f' ({text[:200]}{"..." if len(text) > 200 else ""})'


async def provider_problems(settings: Settings, report: Callable[[str, str], None]) -> list[Problem]:
    from bot.net import Net
    from bot.outbound import OutboundPolicy
    from bot.providers import REGISTRY, build_providers
    from bot.providers.base import OutOfCredits, RateLimited

    problems = []
    net = Net(policy=OutboundPolicy.from_settings(settings))
    providers = build_providers(settings, net)
    try:
        for section in REGISTRY:
            provider = providers.get(section)
            if provider is None:
                report(section, "not configured (its commands answer that it is switched off)")
                continue
            try:
                report(section, mask(await asyncio.wait_for(provider.check(), CHECK_TIMEOUT)))
            except (OutOfCredits, RateLimited) as exc:  # the key works: a warning, not a problem
                report(section, f"credentials accepted, but: {mask(exc.public)}")
            except Exception as exc:
                problems.append(provider_failure(section, exc))
    finally:
        for provider in providers.values():
            await provider.close()
        await net.close()
    return problems


# -- all of it ------------------------------------------------------------------------------------
def _quiet(_name: str, _detail: str) -> None:
    return None


async def preflight(settings: Settings, report: Callable[[str, str], None] = _quiet) -> list[Problem]:
    """Every problem that would stop the bot; `report` hears what is fine. discord.py must already
    point at DISCORD_API_URL / DISCORD_GATEWAY_URL (`bot.app.point_discord_at`)."""
    register_settings(settings)  # every secret masked in whatever a provider answers
    problems = storage_problems(settings)
    if not problems:
        where = settings.database_path
        if settings.database_url is not None and settings.database_url.get_secret_value():
            from urllib.parse import urlsplit

            url = urlsplit(settings.database_url.get_secret_value())  # never the password
            where = f"PostgreSQL at {url.hostname}:{url.port or 5432}{url.path} (not checked here)"
        report("storage", f"database {where}, spool {settings.spool_dir}")
    problems += await discord_problems(settings, report)
    problems += await provider_problems(settings, report)
    return problems


def exit_code(problems: list[Problem]) -> int:
    return problems[0].code if problems else OK
