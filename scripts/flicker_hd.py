#!/usr/bin/env python
"""Flicker at call resolution: the default output against the teacher at 480, frame by frame.

Each clip is brought to short side 720 (as a call shows it). Three streams are scored with the
warping error of livefilter.metrics (flow from the input frames):
- ``teacher480``: the teacher run on every frame at short side 480, brought to 720 bicubic;
- ``per_frame``: the default engine on every frame, no temporal stage;
- ``default``: what `livefilter video` writes (engine plus the default temporal stage).
The issue's bar: default E_warp at most 0.6x the teacher's, and the default's mean PSNR
against the teacher's frames at least 26 dB (steadiness not bought with ghosts).

    python scripts/flicker_hd.py --clips ../shared/data/clips --held-out --frames 24 \\
        --teacher ../shared/teachers/animeganv2_hayao.onnx --json flicker.json

The teacher takes seconds per frame here, so ``--frames`` (from the start of each clip) keeps
it to minutes; the clip's own fps is kept, so motion per frame is the real one.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from livefilter.capture import FileSource  # noqa: E402
from livefilter.engine import Engine, model_resolution, preferred_file, resolve_model  # noqa: E402
from livefilter.frames import Frame  # noqa: E402
from livefilter.metrics import StreamingWarpError  # noqa: E402
from livefilter.pipeline import stages  # noqa: E402
from livefilter.temporal import DEFAULT_MODE, DEFAULT_STRENGTH, make_temporal  # noqa: E402

VIDEO_EXTS = (".mp4", ".mov", ".mkv", ".avi", ".mpg", ".webm")


def to_call_size(bgr: np.ndarray, short: int = 720) -> np.ndarray:
    """Scale so the short side is ``short`` (even width and height)."""
    h, w = bgr.shape[:2]
    scale = short / min(h, w)
    size = (round(w * scale / 2) * 2, round(h * scale / 2) * 2)
    if size == (w, h):
        return bgr
    return cv2.resize(bgr, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)


def teacher_at_480(teacher: Engine, frame: np.ndarray, cache: Path | None = None) -> np.ndarray:
    """The teacher's look for one call-size frame; ``cache`` keeps it (PNG) for the next run."""
    if cache is not None and cache.is_file():
        return cv2.imread(str(cache), cv2.IMREAD_COLOR)
    h, w = frame.shape[:2]
    scale = 480 / min(h, w)
    small = cv2.resize(frame, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    out = cv2.resize(teacher(small), (w, h), interpolation=cv2.INTER_CUBIC)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(cache), out)
    return out


def clip_list(folders: list[str], held_out: bool) -> list[Path]:
    if held_out:
        from livefilter.train import data as D

        return D.split_clips(folders)[1]
    return sorted(p for f in folders for p in ([Path(f)] if Path(f).is_file() else Path(f).iterdir())
                  if p.suffix.lower() in VIDEO_EXTS)


def score_clip(path: Path, engine: Engine, teacher: Engine, frames: int, cache: Path | None = None) -> dict:
    source = FileSource(path)
    temporal = make_temporal(DEFAULT_MODE, DEFAULT_STRENGTH)
    process, post = stages(engine, temporal)
    meter = StreamingWarpError(reference="teacher480")
    n, started = 0, time.monotonic()
    try:
        while n < frames:
            record = source.read()
            if record is None:
                break
            image = to_call_size(record.image)
            per_frame = engine(image)
            ours = post(process(Frame(image, 0.0, index=n))).image
            kept = cache / f"{path.stem}_{n:03d}.png" if cache is not None else None
            meter.update(image, {"teacher480": teacher_at_480(teacher, image, kept), "per_frame": per_frame,
                                 "default": ours})
            n += 1
    finally:
        source.close()
    errors, fid = meter.warping_errors(), meter.fidelities()
    h, w = image.shape[:2]
    return {
        "clip": path.name, "size": f"{w}x{h}", "frames": n, "seconds": round(time.monotonic() - started, 1),
        "e_warp": {k: v * 1e5 for k, v in errors.items()},  # x 1e5, as docs/temporal.md
        "ratio_default_to_teacher": errors["default"] / errors["teacher480"],
        "ratio_per_frame_to_teacher": errors["per_frame"] / errors["teacher480"],
        "psnr_vs_teacher": {k: fid[k].psnr for k in ("per_frame", "default")},
        "worst_frame_psnr_vs_teacher": {k: fid[k].worst_psnr for k in ("per_frame", "default")},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", nargs="+", required=True, help="clip files or folders")
    p.add_argument("--held-out", action="store_true", help="only the clips training holds out")
    p.add_argument("--teacher", required=True)
    p.add_argument("--style", default="hayao", help="the style as the CLI runs it (its preferred file)")
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--json")
    p.add_argument("--teacher-cache", type=Path, default=None,
                   help="folder keeping the teacher's frames (PNG), so scoring another file is quick")
    args = p.parse_args(argv)
    model = preferred_file(resolve_model(args.style))
    engine = Engine(model, resolution=model_resolution(model))
    teacher = Engine(args.teacher, resolution=None)
    cache = args.teacher_cache / Path(args.teacher).stem if args.teacher_cache else None
    rows = []
    for clip in clip_list(args.clips, args.held_out):
        row = score_clip(clip, engine, teacher, args.frames, cache)
        rows.append(row)
        print(json.dumps(row), flush=True)
    summary = {
        "model": engine.path.name, "teacher": Path(args.teacher).name, "frames_per_clip": args.frames,
        "worst_ratio_default_to_teacher": max(r["ratio_default_to_teacher"] for r in rows),
        "mean_ratio_default_to_teacher": float(np.mean([r["ratio_default_to_teacher"] for r in rows])),
        "mean_psnr_default_vs_teacher": float(np.mean([r["psnr_vs_teacher"]["default"] for r in rows])),
        "rows": rows,
    }
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
