"""Frame sources: video files (PyAV), files paced like a live camera, and real cameras (OpenCV).

Every source follows one small protocol so the pipeline does not care where pictures come from:
``read() -> Frame | None`` (None once the source has ended), ``close()``, and the attributes
``live`` (drop frames rather than fall behind), ``fps`` and ``size`` (w, h).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from livefilter.errors import LivefilterError
from livefilter.frames import Frame

log = logging.getLogger("livefilter")


def _first_line(exc: BaseException) -> str:
    """A short reason: FFmpeg's own words ("Invalid data found ...") without errno and call names."""
    reason = getattr(exc, "strerror", None)
    if reason:
        return str(reason)
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def open_input(path: str | Path):
    """Open a media file with PyAV, turning every failure into a one-line LivefilterError."""
    import av

    path = Path(path)
    if not path.exists():
        raise LivefilterError(f"input not found: {path}")
    if path.is_dir():
        raise LivefilterError(f"input is a folder, expected a video file: {path}")
    if not path.is_file():  # a pipe or device: size and seeking mean nothing, and reads may block
        raise LivefilterError(f"input is not a regular file (pipe or device): {path}")
    if path.stat().st_size == 0:
        raise LivefilterError(f"input is empty (0 bytes): {path}")
    try:
        return av.open(str(path), metadata_errors="ignore")
    except av.FFmpegError as exc:
        reason = getattr(exc, "strerror", None) or _first_line(exc)
        raise LivefilterError(f"cannot read {path}: damaged or not a video file ({reason})") from None
    except (OSError, ValueError) as exc:
        raise LivefilterError(f"cannot read {path}: {_first_line(exc)}") from None


