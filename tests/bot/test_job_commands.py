"""Every kind of job a cog can start belongs to a command with a cooldown (DEFAULT_COOLDOWNS), so a
job started from a button or a cost question is cooled down like the command, and the command it
belongs to survives the pending question's trip through the store."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from bot.config import DEFAULT_COOLDOWNS
from bot.confirm import JOB_COMMANDS, JobRequest
from bot.costs import Estimate
from bot.followups import FOLLOW_UPS
from bot.providers.viggle import OBJECT_KINDS, RENDER_KINDS

COGS = Path(__file__).resolve().parents[2] / "cogs"


def _constants(tree: ast.Module) -> dict[str, str]:
    """Module-level string constants, also from `A, B = "x", "y"`."""
    out: dict[str, str] = {}
    for node in tree.body:
        if not isinstance(node, ast.Assign):
            continue
        for target in node.targets:
            pairs = (zip(target.elts, node.value.elts, strict=False) if isinstance(target, ast.Tuple)
                     and isinstance(node.value, ast.Tuple) else [(target, node.value)])
            for name, value in pairs:
                if isinstance(name, ast.Name) and isinstance(value, ast.Constant) and isinstance(value.value, str):
                    out[name.id] = value.value
    return out


def _started_kinds() -> set[tuple[str, str]]:
    """(provider, kind) of every `JobRequest(PROVIDER, "kind", ...)` and viggle's
    `self._start(interaction, "kind", ...)` in the cogs' source."""
    found: set[tuple[str, str]] = set()
    for path in COGS.glob("*.py"):
        tree = ast.parse(path.read_text())
        consts = _constants(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            args = node.args
            if name == "JobRequest" and len(args) >= 2:
                if path.name == "viggle.py" and isinstance(args[1], ast.Name) and args[1].id == "kind":
                    continue  # Viggle._start(kind, ...): its callers' kinds are collected below
                provider = consts.get(args[0].id) if isinstance(args[0], ast.Name) else getattr(args[0], "value", None)
                kind = args[1].value if isinstance(args[1], ast.Constant) else None
                assert provider and kind, f"{path.name}:{node.lineno}: a JobRequest whose kind is not a literal"
                found.add((provider, kind))
            elif name == "_start" and path.name == "viggle.py" and len(args) >= 2 and isinstance(args[1], ast.Constant):
                found.add((consts["PROVIDER"], args[1].value))
    return found


def test_every_kind_a_cog_starts_has_a_command_with_a_default_cooldown():
    started = _started_kinds()
    # the scan sees what the cogs start (guards against it silently finding nothing)
    assert {("vid2scene", "splat"), ("scenario", "layers"), ("viggle", "render"), ("viggle", "mix"),
            ("viggle", "character"), ("viggle", "scene"), ("viggle", "template")} <= started
    kinds = started | set(FOLLOW_UPS) | {("viggle", k) for k in (*OBJECT_KINDS, *RENDER_KINDS)}
    for provider, kind in sorted(kinds):
        request = JobRequest(provider, kind, "s", {})
        assert request.command in DEFAULT_COOLDOWNS, (provider, kind, request.command)
        assert DEFAULT_COOLDOWNS[request.command] > 0
    assert set(JOB_COMMANDS) == kinds


def test_a_job_kind_without_a_command_is_refused_when_the_request_is_built():
    with pytest.raises(ValueError, match="no command for scenario remix"):
        JobRequest("scenario", "remix", "s", {})


def test_the_command_survives_the_pending_question_in_the_store():
    request = JobRequest("vid2scene", "splat", "3D scene", {"title": "Desk"}, Estimate("vid2scene", 1.0, "flat"))
    again = JobRequest.from_json(request.to_json())
    assert again == request and again.command == "splat create"
    # a question saved before requests carried a command gets its kind's
    old = {k: v for k, v in request.to_json().items() if k != "command"}
    assert JobRequest.from_json(old).command == "splat create"
