"""Warping error and fidelity on synthetic motion with known answers."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from livefilter.metrics import (
    PSNR_CAP,
    FlowEstimator,
    StreamingWarpError,
    fidelity,
    input_pairs,
    non_occluded_mask,
    psnr,
    warping_error,
)


def _texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    img = cv2.GaussianBlur(img, (0, 0), 1.5)
    return cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX)


def _sliding(n: int = 6, step: int = 3, h: int = 96, w: int = 128) -> list[np.ndarray]:
    big = _texture(h, w + step * n, seed=1)
    return [np.ascontiguousarray(big[:, step * i : step * i + w]) for i in range(n)]


def _naive_error(frames: list[np.ndarray]) -> float:
    return float(np.mean([
        np.mean(((a.astype(np.float32) - b.astype(np.float32)) / 255.0) ** 2)
        for a, b in zip(frames[:-1], frames[1:])
    ]))


def test_static_scene_has_zero_warping_error() -> None:
    frame = _texture(72, 96)
    frames = [frame.copy() for _ in range(4)]
    assert warping_error(frames, frames) == pytest.approx(0.0, abs=1e-9)


def test_pure_translation_is_compensated() -> None:
    frames = _sliding()
    compensated = warping_error(frames, frames)
    naive = _naive_error(frames)
    assert naive > 0.02  # the picture really moves
    assert compensated < 0.02 * naive  # and the flow takes that motion out


def test_flow_of_translation_is_found_and_mostly_valid() -> None:
    frames = _sliding(n=2, step=3)
    pair = FlowEstimator().pair(frames[0], frames[1])
    inner = pair.forward[10:-10, 10:-10]
    # content moves left by 3 px: frame t+1 at x-3 shows what frame t had at x
    assert np.median(inner[..., 0]) == pytest.approx(-3.0, abs=0.25)
    assert np.median(inner[..., 1]) == pytest.approx(0.0, abs=0.25)
    assert pair.valid[10:-10, 10:-10].mean() > 0.9
    # the left edge of frame t has left the picture by frame t+1: nothing to compare there
    assert not pair.valid[:, :2].any()


def test_flickering_output_has_large_error() -> None:
    frames = _sliding()
    rng = np.random.default_rng(7)
    flicker = [
        np.clip(f.astype(np.int16) + rng.integers(-40, 41, f.shape), 0, 255).astype(np.uint8)
        for f in frames
    ]
    steady = warping_error(frames, frames)
    shimmer = warping_error(frames, flicker)
    # independent uniform noise of +-40 levels: expected 2 * var = 2 * (81**2 - 1) / 12 / 255**2
    expected = 2 * (81**2 - 1) / 12 / 255**2
    assert shimmer > 20 * steady
    assert shimmer == pytest.approx(expected, rel=0.25)


def test_occlusion_mask_flags_inconsistent_flow() -> None:
    h, w = 40, 50
    forward = np.zeros((h, w, 2), np.float32)
    backward = np.zeros((h, w, 2), np.float32)
    forward[:, :, 0] = 2.0
    backward[:, :, 0] = -2.0
    backward[10:20, 20:30, 0] = 5.0  # disagrees with the forward flow there
    valid = non_occluded_mask(forward, backward)
    assert valid[25:35, 5:15].all()
    assert not valid[12:18, 20:26].any()  # x + 2 lands inside the bad patch
    assert not valid[:, -2:].any()  # matches outside the frame


def test_motion_boundary_is_occluded() -> None:
    h, w = 40, 60
    forward = np.zeros((h, w, 2), np.float32)
    forward[:, 30:, 0] = 4.0
    backward = np.zeros_like(forward)
    backward[:, 34:, 0] = -4.0
    valid = non_occluded_mask(forward, backward)
    assert not valid[:, 29].any()  # the flow jumps between columns 29 and 30
    assert valid[:, 5:25].all()


def test_psnr_and_fidelity() -> None:
    a = _texture(32, 32)
    assert psnr(a, a) == PSNR_CAP
    b = a.copy()
    b[0, 0, 0] ^= 0xFF
    assert 30 < psnr(a, b) < PSNR_CAP
    fid = fidelity([a, a, b], [a, a, a])
    assert fid.worst_psnr < fid.psnr


def test_streaming_matches_batch() -> None:
    frames = _sliding(n=5)
    rng = np.random.default_rng(3)
    noisy = [
        np.clip(f.astype(np.int16) + rng.integers(-20, 21, f.shape), 0, 255).astype(np.uint8)
        for f in frames
    ]
    meter = StreamingWarpError(reference="noisy")
    for f, n in zip(frames, noisy):
        meter.update(f, {"input": f, "noisy": n})
    pairs = input_pairs(frames)
    errs = meter.warping_errors()
    assert errs["input"] == pytest.approx(warping_error(frames, frames, pairs), rel=1e-6)
    assert errs["noisy"] == pytest.approx(warping_error(frames, noisy, pairs), rel=1e-6)
    fids = meter.fidelities()
    assert fids["noisy"].psnr == PSNR_CAP
    assert fids["input"].psnr < 40


def test_warping_error_rejects_mismatched_lengths() -> None:
    frames = _sliding(n=3)
    with pytest.raises(ValueError):
        warping_error(frames, frames[:2])


def test_farneback_cross_check_agrees_on_translation() -> None:
    frames = _sliding()
    pairs = input_pairs(frames, FlowEstimator(method="farneback"))
    assert warping_error(frames, frames, pairs) < 0.05 * _naive_error(frames)


def test_too_small_for_flow_is_a_clear_error() -> None:
    tiny = [np.zeros((4, 4, 3), np.uint8), np.ones((4, 4, 3), np.uint8)]
    with pytest.raises(ValueError, match="too small"):
        warping_error(tiny, tiny)
