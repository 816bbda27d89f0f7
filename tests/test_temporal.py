"""Temporal stages: history kept where the scene is still, dropped or moved where it moves."""

from __future__ import annotations

import numpy as np
import pytest

from livefilter.temporal import MODES, make_temporal


def _textured(h: int = 120, w: int = 200, seed: int = 0) -> np.ndarray:
    import cv2

    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    img = cv2.GaussianBlur(img, (0, 0), 2.0)
    return cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX)


def _noise(shape: tuple[int, ...], seed: int, amp: int = 20) -> np.ndarray:
    return np.random.default_rng(seed).integers(-amp, amp + 1, shape).astype(np.int16)


def _flicker(img: np.ndarray, seed: int) -> np.ndarray:
    """A per-frame generator's shimmer: independent noise on every frame."""
    return np.clip(img.astype(np.int16) + _noise(img.shape, seed), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("mode", MODES)
def test_first_frame_passes_through_and_shape_kept(mode: str) -> None:
    stage = make_temporal(mode, 0.7)
    src = _textured()
    out = stage(src, src)
    assert out.shape == src.shape and out.dtype == np.uint8
    assert np.array_equal(out, src)


def test_off_and_zero_strength_are_identity() -> None:
    src = _textured()
    for stage in (make_temporal("off", 0.9), make_temporal("motion", 0.0)):
        for i in range(3):
            filtered = _flicker(src, i)
            assert np.array_equal(stage(src, filtered), filtered)


@pytest.mark.parametrize("mode", ["ema", "motion", "flow"])
def test_still_scene_shimmer_is_reduced(mode: str) -> None:
    src = _textured()
    stage = make_temporal(mode, 0.7)
    outs = [stage(src, _flicker(src, i)).astype(np.float32) for i in range(20)]
    raw = [_flicker(src, i).astype(np.float32) for i in range(20)]
    out_jump = np.mean([np.abs(a - b).mean() for a, b in zip(outs[10:], outs[11:])])
    raw_jump = np.mean([np.abs(a - b).mean() for a, b in zip(raw[10:], raw[11:])])
    assert out_jump < 0.6 * raw_jump


@pytest.mark.parametrize("mode", ["motion", "flow"])
def test_scene_cut_does_not_ghost(mode: str) -> None:
    """After a cut to an unrelated picture, the new picture shows at once."""
    stage = make_temporal(mode, 0.8)
    a, b = _textured(seed=1), _textured(seed=2)
    for _ in range(5):
        stage(a, a)
    out = stage(b, b)
    cut = np.abs(a.astype(np.int16) - b).mean()
    assert np.abs(out.astype(np.int16) - b).mean() < 0.05 * cut


def test_ema_ghosts_on_a_cut() -> None:
    """The baseline does ghost: that is why the gated modes exist."""
    stage = make_temporal("ema", 0.8)
    a, b = _textured(seed=1), _textured(seed=2)
    for _ in range(5):
        stage(a, a)
    out = stage(b, b)
    cut = np.abs(a.astype(np.int16) - b).mean()
    assert np.abs(out.astype(np.int16) - b).mean() > 0.5 * cut


def test_flow_follows_translation() -> None:
    """A textured picture sliding sideways: flow mode warps history along, so the output
    stays close to the current frame."""
    big = _textured(160, 320, seed=3)
    stage = make_temporal("flow", 0.7)
    errs = []
    for i in range(12):
        src = np.ascontiguousarray(big[20:140, 2 * i : 2 * i + 200])
        out = stage(src, src)
        errs.append(np.abs(out.astype(np.int16) - src)[10:-10, 10:-10].mean())
    assert max(errs[1:]) < 4.0


def test_size_change_resets() -> None:
    stage = make_temporal("motion", 0.7)
    stage(_textured(), _textured())
    other = _textured(90, 160, seed=4)
    assert np.array_equal(stage(other, other), other)


def test_reset_forgets_history() -> None:
    for mode in ("ema", "motion", "flow"):
        stage = make_temporal(mode, 0.8)
        a, b = _textured(seed=1), _textured(seed=2)
        stage(a, a)
        stage.reset()
        assert np.array_equal(stage(b, b), b)


@pytest.mark.parametrize("mode,strength", [("bogus", 0.5), ("ema", 1.0), ("ema", -0.1)])
def test_bad_arguments(mode: str, strength: float) -> None:
    with pytest.raises(ValueError):
        make_temporal(mode, strength)


def test_flow_damps_shimmer_on_a_moving_picture() -> None:
    """On a sliding textured picture with per-frame shimmer, flow mode averages the shimmer
    along the motion: its output is closer to the clean picture than the raw filtered frame."""
    big = _textured(160, 320, seed=5)
    stage = make_temporal("flow", 0.7)
    gains = []
    for i in range(16):
        src = np.ascontiguousarray(big[20:140, 2 * i : 2 * i + 200])
        filtered = _flicker(src, 100 + i)
        out = stage(src, filtered)
        inner = (slice(10, -10), slice(10, -10))
        raw_err = np.abs(filtered.astype(np.int16) - src)[inner].mean()
        out_err = np.abs(out.astype(np.int16) - src)[inner].mean()
        gains.append(out_err / raw_err)
    assert np.mean(gains[8:]) < 0.8


@pytest.mark.parametrize("size", [(2, 2), (9, 13), (8, 200)])
@pytest.mark.parametrize("mode", ["ema", "motion", "flow"])
def test_tiny_and_odd_pictures(mode: str, size: tuple[int, int]) -> None:
    stage = make_temporal(mode, 0.9)
    rng = np.random.default_rng(0)
    for _ in range(3):
        img = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        out = stage(img, img)
        assert out.shape == img.shape and out.dtype == np.uint8


@pytest.mark.parametrize("scale", [1, 2])
def test_flow_motion_gate_means_the_same_at_every_picture_size(scale: int) -> None:
    """The fast-motion gate counts pixels of a 640-wide picture: a slide of 10 px per frame at
    200 wide (32 px at 640) drops history, 2 px (6.4 px at 640) keeps it, whether the stage
    smooths the model's small picture or a frame twice as large."""
    big = _textured(160 * scale, 520 * scale, seed=7)

    def deviation(step: int) -> float:
        stage = make_temporal("flow", 0.9)
        devs = []
        for i in range(10):
            x = step * scale * i
            src = np.ascontiguousarray(big[20 * scale: 140 * scale, x: x + 200 * scale])
            filtered = _flicker(src, 300 + i)
            out = stage(src, filtered)
            inner = (slice(20 * scale, -20 * scale), slice(20 * scale, -20 * scale))
            devs.append(np.abs(out.astype(np.int16) - filtered)[inner].mean())
        return float(np.mean(devs[4:]))

    fast, slow_ = deviation(10), deviation(2)
    assert fast < 1.0 < 4.0 < slow_
