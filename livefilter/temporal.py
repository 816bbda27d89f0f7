"""Temporal stages: calm the frame-to-frame shimmer of a per-frame generator.

A per-frame generator redraws texture and line art slightly differently on every frame even
when the person sits still. A temporal stage blends each new filtered frame with the history
of earlier outputs. The hard part is doing that without ghosting: where the picture moves,
history must be dropped (``motion``) or moved along with it (``flow``).

Every stage is a plain object with ``reset()`` and ``__call__(source_bgr, filtered_bgr)``; it
keeps its own history, so the pipeline needs one instance per stream and no threads are
involved. ``strength`` is always the largest weight history may get, in [0, 1): 0 means the
stage changes nothing, 0.8 means a still pixel keeps 80% of its past.

Modes:
- ``off``: the filtered frame unchanged.
- ``ema``: plain exponential moving average of outputs; smooth but ghosts on motion.
- ``motion``: EMA whose per-pixel history weight falls to zero where the INPUT changed.
  The change is measured against a blended copy of the input that carries the same weights
  as the output history, so slow drift accumulates and is caught instead of smearing.
- ``flow``: history is first warped to the current frame with DIS optical flow computed on
  small grey input frames, then blended where the warp is trustworthy (the warped input
  history matches the current input and the motion is not too fast); elsewhere the new frame
  is taken as is.
"""

from __future__ import annotations

from typing import Protocol

import cv2
import numpy as np

MODES = ("off", "ema", "motion", "flow")
# Chosen from the sweep on real talking-head clips recorded in docs/temporal.md.
DEFAULT_MODE = "flow"
DEFAULT_STRENGTH = 0.9
MOTION_WIDTH = 640  # FlowGuided's max_motion is in pixels of a picture this wide


class Temporal(Protocol):
    """What the pipeline calls after the engine, once per frame, in order."""

    def reset(self) -> None:
        """Forget history (new stream, seek, size change)."""

    def __call__(self, source_bgr: np.ndarray, filtered_bgr: np.ndarray) -> np.ndarray:
        """Return the output frame for this input/filtered pair (BGR uint8, filtered's size)."""


def make_temporal(mode: str = DEFAULT_MODE, strength: float = DEFAULT_STRENGTH, **options: float) -> Temporal:
    """Build the temporal stage for ``mode`` with history weight ``strength`` in [0, 1).

    Extra keyword ``options`` reach the stage's constructor (thresholds, flow size) for
    benchmarks; normal callers pass only mode and strength.
    """
    if mode not in MODES:
        raise ValueError(f"unknown temporal mode {mode!r}; choose one of {', '.join(MODES)}")
    strength = float(strength)
    if not 0.0 <= strength < 1.0:
        raise ValueError(f"temporal strength must be in [0, 1), got {strength}")
    if mode == "off" or strength == 0.0:
        return Off()
    if mode == "ema":
        return Ema(strength, **options)
    if mode == "motion":
        return MotionGated(strength, **options)
    return FlowGuided(strength, **options)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    """Round and saturate a float picture to uint8 (cv2 does both, fast)."""
    return cv2.convertScaleAbs(image)


def _small_grey(bgr: np.ndarray, short_side: int, pixels: int | None = None) -> np.ndarray:
    """Grey float32 copy with the given short side (or about ``pixels`` pixels in all):
    motion is judged cheaply at low resolution."""
    h, w = bgr.shape[:2]
    if pixels:
        scale = min(1.0, (pixels / (h * w)) ** 0.5)
    else:
        scale = min(1.0, short_side / min(h, w))
    size = (max(8, round(w * scale)), max(8, round(h * scale)))
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    if size != (w, h):
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    return grey.astype(np.float32)


def _ramp_weight(diff: np.ndarray, strength: float, low: float, high: float) -> np.ndarray:
    """History weight: ``strength`` below ``low`` grey levels of change, 0 above ``high``."""
    w = (high - diff) * (strength / (high - low))
    np.clip(w, 0.0, strength, out=w)
    return w


