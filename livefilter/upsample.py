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


def gains_to_u8(gains: np.ndarray) -> np.ndarray:
    """(2, h, w) float gains -> (h, w, 2) uint8 in 1/64 steps."""
    g = np.clip(gains.transpose(1, 2, 0) * GAIN_STEPS + 0.5, 0, 255)
    return np.ascontiguousarray(g.astype(np.uint8))


def guided(frame: np.ndarray, small: np.ndarray, styled: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """frame (H, W, 3) uint8; small, styled (h, w, 3) uint8; gains (2, h/4, w/4) float -> (H, W, 3)."""
    height, width = frame.shape[:2]
    size = (width, height)
    base = cv2.resize(styled, size, interpolation=cv2.INTER_LINEAR)
    blurred = cv2.resize(small, size, interpolation=cv2.INTER_LINEAR)
    g = cv2.resize(gains_to_u8(gains), size, interpolation=cv2.INTER_LINEAR)
    a, k = g[:, :, 0], g[:, :, 1]
    a3 = cv2.merge((a, a, a))
    scale = 1.0 / GAIN_STEPS
    # frame - blurred is signed: its two saturating halves are each scaled and applied in turn
    out = cv2.add(base, cv2.multiply(cv2.subtract(frame, blurred), a3, scale=scale))
    out = cv2.subtract(out, cv2.multiply(cv2.subtract(blurred, frame), a3, scale=scale))
    lines = cv2.morphologyEx(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), cv2.MORPH_BLACKHAT, _ELLIPSE5)
    ink = cv2.multiply(lines, k, scale=scale)
    return cv2.subtract(out, cv2.merge((ink, ink, ink)))
