"""The Django/DRF surface of the vid2scene sandbox: routes, error types, body parsing, canned pages.

Kept apart from the views so the routing corners (APPEND_SLASH 301s, HTML 404/500) live in one place.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from sandbox.base import json_response

API = "/api/v1"
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_HTML_404 = ('<!doctype html>\n<html lang="en">\n<head>\n  <title>Not Found</title>\n</head>\n<body>\n'
             '  <h1>Not Found</h1><p>The requested resource was not found on this server.</p>\n</body>\n</html>\n')
_HTML_500 = ('<!doctype html>\n<html lang="en">\n<head>\n  <title>Server Error (500)</title>\n</head>\n<body>\n'
             '  <h1>Server Error (500)</h1><p></p>\n</body>\n</html>\n')
#: (path regex, view, allowed methods, DRF view name for OPTIONS)
ROUTES = (
    (re.compile(rf"^{API}/generate-upload-url/$"), "_upload_url", ("POST",), "Generate Upload Url"),
    (re.compile(rf"^{API}/submit-job/$"), "_submit", ("POST",), "Submit Job"),
    (re.compile(rf"^{API}/jobs/$"), "_list", ("GET", "HEAD"), "Job List Api"),
    (re.compile(rf"^{API}/jobs/(?P<job_id>{_UUID})/$"), "_job_view", ("GET", "PUT", "PATCH", "DELETE", "HEAD"),
     "Job Retrieve Update Destroy Api"),
    (re.compile(rf"^{API}/jobs/(?P<job_id>{_UUID})/download/(?P<file_type>[^/]+)/$"), "_download",
     ("GET", "HEAD"), "Api Job Download File"),
    (re.compile(rf"^{API}/jobs/(?P<job_id>{_UUID})/preview/$"), "_preview", ("GET", "HEAD"), "Api Job Preview Image"),
)


class DrfError(Exception):
    """A DRF-rendered JSON error."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status)
        self.status, self.body = status, body


class ServerError(Exception):
    """An unhandled exception in the real server: Django's HTML 500 page."""


class BadBody(Exception):
    """`request.data` could not be parsed (DRF ParseError / UnsupportedMediaType)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


def drf(body: Any, status: int = 200) -> web.Response:
    return json_response(body, status)


def find_route(request: web.Request) -> tuple[tuple[Any, ...], re.Match[str]] | web.Response:
    """The matching route, or Django's answer when none does: an APPEND_SLASH 301 or the HTML 404."""
    path = request.path
    found = next(((r, m) for r in ROUTES if (m := r[0].match(path))), None)
    if found is not None:
        return found
    if not path.endswith("/") and any(r[0].match(path + "/") for r in ROUTES):
        target = path + "/" + (f"?{request.query_string}" if request.query_string else "")
        return web.Response(status=301, headers={"Location": target}, content_type="text/html", charset="utf-8")
    return web.Response(status=404, text=_HTML_404, content_type="text/html", charset="utf-8")


def options_response(title: str) -> web.Response:
    """DRF's metadata answer to OPTIONS."""
    return drf({"name": title, "description": "", "renders": ["application/json", "text/html"],
                "parses": ["application/json", "application/x-www-form-urlencoded", "multipart/form-data"]})


def server_error() -> web.Response:
    return web.Response(status=500, text=_HTML_500, content_type="text/html", charset="utf-8")


def redirect(location: str) -> web.Response:
    return web.Response(status=302, headers={"Location": location}, content_type="text/html", charset="utf-8")


async def request_data(request: web.Request) -> Any:
    """DRF's `request.data`: JSON, form or multipart; empty body is `{}`."""
    ctype = request.content_type
    if ctype == "multipart/form-data":
        return dict(await request.post())
    raw = await request.read()
    if not raw:
        return {}
    if ctype == "application/json" or ctype.endswith("+json"):
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise BadBody(400, f"JSON parse error - {exc}") from None
    if ctype == "application/x-www-form-urlencoded":
        return dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
    raise BadBody(415, f'Unsupported media type "{request.headers.get("Content-Type", "")}" in request.')
