"""Reading buttons, selects and cost prompts the way a user sees them in the sandbox channel."""

from __future__ import annotations


def components(message) -> list[dict]:
    out = []
    for row in message.components or []:
        out += row.get("components", []) if row.get("type") == 1 else [row]
    return out


def labels(message) -> list[str]:
    return [c.get("label") for c in components(message) if c.get("type") == 2]


def custom_id(message, label: str) -> str:
    found = [c["custom_id"] for c in components(message) if c.get("label") == label]
    assert found, f"no {label!r} on the message; it has {labels(message)}"
    return found[0]


def select_options(message) -> list[dict]:
    return [o for c in components(message) if c.get("type") == 3 for o in c.get("options", [])]


async def card_buttons(emu, message_id: int, timeout: float = 10) -> list[str]:
    """The result card's buttons, once it has become the result card."""
    return await emu.wait_for(lambda: labels(emu.message(message_id)) if any(
        f["name"] == "State" and f["value"].startswith("Done in") for e in emu.message(message_id).embeds for f in e.get("fields", [])) else None,
        timeout=timeout)
