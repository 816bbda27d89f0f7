"""One live connection: JPEG in, the engine and the temporal stage as `livefilter camera` runs
them, JPEG out. Called from a worker thread, one frame at a time per connection, so the
connection's own temporal history needs no lock.
"""

from __future__ import annotations

import time
from collections import deque

import numpy as np

from livefilter.frames import Frame
from livefilter.web.media import MediaError
from livefilter.web.styles import StyleSet

MAX_LIVE_PIXELS = 1920 * 1080
JPEG_QUALITY = 80


class LiveSession:
    """Per-connection state: the current style and its own temporal stage."""

    def __init__(self, styles: StyleSet, style: str, temporal: str, strength: float) -> None:
        self.styles, self.temporal_mode, self.strength = styles, temporal, strength
        self.style = style
        self.wanted = style
        self._stages = None
        self._size: tuple[int, int] | None = None
        self.frames = 0
        self.seconds: deque[float] = deque(maxlen=2000)  # server time per frame, for the log

    def summary(self) -> str:
        """Frames and server-side time per frame (decode + engine + temporal + encode)."""
        if not self.seconds:
            return f"{self.frames} frames"
        p50, p95 = (float(np.percentile(self.seconds, q)) * 1000 for q in (50, 95))
        return f"{self.frames} frames, server time per frame p50 {p50:.0f} ms p95 {p95:.0f} ms"

    def switch(self, style: str) -> None:
        """Use ``style`` from the next frame on (the connection stays open)."""
        self.wanted = style

    def _build(self) -> None:
        from livefilter.pipeline import stages

        temporal = None
        if self.temporal_mode != "off":
            from livefilter.temporal import make_temporal

            temporal = make_temporal(self.temporal_mode, self.strength)
        self._stages = stages(self.styles.engine(self.wanted), temporal)
        self.style = self.wanted

    def process(self, jpeg: bytes) -> bytes:
        """One camera frame (JPEG bytes) -> the filtered frame (JPEG bytes)."""
        import cv2

        started = time.monotonic()
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise MediaError(415, "a live frame must be a JPEG picture")
        height, width = image.shape[:2]
        if width * height > MAX_LIVE_PIXELS:
            raise MediaError(413, f"live frame too large: {width}x{height} (at most 1920x1080)")
        if self._stages is None or self.wanted != self.style or (width, height) != self._size:
            self._build()  # new style or size: fresh temporal history
            self._size = (width, height)
        process, post = self._stages
        frame = process(Frame(image=image, capture_time=time.monotonic(), index=self.frames))
        if post is not None:
            frame = post(frame)
        self.frames += 1
        ok, data = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise MediaError(422, "cannot encode the filtered frame")
        self.seconds.append(time.monotonic() - started)
        return data.tobytes()
