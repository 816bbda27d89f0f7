"""Pipeline: no drops for files, drop-oldest for live sources, clean shutdown on every ending."""

from __future__ import annotations

import threading
import time
from fractions import Fraction

import numpy as np
import pytest

from livefilter.frames import Frame
from livefilter.pipeline import STALL_NOTICE, run
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


class SilentCamera:
    """A live source that delivers ``before`` frames, then blocks in read() until close()."""

    live, fps, size = True, 30.0, (8, 6)

    def __init__(self, before: int = 3) -> None:
        self.before, self.i = before, 0
        self.released = threading.Event()
        self.close_calls = 0

    def read(self):
        if self.i >= self.before:
            self.released.wait()  # like a camera driver waiting for a picture that never comes
            raise OSError("device closed")
        self.i += 1
        return Frame(np.full((6, 8, 3), self.i, np.uint8), time.monotonic(), index=self.i)

    def close(self):
        self.close_calls += 1
        self.released.set()


def test_quitting_while_the_source_is_blocked_closes_it_to_unblock_the_read():
    source, sink = SilentCamera(before=3), ListSink()
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    started = time.monotonic()
    stats = run(source, lambda f: f, [sink], live=True, queue_size=1, stop_event=stop,
                stall_seconds=60)
    took = time.monotonic() - started
    assert took < 8  # hang guard only: the old shutdown waited 10 s for the blocked read
    assert stats.interrupted and stats.frames_read == 3
    assert len(sink.frames) + stats.frames_dropped == 3  # live: older frames may be dropped
    assert source.close_calls == 1  # closed to unblock the read, and not a second time
    assert sink.closed
    assert not any(t.name == "livefilter-capture" for t in threading.enumerate())


class IdleSink(ListSink):
    def __init__(self):
        super().__init__()
        self.idles = 0
        self.notices: list[str | None] = []

    def idle(self):
        self.idles += 1

    def show_notice(self, text):
        self.notices.append(text)


def test_idle_is_called_while_waiting_before_any_stall():
    source, sink = SilentCamera(before=2), IdleSink()
    stop = threading.Event()
    threading.Timer(0.6, stop.set).start()
    stats = run(source, lambda f: f, [sink], live=True, queue_size=1, stop_event=stop, stall_seconds=60)
    assert stats.frames_read == 2 and sink.frames
    assert sink.idles >= 2  # the window's event pump kept running while nothing arrived
    assert sink.notices == []  # ... without a "camera lost" notice: the stall threshold was not reached


def test_stall_notice_still_waits_for_the_threshold():
    source, sink = SilentCamera(before=2), IdleSink()
    stop = threading.Event()
    threading.Timer(1.0, stop.set).start()
    run(source, lambda f: f, [sink], live=True, queue_size=1, stop_event=stop, stall_seconds=0.3)
    assert sink.notices == [STALL_NOTICE]


def test_latencies_are_capped_but_frames_still_counted(monkeypatch):
    import livefilter.pipeline as pipeline

    monkeypatch.setattr(pipeline, "LATENCY_WINDOW", 25)
    source, sink = ListSource(60), ListSink()
    stats = run(source, lambda f: f, [sink], live=False)
    assert stats.frames_written == 60 and len(stats.latencies) == 25
    assert stats.latency_percentile(50) is not None and max(stats.latencies) >= 0


