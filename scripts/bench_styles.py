"""Engine speed of several style files, interleaved, and the int8 verdict for each pair.

Usage: python scripts/bench_styles.py [--size 640x360] [--rounds 20] [--teacher T.onnx] [FILE ...]

On a shared VM the CPU's speed drifts by up to 2x within minutes, so timing one file after
another (as `livefilter bench` does) can rank two files either way. Here every round times each
file in turn (a few calls each) and the figure is the median over rounds; "int8 faster" counts
the rounds in which an `_int8` file beat its fp32 sibling. The engine runs as the commands run
it: each file at its own resolution, resize and full-size step included.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from livefilter.engine import Engine, model_resolution  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHIPPED = ["hayao", "hayao_int8", "cute", "cute_int8", "shinkai", "shinkai_int8"]


def picture(width: int, height: int) -> np.ndarray:
    """A smooth colour field with edges: what the model's cost does not depend on, but real-looking."""
    import cv2

    rng = np.random.default_rng(0)
    img = cv2.resize(rng.integers(0, 255, (9, 16, 3), dtype=np.uint8), (width, height), interpolation=cv2.INTER_CUBIC)
    cv2.circle(img, (width // 2, height // 2), height // 4, (30, 30, 30), 3)
    return img


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="*", type=Path, help=f"ONNX files (default: weights/ {', '.join(SHIPPED)})")
    p.add_argument("--size", default="640x360")
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--calls", type=int, default=5, help="timed calls per file per round")
    p.add_argument("--teacher", type=Path, default=None, help="also time this teacher (one call a round)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        print(f"bench_styles: error: --size must be WIDTHxHEIGHT, not {args.size!r}", file=sys.stderr)
        return 2
    files = args.files or [REPO / "weights" / f"{n}.onnx" for n in SHIPPED]
    missing = [f for f in files + ([args.teacher] if args.teacher else []) if not f.is_file()]
    if missing:
        print(f"bench_styles: error: no such model: {missing[0]}", file=sys.stderr)
        return 2
    image = picture(width, height)
    engines = {f.stem: Engine(f, resolution=model_resolution(f), threads=args.threads) for f in files}
    if args.teacher:
        engines[args.teacher.stem] = Engine(args.teacher, resolution=min(engines[files[0].stem].resolution, height),
                                            threads=args.threads)
    for e in engines.values():
        e(image)
        e(image)
    rounds: dict[str, list[float]] = {n: [] for n in engines}
    for _ in range(args.rounds):
        for name, e in engines.items():
            calls = 1 if args.teacher and name == args.teacher.stem else args.calls
            times = []
            for _ in range(calls):
                t0 = time.perf_counter()
                e(image)
                times.append((time.perf_counter() - t0) * 1000)
            rounds[name].append(float(np.median(times)))
    result = {"size": args.size, "rounds": args.rounds, "files": {}}
    teacher_ms = float(np.median(rounds[args.teacher.stem])) if args.teacher else None
    for name, ms in rounds.items():
        row = {"ms_median": round(float(np.median(ms)), 1), "resolution": engines[name].resolution}
        if teacher_ms and name != args.teacher.stem:
            row["vs_teacher"] = round(teacher_ms / float(np.median(ms)), 1)
        fp32 = name[: -len("_int8")] if name.endswith("_int8") else None
        if fp32 in rounds:
            row["int8_faster_rounds"] = sum(a < b for a, b in zip(ms, rounds[fp32]))
        result["files"][name] = row
        print(f"{name:24s} {row['ms_median']:8.1f} ms  at {row['resolution']}"
              + (f"  {row['vs_teacher']}x the teacher" if "vs_teacher" in row else "")
              + (f"  faster than {fp32} in {row['int8_faster_rounds']}/{args.rounds} rounds"
                 if "int8_faster_rounds" in row else ""))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
