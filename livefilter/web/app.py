"""The FastAPI app: pages, the JSON API and the live WebSocket, behind a Host/Origin guard.

Any web site the user visits may try to reach a local server, so every request must carry
an allowed Host (stops DNS rebinding), every WebSocket and every POST that names an Origin
must come from this page's own origin, and there is no CORS. Uploads are parsed while they
stream, so an oversized body is refused (413) before it is on disk. Model work never runs on
the event loop: jobs go to `JobManager`'s workers, live frames to a small thread pool.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import FileResponse, JSONResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocketDisconnect

from livefilter.web.cache import ResultCache, cache_key, file_digest
from livefilter.web.jobs import Job, JobManager, QueueFull
from livefilter.web.live import LiveSession
from livefilter.web.media import Limits, MediaError, check_upload
from livefilter.web.styles import StyleSet

log = logging.getLogger("livefilter")

STATIC = Path(__file__).resolve().parent / "static"
MULTIPART_SLACK = 64 * 1024  # part headers and boundaries on top of the file itself
MAX_FIELD_BYTES = 1024
LIVE_MAX_MESSAGE = 4 * 1024 * 1024
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"content-security-policy",
     b"default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; "
     b"connect-src 'self'; style-src 'self'; script-src 'self'; frame-ancestors 'none'; "
     b"base-uri 'none'; form-action 'self'"),
]


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    max_upload_bytes: int = 2048 * 1024 * 1024
    workers: int = 1
    max_queue: int = 16
    cache_dir: Path = field(default_factory=lambda: Path.home() / ".cache" / "livefilter" / "web")
    cache_bytes: int = 1024 * 1024 * 1024
    limits: Limits = field(default_factory=Limits)
    temporal: str = "flow"
    strength: float = 0.9
    allowed_hosts: set[str] = field(default_factory=set)
    keep_jobs: int = 256


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def host_name(value: str) -> str:
    """The host part of a Host header, lower case, IPv6 kept in brackets: "[::1]:8000" -> "[::1]"."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        return value[:end + 1] if end > 0 else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class Guard:
    """ASGI middleware: Host allowlist, same-origin WebSockets and POSTs, security headers."""

    def __init__(self, app, allowed_hosts: set[str]) -> None:
        self.app, self.allowed = app, {h.lower() for h in allowed_hosts}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        problem = None
        if host_name(host) not in self.allowed:
            problem = (400, f"Host '{host[:100]}' is not allowed (DNS rebinding guard); "
                            f"use http://127.0.0.1 or http://localhost")
        else:
            origin = headers.get("origin")
            unsafe = scope["type"] == "websocket" or scope.get("method") not in ("GET", "HEAD", "OPTIONS")
            if scope["type"] == "websocket" and origin is None:
                problem = (403, "a WebSocket needs an Origin header")
            elif unsafe and origin is not None and origin.lower() != f"http://{host}".lower():
                problem = (403, f"Origin '{origin[:100]}' is not this page's origin")
        if problem is not None:
            status, message = problem
            if scope["type"] == "websocket":
                log.debug("refused WebSocket: %s", message)
                if "websocket.http.response" in scope.get("extensions", {}):  # answer in JSON too
                    body = json.dumps({"error": message}, separators=(",", ":")).encode()
                    await send({"type": "websocket.http.response.start", "status": status,
                                "headers": [(b"content-type", b"application/json"),
                                            (b"content-length", str(len(body)).encode())]})
                    await send({"type": "websocket.http.response.body", "body": body})
                else:
                    await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})
                return
            return await error(status, message)(scope, receive, send)

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + SECURITY_HEADERS
            await send(message)

        return await self.app(scope, receive, send_with_headers)


