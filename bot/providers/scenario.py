"""Scenario's Video-to-Layers model as a provider: one video in, up to ten transparent layer
videos out (plus a side-by-side preview the bot draws).

The wire details live in scenario_api.py (calls), scenario_upload.py (multipart upload) and
scenario_layers.py (names, order, preview); this module is the sequence the runner drives.
The paid `generate` call is sent once; when its outcome is unknown the runner calls `reconcile`,
which finds the job by the asset it was given (an asset we uploaded for this job only).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from bot.media.probe import MediaError, check_video, probe_video_async
from bot.models import Artifact, Job, RemotePhase, RemoteStatus
from bot.net import Net
from bot.paths import job_path
from bot.providers import phrases
from bot.providers.base import (
    AuthFailed,
    InputRejected,
    NotFound,
    Provider,
    ProviderError,
    ProviderLimits,
    ReconcileUnknown,
    Transient,
    parse_timestamp,
)
from bot.providers.scenario_api import LAYERS_MODEL, ScenarioAPI
from bot.providers.scenario_layers import (
    download_key,
    layer_filename,
    layer_label,
    make_preview,
    output_index,
)
from bot.providers.scenario_upload import CONTENT_TYPES, upload_video

log = logging.getLogger(__name__)

MIB = 1024 * 1024
_PHASES = {
    "pending": RemotePhase.QUEUED, "queued": RemotePhase.QUEUED, "warming-up": RemotePhase.QUEUED,
    "in-progress": RemotePhase.RUNNING, "finalizing": RemotePhase.RUNNING,
    "success": RemotePhase.SUCCEEDED, "failure": RemotePhase.FAILED, "canceled": RemotePhase.CANCELLED,
}


_UNSURE = ("{why}, so the bot cannot tell whether Scenario received this job. It was not submitted again, "
           "to avoid paying twice; it may still have been charged. Check your jobs in Scenario's web app "
           "before running it again.")


def _known(value: Any, table: dict[str, Any]) -> bool:
    """Whether a field of a list entry (any JSON) is one of `table`'s keys."""
    return isinstance(value, str) and value in table


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class ScenarioProvider(Provider):
    name = "scenario"
    display_name = "Scenario"

    model_id = LAYERS_MODEL
    #: what we accept before spending anything (Scenario publishes no limits; these are ours)
    max_input_bytes = 500 * MIB
    max_seconds = 120.0
    max_side = 4096
    #: our own floors (Scenario publishes none): layers need motion across frames and a visible subject
    min_frames = 4
    min_side = 32
    formats = frozenset(CONTENT_TYPES)
    max_layer_bytes = 2048 * MIB
    #: how often / how long to wait for Scenario to import an upload
    upload_poll_seconds = 2.0
    upload_timeout = 300.0
    #: a submission whose answer we missed may still be processed for this long after we gave up,
    #: so a lookup that finds nothing earlier says "look again later", not "never created"
    reconcile_settle_seconds = 90.0
    #: jobs per page when looking for a submission (the list is read to the job's creation anyway)
    reconcile_page_size = 100
    #: a safety net against a list that never ends (the scan normally stops at the job's creation)
    reconcile_max_pages = 5000
    #: allowed difference between our clock and Scenario's when matching creation times
    clock_skew = timedelta(minutes=5)
    #: pages of the job list one status scan may read before leaving the rest to single polls
    batch_max_pages = 3

    def __init__(self, settings: Any, net: Net) -> None:
        self.settings = settings
        self.net = net
        self.limits = ProviderLimits.from_settings(settings)
        self.reconcile_settle_seconds = settings.reconcile_settle_seconds
        key = settings.api_key.get_secret_value() if settings.api_key else ""
        secret = settings.api_secret.get_secret_value() if settings.api_secret else ""
        self.api = ScenarioAPI(net, settings.base_url, key, secret)
        self.quotes: dict[int, float] = {}  # max_layers -> creative units, from dry runs
        self._quoted: set[int] = set()  # the layer counts this process priced itself

    # -- upload (free) ----------------------------------------------------------------------------
    async def upload(self, job: Job, workdir: Path) -> dict[str, Any]:
        video = job.params.get("video") or {}
        if not video.get("url"):
            raise InputRejected("No video was attached.")
        spool = job_path(workdir, "input.bin")
        try:
            await self.net.download(video["url"], spool, max_bytes=self.max_input_bytes)
        except (NotFound, AuthFailed) as exc:
            raise InputRejected("The attachment is no longer available on Discord; please send it again.") \
                from exc
        try:
            info = await probe_video_async(spool)
            check_video(info, max_bytes=self.max_input_bytes, max_seconds=self.max_seconds, max_side=self.max_side,
                        formats=self.formats, min_side=self.min_side, min_frames=self.min_frames,
                        service="Scenario's layer extraction")
        except MediaError as exc:
            raise InputRejected(str(exc)) from exc
        name = Path(video.get("filename") or "video").stem[:60] or "video"
        uploaded = await upload_video(self.api, self.net, spool, file_name=f"{name}.{info.container}",
                                      kind=info.container, poll_every=self.upload_poll_seconds,
                                      import_timeout=self.upload_timeout)
        data = {**uploaded, "input": {"seconds": round(info.duration, 2), "width": info.width,
                                      "height": info.height, "bytes": info.size}}
        try:
            quote = await self.quote(job.evolve(provider_data={**job.provider_data, **data}))
        except ProviderError as exc:  # a price is a nicety here: the real run decides
            log.info("job %s: Scenario gave no quote: %s", job.id, exc)
            quote = None
        return {**data, "quote": quote} if quote is not None else data

    def recall(self, recent: Sequence[Job]) -> None:
        """The newest quote per layer count from jobs this process did not upload itself (before a
        restart, or in a worker): the next `/layers` can still state its price up front."""
        newest: dict[int, float] = {}
        for job in recent:
            quote = job.provider_data.get("quote")
            if isinstance(quote, int | float) and not isinstance(quote, bool):
                newest.setdefault(int(job.params.get("max_layers", 6)), float(quote))
        # what an earlier recall read is replaced by what is newer; this process's own dry runs stay
        self.quotes.update({layers: quote for layers, quote in newest.items() if layers not in self._quoted})

    async def quote(self, job: Job) -> float | None:
        """Scenario's price for this run (a dry run: nothing is spent), remembered per layer count
        so the next command can state it before anything is uploaded."""
        body = await self.api.dry_run(self.model_id, self._inputs(job))
        cost = body.get("creativeUnitsCost") if isinstance(body, dict) else None
        if not isinstance(cost, int | float):
            return None
        self.quotes[int(job.params.get("max_layers", 6))] = float(cost)
        self._quoted.add(int(job.params.get("max_layers", 6)))
        return float(cost)

    # -- the paid call ------------------------------------------------------------------------------
    def _inputs(self, job: Job) -> dict[str, Any]:
        return {"video": job.provider_data["asset_id"],
                "separationInstruction": job.params["instruction"],
                "maxLayers": int(job.params.get("max_layers", 6))}

    async def submit(self, job: Job) -> tuple[str, dict[str, Any]]:
        body = await self.api.run_model(self.model_id, self._inputs(job))
        remote = body.get("job") or {}
        job_id = remote.get("jobId")
        if not job_id:
            raise ProviderError("Scenario accepted the job but did not say its id.")
        return job_id, {"cost": body.get("creativeUnitsCost")}

    async def reconcile(self, job: Job) -> str | None:
        """Find the job an unanswered submission may have created: a custom job of our model whose
        input video is the asset we uploaded for this job only, owned by the project that owns
        that upload, created after this job was. Every page back to the job's creation is read;
        a scan that cannot finish answers "unknown" (ReconcileUnknown), never "not created"."""
        asset_id = job.provider_data.get("asset_id")
        if not asset_id:
            return None  # nothing uploaded, so nothing can have been submitted
        since = job.created_at - self.clock_skew
        try:
            scan = await self.api.list_jobs(created_after=_iso(since), stop_before=since,
                                            page_size=self.reconcile_page_size, max_pages=self.reconcile_max_pages)
        except (Transient, aiohttp.ClientError, TimeoutError) as exc:
            raise ReconcileUnknown(_UNSURE.format(why="Scenario's job list could not be read"),
                                   retry_after=60) from exc
        owner = job.provider_data.get("owner_id")
        for remote in scan.jobs:
            meta = remote.get("metadata") or {}
            inputs = meta.get("input") or {}
            created = parse_timestamp(remote.get("createdAt"))
            if (remote.get("jobType", "custom") == "custom" and inputs.get("video") == asset_id
                    and inputs.get("modelId", self.model_id) == self.model_id
                    and (owner is None or remote.get("ownerId") in (None, owner))
                    and created is not None and created >= since and remote.get("jobId")):
                return str(remote["jobId"])
        if not scan.complete:
            raise ReconcileUnknown(_UNSURE.format(why=f"Scenario's job list had more pages than the bot "
                                                      f"could read ({scan.pages})"), retry_after=60)
        intent = job.submit_intent_at or job.created_at
        waited = (datetime.now(UTC) - intent).total_seconds()
        if waited < self.reconcile_settle_seconds:
            # Not listed yet may still mean "arriving": look again before deciding it never was.
            raise ReconcileUnknown("Checking with Scenario whether the submission arrived.",
                                   retry_after=self.reconcile_settle_seconds - waited)
        return None

    # -- progress -------------------------------------------------------------------------------------
    async def poll(self, job: Job) -> RemoteStatus:
        return self._status(await self.api.get_job(job.remote_id or ""))

    batch_status = True

    async def poll_many(self, jobs: Sequence[Job]) -> dict[str, RemoteStatus]:
        """One scan of the job list (newest first, 100 a page) back to the oldest of these jobs'
        creation, stopping once all are found, answers them all. Jobs the scan did not reach in
        `batch_max_pages` (a busy account with many newer jobs), and jobs listed without a status
        the bot knows (the list would say "running" for ever), are left to `poll`."""
        wanted = {j.remote_id: j.id for j in jobs if j.remote_id}
        if not wanted:
            return {}
        since = min(j.created_at for j in jobs) - self.clock_skew
        scan = await self.api.list_jobs(created_after=_iso(since), stop_before=since, page_size=100,
                                        max_pages=self.batch_max_pages, until_found=set(wanted))
        answers = {wanted[r["jobId"]]: self._status(r) for r in scan.jobs
                   if _known(r.get("jobId"), wanted) and _known(r.get("status"), _PHASES)}
        for job in jobs:  # a paid job is never ended on a list entry that lacks its layers: read it whole
            status = answers.get(job.id)
            if status is not None and status.phase is RemotePhase.SUCCEEDED and not status.data.get("asset_ids"):
                answers[job.id] = await self.poll(job)
        return answers

    def _status(self, remote: dict[str, Any]) -> RemoteStatus:
        raw = str(remote.get("status", ""))
        phase = _PHASES.get(raw, RemotePhase.RUNNING)
        progress = remote.get("progress")
        progress = max(0.0, min(1.0, float(progress))) if isinstance(progress, int | float) else None
        meta = remote.get("metadata") or {}
        if phase is RemotePhase.FAILED:
            error = meta.get("error") or "Scenario reported the job as failed."
            return RemoteStatus(phase, progress=progress, raw_status=raw,
                                error=f"Scenario could not split the video: {error}"[:900],
                                hint=(meta.get("hint") or None))
        data: dict[str, Any] = {}
        if phase is RemotePhase.SUCCEEDED:
            data = {"asset_ids": list(meta.get("assetIds") or [])}
            billing = remote.get("billing") or {}
            if isinstance(billing.get("cuCost"), int | float):
                data["cu_cost"] = billing["cuCost"]
        return RemoteStatus(phase, progress=progress, raw_status=raw, detail=phrases.scenario(raw), data=data)

    # -- results ----------------------------------------------------------------------------------------
    async def collect(self, job: Job, status: RemoteStatus, workdir: Path) -> list[Artifact]:
        asset_ids = list(status.data.get("asset_ids") or [])
        if not asset_ids:
            raise InputRejected("Scenario finished but returned no layers. Try a different separation "
                                "instruction (describe what to separate, not the scene).")
        layers: list[tuple[int, Path, str, str, str]] = []
        for position, asset_id in enumerate(asset_ids):
            asset = await self.api.get_asset(asset_id)  # fresh signed URL, right before downloading
            index = output_index(asset, position)
            filename = layer_filename(index, asset)
            dest = job_path(workdir, filename)
            await self._download_asset(asset_id, asset, dest)
            layers.append((index, dest, filename, layer_label(asset), asset_id))
        layers.sort(key=lambda item: item[0])
        preview = await make_preview([item[1] for item in layers], job_path(workdir, "layers-preview.png"),
                                     [f"{i:02d} {label}".strip() for i, _, _, label, _ in layers])
        artifacts = [Artifact(path=preview, filename="layers-preview.png",
                              description=f"all {len(layers)} layers side by side (first frame)")]
        for index, path, filename, label, asset_id in layers:
            words = f"layer {index}" + (f": {label}" if label else "")
            artifacts.append(Artifact(path=path, filename=filename, description=words,
                                      download_key=download_key(asset_id)))
        return artifacts

    async def _download_asset(self, asset_id: str, asset: dict[str, Any], dest: Path) -> None:
        expected = (asset.get("properties") or {}).get("size")
        if dest.exists() and expected and dest.stat().st_size == expected:
            return  # fetched on an earlier try of this step
        for attempt in range(3):
            url = asset.get("url")
            if not url:
                raise ProviderError(f"Scenario gave no download link for layer {asset_id}.")
            try:
                await self.net.download(url, dest, max_bytes=self.max_layer_bytes)
                return
            except (AuthFailed, NotFound):  # the signed URL expired between the lookup and the GET
                if attempt == 2:  # a CDN refusing links is not our API key: try the step again later
                    raise Transient(f"Scenario's download link for layer {asset_id} kept being refused.") \
                        from None
                asset = await self.api.get_asset(asset_id)

    async def fresh_link(self, job: Job, key: str) -> str:
        for asset_id in (job.provider_data.get("_status") or {}).get("asset_ids") or []:
            if download_key(asset_id) == key:
                url = (await self.api.get_asset(asset_id)).get("url")
                if url:
                    return url
        raise NotFound("This layer is not available any more.")

    async def cancel(self, job: Job) -> str | None:
        """Scenario documents cancel for inference jobs only; try, and tell the user on a refusal."""
        if not job.remote_id:
            return None
        try:
            await self.api.cancel_job(job.remote_id)
        except (InputRejected, NotFound) as exc:
            log.info("job %s: Scenario did not cancel %s: %s", job.id, job.remote_id, exc)
            return ("Scenario does not let the bot stop a layers job that has started: it will finish on "
                    "their side and may still use credits, but nothing will be posted here.")
        return None

    async def close(self) -> None:
        await self.net.close()  # a no-op for the bot's shared session, which the bot closes itself

    async def check(self) -> str:
        await self.api.list_jobs(created_after=_iso(datetime.now(UTC) - timedelta(days=1)), page_size=1,
                                 max_pages=1)
        return "credentials accepted"
