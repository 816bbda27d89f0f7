"""`livefilter bench`: model speed, live latency, conversion speed and flicker on this machine.

Sections (each can be skipped with ``--skip``):
- model: ms per frame of the engine (resize + model + resize back) on a 640x360 picture at the
  default internal resolution and a few others, for the chosen student, the other shipped
  styles, and ``--teacher`` with the teacher/student ratio;
- live: the real pipeline fed by a file played in real time (30 fps 640x360 synthetic clip
  unless ``--clip``, any size), null sink: output fps, dropped-frame rate, capture->sink latency,
  with the camera's auto quality (``--quality``) and its level trace; ``--load N`` runs N
  stand-ins for a video-call app meanwhile (livefilter.callload) and records their CPU;
- convert: clip conversion through the real pipeline and video sink, as a multiple of real time;
- flicker: warping error (livefilter.metrics) and PSNR against the per-frame output for each
  temporal mode and strength on the clip.

Warm-up runs are excluded everywhere. ``--json`` prints (or writes) every figure;
``--plot out.png`` draws latency over time and the E_warp / fidelity trade-off with OpenCV.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from livefilter.errors import LivefilterError
from livefilter.metrics import PairFlow, fidelity, input_pairs, warping_error
from livefilter.temporal import DEFAULT_MODE, DEFAULT_STRENGTH, MODES, make_temporal

SECTIONS = ("model", "live", "convert", "flicker")
OTHER_RESOLUTIONS = (192, 320, 384)
BENCH_SIZE = (640, 360)
BENCH_FPS = 30


# --- clips ------------------------------------------------------------------------------------
def make_synthetic_clip(path: str | Path, seconds: float = 4.0, size: tuple[int, int] = BENCH_SIZE,
                        fps: int = BENCH_FPS, seed: int = 0) -> Path:
    """A 640x360 30 fps H.264 clip with a textured still background and a moving 'head'.

    Stands in for a webcam when no clip is given: a still background (where flicker shows
    most), a shape that moves and turns (where ghosting would show) and sensor-like noise.
    """
    import av

    from livefilter.sinks.video_file import pick_encoder

    w, h = size
    rng = np.random.default_rng(seed)
    # A room-like background: smooth colour field, a few furniture-like blocks, fine texture.
    background = rng.integers(40, 220, (6, 10, 3), dtype=np.uint8)
    background = cv2.resize(background, (w, h), interpolation=cv2.INTER_CUBIC)
    for _ in range(6):
        x, y = int(rng.integers(0, w - 80)), int(rng.integers(0, h - 60))
        colour = tuple(int(c) for c in rng.integers(30, 230, 3))
        cv2.rectangle(background, (x, y), (x + int(rng.integers(40, 160)), y + int(rng.integers(30, 120))),
                      colour, -1)
    grain = cv2.resize(rng.normal(0, 10, (h // 2, w // 2, 3)), (w, h), interpolation=cv2.INTER_LINEAR)
    background = np.clip(background + grain, 0, 255).astype(np.uint8)
    # The head carries its own texture so that optical flow (and the flicker metric) can
    # follow it, as it can follow a real face.
    hw, hh = 130, 170
    skin = rng.integers(0, 256, (hh // 6, hw // 6, 3), dtype=np.uint8)
    skin = cv2.resize(skin, (hw, hh), interpolation=cv2.INTER_CUBIC)
    skin = cv2.addWeighted(skin, 0.35, np.full_like(skin, (120, 160, 210)), 0.65, 0)
    cv2.circle(skin, (hw // 2 - 22, hh // 2 - 15), 8, (40, 40, 40), -1)
    cv2.circle(skin, (hw // 2 + 22, hh // 2 - 15), 8, (40, 40, 40), -1)
    head_mask = np.zeros((hh, hw), np.uint8)
    cv2.ellipse(head_mask, (hw // 2, hh // 2), (hw // 2 - 4, hh // 2 - 4), 0, 0, 360, 255, -1)
    path = Path(path)
    codec = pick_encoder(["libx264", "h264", "mpeg4"])
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        if codec == "libx264":
            stream.options = {"preset": "veryfast", "crf": "18"}
        n = max(2, round(seconds * fps))
        for i in range(n):
            t = i / fps
            img = background.copy()
            cx = int(w / 2 + w * 0.18 * np.sin(2 * np.pi * t / 3.0))
            cy = int(h / 2 + h * 0.05 * np.sin(2 * np.pi * t / 1.5))
            x0, y0 = cx - hw // 2, cy - hh // 2
            face = skin.copy()
            mouth = int(6 + 6 * abs(np.sin(2 * np.pi * t * 2)))
            cv2.ellipse(face, (hw // 2, hh // 2 + 35), (20, mouth), 0, 0, 360, (60, 50, 150), -1)
            region = img[y0:y0 + hh, x0:x0 + hw]
            region[head_mask > 0] = face[head_mask > 0]
            noise = rng.normal(0, 2.0, img.shape)
            img = np.clip(img + noise, 0, 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="bgr24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def load_clip(path: str | Path, seconds: float | None = 3.0, max_width: int = 640) -> tuple[list[np.ndarray], float]:
    """First ``seconds`` of a clip as BGR frames, scaled down to at most ``max_width`` wide."""
    from livefilter.capture import FileSource

    source = FileSource(path)
    try:
        limit = None if seconds is None else max(2, round(seconds * source.fps))
        frames: list[np.ndarray] = []
        while limit is None or len(frames) < limit:
            frame = source.read()
            if frame is None:
                break
            image = frame.image
            h, w = image.shape[:2]
            if w > max_width:
                nh = round(h * max_width / w / 2) * 2
                image = cv2.resize(image, (max_width, nh), interpolation=cv2.INTER_AREA)
            frames.append(image)
        return frames, source.fps
    finally:
        source.close()


# --- flicker ----------------------------------------------------------------------------------
def temporal_rows(
    inputs: Sequence[np.ndarray],
    filtered: Sequence[np.ndarray],
    configs: Sequence[tuple],
    pairs: Sequence[PairFlow] | None = None,
    paintings: Sequence | None = None,
) -> list[dict]:
    """Replay each (mode, strength) over the same filtered frames; score flicker and fidelity.

    With ``paintings`` (the engine's `Painting` per frame, which ``filtered`` finishes), each
    stage smooths the paintings and the result is finished, as the pipeline does.

    Rows carry E_warp of the output, the same figure for the input clip and for the per-frame
    output (blending off), the reduction against per-frame, PSNR against the per-frame output
    (pooled and worst frame) and the stage's own cost in ms per frame. A config is
    ``(mode, strength)`` or ``(mode, strength, options)`` with stage options for sweeps.
    """
    if len(inputs) < 2:
        raise LivefilterError("flicker needs a clip of at least two frames")
    pairs = input_pairs(inputs) if pairs is None else pairs
    floor = warping_error(inputs, inputs, pairs)
    per_frame = warping_error(inputs, filtered, pairs)
    rows = []
    for config in configs:
        mode, strength = config[0], config[1]
        options = dict(config[2]) if len(config) > 2 else {}
        stage = make_temporal(mode, strength, **options)
        outputs = []
        elapsed = cpu = 0.0
        for i, (src, out) in enumerate(zip(inputs, filtered)):
            t0, c0 = time.perf_counter(), time.process_time()
            if paintings is None:
                outputs.append(stage(src, out))
            else:
                p = paintings[i]
                outputs.append(p.finish(src, stage(p.small, p.styled)))
            elapsed += time.perf_counter() - t0
            cpu += time.process_time() - c0
        e = warping_error(inputs, outputs, pairs)
        fid = fidelity(outputs, filtered)
        rows.append({
            "mode": mode,
            "strength": strength,
            **({"options": options} if options else {}),
            "e_warp": e,
            "e_warp_input": floor,
            "e_warp_per_frame": per_frame,
            "reduction": 1.0 - e / per_frame if per_frame > 0 else 0.0,
            "psnr": fid.psnr,
            "worst_psnr": fid.worst_psnr,
            "ms_per_frame": elapsed / len(inputs) * 1000,
            # CPU time of the whole process (OpenCV's worker threads included): far steadier
            # than wall time when other programs share the cores.
            "cpu_ms_per_frame": cpu / len(inputs) * 1000,
        })
    return rows


# --- helpers ----------------------------------------------------------------------------------
def _add(parser: argparse.ArgumentParser, *flags: str, **kwargs: object) -> None:
    """Add an option unless the parent parser (cli's common options) already has it."""
    if any(flag in parser._option_string_actions for flag in flags):
        return
    parser.add_argument(*flags, **kwargs)


def _csv_floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None


def _csv_ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole numbers separated by commas, got {text!r}") from None
    if any(v < 16 for v in values):
        raise argparse.ArgumentTypeError("resolutions must be at least 16")
    return values


def _load() -> float | None:
    """1-minute load average: timings taken while other work runs are not comparable."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `livefilter bench` (model options come from the CLI's common set when present)."""
    from livefilter.engine import DEFAULT_RESOLUTION, DEFAULT_STYLE

    _add(parser, "--style", default=DEFAULT_STYLE, help="student style to measure")
    _add(parser, "--model", metavar="PATH", help="student .onnx instead of a style")
    _add(parser, "--resolution", type=int, default=None,
         help=f"default internal short side (default: the style's own, else {DEFAULT_RESOLUTION})")
    _add(parser, "--threads", type=int, default=None, help="CPU threads for the model")
    _add(parser, "--provider", default="cpu", help="onnxruntime provider")
    _add(parser, "--temporal", choices=list(MODES), default=DEFAULT_MODE, help="temporal mode for live/convert")
    _add(parser, "--strength", type=float, default=DEFAULT_STRENGTH, help="temporal strength")
    g = parser.add_argument_group("bench")
    g.add_argument("--teacher", metavar="PATH", help="also time this teacher .onnx and report the ratio")
    g.add_argument("--clip", metavar="PATH",
                   help="clip for live/convert/flicker (default: a synthetic 640x360 30 fps clip)")
    g.add_argument("--resolutions", type=_csv_ints, default=None, metavar="N,N",
                   help=f"other internal resolutions to time (default {','.join(map(str, OTHER_RESOLUTIONS))})")
    g.add_argument("--seconds", type=float, default=10.0, help="length of the live run (default 10)")
    g.add_argument("--convert-seconds", type=float, default=10.0,
                   help="convert at most this much of the clip (default 10)")
    g.add_argument("--flicker-seconds", type=float, default=3.0,
                   help="seconds of the clip scored for flicker (default 3)")
    g.add_argument("--strengths", type=_csv_floats, default=None, metavar="S,S",
                   help="strengths per temporal mode for the flicker table (default 0.5,0.7,0.8,0.9)")
    g.add_argument("--queue-size", type=int, default=1,
                   help="live queue length in frames (the pipeline drops the oldest; default 1, as the camera)")
    g.add_argument("--skip", action="append", choices=SECTIONS, default=[],
                   help="leave a section out (repeatable)")
    g.add_argument("--quick", action="store_true", help="a few seconds in all: for smoke tests")
    g.add_argument("--json", nargs="?", const="-", default=None, metavar="PATH",
                   help="print JSON instead of the table (or write it to PATH and print the table)")
    g.add_argument("--plot", metavar="PNG", help="draw latency over time and the flicker trade-off")
    from livefilter.quality import AUTO, DEFAULT_BUDGET_MS

    q = parser.add_argument_group("live: adaptive quality and call load")
    q.add_argument("--quality", default=AUTO, metavar="LEVEL",
                   help="auto (default, as `livefilter camera`) or a fixed level for the live part")
    q.add_argument("--latency-budget", type=float, default=DEFAULT_BUDGET_MS, metavar="MS",
                   help=f"p95 latency auto quality aims at (default {DEFAULT_BUDGET_MS:g})")
    q.add_argument("--load", type=int, default=0, metavar="N",
                   help="run N stand-ins for a call app (1280x720 30 fps x264 encode + decode) "
                        "during the live part")


def _student_path(args: argparse.Namespace) -> Path:
    """The model the commands run: ``--model`` as given, a style from its preferred file."""
    from livefilter.engine import preferred_file, resolve_model

    if getattr(args, "model", None):
        return resolve_model(args.model)
    return preferred_file(resolve_model(args.style))


def _resolution(args: argparse.Namespace) -> int:
    """``--resolution``, else the one the student file was trained for."""
    from livefilter.engine import model_resolution

    return int(args.resolution) if getattr(args, "resolution", None) else model_resolution(_student_path(args))


def _engine(path: Path, resolution: int, args: argparse.Namespace):
    from livefilter.engine import Engine

    return Engine(path, resolution=resolution, threads=getattr(args, "threads", None),
                  provider=getattr(args, "provider", "cpu"))


def _time_engine(engine, image: np.ndarray, warmup: int, seconds: float, min_runs: int) -> dict:
    """Median/p90 ms per frame of ``engine(image)`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        engine(image)
    times = []
    start = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        engine(image)
        times.append((time.perf_counter() - t0) * 1000)
    med = float(np.median(times))
    return {"ms_median": med, "ms_p90": float(np.percentile(times, 90)), "fps": 1000.0 / med,
            "runs": len(times)}


# --- sections ---------------------------------------------------------------------------------
def bench_model(args: argparse.Namespace, image: np.ndarray, quick: bool) -> list[dict]:
    """Engine ms per frame for the student(s) and the teacher at several internal resolutions."""
    from livefilter.engine import list_styles, resolve_model

    student = _student_path(args)
    default = _resolution(args)
    others = args.resolutions if args.resolutions is not None else list(OTHER_RESOLUTIONS)
    resolutions = [default] if quick else sorted({default, *others})
    warmup, seconds, min_runs = (2, 0.0, 3) if quick else (3, 2.0, 5)
    rows: list[dict] = []
    students = [("student", student)]
    if not quick and not getattr(args, "model", None):
        for style in list_styles():
            path = resolve_model(style)
            if path.resolve() != student.resolve():
                students.append(("student", path))
    h, w = image.shape[:2]
    for role, path in students:
        res_list = resolutions if path == student else [default]
        for res in res_list:
            engine = _engine(path, res, args)
            rows.append({"model": path.name, "role": role, "resolution": res, "input": f"{w}x{h}",
                         **_time_engine(engine, image, warmup, seconds, min_runs)})
    if getattr(args, "teacher", None):
        teacher = Path(args.teacher)
        for res in resolutions:
            engine = _engine(teacher, res, args)
            row = {"model": teacher.name, "role": "teacher", "resolution": res, "input": f"{w}x{h}",
                   **_time_engine(engine, image, warmup, seconds, min_runs)}
            ref = next((r for r in rows if r["model"] == student.name and r["resolution"] == res), None)
            if ref is not None:
                row["ratio"] = row["ms_median"] / ref["ms_median"]
            rows.append(row)
    return rows


class _RecordingSink:
    """Null sink that keeps (write time, capture->write latency) for the latency trace."""

    def __init__(self) -> None:
        self.trace: list[tuple[float, float]] = []

    def write(self, frame) -> None:
        now = time.monotonic()
        self.trace.append((now, now - frame.capture_time))

    def close(self) -> None:
        pass


def _stage_kwargs(engine, temporal, i420: bool = False) -> dict:
    """The pipeline's ``process`` and ``post`` as the CLI wires them."""
    from livefilter.pipeline import stages

    process, post = stages(engine, temporal, i420)
    return {"process": process, "post": post}


def _temporal_for(args: argparse.Namespace):
    mode = getattr(args, "temporal", DEFAULT_MODE)
    return None if mode == "off" else make_temporal(mode, getattr(args, "strength", DEFAULT_STRENGTH))


def bench_live(args: argparse.Namespace, engine, clip: Path, seconds: float) -> dict:
    """Real pipeline, file played in real time (looped), null sink; stops after ``seconds``.

    The stages are the camera's: auto quality (or ``--quality``) over the installed ladder,
    its level trace kept next to the latency trace. ``engine`` (the top level) is unused here:
    the live stages build and keep their own engines, as the camera does.
    """
    from livefilter.capture import FileSource, PacedFileSource
    from livefilter.pipeline import run as run_pipeline
    from livefilter.quality import AUTO, DEFAULT_BUDGET_MS, make_live_stages

    probe = FileSource(clip)
    first = probe.read()
    probe.close()
    quality = getattr(args, "quality", AUTO)
    budget_ms = float(getattr(args, "latency_budget", DEFAULT_BUDGET_MS))
    n_load = int(getattr(args, "load", 0) or 0)
    load = None
    if n_load > 0:
        from livefilter.callload import CallLoad

        load = CallLoad(n_load)
        load.start()
    try:
        source = PacedFileSource(clip, loop=True)
        stages = make_live_stages(_student_path(args), resolution=_resolution(args),
                                  temporal=getattr(args, "temporal", DEFAULT_MODE),
                                  strength=getattr(args, "strength", DEFAULT_STRENGTH), fps=source.fps,
                                  quality=quality, budget_ms=budget_ms, threads=getattr(args, "threads", None),
                                  provider=getattr(args, "provider", "cpu"), with_styles=False)
        for _ in range(3):  # warm-up, excluded
            out = stages.engine(first.image)
            if stages.temporal is not None:
                stages.temporal(first.image, out)
        if stages.temporal is not None:
            stages.temporal.reset()
        sink = _RecordingSink()
        stop = threading.Event()
        timer = threading.Timer(seconds, stop.set)
        stages.started = time.monotonic()
        timer.start()
        try:
            stats = run_pipeline(source, process=stages.process, post=stages.post, sinks=[sink, stages.meter],
                                 live=True, stop_event=stop, queue_size=int(getattr(args, "queue_size", 1)))
        finally:
            timer.cancel()
    finally:
        load_result = load.stop() if load is not None else None
    times = [t for t, _ in sink.trace]
    lat_ms = [lat * 1000 for _, lat in sink.trace]
    span = times[-1] - times[0] if len(times) > 1 else 0.0
    t0 = times[0] if times else 0.0
    level_trace = [[round(t, 3), name] for t, name in stages.trace]
    ends = [t for t, _ in level_trace[1:]] + [stats.elapsed]
    level_seconds: dict[str, float] = {}
    for (t, name), end in zip(level_trace, ends):
        level_seconds[name] = round(level_seconds.get(name, 0.0) + max(0.0, end - t), 2)
    changes = stages.controller.changes if stages.controller is not None else []
    return {
        "source": f"{clip.name} paced at {source.fps:.3g} fps",
        "source_fps": source.fps,
        "size": f"{source.size[0]}x{source.size[1]}",
        "temporal": getattr(args, "temporal", DEFAULT_MODE),
        "strength": getattr(args, "strength", DEFAULT_STRENGTH),
        "queue_size": int(getattr(args, "queue_size", 1)),
        "seconds": stats.elapsed,
        "frames_read": stats.frames_read,
        "frames_written": stats.frames_written,
        "frames_dropped": stats.frames_dropped,
        "drop_rate": stats.frames_dropped / stats.frames_read if stats.frames_read else 0.0,
        "fps_out": (len(times) - 1) / span if span > 0 else 0.0,
        "latency_ms": {"p50": _percentile(lat_ms, 50), "p95": _percentile(lat_ms, 95),
                       "max": max(lat_ms) if lat_ms else None},
        "trace": [[round(t - t0, 4), round(lat, 2)] for t, lat in zip(times, lat_ms)],
        "quality": quality,
        "latency_budget_ms": budget_ms,
        "levels": [level.describe() for level in stages.ladder],
        # [seconds since the live run started, level name]: the first entry is the start level.
        "level_trace": level_trace,
        "level_changes": len(level_trace) - 1,
        "start_probe": stages.start_probe,
        "level_changes_after_5s": sum(1 for t, _ in level_trace[1:] if t > 5.0),
        "level_reasons": [{"t": round(c.t - stages.started, 3), "reason": c.reason} for c in changes],
        "level_seconds": level_seconds,
        "load": load_result,
    }


def bench_convert(args: argparse.Namespace, engine, clip: Path, max_frames: int | None) -> dict:
    """Clip conversion through the pipeline and the video sink; speed as a multiple of real time.

    Wired as `livefilter video` wires it: frames at once on their own threads each."""
    from livefilter.capture import FileSource
    from livefilter.cli import conversion_workers
    from livefilter.pipeline import run as run_pipeline
    from livefilter.sinks.video_file import VideoFileSink

    workers, threads = conversion_workers(getattr(args, "threads", None))
    engine = _engine(engine.path, engine.resolution, argparse.Namespace(
        threads=threads, provider=getattr(args, "provider", "cpu")))
    temporal = _temporal_for(args)
    source = FileSource(clip)
    stop = threading.Event()

    def progress(frame) -> None:
        if max_frames is not None and frame.index + 1 >= max_frames:
            stop.set()

    with tempfile.TemporaryDirectory(prefix="livefilter-bench-") as tmp:
        sink = VideoFileSink(Path(tmp) / "out.mp4", template=clip, fps=source.fps, size=source.size)
        stats = run_pipeline(source, sinks=[sink], live=False, stop_event=stop, **_stage_kwargs(engine, temporal, sink.takes_i420),
                             progress=progress, workers=workers)
    duration = stats.frames_written / source.fps
    return {
        "clip": clip.name,
        "size": f"{source.size[0]}x{source.size[1]}",
        "frames": stats.frames_written,
        "clip_seconds": duration,
        "elapsed": stats.elapsed,
        "fps": stats.fps,
        "x_realtime": duration / stats.elapsed if stats.elapsed > 0 else 0.0,
    }


def bench_flicker(args: argparse.Namespace, engine, clip: Path, seconds: float,
                  strengths: Sequence[float]) -> dict:
    """E_warp and fidelity per temporal mode on the clip; the model runs once per frame."""
    frames, _fps = load_clip(clip, seconds=seconds)
    if len(frames) < 2:
        raise LivefilterError(f"{clip}: need at least two frames to measure flicker")
    engine(frames[0])  # warm-up
    paintings = [engine.paint(f) for f in frames] if hasattr(engine, "paint") else None
    filtered = [engine(f) for f in frames] if paintings is None else [
        p.finish(f) for p, f in zip(paintings, frames)]
    configs = [("off", 0.0)] + [(m, s) for m in MODES if m != "off" for s in strengths]
    default = (getattr(args, "temporal", DEFAULT_MODE), getattr(args, "strength", DEFAULT_STRENGTH))
    if default[0] != "off" and default not in configs:
        configs.append(default)
    try:
        rows = temporal_rows(frames, filtered, configs, paintings=paintings)
    except ValueError as exc:
        raise LivefilterError(f"{clip}: {exc}") from None
    h, w = frames[0].shape[:2]
    return {"clip": clip.name, "size": f"{w}x{h}", "frames": len(frames),
            "e_warp_input": rows[0]["e_warp_input"], "rows": rows}


# --- output -----------------------------------------------------------------------------------
def _fmt(value: object, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def format_table(result: dict) -> str:
    """Human-readable report of a bench result."""
    lines = []
    m = result["machine"]
    lines.append(f"livefilter bench on {m['cpus']} CPU(s), onnxruntime {m['onnxruntime']}, "
                 f"OpenCV {m['opencv']}, Python {m['python']}; load average {_fmt(m.get('load_before'), '.2f')}"
                 f" before, {_fmt(m.get('load_after'), '.2f')} after")
    if "model" in result:
        lines += ["", "model (engine incl. resize, on a 640x360 picture; warm-up excluded)",
                  f"  {'model':28} {'role':8} {'res':>5} {'ms p50':>8} {'ms p90':>8} {'fps':>7} {'ratio':>6}"]
        for r in result["model"]:
            lines.append(f"  {r['model'][:28]:28} {r['role']:8} {r['resolution']:5d} {r['ms_median']:8.1f} "
                         f"{r['ms_p90']:8.1f} {r['fps']:7.1f} {_fmt(r.get('ratio'), '6.2f'):>6}")
    if "live" in result:
        r = result["live"]
        lat = r["latency_ms"]
        lines += ["", f"live ({r['source']}, {r['size']}, temporal {r['temporal']} {r['strength']:g}, "
                      f"{r['seconds']:.1f} s)",
                  f"  fps out {r['fps_out']:.1f}   dropped {r['frames_dropped']}/{r['frames_read']} "
                  f"({r['drop_rate'] * 100:.1f}%)   latency ms p50 {_fmt(lat['p50'])} "
                  f"p95 {_fmt(lat['p95'])} max {_fmt(lat['max'])}"]
        if "level_trace" in r:
            steps = " -> ".join(f"{name} at {t:.1f} s" for t, name in r["level_trace"])
            lines.append(f"  quality {r['quality']} (budget {r['latency_budget_ms']:g} ms): {steps}; "
                         f"{r['level_changes']} changes, {r['level_changes_after_5s']} after 5 s")
            if r.get("start_probe"):
                tried = ", ".join(f"{p['level']} {p['model_ms']:g}+{p['post_ms']:g} ms" for p in r["start_probe"])
                free = r["start_probe"][-1]["free_cores"]
                lines.append(f"  start: first frame timed on {tried}"
                             + ("" if free is None else f"; {free:g} cores free"))
        if r.get("load"):
            ld = r["load"]
            each = ", ".join(f"{p['cpu_percent']:.0f}% at {p['fps']:.1f} fps" for p in ld["per_process"])
            lines.append(f"  load: {ld['processes']} call stand-ins ({ld['size']} {ld['what']}): "
                         f"CPU {ld['cpu_percent_total']:.0f}% of a core in all ({each})")
    if "convert" in result:
        r = result["convert"]
        lines += ["", f"convert ({r['clip']}, {r['size']}, {r['frames']} frames)",
                  f"  {r['fps']:.1f} fps = {r['x_realtime']:.2f}x real time"]
    if "flicker" in result:
        f = result["flicker"]
        lines += ["", f"flicker ({f['clip']}, {f['size']}, {f['frames']} frames; E_warp x1e4, "
                      f"input clip itself {f['e_warp_input'] * 1e4:.3f})",
                  f"  {'mode':7} {'strength':>8} {'E_warp':>8} {'vs off':>7} {'PSNR':>6} {'worst':>6} "
                  f"{'ms/frame':>8} {'cpu ms':>7}"]
        for r in f["rows"]:
            lines.append(f"  {r['mode']:7} {r['strength']:8.2f} {r['e_warp'] * 1e4:8.3f} "
                         f"{0.0 - r['reduction'] * 100 + 0.0:+6.0f}% {r['psnr']:6.1f} {r['worst_psnr']:6.1f} "
                         f"{r['ms_per_frame']:8.2f} {r['cpu_ms_per_frame']:7.2f}")
    return "\n".join(lines)


def _draw_levels(canvas: np.ndarray, live: dict, to_px, t_end: float, y_hi: float) -> None:
    """The quality level as a green step line in the top band of the latency panel, named."""
    trace = live.get("level_trace") or []
    names = [entry.split(":")[0] for entry in live.get("levels", [])]
    if not trace or not names:
        return
    font = cv2.FONT_HERSHEY_SIMPLEX
    band_lo, band_hi = 0.62 * y_hi, 0.97 * y_hi
    def y_of(name: str) -> float:  # top level highest
        i = names.index(name) if name in names else len(names) - 1
        return band_hi - (band_hi - band_lo) * i / max(1, len(names) - 1)
    colour = (0, 150, 0)
    points = []
    for n, (t, name) in enumerate(trace):
        end = trace[n + 1][0] if n + 1 < len(trace) else t_end
        points += [to_px(t, y_of(name)), to_px(end, y_of(name))]
        x, y = to_px(t, y_of(name))
        cv2.putText(canvas, name, (x + 3, y - 4), font, 0.4, colour, 1, cv2.LINE_AA)
    cv2.polylines(canvas, [np.array(points, np.int32)], False, colour, 2, cv2.LINE_AA)
    x, y = to_px(0.0, 0.0)
    load = live.get("load")
    label = f"quality {live.get('quality', 'auto')}" + (f", load {load['processes']}" if load else "")
    cv2.putText(canvas, label, (x + 6, y - 8), font, 0.42, colour, 1, cv2.LINE_AA)


def draw_plot(result: dict, path: str | Path) -> None:
    """Latency over time (left) and E_warp vs PSNR per temporal mode (right), drawn with OpenCV."""
    width, height = 1200, 480
    canvas = np.full((height, width, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX

    def panel(x0: int, title: str, xlabel: str, ylabel: str, xr: tuple[float, float],
              yr: tuple[float, float]) -> Callable[[float, float], tuple[int, int]]:
        left, top, right, bottom = x0 + 70, 40, x0 + 570, height - 60
        cv2.rectangle(canvas, (left, top), (right, bottom), (0, 0, 0), 1)
        cv2.putText(canvas, title, (left, top - 12), font, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(canvas, xlabel, (left + 150, height - 20), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(canvas, ylabel, (x0 + 5, top - 12 + 0), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        (x_lo, x_hi), (y_lo, y_hi) = xr, yr
        x_hi = x_hi if x_hi > x_lo else x_lo + 1
        y_hi = y_hi if y_hi > y_lo else y_lo + 1

        def to_px(x: float, y: float) -> tuple[int, int]:
            px = left + (x - x_lo) / (x_hi - x_lo) * (right - left)
            py = bottom - (y - y_lo) / (y_hi - y_lo) * (bottom - top)
            return int(round(px)), int(round(py))

        for i in range(5):
            xv = x_lo + (x_hi - x_lo) * i / 4
            yv = y_lo + (y_hi - y_lo) * i / 4
            px, _ = to_px(xv, y_lo)
            _, py = to_px(x_lo, yv)
            cv2.putText(canvas, f"{xv:.3g}", (px - 12, bottom + 18), font, 0.38, (60, 60, 60), 1, cv2.LINE_AA)
            cv2.putText(canvas, f"{yv:.3g}", (left - 55, py + 4), font, 0.38, (60, 60, 60), 1, cv2.LINE_AA)
            cv2.line(canvas, (left, py), (right, py), (230, 230, 230), 1)
        return to_px

    live = result.get("live")
    if live and live["trace"]:
        trace = np.array(live["trace"], dtype=np.float64)
        y_hi = max(200.0, float(trace[:, 1].max()) * 1.1)
        to_px = panel(0, "live: capture->sink latency over time", "seconds", "ms",
                      (0.0, float(trace[-1, 0])), (0.0, y_hi))
        budget = float(live.get("latency_budget_ms", 80.0))
        for limit, colour in ((budget, (0, 140, 255)), (185.0, (0, 0, 220))):
            a, b = to_px(0.0, limit), to_px(float(trace[-1, 0]), limit)
            cv2.line(canvas, a, b, colour, 1, cv2.LINE_AA)
            cv2.putText(canvas, f"{limit:g} ms", (b[0] - 60, b[1] - 4), font, 0.4, colour, 1, cv2.LINE_AA)
        pts = np.array([to_px(t, lat) for t, lat in trace], np.int32)
        cv2.polylines(canvas, [pts], False, (160, 60, 0), 1, cv2.LINE_AA)
        _draw_levels(canvas, live, to_px, float(trace[-1, 0]), y_hi)
    else:
        cv2.putText(canvas, "live section not run", (120, 240), font, 0.6, (0, 0, 0), 1, cv2.LINE_AA)

    flick = result.get("flicker")
    if flick and flick["rows"]:
        rows = flick["rows"]
        xs = [r["e_warp"] * 1e4 for r in rows]
        ys = [r["psnr"] for r in rows if r["psnr"] < 99] or [40.0]
        to_px = panel(600, "flicker: E_warp (x1e4) vs PSNR against per-frame output",
                      "E_warp x1e4 (lower = steadier)", "PSNR dB",
                      (0.0, max(xs) * 1.1), (min(ys) - 2, max(ys) + 2))
        colours = {"off": (0, 0, 0), "ema": (0, 140, 255), "motion": (0, 160, 0), "flow": (200, 60, 0)}
        y_top = max(ys) + 2
        for mode in MODES:
            pts = [(r["e_warp"] * 1e4, min(r["psnr"], y_top)) for r in rows if r["mode"] == mode]
            px = [to_px(x, y) for x, y in pts]
            if len(px) > 1:
                cv2.polylines(canvas, [np.array(px, np.int32)], False, colours[mode], 1, cv2.LINE_AA)
            for p in px:
                cv2.circle(canvas, p, 4, colours[mode], -1, cv2.LINE_AA)
        for i, mode in enumerate(MODES):
            cv2.putText(canvas, mode, (1100, 60 + 18 * i), font, 0.45, colours[mode], 1, cv2.LINE_AA)
    else:
        cv2.putText(canvas, "flicker section not run", (720, 240), font, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    if not cv2.imwrite(str(path), canvas):
        raise LivefilterError(f"cannot write plot to {path}")


# --- entry point ------------------------------------------------------------------------------
def _check_outputs(args: argparse.Namespace) -> None:
    """Fail before minutes of measuring, not after, when an output cannot be written."""
    plot = getattr(args, "plot", None)
    if plot:
        if Path(plot).suffix.lower() not in (".png", ".jpg", ".jpeg", ".bmp", ".webp"):
            raise LivefilterError(f"--plot {plot}: use a .png or .jpg file name")
        if not Path(plot).resolve().parent.is_dir():
            raise LivefilterError(f"--plot {plot}: folder does not exist")
    target = getattr(args, "json", None)
    if target and target != "-" and not Path(target).resolve().parent.is_dir():
        raise LivefilterError(f"--json {target}: folder does not exist")
    strengths = list(getattr(args, "strengths", None) or []) + [getattr(args, "strength", DEFAULT_STRENGTH)]
    for value in strengths:
        if not 0.0 <= value < 1.0:
            raise LivefilterError(f"temporal strength must be in [0, 1), got {value:g}")
    if min(getattr(args, "seconds", 1.0), getattr(args, "flicker_seconds", 1.0),
           getattr(args, "convert_seconds", 1.0)) <= 0:
        raise LivefilterError("--seconds, --convert-seconds and --flicker-seconds must be positive")
    if getattr(args, "queue_size", 1) < 1:
        raise LivefilterError("--queue-size must be at least 1")
    if getattr(args, "load", 0) < 0:
        raise LivefilterError("--load must be 0 or more")
    if getattr(args, "latency_budget", 80.0) <= 0:
        raise LivefilterError("--latency-budget must be positive")


def run(args: argparse.Namespace) -> int:
    """Run the selected sections and print a table (or JSON); 0 on success."""
    import onnxruntime as ort

    _check_outputs(args)
    quick = bool(getattr(args, "quick", False))
    skip = set(getattr(args, "skip", []) or [])
    result: dict = {"machine": {"cpus": os.cpu_count(), "onnxruntime": ort.__version__,
                                "opencv": cv2.__version__, "python": platform.python_version(),
                                "platform": platform.platform(), "load_before": _load()}}
    with tempfile.TemporaryDirectory(prefix="livefilter-bench-") as tmp:
        if getattr(args, "clip", None):
            clip = Path(args.clip)
            if not clip.is_file():
                raise LivefilterError(f"clip not found: {clip}")
        else:
            clip = make_synthetic_clip(Path(tmp) / "synthetic.mp4", seconds=2.0 if quick else 4.0)
        frames, _ = load_clip(clip, seconds=0.1, max_width=10_000)
        picture = cv2.resize(frames[0], BENCH_SIZE, interpolation=cv2.INTER_AREA)
        student = _student_path(args)
        result["settings"] = {"model": student.name, "resolution": _resolution(args),
                              "threads": getattr(args, "threads", None),
                              "temporal": getattr(args, "temporal", DEFAULT_MODE),
                              "strength": getattr(args, "strength", DEFAULT_STRENGTH),
                              "clip": str(args.clip) if getattr(args, "clip", None) else
                              "synthetic 640x360 30 fps", "quick": quick}
        if "model" not in skip:
            result["model"] = bench_model(args, picture, quick)
        engine = _engine(student, _resolution(args), args) if skip != set(SECTIONS) else None
        if "live" not in skip:
            result["live"] = bench_live(args, engine, clip, 2.0 if quick else float(args.seconds))
        if "convert" not in skip:
            if quick:
                limit = 30
            else:
                from livefilter.capture import FileSource

                probe = FileSource(clip)
                limit = max(2, round(float(args.convert_seconds) * probe.fps))
                probe.close()
            result["convert"] = bench_convert(args, engine, clip, limit)
        if "flicker" not in skip:
            strengths = args.strengths or ([0.8] if quick else [0.5, 0.7, 0.8, 0.9])
            seconds = 0.4 if quick else float(args.flicker_seconds)
            result["flicker"] = bench_flicker(args, engine, clip, seconds, strengths)
    result["machine"]["load_after"] = _load()
    if getattr(args, "plot", None):
        draw_plot(result, args.plot)
    target = getattr(args, "json", None)
    if target == "-":
        print(json.dumps(result, indent=1))
    else:
        if target:
            Path(target).write_text(json.dumps(result, indent=1))
        print(format_table(result))
    sys.stdout.flush()
    return 0