class _Blender:
    """history * w + new * (1 - w) with per-pixel w given at low resolution, in place.

    Buffers are kept between frames: allocating fresh multi-megabyte arrays every frame
    costs more in page faults than the arithmetic itself.
    """

    def __init__(self) -> None:
        self._new: np.ndarray | None = None

    def __call__(self, history: np.ndarray, filtered: np.ndarray, weight_small: np.ndarray) -> np.ndarray:
        h, w = filtered.shape[:2]
        if self._new is None or self._new.shape != history.shape:
            self._new = np.empty(history.shape, np.float32)
        weight = cv2.resize(weight_small, (w, h), interpolation=cv2.INTER_LINEAR)
        np.copyto(self._new, filtered, casting="unsafe")
        # w * history + (1 - w) * new in one pass (OpenCV divides by the weights' sum plus 1e-5:
        # a 1e-5 relative difference), 40% faster than four whole-picture passes
        return cv2.blendLinear(history, self._new, weight, 1.0 - weight, dst=history)


class Off:
    """No temporal processing: the per-frame output as is."""

    def reset(self) -> None:
        """Nothing to forget."""

    def __call__(self, source_bgr: np.ndarray, filtered_bgr: np.ndarray) -> np.ndarray:
        return filtered_bgr


class Ema:
    """Exponential moving average of outputs: the baseline every smarter stage must beat."""

    def __init__(self, strength: float) -> None:
        self.strength = strength
        self._state: np.ndarray | None = None

    def reset(self) -> None:
        self._state = None

    def __call__(self, source_bgr: np.ndarray, filtered_bgr: np.ndarray) -> np.ndarray:
        if self._state is None or self._state.shape != filtered_bgr.shape:
            self._state = filtered_bgr.astype(np.float32)
            return filtered_bgr
        # state = (1 - a) * state + a * new, with a the weight of the new frame.
        cv2.accumulateWeighted(filtered_bgr, self._state, 1.0 - self.strength)
        return _to_uint8(self._state)


class MotionGated:
    """EMA with a per-pixel history weight that drops where the input moved.

    Change is measured on a small grey copy of the input against an input history blended
    with the same weights as the output history: a pixel that drifted slowly for several
    frames differs from its history even if each single step was small, so it is refreshed
    instead of smeared.
    """

    def __init__(
        self,
        strength: float,
        low: float = 3.0,
        high: float = 12.0,
        short_side: int = 180,
        blur: float = 1.0,
    ) -> None:
        self.strength = strength
        self.low = float(low)
        self.high = float(high)
        self.short_side = int(short_side)
        self.blur = float(blur)
        self._out: np.ndarray | None = None
        self._src: np.ndarray | None = None
        self._blend = _Blender()

    def reset(self) -> None:
        self._out = None
        self._src = None

    def _prepare(self, source_bgr: np.ndarray) -> np.ndarray:
        grey = _small_grey(source_bgr, self.short_side)
        if self.blur > 0:
            grey = cv2.GaussianBlur(grey, (0, 0), self.blur)
        return grey

    def __call__(self, source_bgr: np.ndarray, filtered_bgr: np.ndarray) -> np.ndarray:
        grey = self._prepare(source_bgr)
        if self._out is None or self._out.shape != filtered_bgr.shape or self._src.shape != grey.shape:
            self._out = filtered_bgr.astype(np.float32)
            self._src = grey
            return filtered_bgr
        diff = cv2.absdiff(grey, self._src)
        weight = _ramp_weight(diff, self.strength, self.low, self.high)
        # A moving edge should refresh its surroundings too: grow the moving area a little.
        weight = cv2.erode(weight, np.ones((3, 3), np.uint8))
        # The input history follows the same weights as the output history.
        self._src = grey + weight * (self._src - grey)
        self._out = self._blend(self._out, filtered_bgr, weight)
        return _to_uint8(self._out)


