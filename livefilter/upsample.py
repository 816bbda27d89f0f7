"""The full-resolution step of the HD path: the student's picture guided up by the frame itself.

    out = up(styled) + a * (frame - up(small)) - k * blackhat(grey(frame))

``small`` is what the model saw, ``styled`` what it painted, ``a`` and ``k`` the two gain maps it
predicted (at 1/4 of its resolution; livefilter/train/hdmodel.py explains them). Everything here
is 8-bit OpenCV arithmetic with saturation, because at 1280x720 a frame is 2.8 million values and
the float version of the same formula took 10-30x longer on 2 cores. The gains travel as uint8 in
steps of 1/64, which is also how they are clipped in training (0 to 255/64).
"""

from __future__ import annotations

import cv2
import numpy as np

GAIN_STEPS = 64  # uint8 gain g means g / 64
_ELLIPSE5 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
# OpenCV's BGR -> I420 (BT.601, limited range) as one matrix, for the model's small pictures:
# the rows give Y, U and V from B, G, R, plus the offset.
_BGR_TO_YUV = np.array([[0.098, 0.504, 0.257, 16.0],
                        [0.439, -0.291, -0.148, 128.0],
                        [-0.071, -0.368, 0.439, 128.0]], np.float32)


def gain_planes(gains: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(2, h, w) float gains -> the a and k planes, (h, w) uint8 each in 1/64 steps."""
    a, k = np.clip(gains * GAIN_STEPS + 0.5, 0, 255).astype(np.uint8)
    return a, k


class GuideBuffers:
    """The full-size working pictures of `guided`, kept from one frame to the next.

    At 1280x720 a fresh set of them costs more in page faults than the arithmetic (measured:
    about 18 ms per frame against 7 ms with buffers kept). One per stream, like a temporal
    stage's history: never shared between threads.
    """

    def __init__(self) -> None:
        self._shape: tuple[int, int] | None = None

    def ready(self, height: int, width: int) -> "GuideBuffers":
        if self._shape != (height, width):
            self._shape = (height, width)
            color = (height, width, 3)
            self.base, self.blurred, self.a3 = (np.empty(color, np.uint8) for _ in range(3))
            self.detail, self.ink3 = np.empty(color, np.uint8), np.empty(color, np.uint8)
            self.a, self.k = np.empty((height, width), np.uint8), np.empty((height, width), np.uint8)
            self.grey, self.lines = np.empty((height, width), np.uint8), np.empty((height, width), np.uint8)
            self.yuv = None
        return self

    def ready_i420(self, height: int, width: int) -> "GuideBuffers":
        """`ready`, plus the half-size planes and the frame's I420 copy that `guided_i420` uses."""
        self.ready(height, width)
        if self.yuv is None:
            half = (height // 2, width // 2)
            self.yuv = np.empty((height * 3 // 2, width), np.uint8)
            self.half_a = np.empty(half, np.uint8)
            self.half_base, self.half_blurred, self.half_detail = (np.empty(half, np.uint8) for _ in range(3))
            self.y_base, self.y_blurred, self.y_detail = (np.empty((height, width), np.uint8) for _ in range(3))
        return self


def i420_planes(buffer: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views of the Y (H, W), U and V (H/2, W/2) planes of an (H*3/2, W) I420 picture."""
    flat = buffer.reshape(-1)
    quarter = height * width // 4
    y = flat[:height * width].reshape(height, width)
    u = flat[height * width:height * width + quarter].reshape(height // 2, width // 2)
    v = flat[height * width + quarter:].reshape(height // 2, width // 2)
    return y, u, v


def _detail_into(out: np.ndarray, base: np.ndarray, source: np.ndarray, blurred: np.ndarray,
                 a: np.ndarray, scratch: np.ndarray) -> None:
    """out = base + a * (source - blurred), in 8 bits: the signed difference in two saturating halves."""
    scale = 1.0 / GAIN_STEPS
    cv2.subtract(source, blurred, dst=scratch)
    cv2.multiply(scratch, a, dst=scratch, scale=scale)
    cv2.add(base, scratch, dst=out)
    cv2.subtract(blurred, source, dst=scratch)
    cv2.multiply(scratch, a, dst=scratch, scale=scale)
    cv2.subtract(out, scratch, dst=out)


def guided(frame: np.ndarray, small: np.ndarray, styled: np.ndarray, gains: np.ndarray,
           work: GuideBuffers | None = None) -> np.ndarray:
    """frame (H, W, 3) uint8; small, styled (h, w, 3) uint8; gains (2, h/4, w/4) float -> (H, W, 3).

    ``work`` keeps the working pictures between calls (faster); the result is always a new array.
    """
    height, width = frame.shape[:2]
    size = (width, height)
    b = (work or GuideBuffers()).ready(height, width)
    cv2.resize(styled, size, dst=b.base, interpolation=cv2.INTER_LINEAR)
    cv2.resize(small, size, dst=b.blurred, interpolation=cv2.INTER_LINEAR)
    a8, k8 = gain_planes(gains)
    cv2.resize(a8, size, dst=b.a, interpolation=cv2.INTER_LINEAR)
    cv2.resize(k8, size, dst=b.k, interpolation=cv2.INTER_LINEAR)
    cv2.merge((b.a, b.a, b.a), dst=b.a3)
    out = np.empty_like(b.base)
    _detail_into(out, b.base, frame, b.blurred, b.a3, b.detail)
    cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY, dst=b.grey)
    cv2.morphologyEx(b.grey, cv2.MORPH_BLACKHAT, _ELLIPSE5, dst=b.lines)
    cv2.multiply(b.lines, b.k, dst=b.lines, scale=1.0 / GAIN_STEPS)
    cv2.merge((b.lines, b.lines, b.lines), dst=b.ink3)
    return cv2.subtract(out, b.ink3, dst=out)


def guided_i420(frame: np.ndarray, small: np.ndarray, styled: np.ndarray, gains: np.ndarray,
                work: GuideBuffers | None = None) -> np.ndarray:
    """`guided`, written straight in the encoder's I420 layout: (H*3/2, W) uint8, H and W even.

    The step is linear in the colour, so it holds plane by plane: Y at full size, U and V at
    half, where the encoder keeps them anyway. The dark lines move Y only (grey ink). That is
    half the full-size work of the BGR step, and the encoder's own BGR -> I420 pass goes too:
    at 720p, 5.4 against 9.0 ms for the BGR step and that pass (one thread, measured in turn). The result is the
    BGR step's picture converted to I420 to within a level or two (47 dB), except where a
    colour saturates, which each space clips its own way.
    """
    height, width = frame.shape[:2]
    if height % 2 or width % 2:
        raise ValueError(f"I420 needs an even size, got {width}x{height}")
    b = (work or GuideBuffers()).ready_i420(height, width)
    yuv = cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420, dst=b.yuv)
    styled_yuv = cv2.split(cv2.transform(styled, _BGR_TO_YUV))
    small_yuv = cv2.split(cv2.transform(small, _BGR_TO_YUV))
    a8, k8 = gain_planes(gains)
    cv2.resize(a8, (width, height), dst=b.a, interpolation=cv2.INTER_LINEAR)
    cv2.resize(k8, (width, height), dst=b.k, interpolation=cv2.INTER_LINEAR)
    cv2.resize(a8, (width // 2, height // 2), dst=b.half_a, interpolation=cv2.INTER_LINEAR)
    out = np.empty((height * 3 // 2, width), np.uint8)
    full = (b.y_base, b.y_blurred, b.y_detail, b.a)
    half = (b.half_base, b.half_blurred, b.half_detail, b.half_a)
    for c, (source, target) in enumerate(zip(i420_planes(yuv, height, width), i420_planes(out, height, width))):
        base, blurred, detail, a = full if c == 0 else half
        size = source.shape[::-1]
        cv2.resize(styled_yuv[c], size, dst=base, interpolation=cv2.INTER_LINEAR)
        cv2.resize(small_yuv[c], size, dst=blurred, interpolation=cv2.INTER_LINEAR)
        _detail_into(target, base, source, blurred, a, detail)
    y = out[:height]
    cv2.morphologyEx(yuv[:height], cv2.MORPH_BLACKHAT, _ELLIPSE5, dst=b.lines)
    cv2.multiply(b.lines, b.k, dst=b.lines, scale=1.0 / GAIN_STEPS)
    cv2.subtract(y, b.lines, dst=y)
    return out
