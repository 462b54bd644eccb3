"""Settings from the environment (and `.env`), one section per provider.

A bad value stops the bot at start with a message naming the variable and never its value, since
values may be secrets. A provider without credentials is simply switched off.
"""

from __future__ import annotations

import contextvars
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

MIB = 1024 * 1024

#: set while building settings that must ignore the environment and `.env` (the demo)
_ISOLATED: contextvars.ContextVar[bool] = contextvars.ContextVar("settings_isolated", default=False)

#: per-user cooldowns of commands that call a provider: paid jobs longer, free look-ups short
DEFAULT_COOLDOWNS: dict[str, float] = {
    "viggle character": 20, "viggle scene": 20, "viggle template": 20, "viggle render": 30, "viggle mix": 30,
    "viggle credits": 5, "splat create": 30, "splat list": 5, "splat info": 3, "splat rename": 5,
    "splat visibility": 5, "splat delete": 5, "splat download": 10, "layers": 30,
}


def _section(prefix: str) -> SettingsConfigDict:
    # env_ignore_empty: `NAME=` (as in .env.example) means "not set", not "set to nothing"
    return SettingsConfigDict(env_prefix=prefix, env_file=".env", extra="ignore", case_sensitive=False,
                              env_ignore_empty=True)


def check_url(value: str | None, schemes: tuple[str, ...]) -> str | None:
    """A URL the bot will connect to: a known scheme and a host, caught at start, not at first use."""
    if value is None:
        return None
    parts = urlsplit(value.strip())
    if parts.scheme not in schemes or not parts.hostname:
        raise ValueError(f"not a valid URL; it must start with {' or '.join(s + '://' for s in schemes)} "
                         "and name a host")
    return value.strip()


class _Base(BaseSettings):
    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        if _ISOLATED.get():
            return (init_settings,)
        return init_settings, env_settings, dotenv_settings, file_secret_settings


@contextmanager
def isolated_settings() -> Iterator[None]:
    """Inside, settings come only from the values given: the demo never reads the operator's `.env`
    or environment, whose values are meant for a real deployment."""
    token = _ISOLATED.set(True)
    try:
        yield
    finally:
        _ISOLATED.reset(token)


