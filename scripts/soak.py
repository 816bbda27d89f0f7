#!/usr/bin/env python
"""Long-run check for the live path: does a meeting-length run keep memory flat and latency steady?

A file played at its own frame rate and looped stands in for the webcam (`PacedFileSource`),
the real engine and temporal stage filter it, and the frames go to the real virtual camera
sink on a pyvirtualcam backend that discards them (no device needed), plus optionally a
recording. Every ``--interval`` seconds one sample is printed: resident memory (RSS), frames
shown and dropped, capture-to-sink latency percentiles over that interval.

    python scripts/soak.py --minutes 30 --model weights/hayao.onnx      # by hand: 30 min, a sample a minute
    python scripts/soak.py --seconds 6 --interval 1 --model tiny.onnx    # short mode (the test suite)

The stages are the camera's: auto quality by default (``--quality``), each sample says which
level ran. ``--load N --load-period S`` switches N call-app stand-ins (livefilter.callload) on
and off every S seconds, so the controller has to step down and back up during the run.

Verdict: RSS growth from the first sample (after warm-up) to the largest later one must stay
under ``--max-growth-mb`` (20 MB, the issue's bound), and no level change may come within 2 s
of the one before; exit 1 otherwise. Latency is reported, not judged: it depends on the
machine; compare the first and last samples.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from livefilter.errors import LivefilterError  # noqa: E402

NULL_BACKEND = "livefilter-soak-null"


def rss_mb() -> float:
    """Resident set size of this process in MB (Linux /proc; elsewhere the peak from getrusage)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)