class ThreadSink(ListSink):
    """Records which thread wrote, whether the pipeline's sink thread was still running at
    close(), and can be slow to write."""

    def __init__(self, delay: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.delay = delay
        self.threads: set[int] = set()
        self.writer_alive_at_close: bool | None = None

    def write(self, frame):
        self.threads.add(threading.get_ident())
        if self.delay:
            time.sleep(self.delay)
        super().write(frame)

    def close(self):
        self.writer_alive_at_close = any(t.name == "livefilter-writer" and t.is_alive()
                                         for t in threading.enumerate())
        super().close()


class MainThreadSink(ThreadSink):
    main_thread_only = True


def test_file_runs_write_on_a_sink_thread_live_runs_on_the_caller():
    caller = threading.get_ident()
    file_sink, live_sink, pinned = ThreadSink(), ThreadSink(), MainThreadSink()
    run(ListSource(20), lambda f: f, [file_sink], live=False)
    run(ListSource(20, live=True, delay=0.002), lambda f: f, [live_sink], live=True, queue_size=1)
    run(ListSource(20), lambda f: f, [pinned], live=False)
    assert len(file_sink.threads) == 1 and caller not in file_sink.threads
    assert live_sink.threads == {caller}  # a preview window must be driven from this thread
    assert pinned.threads == {caller} and len(pinned.frames) == 20
    assert file_sink.writer_alive_at_close is False  # closed only after the sink thread ended


@pytest.mark.parametrize("live", [False, True])
def test_post_stage_sees_every_processed_frame_in_order_before_the_sinks(live):
    seen: list[int] = []

    def post(frame):
        seen.append(frame.index)
        return frame.with_image(frame.image + 1)

    sink = ListSink()
    stats = run(ListSource(30, live=live, delay=0.01 if live else 0.0), slow(0.001), [sink], live=live,
                queue_size=30 if live else 2, post=post)
    written = [f.index for f in sink.frames]
    assert seen == written == sorted(written) and stats.frames_written == len(written) > 0
    assert int(sink.frames[2].image[0, 0, 0]) == 255 - sink.frames[2].index + 1  # process, then post
    if not live:
        assert written == list(range(30))


def test_stop_writes_every_frame_already_processed():
    """Ctrl-C / stop_event with a slow writer: the frames the model finished are all written,
    in order, before the sinks are closed (the file keeps every converted frame)."""
    processed: list[int] = []

    def process(frame):
        processed.append(frame.index)
        return frame

    source, sink = ListSource(10_000), ThreadSink(delay=0.02)
    stop = threading.Event()
    threading.Timer(0.4, stop.set).start()
    stats = run(source, process, [sink], live=False, stop_event=stop)
    assert stats.interrupted and not sink.ended and sink.closed
    assert [f.index for f in sink.frames] == processed == list(range(len(processed)))
    assert stats.frames_written == len(processed) > 0
    assert sink.writer_alive_at_close is False


def test_keyboard_interrupt_with_a_slow_writer_still_writes_what_was_processed():
    count = 0

    def process(frame):
        nonlocal count
        if frame.index == 12:
            raise KeyboardInterrupt
        count += 1
        return frame

    sink = ThreadSink(delay=0.01)
    stats = run(ListSource(100), process, [sink], live=False)
    assert stats.interrupted and len(sink.frames) == count == 12 and sink.closed


def test_sink_error_on_the_sink_thread_is_raised_while_the_source_is_slow():
    """The writer fails while the calling thread waits for the next frame: the run still ends
    with the sink's error and aborts it, without waiting for the source to finish."""
    source, bad = ListSource(200, delay=0.02), AbortableSink(fail_at=2)
    with pytest.raises(OSError, match="disk full"):
        run(source, lambda f: f, [bad], live=False)
    assert bad.aborted and not bad.closed and source.closed
    assert source.i < 200  # stopped early rather than reading the whole source


def test_post_error_aborts_the_sinks():
    def post(frame):
        if frame.index == 4:
            raise ValueError("temporal stage failed")
        return frame

    source, sink = ListSource(50), AbortableSink()
    with pytest.raises(ValueError, match="temporal stage failed"):
        run(source, lambda f: f, [sink], live=False, post=post)
    assert len(sink.frames) == 4 and sink.aborted and source.closed


def test_stop_pipeline_from_a_slow_sink_on_the_sink_thread():
    source, sink = ListSource(1000), ThreadSink(delay=0.005, stop_after=8)
    stats = run(source, lambda f: f, [sink], live=False)
    assert stats.stopped_by_user and not stats.interrupted
    assert len(sink.frames) == 8 and not sink.ended and sink.closed and source.closed


def _uneven(frame):
    """Later frames often finish first: order must come from the pipeline, not the timing."""
    time.sleep(0.004 if frame.index % 3 == 0 else 0.0005)
    return frame.with_image(255 - frame.image)


def test_file_mode_with_workers_processes_frames_at_once_and_keeps_their_order():
    threads: set[str] = set()

    def process(frame):
        threads.add(threading.current_thread().name)
        return _uneven(frame)

    source, sink = ListSource(60), ThreadSink()
    stats = run(source, process, [sink], live=False, workers=2, post=lambda f: f)
    assert [f.index for f in sink.frames] == list(range(60))
    assert all(int(f.image[0, 0, 0]) == 255 - f.index for f in sink.frames)
    assert stats.frames_written == 60 and sink.ended and sink.closed
    assert len(threads) == 2 and all(name.startswith("livefilter-process") for name in threads)


def test_workers_stop_writes_the_frames_in_flight_in_order():
    processed: list[int] = []

    def process(frame):
        processed.append(frame.index)
        return _uneven(frame)

    source, sink = ListSource(10_000), ThreadSink(delay=0.01)
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    stats = run(source, process, [sink], live=False, stop_event=stop, workers=2)
    assert stats.interrupted and sink.closed and not sink.ended
    written = [f.index for f in sink.frames]
    assert written == list(range(len(written))) and written  # no hole, nothing out of order
    assert sorted(processed) == written  # every frame processed was written


@pytest.mark.parametrize("failure", [KeyboardInterrupt, ValueError])
def test_workers_failing_frame_leaves_no_hole(failure):
    """A frame that fails ends the run there: frames after it that were already processed
    are not written, so the file never skips a frame."""
    def process(frame):
        if frame.index == 12:
            raise failure("model failed")
        return _uneven(frame)

    sink = AbortableSink()
    if failure is KeyboardInterrupt:
        stats = run(ListSource(100), process, [sink], live=False, workers=2)
        assert stats.interrupted and sink.closed
    else:
        with pytest.raises(ValueError, match="model failed"):
            run(ListSource(100), process, [sink], live=False, workers=2)
        assert sink.aborted
    assert [f.index for f in sink.frames] == list(range(12))
