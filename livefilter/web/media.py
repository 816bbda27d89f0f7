"""What an upload is, checked by decoding it, and its conversion exactly as the CLI converts it.

Extensions and Content-Type come from the client and mean nothing here. A picture is
recognised by its header (JPEG, PNG, WebP, BMP), its pixel count is checked from that header
before anything is decoded (a 60000x60000 PNG is a few kB), then it must decode. Anything else
must open as a video with PyAV; its frame size and duration are checked from the container
before frames are decoded, and the duration again while converting (headers can lie).
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from livefilter.errors import LivefilterError

log = logging.getLogger("livefilter")

PICTURE_FORMATS = ("jpeg", "png", "webp", "bmp")


class MediaError(LivefilterError):
    """An upload the server refuses; ``status`` is the HTTP status that says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Limits:
    """Decoded-size caps: pictures by pixels, clips by frame size and duration."""

    picture_pixels: int = 50_000_000
    frame_pixels: int = 3840 * 2160
    clip_seconds: float = 1800.0


@dataclass(frozen=True)
class Probe:
    """An accepted upload: ``kind`` is "picture" or "clip"; ``fmt`` the picture format or container."""

    kind: str
    fmt: str
    width: int
    height: int
    frames: int | None = None
    seconds: float | None = None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from the first start-of-frame marker (baseline, progressive, ...)."""
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[i + 5:i + 9])
            return width, height
        i += 2 + length
    return None


def sniff_picture(head: bytes) -> tuple[str, int, int] | None:
    """(format, width, height) from a picture's first bytes, or None when it is not one we take."""
    if head.startswith(b"\xff\xd8\xff"):
        size = _jpeg_size(head)
        return ("jpeg", *size) if size else ("jpeg", 0, 0)
    if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":
        width, height = struct.unpack(">II", head[16:24])
        return "png", width, height
    if head.startswith(b"BM") and len(head) >= 26:
        width, height = struct.unpack("<ii", head[18:26])
        return "bmp", abs(width), abs(height)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        chunk = head[12:16]
        if chunk == b"VP8 " and len(head) >= 30:
            width, height = struct.unpack("<HH", head[26:30])
            return "webp", width & 0x3FFF, height & 0x3FFF
        if chunk == b"VP8L" and len(head) >= 25:
            bits = int.from_bytes(head[21:25], "little")
            return "webp", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        if chunk == b"VP8X" and len(head) >= 30:
            return "webp", int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
        return "webp", 0, 0
    return None


