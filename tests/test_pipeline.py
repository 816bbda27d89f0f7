"""Pipeline: no drops for files, drop-oldest for live sources, clean shutdown on every ending."""

from __future__ import annotations

import threading
import time
from fractions import Fraction

import numpy as np
import pytest

from livefilter.frames import Frame
from livefilter.pipeline import run
from livefilter.sinks import StopPipeline


class ListSource:
    """A source of ``n`` tiny frames; ``delay`` seconds per read; ``fail_at`` raises there."""

    def __init__(self, n: int, live: bool = False, delay: float = 0.0, fail_at: int | None = None):
        self.n, self.live, self.delay, self.fail_at = n, live, delay, fail_at
        self.fps, self.size = 30.0, (8, 6)
        self.i = 0
        self.closed = False

    def read(self):
        if self.delay:
            time.sleep(self.delay)
        if self.fail_at is not None and self.i == self.fail_at:
            raise OSError("camera unplugged")
        if self.i >= self.n:
            return None
        frame = Frame(np.full((6, 8, 3), self.i % 256, np.uint8), time.monotonic(), pts=self.i,
                      time_base=Fraction(1, 30), index=self.i)
        self.i += 1
        return frame

    def close(self):
        self.closed = True


class ListSink:
    def __init__(self, stop_after: int | None = None, fail_at: int | None = None):
        self.frames: list[Frame] = []
        self.stop_after, self.fail_at = stop_after, fail_at
        self.closed = self.aborted = self.ended = False

    def write(self, frame):
        if self.fail_at is not None and len(self.frames) == self.fail_at:
            raise OSError("disk full")
        self.frames.append(frame)
        if self.stop_after is not None and len(self.frames) >= self.stop_after:
            raise StopPipeline

    def end_of_stream(self):
        self.ended = True

    def close(self):
        self.closed = True


class AbortableSink(ListSink):
    def abort(self):
        self.aborted = True


def slow(seconds: float):
    def process(frame):
        time.sleep(seconds)
        return frame.with_image(255 - frame.image)

    return process


def test_file_mode_keeps_every_frame_in_order():
    source, sink = ListSource(40), ListSink()
    stats = run(source, slow(0.002), [sink], live=False, queue_size=2)
    assert [f.index for f in sink.frames] == list(range(40))
    assert [f.pts for f in sink.frames] == list(range(40))
    assert stats.frames_read == stats.frames_written == 40 and stats.frames_dropped == 0
    assert len(stats.latencies) == 40 and all(lat >= 0 for lat in stats.latencies)
    assert sink.ended and sink.closed and source.closed
    assert int(sink.frames[3].image[0, 0, 0]) == 255 - 3  # processed output reached the sink


def test_live_mode_drops_oldest_when_the_model_is_slow():
    source, sink = ListSource(60, live=True, delay=0.001), ListSink()
    stats = run(source, slow(0.02), [sink], live=True, queue_size=1)
    assert stats.frames_dropped > 0
    assert stats.frames_written + stats.frames_dropped <= stats.frames_read
    indices = [f.index for f in sink.frames]
    assert indices == sorted(indices)  # newer frames only, never reordered
    assert source.closed and sink.closed


def test_stop_pipeline_from_a_sink_is_a_clean_stop():
    source, sink = ListSource(1000), ListSink(stop_after=5)
    stats = run(source, lambda f: f, [sink], live=False)
    assert stats.stopped_by_user and not stats.interrupted
    assert len(sink.frames) == 5 and not sink.ended
    assert sink.closed and source.closed


def test_stop_event_interrupts_and_closes():
    source, sink = ListSource(10_000, delay=0.001), ListSink()
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    stats = run(source, lambda f: f, [sink], live=False, stop_event=stop)
    assert stats.interrupted
    assert 0 < stats.frames_written < 10_000
    assert sink.closed and source.closed and not sink.ended


def test_keyboard_interrupt_in_processing_is_an_interruption():
    source, sink = ListSource(100), ListSink()

    def process(frame):
        if frame.index == 7:
            raise KeyboardInterrupt
        return frame

    stats = run(source, process, [sink], live=False)
    assert stats.interrupted and len(sink.frames) == 7 and sink.closed


def test_source_error_is_raised_after_shutdown():
    source, sink = ListSource(100, fail_at=5), AbortableSink()
    with pytest.raises(OSError, match="camera unplugged"):
        run(source, lambda f: f, [sink], live=False)
    assert len(sink.frames) == 5
    assert sink.aborted and not sink.closed and source.closed


def test_sink_error_aborts_other_sinks_and_closes_plain_ones():
    source, bad, plain = ListSource(100), AbortableSink(fail_at=3), ListSink()
    with pytest.raises(OSError, match="disk full"):
        run(source, lambda f: f, [plain, bad], live=False)
    assert bad.aborted and plain.closed and source.closed
    assert threading.active_count() < 10  # capture thread joined, nothing leaked
