"""Scenario's HTTP API, one method per call the bot makes, with errors folded into the taxonomy.

Why a separate layer: the provider (scenario.py) decides *when* to call; this module knows *how*
(Basic auth, camelCase JSON, Scenario's error bodies). Idempotent reads are retried here; the paid
`generate` call never is, and it gets a short total timeout so an unanswered submission is
looked up (reconciled) instead of hanging or being sent twice.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp

from bot.net import Net, Pace, classify, parse_retry_after, with_retries
from bot.providers.base import AuthFailed, ProviderError, RateLimited, Transient, parse_timestamp

log = logging.getLogger(__name__)

LAYERS_MODEL = "model_scenario-video-layers-extractor"


@dataclass(frozen=True, slots=True)
class ScanResult:
    """What a job list scan read, and whether it read everything it had to."""

    jobs: list[dict[str, Any]]
    complete: bool
    pages: int = 0


_URL = re.compile(r"https?://\S+")


def safe_message(body: Any, status: int) -> str:
    """Scenario's words from an error body (`reason`, `message`, `error`, `detail`, in that order),
    with any URL removed (signed URLs carry tokens) and length capped."""
    text = ""
    if isinstance(body, dict):
        for key in ("reason", "message", "error", "detail"):
            value = body.get(key)
            if isinstance(value, dict):
                value = value.get("message") or value.get("reason")
            if isinstance(value, str) and value.strip():
                text = value.strip()
                break
    elif isinstance(body, str) and body.strip() and not body.lstrip().startswith("<"):
        text = body.strip()
    text = _URL.sub("<link>", text)[:300]
    return text or f"HTTP {status}"


def concurrency_limited(body: Any) -> bool:
    """A 429 for too many parallel custom jobs (waiting for one of ours to end frees a slot)."""
    details = body.get("details") if isinstance(body, dict) else None
    return isinstance(details, dict) and "parallel" in str(details.get("actionName", ""))


def error_for(status: int, headers: dict[str, str], body: Any) -> ProviderError:
    """The taxonomy error for a refused call; `headers` has lower-case names."""
    message = safe_message(body, status)
    if status == 429:
        retry = headers.get("retry-after-ms")
        seconds = float(retry) / 1000 if retry and retry.replace(".", "", 1).isdigit() else None
        if seconds is None and isinstance(body, dict) and isinstance(body.get("remainingSeconds"), int | float):
            seconds = float(body["remainingSeconds"])
        if seconds is None:
            seconds = parse_retry_after(headers.get("retry-after"), 30.0)
        if concurrency_limited(body):
            return RateLimited(seconds, "Scenario's limit of parallel jobs is reached; the job waits for a slot.")
        return RateLimited(seconds)
    if status == 403:
        return AuthFailed(message)
    return classify(status, message)


class ScenarioAPI:
    """Calls to api.cloud.scenario.com/v1 (or the sandbox), authenticated with the API key pair."""

    #: total time the paid POST may take before we stop waiting and look the job up instead
    submit_timeout: float = 30.0

    def __init__(self, net: Net, base_url: str, api_key: str, api_secret: str, *, rate: float = 5.0) -> None:
        self.net = net
        self.base = base_url.rstrip("/")
        token = base64.b64encode(f"{api_key}:{api_secret}".encode()).decode()
        self._headers = {"Authorization": f"Basic {token}", "Accept": "application/json"}
        self._pace = Pace(rate, burst=5)

    async def _call(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None,
                    timeout: aiohttp.ClientTimeout | None = None) -> Any:
        async with self._pace:
            kwargs: dict[str, Any] = {"headers": self._headers}
            if json is not None:
                kwargs["json"] = json
            if params:
                kwargs["params"] = params
            if timeout is not None:
                kwargs["timeout"] = timeout
            status, headers, body = await self.net.json_request(method, f"{self.base}/{path.lstrip('/')}", **kwargs)
        if 200 <= status < 300:
            return body if body is not None else {}
        error = error_for(status, {k.lower(): v for k, v in headers.items()}, body)
        trace = body.get("trace_id") or body.get("traceId") if isinstance(body, dict) else None
        log.info("scenario %s %s -> %s (%s)%s", method, path.split("?")[0], status, type(error).__name__,
                 f" trace {trace}" if trace else "")
        raise error

    async def _read(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """A GET: idempotent, so passing faults are retried a couple of times."""
        return await with_retries(lambda: self._call("GET", path, params=params))

    # -- uploads ------------------------------------------------------------------------------
    async def create_upload(self, *, file_name: str, content_type: str, size: int, parts: int) -> dict[str, Any]:
        """Not paid, but not idempotent either (a repeat makes a second, harmless upload): no retries."""
        body = await self._call("POST", "uploads", json={"fileName": file_name, "contentType": content_type,
                                                         "fileSize": size, "kind": "video", "parts": parts})
        return body.get("upload") or {}

    async def complete_upload(self, upload_id: str) -> dict[str, Any]:
        body = await with_retries(lambda: self._call("POST", f"uploads/{upload_id}/action",
                                                     json={"action": "complete"}))
        return body.get("upload") or {}

    async def get_upload(self, upload_id: str) -> dict[str, Any]:
        return (await self._read(f"uploads/{upload_id}")).get("upload") or {}

    # -- the paid call --------------------------------------------------------------------------
    async def run_model(self, model_id: str, inputs: dict[str, Any]) -> dict[str, Any]:
        """POST generate/custom/{model} exactly once. Whatever leaves its outcome unknown (timeout,
        dropped connection, 5xx) becomes Transient, which makes the runner reconcile."""
        try:
            return await self._call("POST", f"generate/custom/{model_id}", json=inputs,
                                    timeout=aiohttp.ClientTimeout(total=self.submit_timeout, sock_connect=10))
        except TimeoutError as exc:
            raise Transient("Scenario did not answer the submission in time; checking whether it arrived.") from exc
        except aiohttp.ClientError as exc:
            raise Transient(f"the connection to Scenario failed during submission ({type(exc).__name__})") from exc

    async def dry_run(self, model_id: str, inputs: dict[str, Any]) -> dict[str, Any]:
        """The same POST with `dryRun=true`: Scenario answers HTTP 269 with the cost fields
        (`creativeUnitsCost`, `creativeUnitsDiscount`, `costDetails`) and runs nothing, so it is
        safe to retry."""
        return await with_retries(lambda: self._call("POST", f"generate/custom/{model_id}", json=inputs,
                                                      params={"dryRun": "true"}))

    # -- jobs and assets ------------------------------------------------------------------------
    async def get_job(self, job_id: str) -> dict[str, Any]:
        return (await self._read(f"jobs/{job_id}")).get("job") or {}

    async def list_jobs(self, *, created_after: str, page_size: int = 100, max_pages: int | None = None,
                        stop_before: datetime | None = None, until_found: Collection[str] = ()) -> ScanResult:
        """Jobs created after a moment, newest first as Scenario returns them. Every page is read
        while `nextPaginationToken` is present, even an empty one (the SDK warns pages can be
        empty with more to come). The scan ends when the token is absent (complete), when a page
        reaches jobs created before `stop_before` (complete: the rest is older still), once every
        id of `until_found` was listed (complete for what was asked: no page more is paid for), or
        after `max_pages` (incomplete). `createdAfter` may not be combined with `type`, so the
        caller filters the job type itself."""
        jobs: list[dict[str, Any]] = []
        params: dict[str, Any] = {"createdAfter": created_after, "pageSize": page_size}
        missing = set(until_found)
        seen: set[str] = set()
        pages = 0
        while max_pages is None or pages < max_pages:
            body = await self._read("jobs", dict(params))
            pages += 1
            page = [j for j in (body.get("jobs") or []) if isinstance(j, dict)]
            jobs += page
            token = body.get("nextPaginationToken")
            if not token:
                return ScanResult(jobs, complete=True, pages=pages)
            if stop_before is not None and page and all(
                    (created := parse_timestamp(j.get("createdAt"))) is not None and created < stop_before for j in page):
                return ScanResult(jobs, complete=True, pages=pages)
            if missing:
                missing.difference_update(str(j.get("jobId")) for j in page)
                if not missing:
                    return ScanResult(jobs, complete=True, pages=pages)
            if str(token) in seen:  # a token that repeats (a number as well as a string) would page forever
                break
            seen.add(str(token))
            params["paginationToken"] = token
        return ScanResult(jobs, complete=False, pages=pages)

    async def cancel_job(self, job_id: str) -> None:
        await self._call("POST", f"jobs/{job_id}/action", json={"action": "cancel"})

    async def get_asset(self, asset_id: str) -> dict[str, Any]:
        """The asset with a freshly signed `url` (fetch right before downloading: the URL expires)."""
        return (await self._read(f"assets/{asset_id}")).get("asset") or {}
