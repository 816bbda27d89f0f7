"""Conversion jobs: a bounded queue, worker threads off the event loop, results by job id.

Every job lives in ``<work>/<id>/`` (``input`` and ``result.<ext>``): the client's file name
never becomes a path. Ids are 128-bit random, so a result is reachable only by whoever got
the id. Finished jobs beyond ``keep`` are forgotten (oldest first) with their files, so a
long-running server keeps flat memory and disk. `shutdown` marks every unfinished job failed
and stops running conversions; a cut result is deleted, never served.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import secrets
import shutil
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from livefilter.errors import LivefilterError
from livefilter.web.cache import ResultCache
from livefilter.web.media import (Limits, MediaError, Probe, Progress, convert_clip, convert_picture,
                                  read_picture)
from livefilter.web.styles import StyleSet

log = logging.getLogger("livefilter")

KEEP_DECODED_PIXELS = 2_000_000  # pictures behind others in the queue stay decoded up to this size
CONTENT_TYPES = {".jpg": "image/jpeg", ".png": "image/png", ".mp4": "video/mp4"}


class QueueFull(Exception):
    """The job queue is at its bound: the client should retry later (HTTP 429)."""


def new_id() -> str:
    return secrets.token_urlsafe(16)


def safe_name(client_name: str | None, ext: str) -> str:
    """A download name from the client's file name: base name only, plain characters, short."""
    base = re.split(r"[\\/]", client_name or "")[-1]
    stem = base.rsplit(".", 1)[0] if "." in base.strip(".") else base
    stem = re.sub(r"[^A-Za-z0-9._ -]+", "_", stem).strip(" ._-")[:80] or "livefilter"
    return f"{stem}-anime{ext}"


@dataclass
class Job:
    id: str
    folder: Path
    style: str
    client_name: str | None
    probe: Probe | None = None
    state: str = "queued"  # queued | running | done | failed
    error: str | None = None
    result: Path | None = None
    cached: bool = False
    cache_key: str | None = None
    progress: Progress = field(default_factory=Progress)
    image: object = None  # the decoded picture while queued (small ones only), dropped once converted
    created: float = field(default_factory=time.monotonic)
    finished: float | None = None
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def input(self) -> Path:
        return self.folder / "input"

    @property
    def download_name(self) -> str:
        return safe_name(self.client_name, self.result.suffix if self.result else "")

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES.get(self.result.suffix if self.result else "", "application/octet-stream")


