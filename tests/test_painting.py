"""Smoothing at the model's size: the engine paints, the temporal stage smooths the painting,
the full-size step finishes it; and live runs overlap the model with smoothing and sinks."""

from __future__ import annotations

import threading
import time
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from livefilter.engine import Engine, Painting
from livefilter.frames import Frame
from livefilter.pipeline import run, stages
from livefilter.temporal import make_temporal
from livefilter.upsample import GuideBuffers, guided, guided_i420

REPO = Path(__file__).resolve().parents[1]
HD = REPO / "weights" / "hayao.onnx"


def _picture(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = cv2.resize(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)
    cv2.circle(img, (w // 2, h // 2), min(h, w) // 4, (20, 30, 40), 3)
    return img


@pytest.mark.parametrize("kind", ["hd", "plain"])
@pytest.mark.parametrize("size", [(720, 1280), (361, 643), (256, 456)])
def test_paint_then_finish_is_the_engine(kind: str, size: tuple[int, int], plain_students: dict[str, Path]) -> None:
    engine = Engine(HD if kind == "hd" else plain_students["fp32"], threads=1)
    frame = _picture(*size)
    painting = engine.paint(frame)
    assert painting.small.shape == painting.styled.shape and min(painting.styled.shape[:2]) <= 258
    assert (painting.gains is not None) == engine.hd
    assert np.array_equal(painting.finish(frame), engine(frame))


def test_guide_buffers_give_the_same_picture_across_sizes() -> None:
    engine = Engine(HD, threads=1)
    work = GuideBuffers()
    for size in [(720, 1280), (360, 640), (720, 1280)]:
        frame = _picture(*size, seed=size[0])
        p = engine.paint(frame)
        first = guided(frame, p.small, p.styled, p.gains, work)
        again = guided(frame, p.small, p.styled, p.gains, work)
        assert np.array_equal(first, guided(frame, p.small, p.styled, p.gains)) and np.array_equal(first, again)
        assert first is not again  # the result is never a kept buffer (sinks may hold it)


def test_stages_smooth_the_painting_then_finish_at_the_frame_size() -> None:
    engine = Engine(HD, threads=1)
    seen: list[tuple[int, ...]] = []
    flow = make_temporal("flow", 0.9)

    def temporal(source, styled):
        seen.append((source.shape, styled.shape))
        return flow(source, styled)

    process, post = stages(engine, temporal)
    reference = make_temporal("flow", 0.9)
    for i in range(3):
        image = _picture(720, 1280, seed=i)
        out = post(process(Frame(image, 0.0, index=i)))
        p = engine.paint(image)
        assert out.painting is None and out.image.shape == image.shape
        assert np.array_equal(out.image, p.finish(image, reference(p.small, p.styled)))
    assert seen == [((256, 456, 3), (256, 456, 3))] * 3


def test_a_plain_callable_engine_is_still_smoothed_at_the_frame_size() -> None:
    shapes = []
    process, post = stages(lambda img: 255 - img, lambda s, f: shapes.append(f.shape) or f)
    out = post(process(Frame(np.zeros((30, 40, 3), np.uint8), 0.0)))
    assert shapes == [(30, 40, 3)] and int(out.image[0, 0, 0]) == 255


def test_painting_finish_replaces_the_styled_picture() -> None:
    small = np.full((4, 6, 3), 100, np.uint8)
    painting = Painting(small, np.full((4, 6, 3), 50, np.uint8))
    out = painting.finish(np.zeros((8, 12, 3), np.uint8), np.full((4, 6, 3), 70, np.uint8))
    assert out.shape == (8, 12, 3) and (out == 70).all()


class _Source:
    """``n`` frames, one every ``delay`` seconds, marked live."""

    live = True

    def __init__(self, n: int, delay: float) -> None:
        self.n, self.delay, self.i = n, delay, 0
        self.fps, self.size = 30.0, (8, 6)

    def read(self):
        time.sleep(self.delay)
        if self.i >= self.n:
            return None
        frame = Frame(np.full((6, 8, 3), self.i, np.uint8), time.monotonic(), pts=self.i,
                      time_base=Fraction(1, 30), index=self.i)
        self.i += 1
        return frame

    def close(self) -> None:
        pass


class _Sink:
    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self.threads: set[int] = set()
        self.closed = self.aborted = False

    def write(self, frame: Frame) -> None:
        self.threads.add(threading.get_ident())
        self.frames.append(frame)

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True


def test_live_runs_with_a_post_stage_run_the_model_on_its_own_thread_one_frame_ahead() -> None:
    """While post works on frame k, the model already works on frame k+1: post waits (up to
    2 s) for the model to start on the next frame, which only a second thread can do."""
    started: dict[int, threading.Event] = {i: threading.Event() for i in range(40)}
    process_threads: set[int] = set()
    overlapped: list[bool] = []

    def process(frame: Frame) -> Frame:
        process_threads.add(threading.get_ident())
        started[frame.index].set()
        return frame.with_image(frame.image + 1)

    def post(frame: Frame) -> Frame:
        nxt = started.get(frame.index + 1)
        if nxt is not None and frame.index < 5:
            overlapped.append(nxt.wait(timeout=2.0))
        return frame

    sink = _Sink()
    caller = threading.get_ident()
    stats = run(_Source(12, 0.005), process, [sink], live=True, queue_size=4, post=post)
    assert caller not in process_threads and sink.threads == {caller}
    assert overlapped and all(overlapped)
    written = [f.index for f in sink.frames]
    assert written == sorted(written) and stats.frames_written == len(written) > 5
    assert all(int(f.image[0, 0, 0]) == f.index + 1 for f in sink.frames)


def test_an_error_on_the_model_thread_ends_the_live_run_and_aborts_the_sinks() -> None:
    def process(frame: Frame) -> Frame:
        if frame.index == 3:
            raise ValueError("model failed")
        return frame

    sink = _Sink()
    with pytest.raises(ValueError, match="model failed"):
        run(_Source(100, 0.002), process, [sink], live=True, queue_size=4, post=lambda f: f)
    assert sink.aborted and len(sink.frames) <= 3


def test_stopping_a_live_run_ends_the_model_thread() -> None:
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    before = {t.name for t in threading.enumerate()}
    stats = run(_Source(10_000, 0.002), lambda f: f, [_Sink()], live=True, stop_event=stop, post=lambda f: f)
    assert stats.interrupted
    assert "livefilter-process" not in {t.name for t in threading.enumerate()} - before


def test_a_style_runs_from_its_int8_file_only_when_that_is_an_hd_file(tmp_path: Path,
                                                                      plain_students: dict[str, Path]) -> None:
    from livefilter.engine import preferred_file, resolve_model

    for style in ("hayao", "shinkai", "cute"):
        assert preferred_file(resolve_model(style)).name == f"{style}_int8.onnx"
    assert preferred_file(plain_students["fp32"]) == plain_students["fp32"]  # a plain int8 sibling
    alone = tmp_path / "hayao.onnx"
    alone.write_bytes(HD.read_bytes())
    assert preferred_file(alone) == alone
    (tmp_path / "hayao_int8.onnx").write_bytes(plain_students["int8"].read_bytes())
    assert preferred_file(alone) == alone


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0 ** 2 / max(1e-9, np.mean((a.astype(np.float64) - b) ** 2))))


def test_the_i420_step_is_the_bgr_step_in_the_encoders_layout() -> None:
    """Y at full size, U and V at half: the same picture as the BGR step converted by OpenCV."""
    engine = Engine(HD, threads=1)
    frame = _picture(720, 1280, seed=3)
    p = engine.paint(frame)
    want = cv2.cvtColor(guided(frame, p.small, p.styled, p.gains), cv2.COLOR_BGR2YUV_I420)
    work = GuideBuffers()
    got = p.finish_i420(frame, work=work)
    assert got.shape == (1080, 1280) and got.dtype == np.uint8
    assert _psnr(got[:720], want[:720]) > 45 and _psnr(got[720:], want[720:]) > 40
    assert np.array_equal(got, guided_i420(frame, p.small, p.styled, p.gains))
    assert got is not p.finish_i420(frame, work=work)  # never a kept buffer


def test_the_i420_step_declines_odd_sizes_and_plain_files(plain_students: dict[str, Path]) -> None:
    frame = _picture(361, 643)
    assert Engine(HD, threads=1).paint(frame).finish_i420(frame) is None
    even = _picture(360, 640)
    assert Engine(plain_students["fp32"], threads=1).paint(even).finish_i420(even) is None
    with pytest.raises(ValueError, match="even size"):
        p = Engine(HD, threads=1).paint(frame)
        guided_i420(frame, p.small, p.styled, p.gains)


@pytest.mark.parametrize("size", [(720, 1280), (361, 643)])
def test_stages_for_an_encoder_write_i420_where_the_size_allows(size: tuple[int, int]) -> None:
    engine = Engine(HD, threads=1)
    process, post = stages(engine, make_temporal("flow", 0.9), i420=True)
    _, bgr_post = stages(engine, make_temporal("flow", 0.9))
    for i in range(2):
        image = _picture(*size, seed=i)
        out = post(process(Frame(image, 0.0, index=i)))
        ref = bgr_post(process(Frame(image, 0.0, index=i)))
        assert out.size == ref.size == (size[1], size[0])
        assert out.format == ("yuv420p" if size[0] % 2 == 0 else "bgr24")
        assert out.bgr().shape == image.shape and _psnr(out.bgr(), ref.image) > 38
