"""Stand-ins for a video-call app, for `livefilter bench --load N`.

In a real call Zoom, Meet or Teams encode the outgoing camera picture and decode the incoming
ones on the same cores as the filter. Each stand-in process does what such an app does with
one stream: builds a 1280x720 picture, converts it to YUV, encodes it with x264 (a real-time
preset, zero latency, a call-like bitrate) and decodes the packets again, paced at 30 fps in
real time. Every process reports the frames it handled and the CPU time it used, so the bench
can say how heavy the load really was.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

LOAD_SIZE = (1280, 720)
LOAD_FPS = 30.0
PRESET = "veryfast"
BITRATE = 2_000_000  # what call apps send at 720p, about


def _picture(w: int, h: int, seed: int) -> np.ndarray:
    """A textured, camera-like background (x264 works on detail; a flat frame costs nothing)."""
    import cv2

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8)
    base = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    grain = rng.integers(0, 24, (h, w, 3), dtype=np.uint8)
    return cv2.add(base, grain)


def call_app(index: int, size: tuple[int, int], fps: float, stop, ready, results) -> None:
    """One stand-in: encode + decode a paced stream until ``stop`` is set; report to ``results``."""
    import av
    import cv2

    w, h = size
    base = _picture(w, h, index)
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = w, h, "yuv420p"
    encoder.time_base = Fraction(1, int(round(fps)))
    encoder.framerate = Fraction(int(round(fps)), 1)
    encoder.bit_rate = BITRATE
    encoder.options = {"preset": PRESET, "tune": "zerolatency"}
    decoder = av.CodecContext.create("h264", "r")
    ready.set()
    frames = skipped = decoded = slot = 0
    cpu0, start = time.process_time(), time.monotonic()
    period = 1.0 / fps
    while not stop.is_set():
        wait = start + slot * period - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        elif wait < -period:  # behind: drop the slots that passed, as a real-time app does
            missed = int(-wait / period)
            skipped += missed
            slot += missed
        picture = np.roll(base, (slot * 6) % w, axis=1)
        x = (slot * 9) % (w - 200)
        cv2.rectangle(picture, (x, h // 3), (x + 200, h // 3 + 260), (90, 140, 200), -1)
        frame = av.VideoFrame.from_ndarray(picture, format="bgr24").reformat(format="yuv420p")
        frame.pts = slot
        for packet in encoder.encode(frame):
            for _ in decoder.decode(packet):
                decoded += 1
        frames += 1
        slot += 1
    wall = time.monotonic() - start
    cpu = time.process_time() - cpu0
    results.put({"index": index, "frames": frames, "decoded": decoded, "skipped": skipped,
                 "seconds": round(wall, 2), "cpu_seconds": round(cpu, 2),
                 "cpu_percent": round(100 * cpu / wall, 1) if wall > 0 else 0.0,
                 "fps": round(frames / wall, 2) if wall > 0 else 0.0})


@dataclass
class CallLoad:
    """``n`` stand-in processes, started with `start` and stopped (and measured) with `stop`."""

    n: int
    size: tuple[int, int] = LOAD_SIZE
    fps: float = LOAD_FPS

    def start(self, timeout: float = 60.0) -> None:
        ctx = mp.get_context("spawn")  # no fork of a process holding ONNX Runtime threads
        self._stop, self._results = ctx.Event(), ctx.Queue()
        self._procs, readies = [], []
        for i in range(self.n):
            ready = ctx.Event()
            proc = ctx.Process(target=call_app, args=(i, self.size, self.fps, self._stop, ready, self._results),
                               name=f"livefilter-callload-{i}", daemon=True)
            proc.start()
            self._procs.append(proc)
            readies.append(ready)
        deadline = time.monotonic() + timeout
        for ready in readies:
            ready.wait(max(0.1, deadline - time.monotonic()))
        self.started = time.monotonic()

    def stop(self, timeout: float = 30.0) -> dict:
        """Stop the stand-ins; what they did and the CPU they used."""
        self._stop.set()
        rows = []
        deadline = time.monotonic() + timeout
        for _ in self._procs:
            try:
                rows.append(self._results.get(timeout=max(0.1, deadline - time.monotonic())))
            except Exception:  # a stand-in that died reports nothing
                break
        for proc in self._procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
        rows.sort(key=lambda r: r["index"])
        return {"processes": self.n, "size": f"{self.size[0]}x{self.size[1]}", "fps": self.fps,
                "what": f"x264 {PRESET} zerolatency {BITRATE // 1000} kb/s encode + H.264 decode, paced",
                "per_process": rows,
                "cpu_percent_total": round(sum(r["cpu_percent"] for r in rows), 1),
                "reported": len(rows)}

    def __enter__(self) -> "CallLoad":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._stop.is_set():
            self.stop()