class _Upload:
    """python-multipart callbacks: the ``file`` part streams to disk, ``style`` is kept small."""

    def __init__(self, target: Path, max_bytes: int) -> None:
        self.target, self.max_bytes = target, max_bytes
        self.handle = None
        self.size = 0
        self.too_big = False
        self.file_seen = False
        self.filename: str | None = None
        self.fields: dict[str, bytes] = {}
        self._name: str | None = None
        self._header_field = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self.bad: str | None = None

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._part_begin, "on_part_data": self._part_data,
            "on_part_end": self._part_end, "on_header_field": self._header_field_cb,
            "on_header_value": self._header_value_cb, "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
        }

    def _part_begin(self) -> None:
        self._headers, self._name = {}, None

    def _header_field_cb(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def _header_value_cb(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._header_field.lower()] = self._header_value
        self._header_field, self._header_value = b"", b""

    def _headers_finished(self) -> None:
        from python_multipart.multipart import parse_options_header

        _, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._name = params.get(b"name", b"").decode("utf-8", "replace")
        if self._name == "file" and not self.file_seen:
            self.file_seen = True
            raw = params.get(b"filename")
            self.filename = raw.decode("utf-8", "replace") if raw is not None else None
            self.handle = open(self.target, "wb")
        elif self._name == "file":
            self.bad = "send one file per upload"

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._name == "file" and self.handle is not None:
            self.size += len(chunk)
            if self.size > self.max_bytes:
                self.too_big = True
                return
            self.handle.write(chunk)
        elif self._name:
            value = self.fields.get(self._name, b"") + chunk
            if len(value) > MAX_FIELD_BYTES:
                self.bad = f"form field '{self._name[:40]}' is too long"
                return
            self.fields[self._name] = value

    def _part_end(self) -> None:
        if self._name == "file" and self.handle is not None:
            self.handle.close()
            self.handle = None

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


def _allowed_hosts(config: ServerConfig) -> set[str]:
    hosts = {"localhost", "127.0.0.1", "[::1]"} | {h.lower() for h in config.allowed_hosts}
    host = config.host.lower()
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    hosts.add(host)
    return hosts


def create_app(config: ServerConfig, styles: StyleSet) -> FastAPI:
    """The whole server; `jobs` and `live_pool` are created here and stopped on shutdown."""
    config.cache_dir.mkdir(parents=True, exist_ok=True)
    cache = ResultCache(config.cache_dir, config.cache_bytes)
    work = Path(tempfile.mkdtemp(prefix=".jobs-", dir=config.cache_dir))
    jobs = JobManager(work, styles, cache, config.limits, workers=config.workers,
                      max_queue=config.max_queue, keep=config.keep_jobs,
                      temporal=config.temporal, strength=config.strength)
    live_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="livefilter-live")

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        unfinished = jobs.unfinished()
        if unfinished:
            log.warning("stopping: %d unfinished job(s) marked failed", unfinished)
        await run_in_threadpool(jobs.shutdown)
        live_pool.shutdown(wait=False, cancel_futures=True)
        shutil.rmtree(work, ignore_errors=True)

    app = FastAPI(title="livefilter", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.jobs, app.state.styles, app.state.config = jobs, styles, config

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def any_error(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("request failed")
        return error(500, f"internal error: {type(exc).__name__}")

    # --- pages ---------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/live", include_in_schema=False)
    async def live_page() -> FileResponse:
        return FileResponse(STATIC / "live.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    # --- API -----------------------------------------------------------------------------
    @app.get("/api/styles")
    async def list_styles() -> dict:
        return {"styles": styles.names(), "default": styles.default}

    @app.post("/api/jobs")
    async def create_job(request: Request):
        from python_multipart.multipart import MultipartParser, parse_options_header

        cap = config.max_upload_bytes
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > cap + MULTIPART_SLACK:
            return error(413, f"upload too large: {int(length)} bytes (at most {cap} bytes)")
        ctype, params = parse_options_header(request.headers.get("content-type", ""))
        boundary = params.get(b"boundary")
        if ctype != b"multipart/form-data" or not boundary:
            return error(415, "send the file as multipart/form-data in a field named 'file'")
        job_id, folder = jobs.new_folder()
        upload = _Upload(folder / "input", cap)
        keep = False
        try:
            parser = MultipartParser(boundary, upload.callbacks())
            async for chunk in request.stream():
                parser.write(chunk)
                if upload.too_big:
                    return error(413, f"upload too large (at most {cap} bytes)")
                if upload.bad:
                    return error(422, upload.bad)
            parser.finalize()
            upload.close()
            if not upload.file_seen:
                return error(422, "no file: send it in a multipart field named 'file'")
            style_field = upload.fields.get("style", b"").decode("utf-8", "replace").strip()
            try:
                style = styles.check(style_field or None)
            except KeyError:
                return error(422, f"unknown style '{style_field[:60]}' (available: {', '.join(styles.names())})")
            try:
                probe, image = await run_in_threadpool(check_upload, folder / "input", config.limits)
            except MediaError as exc:
                return error(exc.status, str(exc))
            digest = await run_in_threadpool(file_digest, folder / "input")
            job = Job(id=job_id, folder=folder, style=style, client_name=upload.filename, probe=probe,
                      image=image)
            job.progress.frames_total = probe.frames if probe.kind == "clip" else 1
            job.cache_key = cache_key(digest, *(await run_in_threadpool(jobs.settings_key, probe, style)))
            try:
                await run_in_threadpool(jobs.submit, job)
            except QueueFull as exc:
                return error(429, str(exc))
            keep = True
            return JSONResponse(jobs.status(job), status_code=200 if job.cached else 202)
        except Exception as exc:
            from python_multipart.exceptions import FormParserError

            if isinstance(exc, FormParserError):
                return error(422, "malformed multipart body")
            raise
        finally:
            upload.close()
            if not keep:
                jobs.discard(folder)

    def find(job_id: str) -> Job:
        job = jobs.get(job_id)
        if job is None:
            raise StarletteHTTPException(404, "no such job")
        return job

    @app.get("/api/jobs/{job_id}")
    async def job_status(job_id: str) -> dict:
        return jobs.status(find(job_id))

    @app.get("/api/jobs/{job_id}/result")
    async def job_result(job_id: str, inline: int = 0):
        job = find(job_id)
        if job.state != "done" or job.result is None or not job.result.exists():
            return error(409, f"the job is {job.state}, there is no result" +
                         (f": {job.error}" if job.error else ""))
        # download_name holds only [A-Za-z0-9._ -], so it needs no escaping inside the quotes
        disposition = f'{"inline" if inline else "attachment"}; filename="{job.download_name}"'
        return FileResponse(job.result, media_type=job.content_type,
                            headers={"content-disposition": disposition})

    @app.get("/api/results.zip")
    async def results_zip(ids: str = ""):
        wanted = [i for i in ids.split(",") if i][:500]
        done = [j for j in (jobs.get(i) for i in wanted) if j is not None and j.state == "done"
                and j.result is not None and j.result.exists()]
        if not done:
            return error(404, "no finished jobs among the ids given")

        def build() -> Path:
            handle = tempfile.NamedTemporaryFile(dir=work, prefix=".zip-", suffix=".zip", delete=False)
            names: set[str] = set()
            with zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED) as archive:
                for job in done:
                    name, n = job.download_name, 2
                    while name in names:
                        stem, _, ext = job.download_name.rpartition(".")
                        name, n = f"{stem}-{n}.{ext}", n + 1
                    names.add(name)
                    archive.write(job.result, name)
            handle.close()
            return Path(handle.name)

        path = await run_in_threadpool(build)
        return FileResponse(path, media_type="application/zip",
                            headers={"content-disposition": 'attachment; filename="livefilter-results.zip"'},
                            background=BackgroundTask(path.unlink, missing_ok=True))

    # --- live ----------------------------------------------------------------------------
    @app.websocket("/api/live")
    async def live(ws: WebSocket) -> None:
        wanted = ws.query_params.get("style")
        await ws.accept()
        try:
            style = styles.check(wanted)
        except KeyError:
            await ws.send_text(json.dumps({"error": f"unknown style '{str(wanted)[:60]}'"}))
            await ws.close(code=1008)
            return
        session = LiveSession(styles, style, config.temporal, config.strength)
        loop = asyncio.get_running_loop()
        latest: list[bytes] = []
        arrived = asyncio.Event()
        closed = asyncio.Event()
        counts = {"dropped": 0}

        async def reader() -> None:
            try:
                while True:
                    message = await ws.receive()
                    if message["type"] == "websocket.disconnect":
                        break
                    data = message.get("bytes")
                    if data is not None:
                        if len(data) > LIVE_MAX_MESSAGE:
                            await ws.send_text(json.dumps({"error": "live frame too large"}))
                            continue
                        if latest:
                            counts["dropped"] += 1  # the newest frame wins
                        latest[:] = [data]
                        arrived.set()
                        continue
                    try:
                        request = json.loads(message.get("text") or "{}")
                        name = styles.check(str(request.get("style") or "")) if "style" in request else None
                    except (ValueError, KeyError, AttributeError):
                        await ws.send_text(json.dumps({"error": "unknown style or bad message"}))
                        continue
                    if name:
                        session.switch(name)
                        await ws.send_text(json.dumps({"style": name}))
            except (WebSocketDisconnect, RuntimeError):
                pass
            finally:
                closed.set()
                arrived.set()

        task = asyncio.create_task(reader())
        try:
            while True:
                await arrived.wait()
                arrived.clear()
                if closed.is_set() or not latest:
                    if closed.is_set():
                        break
                    continue
                data = latest.pop()
                try:
                    out = await loop.run_in_executor(live_pool, session.process, data)
                except MediaError as exc:
                    await ws.send_text(json.dumps({"error": str(exc)}))
                    continue
                await ws.send_bytes(out)
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            task.cancel()
            log.info("live connection closed: %s; %d frames dropped (newest wins)", session.summary(),
                     counts["dropped"])

    return app


def wrap(config: ServerConfig, styles: StyleSet):
    """The app behind its guard: what uvicorn serves."""
    app = create_app(config, styles)
    guarded = Guard(app, _allowed_hosts(config))
    guarded.state = app.state  # type: ignore[attr-defined]
    return guarded