def _upright(image: np.ndarray, rotation: int) -> np.ndarray:
    """Apply the display-matrix rotation (degrees counter-clockwise) so the picture looks upright."""
    turns = round(rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image


class FileSource:
    """Every frame of a video file, in order, with its pts and time base.

    Corrupt packets are skipped and counted (``corrupt_packets``) instead of ending the run:
    a damaged clip still converts as far as it can be decoded.
    """

    live = False

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.container = open_input(self.path)
        if not self.container.streams.video:
            self.container.close()
            raise LivefilterError(f"no video stream in {self.path}")
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"
        self.time_base: Fraction = self.stream.time_base or Fraction(1, 90000)
        rate = self.stream.average_rate or self.stream.guessed_rate or self.stream.base_rate
        self.fps = float(rate) if rate else 30.0
        self.rate = Fraction(rate) if rate else Fraction(30)
        self.corrupt_packets = 0
        self._index = 0
        self._last_pts: int | None = None
        self._pending: deque = deque()
        self._packets = self._demux()
        first = self._next_decoded()
        if first is None:
            self.close()
            raise LivefilterError(f"no decodable video frames in {self.path}")
        self._pending.appendleft(first)
        self.rotation = int(first.rotation or 0)
        w, h = first.width, first.height
        self.size = (h, w) if round(self.rotation / 90) % 2 else (w, h)
        self.frame_count = self._estimate_frames()

    def _estimate_frames(self) -> int | None:
        """Frame count from the header, else duration x rate: only for progress and messages."""
        if self.stream.frames:
            return int(self.stream.frames)
        duration = None
        if self.stream.duration is not None:
            duration = float(self.stream.duration * self.time_base)
        elif self.container.duration:
            duration = self.container.duration / 1_000_000
        return round(duration * self.fps) if duration else None

    def _demux(self) -> Iterator:
        import av

        try:
            for packet in self.container.demux(self.stream):
                yield packet
        except av.FFmpegError as exc:
            log.warning("%s: stopped reading at a damaged spot (%s)", self.path.name, _first_line(exc))

    def _next_decoded(self):
        """Next decoded av.VideoFrame, skipping packets the decoder rejects."""
        import av

        while not self._pending:
            packet = next(self._packets, None)
            if packet is None:
                return None
            try:
                self._pending.extend(packet.decode())
            except av.FFmpegError as exc:
                self.corrupt_packets += 1
                if self.corrupt_packets == 1:
                    log.warning("%s: skipping corrupt video data (%s)", self.path.name, _first_line(exc))
        return self._pending.popleft()

    def read(self) -> Frame | None:
        frame = self._next_decoded()
        if frame is None:
            return None
        image = _upright(frame.to_ndarray(format="bgr24"), self.rotation)
        pts = frame.pts if frame.pts is not None else frame.dts
        if pts is None:  # no timestamps at all: synthesize them from the frame rate
            pts = round(self._index / (self.rate * self.time_base))
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1  # encoders need strictly increasing pts
        self._last_pts = pts
        out = Frame(image=image, capture_time=time.monotonic(), pts=pts, time_base=self.time_base,
                    index=self._index)
        self._index += 1
        return out

    def close(self) -> None:
        try:
            self.container.close()
        except Exception:  # closing a broken container must not hide the real error
            pass


class PacedFileSource:
    """A video file played at its own frame rate, standing in for a live camera (optionally looped)."""

    live = True

    def __init__(self, path: str | Path, loop: bool = False) -> None:
        self.path = Path(path)
        self.loop = loop
        self._inner = FileSource(self.path)
        self.fps, self.size = self._inner.fps, self._inner.size
        self.time_base = self._inner.time_base
        self._start: float | None = None
        self._offset = 0.0  # seconds added per completed loop
        self._loop_first: float | None = None  # first timestamp of the current loop
        self._last_rel = 0.0
        self._index = 0

    def read(self) -> Frame | None:
        frame = self._inner.read()
        if frame is None and self.loop and self._index > 0:
            self._inner.close()
            self._offset = self._last_rel + 1.0 / self.fps
            self._inner = FileSource(self.path)
            self._loop_first = None
            frame = self._inner.read()
        if frame is None:
            return None
        raw = frame.seconds or 0.0
        if self._loop_first is None:
            self._loop_first = raw
        rel = self._offset + raw - self._loop_first
        self._last_rel = rel
        now = time.monotonic()
        if self._start is None:
            self._start = now - rel
        wait = self._start + rel - now
        if wait > 0:
            time.sleep(wait)
        out = Frame(image=frame.image, capture_time=time.monotonic(),
                    pts=round(rel / self.time_base), time_base=self.time_base, index=self._index)
        self._index += 1
        return out

    def close(self) -> None:
        self._inner.close()


def parse_camera_spec(spec: str | int) -> int | str:
    """'0' -> 0; '/dev/video2' stays a path."""
    text = str(spec)
    return int(text) if text.isdigit() else text


class CameraSource:
    """A webcam through OpenCV, asking for MJPG and a one-frame buffer to keep latency low.

    If the camera stops delivering, the last good picture is repeated (so previews and virtual
    cameras keep running) while the camera is reopened about once a second; meanwhile
    ``notice`` says so (the pipeline shows it on sinks that can display a banner).
    """

    LOST_NOTICE = "camera lost - reconnecting"

    live = True

    def __init__(self, spec: str | int = 0, size: tuple[int, int] | None = None,
                 fps: float | None = None) -> None:
        import cv2

        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
        self.spec = parse_camera_spec(spec)
        self._want_size, self._want_fps = size, fps
        self._cap = self._open()
        if self._cap is None:
            what = f"index {self.spec}" if isinstance(self.spec, int) else str(self.spec)
            raise LivefilterError(f"no camera at {what} (not connected, in use by another app, or no "
                                  f"permission); check the camera, try another one (--source 1, "
                                  f"--source /dev/video2), or run on a clip: --source clip.mp4")
        ok, image = self._cap.read()
        if not ok or image is None:
            self._cap.release()
            raise LivefilterError(f"camera {self.spec} opened but delivers no frames (busy?)")
        self._last = image
        self.size = (image.shape[1], image.shape[0])
        reported = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps or (reported if 1 <= reported <= 240 else 30.0))
        self.time_base = Fraction(1, 1000)
        self._t0 = time.monotonic()
        self._index = 0
        self._lost_since: float | None = None
        self.notice: str | None = None
        self._next_retry = 0.0
        self._pending_first = True

    def _open(self):
        import cv2

        if isinstance(self.spec, str) and not Path(self.spec).exists():
            return None
        cap = cv2.VideoCapture(self.spec)
        if not cap.isOpened():
            cap.release()
            return None
        cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"MJPG"))
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        if self._want_size:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self._want_size[0])
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self._want_size[1])
        if self._want_fps:
            cap.set(cv2.CAP_PROP_FPS, self._want_fps)
        return cap

    def read(self) -> Frame | None:
        if self._pending_first:
            self._pending_first = False
            image = self._last
        else:
            image = self._grab()
        now = time.monotonic()
        frame = Frame(image=image, capture_time=now, pts=round((now - self._t0) * 1000),
                      time_base=self.time_base, index=self._index)
        self._index += 1
        return frame

    def _grab(self) -> np.ndarray:
        """A fresh picture, or the last good one while the camera is lost."""
        image = self._grab_or_repeat()
        self.notice = self.LOST_NOTICE if self._lost_since is not None else None
        return image

    def _grab_or_repeat(self) -> np.ndarray:
        import cv2

        if self._cap is not None:
            ok, image = self._cap.read()
            if ok and image is not None:
                if self._lost_since is not None:
                    log.warning("camera %s is back", self.spec)
                    self._lost_since = None
                self._last = image
                return image
            log.warning("camera %s lost; showing the last picture and reconnecting", self.spec)
            self._cap.release()
            self._cap = None
            self._lost_since = time.monotonic()
        now = time.monotonic()
        if now >= self._next_retry:
            self._next_retry = now + 1.0
            self._cap = self._open()
            if self._cap is not None:
                ok, image = self._cap.read()
                if ok and image is not None:
                    if image.shape[:2] != self._last.shape[:2]:
                        image = cv2.resize(image, (self._last.shape[1], self._last.shape[0]))
                    self._last = image
                    log.warning("camera %s is back", self.spec)
                    self._lost_since = None
                    return image
                self._cap.release()
                self._cap = None
        time.sleep(1.0 / self.fps)  # no busy loop while the camera is away
        return self._last.copy()

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
