"""The sandbox channel as a person sees it: one renderer (`render`) shared by the demo's page and
the live console (`server`), which lets a person act as a user in the browser against the real bot."""

from .server import Console

__all__ = ["Console"]
