"""One live connection: JPEG in, the engine and the temporal stage as `livefilter camera` runs
them, JPEG out. Called from a worker thread, one frame at a time per connection, so the
connection's own temporal history needs no lock.

Like the camera, a connection picks its quality level at run time (livefilter.quality): the
browser keeps one frame in flight, so the frames shown per second are one over the round trip,
and the controller steps down a rung while the server's time per frame would hold that below
the source's rate, and back up when there is room.
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
LIVE_FPS = 30.0  # what a webcam delivers: the rate a level must keep up with
LIVE_BUDGET_S = 0.05  # p95 server time per frame the levels aim at (20 fps shown with margin)


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
        self._ladder: list = []
        self._controller = None
        from livefilter.quality import FreeCoresMeter

        self._free_cores = FreeCoresMeter()  # lets the controller see other programs' load go

    def summary(self) -> str:
        """Frames and server-side time per frame (decode + engine + temporal + encode)."""
        if not self.seconds:
            return f"{self.frames} frames"
        p50, p95 = (float(np.percentile(self.seconds, q)) * 1000 for q in (50, 95))
        changes = len(self._controller.changes) if self._controller else 0
        return (f"{self.frames} frames, server time per frame p50 {p50:.0f} ms p95 {p95:.0f} ms, "
                f"quality {self.level}, level changes {changes}")

    def switch(self, style: str) -> None:
        """Use ``style`` from the next frame on (the connection stays open)."""
        self.wanted = style

    def _build(self) -> None:
        """Stages for the wanted style at the controller's level; a new style starts a new ladder."""
        from livefilter.pipeline import stages
        from livefilter.quality import Controller, build_ladder

        if self.wanted != self.style or not self._ladder:
            model = self.styles.models[self.wanted]
            self._ladder = build_ladder(model, self.styles.settings.resolution, self.temporal_mode,
                                        self.strength)
            if self._controller is None:
                self._controller = Controller(len(self._ladder), LIVE_FPS, clock=time.monotonic,
                                              budget=LIVE_BUDGET_S)
            else:
                self._controller.retarget(len(self._ladder), 0)
        level = self._ladder[self._controller.level]
        temporal = None
        if level.temporal != "off":
            from livefilter.temporal import make_temporal

            temporal = make_temporal(level.temporal, level.strength)
        engine = self.styles.engine_at(level.model, level.resolution, level.engine_options)
        self._stages = stages(engine, temporal)
        self._level = self._controller.level
        self.style = self.wanted

    @property
    def level(self) -> str:
        """The quality level in use (for the log and the page)."""
        return self._ladder[self._level].name if self._ladder else ""

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
        if (self._stages is None or self.wanted != self.style or (width, height) != self._size
                or self._controller.level != self._level):
            self._build()  # new style, size or level: fresh temporal history
            self._size = (width, height)
        process, post = self._stages
        frame = process(Frame(image=image, capture_time=time.monotonic(), index=self.frames))
        if post is not None:
            frame = post(frame)
        self.frames += 1
        ok, data = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise MediaError(422, "cannot encode the filtered frame")
        spent = time.monotonic() - started
        self.seconds.append(spent)
        free = self._free_cores(time.monotonic())
        if free is not None:
            self._controller.note_free_cores(free)
        self._controller.observe(spent, spent)
        return data.tobytes()
