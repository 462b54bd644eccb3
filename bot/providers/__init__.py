"""The providers this bot knows, built from settings. A provider without credentials is left out,
so its commands answer that it is not configured."""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING

from bot.config import Settings
from bot.providers.base import Provider

if TYPE_CHECKING:  # bot.net imports bot.providers.base: a cycle at run time
    from bot.net import Net

log = logging.getLogger(__name__)

#: settings section -> "module:Class"; each class takes (section_settings, net)
REGISTRY = {
    "vid2scene": "bot.providers.vid2scene:Vid2SceneProvider",
    "viggle": "bot.providers.viggle:ViggleProvider",
    "scenario": "bot.providers.scenario:ScenarioProvider",
}


def build_providers(settings: Settings, net: Net) -> dict[str, Provider]:
    providers: dict[str, Provider] = {}
    for section, target in REGISTRY.items():
        config = getattr(settings, section)
        if not config.enabled:
            continue
        module_name, class_name = target.split(":")
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except ModuleNotFoundError:
            log.warning("%s is configured but this build has no client for it", section)
            continue
        provider = cls(config, net)
        providers[provider.name] = provider
    return providers
