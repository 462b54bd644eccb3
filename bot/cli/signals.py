"""Run a command's coroutine so that SIGTERM (docker stop) and Ctrl-C end it through its `finally`
blocks: temp folders are removed, the bot closes gracefully, and no traceback is printed."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Coroutine
from typing import Any

from bot.preflight import INTERRUPTED


def run_until_signal(main: Coroutine[Any, Any, int], *, on_signal: int = INTERRUPTED) -> int:
    """The coroutine's exit code, or `on_signal` when SIGTERM or SIGINT cancelled it."""

    async def guarded() -> int:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        try:
            return await main
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    try:
        return asyncio.run(guarded())
    except (asyncio.CancelledError, KeyboardInterrupt):
        return on_signal