class JobManager:
    """Owns the jobs, the queue and the workers; all methods are thread-safe."""

    def __init__(self, work: Path, styles: StyleSet, cache: ResultCache, limits: Limits, *,
                 workers: int = 1, max_queue: int = 16, keep: int = 256,
                 temporal: str = "flow", strength: float = 0.9) -> None:
        self.work, self.styles, self.cache, self.limits = Path(work), styles, cache, limits
        self.work.mkdir(parents=True, exist_ok=True)
        self.max_queue, self.keep = max_queue, keep
        self.temporal, self.strength = temporal, strength
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._waiting: list[str] = []  # queued ids in order, for queue_position
        self._queue: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._closed = False
        self._threads = [threading.Thread(target=self._work, name=f"livefilter-job-{i}", daemon=True)
                         for i in range(max(1, workers))]
        for thread in self._threads:
            thread.start()

    # --- creating ----------------------------------------------------------------------------
    def new_folder(self) -> tuple[str, Path]:
        """A fresh id and its folder, for an upload about to be streamed to disk."""
        job_id = new_id()
        folder = self.work / job_id
        folder.mkdir()
        return job_id, folder

    def settings_key(self, probe: Probe, style: str) -> tuple:
        engine = self.styles.settings
        temporal = (self.temporal, self.strength) if probe.kind == "clip" else ("off",)
        return (probe.kind, style, self.styles.digest(style), engine.resolution, engine.provider, temporal, "v1")

    def submit(self, job: Job) -> Job:
        """Queue a checked upload, or finish it at once from the cache. Raises QueueFull."""
        with self._lock:
            if self._closed:
                raise QueueFull("the server is shutting down")
            hit = self.cache.get(job.cache_key) if job.cache_key else None
            if hit is not None:
                result = job.folder / f"result{hit.suffix}"
                try:
                    os.link(hit, result)
                except OSError:
                    shutil.copyfile(hit, result)
                job.input.unlink(missing_ok=True)
                job.image = None
                job.result, job.cached, job.state = result, True, "done"
                job.finished = time.monotonic()
                job.progress.frames_done = job.progress.frames_total = job.probe.frames or 1
                self._add(job)
                return job
            if len(self._waiting) >= self.max_queue:
                raise QueueFull(f"the queue is full ({self.max_queue} waiting); try again shortly")
            image = job.image
            if self._waiting and image is not None and image.shape[0] * image.shape[1] > KEEP_DECODED_PIXELS:
                job.image = None  # it will wait: hold the file, not 3 bytes a pixel, until its turn
            self._add(job)
            self._waiting.append(job.id)
        self._queue.put(job.id)
        return job

    def _add(self, job: Job) -> None:
        self._jobs[job.id] = job
        finished = [j for j in self._jobs.values() if j.state in ("done", "failed")]
        for old in finished[:max(0, len(finished) - self.keep)]:
            del self._jobs[old.id]
            shutil.rmtree(old.folder, ignore_errors=True)

    def discard(self, folder: Path) -> None:
        """An upload that was refused before it became a job."""
        shutil.rmtree(folder, ignore_errors=True)

    # --- reading -----------------------------------------------------------------------------
    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def status(self, job: Job) -> dict:
        with self._lock:
            position = self._waiting.index(job.id) + 1 if job.id in self._waiting else 0
        p = job.progress
        total = p.frames_total
        if job.state == "done":
            fraction = 1.0
        elif total:
            fraction = min(0.99, p.frames_done / total)
        else:
            fraction = 0.0
        fps = p.fps if job.state == "running" else 0.0
        eta = (total - p.frames_done) / fps if (fps and total and total > p.frames_done) else None
        return {"id": job.id, "state": job.state, "progress": round(fraction, 4),
                "frames_done": p.frames_done, "frames_total": total, "fps": round(fps, 2),
                "eta_s": round(eta, 1) if eta is not None else (0.0 if job.state == "done" else None),
                "queue_position": position, "error": job.error,
                "kind": job.probe.kind if job.probe else None, "style": job.style, "cached": job.cached,
                "name": job.download_name if job.result else None}

    # --- working -----------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            job_id = self._queue.get()
            if job_id is None:
                return
            with self._lock:
                job = self._jobs.get(job_id)
                if job_id in self._waiting:
                    self._waiting.remove(job_id)
                if job is None or job.state != "queued":
                    continue
                job.state = "running"
            self._run(job)

    def _run(self, job: Job) -> None:
        try:
            engine = self.styles.engine(job.style)
            if job.probe.kind == "picture":
                out = job.folder / ("result.jpg" if job.probe.fmt == "jpeg" else "result.png")
                job.progress.frames_total = 1
                job.progress.started = time.monotonic()
                image = job.image
                if image is None:  # large pictures are not held in memory while they wait
                    image = read_picture(job.input, self.limits)[1]
                convert_picture(image, engine, out, job.probe.fmt)
                job.progress.frames_done = 1
            else:
                out = job.folder / "result.mp4"
                convert_clip(job.input, out, engine, self.temporal, self.strength, job.progress,
                             job.stop, self.limits)
                job.progress.frames_total = job.progress.frames_done  # the header's count was an estimate
            if job.cache_key:
                try:
                    self.cache.put(job.cache_key, out)
                except OSError as exc:
                    log.warning("could not cache a result: %s", exc)
            with self._lock:
                if job.state == "running":  # shutdown may have failed it meanwhile
                    job.result, job.state = out, "done"
        except MediaError as exc:
            self._fail(job, str(exc))
        except LivefilterError as exc:
            self._fail(job, str(exc))
        except Exception as exc:  # a bug: say so in the job, keep the worker alive
            log.exception("job %s failed", job.id)
            self._fail(job, f"{type(exc).__name__}: {exc}")
        finally:
            job.image = None
            job.finished = time.monotonic()
            job.input.unlink(missing_ok=True)

    def _fail(self, job: Job, message: str) -> None:
        with self._lock:
            job.state, job.error, job.result = "failed", message, None
        for leftover in job.folder.glob("result*"):
            leftover.unlink(missing_ok=True)

    # --- stopping ----------------------------------------------------------------------------
    def shutdown(self, timeout: float = 10.0) -> None:
        """Fail every unfinished job, stop running conversions, wait for the workers."""
        with self._lock:
            self._closed = True
            for job in self._jobs.values():
                if job.state in ("queued", "running"):
                    job.stop.set()
                    job.state, job.error = "failed", "the server stopped before the conversion finished"
            self._waiting.clear()
        for _ in self._threads:
            self._queue.put(None)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        for job in list(self._jobs.values()):
            if job.state == "failed":
                for leftover in job.folder.glob("result*"):
                    leftover.unlink(missing_ok=True)

    def unfinished(self) -> int:
        with self._lock:
            return sum(1 for j in self._jobs.values() if j.state in ("queued", "running"))
