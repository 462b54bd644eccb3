"""The docs a clone has: every link points at a file in the repository, every setting is documented."""

from __future__ import annotations

import re

import pytest

from bot.config import Settings
from tests.cli.conftest import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


@pytest.mark.parametrize("page", DOCS, ids=lambda p: p.name)
def test_links_stay_inside_the_repository(page):
    assert "../" not in page.read_text(), "a path outside the clone"
    for target in re.findall(r"\]\(([^)#\s]+)", page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue
        path = (page.parent / target).resolve()
        assert path.is_relative_to(REPO) and path.exists(), f"{page.name} links to {target}"


def test_every_setting_is_in_the_readme_and_env_example():
    readme, example = (REPO / "README.md").read_text(), (REPO / ".env.example").read_text()
    for name, field in Settings.model_fields.items():
        if name in ("viggle", "vid2scene", "scenario"):
            section = field.default_factory().model_config["env_prefix"]
            names = [section + sub.upper() for sub in field.annotation.model_fields]
        else:
            names = [name.upper()]
        for variable in names:
            assert variable in example, variable
            short = variable.split("_", 1)[1] if variable.startswith(("VIGGLE_", "VID2SCENE_", "SCENARIO_")) else None
            assert variable in readme or (short and f"<PROVIDER>_{short}" in readme), variable