def read_picture(path: Path, limits: Limits) -> tuple[Probe, np.ndarray] | None:
    """The decoded picture, None when the file is not a picture, MediaError when it is a bad one."""
    import cv2

    with open(path, "rb") as handle:
        head = handle.read(256 * 1024)
    found = sniff_picture(head)
    if found is None:
        return None
    fmt, width, height = found
    if width * height > limits.picture_pixels:
        raise MediaError(413, f"picture too large: {width}x{height} pixels "
                              f"(at most {limits.picture_pixels / 1e6:.0f} megapixels)")
    data = np.fromfile(str(path), np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise MediaError(422, f"damaged {fmt.upper()} picture: it does not decode")
    if image.shape[0] * image.shape[1] > limits.picture_pixels:  # the header lied
        raise MediaError(413, "picture too large once decoded")
    return Probe("picture", fmt, image.shape[1], image.shape[0]), image


def probe_clip(path: Path, limits: Limits) -> Probe:
    """Check a non-picture upload opens as a video within the caps (header only, no decoding)."""
    import av

    try:
        container = av.open(str(path), metadata_errors="ignore")
    except (av.FFmpegError, OSError, ValueError):
        raise MediaError(415, "not a picture (JPEG, PNG, WebP, BMP) or a video this server can read") from None
    try:
        fmt = container.format.name
        if fmt.endswith("_pipe") or fmt == "image2":
            raise MediaError(415, "unsupported picture format; use JPEG, PNG, WebP or BMP")
        if not container.streams.video:
            raise MediaError(415, "no video stream in the upload")
        stream = container.streams.video[0]
        width, height = stream.codec_context.width or 0, stream.codec_context.height or 0
        if not width or not height:
            raise MediaError(422, "damaged video: no frame size in its header")
        if width * height > limits.frame_pixels:
            raise MediaError(413, f"video frames too large: {width}x{height} "
                                  f"(at most {limits.frame_pixels} pixels a frame)")
        seconds = None
        if stream.duration is not None and stream.time_base:
            seconds = float(stream.duration * stream.time_base)
        elif container.duration:
            seconds = container.duration / 1_000_000
        if seconds is not None and seconds > limits.clip_seconds:
            raise MediaError(413, f"video too long: {seconds:.0f} s (at most {limits.clip_seconds:.0f} s)")
    finally:
        container.close()
    return Probe("clip", fmt, width, height, seconds=seconds)


def check_upload(path: Path, limits: Limits) -> tuple[Probe, np.ndarray | None]:
    """Decode enough of an upload to know it is a picture or a clip we can convert.

    Returns the probe and, for pictures, the decoded image (so it is decoded once).
    """
    if path.stat().st_size == 0:
        raise MediaError(422, "the upload is empty (0 bytes)")
    picture = read_picture(path, limits)
    if picture is not None:
        return picture
    probe = probe_clip(path, limits)
    from livefilter.capture import FileSource

    try:
        source = FileSource(path)  # decodes the first frame: the clip must really decode
    except LivefilterError:
        raise MediaError(422, "damaged video: no frame decodes") from None
    frames = source.frame_count
    source.close()
    return Probe(probe.kind, probe.fmt, probe.width, probe.height, frames, probe.seconds), None


# --- conversion -----------------------------------------------------------------------------
@dataclass
class Progress:
    """Shared between the worker thread and the HTTP handlers (plain attribute writes)."""

    frames_done: int = 0
    frames_total: int | None = None
    started: float | None = None

    @property
    def fps(self) -> float:
        if not self.started or not self.frames_done:
            return 0.0
        return self.frames_done / max(1e-6, time.monotonic() - self.started)


def convert_picture(image: np.ndarray, engine: Callable, out: Path, fmt: str) -> None:
    """One picture through the engine, no temporal stage (as `livefilter image` does)."""
    import cv2

    ext = ".jpg" if fmt == "jpeg" else ".png"
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if ext == ".jpg" else []
    ok, data = cv2.imencode(ext, engine(image), params)
    if not ok:
        raise LivefilterError("cannot encode the result")
    tmp = out.with_name(out.name + ".partial")
    tmp.write_bytes(data.tobytes())
    tmp.replace(out)


def convert_clip(src: Path, out: Path, engine: Callable, temporal_mode: str, strength: float,
                 progress: Progress, stop: threading.Event, limits: Limits) -> None:
    """A clip exactly as `livefilter video` converts it: same stages, same sink, audio kept.

    Raises LivefilterError when stopped (server shutdown) or over the duration cap, so the
    caller never mistakes a cut file for a finished one.
    """
    from livefilter.capture import FileSource
    from livefilter.pipeline import run, stages
    from livefilter.sinks.video_file import VideoFileSink

    temporal = None
    if temporal_mode != "off":
        from livefilter.temporal import make_temporal

        temporal = make_temporal(temporal_mode, strength)
    source = FileSource(src)
    try:
        process, post = stages(engine, temporal, VideoFileSink.takes_i420)
        sink = VideoFileSink(out, template=src, fps=source.fps, size=source.size, overwrite=True)
    except BaseException:
        source.close()
        raise
    progress.frames_total = source.frame_count
    progress.started = time.monotonic()
    too_long = threading.Event()

    def advance(frame) -> None:
        progress.frames_done += 1
        seconds = frame.seconds
        if seconds is not None and seconds > limits.clip_seconds:
            too_long.set()
            stop.set()

    stats = run(source, process, [sink], live=False, queue_size=4, stop_event=stop,
                progress=advance, post=post)
    if too_long.is_set():
        out.unlink(missing_ok=True)
        raise MediaError(413, f"video too long once decoded (over {limits.clip_seconds:.0f} s)")
    if stats.interrupted:
        out.unlink(missing_ok=True)
        raise LivefilterError("the server stopped before the conversion finished")
    if stats.frames_written == 0:
        out.unlink(missing_ok=True)
        raise LivefilterError("no frame could be converted")
