"""Sweep temporal modes and strengths on real clips: E_warp, fidelity, ms per frame.

Usage: python scripts/bench_temporal.py [--model PATH] [--seconds 3] [--out docs/temporal_sweep.json] CLIP...

Each clip is decoded (first --seconds), scaled to at most 640 px wide, filtered once per frame
by the model, then every temporal configuration is replayed over the same (input, filtered)
pairs. Flow for the metric is computed once per clip and shared by all configurations.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from livefilter.bench import load_clip, temporal_rows  # noqa: E402
from livefilter.engine import Engine  # noqa: E402
from livefilter.metrics import input_pairs  # noqa: E402

CONFIGS = [("off", 0.0)] + [
    (mode, s) for mode in ("ema", "motion", "flow") for s in (0.4, 0.6, 0.7, 0.8, 0.9)
]


def _parse_config(text: str) -> tuple:
    """'flow:0.8:short_side=180;preset=2' -> ('flow', 0.8, {'short_side': 180.0, 'preset': 2.0})."""
    parts = text.split(":")
    options = {}
    if len(parts) > 2 and parts[2]:
        for item in parts[2].split(";"):
            k, v = item.split("=")
            options[k] = float(v)
    return (parts[0], float(parts[1]), options) if options else (parts[0], float(parts[1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clips", nargs="+")
    parser.add_argument("--model", default=None)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--out", default=None)
    parser.add_argument("--configs", default=None,
                        help="mode:strength[:key=value;key=value] separated by spaces (default: full sweep)")
    parser.add_argument("--cache", default=None, help="folder to keep filtered frames between runs")
    args = parser.parse_args(argv)
    model = args.model
    if model is None:
        student = Path(__file__).resolve().parents[1] / "weights" / "hayao.onnx"
        teacher = Path(__file__).resolve().parents[2] / "shared" / "teachers" / "animeganv3_tiny_cute.onnx"
        model = str(student if student.exists() else teacher)
    configs = CONFIGS
    if args.configs:
        configs = [_parse_config(c) for c in args.configs.split()]
    engine = Engine(model, resolution=args.resolution)
    print(f"model {engine.describe()}", flush=True)
    results = []
    for clip in args.clips:
        frames, fps = load_clip(clip, seconds=args.seconds)
        cached = None
        if args.cache:
            key = f"{Path(clip).stem}_{Path(model).stem}_{args.resolution}_{len(frames)}.npy"
            cached = Path(args.cache) / key
        if cached is not None and cached.exists():
            filtered = list(np.load(cached))
            model_ms = float("nan")
        else:
            t0 = time.perf_counter()
            filtered = [engine(f) for f in frames]
            model_ms = (time.perf_counter() - t0) / len(frames) * 1000
            if cached is not None:
                cached.parent.mkdir(parents=True, exist_ok=True)
                np.save(cached, np.stack(filtered))
        pairs = input_pairs(frames)
        rows = temporal_rows(frames, filtered, configs, pairs)
        h, w = frames[0].shape[:2]
        for row in rows:
            row.update(clip=Path(clip).name, size=f"{w}x{h}", frames=len(frames), model_ms=model_ms)
            print(json.dumps(row), flush=True)
        results.extend(rows)
    if args.out:
        Path(args.out).write_text(json.dumps({"model": str(model), "rows": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