class FlowGuided:
    """Warp output history along the input's optical flow, then blend where the warp holds.

    Flow (current -> previous, DIS MEDIUM) is computed on grey input frames of about 160x90
    pixels (whatever the aspect ratio), so it costs a few milliseconds; on the talking-head clips that size with the MEDIUM
    preset beat larger frames with the faster presets for the same cost (docs/temporal.md). The input history is warped with the same flow; where it disagrees with the
    current input (occlusion, failed flow, lighting change) or where motion is faster than
    ``max_motion`` pixels per frame, history gets no weight and the new frame shows through.
    Motion is counted in pixels of the picture scaled to ``MOTION_WIDTH`` wide (where it was
    tuned), so the gate means the same whether the stage smooths the model's small picture or
    a full-size frame.
    """

    def __init__(
        self,
        strength: float,
        low: float = 3.0,
        high: float = 12.0,
        short_side: int = 0,
        pixels: int = 160 * 90,
        max_motion: float = 24.0,
        preset: int = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
        blur: float = 0.7,
    ) -> None:
        self.strength = strength
        self.low = float(low)
        self.high = float(high)
        # Flow frames hold about ``pixels`` pixels whatever the aspect ratio (160x90 for 16:9,
        # 120x120 for square), so the cost per frame is the same; ``short_side`` overrides.
        self.short_side = int(short_side)
        self.pixels = None if self.short_side else int(pixels)
        self.max_motion = float(max_motion)
        self.blur = float(blur)
        self._dis = cv2.DISOpticalFlow_create(int(preset))
        self._out: np.ndarray | None = None
        self._src: np.ndarray | None = None
        self._blend = _Blender()
        self._prev_grey8: np.ndarray | None = None
        self._grids: dict[tuple[int, int], np.ndarray] = {}
        self._spare: np.ndarray | None = None
        self._map: np.ndarray | None = None

    def reset(self) -> None:
        self._out = None
        self._src = None
        self._prev_grey8 = None

    def _grid(self, h: int, w: int) -> np.ndarray:
        """(H, W, 2) float32 pixel coordinates: adding a flow gives a remap map directly."""
        key = (h, w)
        if key not in self._grids:
            xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
            self._grids[key] = np.dstack((xs, ys))
        return self._grids[key]

    def __call__(self, source_bgr: np.ndarray, filtered_bgr: np.ndarray) -> np.ndarray:
        grey = _small_grey(source_bgr, self.short_side, self.pixels)
        grey8 = grey.astype(np.uint8)
        if self.blur > 0:
            grey = cv2.GaussianBlur(grey, (0, 0), self.blur)
        if (
            self._out is None
            or self._out.shape != filtered_bgr.shape
            or self._src.shape != grey.shape
        ):
            self._out = filtered_bgr.astype(np.float32)
            self._src = grey
            self._prev_grey8 = grey8
            return filtered_bgr

        sh, sw = grey.shape
        h, w = filtered_bgr.shape[:2]
        try:
            flow = self._dis.calc(grey8, self._prev_grey8, None)  # current -> previous
        except cv2.error:  # pictures too small for DIS patches: treat as still
            flow = np.zeros((sh, sw, 2), np.float32)
        self._prev_grey8 = grey8
        warped_src = cv2.remap(self._src, self._grid(sh, sw) + flow, None, cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE)
        diff = cv2.absdiff(grey, warped_src)
        weight = _ramp_weight(diff, self.strength, self.low, self.high)
        speed = cv2.magnitude(flow[..., 0], flow[..., 1]) * (MOTION_WIDTH / sw)
        weight[speed > self.max_motion] = 0.0
        weight = cv2.erode(weight, np.ones((3, 3), np.uint8))
        self._src = grey + weight * (warped_src - grey)

        # Warp the full-resolution output history along the upscaled flow (buffers reused).
        if self._spare is None or self._spare.shape != self._out.shape:
            self._spare = np.empty_like(self._out)
            self._map = np.empty((h, w, 2), np.float32)
        flow *= np.array([w / sw, h / sh], np.float32)
        cv2.resize(flow, (w, h), dst=self._map, interpolation=cv2.INTER_LINEAR)
        cv2.add(self._map, self._grid(h, w), dst=self._map)
        cv2.remap(self._out, self._map, None, cv2.INTER_LINEAR, dst=self._spare,
                  borderMode=cv2.BORDER_REPLICATE)
        self._out, self._spare = self._spare, self._out
        self._out = self._blend(self._out, filtered_bgr, weight)
        return _to_uint8(self._out)
