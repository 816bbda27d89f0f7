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
from livefilter.metrics import FlowEstimator, input_pairs  # noqa: E402

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
    parser.add_argument("--at-frame-size", action="store_true",
                        help="smooth the finished frames (the old way) instead of the model's picture")
    parser.add_argument("--cache", default=None, help="folder to keep filtered frames between runs")
    parser.add_argument("--markdown", default=None, help="write the summary tables (markdown) here")
    parser.add_argument("--flow", choices=["dis", "farneback"], default="dis",
                        help="flow used by the metric (farneback: cross-check against DIS bias)")
    parser.add_argument("--cost-clip", default=None,
                        help="640x360 clip on which each stage's CPU ms per frame is measured")
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
        paintings = None
        if cached is not None and cached.exists():
            filtered = list(np.load(cached))
            model_ms = float("nan")
        elif not args.at_frame_size:  # as the pipeline smooths: at the model's size, then finished
            t0 = time.perf_counter()
            paintings = [engine.paint(f) for f in frames]
            model_ms = (time.perf_counter() - t0) / len(frames) * 1000
            filtered = [p.finish(f) for p, f in zip(paintings, frames)]
        else:
            t0 = time.perf_counter()
            filtered = [engine(f) for f in frames]
            model_ms = (time.perf_counter() - t0) / len(frames) * 1000
            if cached is not None:
                cached.parent.mkdir(parents=True, exist_ok=True)
                np.save(cached, np.stack(filtered))
        pairs = input_pairs(frames, FlowEstimator(method=args.flow))
        rows = temporal_rows(frames, filtered, configs, pairs, paintings=paintings)
        h, w = frames[0].shape[:2]
        for row in rows:
            row.update(clip=Path(clip).name, size=f"{w}x{h}", frames=len(frames), model_ms=model_ms)
            print(json.dumps(row), flush=True)
        results.extend(rows)
    costs = stage_costs(args.cost_clip, configs) if args.cost_clip else {}
    if args.out:
        Path(args.out).write_text(json.dumps({"model": str(model), "rows": results,
                                              "costs": {str(k): v for k, v in costs.items()}}, indent=1))
    if args.markdown:
        Path(args.markdown).write_text(markdown(results, costs, Path(model).name))
    return 0


def _key(row_or_config) -> tuple:
    if isinstance(row_or_config, dict):
        opts = row_or_config.get("options", {})
        return (row_or_config["mode"], row_or_config["strength"], tuple(sorted(opts.items())))
    opts = row_or_config[2] if len(row_or_config) > 2 else {}
    return (row_or_config[0], float(row_or_config[1]), tuple(sorted(opts.items())))


def stage_costs(clip: str, configs: list[tuple], seconds: float = 3.0, rounds: int = 3) -> dict:
    """Median CPU ms per frame of each stage on one thread (OpenCV threads off), best of rounds.

    CPU time of one thread is much less sensitive to other processes than wall time on a
    shared 2-core machine; it is what the stage takes from the frame budget.
    """
    import cv2

    from livefilter.temporal import make_temporal

    frames, _ = load_clip(clip, seconds=seconds)
    previous = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        out = {}
        for config in configs:
            best = float("inf")
            for _ in range(rounds):
                stage = make_temporal(config[0], config[1], **(config[2] if len(config) > 2 else {}))
                stage(frames[0], frames[0])
                times = []
                for f in frames[1:]:
                    t0 = time.thread_time()
                    stage(f, f)
                    times.append(time.thread_time() - t0)
                best = min(best, float(np.median(times)) * 1000)
            out[_key(config)] = best
        return out
    finally:
        cv2.setNumThreads(previous)


def _label(key: tuple) -> str:
    mode, strength, opts = key
    text = f"{mode} {strength:g}" if mode != "off" else "off"
    if opts:
        text += " (" + ", ".join(f"{k}={v:g}" for k, v in opts) + ")"
    return text


PER_CLIP = [("ema", 0.8, ()), ("motion", 0.8, ()), ("flow", 0.7, ()), ("flow", 0.8, ()), ("flow", 0.9, ())]


def markdown(rows: list[dict], costs: dict, model: str) -> str:
    """Per-configuration summary over clips, then per-clip figures for every configuration."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(_key(row), []).append(row)
    clips = sorted({r["clip"] for r in rows})
    lines = [f"Model: {model}. Clips ({len(clips)}): {', '.join(clips)}.", "",
             "| mode | E_warp reduction mean | min | PSNR mean (dB) | min | worst frame (dB) | CPU ms/frame 640x360 |",
             "|---|---|---|---|---|---|---|"]
    for key, group in groups.items():
        red = [g["reduction"] * 100 for g in group]
        psnr = [g["psnr"] for g in group]
        worst = [g["worst_psnr"] for g in group]
        cost = costs.get(key)
        lines.append(f"| {_label(key)} | {np.mean(red):.1f}% | {min(red):.1f}% | {np.mean(psnr):.1f} | "
                     f"{min(psnr):.1f} | {min(worst):.1f} | {'-' if cost is None else f'{cost:.2f}'} |")
    shown = [k for k in PER_CLIP if k in groups]
    lines += ["", "Per clip (E_warp x 1e5, PSNR against per-frame output in brackets; input = the input "
              "clip itself, off = per-frame output):", "",
              "| clip | size | input | off | " + " | ".join(_label(k) for k in shown) + " |",
              "|---|---|---|---|" + "---|" * len(shown)]
    for clip in clips:
        by_key = {_key(r): r for r in rows if r["clip"] == clip}
        any_row = next(iter(by_key.values()))
        cells = []
        for key in shown:
            r = by_key.get(key)
            cells.append("-" if r is None else f"{r['e_warp'] * 1e5:.3f} ({r['psnr']:.1f} dB)")
        lines.append(f"| {clip} | {any_row['size']} | {any_row['e_warp_input'] * 1e5:.3f} | "
                     f"{any_row['e_warp_per_frame'] * 1e5:.3f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
