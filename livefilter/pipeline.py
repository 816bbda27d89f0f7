"""Wiring: capture thread -> bounded queue -> process (engine + temporal) -> sinks.

Live sources must never fall behind: the queue holds 1-2 frames and the oldest is dropped when
the model is slower than the camera. Files must never lose a frame: the capture thread blocks
until there is room (back-pressure), which also keeps memory flat on long clips.
For files the sinks also get a thread of their own, fed by a second small bounded queue, so
encoding the previous frame overlaps the model's work on the next one (order is kept, nothing
is dropped); an optional ``post`` stage (temporal smoothing) runs there too, in order, just
before the sinks. Live runs write from the calling thread: a preview window (OpenCV HighGUI)
must be driven from the thread that created it, and a sink marked ``main_thread_only`` keeps
a file run on the calling thread too. Live runs with a ``post`` stage run ``process`` (the
model) on a thread of its own instead, one frame ahead of ``post`` and the sinks, so on two
cores the model's next frame overlaps the smoothing and writing of this one.
A source may expose ``notice`` (e.g. "camera lost - reconnecting"); sinks with
``show_notice(text)`` get it whenever it changes.
Shutdown is the same for every ending (end of source, error, a sink's StopPipeline, Ctrl-C or
``stop_event``): the capture thread is asked to stop and joined briefly; if it is stuck in a
source read (a silent camera), the source is closed first to unblock it. Then every sink is
closed.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable

import numpy as np

from livefilter.frames import Frame
from livefilter.sinks import StopPipeline
from livefilter.upsample import GuideBuffers

log = logging.getLogger("livefilter")

_END = object()  # the source has ended
STALL_SECONDS = 2.0  # live source silent this long after its first frame: treat as lost
STALL_NOTICE = "camera lost - waiting for it to come back"
WRITE_QUEUE_SIZE = 3  # processed frames waiting for the sink thread (file runs)
LATENCY_WINDOW = 20_000  # latencies kept in RunStats: the most recent ones (~11 min at 30 fps)
CAPTURE_JOIN_SECONDS = 1.0  # wait this long for the capture thread before closing the source
CAPTURE_CLOSE_JOIN_SECONDS = 5.0  # and this long after closing it


@dataclass
class _Failed:
    error: BaseException


@dataclass
class RunStats:
    """What happened in one run; latencies are capture -> last sink write, in seconds.

    ``latencies`` keeps only the most recent `LATENCY_WINDOW` values, so memory stays flat on
    hour-long live runs; ``frames_written`` counts them all.
    """

    frames_read: int = 0
    frames_written: int = 0
    frames_dropped: int = 0
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))
    elapsed: float = 0.0
    interrupted: bool = False  # Ctrl-C or stop_event
    stopped_by_user: bool = False  # a sink raised StopPipeline

    @property
    def fps(self) -> float:
        return self.frames_written / self.elapsed if self.elapsed > 0 else 0.0

    def latency_percentile(self, q: float) -> float | None:
        return float(np.percentile(self.latencies, q)) if self.latencies else None


def _put_until_stopped(items: queue.Queue, item: object, stop: threading.Event) -> bool:
    """Wait for room and queue ``item``; False if the run was stopped first."""
    while not stop.is_set():
        try:
            items.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


class _Capture(threading.Thread):
    """Reads the source into the queue; live: drop oldest, file: wait for room."""

    def __init__(self, source, frames: queue.Queue, live: bool, stop: threading.Event,
                 stats: RunStats) -> None:
        super().__init__(name="livefilter-capture", daemon=True)
        self.source, self.frames, self.live, self.stop, self.stats = source, frames, live, stop, stats
        self.lock = threading.Lock()

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                frame = self.source.read()
                if frame is None:
                    break
                with self.lock:
                    self.stats.frames_read += 1
                if not self._put(frame):
                    return
        except BaseException as exc:  # handed to the main thread, which reports it
            self._put(_Failed(exc))
            return
        self._put(_END)

    def _put(self, item: object) -> bool:
        """Queue one item; False if the run was stopped while waiting for room.

        Live runs drop the oldest frame to make room for a new one; the end marker and errors
        wait for room instead, so they never push the source's last frame out.
        """
        if self.live and isinstance(item, Frame):
            while True:
                try:
                    self.frames.put_nowait(item)
                    return True
                except queue.Full:
                    try:
                        self.frames.get_nowait()  # only this thread puts, so it is a frame
                    except queue.Empty:
                        continue
                    with self.lock:
                        self.stats.frames_dropped += 1
        return _put_until_stopped(self.frames, item, self.stop)



class _Writer(threading.Thread):
    """File runs: ``post`` then the sinks for each processed frame, in order, on its own thread.

    The calling thread hands frames over with `put` (blocks while the small queue is full),
    passes ``_END`` when the source ended normally (the sinks' ``end_of_stream`` is called
    after the last write) and calls `close` on every ending. A sink's StopPipeline or error
    ends this thread; `put` and `check` then raise it in the calling thread, which shuts down
    as usual. Sinks are closed by the calling thread once this thread has ended.
    """

    def __init__(self, sinks: list, stats: RunStats, post: Callable[[Frame], Frame] | None,
                 progress: Callable[[Frame], None] | None, size: int = WRITE_QUEUE_SIZE) -> None:
        super().__init__(name="livefilter-writer", daemon=True)
        self.sinks, self.stats, self.post, self.progress = sinks, stats, post, progress
        self.items: queue.Queue = queue.Queue(maxsize=max(1, size))
        self.error: BaseException | None = None  # a sink failed (StopPipeline included)
        self.cancel = threading.Event()  # leave the frames still queued unwritten

    def run(self) -> None:
        try:
            while True:
                item = self.items.get()
                if item is None or self.cancel.is_set():
                    return
                if item is _END:
                    for sink in self.sinks:
                        ended = getattr(sink, "end_of_stream", None)
                        if ended is not None:
                            ended()
                    return
                _write(self.post(item) if self.post is not None else item, self.sinks, self.stats,
                       self.progress)
        except BaseException as exc:  # handed to the calling thread, which reports it
            self.error = exc

    def check(self) -> None:
        """Raise in the calling thread what ended this thread early (StopPipeline or an error)."""
        if self.error is not None:
            raise self.error

    def put(self, item: object) -> None:
        """Queue a frame (or _END), waiting for room; raises if the writer ended early."""
        while True:
            self.check()
            if not self.is_alive():
                raise RuntimeError("the sink thread ended unexpectedly")
            try:
                self.items.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def close(self) -> None:
        """Let the writer finish what is queued, then end; Ctrl-C meanwhile skips the rest.

        Returns only once the thread has ended, so the caller may close the sinks safely.
        """
        try:
            while self.is_alive():
                try:
                    self.items.put(None, timeout=0.1)
                    break
                except queue.Full:
                    continue
            while self.is_alive():
                self.join(timeout=0.1)
        except KeyboardInterrupt:  # quitting harder: finish the write in progress only
            self.cancel.set()
            _drain(self.items)
            self.items.put(None)
            self.join()


class _Processor(threading.Thread):
    """Live runs with a ``post`` stage: ``process`` on its own thread, one frame ahead.

    It takes frames from the capture queue, processes them and hands them on through a queue
    of one; while that is full it waits, so the capture queue fills and drops its oldest frame,
    as when the model itself is slow. An error, and the end marker, are handed on and end it.
    """

    def __init__(self, frames: queue.Queue, process: Callable[[Frame], Frame], stop: threading.Event,
                 seen: Callable[[], None]) -> None:
        super().__init__(name="livefilter-process", daemon=True)
        self.frames, self.process, self.stop, self.seen = frames, process, stop, seen
        self.out: queue.Queue = queue.Queue(maxsize=1)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                item = self.frames.get(timeout=0.1)
            except queue.Empty:
                continue
            if isinstance(item, Frame):
                self.seen()
                try:
                    item = self.process(item)
                except BaseException as exc:  # handed to the calling thread, which reports it
                    item = _Failed(exc)
            if not _put_until_stopped(self.out, item, self.stop) or not isinstance(item, Frame):
                return


class _InOrder:
    """File runs: ``process`` on several frames at once, handed on in the source's order.

    A small model gains little from a second thread inside one run (on 2 cores: 18.8 ms with one
    thread, 14.6 ms with two, for a fifth more CPU time), while two frames each on one thread
    keep both cores busy. At most ``workers + 1`` frames are in flight, so memory stays flat.
    """

    def __init__(self, process: Callable[[Frame], Frame], workers: int) -> None:
        self.process, self.workers = process, workers
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="livefilter-process")
        self.pending: deque[Future] = deque()
        self.broken = False  # a frame failed: those after it must not be written (no holes)

    def _oldest(self) -> Frame:
        try:
            return self.pending.popleft().result()
        except BaseException:
            self.broken = True
            raise

    def submit(self, frame: Frame) -> Frame | None:
        """Start on ``frame``; returns the oldest processed frame once enough are in flight."""
        self.pending.append(self.pool.submit(self.process, frame))
        return self._oldest() if len(self.pending) > self.workers else None

    def flush(self) -> Iterable[Frame]:
        """The frames still in flight, in order (raises what ``process`` raised)."""
        while self.pending and not self.broken:
            yield self._oldest()

    def close(self) -> None:
        for future in self.pending:
            future.cancel()
        self.pending.clear()
        self.pool.shutdown(wait=True)


def _write(frame: Frame, sinks: list, stats: RunStats, progress: Callable[[Frame], None] | None) -> None:
    for sink in sinks:
        sink.write(frame)
    stats.latencies.append(time.monotonic() - frame.capture_time)
    stats.frames_written += 1
    if progress is not None:
        progress(frame)


class _Notices:
    """Live runs: tell sinks when the camera is lost and keep them alive while it is.

    The notice comes from the source's ``notice`` attribute (a camera that repeats its last
    picture while reconnecting) or from the pipeline itself when a live source has delivered
    nothing for ``stall_seconds`` (a read that blocks). Sinks with ``show_notice(text)`` get
    every change; sinks with ``idle()`` are called while nothing arrives, so a preview stays
    responsive and a virtual camera keeps sending the last picture.
    """

    def __init__(self, source, sinks: list, stall_seconds: float) -> None:
        self.source, self.sinks, self.stall_seconds = source, sinks, stall_seconds
        self.shown: str | None = None
        self.last_frame: float | None = None

    def _update(self, text: str | None) -> None:
        if text == self.shown:
            return
        # A source with its own notice logs its own losses; only the pipeline's stall is logged here.
        if text == STALL_NOTICE:
            log.warning("no picture from the source for %.0f s; %s", self.stall_seconds, text)
        elif self.shown == STALL_NOTICE:
            log.warning("pictures are arriving again")
        self.shown = text
        for sink in self.sinks:
            show = getattr(sink, "show_notice", None)
            if show is not None:
                show(text)

    def frame_seen(self) -> None:
        """The source delivered a frame (any thread: the stall clock only)."""
        self.last_frame = time.monotonic()

    def frame_arrived(self) -> None:
        self.frame_seen()
        self._update(getattr(self.source, "notice", None))

    def waiting(self) -> None:
        """Called whenever the queue stayed empty for a while (about every 0.1 s).

        Sinks' ``idle()`` runs on every call (a preview must keep pumping its window events so
        q/Esc work and it repaints); the stall notice only once the source has been silent for
        ``stall_seconds`` after its first frame.
        """
        if self.last_frame is not None and time.monotonic() - self.last_frame >= self.stall_seconds:
            self._update(getattr(self.source, "notice", None) or STALL_NOTICE)
        for sink in self.sinks:
            idle = getattr(sink, "idle", None)
            if idle is not None:
                idle()


def run(source, process: Callable[[Frame], Frame], sinks: Iterable, *, live: bool,
        queue_size: int = 2, stop_event: threading.Event | None = None,
        progress: Callable[[Frame], None] | None = None,
        stall_seconds: float = STALL_SECONDS,
        post: Callable[[Frame], Frame] | None = None, workers: int = 1) -> RunStats:
    """Run until the source ends, a sink raises StopPipeline, Ctrl-C, or ``stop_event`` is set.

    Errors from the source, ``process`` or a sink are re-raised after the clean shutdown;
    a sink with ``abort()`` gets that call instead of ``close()`` so it can keep its partial
    output aside. Ctrl-C and ``stop_event`` are not errors: ``stats.interrupted`` says so, and
    every frame already processed is written before the sinks are closed.
    Live runs show a "camera lost" notice on sinks that support it (see `_Notices`).
    ``post`` is an optional second stage applied to every processed frame, in order (e.g. the
    temporal stage). File runs apply it and write on a sink thread (see `_Writer`), overlapping
    ``process`` on the next frame; ``progress`` is then called there too. ``workers`` > 1 lets
    file runs process that many frames at once (see `_InOrder`); ``process`` must then be safe
    to call from several threads, and the order of frames is kept.
    """
    sinks = list(sinks)
    stop = stop_event if stop_event is not None else threading.Event()
    stats = RunStats()
    frames: queue.Queue = queue.Queue(maxsize=max(1, queue_size))
    capture = _Capture(source, frames, live, stop, stats)
    notices = _Notices(source, sinks, stall_seconds) if live else None
    writer = processor = None
    if not live and not any(getattr(sink, "main_thread_only", False) for sink in sinks):
        writer = _Writer(sinks, stats, post, progress)
    if live and post is not None:
        processor = _Processor(frames, process, stop, notices.frame_seen)
    inbox = processor.out if processor is not None else frames
    in_order = _InOrder(process, workers) if writer is not None and workers > 1 else None
    error: BaseException | None = None
    started = time.monotonic()
    capture.start()
    for thread in (writer, processor):
        if thread is not None:
            thread.start()
    try:
        while True:
            if writer is not None:
                writer.check()
            if stop.is_set():
                stats.interrupted = True
                break
            try:
                item = inbox.get(timeout=0.1)
            except queue.Empty:
                if notices is not None:
                    notices.waiting()
                continue
            if item is _END:
                if stop.is_set():  # the capture thread ended because we asked it to
                    stats.interrupted = True
                    break
                if in_order is not None:
                    for out in in_order.flush():
                        writer.put(out)
                if writer is not None:
                    writer.put(_END)
                else:
                    for sink in sinks:
                        ended = getattr(sink, "end_of_stream", None)
                        if ended is not None:
                            ended()
                break
            if isinstance(item, _Failed):
                raise item.error
            if notices is not None:
                notices.frame_arrived()
            if in_order is not None:
                out = in_order.submit(item)
                if out is not None:
                    writer.put(out)
                continue
            out = process(item) if processor is None else item
            if writer is not None:
                writer.put(out)
            else:
                _write(post(out) if post is not None else out, sinks, stats, progress)
        if in_order is not None:  # stopped: the frames already in flight are written too
            for out in in_order.flush():
                writer.put(out)
    except StopPipeline:
        stats.stopped_by_user = True
    except KeyboardInterrupt:
        stats.interrupted = True
    except BaseException as exc:
        error = exc
    finally:
        stop.set()
        if in_order is not None:
            in_order.close()  # after a failure the frames in flight are left unwritten
        _drain(frames)
        if processor is not None:  # it sees the stop flag within 0.1 s, or after its frame
            _drain(processor.out)
            processor.join(timeout=CAPTURE_CLOSE_JOIN_SECONDS)
        source_closed, close_error = _stop_capture(capture, frames, source, error is not None)
        if writer is not None:
            writer.close()  # writes what was processed before the end (Ctrl-C included)
            if isinstance(writer.error, StopPipeline):
                stats.stopped_by_user = True
            elif writer.error is not None and error is None:
                error = writer.error
        stats.elapsed = time.monotonic() - started
        _close_all([] if source_closed else [source], sinks, failed=error is not None,
                   first_error=close_error)
    if error is not None:
        raise error
    return stats


def stages(engine: Callable, temporal: Callable | None, i420: bool = False
           ) -> tuple[Callable[[Frame], Frame], Callable[[Frame], Frame] | None]:
    """``process`` (the engine) and ``post`` (the temporal stage, or None) for `run`.

    Kept apart so file conversion can smooth and encode one frame while the model works on
    the next; ``post`` sees every frame in order, as the temporal stage requires. An engine
    with ``paint`` (livefilter's own) only paints in ``process``; ``post`` smooths the
    painting and brings it to the frame's size (see `smooth_painting`), in I420 when ``i420``
    (the only sink is an encoder that takes it: `VideoFileSink.takes_i420`).
    """
    paint = getattr(engine, "paint", None)
    if paint is not None:
        work = GuideBuffers()

        def paint_frame(frame: Frame) -> Frame:
            return replace(frame, painting=paint(frame.image), original=frame.image)

        def finish(frame: Frame) -> Frame:
            return smooth_painting(frame, temporal, work, i420)

        return paint_frame, finish

    def process(frame: Frame) -> Frame:
        return replace(frame, image=engine(frame.image), original=frame.image)

    def post(frame: Frame) -> Frame:
        return replace(frame, image=temporal(frame.original, frame.image))

    return process, (post if temporal is not None else None)


def smooth_painting(frame: Frame, temporal: Callable | None, work: GuideBuffers | None = None,
                    i420: bool = False) -> Frame:
    """The temporal stage on the model's picture at its own size, then the frame-size step.

    The model's flicker lives at its size; the full-size step adds the frame's own detail,
    which is as steady as the camera, so smoothing there costs a fraction of smoothing the
    full frame, for the same calm. ``work`` is the stream's full-size buffers. A frame without
    a painting (paused, or processed by a plain engine) passes through unchanged. ``i420``
    asks for the encoder's layout, where the painting allows it (`Painting.finish_i420`).
    """
    painting = frame.painting
    if painting is None:
        return frame
    styled = painting.styled if temporal is None else temporal(painting.small, painting.styled)
    if i420:
        image = painting.finish_i420(frame.original, styled, work)
        if image is not None:
            return replace(frame, image=image, painting=None, format="yuv420p")
    return replace(frame, image=painting.finish(frame.original, styled, work), painting=None)


def _stop_capture(capture: threading.Thread, frames: queue.Queue, source,
                  failed: bool) -> tuple[bool, BaseException | None]:
    """Join the capture thread; if a blocked read holds it, close the source to unblock it.

    Returns whether the source was closed here (so it is not closed a second time) and the
    error closing it raised, if any. A capture thread that still does not end is left behind
    (it is a daemon) with a warning.
    """
    capture.join(timeout=CAPTURE_JOIN_SECONDS)
    if not capture.is_alive():
        return False, None
    log.debug("capture thread still in a read after %.0f s; closing the source", CAPTURE_JOIN_SECONDS)
    close_error = None
    try:
        _close_one(source, failed)
    except BaseException as exc:
        log.debug("error while closing %r: %s", source, exc)
        close_error = exc
    deadline = time.monotonic() + CAPTURE_CLOSE_JOIN_SECONDS
    while capture.is_alive() and time.monotonic() < deadline:
        _drain(frames)  # whatever the last read delivered must not keep it waiting for room
        capture.join(timeout=0.1)
    if capture.is_alive():
        log.warning("the source's read did not return within %.0f s of closing it; leaving it behind",
                    CAPTURE_CLOSE_JOIN_SECONDS)
    return True, close_error


def _drain(frames: queue.Queue) -> None:
    """Empty the queue so a capture thread blocked on put() can see the stop flag."""
    while True:
        try:
            frames.get_nowait()
        except queue.Empty:
            return


def _close_one(thing, failed: bool) -> None:
    """``abort()`` after a failure when it has one (keeps partial output aside), else ``close()``."""
    abort = getattr(thing, "abort", None)
    if failed and abort is not None:
        abort()
    else:
        thing.close()


def _close_all(sources: list, sinks: list, failed: bool,
               first_error: BaseException | None = None) -> None:
    """Close the source(s) and every sink, even if some of them fail while closing.

    After a normal run the first closing error (``first_error`` if given) is raised at the end.
    """
    for thing in [*sources, *sinks]:
        try:
            _close_one(thing, failed)
        except BaseException as exc:
            log.debug("error while closing %r: %s", thing, exc)
            if first_error is None:
                first_error = exc
    if first_error is not None and not failed:
        raise first_error
