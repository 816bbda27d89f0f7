#!/usr/bin/env python3
"""Speed of the engine's default path on one 1280x720 frame against the teacher at short side 480
on the same frame, in one run (resize in, model, upsampling, out; 2 threads each).

  python scripts/bench_hd.py --teacher ../shared/teachers/animeganv2_hayao.onnx [--style hayao]

Rounds alternate the two, so a change of load hits both alike; the medians and their ratio are
printed, with the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from livefilter.engine import DEFAULT_STYLE, Engine, model_resolution, preferred_file, resolve_model  # noqa: E402
from livefilter.train import data as D  # noqa: E402
from livefilter.train.teacher import OnnxGenerator  # noqa: E402


def frame_720p() -> np.ndarray:
    """A real-looking test frame: a photo when the shared data is there, else a smooth field."""
    photos = Path(__file__).resolve().parents[2] / "shared/data/photos/faces"
    files = sorted(photos.glob("*.jpg")) if photos.is_dir() else []
    if files:
        return cv2.resize(cv2.imread(str(files[0])), (1280, 720), interpolation=cv2.INTER_AREA)
    rng = np.random.default_rng(0)
    return cv2.resize(rng.integers(0, 255, (9, 16, 3), dtype=np.uint8), (1280, 720), interpolation=cv2.INTER_CUBIC)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teacher", required=True, type=Path)
    p.add_argument("--style", default=DEFAULT_STYLE, help="style name or model path (default: the default style)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--repeats", type=int, default=10, help="engine runs per round")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    load_before = os.getloadavg()[0]
    model = resolve_model(args.style)
    if model.suffix != ".onnx" or str(args.style) == model.stem:  # a style name: its file as the CLI picks it
        model = preferred_file(model)
    engine = Engine(model, resolution=model_resolution(model), threads=args.threads)
    teacher = OnnxGenerator(args.teacher, threads=args.threads)
    bgr = frame_720p()
    rgb480 = D.resize_short(bgr[..., ::-1], 480)
    engine(bgr)
    teacher(rgb480)
    ours, theirs = [], []
    for _ in range(args.rounds):
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            engine(bgr)
            ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        cv2.resize(teacher(rgb480), (1280, 720), interpolation=cv2.INTER_CUBIC)
        theirs.append(time.perf_counter() - t0)
    result = {"engine": engine.describe(), "teacher": args.teacher.name, "frame": "1280x720",
              "engine_ms": round(float(np.median(ours)) * 1000, 2),
              "teacher_480_ms": round(float(np.median(theirs)) * 1000, 1),
              "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2)}
    result["ratio"] = round(result["teacher_480_ms"] / result["engine_ms"], 1)
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
