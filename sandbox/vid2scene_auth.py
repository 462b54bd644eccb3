"""Who is calling the vid2scene sandbox: API keys, the accounts behind them, and their credits.

Mirrors `UserAPIKeyAuthentication` then `APIKeyEnterpriseOnly`, with DRF's 403 messages.
"""

from __future__ import annotations

from dataclasses import dataclass

from sandbox.vid2scene_http import DrfError


@dataclass
class Account:
    user: str
    enterprise: bool = True
    credits: int | None = None  # None: plain enterprise plan; int: enterprise per-scene (1 credit a job)


class Keys:
    """API keys to accounts; a revoked key keeps its own message."""

    def __init__(self) -> None:
        self.accounts: dict[str, Account] = {}
        self._keys: dict[str, str] = {}
        self._revoked: set[str] = set()

    def add(self, key: str, user: str, *, enterprise: bool = True, credits: int | None = None) -> None:
        """Map `key` to `user`, creating the account if it is new (an existing one is kept as is)."""
        self.accounts.setdefault(user, Account(user, enterprise, credits))
        self._keys[key] = user

    def revoke(self, key: str) -> None:
        self._revoked.add(key)

    def authenticate(self, header: str) -> Account:
        key = header[8:] if header.startswith("Api-Key ") else ""
        if not key:
            raise DrfError(403, {"detail": "Authentication credentials were not provided."})
        if key in self._revoked:
            raise DrfError(403, {"detail": "API key revoked"})
        if key not in self._keys:
            raise DrfError(403, {"detail": "Invalid API key"})
        account = self.accounts[self._keys[key]]
        if not account.enterprise:
            raise DrfError(403, {"detail": "Enterprise API key required."})
        return account
