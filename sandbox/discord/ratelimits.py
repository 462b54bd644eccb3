"""Per-route buckets and the global limit, with Discord's headers, so the bot's client-side
rate-limit handling is exercised for real (discord.py sleeps on `Remaining: 0` and retries 429s
that carry `Via` and a JSON `retry_after`)."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

from .errors import ApiError


@dataclass
class Rule:
    limit: int
    per: float  # seconds


#: bucket name -> rule; the major parameter (channel, guild, webhook) splits a bucket
DEFAULT_RULES: dict[str, Rule] = {
    "message_create": Rule(5, 5.0),
    "message_edit": Rule(5, 5.0),
    "message_delete": Rule(5, 1.0),
    "message_read": Rule(50, 1.0),
    "typing": Rule(5, 5.0),
    "commands": Rule(10, 20.0),
    "default": Rule(50, 1.0),
}


@dataclass
class _Window:
    reset_at: float  # monotonic
    used: int = 0


@dataclass
class RateLimiter:
    """Fixed windows that start at a bucket's first request. `enabled=False` turns it all off."""

    enabled: bool = True
    rules: dict[str, Rule] = field(default_factory=lambda: dict(DEFAULT_RULES))
    global_limit: int = 50  # bot-authenticated requests per second, all routes together
    windows: dict[tuple[str, str], _Window] = field(default_factory=dict)
    global_window: _Window | None = None
    hits: int = 0  # 429s answered

    def set(self, bucket: str, *, limit: int, per: float) -> None:
        """Change one bucket's rule (tests use short windows to keep retries fast)."""
        self.rules[bucket] = Rule(limit, per)
        for key in [k for k in self.windows if k[0] == bucket]:
            del self.windows[key]

    def take(self, bucket: str, major: str, *, global_counted: bool = True) -> dict[str, str]:
        """Consume one request; return the headers for the answer or raise the 429 ApiError."""
        if not self.enabled:
            return {}
        now = time.monotonic()
        if global_counted:
            gw = self.global_window
            if gw is None or now >= gw.reset_at:
                gw = self.global_window = _Window(now + 1.0)
            if gw.used >= self.global_limit:
                self.hits += 1
                retry = max(gw.reset_at - now, 0.001)
                raise ApiError(429, 0, "You are being rate limited.", headers={
                    "Via": "1.1 google", "Retry-After": f"{retry:.3f}", "X-RateLimit-Global": "true",
                    "X-RateLimit-Scope": "global"}) from None
            gw.used += 1
        rule = self.rules.get(bucket) or self.rules["default"]
        window = self.windows.get((bucket, major))
        if window is None or now >= window.reset_at:
            window = self.windows[(bucket, major)] = _Window(now + rule.per)
        reset_after = max(window.reset_at - now, 0.0)
        headers = {
            "X-RateLimit-Limit": str(rule.limit),
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Bucket": hashlib.sha1(bucket.encode()).hexdigest()[:16],
        }
        if window.used >= rule.limit:
            self.hits += 1
            headers.update({"X-RateLimit-Remaining": "0", "Via": "1.1 google",
                            "Retry-After": f"{max(reset_after, 0.001):.3f}", "X-RateLimit-Scope": "user"})
            raise ApiError(429, 0, "You are being rate limited.", headers=headers)
        window.used += 1
        headers["X-RateLimit-Remaining"] = str(rule.limit - window.used)
        return headers

    @staticmethod
    def body_429(error: ApiError) -> dict:
        retry = float(error.headers.get("Retry-After", "1"))
        return {"message": error.message, "retry_after": retry,
                "global": error.headers.get("X-RateLimit-Global") == "true", "code": 0}
