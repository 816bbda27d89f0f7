"""Flicker and fidelity measures for filtered video.

Flicker is the warping error of Lai et al. 2018 ("Learning Blind Video Temporal
Consistency", ECCV): optical flow is computed on the INPUT frames, so motion the camera saw is
compensated and only changes the filter invented remain. For each consecutive pair (t, t+1):

- forward flow F (t -> t+1) and backward flow B (t+1 -> t): OpenCV DIS, MEDIUM preset, on grey
  input frames at full resolution;
- occluded at a pixel x of frame t when the flows disagree,
  |F(x) + B(x + F(x))|^2 > 0.01 (|F(x)|^2 + |B(x + F(x))|^2) + 0.5,
  or on a motion boundary, |grad F_u|^2 + |grad F_v|^2 > 0.01 |F(x)|^2 + 0.002
  (the thresholds of the authors' evaluation code); we also count pixels whose match falls
  outside the frame as occluded, since nothing there can be compared;
- E_warp(t) = sum over non-occluded x and the 3 colour channels of (O_t(x) - O_{t+1}(x + F(x)))^2
  divided by (3 * number of non-occluded pixels), pictures scaled to [0, 1] (the authors divide
  by the number of mask entries of a 3-channel mask, i.e. a mean over channels as well);
- E_warp of the clip = mean of E_warp(t) over all pairs.

Fidelity guards against "winning" by freezing or blurring: PSNR of the blended output against
the per-frame output, from the mean squared error over the whole clip, plus the worst frame
(where a ghost trail would show).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

PSNR_CAP = 100.0  # dB reported for identical pictures, so JSON never holds infinity


def _grey(bgr: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY) if bgr.ndim == 3 else bgr


def _sample(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """image(x + flow(x)) with bilinear interpolation: brings a later frame back onto frame t."""
    h, w = flow.shape[:2]
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(
        image, xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Warp ``image`` (frame t+1) onto frame t along ``flow`` (t -> t+1), bilinear."""
    return _sample(image, flow)