def make_clip(path: Path, seconds: float = 10.0, size: tuple[int, int] = (640, 360), fps: int = 30) -> Path:
    """A looping stand-in camera: a face-sized moving disc and text on a gradient, no audio."""
    import av
    import cv2

    w, h = size
    base = np.zeros((h, w, 3), np.uint8)
    base[:, :, 0] = np.linspace(40, 200, w, dtype=np.uint8)[None, :]
    base[:, :, 1] = np.linspace(60, 180, h, dtype=np.uint8)[:, None]
    base[:, :, 2] = 120
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"preset": "veryfast", "crf": "23"})
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for i in range(int(seconds * fps)):
            image = base.copy()
            t = i / fps
            centre = (int(w / 2 + w / 5 * np.sin(t)), int(h / 2 + h / 8 * np.cos(1.3 * t)))
            cv2.circle(image, centre, h // 4, (150, 180, 230), -1)
            cv2.putText(image, f"{t:5.2f}", (10, h - 20), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2)
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def register_null_camera() -> None:
    """A pyvirtualcam backend that accepts and drops frames: the sink's own work stays measured."""
    import pyvirtualcam

    class NullCamera:
        def __init__(self, *, width, height, fps, fourcc, device, **_):
            self.sent = 0

        def send(self, frame: np.ndarray) -> None:
            self.sent += 1

        def close(self) -> None:
            pass

        def device(self) -> str:
            return "null"

        def native_fourcc(self):
            return None

    pyvirtualcam.register_backend(NULL_BACKEND, NullCamera)


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def soak(args: argparse.Namespace) -> dict:
    from livefilter.capture import PacedFileSource
    from livefilter.engine import resolve_model
    from livefilter.pipeline import run
    from livefilter.quality import make_live_stages
    from livefilter.sinks.virtualcam import VirtualCameraSink

    duration = args.seconds if args.seconds is not None else args.minutes * 60
    interval = args.interval if args.interval is not None else (60.0 if args.seconds is None else 1.0)
    warmup = args.warmup if args.warmup is not None else (60.0 if args.seconds is None else 0.0)
    workdir = tempfile.TemporaryDirectory(prefix="livefilter-soak-")
    clip = Path(args.clip) if args.clip else make_clip(Path(workdir.name) / "camera.mp4")
    source = CountingSource(PacedFileSource(clip, loop=True))
    stages = make_live_stages(resolve_model(args.model or args.style), resolution=args.resolution,
                              temporal=args.temporal, strength=args.strength, fps=source.fps,
                              quality=args.quality, threads=args.threads, with_styles=False)
    switcher = LoadSwitcher(args.load, args.load_period) if args.load else None

    register_null_camera()
    meter = Meter()
    sinks = [VirtualCameraSink(args.size[0], args.size[1], fps=30, backend=NULL_BACKEND)]
    if args.record:
        from livefilter.sinks.video_file import VideoFileSink

        sinks.append(VideoFileSink(args.record, fps=30, overwrite=True))
    sinks.append(meter)  # latency is capture -> every sink done
    sinks.append(stages.meter)  # feeds the quality controller
    stop = threading.Event()
    samples: list[dict] = []
    if switcher is not None:
        switcher.tick()  # the first load period starts now, before the clock (spawning takes a while)
        switcher.started = time.monotonic()
    started = time.monotonic()

    def sampler() -> None:
        due = started + interval
        while not stop.wait(max(0.0, min(1.0, due - time.monotonic()))):
            if switcher is not None:
                switcher.tick()  # every second, so the load switches on time
            if time.monotonic() < due:
                continue
            due += interval
            latencies, shown = meter.take()
            read = source.take()
            sample = {
                "t": round(time.monotonic() - started, 1),
                "rss_mb": round(rss_mb(), 1),
                "frames": shown,
                "dropped": max(0, read - shown),
                "fps": round(shown / interval, 1),
                "latency_p50_ms": _ms(percentile(latencies, 50)),
                "latency_p95_ms": _ms(percentile(latencies, 95)),
                "level": stages.level.name,
                "load": switcher.on if switcher is not None else False,
            }
            samples.append(sample)
            print(json.dumps(sample), flush=True)
            if time.monotonic() - started >= duration:
                stop.set()

    watcher = threading.Thread(target=sampler, name="soak-sampler", daemon=True)
    watcher.start()
    try:
        stats = run(source, stages.process, sinks, live=True, queue_size=1, stop_event=stop, post=stages.post)
    finally:
        stop.set()
        watcher.join(timeout=interval + 5)
        loads = switcher.close() if switcher is not None else []
        workdir.cleanup()
    summary = summarise(samples, stats, args.max_growth_mb, stages.ladder[0].describe(), warmup)
    changes = [round(t, 2) for t, _ in stages.trace[1:]]
    gaps = [b - a for a, b in zip(changes, changes[1:])]
    summary.update({"quality": args.quality, "level_trace": stages.trace, "level_changes": len(changes),
                    "min_change_gap_s": round(min(gaps), 2) if gaps else None, "loads": loads})
    if switcher is not None:  # trace times count from the stages' start
        summary["back_to_top_s"] = back_to_top(stages.trace, switcher.quiet_spells(stages.started),
                                               stages.ladder[0].name)
    summary["ok"] = summary["ok"] and all(g >= 2.0 - 0.002 for g in gaps)  # trace times are rounded to ms
    return summary


def back_to_top(trace: list[tuple[float, str]], spells: list[tuple[float, float]], top: str
                ) -> list[float | None]:
    """For each quiet spell (start, end), the seconds until the level was ``top``: 0 if it
    already was, None if it never got there before the spell ended."""
    out: list[float | None] = []
    for quiet, end in spells:
        level = next((name for t, name in reversed(trace) if t <= quiet), trace[0][1])
        if level == top:
            out.append(0.0)
        else:
            reached = [t for t, name in trace if quiet < t < end and name == top]
            out.append(round(reached[0] - quiet, 1) if reached else None)
    return out


class LoadSwitcher:
    """N call-app stand-ins, on for ``period`` seconds, off for ``period``, and so on."""

    def __init__(self, n: int, period: float) -> None:
        self.n, self.period = n, period
        self.load = None
        self.on = False
        self.started = time.monotonic()
        self.done: list[dict] = []
        self.switches: list[tuple[float, bool]] = []  # (monotonic time, load on after it)

    def tick(self) -> None:
        want = int((time.monotonic() - self.started) / self.period) % 2 == 0
        if want and self.load is None:
            from livefilter.callload import CallLoad

            self.load = CallLoad(self.n)
            self.load.start()
            self.switches.append((time.monotonic(), True))
        elif not want and self.load is not None:
            self.switches.append((time.monotonic(), False))
            self.done.append(self.load.stop())
            self.load = None
        self.on = self.load is not None

    def quiet_spells(self, since: float) -> list[tuple[float, float]]:
        """(start, end) of each spell without load, in seconds from ``since``; the last one
        ends when the run did (infinity)."""
        spells = []
        for i, (t, on) in enumerate(self.switches):
            if not on:
                end = next((u for u, o in self.switches[i + 1:] if o), float("inf"))
                spells.append((t - since, end - since))
        return spells

    def close(self) -> list[dict]:
        if self.load is not None:
            self.done.append(self.load.stop())
            self.load = None
        return self.done


class Meter:
    """A sink that only measures: frames and capture-to-here latency since the last sample."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latencies: list[float] = []

    def write(self, frame) -> None:
        with self._lock:
            self._latencies.append(time.monotonic() - frame.capture_time)

    def take(self) -> tuple[list[float], int]:
        with self._lock:
            latencies, self._latencies = self._latencies, []
        return latencies, len(latencies)

    def close(self) -> None:
        pass


class CountingSource:
    """Wraps a source to count frames read (read - shown = dropped by the live queue)."""

    def __init__(self, inner) -> None:
        self.inner, self.live, self.fps, self.size = inner, inner.live, inner.fps, inner.size
        self._lock = threading.Lock()
        self._read = 0

    def read(self):
        frame = self.inner.read()
        if frame is not None:
            with self._lock:
                self._read += 1
        return frame

    def take(self) -> int:
        with self._lock:
            count, self._read = self._read, 0
        return count

    def close(self) -> None:
        self.inner.close()


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def summarise(samples: list[dict], stats, limit_mb: float, model: str, warmup: float = 0.0) -> dict:
    """The verdict: RSS growth from the first sample taken after ``warmup`` seconds.

    The first minute is allocator and runtime settling (ONNX Runtime arenas, a rung's engine
    built when first used, glibc arenas per thread); a leak shows as growth after it.
    """
    if not samples:
        raise LivefilterError("no samples taken: run longer than one interval")
    settled = [s for s in samples if s["t"] >= warmup] or samples[-1:]
    first = settled[0]["rss_mb"]
    growth = max(s["rss_mb"] for s in settled) - first
    p50 = [s["latency_p50_ms"] for s in samples if s["latency_p50_ms"] is not None]
    return {
        "model": model,
        "samples": samples,
        "seconds": round(stats.elapsed, 1),
        "frames_shown": stats.frames_written,
        "frames_dropped": stats.frames_dropped,
        "warmup_s": warmup,
        "rss_at_start_mb": samples[0]["rss_mb"],
        "rss_first_mb": first,
        "rss_last_mb": samples[-1]["rss_mb"],
        "rss_growth_mb": round(growth, 1),
        "latency_p50_first_ms": p50[0] if p50 else None,
        "latency_p50_last_ms": p50[-1] if p50 else None,
        "latency_p50_max_ms": max(p50) if p50 else None,
        "max_growth_mb": limit_mb,
        "ok": growth < limit_mb,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=float, default=30.0, help="full run length (default 30)")
    length.add_argument("--seconds", type=float, default=None, help="short mode: run this many seconds")
    parser.add_argument("--interval", type=float, default=None,
                        help="seconds between samples (default 60; 1 in short mode)")
    parser.add_argument("--style", default="hayao")
    parser.add_argument("--model", help="generator .onnx instead of a style")
    parser.add_argument("--resolution", type=int, default=None, help="default: the style's own")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--temporal", default="flow", help="off, ema, motion, flow (default flow)")
    parser.add_argument("--strength", type=float, default=0.9, help="as the camera (default 0.9)")
    parser.add_argument("--clip", help="video to loop as the camera (default: a generated 640x360 clip)")
    parser.add_argument("--size", type=lambda s: tuple(int(v) for v in s.split("x")), default=(1280, 720),
                        help="virtual camera size WxH (default 1280x720)")
    parser.add_argument("--record", help="also record to this file (checks the file sink over time)")
    parser.add_argument("--max-growth-mb", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=None,
                        help="seconds of settling before the RSS baseline (default 60; 0 in short mode)")
    parser.add_argument("--quality", default="auto", help="auto (default) or a fixed level name")
    parser.add_argument("--load", type=int, default=0, help="call-app stand-ins that come and go")
    parser.add_argument("--load-period", type=float, default=120.0,
                        help="seconds the load is on, then off, and so on (default 120)")
    parser.add_argument("--json", help="write the summary (with every sample) here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        summary = soak(args)
    except LivefilterError as exc:
        print(f"soak: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))
    brief = {k: v for k, v in summary.items() if k not in ("samples", "loads")}
    print(json.dumps(brief), flush=True)
    verdict = "OK" if summary["ok"] else "FAIL"
    print(f"soak: {verdict}: RSS {summary['rss_first_mb']} -> {summary['rss_last_mb']} MB "
          f"(max growth {summary['rss_growth_mb']} MB, limit {summary['max_growth_mb']}), "
          f"latency p50 {summary['latency_p50_first_ms']} -> {summary['latency_p50_last_ms']} ms, "
          f"{summary['level_changes']} level changes (closest {summary['min_change_gap_s']} s apart), "
          f"{summary['frames_shown']} frames shown, {summary['frames_dropped']} dropped"
          + (f"; back to the top level {summary['back_to_top_s']} s after each load stopped"
             if "back_to_top_s" in summary else ""), file=sys.stderr)
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
