"""Which onnxruntime session options help the live case on this machine?

Usage: python scripts/bench_ort.py --model PATH [--rounds 3] [--seconds 6] [--clip PATH]

For each variant (intra-op threads, spinning, graph optimisation level) the engine's session
is rebuilt with those options and measured twice: the model alone (median ms per frame on a
640x360 picture) and inside the live pipeline fed by a 30 fps file played in real time
(output fps, dropped frames, p95 latency), where the capture thread competes for the cores.
Variants are interleaved over several rounds so background load hits them alike.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from livefilter import bench  # noqa: E402
from livefilter.engine import Engine  # noqa: E402

VARIANTS: dict[str, dict] = {
    "default": {},
    "threads1": {"threads": 1},
    "threads2": {"threads": 2},
    "threads2_nospin": {"threads": 2, "spin": False},
    "default_nospin": {"spin": False},
    "threads2_extended": {"threads": 2, "opt": "extended"},
    "threads2_basic": {"threads": 2, "opt": "basic"},
    "threads2_nospin_cv1": {"threads": 2, "spin": False, "cv_threads": 1},
    "threads1_cv1": {"threads": 1, "cv_threads": 1},
}


def session_for(path: Path, threads: int | None = None, spin: bool | None = None,
                opt: str | None = None, optimized_path: Path | None = None,
                cv_threads: int | None = None):
    """A session with the given options; ``cv_threads`` is applied by the caller (OpenCV)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if spin is not None:
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    if opt is not None:
        options.graph_optimization_level = {
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[opt]
    if optimized_path is not None:
        options.optimized_model_filepath = str(optimized_path)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--clip", default=None)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--temporal", default="flow")
    parser.add_argument("--strength", type=float, default=0.8)
    parser.add_argument("--no-live", action="store_true")
    args = parser.parse_args(argv)
    names = args.variants.split(",")
    model = Path(args.model)
    tmp = tempfile.TemporaryDirectory(prefix="livefilter-ort-")
    clip = Path(args.clip) if args.clip else bench.make_synthetic_clip(Path(tmp.name) / "s.mp4", seconds=4)
    frames, _ = bench.load_clip(clip, seconds=0.1)
    picture = frames[0]

    # Load time with and without an optimised model saved on disk.
    t0 = time.perf_counter()
    session_for(model, opt="all", optimized_path=Path(tmp.name) / "opt.onnx")
    first_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    session_for(Path(tmp.name) / "opt.onnx", opt="basic")
    cached_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    session_for(model)
    plain_load = time.perf_counter() - t0
    print(json.dumps({"load_s": {"plain": plain_load, "optimize_and_save": first_load,
                                 "from_saved_optimized": cached_load}}), flush=True)

    engine = Engine(model, resolution=args.resolution)
    live_args = argparse.Namespace(temporal=args.temporal, strength=args.strength)
    results: dict[str, list[dict]] = {n: [] for n in names}
    import cv2

    cv_default = cv2.getNumThreads()
    for r in range(args.rounds):
        for name in names:
            import cv2

            variant = VARIANTS[name]
            cv2.setNumThreads(variant.get("cv_threads", cv_default))
            engine.session = session_for(model, **variant)
            alone = bench._time_engine(engine, picture, warmup=5, seconds=2.0, min_runs=10)
            row = {"round": r, "variant": name, "model_ms": alone["ms_median"],
                   "model_ms_p90": alone["ms_p90"], "load": bench._load()}
            if not args.no_live:
                live = bench.bench_live(live_args, engine, clip, args.seconds)
                row.update(fps_out=live["fps_out"], drop_rate=live["drop_rate"],
                           p50=live["latency_ms"]["p50"], p95=live["latency_ms"]["p95"])
            results[name].append(row)
            print(json.dumps(row), flush=True)
    print("\nsummary (median over rounds)")
    for name, rows in results.items():
        def med(key: str) -> float:
            vals = [row[key] for row in rows if row.get(key) is not None]
            return float(np.median(vals)) if vals else float("nan")
        print(f"{name:20} model {med('model_ms'):7.1f} ms   live fps {med('fps_out'):5.1f} "
              f"drop {med('drop_rate') * 100:5.1f}%  p50 {med('p50'):6.1f} p95 {med('p95'):6.1f} ms")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