def non_occluded_mask(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """Boolean mask of frame-t pixels whose forward flow is trustworthy (Lai et al. 2018)."""
    h, w = forward.shape[:2]
    back_at_target = _sample(backward, forward)
    fb_sum = forward + back_at_target
    fb_mag = (fb_sum**2).sum(axis=2)
    fw_mag = (forward**2).sum(axis=2)
    bw_mag = (back_at_target**2).sum(axis=2)
    inconsistent = fb_mag > 0.01 * (fw_mag + bw_mag) + 0.5

    du = np.zeros_like(forward)
    dv = np.zeros_like(forward)
    du[:, :-1] = forward[:, :-1] - forward[:, 1:]
    dv[:-1, :] = forward[:-1, :] - forward[1:, :]
    grad_mag = (du**2).sum(axis=2) + (dv**2).sum(axis=2)
    boundary = grad_mag > 0.01 * fw_mag + 0.002

    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    tx = xs + forward[..., 0]
    ty = ys + forward[..., 1]
    outside = (tx < 0) | (tx > w - 1) | (ty < 0) | (ty > h - 1)
    return ~(inconsistent | boundary | outside)


@dataclass
class PairFlow:
    """Flow between input frames t and t+1 and where it can be trusted."""

    forward: np.ndarray  # (H, W, 2) float32, t -> t+1
    valid: np.ndarray  # (H, W) bool, non-occluded pixels of frame t


class FlowEstimator:
    """Optical flow on grey input frames, forward and backward.

    ``method="dis"`` (the standard here) is OpenCV DIS with the given preset (MEDIUM).
    ``method="farneback"`` is an independent cross-check: a temporal stage that itself uses
    DIS flow might agree with a DIS-based metric more than with the truth, so its gain should
    also hold when the metric's flow comes from a different algorithm.
    """

    def __init__(self, preset: int = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM, method: str = "dis") -> None:
        if method not in ("dis", "farneback"):
            raise ValueError(f"unknown flow method {method!r}")
        self.method = method
        self._dis = cv2.DISOpticalFlow_create(preset) if method == "dis" else None

    def _flow(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        try:
            if self._dis is not None:
                return self._dis.calc(a, b, None)
            return cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 4, 21, 5, 7, 1.5, 0)
        except cv2.error:
            raise ValueError(f"pictures of {a.shape[1]}x{a.shape[0]} are too small for optical flow") from None

    def pair(self, input_t: np.ndarray, input_t1: np.ndarray) -> PairFlow:
        a, b = _grey(input_t), _grey(input_t1)
        forward = self._flow(a, b)
        backward = self._flow(b, a)
        return PairFlow(forward, non_occluded_mask(forward, backward))


def pair_warping_error(output_t: np.ndarray, output_t1: np.ndarray, pair: PairFlow) -> float:
    """E_warp for one pair of output frames, pictures uint8 (scaled to [0, 1] here)."""
    a = output_t.astype(np.float32) / 255.0
    b = warp(output_t1.astype(np.float32) / 255.0, pair.forward)
    diff = (a - b) ** 2
    if diff.ndim == 2:
        diff = diff[..., None]
    count = int(pair.valid.sum())
    if count == 0:  # everything occluded: the authors fall back to the whole frame
        return float(diff.mean())
    return float(diff[pair.valid].sum() / (count * diff.shape[2]))


def input_pairs(inputs: Sequence[np.ndarray], estimator: FlowEstimator | None = None) -> list[PairFlow]:
    """Flows for every consecutive pair of input frames (compute once, score many outputs)."""
    estimator = estimator or FlowEstimator()
    return [estimator.pair(a, b) for a, b in zip(inputs[:-1], inputs[1:])]


def warping_error(
    inputs: Sequence[np.ndarray],
    outputs: Sequence[np.ndarray],
    pairs: Sequence[PairFlow] | None = None,
) -> float:
    """Mean E_warp of ``outputs`` over the clip, with flow from ``inputs`` (same length)."""
    if len(inputs) != len(outputs):
        raise ValueError("inputs and outputs must have the same number of frames")
    if len(outputs) < 2:
        raise ValueError("warping error needs at least two frames")
    pairs = input_pairs(inputs) if pairs is None else pairs
    errors = [pair_warping_error(a, b, p) for a, b, p in zip(outputs[:-1], outputs[1:], pairs)]
    return float(np.mean(errors))


def mse(a: np.ndarray, b: np.ndarray) -> float:
    """Mean squared error with pictures scaled to [0, 1]."""
    d = (a.astype(np.float32) - b.astype(np.float32)) / 255.0
    return float(np.mean(d * d))


def psnr_from_mse(value: float) -> float:
    """PSNR in dB for [0, 1] pictures, capped at ``PSNR_CAP`` for identical ones."""
    if value <= 10 ** (-PSNR_CAP / 10):
        return PSNR_CAP
    return min(PSNR_CAP, 10.0 * math.log10(1.0 / value))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR of one picture against another (uint8, [0, 255])."""
    return psnr_from_mse(mse(a, b))


@dataclass
class Fidelity:
    """PSNR of a clip against a reference clip: pooled over all frames and the worst frame."""

    psnr: float
    worst_psnr: float


def fidelity(outputs: Iterable[np.ndarray], references: Iterable[np.ndarray]) -> Fidelity:
    """How far blending moved the picture from the per-frame output."""
    errors = [mse(o, r) for o, r in zip(outputs, references)]
    if not errors:
        raise ValueError("fidelity needs at least one frame")
    return Fidelity(psnr_from_mse(float(np.mean(errors))), psnr_from_mse(max(errors)))


@dataclass
class StreamingWarpError:
    """Warping error and fidelity of several output streams, fed one frame at a time.

    Flow is computed once per input pair and shared by all streams, and only the previous
    frame is kept, so long clips and many temporal modes cost no extra memory.
    ``reference`` names the stream fidelity is measured against (the per-frame output).
    """

    reference: str | None = None
    estimator: FlowEstimator = field(default_factory=FlowEstimator)
    _prev_input: np.ndarray | None = None
    _prev_outputs: dict[str, np.ndarray] = field(default_factory=dict)
    _errors: dict[str, list[float]] = field(default_factory=dict)
    _mse: dict[str, list[float]] = field(default_factory=dict)

    def update(self, source_bgr: np.ndarray, outputs: dict[str, np.ndarray]) -> None:
        """Add one frame: the input picture and each stream's output for it."""
        if self.reference is not None and self.reference in outputs:
            ref = outputs[self.reference]
            for name, out in outputs.items():
                self._mse.setdefault(name, []).append(mse(out, ref))
        if self._prev_input is not None:
            pair = self.estimator.pair(self._prev_input, source_bgr)
            for name, out in outputs.items():
                prev = self._prev_outputs.get(name)
                if prev is not None:
                    self._errors.setdefault(name, []).append(pair_warping_error(prev, out, pair))
        self._prev_input = source_bgr
        self._prev_outputs = dict(outputs)

    def warping_errors(self) -> dict[str, float]:
        """Mean E_warp per stream (streams seen in at least one pair)."""
        return {name: float(np.mean(v)) for name, v in self._errors.items() if v}

    def fidelities(self) -> dict[str, Fidelity]:
        """PSNR of each stream against the reference stream."""
        return {
            name: Fidelity(psnr_from_mse(float(np.mean(v))), psnr_from_mse(max(v)))
            for name, v in self._mse.items()
            if v
        }
