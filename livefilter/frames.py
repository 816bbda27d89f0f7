"""The record that flows through every stage: one picture and when it happened."""

from __future__ import annotations

from dataclasses import dataclass, replace
from fractions import Fraction

import numpy as np


@dataclass(frozen=True)
class Frame:
    """One video frame on its way from a source to the sinks.

    ``image`` is BGR uint8 (H, W, 3), OpenCV's convention, so sources and sinks need no
    conversion; the engine converts to the model's RGB [-1, 1] itself.
    ``capture_time`` is ``time.monotonic()`` when the source produced the frame: latency is
    measured from it to the sink write. ``pts``/``time_base`` are the presentation timestamp
    of a file source (kept so conversion preserves timing); live sources set them too, from
    the capture clock. ``index`` counts frames read from the source, dropped ones included.
``original`` keeps the unfiltered picture once the engine has run, for side-by-side preview
and for temporal stages that look at input motion. ``painting`` (an `engine.Painting`) is the
model's result at its own size, carried from the engine to the temporal stage, which smooths it
there before it is brought to the frame's size; ``image`` is then still the original.
``format`` is "bgr24", or "yuv420p" when the last stage wrote ``image`` straight in the
encoder's I420 layout ((H*3/2, W), H and W even) for a sink that takes it (`takes_i420`).
    """

    image: np.ndarray
    capture_time: float
    pts: int | None = None
    time_base: Fraction | None = None
    index: int = 0
    original: np.ndarray | None = None
    painting: object | None = None
    format: str = "bgr24"

    def with_image(self, image: np.ndarray) -> "Frame":
        """Same timing, new picture: what every processing stage returns."""
        return replace(self, image=image)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the picture, whatever its format."""
        height, width = self.image.shape[:2]
        return (width, height * 2 // 3) if self.format == "yuv420p" else (width, height)

    def bgr(self) -> np.ndarray:
        """The picture as BGR (H, W, 3), converted if the stage wrote I420."""
        if self.format == "yuv420p":
            import cv2

            return cv2.cvtColor(self.image, cv2.COLOR_YUV2BGR_I420)
        return self.image

    @property
    def seconds(self) -> float | None:
        """Presentation time in seconds, when known."""
        if self.pts is None or self.time_base is None:
            return None
        return float(self.pts * self.time_base)