class _ProviderSection(_Base):
    """What every provider has: where it is, how often we may poll, how many jobs at once, and how
    long a job of each kind may take before we give up on it (a job can hang upstream forever)."""

    api_key: SecretStr | None = None
    poll_min_seconds: float = Field(3.0, gt=0)
    poll_max_seconds: float = Field(60.0, gt=0)
    max_concurrent: int = Field(4, ge=1, le=64)
    #: status calls at once (light, and many when many jobs wait): apart from the heavy steps above
    max_concurrent_polls: int = Field(64, ge=1, le=1024)
    deadline_minutes: dict[str, float] = Field(default_factory=dict)
    #: after a paid call whose answer was lost, wait this long before looking for what it made
    reconcile_settle_seconds: float = Field(60.0, gt=0)
    #: hosts the bot may fetch from besides base_url (storage, CDN): `host`, `host:port`, `*.suffix`;
    #: a JSON list in the environment. Setting it replaces the documented defaults.
    allowed_hosts: list[str] = Field(default_factory=list)

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _hosts_list(cls, value: Any) -> Any:
        """A JSON list, or (when given directly) comma-separated hosts."""
        if isinstance(value, str):
            text = value.strip()
            return json.loads(text) if text.startswith("[") else [h.strip() for h in text.split(",") if h.strip()]
        return value

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts_shaped(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                parts = urlsplit(entry.strip() if "//" in entry else f"//{entry.strip()}")
                ok = bool(parts.hostname) and (parts.port or 1) > 0 and not parts.path.strip("/")
            except ValueError:
                ok = False
            if not ok:
                raise ValueError("each entry must be a host, host:port or *.suffix")
        return value

    @model_validator(mode="after")
    def _bounds_ordered(self) -> _ProviderSection:
        if self.poll_max_seconds < self.poll_min_seconds:
            prefix = type(self).model_config.get("env_prefix", "")
            raise ValueError(f"{prefix}POLL_MAX_SECONDS must be at least {prefix}POLL_MIN_SECONDS")
        return self

    @field_validator("base_url", check_fields=False)
    @classmethod
    def _http_url(cls, value: str) -> str:
        return check_url(value, ("https", "http"))

    @field_validator("deadline_minutes")
    @classmethod
    def _positive_deadlines(cls, value: dict[str, float]) -> dict[str, float]:
        for kind, minutes in value.items():
            if minutes <= 0:
                raise ValueError(f"deadline for {kind!r} must be positive")
        return value

    @model_validator(mode="after")
    def _deadlines_over_defaults(self) -> _ProviderSection:
        """Setting one kind's deadline keeps the defaults of the others."""
        default = type(self).model_fields["deadline_minutes"].get_default(call_default_factory=True)
        self.deadline_minutes = {**default, **self.deadline_minutes}
        return self

    @property
    def enabled(self) -> bool:
        """Switched on by its credentials alone."""
        return bool(self.api_key and self.api_key.get_secret_value())


class ViggleSettings(_ProviderSection):
    model_config = _section("VIGGLE_")
    base_url: str = "https://apis.viggle.ai"
    poll_min_seconds: float = Field(3.0, gt=0)
    poll_max_seconds: float = Field(30.0, gt=0)
    deadline_minutes: dict[str, float] = Field(
        default_factory=lambda: {"character": 20, "scene": 30, "template": 30, "render": 60, "mix": 60})
    allowed_hosts: list[str] = Field(default_factory=lambda: ["*.viggle.ai"])


class Vid2SceneSettings(_ProviderSection):
    model_config = _section("VID2SCENE_")
    base_url: str = "https://vid2scene.com/api/v1"
    #: the developer API has no rate limit; 5 s keeps a finished splat's delivery prompt
    poll_min_seconds: float = Field(5.0, gt=0)
    poll_max_seconds: float = Field(120.0, gt=0)
    deadline_minutes: dict[str, float] = Field(default_factory=lambda: {"splat": 8 * 60})
    allowed_hosts: list[str] = Field(default_factory=lambda: ["*.blob.core.windows.net"])


class ScenarioSettings(_ProviderSection):
    """`SCENARIO_SDK_API_KEY`/`SCENARIO_SDK_API_SECRET` (the names in Scenario's own SDK docs) are
    read too, so an operator who followed Scenario's instructions is not silently switched off."""

    model_config = _section("SCENARIO_")
    api_key: SecretStr | None = Field(None, validation_alias=AliasChoices(
        "api_key", "SCENARIO_API_KEY", "SCENARIO_SDK_API_KEY"))
    api_secret: SecretStr | None = Field(None, validation_alias=AliasChoices(
        "api_secret", "SCENARIO_API_SECRET", "SCENARIO_SDK_API_SECRET"))
    base_url: str = "https://api.cloud.scenario.com/v1"
    poll_min_seconds: float = Field(3.0, gt=0)
    poll_max_seconds: float = Field(30.0, gt=0)
    deadline_minutes: dict[str, float] = Field(default_factory=lambda: {"layers": 60})
    reconcile_settle_seconds: float = Field(90.0, gt=0)
    allowed_hosts: list[str] = Field(default_factory=lambda: [
        "cdn.cloud.scenario.com", "cdn.scenario.com", "*.amazonaws.com"])

    @property
    def enabled(self) -> bool:
        return super().enabled and bool(self.api_secret and self.api_secret.get_secret_value())


class Settings(_Base):
    """Everything the bot reads from its environment; see `.env.example` for each name."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False, env_ignore_empty=True)

    discord_token: SecretStr | None = None
    discord_dev_guild_id: int | None = None
    #: only for trials against `python -m sandbox` (or a proxy): where discord.py connects
    discord_api_url: str | None = None
    discord_gateway_url: str | None = None
    #: where users' attachments are fetched from (the origin of DISCORD_API_URL is added to these)
    discord_cdn_hosts: list[str] = Field(default_factory=lambda: ["cdn.discordapp.com", "media.discordapp.net"])
    database_path: Path = Path("data/bot.db")
    #: `postgresql://…`: the store on PostgreSQL, shared by a gateway and workers (docs/scaling.md);
    #: unset: the SQLite file at DATABASE_PATH (one process)
    database_url: SecretStr | None = None
    #: this process's name in job leases; empty: the only process that runs jobs
    worker_id: str = ""
    #: whether `run` (the gateway) also runs jobs; workers (`python -m bot worker`) always do
    gateway_runs_jobs: bool = True
    #: how often a runner looks for new jobs when nothing is due: other processes create them
    runner_idle_seconds: float = Field(30.0, gt=0, le=300)
    #: how long a worker's claim on a job lasts unless renewed (it renews every third of this while
    #: the step runs): after a worker dies, its jobs wait this long before another takes them
    job_lease_seconds: float = Field(600.0, ge=1, le=86400)
    #: Discord gateway shards in all (unset: one connection, no sharding); SHARD_IDS (a JSON list)
    #: the ones this process opens (unset: all of them), so shards can split across processes
    shard_count: int | None = Field(None, ge=1, le=100_000)
    shard_ids: list[int] | None = None
    spool_dir: Path = Path("data/spool")
    upload_limit_mb: float = Field(10.0, gt=0, le=500)
    max_jobs_per_user: int = Field(3, ge=1, le=100)
    max_jobs_per_guild: int = Field(20, ge=1, le=1000)
    status_edit_seconds: float = Field(5.0, ge=0)
    max_attempts: int = Field(8, ge=1, le=100)
    #: ask before starting a job expected to cost more than this (in the provider's unit); a
    #: server manager sets a per-server level with `/budget set`
    confirm_cost_above: float | None = Field(100.0, ge=0)
    #: seconds between two uses of a command by one user (JSON by command name; 0 switches one off)
    cooldowns: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_COOLDOWNS))
    log_level: str = "INFO"
    #: Discord user ids of the bot's operators (JSON list), besides the application's owner(s):
    #: only they see and handle provider objects made outside the bot (no server owns those)
    operator_ids: list[int] = Field(default_factory=list)

    viggle: ViggleSettings = Field(default_factory=ViggleSettings)
    vid2scene: Vid2SceneSettings = Field(default_factory=Vid2SceneSettings)
    scenario: ScenarioSettings = Field(default_factory=ScenarioSettings)

    @property
    def upload_limit_bytes(self) -> int:
        return int(self.upload_limit_mb * MIB)

    @field_validator("discord_api_url")
    @classmethod
    def _api_url(cls, value: str | None) -> str | None:
        return check_url(value, ("https", "http"))

    @field_validator("discord_gateway_url")
    @classmethod
    def _gateway_url(cls, value: str | None) -> str | None:
        return check_url(value, ("wss", "ws"))

    @field_validator("cooldowns")
    @classmethod
    def _cooldowns_over_defaults(cls, value: dict[str, float]) -> dict[str, float]:
        """Setting one command's cooldown keeps the others' defaults; "*" sets every command's."""
        for command, seconds in value.items():
            if not 0 <= seconds <= 86400:
                raise ValueError(f"cooldown for {command!r} must be between 0 and 86400 seconds")
        named = {" ".join(k.lower().split()): v for k, v in value.items()}
        base = dict.fromkeys(DEFAULT_COOLDOWNS, named["*"]) if "*" in named else dict(DEFAULT_COOLDOWNS)
        return {**base, **named}

    @model_validator(mode="after")
    def _shards_within_count(self) -> Settings:
        if self.shard_ids is None:
            return self
        if self.shard_count is None:
            raise ValueError("SHARD_IDS: needs SHARD_COUNT (how many shards there are in all)")
        if not self.shard_ids:
            raise ValueError("SHARD_IDS: give at least one shard id, or leave it unset for all")
        if len(set(self.shard_ids)) != len(self.shard_ids):
            raise ValueError("SHARD_IDS: each shard id only once")
        if any(not 0 <= i < self.shard_count for i in self.shard_ids):
            raise ValueError(f"SHARD_IDS: each id must be from 0 to SHARD_COUNT - 1 ({self.shard_count - 1})")
        return self

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        value = value.upper()
        if value not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return value


class ConfigError(Exception):
    """A configuration problem, phrased for the operator; it never quotes a value."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("Invalid configuration:\n  " + "\n  ".join(problems))
        #: one "VARIABLE: what is wrong" line each
        self.problems = problems


_SECTION_PREFIX = {"viggle": "VIGGLE_", "vid2scene": "VID2SCENE_", "scenario": "SCENARIO_"}


def _describe(error: ValidationError, prefix: str = "") -> list[str]:
    lines = []
    for item in error.errors(include_input=False, include_url=False):
        loc = [str(p) for p in item["loc"]]
        message = item["msg"].removeprefix("Value error, ")
        if loc:  # a cross-field rule (no location) names its variables itself
            message = f"{(prefix + loc[0]).upper()}: {message}"
        lines.append(message)
    return lines


def _json_variable(error: SettingsError, prefix: str) -> str:
    """pydantic-settings says 'error parsing value for field "x" from source ...'."""
    text = str(error)
    field = text.split('field "', 1)[1].split('"', 1)[0] if 'field "' in text else "a setting"
    return (prefix + field).upper()


def load_settings(**overrides: Any) -> Settings:
    """Read the settings, turning pydantic's report into one line per bad variable."""
    problems: list[str] = []
    sections: dict[str, Any] = {}
    for attr, cls in (("viggle", ViggleSettings), ("vid2scene", Vid2SceneSettings), ("scenario", ScenarioSettings)):
        if attr in overrides:
            continue
        try:
            sections[attr] = cls()
        except ValidationError as exc:
            problems += _describe(exc, _SECTION_PREFIX[attr])
            sections[attr] = cls.model_construct()  # placeholder, so the rest is still checked
        except SettingsError as exc:  # a JSON-valued variable that is not JSON
            problems.append(f"{_json_variable(exc, _SECTION_PREFIX[attr])}: not valid JSON")
            sections[attr] = cls.model_construct()
    try:
        settings = Settings(**sections, **overrides)
    except ValidationError as exc:
        problems += _describe(exc)
        settings = None
    except SettingsError as exc:
        problems.append(f"{_json_variable(exc, '')}: not valid JSON")
        settings = None
    if problems or settings is None:
        raise ConfigError(problems)
    return settings


def database_location(settings: Settings) -> str | Path:
    """Where the store is: DATABASE_URL when set, else the SQLite file."""
    if settings.database_url is not None and settings.database_url.get_secret_value():
        return settings.database_url.get_secret_value()
    return settings.database_path


def worker_name(settings: Settings) -> str:
    """This process's name in job leases: WORKER_ID, else (on a shared PostgreSQL) host and pid, so
    that no process takes another's leases as its own; on SQLite its shard ids when it opens only
    some (other processes open the rest); "" (the lone SQLite process) otherwise."""
    if settings.worker_id:
        return settings.worker_id
    if isinstance(database_location(settings), str):
        import os
        import socket

        return f"{socket.gethostname()}-{os.getpid()}"
    if settings.shard_ids is not None:
        # one of several gateway processes on one SQLite file (each opens its own shards): a name
        # of its own, the same after a restart, so that it takes back only its own leases
        return "shards-" + "-".join(str(i) for i in sorted(settings.shard_ids))
    return ""
